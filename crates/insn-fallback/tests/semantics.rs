//! Semantics of every completed instruction on a fake CPU: results, flags, register and
//! memory forms, and the exceptions the SDM lists (#UD without the CPUID feature, #UD for
//! CLAC/STAC at CPL3, #GP(0) for reserved MXCSR bits and misaligned MOVDQA, #PF).

mod fake_cpu;

use fake_cpu::*;
use insn_fallback::{
    complete, Completion, CpuMode, Exception, Features, InsnClass, Outcome, Unsupported, AC, AF,
    CF, CR0_EM, CR0_MP, CR0_NE, CR0_TS, CR4_OSFXSR, CR4_OSXSAVE, OF, PF, RF, SF, TF, ZF,
};

fn run(cpu: &mut FakeCpu, bytes: &[u8]) -> Completion {
    complete(cpu, bytes).unwrap_or_else(|e| panic!("{bytes:02x?}: {e}"))
}

/// Runs `bytes`, expects it to retire as `class` and RIP to move past it.
fn retire(cpu: &mut FakeCpu, bytes: &[u8], class: InsnClass) {
    let rip = cpu.rip;
    let done = run(cpu, bytes);
    assert_eq!(done.outcome, Outcome::Retired, "{bytes:02x?}");
    assert_eq!(done.class, class, "{bytes:02x?}");
    assert_eq!(
        cpu.rip,
        rip + done.len as u64,
        "{bytes:02x?}: RIP after the instruction"
    );
}

/// Runs `bytes`, expects the fault `want` and no register change.
fn faults(cpu: &mut FakeCpu, bytes: &[u8], want: Exception) {
    let (rip, gpr, rflags, simd) = (cpu.rip, cpu.gpr, cpu.rflags, cpu.simd);
    let done = run(cpu, bytes);
    assert_eq!(done.outcome, Outcome::Exception(want), "{bytes:02x?}");
    assert_eq!(
        cpu.rip, rip,
        "{bytes:02x?}: a fault leaves RIP at the instruction"
    );
    assert_eq!(cpu.gpr, gpr, "{bytes:02x?}: registers unchanged");
    assert_eq!(cpu.rflags, rflags, "{bytes:02x?}: flags unchanged");
    assert_eq!(cpu.simd, simd, "{bytes:02x?}: SIMD state unchanged");
}

fn without(f: impl FnOnce(&mut Features)) -> FakeCpu {
    let mut cpu = FakeCpu::long64();
    f(&mut cpu.features);
    cpu
}

// --- traps ---------------------------------------------------------------------------

#[test]
fn int3_and_int1_trap_with_rip_after_the_instruction() {
    for (bytes, class, want) in [
        (&[0xcc][..], InsnClass::Int3, Exception::BP),
        (&[0xf1][..], InsnClass::Int1, Exception::DB),
    ] {
        let mut cpu = FakeCpu::long64();
        cpu.rflags |= RF;
        let done = run(&mut cpu, bytes);
        assert_eq!(
            (done.class, done.outcome),
            (class, Outcome::Exception(want))
        );
        assert_eq!(cpu.rip, 0x1001);
        assert_eq!(
            cpu.rflags & RF,
            0,
            "RF is cleared by a completed instruction"
        );
    }
}

#[test]
fn into_traps_only_with_of_and_not_in_64_bit_mode() {
    let mut cpu = FakeCpu::long64();
    cpu.mode = CpuMode::Protected32;
    retire(&mut cpu, &[0xce], InsnClass::Into);
    cpu.rflags |= OF;
    let done = run(&mut cpu, &[0xce]);
    assert_eq!(done.outcome, Outcome::Exception(Exception::OF));
    assert_eq!(cpu.rip, 0x1002);
    // 0xce is not an instruction in 64-bit mode.
    let mut cpu = FakeCpu::long64();
    assert!(matches!(
        complete(&mut cpu, &[0xce]),
        Err(Unsupported::Undecodable { bitness: 64, .. })
    ));
}

// --- hint NOPs -----------------------------------------------------------------------

#[test]
fn endbr_and_hint_nops_retire_without_touching_memory() {
    let rows: [&[u8]; 6] = [
        &[0xf3, 0x0f, 0x1e, 0xfa],       // endbr64
        &[0xf3, 0x0f, 0x1e, 0xfb],       // endbr32
        &[0x0f, 0x1f, 0x44, 0x00, 0x00], // nop dword [rax+rax*1+0]
        &[0x0f, 0x18, 0x00],             // prefetchnta [rax]
        &[0x0f, 0x19, 0x00],             // reserved hint nop [rax]
        &[0xf3, 0x90],                   // pause
    ];
    for bytes in rows {
        // RAX points at nothing mapped: a NOP must not fault.
        let mut cpu = FakeCpu::long64();
        cpu.gpr[RAX] = 0xdead_0000;
        retire(&mut cpu, bytes, InsnClass::Nop);
    }
}

// --- bit counts ----------------------------------------------------------------------

#[test]
fn popcnt_register_forms_sizes_and_flags() {
    // popcnt rax, rcx / popcnt ecx, edx / popcnt ax, bx
    let mut cpu = FakeCpu::long64();
    cpu.gpr[RCX] = 0xffff_0000_0000_0001;
    cpu.rflags |= CF | OF | SF | AF | PF | ZF;
    retire(&mut cpu, &[0xf3, 0x48, 0x0f, 0xb8, 0xc1], InsnClass::Popcnt);
    assert_eq!(cpu.gpr[RAX], 17);
    assert_eq!(
        cpu.rflags & (CF | OF | SF | AF | PF | ZF),
        0,
        "all cleared, ZF too"
    );

    cpu.gpr[RCX] = 0xffff_ffff_ffff_ffff;
    cpu.gpr[RDX] = 0xffff_ffff_0000_0000;
    retire(&mut cpu, &[0xf3, 0x0f, 0xb8, 0xca], InsnClass::Popcnt);
    assert_eq!(cpu.gpr[RCX], 0, "32-bit destination zero-extends");
    assert_eq!(cpu.rflags & ZF, ZF, "ZF: source was zero");

    cpu.gpr[RAX] = 0x1234_5678_9abc_def0;
    cpu.gpr[RBX] = 0xffff_0000_0000_00ff;
    retire(&mut cpu, &[0x66, 0xf3, 0x0f, 0xb8, 0xc3], InsnClass::Popcnt);
    assert_eq!(
        cpu.gpr[RAX], 0x1234_5678_9abc_0008,
        "16-bit destination merges"
    );
    assert_eq!(cpu.rflags & ZF, 0);
}

#[test]
fn popcnt_memory_forms_rip_relative_and_gs() {
    let mut cpu = FakeCpu::long64();
    // popcnt rax, [rbx+8]
    cpu.gpr[RBX] = 0x8000;
    cpu.poke(0x8008, &0x0f0fu64.to_le_bytes());
    retire(
        &mut cpu,
        &[0xf3, 0x48, 0x0f, 0xb8, 0x43, 0x08],
        InsnClass::Popcnt,
    );
    assert_eq!(cpu.gpr[RAX], 8);
    // popcnt eax, [rip+0x10]: relative to the next instruction (RIP 0x1006 + 8).
    cpu.poke(cpu.rip + 8 + 0x10, &7u32.to_le_bytes());
    retire(
        &mut cpu,
        &[0xf3, 0x0f, 0xb8, 0x05, 0x10, 0, 0, 0],
        InsnClass::Popcnt,
    );
    assert_eq!(cpu.gpr[RAX], 3);
    // popcnt rax, gs:[8]: GS has a base in 64-bit mode; DS does not.
    cpu.gs_base = 0xffff_8880_0000_0000;
    cpu.ds_base = 0x5000_0000;
    cpu.poke(0xffff_8880_0000_0008, &u64::MAX.to_le_bytes());
    let gs = [0x65, 0xf3, 0x48, 0x0f, 0xb8, 0x04, 0x25, 0x08, 0, 0, 0];
    retire(&mut cpu, &gs, InsnClass::Popcnt);
    assert_eq!(cpu.gpr[RAX], 64);
}

#[test]
fn popcnt_faults_ud_without_cpuid_bit_pf_on_unmapped_gp_on_noncanonical() {
    let mut cpu = without(|f| f.popcnt = false);
    cpu.gpr[RCX] = 3;
    faults(&mut cpu, &[0xf3, 0x48, 0x0f, 0xb8, 0xc1], Exception::UD);

    let mut cpu = FakeCpu::long64();
    cpu.gpr[RBX] = 0x7000;
    // The 8-byte operand at 0x7ffc crosses into the unmapped page 0x8000.
    cpu.poke(0x7ff0, &[0; 16]);
    cpu.gpr[RBX] = 0x7ff4;
    let pf = Exception::page_fault(0x8000, 0);
    faults(&mut cpu, &[0xf3, 0x48, 0x0f, 0xb8, 0x43, 0x08], pf);

    cpu.gpr[RBX] = 0x8000_0000_0000_0000;
    faults(&mut cpu, &[0xf3, 0x48, 0x0f, 0xb8, 0x03], Exception::GP0);
    // With RSP as base the default segment is SS: #SS(0).
    cpu.gpr[RSP] = 0x8000_0000_0000_0000;
    faults(
        &mut cpu,
        &[0xf3, 0x48, 0x0f, 0xb8, 0x04, 0x24],
        Exception::SS0,
    );
    // LOCK is never allowed.
    faults(
        &mut cpu,
        &[0xf0, 0xf3, 0x48, 0x0f, 0xb8, 0xc1],
        Exception::UD,
    );
}

#[test]
fn lzcnt_and_tzcnt_results_and_carry_zero_flags() {
    // (bytes, class, source, result, CF, ZF)
    let lzcnt: &[u8] = &[0xf3, 0x0f, 0xbd, 0xc1]; // lzcnt eax, ecx
    let tzcnt: &[u8] = &[0xf3, 0x0f, 0xbc, 0xc1]; // tzcnt eax, ecx
    let rows = [
        (lzcnt, InsnClass::Lzcnt, 1u64, 31u64, 0, 0),
        (lzcnt, InsnClass::Lzcnt, 0, 32, CF, 0),
        (lzcnt, InsnClass::Lzcnt, 0x8000_0000, 0, 0, ZF),
        (lzcnt, InsnClass::Lzcnt, 0xffff_ffff_0000_0100, 23, 0, 0),
        (tzcnt, InsnClass::Tzcnt, 0x100, 8, 0, 0),
        (tzcnt, InsnClass::Tzcnt, 0, 32, CF, 0),
        (tzcnt, InsnClass::Tzcnt, 1, 0, 0, ZF),
    ];
    for (bytes, class, src, result, cf, zf) in rows {
        let mut cpu = FakeCpu::long64();
        cpu.gpr[RAX] = u64::MAX;
        cpu.gpr[RCX] = src;
        cpu.rflags |= SF | PF | CF | ZF;
        retire(&mut cpu, bytes, class);
        assert_eq!(cpu.gpr[RAX], result, "{class} of {src:#x}");
        assert_eq!(
            cpu.rflags & (CF | ZF),
            cf | zf,
            "{class} of {src:#x}: CF/ZF"
        );
        assert_eq!(
            cpu.rflags & (SF | PF),
            SF | PF,
            "undefined flags left as they were"
        );
    }
    // 64-bit and 16-bit forms: lzcnt rax, rcx; tzcnt ax, cx.
    let mut cpu = FakeCpu::long64();
    cpu.gpr[RCX] = 1;
    retire(&mut cpu, &[0xf3, 0x48, 0x0f, 0xbd, 0xc1], InsnClass::Lzcnt);
    assert_eq!(cpu.gpr[RAX], 63);
    cpu.gpr[RAX] = 0xaaaa_0000;
    cpu.gpr[RCX] = 0x10000;
    retire(&mut cpu, &[0x66, 0xf3, 0x0f, 0xbc, 0xc1], InsnClass::Tzcnt);
    assert_eq!(
        cpu.gpr[RAX], 0xaaaa_0010,
        "16-bit source 0: result 16, upper bits kept"
    );
    assert_eq!(cpu.rflags & CF, CF);
}

#[test]
fn lzcnt_tzcnt_without_their_cpuid_bits_run_as_bsr_bsf() {
    let mut cpu = without(|f| {
        f.lzcnt = false;
        f.bmi1 = false;
    });
    cpu.gpr[RCX] = 0x100;
    retire(&mut cpu, &[0xf3, 0x0f, 0xbd, 0xc1], InsnClass::Bsr);
    assert_eq!(cpu.gpr[RAX], 8, "BSR: index of the highest set bit");
    cpu.gpr[RCX] = 0x110;
    retire(&mut cpu, &[0xf3, 0x0f, 0xbc, 0xc1], InsnClass::Bsf);
    assert_eq!(cpu.gpr[RAX], 4, "BSF: index of the lowest set bit");
}

#[test]
fn bsf_bsr_zero_source_keeps_destination_and_sets_zf() {
    for (bytes, class) in [
        (&[0x0f, 0xbc, 0xc1][..], InsnClass::Bsf),
        (&[0x0f, 0xbd, 0xc1][..], InsnClass::Bsr),
    ] {
        let mut cpu = FakeCpu::long64();
        cpu.gpr[RAX] = 0x1234_5678_9abc_def0;
        retire(&mut cpu, bytes, class);
        assert_eq!(cpu.gpr[RAX], 0x1234_5678_9abc_def0);
        assert_eq!(cpu.rflags & ZF, ZF);
        cpu.gpr[RCX] = 0x8000_0001;
        retire(&mut cpu, bytes, class);
        let want = if class == InsnClass::Bsf { 0 } else { 31 };
        assert_eq!(cpu.gpr[RAX], want);
        assert_eq!(cpu.rflags & ZF, 0);
    }
}

#[test]
fn bit_count_in_real_mode_uses_16_bit_addressing_and_ds_base() {
    let mut cpu = FakeCpu::long64();
    cpu.mode = CpuMode::Real;
    cpu.rip = 0x7c00;
    cpu.ds_base = 0x20000;
    cpu.gpr[RBX] = 0xffff_0000_0000_0010;
    cpu.poke(0x20014, &0x00ffu16.to_le_bytes());
    // popcnt ax, [bx+4]
    retire(&mut cpu, &[0xf3, 0x0f, 0xb8, 0x47, 0x04], InsnClass::Popcnt);
    assert_eq!(cpu.gpr[RAX] & 0xffff, 8);
    assert_eq!(cpu.rip, 0x7c05);
}

// --- CLAC / STAC -------------------------------------------------------------------------

#[test]
fn clac_stac_flip_ac_at_cpl0_and_raise_ud_otherwise() {
    let clac: &[u8] = &[0x0f, 0x01, 0xca];
    let stac: &[u8] = &[0x0f, 0x01, 0xcb];
    let mut cpu = FakeCpu::long64();
    retire(&mut cpu, stac, InsnClass::Stac);
    assert_eq!(cpu.rflags, 0x2 | AC);
    retire(&mut cpu, clac, InsnClass::Clac);
    assert_eq!(cpu.rflags, 0x2);

    // CPL3: #UD (Intel SDM, CLAC/STAC: "#UD If the CPL > 0").
    let mut cpu = FakeCpu::long64();
    cpu.cpl = 3;
    faults(&mut cpu, clac, Exception::UD);
    faults(&mut cpu, stac, Exception::UD);
    // No SMAP in CPUID: #UD at CPL0 too.
    let mut cpu = without(|f| f.smap = false);
    faults(&mut cpu, stac, Exception::UD);
    // LOCK prefix.
    let mut cpu = FakeCpu::long64();
    faults(&mut cpu, &[0xf0, 0x0f, 0x01, 0xca], Exception::UD);
}

// --- FWAIT ---------------------------------------------------------------------------------

#[test]
fn fwait_nm_with_mp_and_ts_mf_with_pending_x87_error() {
    let mut cpu = FakeCpu::long64();
    retire(&mut cpu, &[0x9b, 0x90], InsnClass::Fwait);
    assert_eq!(cpu.rip, 0x1001);
    cpu.cr0 |= CR0_TS;
    faults(&mut cpu, &[0x9b], Exception::NM);
    // TS without MP: no #NM for WAIT.
    cpu.cr0 &= !CR0_MP;
    retire(&mut cpu, &[0x9b], InsnClass::Fwait);
    // FSW.ES with CR0.NE: #MF.
    let mut cpu = FakeCpu::long64();
    cpu.cr0 |= CR0_NE;
    cpu.simd.fsw = 0x80;
    faults(&mut cpu, &[0x9b], Exception::MF);
}

// --- MXCSR -----------------------------------------------------------------------------

#[test]
fn ldmxcsr_stmxcsr_memory_and_reserved_bits() {
    let ldmxcsr: &[u8] = &[0x0f, 0xae, 0x54, 0x24, 0x08]; // ldmxcsr [rsp+8]
    let stmxcsr: &[u8] = &[0x0f, 0xae, 0x5c, 0x24, 0x08]; // stmxcsr [rsp+8]
    let mut cpu = FakeCpu::long64();
    cpu.gpr[RSP] = 0xffff_c900_0000_3ff0;
    cpu.poke(0xffff_c900_0000_3ff8, &0x9fc0u32.to_le_bytes());
    retire(&mut cpu, ldmxcsr, InsnClass::Ldmxcsr);
    assert_eq!(cpu.simd.mxcsr, 0x9fc0);
    cpu.simd.mxcsr = 0x1f80;
    retire(&mut cpu, stmxcsr, InsnClass::Stmxcsr);
    assert_eq!(cpu.peek(0xffff_c900_0000_3ff8, 4), 0x1f80u32.to_le_bytes());

    // Bit 16 is reserved: #GP(0), MXCSR unchanged.
    cpu.poke(0xffff_c900_0000_3ff8, &0x1_1f80u32.to_le_bytes());
    faults(&mut cpu, ldmxcsr, Exception::GP0);
    // DAZ (bit 6) is reserved on a CPU whose MXCSR_MASK lacks it.
    cpu.simd.mxcsr_mask = 0xffbf;
    cpu.poke(0xffff_c900_0000_3ff8, &0x1fc0u32.to_le_bytes());
    faults(&mut cpu, ldmxcsr, Exception::GP0);
}

#[test]
fn sse_availability_ud_before_nm() {
    let stmxcsr: &[u8] = &[0x0f, 0xae, 0x5c, 0x24, 0x08];
    let movd: &[u8] = &[0x66, 0x44, 0x0f, 0x6e, 0xf9];
    for bytes in [stmxcsr, movd] {
        let mut cpu = FakeCpu::long64();
        cpu.cr0 |= CR0_TS;
        faults(&mut cpu, bytes, Exception::NM);
        cpu.cr0 |= CR0_EM;
        faults(&mut cpu, bytes, Exception::UD);
        let mut cpu = FakeCpu::long64();
        cpu.cr4 &= !CR4_OSFXSR;
        faults(&mut cpu, bytes, Exception::UD);
    }
    let mut cpu = without(|f| f.sse = false);
    faults(&mut cpu, stmxcsr, Exception::UD);
    let mut cpu = without(|f| f.sse2 = false);
    faults(&mut cpu, movd, Exception::UD);
    let mut cpu = without(|f| f.ssse3 = false);
    faults(&mut cpu, &[0x66, 0x0f, 0x38, 0x00, 0xc1], Exception::UD);
}

// --- SSE moves and operations ------------------------------------------------------------

#[test]
fn movd_movq_between_xmm_gpr_and_memory() {
    let mut cpu = FakeCpu::long64();
    cpu.simd.xmm[15] = u128::MAX;
    cpu.gpr[RCX] = 0xdead_beef_1234_5678;
    // movd xmm15, ecx: zero-extends into all 128 bits (the instruction Linux stopped at).
    retire(&mut cpu, &[0x66, 0x44, 0x0f, 0x6e, 0xf9], InsnClass::Movq);
    assert_eq!(cpu.simd.xmm[15], 0x1234_5678);

    // movq rax, xmm0
    cpu.simd.xmm[0] = 0x1111_2222_3333_4444_5555_6666_7777_8888;
    retire(&mut cpu, &[0x66, 0x48, 0x0f, 0x7e, 0xc0], InsnClass::Movq);
    assert_eq!(cpu.gpr[RAX], 0x5555_6666_7777_8888);

    // movd [rdi], xmm1; movq xmm1, [rdi]; movq [rdi+16], xmm2 (66 0f d6); movq xmm3, xmm4
    cpu.gpr[RDI] = 0x9000;
    cpu.poke(0x9000, &[0xaa; 32]);
    cpu.simd.xmm[1] = 0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10;
    retire(&mut cpu, &[0x66, 0x0f, 0x7e, 0x0f], InsnClass::Movq);
    assert_eq!(
        cpu.peek(0x9000, 8),
        [0x10, 0x0f, 0x0e, 0x0d, 0xaa, 0xaa, 0xaa, 0xaa]
    );
    retire(&mut cpu, &[0xf3, 0x0f, 0x7e, 0x0f], InsnClass::Movq);
    assert_eq!(cpu.simd.xmm[1], 0xaaaa_aaaa_0d0e_0f10);
    cpu.simd.xmm[2] = u128::MAX;
    retire(&mut cpu, &[0x66, 0x0f, 0xd6, 0x57, 0x10], InsnClass::Movq);
    assert_eq!(
        cpu.peek(0x9010, 9),
        [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xaa]
    );
    cpu.simd.xmm[4] = u128::MAX;
    retire(&mut cpu, &[0xf3, 0x0f, 0x7e, 0xdc], InsnClass::Movq);
    assert_eq!(cpu.simd.xmm[3], u128::from(u64::MAX));
}

#[test]
fn movdqa_needs_alignment_movdqu_does_not() {
    let mut cpu = FakeCpu::long64();
    let pattern: [u8; 32] = std::array::from_fn(|i| i as u8);
    cpu.poke(0xa000, &pattern);
    cpu.gpr[RDI] = 0xa000;
    retire(&mut cpu, &[0x66, 0x0f, 0x6f, 0x07], InsnClass::Movdq); // movdqa xmm0, [rdi]
    assert_eq!(cpu.simd.xmm[0].to_le_bytes(), pattern[..16]);
    cpu.gpr[RDI] = 0xa008;
    faults(&mut cpu, &[0x66, 0x0f, 0x6f, 0x07], Exception::GP0);
    faults(&mut cpu, &[0x0f, 0x29, 0x0f], Exception::GP0); // movaps [rdi], xmm1
    retire(&mut cpu, &[0xf3, 0x0f, 0x6f, 0x07], InsnClass::Movdq); // movdqu xmm0, [rdi]
    assert_eq!(cpu.simd.xmm[0].to_le_bytes(), pattern[8..24]);
    cpu.simd.xmm[2] = u128::MAX;
    retire(&mut cpu, &[0x0f, 0x11, 0x17], InsnClass::Movdq); // movups [rdi], xmm2
    assert_eq!(cpu.peek(0xa008, 16), [0xff; 16]);
    assert_eq!(cpu.peek(0xa018, 1), [0x18]);
    // movdqa xmm5, xmm2 (register form)
    retire(&mut cpu, &[0x66, 0x0f, 0x6f, 0xea], InsnClass::Movdq);
    assert_eq!(cpu.simd.xmm[5], u128::MAX);
}

#[test]
fn pxor_logic_arith_and_pshufb() {
    let mut cpu = FakeCpu::long64();
    cpu.simd.xmm[0] = 0x1234;
    retire(&mut cpu, &[0x66, 0x0f, 0xef, 0xc0], InsnClass::Pxor); // pxor xmm0, xmm0
    assert_eq!(cpu.simd.xmm[0], 0);
    cpu.simd.xmm[1] = 0xff00;
    cpu.simd.xmm[2] = 0x0ff0;
    retire(&mut cpu, &[0x66, 0x0f, 0xdb, 0xca], InsnClass::Plogic); // pand xmm1, xmm2
    assert_eq!(cpu.simd.xmm[1], 0x0f00);
    retire(&mut cpu, &[0x66, 0x0f, 0xdf, 0xca], InsnClass::Plogic); // pandn xmm1, xmm2
    assert_eq!(cpu.simd.xmm[1], 0x00f0);
    retire(&mut cpu, &[0x0f, 0x56, 0xca], InsnClass::Plogic); // orps xmm1, xmm2
    assert_eq!(cpu.simd.xmm[1], 0x0ff0);
    cpu.simd.xmm[3] = 0xff;
    cpu.simd.xmm[4] = 0x01;
    retire(&mut cpu, &[0x66, 0x0f, 0xfc, 0xdc], InsnClass::Parith); // paddb xmm3, xmm4
    assert_eq!(cpu.simd.xmm[3], 0, "byte lanes wrap without carrying");
    retire(&mut cpu, &[0x66, 0x0f, 0x64, 0xdc], InsnClass::Parith); // pcmpgtb xmm3, xmm4
    assert_eq!(cpu.simd.xmm[3], 0, "0 > 1 nowhere; 0 > 0 nowhere");
    retire(&mut cpu, &[0x66, 0x0f, 0x74, 0xdc], InsnClass::Parith); // pcmpeqb xmm3, xmm4
    assert_eq!(cpu.simd.xmm[3], u128::MAX >> 8 << 8, "15 zero lanes equal");
    // pshufb xmm0, xmm1 with a broadcast-byte-0 control
    cpu.simd.xmm[0] = 0x42;
    cpu.simd.xmm[1] = 0;
    retire(&mut cpu, &[0x66, 0x0f, 0x38, 0x00, 0xc1], InsnClass::Pshufb);
    assert_eq!(cpu.simd.xmm[0], u128::from_le_bytes([0x42; 16]));
    // pxor xmm1, [rdi] with a misaligned operand: #GP(0) (legacy SSE needs 16 bytes).
    cpu.gpr[RDI] = 0xb004;
    cpu.poke(0xb000, &[0; 32]);
    faults(&mut cpu, &[0x66, 0x0f, 0xef, 0x0f], Exception::GP0);
}

// --- XGETBV ---------------------------------------------------------------------------

#[test]
fn xgetbv_reads_xcr0_and_checks_osxsave_and_ecx() {
    let xgetbv: &[u8] = &[0x0f, 0x01, 0xd0];
    let mut cpu = FakeCpu::long64();
    cpu.xcr0 = 0x2_0000_0007;
    cpu.gpr[RAX] = u64::MAX;
    cpu.gpr[RDX] = u64::MAX;
    cpu.gpr[RCX] = 0xffff_ffff_0000_0000; // ECX = 0
    retire(&mut cpu, xgetbv, InsnClass::Xgetbv);
    assert_eq!((cpu.gpr[RAX], cpu.gpr[RDX]), (7, 2));
    cpu.gpr[RCX] = 1;
    retire(&mut cpu, xgetbv, InsnClass::Xgetbv);
    assert_eq!((cpu.gpr[RAX], cpu.gpr[RDX]), (3, 0), "XCR0 & XINUSE");
    cpu.gpr[RCX] = 2;
    faults(&mut cpu, xgetbv, Exception::GP0);
    let mut cpu = without(|f| f.xgetbv_ecx1 = false);
    cpu.gpr[RCX] = 1;
    faults(&mut cpu, xgetbv, Exception::GP0);
    let mut cpu = FakeCpu::long64();
    cpu.cr4 &= !CR4_OSXSAVE;
    faults(&mut cpu, xgetbv, Exception::UD);
}

// --- what stays a VM stop -----------------------------------------------------------------

#[test]
fn unlisted_or_unmodelled_instructions_are_unsupported_with_their_bytes() {
    let mut cpu = FakeCpu::long64();
    let err = complete(&mut cpu, &[0x48, 0x0f, 0xc7, 0x0f, 0x90, 0x90]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cmpxchg16b (bytes 48 0f c7 0f) is not an instruction this fallback completes"
    );
    let err = complete(&mut cpu, &[0x0f, 0x01]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "bytes 0f 01 do not decode to an instruction in 64-bit mode"
    );
    cpu.rflags |= TF;
    let err = complete(&mut cpu, &[0xcc]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "single-stepping (RFLAGS.TF) is not modelled (bytes cc)"
    );
    assert_eq!(cpu.rip, 0x1000, "nothing changed");
    // VEX-encoded forms are not on the list: vmovdqa xmm0, [rdi].
    let mut cpu = FakeCpu::long64();
    assert!(matches!(
        complete(&mut cpu, &[0xc5, 0xf9, 0x6f, 0x07]),
        Err(Unsupported::NotListed { .. })
    ));
}

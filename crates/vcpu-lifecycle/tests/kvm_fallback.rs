//! The emulation fallback on a real vCPU: a 64-bit guest at CPL0 (identity-mapped, with an
//! IDT) runs INT3, POPCNT, CLAC/STAC, SSE moves and LDMXCSR/STMXCSR. On this project's
//! software KVM backend each of them ends in KVM_EXIT_INTERNAL_ERROR and is completed by the
//! fallback; on hardware KVM they run natively. Either way the guest must see the
//! architectural results, and every internal error must have been completed.

mod common;

use common::{open_kvm, recv_events, vm_with_ram, TestBus, LONG};
use cpu_topology::VcpuIndex;
use iced_x86::code_asm::*;
use iced_x86::BlockEncoderOptions;
use kvm_bindings::KVM_MAX_CPUID_ENTRIES;
use kvm_ioctls::{VcpuFd, VmFd};
use vcpu_lifecycle::{
    event_channel, EmulationFallback, InsnClass, StopReason, VcpuContext, VcpuEvent, VcpuHandle,
    VmStop,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use x86_boot::gdt::KERNEL_CODE64_SELECTOR;
use x86_boot::long_mode::{long_mode_sregs, write_long_mode_tables, LongModeLayout};

const MEM_SIZE: usize = 4 << 20;
const IDT: u64 = 0x7000;
const DATA: u64 = 0x8000;
const CODE: u64 = 0x10000;
const STACK_TOP: u64 = 0x80000;
/// Where the #UD handler writes 6.
const UD_SEEN: u64 = DATA + 0x100;
/// Where the #BP handler writes the return RIP it found on its stack.
const BP_RETURN: u64 = DATA + 0x108;
/// Where the #PF handler writes CR2, the error code and the faulting RIP.
const PF_SEEN: u64 = DATA + 0x110;

/// CPUID bits the tests switch.
const POPCNT: (u32, usize, u32) = (1, 2, 23); // leaf 1 ECX
const SMAP: (u32, usize, u32) = (7, 1, 20); // leaf 7 EBX

/// GDT at 0x1000, page tables from 0x2000, all 4 MiB identity-mapped.
fn layout() -> LongModeLayout {
    LongModeLayout {
        gdt_addr: GuestAddress(0x1000),
        pml4_addr: GuestAddress(0x2000),
        identity_map_size: MEM_SIZE as u64,
    }
}

struct Guest {
    vm: VmFd,
    mem: GuestMemoryMmap,
}

/// A VM with 4 MiB of identity-mapped RAM, a 64-bit GDT and an IDT with a #BP handler (it
/// records the return RIP and returns) and a #UD handler (it records 6 and halts through
/// port 0x11). `main` is assembled at CODE and must end by writing port 0x11 or 0x12.
fn guest(main: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> (Guest, u64) {
    let kvm = open_kvm();
    let (vm, mem) = vm_with_ram(&kvm, MEM_SIZE);
    let layout = layout();
    write_long_mode_tables(&mem, &layout).unwrap();

    let mut a = CodeAssembler::new(64).unwrap();
    main(&mut a).unwrap();
    let mut bp_handler = a.create_label();
    let mut ud_handler = a.create_label();
    let mut pf_handler = a.create_label();
    a.set_label(&mut bp_handler).unwrap();
    a.mov(rax, qword_ptr(rsp)).unwrap();
    a.mov(qword_ptr(BP_RETURN), rax).unwrap();
    a.iretq().unwrap();
    a.set_label(&mut ud_handler).unwrap();
    a.mov(qword_ptr(UD_SEEN), 6).unwrap();
    a.out(0x11, al).unwrap();
    a.set_label(&mut pf_handler).unwrap();
    a.mov(rax, cr2).unwrap();
    a.mov(qword_ptr(PF_SEEN), rax).unwrap();
    a.mov(rax, qword_ptr(rsp)).unwrap(); // error code
    a.mov(qword_ptr(PF_SEEN + 8), rax).unwrap();
    a.mov(rax, qword_ptr(rsp + 8)).unwrap(); // RIP of the faulting instruction
    a.mov(qword_ptr(PF_SEEN + 16), rax).unwrap();
    a.out(0x11, al).unwrap();
    let code = a
        .assemble_options(CODE, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)
        .unwrap();
    mem.write_slice(code.inner.code_buffer.as_slice(), GuestAddress(CODE))
        .unwrap();
    for (vector, label) in [(3u64, &bp_handler), (6, &ud_handler), (14, &pf_handler)] {
        let target = code.label_ip(label).unwrap();
        let mut gate = [0u8; 16];
        gate[0..2].copy_from_slice(&(target as u16).to_le_bytes());
        gate[2..4].copy_from_slice(&KERNEL_CODE64_SELECTOR.to_le_bytes());
        gate[5] = 0x8e; // present, DPL0, 64-bit interrupt gate
        gate[6..8].copy_from_slice(&((target >> 16) as u16).to_le_bytes());
        gate[8..12].copy_from_slice(&((target >> 32) as u32).to_le_bytes());
        mem.write_slice(&gate, GuestAddress(IDT + vector * 16))
            .unwrap();
    }
    (Guest { vm, mem }, CODE)
}

/// vCPU 0 in 64-bit mode at CPL0 at `entry`, with the host's supported CPUID except
/// the `(leaf, register, bit)` entries of `clear` cleared and of `set` set.
fn vcpu(g: &Guest, entry: u64, set: &[(u32, usize, u32)], clear: &[(u32, usize, u32)]) -> VcpuFd {
    let kvm = open_kvm();
    let fd = g.vm.create_vcpu(0).expect("KVM_CREATE_VCPU");
    let mut cpuid = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).unwrap();
    for e in cpuid.as_mut_slice() {
        let mut regs = [e.eax, e.ebx, e.ecx, e.edx];
        for &(leaf, reg, bit) in set {
            if e.function == leaf && e.index == 0 {
                regs[reg] |= 1 << bit;
            }
        }
        for &(leaf, reg, bit) in clear {
            if e.function == leaf && e.index == 0 {
                regs[reg] &= !(1 << bit);
            }
        }
        [e.eax, e.ebx, e.ecx, e.edx] = regs;
    }
    fd.set_cpuid2(&cpuid).expect("KVM_SET_CPUID2");
    let layout = layout();
    let mut sregs = long_mode_sregs(&fd.get_sregs().unwrap(), &layout);
    sregs.idt.base = IDT;
    sregs.idt.limit = 16 * 32 - 1;
    fd.set_sregs(&sregs).unwrap();
    let mut regs = fd.get_regs().unwrap();
    regs.rip = entry;
    regs.rsp = STACK_TOP;
    regs.rflags = 0x2;
    fd.set_regs(&regs).unwrap();
    fd
}

fn spawn(
    g: &Guest,
    fd: VcpuFd,
    fallback: EmulationFallback,
) -> (VcpuHandle, std::sync::mpsc::Receiver<VcpuEvent>) {
    let (events, rx) = event_channel(None);
    let ctx = VcpuContext::new(TestBus::new(), events)
        .unwrap()
        .with_emulation_fallback(fallback)
        .with_guest_memory(g.mem.clone());
    let mut handle = ctx.spawn(VcpuIndex(0), fd, None).unwrap();
    handle.start(LONG).unwrap();
    (handle, rx)
}

fn read_u64(g: &Guest, addr: u64) -> u64 {
    g.mem.read_obj(GuestAddress(addr)).unwrap()
}

#[test]
fn kvm_fallback_completes_int3_popcnt_clac_stac_and_sse_at_cpl0() {
    let (g, entry) = guest(|a| {
        a.mov(rcx, 0xf0f0_f0f0_f0f0u64)?;
        a.popcnt(rax, rcx)?; // 24
        a.mov(qword_ptr(DATA), rax)?;
        a.stac()?;
        a.pushfq()?;
        a.pop(rbx)?;
        a.mov(qword_ptr(DATA + 8), rbx)?;
        a.clac()?;
        a.pushfq()?;
        a.pop(rbx)?;
        a.mov(qword_ptr(DATA + 16), rbx)?;
        a.int3()?;
        a.popcnt(rdx, qword_ptr(DATA))?; // popcnt(24) = 2
        a.mov(qword_ptr(DATA + 24), rdx)?;
        a.mov(ecx, 0x1234_5678)?;
        a.movd(xmm15, ecx)?;
        a.movq(rax, xmm15)?;
        a.mov(qword_ptr(DATA + 32), rax)?;
        a.mov(dword_ptr(DATA + 40), 0x9fc0)?;
        a.ldmxcsr(dword_ptr(DATA + 40))?;
        a.stmxcsr(dword_ptr(DATA + 44))?;
        a.out(0x11, al)?;
        Ok(())
    });
    let fd = vcpu(&g, entry, &[POPCNT, SMAP], &[]);
    let (mut handle, rx) = spawn(&g, fd, EmulationFallback::On);
    let event = recv_events(&rx, 1).remove(0);
    let stats = handle.stats();
    assert_eq!(event, VcpuEvent::Halted { vcpu: VcpuIndex(0) }, "{event}");
    assert_eq!(read_u64(&g, DATA), 24, "popcnt rax, rcx");
    const AC: u64 = 1 << 18;
    assert_eq!(read_u64(&g, DATA + 8) & AC, AC, "AC after stac");
    assert_eq!(read_u64(&g, DATA + 16) & AC, 0, "AC after clac");
    assert_eq!(read_u64(&g, DATA + 24), 2, "popcnt rdx, [mem]");
    assert_eq!(
        read_u64(&g, DATA + 32),
        0x1234_5678,
        "movd xmm15, ecx; movq rax, xmm15"
    );
    assert_eq!(read_u64(&g, DATA + 40) >> 32, 0x9fc0, "ldmxcsr; stmxcsr");
    assert_eq!(read_u64(&g, UD_SEEN), 0, "no #UD reached the guest");
    // The #BP handler saw the address after the int3 on its stack.
    let int3_at = CODE + guest_offset_of_int3(&g);
    assert_eq!(read_u64(&g, BP_RETURN), int3_at + 1, "#BP return RIP");
    eprintln!(
        "internal errors {}, completed in user space: {} (exceptions {})",
        stats.internal_error, stats.emulated, stats.emulated.exceptions
    );
    assert_eq!(
        stats.emulated.total(),
        stats.internal_error,
        "every failure completed"
    );
    if stats.internal_error > 0 {
        // The software backend of this project's hosts: these never run in its emulator.
        assert_eq!(stats.emulated.get(InsnClass::Int3), 1);
        assert_eq!(stats.emulated.get(InsnClass::Clac), 1);
        assert_eq!(stats.emulated.get(InsnClass::Stac), 1);
        assert_eq!(stats.emulated.get(InsnClass::Popcnt), 2);
    }
    handle.stop(LONG).unwrap();
}

/// Offset of the single `int3` (0xcc) in the guest code.
fn guest_offset_of_int3(g: &Guest) -> u64 {
    let mut code = vec![0u8; 256];
    g.mem.read_slice(&mut code, GuestAddress(CODE)).unwrap();
    let mut decoder = iced_x86::Decoder::with_ip(64, &code, CODE, 0);
    for insn in &mut decoder {
        if insn.code() == iced_x86::Code::Int3 {
            return insn.ip() - CODE;
        }
    }
    panic!("no int3 in the guest code");
}

/// POPCNT with the bit cleared in the CPUID table the VMM sets: what counts is what the
/// guest's own CPUID instruction reports (this host's KVM keeps its POPCNT bit in every
/// guest's table). If the guest is told "no POPCNT", the fallback raises #UD; if it is told
/// "POPCNT", the instruction must work.
#[test]
fn kvm_fallback_follows_the_cpuid_the_guest_sees_for_popcnt() {
    const CPUID_ECX: u64 = DATA + 0x40;
    let (g, entry) = guest(|a| {
        a.mov(eax, 1)?;
        a.xor(ecx, ecx)?;
        a.cpuid()?;
        a.mov(dword_ptr(CPUID_ECX), ecx)?;
        a.mov(rcx, 3u64)?;
        a.popcnt(rax, rcx)?;
        a.mov(qword_ptr(DATA), rax)?;
        a.out(0x11, al)?;
        Ok(())
    });
    let fd = vcpu(&g, entry, &[], &[POPCNT]);
    let (mut handle, rx) = spawn(&g, fd, EmulationFallback::On);
    let event = recv_events(&rx, 1).remove(0);
    let stats = handle.stats();
    assert_eq!(event, VcpuEvent::Halted { vcpu: VcpuIndex(0) }, "{event}");
    let guest_sees_popcnt = read_u64(&g, CPUID_ECX) & (1 << 23) != 0;
    eprintln!("guest CPUID.1:ECX.POPCNT = {guest_sees_popcnt} (table: cleared)");
    if stats.internal_error == 0 {
        eprintln!("note: popcnt ran natively (hardware KVM)");
    } else if guest_sees_popcnt {
        assert_eq!(read_u64(&g, UD_SEEN), 0, "no #UD for an offered feature");
        assert_eq!(read_u64(&g, DATA), 2, "popcnt(3)");
        assert_eq!(stats.emulated.exceptions, 0);
    } else {
        assert_eq!(read_u64(&g, UD_SEEN), 6, "#UD handler ran");
        assert_eq!(stats.emulated.exceptions, 1);
    }
    handle.stop(LONG).unwrap();
}

/// A memory operand the guest has not mapped: the fallback's page walk finds no page and
/// the guest's #PF handler sees CR2, the error code (read, supervisor, not present) and
/// the faulting instruction's address.
#[test]
fn kvm_fallback_injects_page_faults_with_cr2_and_error_code() {
    const UNMAPPED: u64 = 0x4000_0000; // beyond the 4 MiB identity map
    let (g, entry) = guest(|a| {
        a.mov(rbx, UNMAPPED)?;
        a.popcnt(rax, qword_ptr(rbx + 8))?;
        a.out(0x12, al)?; // stop: no fault
        Ok(())
    });
    let fd = vcpu(&g, entry, &[POPCNT], &[]);
    let (mut handle, rx) = spawn(&g, fd, EmulationFallback::On);
    let event = recv_events(&rx, 1).remove(0);
    let stats = handle.stats();
    if stats.internal_error == 0 {
        // Hardware KVM: the CPU itself faults, the same handler runs.
        eprintln!("note: popcnt ran natively (hardware KVM)");
    }
    assert_eq!(event, VcpuEvent::Halted { vcpu: VcpuIndex(0) }, "{event}");
    assert_eq!(read_u64(&g, PF_SEEN), UNMAPPED + 8, "CR2");
    assert_eq!(
        read_u64(&g, PF_SEEN + 8),
        0,
        "error code: read, CPL0, not present"
    );
    let popcnt_at = CODE + 10; // after `mov rbx, imm64`
    assert_eq!(read_u64(&g, PF_SEEN + 16), popcnt_at, "fault RIP");
    handle.stop(LONG).unwrap();
}

/// XGETBV with CR4.OSXSAVE clear is #UD on every CPU: the fallback injects it and the
/// guest's handler runs.
#[test]
fn kvm_fallback_injects_ud_for_xgetbv_without_osxsave() {
    let (g, entry) = guest(|a| {
        a.xor(ecx, ecx)?;
        a.xgetbv()?;
        a.out(0x12, al)?; // stop: xgetbv did not fault
        Ok(())
    });
    let fd = vcpu(&g, entry, &[], &[]);
    let (mut handle, rx) = spawn(&g, fd, EmulationFallback::On);
    let event = recv_events(&rx, 1).remove(0);
    let stats = handle.stats();
    assert_eq!(event, VcpuEvent::Halted { vcpu: VcpuIndex(0) }, "{event}");
    assert_eq!(read_u64(&g, UD_SEEN), 6, "#UD handler ran");
    if stats.internal_error > 0 {
        assert_eq!(stats.emulated.get(InsnClass::Xgetbv), 1);
        assert_eq!(stats.emulated.exceptions, 1);
    }
    handle.stop(LONG).unwrap();
}

#[test]
fn kvm_unlisted_failing_instruction_still_stops_the_vm_with_its_bytes() {
    let (g, entry) = guest(|a| {
        a.mov(rdi, DATA)?;
        a.cmpxchg16b(xmmword_ptr(rdi))?;
        a.out(0x11, al)?;
        Ok(())
    });
    let fd = vcpu(&g, entry, &[(1, 2, 13)], &[]); // CX16
    let (mut handle, rx) = spawn(&g, fd, EmulationFallback::On);
    let event = recv_events(&rx, 1).remove(0);
    match &event {
        VcpuEvent::StopVm(VmStop {
            reason: StopReason::InternalError { code_gpa, .. },
            ..
        }) => {
            let declined = handle.emulation_declined();
            let why = declined.as_ref().expect("the fallback's reason").reason();
            assert_eq!(
                why,
                "cmpxchg16b (bytes 48 0f c7 0f) is not an instruction this fallback completes"
            );
            assert!(code_gpa.is_some());
            assert!(event
                .to_string()
                .starts_with("vCPU 0: KVM internal error (KVM_EXIT_INTERNAL_ERROR) suberror 1"));
            assert_eq!(handle.stats().emulated.total(), 0);
        }
        VcpuEvent::Halted { .. } => eprintln!("note: cmpxchg16b ran (hardware KVM)"),
        other => panic!("unexpected event {other}"),
    }
    let _ = handle.stop(LONG);
}

#[test]
fn kvm_fallback_off_stops_at_the_first_emulation_failure() {
    let (g, entry) = guest(|a| {
        a.clac()?;
        a.out(0x11, al)?;
        Ok(())
    });
    let fd = vcpu(&g, entry, &[SMAP], &[]);
    let (mut handle, rx) = spawn(&g, fd, EmulationFallback::Off);
    let event = recv_events(&rx, 1).remove(0);
    match &event {
        VcpuEvent::StopVm(VmStop {
            reason: StopReason::InternalError { suberror, rip, .. },
            ..
        }) => {
            assert_eq!(*suberror, 1);
            assert_eq!(handle.emulation_declined(), None, "the fallback was off");
            assert_eq!(rip.0, Some(CODE));
        }
        VcpuEvent::Halted { .. } => eprintln!("note: clac ran natively (hardware KVM)"),
        other => panic!("unexpected event {other}"),
    }
    let _ = handle.stop(LONG);
}

#[test]
fn kvm_context_default_is_on() {
    let (events, _rx) = event_channel(None);
    let ctx = VcpuContext::new(TestBus::new(), events).unwrap();
    assert_eq!(ctx.emulation_fallback(), EmulationFallback::On);
}

/// Without guest memory attached the fallback takes the instruction bytes KVM reports with
/// the failure: `xgetbv` in real mode (CR4.OSXSAVE clear) gets its #UD, and the guest's
/// IVT entry for #UD leads to the stop port.
#[test]
fn kvm_fallback_without_guest_memory_uses_the_bytes_kvm_reports() {
    let vm = common::TestVm::new(false);
    let (events, rx) = event_channel(None);
    let ctx = VcpuContext::new(TestBus::new(), events).unwrap();
    let mut handle = ctx
        .spawn(VcpuIndex(0), vm.vcpu(0, common::entry("xgetbv")), None)
        .unwrap();
    handle.start(LONG).unwrap();
    let event = recv_events(&rx, 1).remove(0);
    let stats = handle.stats();
    match &event {
        VcpuEvent::StopVm(VmStop {
            reason: StopReason::Requested(why),
            ..
        }) => assert_eq!(why, "guest wrote 0x0 to port 0x12", "the #UD vector ran"),
        VcpuEvent::StopVm(VmStop {
            reason: StopReason::InternalError { .. },
            ..
        }) => {
            // A KVM that does not report the instruction bytes.
            let declined = handle.emulation_declined();
            let why = declined.as_ref().map_or("", |f| f.reason());
            assert!(
                why.starts_with("the instruction bytes at RIP could not be read"),
                "{why}"
            );
            eprintln!("note: this KVM does not report instruction bytes: {event}");
        }
        other => panic!("unexpected event {other}"),
    }
    if matches!(
        event,
        VcpuEvent::StopVm(VmStop {
            reason: StopReason::Requested(_),
            ..
        })
    ) && stats.internal_error > 0
    {
        assert_eq!(stats.emulated.get(InsnClass::Xgetbv), 1);
        assert_eq!(stats.emulated.exceptions, 1);
    }
    let _ = handle.stop(LONG);
}

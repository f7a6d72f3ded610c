//! Decode one instruction and complete it: the entry point [`complete`], the integer and
//! system instructions. The SSE instructions are in `sse.rs`.

use iced_x86::{Code, Decoder, DecoderError, DecoderOptions, Instruction, Register};

use crate::class::InsnClass;
use crate::cpu::{
    CpuMode, CpuState, StateError, AC, CF, CR0_MP, CR0_NE, CR0_TS, CR4_OSXSAVE, OF, RF,
    STATUS_FLAGS, TF, VM, ZF,
};
use crate::exception::Exception;
use crate::operand::{read_rm, write_gpr, Fault};
use crate::sse;

/// How a completed instruction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It retired: registers and memory hold its results, RIP points past it.
    Retired,
    /// It raised this exception: deliver it to the guest. A fault left every register
    /// unchanged (RIP at the instruction); a trap (#BP, #DB from INT1, #OF) left RIP past
    /// the instruction, as the handler expects.
    Exception(Exception),
}

/// The result of [`complete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// What kind of instruction it was (the statistics counter).
    pub class: InsnClass,
    /// Its length in bytes.
    pub len: usize,
    /// How it ended.
    pub outcome: Outcome,
}

/// Why the core did not complete an instruction: the VM stops with this reason.
#[derive(Debug, thiserror::Error)]
pub enum Unsupported {
    /// The bytes do not form a valid instruction in the current mode.
    #[error("bytes {} do not decode to an instruction in {bitness}-bit mode", Hex(.bytes))]
    Undecodable {
        /// The bytes at RIP (up to 15).
        bytes: Vec<u8>,
        /// The decoder's mode.
        bitness: u32,
    },
    /// The instruction is not on the list this crate completes.
    #[error("{mnemonic} (bytes {}) is not an instruction this fallback completes", Hex(.bytes))]
    NotListed {
        /// The instruction's mnemonic in lower case (`cmpxchg16b`).
        mnemonic: String,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// The vCPU is in a state the core does not model (virtual-8086 mode, single-step,
    /// an x87 error reported through FERR#).
    #[error("{what} (bytes {})", Hex(.bytes))]
    Unmodelled {
        /// What.
        what: &'static str,
        /// The instruction's bytes.
        bytes: Vec<u8>,
    },
    /// Reading or writing the vCPU state or guest memory failed.
    #[error("completing {mnemonic} failed")]
    State {
        /// The instruction form.
        mnemonic: String,
        /// What failed.
        #[source]
        source: StateError,
    },
}

/// Space-separated hex bytes.
struct Hex<'a>(&'a [u8]);

impl std::fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Decodes the instruction in `bytes` (the bytes at RIP, up to 15) and completes it on
/// `cpu` if it is one of the [`InsnClass`] instructions.
///
/// On `Ok` the caller commits the changed registers and delivers
/// [`Outcome::Exception`] if there is one; on `Err` nothing was changed except, never for
/// the listed instructions, guest memory.
pub fn complete<S: CpuState + ?Sized>(
    cpu: &mut S,
    bytes: &[u8],
) -> Result<Completion, Unsupported> {
    let bytes = &bytes[..bytes.len().min(15)];
    let mode = cpu.mode();
    let bitness = mode.bitness();
    // Without the invalid-LOCK check: a LOCK prefix on a listed instruction is #UD below.
    let mut decoder = Decoder::with_ip(bitness, bytes, cpu.rip(), DecoderOptions::NO_INVALID_CHECK);
    let insn = decoder.decode();
    if insn.is_invalid() || decoder.last_error() != DecoderError::None {
        return Err(Unsupported::Undecodable {
            bytes: bytes.to_vec(),
            bitness,
        });
    }
    let raw = || bytes[..insn.len()].to_vec();
    let Some(class) = classify(&insn, cpu) else {
        return Err(Unsupported::NotListed {
            mnemonic: mnemonic(&insn),
            bytes: raw(),
        });
    };
    let rflags = cpu.rflags();
    if rflags & VM != 0 {
        return Err(Unsupported::Unmodelled {
            what: "virtual-8086 mode is not modelled",
            bytes: raw(),
        });
    }
    if rflags & TF != 0 {
        return Err(Unsupported::Unmodelled {
            what: "single-stepping (RFLAGS.TF) is not modelled",
            bytes: raw(),
        });
    }
    let result = if insn.has_lock_prefix() {
        Err(Fault::Exception(Exception::UD))
    } else {
        execute(cpu, &insn, class)
    };
    let outcome = match result {
        Ok(trap) => {
            let next = match mode {
                CpuMode::Long64 => insn.next_ip(),
                CpuMode::Protected32 => insn.next_ip() & 0xffff_ffff,
                CpuMode::Real | CpuMode::Protected16 => insn.next_ip() & 0xffff,
            };
            cpu.set_rip(next);
            cpu.set_rflags(cpu.rflags() & !RF);
            match trap {
                Some(e) => Outcome::Exception(e),
                None => Outcome::Retired,
            }
        }
        Err(Fault::Exception(e)) => Outcome::Exception(e),
        Err(Fault::State(source)) => {
            return Err(Unsupported::State {
                mnemonic: mnemonic(&insn),
                source,
            })
        }
    };
    Ok(Completion {
        class,
        len: insn.len(),
        outcome,
    })
}

/// The class of a listed instruction, `None` for anything else. LZCNT and TZCNT on a
/// guest without them are BSR and BSF.
fn classify<S: CpuState + ?Sized>(insn: &Instruction, cpu: &S) -> Option<InsnClass> {
    use Code::*;
    let f = cpu.features();
    Some(match insn.code() {
        Int3 => InsnClass::Int3,
        Int1 => InsnClass::Int1,
        Into => InsnClass::Into,
        Endbr32 | Endbr64 | Nopw | Nopd | Nopq | Nop_rm16 | Nop_rm32 | Nop_rm64 | Pause
        | Prefetchnta_m8 | Prefetcht0_m8 | Prefetcht1_m8 | Prefetcht2_m8 | Prefetchreserved3_m8
        | Prefetchreserved4_m8 | Prefetchreserved5_m8 | Prefetchreserved6_m8
        | Prefetchreserved7_m8 => InsnClass::Nop,
        c if is_hint_nop(c) => InsnClass::Nop,
        Popcnt_r16_rm16 | Popcnt_r32_rm32 | Popcnt_r64_rm64 => InsnClass::Popcnt,
        Lzcnt_r16_rm16 | Lzcnt_r32_rm32 | Lzcnt_r64_rm64 if f.lzcnt => InsnClass::Lzcnt,
        Lzcnt_r16_rm16 | Lzcnt_r32_rm32 | Lzcnt_r64_rm64 => InsnClass::Bsr,
        Tzcnt_r16_rm16 | Tzcnt_r32_rm32 | Tzcnt_r64_rm64 if f.bmi1 => InsnClass::Tzcnt,
        Tzcnt_r16_rm16 | Tzcnt_r32_rm32 | Tzcnt_r64_rm64 => InsnClass::Bsf,
        Bsf_r16_rm16 | Bsf_r32_rm32 | Bsf_r64_rm64 => InsnClass::Bsf,
        Bsr_r16_rm16 | Bsr_r32_rm32 | Bsr_r64_rm64 => InsnClass::Bsr,
        Clac => InsnClass::Clac,
        Stac => InsnClass::Stac,
        Wait => InsnClass::Fwait,
        Ldmxcsr_m32 => InsnClass::Ldmxcsr,
        Stmxcsr_m32 => InsnClass::Stmxcsr,
        Xgetbv => InsnClass::Xgetbv,
        code => sse::classify(code)?,
    })
}

/// 0F 19..0F 1F with a ModRM, other than the forms with their own meaning (NOP r/m is
/// 0F 1F /0, ENDBR is 0F 1E FA/FB): NOP on every CPU without the extension that reuses
/// the encoding.
fn is_hint_nop(code: Code) -> bool {
    use Code::*;
    matches!(
        code,
        Reservednop_rm16_r16_0F19
            | Reservednop_rm32_r32_0F19
            | Reservednop_rm64_r64_0F19
            | Reservednop_rm16_r16_0F1A
            | Reservednop_rm32_r32_0F1A
            | Reservednop_rm64_r64_0F1A
            | Reservednop_rm16_r16_0F1B
            | Reservednop_rm32_r32_0F1B
            | Reservednop_rm64_r64_0F1B
            | Reservednop_rm16_r16_0F1C
            | Reservednop_rm32_r32_0F1C
            | Reservednop_rm64_r64_0F1C
            | Reservednop_rm16_r16_0F1D
            | Reservednop_rm32_r32_0F1D
            | Reservednop_rm64_r64_0F1D
            | Reservednop_rm16_r16_0F1E
            | Reservednop_rm32_r32_0F1E
            | Reservednop_rm64_r64_0F1E
            | Reservednop_rm16_r16_0F1F
            | Reservednop_rm32_r32_0F1F
            | Reservednop_rm64_r64_0F1F
    )
}

/// Runs a classified instruction. `Ok(Some(trap))` retires it and then raises the trap.
fn execute<S: CpuState + ?Sized>(
    cpu: &mut S,
    insn: &Instruction,
    class: InsnClass,
) -> Result<Option<Exception>, Fault> {
    match class {
        InsnClass::Int3 => return Ok(Some(Exception::BP)),
        InsnClass::Int1 => return Ok(Some(Exception::DB)),
        InsnClass::Into => return Ok((cpu.rflags() & OF != 0).then_some(Exception::OF)),
        // Hint NOPs and prefetches never access their memory operand.
        InsnClass::Nop => {}
        InsnClass::Popcnt
        | InsnClass::Lzcnt
        | InsnClass::Tzcnt
        | InsnClass::Bsf
        | InsnClass::Bsr => bit_count(cpu, insn, class)?,
        InsnClass::Clac | InsnClass::Stac => {
            if !cpu.features().smap || cpu.cpl() > 0 {
                return Err(Exception::UD.into());
            }
            let rflags = cpu.rflags() & !AC;
            let ac = if class == InsnClass::Stac { AC } else { 0 };
            cpu.set_rflags(rflags | ac);
        }
        InsnClass::Fwait => fwait(cpu)?,
        InsnClass::Xgetbv => xgetbv(cpu, insn)?,
        _ => sse::execute(cpu, insn, class)?,
    }
    Ok(None)
}

/// POPCNT, LZCNT, TZCNT, BSF, BSR: `dst = f(src)`; flags as the SDM defines them, and the
/// flags it calls undefined left unchanged.
fn bit_count<S: CpuState + ?Sized>(
    cpu: &mut S,
    insn: &Instruction,
    class: InsnClass,
) -> Result<(), Fault> {
    if class == InsnClass::Popcnt && !cpu.features().popcnt {
        return Err(Exception::UD.into());
    }
    let dst = insn.op0_register();
    let size = dst.size();
    let bits = (size * 8) as u32;
    let src = read_rm(cpu, insn, 1, size)?;
    let flags = cpu.rflags();
    let (result, flags) = match class {
        InsnClass::Popcnt => {
            let zf = if src == 0 { ZF } else { 0 };
            (
                Some(u64::from(src.count_ones())),
                flags & !STATUS_FLAGS | zf,
            )
        }
        InsnClass::Lzcnt | InsnClass::Tzcnt => {
            let n = if src == 0 {
                bits
            } else if class == InsnClass::Lzcnt {
                src.leading_zeros() - (64 - bits)
            } else {
                src.trailing_zeros()
            };
            let cf = if src == 0 { CF } else { 0 };
            let zf = if n == 0 { ZF } else { 0 };
            (Some(u64::from(n)), flags & !(CF | ZF) | cf | zf)
        }
        // BSF/BSR: ZF says whether the source was zero; the destination is then left as
        // it was (what AMD documents and Intel CPUs do).
        _ if src == 0 => (None, flags | ZF),
        InsnClass::Bsf => (Some(u64::from(src.trailing_zeros())), flags & !ZF),
        _ => (Some(u64::from(63 - src.leading_zeros())), flags & !ZF),
    };
    if let Some(result) = result {
        write_gpr(cpu, dst, result)?;
    }
    cpu.set_rflags(flags);
    Ok(())
}

/// FWAIT: #NM with CR0.MP and CR0.TS; #MF for a pending unmasked x87 exception (FSW.ES)
/// with CR0.NE; otherwise nothing.
fn fwait<S: CpuState + ?Sized>(cpu: &mut S) -> Result<(), Fault> {
    let cr0 = cpu.cr0();
    if cr0 & CR0_MP != 0 && cr0 & CR0_TS != 0 {
        return Err(Exception::NM.into());
    }
    const FSW_ES: u16 = 1 << 7;
    if cpu.simd()?.fsw & FSW_ES != 0 {
        if cr0 & CR0_NE != 0 {
            return Err(Exception::MF.into());
        }
        return Err(StateError::new(
            "x87 error reporting through FERR# (CR0.NE clear) is not modelled",
        )
        .into());
    }
    Ok(())
}

/// XGETBV: EDX:EAX = XCR[ECX]. #UD without CR4.OSXSAVE (or with a 66/F2/F3 prefix);
/// #GP(0) for an XCR other than 0, or 1 where CPUID offers it (XCR0 & XINUSE).
fn xgetbv<S: CpuState + ?Sized>(cpu: &mut S, insn: &Instruction) -> Result<(), Fault> {
    if cpu.cr4() & CR4_OSXSAVE == 0 || insn.has_rep_prefix() || insn.has_repne_prefix() {
        return Err(Exception::UD.into());
    }
    let value = match cpu.gpr(1) & 0xffff_ffff {
        0 => cpu.xcr0()?,
        1 if cpu.features().xgetbv_ecx1 => cpu.xcr0()? & cpu.xinuse()?,
        _ => return Err(Exception::GP0.into()),
    };
    write_gpr(cpu, Register::EAX, value & 0xffff_ffff)?;
    write_gpr(cpu, Register::EDX, value >> 32)?;
    Ok(())
}
/// The instruction's mnemonic in lower case (`vmcall`), for error messages. Neither
/// `Code`'s nor `Mnemonic`'s `Debug` (tables of 5,000 and 1,900 relocated strings that every
/// VMM using this crate would link and relocate at start-up): see `mnemonic_names`.
pub(crate) fn mnemonic(insn: &Instruction) -> String {
    crate::mnemonic_names::name(insn.mnemonic()).to_owned()
}

//! Operands: general-purpose registers by size, memory operands by linear address.

use iced_x86::{Instruction, OpKind, Register};

use crate::cpu::{AccessError, CpuMode, CpuState, Segment, StateError, CR4_LA57};
use crate::exception::Exception;

/// Why an instruction did not complete: a guest exception, or a backend failure.
#[derive(Debug)]
pub(crate) enum Fault {
    Exception(Exception),
    State(StateError),
}

impl From<Exception> for Fault {
    fn from(e: Exception) -> Self {
        Fault::Exception(e)
    }
}

impl From<StateError> for Fault {
    fn from(e: StateError) -> Self {
        Fault::State(e)
    }
}

impl From<AccessError> for Fault {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::Fault(x) => Fault::Exception(x),
            AccessError::State(s) => Fault::State(s),
        }
    }
}

/// Index (0 = RAX .. 15 = R15) of a 16-, 32- or 64-bit general-purpose register.
fn gpr_index(reg: Register) -> Option<usize> {
    let full = reg.full_register();
    if !full.is_gpr64() {
        return None;
    }
    Some(full as usize - Register::RAX as usize)
}

/// A state error for a register this module does not handle (a decoder surprise, never
/// guest input the listed instructions can produce).
fn unexpected_register(reg: Register) -> StateError {
    StateError::new(format!(
        "operand register {reg:?} is not a 16/32/64-bit GPR"
    ))
}

/// The value of a 16/32/64-bit GPR operand, zero-extended.
pub(crate) fn read_gpr<S: CpuState + ?Sized>(cpu: &S, reg: Register) -> Result<u64, Fault> {
    let index = gpr_index(reg).ok_or_else(|| unexpected_register(reg))?;
    let v = cpu.gpr(index);
    Ok(match reg.size() {
        2 => v & 0xffff,
        4 => v & 0xffff_ffff,
        _ => v,
    })
}

/// Writes a 16/32/64-bit GPR operand: a 32-bit write zero-extends into the full register,
/// a 16-bit write keeps the upper 48 bits.
pub(crate) fn write_gpr<S: CpuState + ?Sized>(
    cpu: &mut S,
    reg: Register,
    value: u64,
) -> Result<(), Fault> {
    let index = gpr_index(reg).ok_or_else(|| unexpected_register(reg))?;
    let v = match reg.size() {
        2 => (cpu.gpr(index) & !0xffff) | (value & 0xffff),
        4 => value & 0xffff_ffff,
        _ => value,
    };
    cpu.set_gpr(index, v);
    Ok(())
}

fn segment_of(reg: Register) -> Option<Segment> {
    Some(match reg {
        Register::ES => Segment::Es,
        Register::CS => Segment::Cs,
        Register::SS => Segment::Ss,
        Register::DS => Segment::Ds,
        Register::FS => Segment::Fs,
        Register::GS => Segment::Gs,
        _ => return None,
    })
}

/// The linear address of the memory operand `op` of `insn`: segment base plus effective
/// address (truncated to the address size), checked for canonical form in 64-bit mode
/// (#GP(0), or #SS(0) for an SS-relative operand). Segment limits are not checked.
pub(crate) fn linear_address<S: CpuState + ?Sized>(
    cpu: &S,
    insn: &Instruction,
    op: u32,
) -> Result<u64, Fault> {
    let mode = cpu.mode();
    let va = insn.virtual_address(op, 0, |reg, _, _| {
        if let Some(seg) = segment_of(reg) {
            let flat = mode == CpuMode::Long64 && !matches!(seg, Segment::Fs | Segment::Gs);
            return Some(if flat { 0 } else { cpu.segment_base(seg) });
        }
        let index = gpr_index(reg)?;
        let v = cpu.gpr(index);
        Some(match reg.size() {
            2 => v & 0xffff,
            4 => v & 0xffff_ffff,
            _ => v,
        })
    });
    let va = va.ok_or_else(|| StateError::new("memory operand without an address"))?;
    if mode != CpuMode::Long64 {
        return Ok(va & 0xffff_ffff);
    }
    let bits = if cpu.cr4() & CR4_LA57 != 0 { 57 } else { 48 };
    let unused = 64 - bits;
    if (((va << unused) as i64) >> unused) as u64 != va {
        return Err(if insn.memory_segment() == Register::SS {
            Exception::SS0.into()
        } else {
            Exception::GP0.into()
        });
    }
    Ok(va)
}

/// Reads a register or memory source operand of `size` bytes (2, 4 or 8), zero-extended.
pub(crate) fn read_rm<S: CpuState + ?Sized>(
    cpu: &mut S,
    insn: &Instruction,
    op: u32,
    size: usize,
) -> Result<u64, Fault> {
    match insn.op_kind(op) {
        OpKind::Register => read_gpr(cpu, insn.op_register(op)),
        OpKind::Memory => {
            let addr = linear_address(cpu, insn, op)?;
            let mut buf = [0u8; 8];
            cpu.read(addr, &mut buf[..size])?;
            Ok(u64::from_le_bytes(buf))
        }
        other => Err(StateError::new(format!("operand kind {other:?} is not r/m")).into()),
    }
}

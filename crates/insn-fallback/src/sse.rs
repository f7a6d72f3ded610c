//! The SSE/SSE2/SSSE3 register moves and integer/logic operations the kernel's own SIMD
//! code uses (legacy encodings only; VEX and MMX forms are not on the list).

use iced_x86::{Code, Instruction, OpKind, Register};

use crate::class::InsnClass;
use crate::cpu::{CpuState, StateError, CR0_EM, CR0_TS, CR4_OSFXSR};
use crate::exception::Exception;
use crate::operand::{linear_address, read_gpr, write_gpr, Fault};

/// The CPUID feature an SSE instruction needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    Sse,
    Sse2,
    Ssse3,
}

/// What an SSE instruction does with its two operands.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// `xmm = zero_extend(low bytes of src)`; `src` is a GPR, memory or an XMM register.
    ToXmm { bytes: usize, aligned: bool },
    /// `dst = low bytes of xmm`, zero-extended into a GPR or XMM destination.
    FromXmm { bytes: usize, aligned: bool },
    /// `xmm = f(xmm, src)`, `src` an XMM register or a 16-byte-aligned m128.
    Binary(fn(u128, u128) -> u128),
}

fn table(code: Code) -> Option<(InsnClass, Needs, Op)> {
    use Code::*;
    use InsnClass::*;
    use Needs::*;
    let to = |bytes, aligned| Op::ToXmm { bytes, aligned };
    let from = |bytes, aligned| Op::FromXmm { bytes, aligned };
    Some(match code {
        Movd_xmm_rm32 => (Movq, Sse2, to(4, false)),
        Movq_xmm_rm64 | Movq_xmm_xmmm64 => (Movq, Sse2, to(8, false)),
        Movd_rm32_xmm => (Movq, Sse2, from(4, false)),
        Movq_rm64_xmm | Movq_xmmm64_xmm => (Movq, Sse2, from(8, false)),
        Movdqa_xmm_xmmm128 | Movapd_xmm_xmmm128 => (Movdq, Sse2, to(16, true)),
        Movdqu_xmm_xmmm128 | Movupd_xmm_xmmm128 => (Movdq, Sse2, to(16, false)),
        Movdqa_xmmm128_xmm | Movapd_xmmm128_xmm => (Movdq, Sse2, from(16, true)),
        Movdqu_xmmm128_xmm | Movupd_xmmm128_xmm => (Movdq, Sse2, from(16, false)),
        Movaps_xmm_xmmm128 => (Movdq, Sse, to(16, true)),
        Movups_xmm_xmmm128 => (Movdq, Sse, to(16, false)),
        Movaps_xmmm128_xmm => (Movdq, Sse, from(16, true)),
        Movups_xmmm128_xmm => (Movdq, Sse, from(16, false)),
        Pxor_xmm_xmmm128 | Xorpd_xmm_xmmm128 => (Pxor, Sse2, Op::Binary(|a, b| a ^ b)),
        Xorps_xmm_xmmm128 => (Pxor, Sse, Op::Binary(|a, b| a ^ b)),
        Pand_xmm_xmmm128 => (Plogic, Sse2, Op::Binary(|a, b| a & b)),
        Andps_xmm_xmmm128 => (Plogic, Sse, Op::Binary(|a, b| a & b)),
        Pandn_xmm_xmmm128 => (Plogic, Sse2, Op::Binary(|a, b| !a & b)),
        Andnps_xmm_xmmm128 => (Plogic, Sse, Op::Binary(|a, b| !a & b)),
        Por_xmm_xmmm128 => (Plogic, Sse2, Op::Binary(|a, b| a | b)),
        Orps_xmm_xmmm128 => (Plogic, Sse, Op::Binary(|a, b| a | b)),
        Paddb_xmm_xmmm128 => (Parith, Sse2, Op::Binary(|a, b| lanes(a, b, 8, add))),
        Paddw_xmm_xmmm128 => (Parith, Sse2, Op::Binary(|a, b| lanes(a, b, 16, add))),
        Paddd_xmm_xmmm128 => (Parith, Sse2, Op::Binary(|a, b| lanes(a, b, 32, add))),
        Paddq_xmm_xmmm128 => (Parith, Sse2, Op::Binary(|a, b| lanes(a, b, 64, add))),
        Psubb_xmm_xmmm128 => (Parith, Sse2, Op::Binary(|a, b| lanes(a, b, 8, sub))),
        Psubw_xmm_xmmm128 => (Parith, Sse2, Op::Binary(|a, b| lanes(a, b, 16, sub))),
        Psubd_xmm_xmmm128 => (Parith, Sse2, Op::Binary(|a, b| lanes(a, b, 32, sub))),
        Psubq_xmm_xmmm128 => (Parith, Sse2, Op::Binary(|a, b| lanes(a, b, 64, sub))),
        Pcmpeqb_xmm_xmmm128 => (Parith, Sse2, Op::Binary(|a, b| lanes(a, b, 8, eq))),
        Pcmpeqw_xmm_xmmm128 => (Parith, Sse2, Op::Binary(|a, b| lanes(a, b, 16, eq))),
        Pcmpeqd_xmm_xmmm128 => (Parith, Sse2, Op::Binary(|a, b| lanes(a, b, 32, eq))),
        Pcmpgtb_xmm_xmmm128 => (Parith, Sse2, Op::Binary(|a, b| lanes(a, b, 8, gt))),
        Pcmpgtw_xmm_xmmm128 => (Parith, Sse2, Op::Binary(|a, b| lanes(a, b, 16, gt))),
        Pcmpgtd_xmm_xmmm128 => (Parith, Sse2, Op::Binary(|a, b| lanes(a, b, 32, gt))),
        Pshufb_xmm_xmmm128 => (Pshufb, Ssse3, Op::Binary(pshufb)),
        _ => return None,
    })
}

/// The class of a listed SSE instruction.
pub(crate) fn classify(code: Code) -> Option<InsnClass> {
    table(code).map(|(class, _, _)| class)
}

/// Applies `f(a_lane, b_lane, width)` to each `width`-bit lane.
fn lanes(a: u128, b: u128, width: u32, f: fn(u64, u64, u32) -> u64) -> u128 {
    let mask = if width == 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    };
    let mut out = 0u128;
    for i in 0..128 / width {
        let shift = i * width;
        let x = (a >> shift) as u64 & mask;
        let y = (b >> shift) as u64 & mask;
        out |= u128::from(f(x, y, width) & mask) << shift;
    }
    out
}

fn add(x: u64, y: u64, _: u32) -> u64 {
    x.wrapping_add(y)
}

fn sub(x: u64, y: u64, _: u32) -> u64 {
    x.wrapping_sub(y)
}

fn eq(x: u64, y: u64, _: u32) -> u64 {
    if x == y {
        u64::MAX
    } else {
        0
    }
}

/// Signed greater-than of two `width`-bit lanes.
fn gt(x: u64, y: u64, width: u32) -> u64 {
    let sx = ((x << (64 - width)) as i64) >> (64 - width);
    let sy = ((y << (64 - width)) as i64) >> (64 - width);
    if sx > sy {
        u64::MAX
    } else {
        0
    }
}

/// PSHUFB: byte i of the result is 0 if bit 7 of control byte i is set, else byte
/// `control[i] & 15` of `a`.
fn pshufb(a: u128, control: u128) -> u128 {
    let a = a.to_le_bytes();
    let c = control.to_le_bytes();
    let mut out = [0u8; 16];
    for (o, &sel) in out.iter_mut().zip(&c) {
        if sel & 0x80 == 0 {
            *o = a[usize::from(sel & 0x0f)];
        }
    }
    u128::from_le_bytes(out)
}

/// The SSE availability checks, in the SDM's order: #UD for CR0.EM, a clear CR4.OSFXSR or
/// a missing CPUID feature; then #NM for CR0.TS.
pub(crate) fn check_available<S: CpuState + ?Sized>(cpu: &S, feature: bool) -> Result<(), Fault> {
    if cpu.cr0() & CR0_EM != 0 || cpu.cr4() & CR4_OSFXSR == 0 || !feature {
        return Err(Exception::UD.into());
    }
    if cpu.cr0() & CR0_TS != 0 {
        return Err(Exception::NM.into());
    }
    Ok(())
}

fn xmm_index(reg: Register) -> Result<usize, Fault> {
    if reg.is_xmm() && (reg as usize) < Register::XMM16 as usize {
        Ok(reg as usize - Register::XMM0 as usize)
    } else {
        Err(StateError::new(format!("operand register {reg:?} is not XMM0-15")).into())
    }
}

fn low_bytes(v: u128, bytes: usize) -> u128 {
    if bytes >= 16 {
        v
    } else {
        v & ((1u128 << (bytes * 8)) - 1)
    }
}

/// The address of a memory operand, #GP(0) if `aligned` and not 16-byte aligned.
fn memory_address<S: CpuState + ?Sized>(
    cpu: &S,
    insn: &Instruction,
    op: u32,
    aligned: bool,
) -> Result<u64, Fault> {
    let addr = linear_address(cpu, insn, op)?;
    if aligned && addr % 16 != 0 {
        return Err(Exception::GP0.into());
    }
    Ok(addr)
}

/// Reads operand `op` (GPR, XMM or memory) as its low `bytes` bytes.
fn read_source<S: CpuState + ?Sized>(
    cpu: &mut S,
    insn: &Instruction,
    op: u32,
    bytes: usize,
    aligned: bool,
) -> Result<u128, Fault> {
    match insn.op_kind(op) {
        OpKind::Register => {
            let reg = insn.op_register(op);
            if reg.is_xmm() {
                let i = xmm_index(reg)?;
                Ok(low_bytes(cpu.simd()?.xmm[i], bytes))
            } else {
                Ok(u128::from(read_gpr(cpu, reg)?))
            }
        }
        _ => {
            let addr = memory_address(cpu, insn, op, aligned)?;
            let mut buf = [0u8; 16];
            cpu.read(addr, &mut buf[..bytes])?;
            Ok(u128::from_le_bytes(buf))
        }
    }
}

/// Runs a listed SSE instruction (its availability checked first).
pub(crate) fn execute<S: CpuState + ?Sized>(
    cpu: &mut S,
    insn: &Instruction,
    class: InsnClass,
) -> Result<(), Fault> {
    if matches!(class, InsnClass::Ldmxcsr | InsnClass::Stmxcsr) {
        return mxcsr(cpu, insn, class);
    }
    let (_, needs, op) = table(insn.code()).ok_or_else(|| {
        StateError::new(format!(
            "{} is not an SSE instruction",
            crate::exec::mnemonic(insn)
        ))
    })?;
    let f = cpu.features();
    let available = match needs {
        Needs::Sse => f.sse,
        Needs::Sse2 => f.sse2,
        Needs::Ssse3 => f.ssse3,
    };
    check_available(cpu, available)?;
    match op {
        Op::ToXmm { bytes, aligned } => {
            let dst = xmm_index(insn.op0_register())?;
            let v = read_source(cpu, insn, 1, bytes, aligned)?;
            cpu.simd_mut()?.xmm[dst] = low_bytes(v, bytes);
        }
        Op::FromXmm { bytes, aligned } => {
            let v = low_bytes(cpu.simd()?.xmm[xmm_index(insn.op1_register())?], bytes);
            match insn.op0_kind() {
                OpKind::Register if insn.op0_register().is_xmm() => {
                    let dst = xmm_index(insn.op0_register())?;
                    cpu.simd_mut()?.xmm[dst] = v;
                }
                OpKind::Register => write_gpr(cpu, insn.op0_register(), v as u64)?,
                _ => {
                    let addr = memory_address(cpu, insn, 0, aligned)?;
                    cpu.write(addr, &v.to_le_bytes()[..bytes])?;
                }
            }
        }
        Op::Binary(f) => {
            let dst = xmm_index(insn.op0_register())?;
            let src = read_source(cpu, insn, 1, 16, true)?;
            let simd = cpu.simd_mut()?;
            simd.xmm[dst] = f(simd.xmm[dst], src);
        }
    }
    Ok(())
}

/// LDMXCSR m32 (#GP(0) for a bit outside MXCSR_MASK) and STMXCSR m32.
fn mxcsr<S: CpuState + ?Sized>(
    cpu: &mut S,
    insn: &Instruction,
    class: InsnClass,
) -> Result<(), Fault> {
    check_available(cpu, cpu.features().sse)?;
    let addr = linear_address(cpu, insn, 0)?;
    if class == InsnClass::Stmxcsr {
        let value = cpu.simd()?.mxcsr;
        cpu.write(addr, &value.to_le_bytes())?;
        return Ok(());
    }
    let mut buf = [0u8; 4];
    cpu.read(addr, &mut buf)?;
    let value = u32::from_le_bytes(buf);
    let simd = cpu.simd_mut()?;
    // An MXCSR_MASK of 0 in the FXSAVE image means the CPU predates DAZ: 0xffbf.
    let mask = if simd.mxcsr_mask == 0 {
        0xffbf
    } else {
        simd.mxcsr_mask
    };
    if value & !mask != 0 {
        return Err(Exception::GP0.into());
    }
    simd.mxcsr = value;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_helpers() {
        let a = u128::from_le_bytes([0xff, 1, 2, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f]);
        let b = u128::from_le_bytes([1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        let sum = lanes(a, b, 8, add).to_le_bytes();
        assert_eq!(&sum[..4], &[0x00, 2, 3, 0x81]);
        assert_eq!(sum[15], 0x80);
        let gtb = lanes(a, b, 8, gt).to_le_bytes();
        // 0xff is -1 < 1; 1 == 1; 2 > 1; 0x80 is -128 < 1; 0 > 0 no; 0x7f > 1.
        assert_eq!(&gtb[..5], &[0, 0, 0xff, 0, 0]);
        assert_eq!(gtb[15], 0xff);
        assert_eq!(lanes(u128::MAX, 1, 64, add), u128::from(u64::MAX) << 64);
        let eqd = lanes(5 | (7 << 32), 5 | (8 << 32), 32, eq);
        // Lanes 0, 2 and 3 are equal (5 == 5, 0 == 0); lane 1 is not.
        assert_eq!(eqd, u128::MAX ^ (0xffff_ffff << 32));
    }

    #[test]
    fn pshufb_selects_and_zeroes() {
        let a = u128::from_le_bytes(std::array::from_fn(|i| i as u8 + 0x10));
        // Reverse, except byte 0 zeroed by bit 7.
        let c = u128::from_le_bytes(std::array::from_fn(|i| {
            if i == 0 {
                0x80
            } else {
                15 - i as u8
            }
        }));
        let r = pshufb(a, c).to_le_bytes();
        assert_eq!(r[0], 0);
        assert_eq!(r[1], 0x1e);
        assert_eq!(r[15], 0x10);
    }
}

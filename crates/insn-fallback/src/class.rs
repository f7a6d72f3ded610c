//! The instructions the core completes, grouped as the exit statistics count them.

use std::fmt;

/// A family of completed instructions; one counter each in the exit statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InsnClass {
    /// INT3 (#BP trap).
    Int3,
    /// INT1 / ICEBP (#DB trap).
    Int1,
    /// INTO (#OF trap when OF is set).
    Into,
    /// ENDBR32/64, NOP r/m, the reserved hint NOPs, PREFETCHh, PAUSE.
    Nop,
    /// POPCNT.
    Popcnt,
    /// LZCNT.
    Lzcnt,
    /// TZCNT.
    Tzcnt,
    /// BSF (also TZCNT on a CPU without BMI1).
    Bsf,
    /// BSR (also LZCNT on a CPU without LZCNT).
    Bsr,
    /// CLAC.
    Clac,
    /// STAC.
    Stac,
    /// WAIT/FWAIT.
    Fwait,
    /// LDMXCSR.
    Ldmxcsr,
    /// STMXCSR.
    Stmxcsr,
    /// XGETBV.
    Xgetbv,
    /// MOVD/MOVQ between XMM and GPR/memory, MOVQ between XMM and XMM/memory.
    Movq,
    /// MOVDQA, MOVDQU, MOVAPS, MOVUPS, MOVAPD, MOVUPD.
    Movdq,
    /// PXOR, XORPS, XORPD.
    Pxor,
    /// PAND, PANDN, POR, ANDPS, ANDNPS, ORPS.
    Plogic,
    /// PADDB/W/D/Q, PSUBB/W/D/Q, PCMPEQB/W/D, PCMPGTB/W/D.
    Parith,
    /// PSHUFB.
    Pshufb,
}

impl InsnClass {
    /// Every class, in counter order.
    pub const ALL: [InsnClass; 21] = [
        InsnClass::Int3,
        InsnClass::Int1,
        InsnClass::Into,
        InsnClass::Nop,
        InsnClass::Popcnt,
        InsnClass::Lzcnt,
        InsnClass::Tzcnt,
        InsnClass::Bsf,
        InsnClass::Bsr,
        InsnClass::Clac,
        InsnClass::Stac,
        InsnClass::Fwait,
        InsnClass::Ldmxcsr,
        InsnClass::Stmxcsr,
        InsnClass::Xgetbv,
        InsnClass::Movq,
        InsnClass::Movdq,
        InsnClass::Pxor,
        InsnClass::Plogic,
        InsnClass::Parith,
        InsnClass::Pshufb,
    ];

    /// Number of classes.
    pub const COUNT: usize = Self::ALL.len();

    /// Position in [`InsnClass::ALL`] (a counter index).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Lower-case name as the statistics print it.
    pub fn name(self) -> &'static str {
        match self {
            InsnClass::Int3 => "int3",
            InsnClass::Int1 => "int1",
            InsnClass::Into => "into",
            InsnClass::Nop => "nop",
            InsnClass::Popcnt => "popcnt",
            InsnClass::Lzcnt => "lzcnt",
            InsnClass::Tzcnt => "tzcnt",
            InsnClass::Bsf => "bsf",
            InsnClass::Bsr => "bsr",
            InsnClass::Clac => "clac",
            InsnClass::Stac => "stac",
            InsnClass::Fwait => "fwait",
            InsnClass::Ldmxcsr => "ldmxcsr",
            InsnClass::Stmxcsr => "stmxcsr",
            InsnClass::Xgetbv => "xgetbv",
            InsnClass::Movq => "movd/movq",
            InsnClass::Movdq => "movdq/movaps",
            InsnClass::Pxor => "pxor",
            InsnClass::Plogic => "pand/por",
            InsnClass::Parith => "padd/pcmp",
            InsnClass::Pshufb => "pshufb",
        }
    }
}

impl fmt::Display for InsnClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_follow_all_and_names_are_unique() {
        for (i, c) in InsnClass::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
        let mut names: Vec<_> = InsnClass::ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), InsnClass::COUNT);
    }
}

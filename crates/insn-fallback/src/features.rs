//! The guest's CPUID feature bits that decide whether an instruction exists.

/// CPUID feature bits of the guest, as far as the completed instructions depend on them.
///
/// Build it from the vCPU's CPUID table with [`Features::from_cpuid`]; an instruction whose
/// bit is clear raises #UD (LZCNT and TZCNT instead run as BSR and BSF, as on a CPU
/// without them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Features {
    /// CPUID.1:EDX bit 25: SSE.
    pub sse: bool,
    /// CPUID.1:EDX bit 26: SSE2.
    pub sse2: bool,
    /// CPUID.1:ECX bit 9: SSSE3.
    pub ssse3: bool,
    /// CPUID.1:ECX bit 23: POPCNT.
    pub popcnt: bool,
    /// CPUID.1:ECX bit 26: XSAVE.
    pub xsave: bool,
    /// CPUID.(7,0):EBX bit 3: BMI1 (TZCNT).
    pub bmi1: bool,
    /// CPUID.(7,0):EBX bit 20: SMAP (CLAC, STAC).
    pub smap: bool,
    /// CPUID.(0xD,1):EAX bit 2: XGETBV with ECX = 1.
    pub xgetbv_ecx1: bool,
    /// CPUID.0x80000001:ECX bit 5: ABM (LZCNT).
    pub lzcnt: bool,
}

impl Features {
    /// Every feature the core knows (tests, and a CPU that offers everything).
    pub const ALL: Features = Features {
        sse: true,
        sse2: true,
        ssse3: true,
        popcnt: true,
        xsave: true,
        bmi1: true,
        smap: true,
        xgetbv_ecx1: true,
        lzcnt: true,
    };

    /// Reads the bits from a CPUID table: `leaf(function, index)` returns
    /// `[eax, ebx, ecx, edx]`, or `None` for a leaf the table does not have (all bits clear).
    pub fn from_cpuid(leaf: impl Fn(u32, u32) -> Option<[u32; 4]>) -> Self {
        let bit = |function: u32, index: u32, reg: usize, bit: u32| {
            leaf(function, index).is_some_and(|r| r[reg] & (1 << bit) != 0)
        };
        const EAX: usize = 0;
        const EBX: usize = 1;
        const ECX: usize = 2;
        const EDX: usize = 3;
        Features {
            sse: bit(1, 0, EDX, 25),
            sse2: bit(1, 0, EDX, 26),
            ssse3: bit(1, 0, ECX, 9),
            popcnt: bit(1, 0, ECX, 23),
            xsave: bit(1, 0, ECX, 26),
            bmi1: bit(7, 0, EBX, 3),
            smap: bit(7, 0, EBX, 20),
            xgetbv_ecx1: bit(0xd, 1, EAX, 2),
            lzcnt: bit(0x8000_0001, 0, ECX, 5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_cpuid_reads_each_bit_from_its_leaf() {
        let table = |f: u32, i: u32| match (f, i) {
            (1, 0) => Some([
                0,
                0,
                (1 << 9) | (1 << 23) | (1 << 26),
                (1 << 25) | (1 << 26),
            ]),
            (7, 0) => Some([0, (1 << 3) | (1 << 20), 0, 0]),
            (0xd, 1) => Some([1 << 2, 0, 0, 0]),
            (0x8000_0001, 0) => Some([0, 0, 1 << 5, 0]),
            _ => None,
        };
        assert_eq!(Features::from_cpuid(table), Features::ALL);
        assert_eq!(Features::from_cpuid(|_, _| None), Features::default());
        // One bit at a time: SMAP only.
        let smap = Features::from_cpuid(|f, i| (f, i).eq(&(7, 0)).then_some([0, 1 << 20, 0, 0]));
        assert_eq!(
            smap,
            Features {
                smap: true,
                ..Features::default()
            }
        );
    }
}

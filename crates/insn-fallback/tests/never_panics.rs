//! Guest bytes and guest state are untrusted: `complete` must never panic, and it must keep
//! its contract for any input: a fault changes no register, a retired instruction moves RIP
//! by exactly its length, an unsupported one changes nothing.

mod fake_cpu;

use fake_cpu::FakeCpu;
use insn_fallback::{complete, CpuMode, Features, Outcome};
use proptest::prelude::*;

fn mode() -> impl Strategy<Value = CpuMode> {
    prop_oneof![
        Just(CpuMode::Real),
        Just(CpuMode::Protected16),
        Just(CpuMode::Protected32),
        Just(CpuMode::Long64),
    ]
}

/// Bytes that start with the opcodes of the listed instructions more often than random
/// bytes would.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    let prefix = prop_oneof![
        Just(vec![]),
        Just(vec![0xf3, 0x0f, 0xb8]),
        Just(vec![0x0f, 0x01]),
        Just(vec![0x66, 0x0f]),
        Just(vec![0x0f, 0xae]),
        Just(vec![0xf3, 0x48, 0x0f, 0xbd]),
        Just(vec![0x66, 0x0f, 0x38, 0x00]),
    ];
    (prefix, proptest::collection::vec(any::<u8>(), 0..15)).prop_map(|(mut p, rest)| {
        p.extend(rest);
        p.truncate(15);
        p
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn complete_keeps_its_contract(
        bytes in bytes(),
        mode in mode(),
        cpl in 0u8..4,
        gpr in proptest::array::uniform16(any::<u64>()),
        rflags in any::<u64>(),
        cr0 in any::<u64>(),
        cr4 in any::<u64>(),
        features in any::<[bool; 9]>(),
        mapped in any::<bool>(),
    ) {
        let mut cpu = FakeCpu::long64();
        cpu.mode = mode;
        cpu.cpl = cpl;
        cpu.gpr = gpr;
        cpu.rflags = rflags;
        cpu.cr0 = cr0;
        cpu.cr4 = cr4;
        let [sse, sse2, ssse3, popcnt, xsave, bmi1, smap, xgetbv_ecx1, lzcnt] = features;
        cpu.features = Features { sse, sse2, ssse3, popcnt, xsave, bmi1, smap, xgetbv_ecx1, lzcnt };
        if mapped {
            // Map the pages the GPRs point at, so memory forms also retire.
            for r in gpr {
                cpu.map(r);
                cpu.map(r.wrapping_add(0x1000));
            }
        }
        let before = (cpu.rip, cpu.gpr, cpu.rflags, cpu.simd);
        match complete(&mut cpu, &bytes) {
            Ok(done) => {
                prop_assert!(done.len >= 1 && done.len <= bytes.len());
                match done.outcome {
                    Outcome::Exception(e) if !e.vector.is_trap() => {
                        prop_assert_eq!((cpu.rip, cpu.gpr, cpu.rflags, cpu.simd), before);
                    }
                    _ => {
                        let mask = match mode {
                            CpuMode::Long64 => u64::MAX,
                            CpuMode::Protected32 => 0xffff_ffff,
                            _ => 0xffff,
                        };
                        prop_assert_eq!(cpu.rip, before.0.wrapping_add(done.len as u64) & mask);
                    }
                }
            }
            Err(_) => prop_assert_eq!((cpu.rip, cpu.gpr, cpu.rflags, cpu.simd), before),
        }
    }
}

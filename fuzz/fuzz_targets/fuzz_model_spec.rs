//! Fuzz the `-cpu` spec grammar and host resolution: parsing never panics, a
//! parsed spec prints to a string that parses back to the same spec, and
//! resolving it against a host where every catalogued feature is supported
//! never panics.
#![no_main]
use cpuid_model::{check, features, spec, CpuidEntry, CpuidKey, CpuidRegs, CpuidTable};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn host() -> &'static CpuidTable {
    static HOST: OnceLock<CpuidTable> = OnceLock::new();
    HOST.get_or_init(|| {
        let mut t = CpuidTable::new();
        let regs = CpuidRegs {
            eax: 0x20,
            ebx: u32::from_le_bytes(*b"Genu"),
            edx: u32::from_le_bytes(*b"ineI"),
            ecx: u32::from_le_bytes(*b"ntel"),
        };
        t.insert(
            CpuidKey::leaf(0),
            CpuidEntry {
                regs,
                indexed: false,
            },
        );
        let ext = CpuidRegs {
            eax: 0x8000_0022,
            ..regs
        };
        t.insert(
            CpuidKey::leaf(0x8000_0000),
            CpuidEntry {
                regs: ext,
                indexed: false,
            },
        );
        for f in features::all() {
            if t.get(f.key()).is_none() {
                t.insert(f.key(), CpuidEntry::default());
            }
            f.set(&mut t, true);
        }
        t
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = spec::parse(s) else {
        return;
    };
    assert_eq!(spec::parse(&parsed.to_string()).as_ref(), Ok(&parsed));
    assert_eq!(spec::parse(&parsed.to_qemu_string()).as_ref(), Ok(&parsed));
    let _ = check::resolve(&parsed, host());
});

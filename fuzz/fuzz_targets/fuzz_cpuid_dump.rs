//! Arbitrary text as a `cpuid -r` dump. A panic is a finding; so is a parsed dump that
//! does not survive a write/parse round trip unchanged.
#![no_main]
use cpuid_model::dump::{parse_raw, to_raw_string};
use cpuid_model::CpuidTable;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cpus) = parse_raw(s) else {
        return;
    };
    let pairs: Vec<(u32, &CpuidTable)> = cpus
        .iter()
        .enumerate()
        .map(|(i, c)| (c.index.unwrap_or(i as u32), &c.table))
        .collect();
    let text = to_raw_string(&pairs);
    let back = parse_raw(&text).expect("written dump must parse");
    assert_eq!(back.len(), cpus.len());
    for ((a, b), (idx, _)) in cpus.iter().zip(&back).zip(&pairs) {
        assert_eq!(a.table, b.table);
        assert_eq!(b.index, Some(*idx));
    }
    assert_eq!(to_raw_string(&pairs), text);
});

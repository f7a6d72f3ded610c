//! Every CPU-set grammar on arbitrary input: no parser panics, and whatever parses
//! round-trips through the matching formatter.
#![no_main]
use cpu_topology::cpuset::{HostCpuSet, MAX_HOST_CPUS};
use libfuzzer_sys::fuzz_target;

fn check(set: &HostCpuSet) {
    assert!(!set.is_empty(), "a parser returned an empty set");
    let list = set.to_cpu_list();
    assert_eq!(
        &HostCpuSet::parse_cpu_list(&list, MAX_HOST_CPUS).unwrap(),
        set
    );
    assert_eq!(
        &HostCpuSet::parse_libvirt(&list, MAX_HOST_CPUS).unwrap(),
        set
    );
    assert_eq!(
        &HostCpuSet::parse_hex_mask(&set.to_hex_mask(), MAX_HOST_CPUS).unwrap(),
        set
    );
    assert_eq!(
        &HostCpuSet::parse_hex_mask(&set.to_hex_words(), MAX_HOST_CPUS).unwrap(),
        set
    );
    let affinity = set.to_affinity_string(0);
    assert_eq!(
        &HostCpuSet::parse_affinity_string(&affinity, MAX_HOST_CPUS).unwrap(),
        set
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The first byte picks a small limit sometimes, to reach the out-of-range paths.
    let limit = match data.first() {
        Some(b) if b % 4 == 0 => u32::from(*b),
        _ => MAX_HOST_CPUS,
    };
    let parsers: [fn(&str, u32) -> _; 4] = [
        HostCpuSet::parse_cpu_list,
        HostCpuSet::parse_libvirt,
        HostCpuSet::parse_hex_mask,
        HostCpuSet::parse_affinity_string,
    ];
    for parse in parsers {
        if let Ok(set) = parse(text, limit) {
            assert!(set.last().is_some_and(|c| c.0 < limit.max(1)));
            check(&set);
        }
    }
    if let Ok(set) = HostCpuSet::parse_libvirt_or_all(text, limit) {
        check(&set);
    }
});

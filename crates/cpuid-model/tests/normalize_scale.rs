//! A 1024-vCPU guest: every vCPU gets a distinct APIC id, and decoding each table gives
//! back that vCPU's place. (Timing belongs to benches; `for_vcpu` is designed for this
//! count: one template clone and a handful of field writes per vCPU.)

use std::collections::HashSet;

use cpu_topology::CpuTopology;
use cpuid_model::decode::topology_view;
use cpuid_model::dump::parse_raw;
use cpuid_model::normalize::Normalizer;

#[test]
fn thousand_vcpus_get_distinct_places() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/host-amd-zen4.txt");
    let base = parse_raw(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .remove(0)
        .table;
    let topo = CpuTopology::new(4, 2, 1, 64, 2, 1024).unwrap();
    let n = Normalizer::new(&base, &topo).unwrap();
    let mut seen = HashSet::new();
    for i in topo.present() {
        let t = n.for_vcpu(i).unwrap();
        let v = topology_view(&t).unwrap();
        let p = topo.position(i).unwrap();
        assert_eq!(
            (v.package_id, v.die_id, v.thread_id),
            (p.socket, p.die, p.thread)
        );
        assert!(
            seen.insert(v.apic_id),
            "vCPU {i}: duplicate APIC id {}",
            v.apic_id
        );
    }
    assert_eq!(seen.len(), 1024);
}

//! Per-vCPU CPUID tables for a 1024-vCPU VM: `Normalizer::new` plus `for_vcpu` for every
//! vCPU, from real host dumps (AMD Zen 4, Intel Cascade Lake). The budget documented in
//! docs/PERFORMANCE.md is 5 ms for all 1024 tables.
//!
//! `cargo bench -p vmm-benches --bench cpuid_normalize`

use std::hint::black_box;

use cpu_topology::{CpuTopology, VcpuIndex};
use cpuid_model::dump;
use cpuid_model::normalize::Normalizer;
use cpuid_model::CpuidTable;
use criterion::{criterion_group, criterion_main, Criterion};

const AMD_ZEN4: &str = include_str!("../../crates/cpuid-model/tests/data/host-amd-zen4.txt");
const INTEL_CLX: &str =
    include_str!("../../crates/cpuid-model/tests/data/host-intel-cascadelake-synth.txt");

/// The first CPU of a `cpuid -r` dump.
fn host_table(dump_text: &str) -> CpuidTable {
    dump::parse_raw(dump_text)
        .expect("fixture parses")
        .into_iter()
        .next()
        .expect("fixture has a CPU")
        .table
}

/// Every vCPU's table, as the VMM builds them at start-up.
fn all_tables(base: &CpuidTable, topo: &CpuTopology) -> Vec<CpuidTable> {
    let normalizer = Normalizer::new(base, topo).expect("topology fits the host model");
    (0..topo.cpus())
        .map(|i| normalizer.for_vcpu(VcpuIndex(i)).expect("vCPU table"))
        .collect()
}

fn bench(c: &mut Criterion) {
    let hosts = [
        ("amd-zen4", host_table(AMD_ZEN4)),
        ("intel-clx", host_table(INTEL_CLX)),
    ];
    let topologies = [
        ("smp1024", CpuTopology::flat(1024).expect("flat 1024")),
        (
            "4s-128c-2t",
            CpuTopology::new(4, 1, 1, 128, 2, 1024).expect("4 x 128 x 2"),
        ),
    ];
    let mut group = c.benchmark_group("cpuid_normalize_1024_vcpus");
    for (host, base) in &hosts {
        for (shape, topo) in &topologies {
            // The result must be complete, or the figure means nothing.
            assert_eq!(all_tables(base, topo).len(), 1024);
            group.bench_function(format!("{host}/{shape}"), |b| {
                b.iter(|| all_tables(black_box(base), black_box(topo)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

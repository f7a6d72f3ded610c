//! NUMA node ids in AMD leaf 0x8000_001E against the real AMD host table: for any
//! topology and any node assignment, each vCPU reads back its own node and the number of
//! nodes in its socket, the rest of its table is what `Normalizer::new` gives, and its
//! place (package, APIC id) decodes as before.

use std::collections::BTreeSet;
use std::path::Path;

use cpu_topology::{CpuTopology, VcpuIndex};
use cpuid_model::decode::topology_view;
use cpuid_model::dump::parse_raw;
use cpuid_model::normalize::{amd, Normalizer};
use cpuid_model::{CpuidKey, CpuidTable};
use proptest::prelude::*;

fn amd_host() -> CpuidTable {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/host-amd-zen4.txt");
    parse_raw(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .remove(0)
        .table
}

fn topology() -> impl Strategy<Value = CpuTopology> {
    (1u32..=4, 1u32..=3, 1u32..=2, 1u32..=4, 1u32..=2).prop_map(|(s, d, m, c, t)| {
        let n = s * d * m * c * t;
        CpuTopology::new(s, d, m, c, t, n).unwrap()
    })
}

proptest! {
    #[test]
    fn every_vcpu_reads_back_its_numa_node(
        topo in topology(),
        seed in proptest::collection::vec(0u32..12, 96),
    ) {
        let host = amd_host();
        prop_assert!(host.regs(CpuidKey::leaf(0x8000_0001)).unwrap().ecx & amd::TOPOEXT != 0);
        let slots = topo.max_cpus() as usize;
        let nodes: Vec<u32> = seed.iter().copied().cycle().take(slots).collect();
        let plain = Normalizer::new(&host, &topo);
        let numa = Normalizer::with_numa_nodes(&host, &topo, &nodes).unwrap();
        for (i, &node) in nodes.iter().enumerate() {
            let index = VcpuIndex(i as u32);
            let t = numa.for_vcpu(index).unwrap();
            let socket = topo.position(index).unwrap().socket;
            let in_socket: BTreeSet<u32> = (0..slots)
                .filter(|&j| topo.position(VcpuIndex(j as u32)).unwrap().socket == socket)
                .map(|j| nodes[j])
                .collect();
            let ecx = t.regs(CpuidKey::leaf(0x8000_001e)).unwrap().ecx;
            prop_assert_eq!(amd::node_id(&t), Some(node));
            prop_assert_eq!((ecx >> 8) & 7, (in_socket.len() as u32).min(8) - 1);
            let view = topology_view(&t).unwrap();
            prop_assert_eq!(view.package_id, socket);
            prop_assert_eq!(view.apic_id, topo.apic_layout().apic_id(index).unwrap().0);
            // Only 0x8000_001E ECX[10:0] differs from the die-based table (when the dies
            // fit the die-based encoding at all).
            if let Ok(plain) = &plain {
                let p = plain.for_vcpu(index).unwrap();
                prop_assert_eq!(p.iter().count(), t.iter().count());
                for ((pk, pe), (nk, ne)) in p.iter().zip(t.iter()) {
                    prop_assert_eq!(pk, nk);
                    let mut want = pe.regs;
                    if pk.leaf == 0x8000_001e {
                        want.ecx = (want.ecx & !0x7ff) | (ecx & 0x7ff);
                    }
                    prop_assert_eq!(ne.regs, want);
                }
            }
        }
    }
}

//! Arbitrary bytes as (small topology, vCPU index, base CPUID table). Normalising must
//! never panic, and when it succeeds the guest's own decoding of the vCPU's table must
//! give back that vCPU's APIC id and place, and on AMD its NUMA node.
#![no_main]
use cpu_topology::{CpuTopology, VcpuIndex};
use cpuid_model::decode::topology_view;
use cpuid_model::normalize::amd::{self, TOPOEXT};
use cpuid_model::normalize::{Normalizer, Vendor};
use cpuid_model::{CpuidEntry, CpuidKey, CpuidRegs, CpuidTable};
use libfuzzer_sys::fuzz_target;

/// Leaves the normaliser reads or writes, plus a few it must leave alone.
const LEAVES: [u32; 16] = [
    0,
    1,
    4,
    7,
    0xb,
    0xd,
    0x1f,
    0x8000_0000,
    0x8000_0001,
    0x8000_0008,
    0x8000_001d,
    0x8000_001e,
    0x8000_0026,
    0x4000_0000,
    0x8000_0002,
    0x1a,
];

fn word(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let lvl = |b: u8, max: u8| u32::from(b % max) + 1;
    let Ok(topo) = CpuTopology::new(
        lvl(data[0], 4),
        lvl(data[1], 4),
        lvl(data[2], 3),
        lvl(data[3], 40),
        lvl(data[4], 4),
        1,
    ) else {
        return;
    };
    let index = VcpuIndex(u32::from(u16::from_le_bytes([data[5], data[6]])) % topo.max_cpus());
    let vendor: &[u8; 12] = match data[7] % 3 {
        0 => b"GenuineIntel",
        1 => b"AuthenticAMD",
        _ => b"HygonGenuine",
    };
    let mut base = CpuidTable::new();
    for chunk in data[8..].chunks_exact(19) {
        let leaf = LEAVES[usize::from(chunk[0]) % LEAVES.len()];
        let subleaf = u32::from(chunk[1] % 6);
        let regs = CpuidRegs {
            eax: word(&chunk[2..]),
            ebx: word(&chunk[6..]),
            ecx: word(&chunk[10..]),
            edx: word(&chunk[14..]),
        };
        let indexed = chunk[18] & 1 == 1;
        base.insert(CpuidKey { leaf, subleaf }, CpuidEntry { regs, indexed });
    }
    // Leaf 0 names the vendor; its EAX (highest basic leaf) stays arbitrary.
    let max_basic = base.regs(CpuidKey::leaf(0)).map_or(0, |r| r.eax);
    let v = |i: usize| word(&vendor[i..]);
    base.insert(
        CpuidKey::leaf(0),
        CpuidEntry {
            regs: CpuidRegs {
                eax: max_basic,
                ebx: v(0),
                ecx: v(8),
                edx: v(4),
            },
            indexed: false,
        },
    );

    let Ok(n) = Normalizer::new(&base, &topo) else {
        return;
    };
    let t = n
        .for_vcpu(index)
        .expect("every slot of the topology has a table");
    let view = topology_view(&t).expect("a normalised table decodes");
    let layout = topo.apic_layout();
    let p = topo.position(index).unwrap();
    let apic = layout.apic_id(index).unwrap().0;
    assert_eq!(view.apic_id, apic);
    assert_eq!(view.package_id, p.socket);
    assert_eq!(view.thread_id, p.thread);
    assert_eq!(view.threads_per_core, topo.threads());
    assert_eq!(view.logical_per_package, topo.threads_per_socket());
    let topoext = t
        .regs(CpuidKey::leaf(0x8000_0001))
        .is_some_and(|r| r.ecx & TOPOEXT != 0);
    let max_ext = t.regs(CpuidKey::leaf(0x8000_0000)).map_or(0, |r| r.eax);
    let die_visible = match n.vendor() {
        Vendor::Intel => true,
        Vendor::Amd => topoext && max_ext >= 0x8000_001e,
    };
    if die_visible || topo.dies() == 1 {
        assert_eq!(view.die_id, p.die);
    }

    // The same table for a NUMA guest (slots dealt round-robin over 1..=4 nodes): on AMD
    // with TOPOEXT the vCPU reads its own node back; the APIC id and place do not change.
    let nodes = u32::from(data[7] / 3 % 4) + 1;
    let node_of: Vec<u32> = (0..topo.max_cpus()).map(|i| i % nodes).collect();
    let Ok(n) = Normalizer::with_numa_nodes(&base, &topo, &node_of) else {
        return;
    };
    let t = n
        .for_vcpu(index)
        .expect("every slot of the topology has a table");
    let view = topology_view(&t).expect("a normalised table decodes");
    assert_eq!(view.apic_id, apic);
    assert_eq!(view.package_id, p.socket);
    if let Some(node) = amd::node_id(&t) {
        assert_eq!(node, node_of[index.0 as usize]);
    }
});

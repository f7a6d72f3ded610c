//! Per-vCPU normalisation against the real AMD host table and the synthesized Intel one:
//! the guest's own decoding (Linux rules) gives back each vCPU's place, and no bit outside
//! the topology fields changes.

use std::path::Path;

use cpu_topology::{CpuTopology, VcpuIndex};
use cpuid_model::decode::{topology_view, TopologySource};
use cpuid_model::dump::parse_raw;
use cpuid_model::normalize::{NormalizeError, Normalizer, Vendor};
use cpuid_model::{CpuidKey, CpuidRegs, CpuidTable};
use proptest::prelude::*;

fn fixture(name: &str) -> CpuidTable {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    parse_raw(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .remove(0)
        .table
}

fn amd() -> CpuidTable {
    fixture("host-amd-zen4.txt")
}

fn intel() -> CpuidTable {
    fixture("host-intel-cascadelake-synth.txt")
}

/// Bits of (leaf, register) the normaliser may change; everything else must stay.
fn owned(vendor: Vendor, leaf: u32) -> CpuidRegs {
    let all = u32::MAX;
    let mask = |eax, ebx, ecx, edx| CpuidRegs { eax, ebx, ecx, edx };
    match (vendor, leaf) {
        (_, 0) => mask(all, 0, 0, 0),
        (_, 1) => mask(0, 0xffff_0000, 0, 1 << 28),
        (_, 0xb) | (_, 0x1f) => mask(all, all, all, all),
        (Vendor::Intel, 4) => mask(0xffff_c000, 0, 0, 0),
        (Vendor::Amd, 0x8000_0001) => mask(0, 0, 1 << 1, 0),
        (Vendor::Amd, 0x8000_0008) => mask(0, 0, 0xf0ff, 0),
        (Vendor::Amd, 0x8000_001d) => mask(0x03ff_c000, 0, 0, 0),
        (Vendor::Amd, 0x8000_001e) => mask(all, 0xffff, 0x7ff, 0),
        _ => mask(0, 0, 0, 0),
    }
}

fn assert_only_topology_changed(base: &CpuidTable, out: &CpuidTable, vendor: Vendor) {
    for (k, e) in base.iter() {
        let m = owned(vendor, k.leaf);
        if m == (CpuidRegs {
            eax: u32::MAX,
            ebx: u32::MAX,
            ecx: u32::MAX,
            edx: u32::MAX,
        }) {
            continue;
        }
        let o = out.get(*k).unwrap_or_else(|| panic!("{k} disappeared"));
        let keep = |b: u32, n: u32, m: u32| b & !m == n & !m;
        assert!(
            keep(e.regs.eax, o.regs.eax, m.eax)
                && keep(e.regs.ebx, o.regs.ebx, m.ebx)
                && keep(e.regs.ecx, o.regs.ecx, m.ecx)
                && keep(e.regs.edx, o.regs.edx, m.edx),
            "{k}: {:x?} -> {:x?}",
            e.regs,
            o.regs
        );
        assert_eq!(e.indexed, o.indexed, "{k}");
    }
    for (k, _) in out.iter() {
        assert!(
            base.get(*k).is_some() || matches!(k.leaf, 0xb | 0x1f),
            "unexpected new leaf {k}"
        );
    }
}

fn check_vcpu(base: &CpuidTable, topo: &CpuTopology, index: u32) -> Result<(), NormalizeError> {
    let n = Normalizer::new(base, topo)?;
    let t = n.for_vcpu(VcpuIndex(index))?;
    let vendor = n.vendor();
    assert_only_topology_changed(base, &t, vendor);
    let v = topology_view(&t).unwrap();
    let layout = topo.apic_layout();
    let p = topo.position(VcpuIndex(index)).unwrap();
    let apic = layout.apic_id(VcpuIndex(index)).unwrap().0;
    let expected_source = if vendor == Vendor::Intel && (topo.dies() > 1 || topo.modules() > 1) {
        TopologySource::Leaf1F
    } else {
        TopologySource::Leaf0B
    };
    assert_eq!(v.source, expected_source);
    assert_eq!(v.apic_id, apic);
    assert_eq!(v.package_id, p.socket);
    assert_eq!(v.die_id, p.die);
    assert_eq!(v.thread_id, p.thread);
    let pkg_local = apic & ((1u64 << layout.socket_shift()) - 1) as u32;
    assert_eq!(v.core_id, pkg_local >> layout.core_shift());
    assert_eq!(v.threads_per_core, topo.threads());
    assert_eq!(v.logical_per_package, topo.threads_per_socket());
    assert_eq!(v.cores_per_package, topo.cores_per_socket());
    assert_eq!(v.dies_per_package, topo.dies());
    assert_eq!(v.vendor, Some(vendor));
    // Leaf 0x1 carries the low 8 bits of the same APIC id.
    assert_eq!(t.regs(CpuidKey::leaf(1)).unwrap().ebx >> 24, apic & 0xff);
    Ok(())
}

#[test]
fn every_vcpu_of_a_matrix_decodes_to_its_place() {
    let t = |s, d, m, c, th, cpus| CpuTopology::new(s, d, m, c, th, cpus).unwrap();
    let topos = [
        t(1, 1, 1, 1, 1, 1),
        t(2, 1, 1, 2, 2, 8),
        t(2, 2, 1, 3, 1, 12),
        t(1, 1, 1, 3, 2, 6),
        t(1, 1, 2, 3, 2, 12),
        t(2, 3, 2, 3, 3, 30),
        t(2, 1, 1, 150, 1, 300),
    ];
    for base in [amd(), intel()] {
        for topo in &topos {
            for i in topo.slots() {
                check_vcpu(&base, topo, i.0).unwrap();
            }
        }
    }
}

#[test]
fn more_than_256_amd_cores_decode_through_leaf_0b() {
    // 0x8000_001E EBX[7:0] holds 8 bits of core id; leaf 0xB carries the full x2APIC id,
    // and that is what guests (and our decoder) read, so every vCPU is still in its place.
    let topo = CpuTopology::flat(300).unwrap();
    for vcpu in [0, 255, 256, 299] {
        check_vcpu(&amd(), &topo, vcpu).unwrap();
        check_vcpu(&intel(), &topo, vcpu).unwrap();
    }
    let t = Normalizer::new(&amd(), &topo)
        .unwrap()
        .for_vcpu(VcpuIndex(299))
        .unwrap();
    assert_eq!(
        t.regs(CpuidKey::leaf(0x8000_001e)).unwrap().ebx & 0xff,
        299 - 256
    );
}

#[test]
fn leaf_0b_subleaf_1_is_inserted_and_max_leaf_covers_1f() {
    let mut base = intel();
    base.remove(CpuidKey::subleaf(0xb, 1));
    base.remove(CpuidKey::subleaf(0xb, 2));
    let topo = CpuTopology::new(1, 2, 1, 4, 2, 16).unwrap();
    let t = Normalizer::new(&base, &topo)
        .unwrap()
        .for_vcpu(VcpuIndex(15))
        .unwrap();
    assert_eq!(
        t.regs(CpuidKey::subleaf(0xb, 1)).unwrap(),
        CpuidRegs {
            eax: 4,
            ebx: 16,
            ecx: 0x201,
            edx: 15
        }
    );
    assert_eq!(t.regs(CpuidKey::leaf(0)).unwrap().eax, 0x1f);
    assert_eq!(
        t.regs(CpuidKey::subleaf(0x1f, 2)).unwrap(),
        CpuidRegs {
            eax: 4,
            ebx: 16,
            ecx: 0x502,
            edx: 15
        }
    );
}

#[test]
fn host_sharing_never_leaks_into_guest_caches() {
    // The Intel host says 64 ids share L3 and 32 cores per package; a 1x2x1 guest must
    // see 2 ids on L3 and 2 cores.
    let topo = CpuTopology::flat(2).unwrap();
    let t = Normalizer::new(&intel(), &topo)
        .unwrap()
        .for_vcpu(VcpuIndex(1))
        .unwrap();
    let l3 = t.regs(CpuidKey::subleaf(4, 3)).unwrap().eax;
    assert_eq!((l3 >> 14) & 0xfff, 1);
    assert_eq!(l3 >> 26, 1);
    let l1 = t.regs(CpuidKey::subleaf(4, 0)).unwrap().eax;
    assert_eq!((l1 >> 14) & 0xfff, 0);
    let t = Normalizer::new(&amd(), &topo)
        .unwrap()
        .for_vcpu(VcpuIndex(1))
        .unwrap();
    let l3 = t.regs(CpuidKey::subleaf(0x8000_001d, 3)).unwrap().eax;
    assert_eq!((l3 >> 14) & 0xfff, 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn decode_inverts_normalize(
        sockets in 1u32..5, dies in 1u32..5, modules in 1u32..4, cores in 1u32..20,
        threads in 1u32..5, pick in any::<u32>(), is_amd in any::<bool>(),
    ) {
        let topo = CpuTopology::new(sockets, dies, modules, cores, threads, 1).unwrap();
        let base = if is_amd { amd() } else { intel() };
        if let Err(e) = check_vcpu(&base, &topo, pick % topo.max_cpus()) {
            prop_assert!(false, "{e}");
        }
    }
}

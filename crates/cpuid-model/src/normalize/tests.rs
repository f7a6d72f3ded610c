use super::*;

fn base(vendor: &[u8; 12], max: u32) -> CpuidTable {
    let w = |i: usize| u32::from_le_bytes([vendor[i], vendor[i + 1], vendor[i + 2], vendor[i + 3]]);
    let mut t = CpuidTable::new();
    let mut put = |leaf, sub, eax, ebx, ecx, edx| {
        t.insert(
            CpuidKey::subleaf(leaf, sub),
            CpuidEntry {
                regs: CpuidRegs { eax, ebx, ecx, edx },
                indexed: sub != 0 || leaf == 4 || leaf == 0x8000_001d,
            },
        )
    };
    put(0, 0, max, w(0), w(8), w(4));
    put(1, 0, 0x00b0_0f21, 0x0102_0800, 0xfffa_3203, 0x178b_fbff);
    put(4, 0, 0x1c00_4121, 0x01c0_003f, 0x3f, 0);
    put(4, 1, 0x1c00_4163, 0x03c0_003f, 0x3fff, 6);
    put(0x8000_0000, 0, 0x8000_001e, 0, 0, 0);
    put(0x8000_0001, 0, 0, 0, 0x0040_03f3, 0);
    put(0x8000_0008, 0, 0x3030, 0x5002_0005, 0x0001_7001, 0);
    put(0x8000_001d, 0, 0x121, 0x01c0_003f, 0x3f, 0);
    put(0x8000_001d, 1, 0x4163, 0x03c0_003f, 0x7fff, 1);
    put(0x8000_001e, 0, 1, 0x0000_0101, 0, 0);
    t
}

fn r(t: &CpuidTable, leaf: u32, sub: u32) -> CpuidRegs {
    t.regs(CpuidKey::subleaf(leaf, sub)).unwrap()
}

#[test]
fn intel_dies_get_leaf_1f_and_sharing() {
    let topo = CpuTopology::new(2, 2, 1, 3, 2, 24).unwrap();
    let n = Normalizer::new(&base(b"GenuineIntel", 0xd), &topo).unwrap();
    // vCPU 17: socket 1, die 0, core 2, thread 1 -> apic 1<<4 | 2<<1 | 1 = 0x15.
    let t = n.for_vcpu(VcpuIndex(17)).unwrap();
    assert_eq!(r(&t, 0, 0).eax, 0x1f);
    assert_eq!(r(&t, 1, 0).ebx, 0x1510_0800);
    assert_eq!(
        r(&t, 0xb, 0),
        CpuidRegs {
            eax: 1,
            ebx: 2,
            ecx: 0x100,
            edx: 0x15
        }
    );
    assert_eq!(
        r(&t, 0xb, 1),
        CpuidRegs {
            eax: 4,
            ebx: 12,
            ecx: 0x201,
            edx: 0x15
        }
    );
    assert_eq!(
        r(&t, 0xb, 2),
        CpuidRegs {
            eax: 0,
            ebx: 0,
            ecx: 2,
            edx: 0x15
        }
    );
    assert_eq!(
        r(&t, 0x1f, 1),
        CpuidRegs {
            eax: 3,
            ebx: 6,
            ecx: 0x201,
            edx: 0x15
        }
    );
    assert_eq!(
        r(&t, 0x1f, 2),
        CpuidRegs {
            eax: 4,
            ebx: 12,
            ecx: 0x502,
            edx: 0x15
        }
    );
    assert_eq!(r(&t, 0x1f, 3).ecx, 3);
    // L1: 2 threads share, 8 addressable cores per package; L3: 8 ids per die.
    assert_eq!(r(&t, 4, 0).eax, (7 << 26) | (1 << 14) | 0x121);
    assert_eq!(r(&t, 4, 1).eax, (7 << 26) | (7 << 14) | 0x163);
    // AMD leaves untouched on Intel.
    assert_eq!(r(&t, 0x8000_0008, 0).ecx, 0x0001_7001);
}

#[test]
fn amd_leaves_and_unrelated_bits() {
    let topo = CpuTopology::new(1, 1, 1, 3, 2, 6).unwrap();
    let b = base(b"AuthenticAMD", 0xd);
    let n = Normalizer::new(&b, &topo).unwrap();
    let t = n.for_vcpu(VcpuIndex(5)).unwrap(); // core 2, thread 1 -> apic 5
    assert_eq!(r(&t, 1, 0).ebx, 0x0508_0800);
    assert_eq!(r(&t, 1, 0).ecx, r(&b, 1, 0).ecx);
    assert_eq!(r(&t, 1, 0).edx, r(&b, 1, 0).edx | 1 << 28);
    assert_eq!(r(&t, 0x8000_0001, 0).ecx, 0x0040_03f3);
    assert_eq!(r(&t, 0x8000_0008, 0).ecx, 0x0001_3005);
    assert_eq!(r(&t, 0x8000_001d, 0).eax, 0x121 | 1 << 14);
    assert_eq!(r(&t, 0x8000_001d, 1).eax, 0x163 | 7 << 14);
    assert_eq!(
        r(&t, 0x8000_001e, 0),
        CpuidRegs {
            eax: 5,
            ebx: 0x102,
            ecx: 0,
            edx: 0
        }
    );
    // A leaf 4 in an AMD table (Hygon models, `vendor=` overrides) describes the guest
    // too: 4 addressable cores per package, 2 threads share L1 (was 8 cores, 2 threads).
    assert_eq!(r(&t, 4, 0).eax, 0x0c00_4121);
    assert!(t.get(CpuidKey::leaf(0x1f)).is_none());
}

#[test]
fn single_cpu_clears_htt_and_cmp_legacy() {
    let topo = CpuTopology::flat(1).unwrap();
    let mut b = base(b"AuthenticAMD", 0xd);
    b.get_mut(CpuidKey::leaf(0x8000_0001)).unwrap().regs.ecx |= 2;
    let t = Normalizer::new(&b, &topo)
        .unwrap()
        .for_vcpu(VcpuIndex(0))
        .unwrap();
    assert_eq!(r(&t, 1, 0).edx & 1 << 28, 0);
    assert_eq!(r(&t, 0x8000_0001, 0).ecx & 2, 0);
    assert_eq!(r(&t, 1, 0).ebx, 0x0001_0800);
}

#[test]
fn errors() {
    let topo = CpuTopology::flat(4).unwrap();
    assert_eq!(
        Normalizer::new(&CpuidTable::new(), &topo).unwrap_err(),
        NormalizeError::MissingLeaf0
    );
    assert_eq!(
        Normalizer::new(&base(b"VIA VIA VIA ", 1), &topo).unwrap_err().to_string(),
        "cannot normalize CPUID for vendor \"VIA VIA VIA \": only GenuineIntel, AuthenticAMD and HygonGenuine are known"
    );
    let n = Normalizer::new(&base(b"GenuineIntel", 1), &topo).unwrap();
    let e = n.for_vcpu(VcpuIndex(4)).unwrap_err();
    assert_eq!(e.to_string(), "cannot compute CPUID for vCPU 4");
    assert!(std::error::Error::source(&e).is_some());
    let big = CpuTopology::flat(300).unwrap();
    // 300 cores per socket: the 8-bit AMD core id keeps its low bits, leaf 0xB is exact.
    let amd = Normalizer::new(&base(b"AuthenticAMD", 1), &big).unwrap();
    let t = amd.for_vcpu(VcpuIndex(299)).unwrap();
    assert_eq!(t.regs(CpuidKey::subleaf(0xb, 0)).unwrap().edx, 299);
    if let Some(r) = t.regs(CpuidKey::leaf(0x8000_001e)) {
        assert_eq!(r.ebx & 0xff, 299 & 0xff);
    }
    assert!(Normalizer::new(&base(b"GenuineIntel", 1), &big).is_ok());
    let dies = CpuTopology::new(1, 9, 1, 1, 1, 9).unwrap();
    assert_eq!(
        Normalizer::new(&base(b"AuthenticAMD", 1), &dies).unwrap_err().to_string(),
        "cannot encode AMD leaf 0x8000001e: 9 dies per socket and 1 sockets exceed 8 nodes per package or 256 node ids"
    );
}

/// 0x8000_001E ECX of every vCPU slot.
fn ext_ecx(n: &Normalizer, topo: &CpuTopology) -> Vec<u32> {
    (0..topo.max_cpus())
        .map(|i| r(&n.for_vcpu(VcpuIndex(i)).unwrap(), 0x8000_001e, 0).ecx)
        .collect()
}

#[test]
fn amd_node_ids_follow_numa_nodes() {
    // (smp as sockets, dies, cores, threads, maxcpus; node of each slot; ECX per slot)
    type Row = ((u32, u32, u32, u32, u32), &'static [u32], &'static [u32]);
    let rows: &[Row] = &[
        // One node per socket: node id = socket, one node per processor.
        (
            (2, 1, 2, 1, 4),
            &[0, 0, 1, 1],
            &[0x000, 0x000, 0x001, 0x001],
        ),
        // Uneven: both sockets hold nodes 0 and 1 -> two nodes per processor.
        (
            (2, 1, 2, 1, 4),
            &[0, 1, 1, 0],
            &[0x100, 0x101, 0x101, 0x100],
        ),
        // Two nodes in socket 0, one in socket 1: the field is per socket.
        (
            (2, 1, 2, 1, 4),
            &[0, 1, 2, 2],
            &[0x100, 0x101, 0x002, 0x002],
        ),
        // One node spanning both sockets.
        ((2, 1, 2, 1, 4), &[0, 0, 0, 0], &[0, 0, 0, 0]),
        // Node ids need not follow dies: 2 dies, nodes split across them.
        (
            (1, 2, 2, 1, 4),
            &[3, 2, 1, 0],
            &[0x303, 0x302, 0x301, 0x300],
        ),
        // Nine nodes in one socket: 3-bit field clamped to 7; node 8 kept.
        (
            (1, 1, 9, 1, 9),
            &[0, 1, 2, 3, 4, 5, 6, 7, 8],
            &[
                0x700, 0x701, 0x702, 0x703, 0x704, 0x705, 0x706, 0x707, 0x708,
            ],
        ),
        // Node 255 is the largest id the field holds.
        ((1, 1, 2, 1, 2), &[255, 0], &[0x1ff, 0x100]),
    ];
    let b = base(b"AuthenticAMD", 0xd);
    for &((s, d, c, t, max), nodes, want) in rows {
        let topo = CpuTopology::new(s, d, 1, c, t, max).unwrap();
        let n = Normalizer::with_numa_nodes(&b, &topo, nodes).unwrap();
        assert_eq!(ext_ecx(&n, &topo), want, "{s}s {d}d {c}c nodes {nodes:?}");
        for (i, &node) in nodes.iter().enumerate() {
            let i = VcpuIndex(i as u32);
            assert_eq!(n.numa_node(i), Some(node));
            assert_eq!(amd::node_id(&n.for_vcpu(i).unwrap()), Some(node));
        }
    }
}

#[test]
fn numa_nodes_change_only_the_amd_node_fields() {
    let topo = CpuTopology::new(2, 2, 1, 3, 2, 24).unwrap();
    let nodes: Vec<u32> = (0..24).map(|i| (i * 5) % 3).collect();
    for vendor in [b"AuthenticAMD", b"GenuineIntel"] {
        let b = base(vendor, 0xd);
        let plain = Normalizer::new(&b, &topo).unwrap();
        let numa = Normalizer::with_numa_nodes(&b, &topo, &nodes).unwrap();
        for i in 0..24 {
            let (p, n) = (
                plain.for_vcpu(VcpuIndex(i)).unwrap(),
                numa.for_vcpu(VcpuIndex(i)).unwrap(),
            );
            for ((pk, pe), (nk, ne)) in p.iter().zip(n.iter()) {
                assert_eq!(pk, nk);
                let mut want = pe.regs;
                if vendor == b"AuthenticAMD" && pk.leaf == 0x8000_001e {
                    want.ecx = (want.ecx & !0x7ff) | 0x200 | nodes[i as usize];
                }
                assert_eq!(ne.regs, want, "{vendor:?} vCPU {i} {pk:?}");
            }
        }
    }
}

#[test]
fn numa_node_errors() {
    let topo = CpuTopology::new(2, 1, 1, 2, 1, 4).unwrap();
    let amd_base = base(b"AuthenticAMD", 0xd);
    let intel_base = base(b"GenuineIntel", 0xd);
    let rows: &[(&CpuidTable, &[u32], &str)] = &[
        (
            &amd_base,
            &[0, 1, 2],
            "cannot normalize CPUID: 3 NUMA node entries given for 4 vCPU slots (one per slot up to maxcpus)",
        ),
        (
            &intel_base,
            &[0, 0, 0, 0, 0],
            "cannot normalize CPUID: 5 NUMA node entries given for 4 vCPU slots (one per slot up to maxcpus)",
        ),
        (
            &amd_base,
            &[0, 0, 256, 1],
            "cannot encode AMD leaf 0x8000001e: vCPU 2 is on NUMA node 256, the node id field holds 0 to 255",
        ),
    ];
    for (b, nodes, want) in rows {
        let e = Normalizer::with_numa_nodes(b, &topo, nodes).unwrap_err();
        assert_eq!(e.to_string(), *want);
    }
    // Intel has no CPUID node id: any node number is accepted and changes nothing.
    let n = Normalizer::with_numa_nodes(&intel_base, &topo, &[0, 0, 256, 1]).unwrap();
    assert_eq!(n.numa_node(VcpuIndex(2)), Some(256));
    assert_eq!(amd::node_id(&n.for_vcpu(VcpuIndex(2)).unwrap()), None);
    // Nine dies exceed the die-based encoding, not the NUMA one.
    let dies = CpuTopology::new(1, 9, 1, 1, 1, 9).unwrap();
    assert!(Normalizer::new(&amd_base, &dies).is_err());
    let n = Normalizer::with_numa_nodes(&amd_base, &dies, &[0, 0, 0, 1, 1, 1, 2, 2, 2]).unwrap();
    assert_eq!(ext_ecx(&n, &dies)[8], 0x202);
}

#[test]
fn node_id_needs_amd_topoext_and_the_leaf() {
    let topo = CpuTopology::flat(2).unwrap();
    let b = base(b"AuthenticAMD", 0xd);
    let t = Normalizer::new(&b, &topo)
        .unwrap()
        .for_vcpu(VcpuIndex(1))
        .unwrap();
    assert_eq!(amd::node_id(&t), Some(0));
    let mut no_topoext = t.clone();
    no_topoext
        .get_mut(CpuidKey::leaf(0x8000_0001))
        .unwrap()
        .regs
        .ecx &= !amd::TOPOEXT;
    assert_eq!(amd::node_id(&no_topoext), None);
    let mut short = t.clone();
    short.get_mut(CpuidKey::leaf(0x8000_0000)).unwrap().regs.eax = 0x8000_001d;
    assert_eq!(amd::node_id(&short), None);
    let intel = Normalizer::new(&base(b"GenuineIntel", 0xd), &topo)
        .unwrap()
        .for_vcpu(VcpuIndex(1))
        .unwrap();
    assert_eq!(amd::node_id(&intel), None);
}

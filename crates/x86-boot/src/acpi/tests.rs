use super::*;
use crate::platform::byte_sum;
use cpu_topology::{CpuTopology, VcpuIndex};
use std::collections::BTreeMap;
use vm_memory::GuestMemoryMmap;

const GIB: u64 = 1 << 30;

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// Slots of a topology, node = socket.
fn topology_cpus(topo: &CpuTopology) -> Vec<CpuEntry> {
    let layout = topo.apic_layout();
    (0..topo.max_cpus())
        .map(|i| CpuEntry {
            apic_id: layout.apic_id(VcpuIndex(i)).unwrap().0,
            present: i < topo.cpus(),
            node: topo.position(VcpuIndex(i)).unwrap().socket,
        })
        .collect()
}

/// 2 sockets x 4 cores x 2 threads = 16 slots, 8 present, node = socket.
fn two_socket_config() -> AcpiConfig {
    let topo = CpuTopology::new(2, 1, 1, 4, 2, 8).unwrap();
    AcpiConfig {
        cpus: topology_cpus(&topo),
        ioapic: IoApicConfig::default(),
        numa: Some(NumaConfig {
            memory: vec![
                MemoryRange {
                    start: 0,
                    size: 2 * GIB,
                    node: 0,
                },
                MemoryRange {
                    start: 4 * GIB,
                    size: 2 * GIB,
                    node: 1,
                },
            ],
            distances: Some(vec![vec![10, 21], vec![21, 10]]),
        }),
        hotplug: Some(CpuHotplugConfig::default()),
        power: Some(PowerConfig::default()),
        serial: Some(IsaSerialConfig::COM1),
    }
}

/// COM1 is a PNP0501 device whose _CRS gives Linux IRQ 4 and ports 0x3f8..0x3ff: under
/// hardware-reduced ACPI there are no legacy IRQs, and without it the 8250 driver cannot
/// get its interrupt (user space then reads EIO from the console).
#[test]
fn com1_is_a_pnp0501_device_with_irq_4_and_its_ports() {
    let tables = build_acpi(&two_socket_config(), &AcpiLayout::default()).unwrap();
    let dsdt = &tables.table(b"DSDT").unwrap().bytes;
    let has = |needle: &[u8]| dsdt.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"COM1"));
    // EisaId ("PNP0501") as a DWordConst.
    assert!(has(&[0x0c, 0x41, 0xd0, 0x05, 0x01]));
    // Extended IRQ descriptor: consumer, edge, active high, exclusive, GSI 4.
    assert!(has(&[0x89, 0x06, 0x00, 0x03, 0x01, 0x04, 0x00, 0x00, 0x00]));
    // I/O descriptor: decode16, 0x3f8..0x3f8, alignment 1, 8 ports.
    assert!(has(&[0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08]));
    let without = AcpiConfig {
        serial: None,
        ..two_socket_config()
    };
    let tables = build_acpi(&without, &AcpiLayout::default()).unwrap();
    let dsdt = &tables.table(b"DSDT").unwrap().bytes;
    assert!(!dsdt.windows(4).any(|w| w == b"COM1"));
}

fn memory() -> GuestMemoryMmap {
    GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
}

/// Read a table at `addr` back from guest memory, checking length and checksum.
fn read_table(mem: &GuestMemoryMmap, addr: u64) -> Vec<u8> {
    let mut hdr = [0u8; 36];
    mem.read_slice(&mut hdr, GuestAddress(addr)).unwrap();
    let len = u32_at(&hdr, 4) as usize;
    assert!(len >= 36);
    let mut t = vec![0u8; len];
    mem.read_slice(&mut t, GuestAddress(addr)).unwrap();
    assert_eq!(
        byte_sum(&t),
        0,
        "checksum of {}",
        String::from_utf8_lossy(&t[0..4])
    );
    assert_eq!(&t[10..16], b"KVMCPU");
    t
}

/// Follow RSDP -> XSDT -> tables, as the guest does; returns tables by signature.
fn walk(mem: &GuestMemoryMmap, rsdp_addr: u64) -> BTreeMap<String, (u64, Vec<u8>)> {
    let mut rsdp = [0u8; 36];
    mem.read_slice(&mut rsdp, GuestAddress(rsdp_addr)).unwrap();
    assert_eq!(&rsdp[0..8], b"RSD PTR ");
    assert_eq!(byte_sum(&rsdp[0..20]), 0, "RSDP checksum");
    assert_eq!(byte_sum(&rsdp), 0, "RSDP extended checksum");
    assert_eq!(rsdp[15], 2, "RSDP revision");
    assert_eq!(u32_at(&rsdp, 20), 36);
    let xsdt = read_table(mem, u64_at(&rsdp, 24));
    assert_eq!(&xsdt[0..4], b"XSDT");
    let mut out = BTreeMap::new();
    for i in 0..(xsdt.len() - 36) / 8 {
        let addr = u64_at(&xsdt, 36 + 8 * i);
        let t = read_table(mem, addr);
        out.insert(String::from_utf8_lossy(&t[0..4]).into_owned(), (addr, t));
    }
    let fadt = &out["FACP"].1;
    let dsdt_addr = u64_at(fadt, 140);
    out.insert("DSDT".into(), (dsdt_addr, read_table(mem, dsdt_addr)));
    out
}

/// MADT processor structures as (type, uid, apic id, flags).
fn madt_processors(madt: &[u8]) -> Vec<(u8, u32, u32, u32)> {
    let mut out = vec![];
    let mut off = 44;
    while off < madt.len() {
        let (kind, len) = (madt[off], madt[off + 1] as usize);
        let e = &madt[off..off + len];
        match kind {
            0 => out.push((0, e[2] as u32, e[3] as u32, u32_at(e, 4))),
            9 => out.push((9, u32_at(e, 12), u32_at(e, 4), u32_at(e, 8))),
            _ => {}
        }
        off += len;
    }
    assert_eq!(off, madt.len(), "MADT structures fill the table exactly");
    out
}

fn madt_types(madt: &[u8]) -> Vec<u8> {
    let mut out = vec![];
    let mut off = 44;
    while off < madt.len() {
        out.push(madt[off]);
        off += madt[off + 1] as usize;
    }
    out
}

#[test]
fn two_sockets_eight_present_eight_hotpluggable() {
    let config = two_socket_config();
    let mem = memory();
    let tables = write_acpi(&mem, &config, &AcpiLayout::default()).unwrap();
    assert_eq!(tables.rsdp_addr, GuestAddress(0xe0000));
    let all = walk(&mem, 0xe0000);
    assert_eq!(
        all.keys().cloned().collect::<Vec<_>>(),
        ["APIC", "DSDT", "FACP", "SLIT", "SRAT"]
    );
    for t in &tables.tables {
        assert!(t.addr.0 >= 0xa0000 && t.addr.0 + t.bytes.len() as u64 <= 0xe0000);
    }

    // FADT: revision 6, hardware-reduced, DSDT through X_DSDT.
    let fadt = &all["FACP"].1;
    assert_eq!(fadt[8], 6);
    assert_eq!(fadt.len(), 276);
    assert_ne!(u32_at(fadt, 112) & (1 << 20), 0, "HW_REDUCED_ACPI");
    assert_eq!(u64_at(fadt, 140), tables.table(b"DSDT").unwrap().addr.0);

    // MADT: revision 5, UID = slot, ids from the topology, flags.
    let madt = &all["APIC"].1;
    assert_eq!(madt[8], 5);
    assert_eq!(u32_at(madt, 36), 0xfee0_0000);
    let procs = madt_processors(madt);
    let want: Vec<_> = config
        .cpus
        .iter()
        .enumerate()
        .map(|(i, c)| (0u8, i as u32, c.apic_id, if c.present { 1 } else { 2 }))
        .collect();
    assert_eq!(procs, want);
    // APIC ids of the packed layout: socket at bit 3.
    assert_eq!(procs[8].2, 8);
    assert_eq!(procs.iter().filter(|p| p.3 == 1).count(), 8);
    assert_eq!(procs.iter().filter(|p| p.3 == 2).count(), 8);
    let types = madt_types(madt);
    assert_eq!(&types[16..], &[1, 2, 4], "IOAPIC, IRQ0 override, LAPIC NMI");

    // SRAT: every slot (hot-pluggable too) enabled on its socket's node.
    let srat = &all["SRAT"].1;
    assert_eq!(srat[8], 3);
    assert_eq!(u32_at(srat, 36), 1);
    let mut cpus = vec![];
    let mut mems = vec![];
    let mut off = 48;
    while off < srat.len() {
        let e = &srat[off..off + srat[off + 1] as usize];
        match e[0] {
            0 => {
                let node = e[2] as u32 | (u32::from(e[9]) << 8);
                assert_eq!(u32_at(e, 4), 1);
                cpus.push((e[3] as u32, node));
            }
            1 => {
                assert_eq!(u32_at(e, 28), 1);
                mems.push((u64_at(e, 8), u64_at(e, 16), u32_at(e, 2)));
            }
            t => panic!("unexpected SRAT type {t}"),
        }
        off += e.len();
    }
    let want: Vec<_> = config.cpus.iter().map(|c| (c.apic_id, c.node)).collect();
    assert_eq!(cpus, want);
    assert!(cpus[..8].iter().all(|c| c.1 == 0) && cpus[8..].iter().all(|c| c.1 == 1));
    assert_eq!(mems, vec![(0, 2 * GIB, 0), (4 * GIB, 2 * GIB, 1)]);

    // SLIT.
    let slit = &all["SLIT"].1;
    assert_eq!(u64_at(slit, 36), 2);
    assert_eq!(&slit[44..], &[10, 21, 21, 10]);

    // DSDT: revision 2, one device per slot.
    let dsdt = &all["DSDT"].1;
    assert_eq!(dsdt[8], 2);
    let body = &dsdt[36..];
    for i in 0..16 {
        let name = cpu_device_name(i);
        assert!(body.windows(4).any(|w| w == name.as_bytes()), "{name}");
    }
    assert!(body.windows(8).any(|w| w == b"ACPI0013"));
}

#[test]
fn three_hundred_cpus_use_x2apic_where_needed() {
    // 300 slots, 256 present; ids 255.. do not fit xAPIC.
    let topo = CpuTopology::new(1, 1, 1, 300, 1, 256).unwrap();
    let config = AcpiConfig {
        cpus: topology_cpus(&topo),
        hotplug: Some(CpuHotplugConfig::default()),
        ..Default::default()
    };
    let mem = memory();
    let tables = write_acpi(&mem, &config, &AcpiLayout::default()).unwrap();
    let all = walk(&mem, tables.rsdp_addr.0);
    assert!(!all.contains_key("SRAT") && !all.contains_key("SLIT"));
    let madt = &all["APIC"].1;
    let procs = madt_processors(madt);
    assert_eq!(procs.len(), 300);
    for (i, (kind, uid, id, flags)) in procs.iter().enumerate() {
        assert_eq!(*uid, i as u32);
        assert_eq!(*id, config.cpus[i].apic_id);
        assert_eq!(*kind, if i < 255 { 0 } else { 9 }, "slot {i}");
        assert_eq!(*flags, if i < 256 { 1 } else { 2 });
    }
    let types = madt_types(madt);
    assert!(types.contains(&4) && types.contains(&0xa), "both NMI kinds");
}

#[test]
fn without_hotplug_sta_is_static_and_no_ged() {
    let config = AcpiConfig {
        cpus: vec![CpuEntry::new(0, true), CpuEntry::new(1, true)],
        ..Default::default()
    };
    let tables = build_acpi(&config, &AcpiLayout::default()).unwrap();
    let dsdt = &tables.table(b"DSDT").unwrap().bytes;
    assert!(!dsdt.windows(8).any(|w| w == b"ACPI0013"));
    assert!(!dsdt.windows(4).any(|w| w == b"PRST"));
    assert!(dsdt.windows(8).any(|w| w == b"ACPI0007"));
}

type Mutation = Box<dyn Fn(&mut AcpiConfig)>;

#[test]
fn config_errors() {
    let ok = two_socket_config();
    let rows: Vec<(Mutation, &str)> = vec![
        (Box::new(|c| c.cpus.clear()), "ACPI tables need at least one CPU"),
        (
            Box::new(|c| c.cpus.iter_mut().for_each(|x| x.present = false)),
            "ACPI tables need at least one present CPU",
        ),
        (
            Box::new(|c| c.cpus[3].apic_id = c.cpus[1].apic_id),
            "APIC id 1 is used by CPU slots 1 and 3",
        ),
        (
            Box::new(|c| c.cpus[2].apic_id = u32::MAX),
            "CPU slot 2 has the invalid APIC id 0xffffffff",
        ),
        (
            Box::new(|c| c.cpus = (0..4097).map(|i| CpuEntry::new(i, true)).collect()),
            "4097 CPU slots exceed the supported 4096",
        ),
        (
            Box::new(|c| c.numa.as_mut().unwrap().memory.clear()),
            "NUMA configuration has no memory ranges",
        ),
        (
            Box::new(|c| c.numa.as_mut().unwrap().memory[1].size = 0),
            "NUMA memory range at 0x100000000 has size 0",
        ),
        (
            Box::new(|c| c.numa.as_mut().unwrap().memory[1].start = GIB),
            "NUMA memory ranges at 0x0 and 0x40000000 overlap",
        ),
        (
            Box::new(|c| c.numa.as_mut().unwrap().distances = Some(vec![vec![10, 20]])),
            "distance matrix row 1 has 1 entries, expected 2 (one per node)",
        ),
        (
            Box::new(|c| {
                c.numa.as_mut().unwrap().distances = Some(vec![vec![10, 20], vec![20]])
            }),
            "distance matrix row 1 has 1 entries, expected 2 (one per node)",
        ),
        (
            Box::new(|c| {
                c.numa.as_mut().unwrap().distances = Some(vec![vec![10, 20], vec![20, 11]])
            }),
            "distance from node 1 to node 1 is 11: local distances must be 10, remote ones 11..=255",
        ),
        (
            Box::new(|c| {
                c.numa.as_mut().unwrap().distances = Some(vec![vec![10, 10], vec![20, 10]])
            }),
            "distance from node 0 to node 1 is 10: local distances must be 10, remote ones 11..=255",
        ),
        (
            Box::new(|c| c.power.as_mut().unwrap().button_gsi = Some(GED_DEFAULT_GSI)),
            "the CPU hot-plug and power button events both use GSI 5",
        ),
        (
            Box::new(|c| c.power.as_mut().unwrap().io_base = HOTPLUG_DEFAULT_IO_BASE + 11),
            "power registers at port 0xce3 overlap the CPU hot-plug block or end beyond 0xffff",
        ),
        (
            Box::new(|c| c.power.as_mut().unwrap().io_base = HOTPLUG_DEFAULT_IO_BASE - 2),
            "power registers at port 0xcd6 overlap the CPU hot-plug block or end beyond 0xffff",
        ),
        (
            Box::new(|c| c.power.as_mut().unwrap().io_base = 0xfffe),
            "power registers at port 0xfffe overlap the CPU hot-plug block or end beyond 0xffff",
        ),
    ];
    for (mutate, msg) in rows {
        let mut c = ok.clone();
        mutate(&mut c);
        assert_eq!(
            build_acpi(&c, &AcpiLayout::default())
                .unwrap_err()
                .to_string(),
            msg
        );
    }
    let small = AcpiLayout {
        tables_start: 0xa0000,
        tables_end: 0xa0100,
        ..Default::default()
    };
    let err = build_acpi(&ok, &small).unwrap_err().to_string();
    assert!(
        err.starts_with("ACPI tables need ")
            && err.ends_with("the area 0xa0000..0xa0100 holds 256"),
        "{err}"
    );
    let bad = AcpiLayout {
        rsdp_addr: 0xe0004,
        ..Default::default()
    };
    assert_eq!(
        build_acpi(&ok, &bad).unwrap_err().to_string(),
        "RSDP address 0xe0004 is not 16-byte aligned"
    );
    let reversed = AcpiLayout {
        tables_start: 0xe0000,
        tables_end: 0xa0000,
        ..Default::default()
    };
    assert_eq!(
        build_acpi(&ok, &reversed).unwrap_err().to_string(),
        "invalid ACPI table area 0xe0000..0xa0000"
    );
    let huge = AcpiLayout {
        tables_start: u64::MAX - 8,
        tables_end: u64::MAX,
        ..Default::default()
    };
    assert!(matches!(
        build_acpi(&ok, &huge),
        Err(AcpiError::InvalidArea { .. })
    ));
    let overlap = AcpiLayout {
        rsdp_addr: 0xa0040,
        ..Default::default()
    };
    let err = build_acpi(&ok, &overlap).unwrap_err().to_string();
    assert!(
        err.starts_with("RSDP at 0xa0040 overlaps the ACPI tables at 0xa0000.."),
        "{err}"
    );
    let tiny = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
    assert_eq!(
        write_acpi(&tiny, &ok, &AcpiLayout::default())
            .unwrap_err()
            .to_string(),
        "failed to write ACPI table RSD  at 0xe0000"
    );
}

#[test]
fn default_distances_are_ten_and_twenty() {
    let mut c = two_socket_config();
    c.numa.as_mut().unwrap().distances = None;
    let t = build_acpi(&c, &AcpiLayout::default()).unwrap();
    assert_eq!(&t.table(b"SLIT").unwrap().bytes[44..], &[10, 20, 20, 10]);
}

/// A Generic Address Structure at `o`: (space, bit width, bit offset, access size, address).
fn gas_at(b: &[u8], o: usize) -> (u8, u8, u8, u8, u64) {
    (b[o], b[o + 1], b[o + 2], b[o + 3], u64_at(b, o + 4))
}

/// ACPI 6.5 table 5.9 offsets.
const FADT_FLAGS: usize = 112;
const FADT_RESET_REG: usize = 116;
const FADT_RESET_VALUE: usize = 128;
const FADT_SLEEP_CONTROL_REG: usize = 244;
const FADT_SLEEP_STATUS_REG: usize = 256;
const RESET_REG_SUP: u32 = 1 << 10;

#[test]
fn fadt_names_the_power_registers() {
    let t = build_acpi(&two_socket_config(), &AcpiLayout::default()).unwrap();
    let fadt = &t.table(b"FACP").unwrap().bytes;
    assert_eq!(fadt.len(), 276);
    assert_eq!(byte_sum(fadt), 0);
    let flags = u32_at(fadt, FADT_FLAGS);
    assert_ne!(flags & RESET_REG_SUP, 0, "RESET_REG_SUP");
    assert_ne!(flags & (1 << 20), 0, "HW_REDUCED_ACPI");
    assert_ne!(flags & (1 << 4), 0, "PWR_BUTTON: no fixed power button");
    // SystemIO, 8 bits at bit 0, byte access.
    assert_eq!(gas_at(fadt, FADT_RESET_REG), (1, 8, 0, 1, 0x3c2));
    assert_eq!(fadt[FADT_RESET_VALUE], power::RESET_VALUE);
    assert_eq!(gas_at(fadt, FADT_SLEEP_CONTROL_REG), (1, 8, 0, 1, 0x3c0));
    assert_eq!(gas_at(fadt, FADT_SLEEP_STATUS_REG), (1, 8, 0, 1, 0x3c1));

    // Elsewhere: other ports.
    let mut c = two_socket_config();
    c.power = Some(PowerConfig {
        io_base: 0x600,
        button_gsi: None,
    });
    let t = build_acpi(&c, &AcpiLayout::default()).unwrap();
    let fadt = &t.table(b"FACP").unwrap().bytes;
    assert_eq!(gas_at(fadt, FADT_RESET_REG).4, 0x602);
    assert_eq!(gas_at(fadt, FADT_SLEEP_CONTROL_REG).4, 0x600);
    assert_eq!(gas_at(fadt, FADT_SLEEP_STATUS_REG).4, 0x601);
}

#[test]
fn without_power_the_fadt_has_no_sleep_or_reset_register() {
    let mut c = two_socket_config();
    c.power = None;
    let t = build_acpi(&c, &AcpiLayout::default()).unwrap();
    let fadt = &t.table(b"FACP").unwrap().bytes;
    assert_eq!(u32_at(fadt, FADT_FLAGS) & RESET_REG_SUP, 0);
    for o in [
        FADT_RESET_REG,
        FADT_SLEEP_CONTROL_REG,
        FADT_SLEEP_STATUS_REG,
    ] {
        assert_eq!(gas_at(fadt, o), (0, 0, 0, 0, 0), "offset {o}");
    }
    let dsdt = &t.table(b"DSDT").unwrap().bytes;
    assert!(!dsdt.windows(4).any(|w| w == b"_S5_"));
    assert!(!dsdt.windows(4).any(|w| w == b"PWRB"));
}

/// `Name (\_S5_, Package (4) { 5, 0, 0, 0 })` in AML.
const S5_AML: [u8; 14] = [
    0x08, b'\\', b'_', b'S', b'5', b'_', 0x12, 0x07, 0x04, 0x0a, 0x05, 0x00, 0x00, 0x00,
];

/// The GED `_CRS` interrupts: GSIs of the Extended Interrupt descriptors, in order,
/// each checked for consumer, edge, active high, exclusive.
fn ged_gsis(dsdt: &[u8]) -> Vec<u32> {
    dsdt.windows(9)
        .filter(|w| w[0] == 0x89 && w[1] == 6 && w[2] == 0)
        .map(|w| {
            assert_eq!(
                w[3], 0b0011,
                "flags: consumer, edge, active high, exclusive"
            );
            assert_eq!(w[4], 1, "one interrupt per descriptor");
            u32::from_le_bytes(w[5..9].try_into().unwrap())
        })
        .collect()
}

#[test]
fn dsdt_power_objects_follow_the_config() {
    // Without COM1, whose IRQ descriptor `ged_gsis` would also count.
    let base = AcpiConfig {
        serial: None,
        ..two_socket_config()
    };
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    let dsdt_of = |mutate: &dyn Fn(&mut AcpiConfig)| {
        let mut c = base.clone();
        mutate(&mut c);
        build_acpi(&c, &AcpiLayout::default())
            .unwrap()
            .table(b"DSDT")
            .unwrap()
            .bytes
            .clone()
    };
    // PNP0C0C as an EISA id.
    let pnp0c0c = [0x41, 0xd0, 0x0c, 0x0c];

    // Hot-plug and button: both interrupts, S5, PWRB.
    let both = dsdt_of(&|_| {});
    assert!(contains(&both, &S5_AML));
    assert!(contains(&both, b"PWRB") && contains(&both, &pnp0c0c));
    assert!(contains(&both, b"ACPI0013"));
    assert_eq!(ged_gsis(&both), [5, 6]);

    // Button only: the GED exists for it alone.
    let button = dsdt_of(&|c| c.hotplug = None);
    assert!(contains(&button, b"ACPI0013") && contains(&button, b"PWRB"));
    assert_eq!(ged_gsis(&button), [6]);
    assert!(!contains(&button, b"CSCN"));

    // Hot-plug only, no button: S5 stays, PWRB goes.
    let hotplug = dsdt_of(&|c| c.power.as_mut().unwrap().button_gsi = None);
    assert!(contains(&hotplug, &S5_AML));
    assert!(!contains(&hotplug, b"PWRB"));
    assert_eq!(ged_gsis(&hotplug), [5]);

    // Neither: no GED.
    let neither = dsdt_of(&|c| {
        c.hotplug = None;
        c.power.as_mut().unwrap().button_gsi = None;
    });
    assert!(!contains(&neither, b"ACPI0013"));
    assert!(ged_gsis(&neither).is_empty());
}

proptest::proptest! {
    /// Any slot list: every table sums to 0 and the MADT lists each slot once
    /// with its id, UID and flags.
    #[test]
    fn every_table_checksums_and_madt_matches(
        slots in proptest::collection::vec((0u32..4, proptest::bool::ANY), 1..300),
        numa in proptest::bool::ANY,
    ) {
        let mut cpus: Vec<CpuEntry> = Vec::new();
        let mut next = 0;
        for (gap, present) in &slots {
            next += 1 + gap;
            cpus.push(CpuEntry { apic_id: next, present: *present, node: next % 2 });
        }
        cpus[0].present = true;
        let config = AcpiConfig {
            cpus: cpus.clone(),
            numa: numa.then(|| NumaConfig {
                memory: vec![
                    MemoryRange { start: 0, size: GIB, node: 0 },
                    MemoryRange { start: GIB, size: GIB, node: 1 },
                ],
                distances: None,
            }),
            hotplug: Some(CpuHotplugConfig::default()),
            ..Default::default()
        };
        let t = build_acpi(&config, &AcpiLayout::default()).unwrap();
        proptest::prop_assert_eq!(byte_sum(&t.rsdp), 0);
        for table in &t.tables {
            proptest::prop_assert_eq!(byte_sum(&table.bytes), 0);
            proptest::prop_assert_eq!(u32_at(&table.bytes, 4) as usize, table.bytes.len());
        }
        let procs = madt_processors(&t.table(b"APIC").unwrap().bytes);
        proptest::prop_assert_eq!(procs.len(), cpus.len());
        for (i, (kind, uid, id, flags)) in procs.into_iter().enumerate() {
            proptest::prop_assert_eq!(uid, i as u32);
            proptest::prop_assert_eq!(id, cpus[i].apic_id);
            proptest::prop_assert_eq!(kind == 9, uses_x2apic(i, id));
            proptest::prop_assert_eq!(flags, if cpus[i].present { 1 } else { 2 });
        }
    }
}

/// What kvm-unit-tests' s3 reads: the FACS through the FADT's 32-bit
/// `FIRMWARE_CTRL`, and the PM1a blocks through the 32-bit port fields.
#[test]
fn pm1_tables_give_a_facs_and_the_pm1_blocks() {
    let mut c = two_socket_config();
    c.power = None;
    let mem = memory();
    let pm1 = Pm1Config::default();
    let t = write_acpi_with_pm1(&mem, &c, &pm1, &AcpiLayout::default()).unwrap();
    let all = walk(&mem, t.rsdp_addr.0);
    let fadt = &all["FACP"].1;
    assert_eq!(
        u32_at(fadt, FADT_FLAGS) & (1 << 20),
        0,
        "not hardware-reduced"
    );
    let facs_addr = u64::from(u32_at(fadt, 36));
    assert_eq!(facs_addr % 64, 0);
    assert_eq!(
        u64_at(fadt, 132),
        0,
        "X_FIRMWARE_CTRL: the 32-bit field is used"
    );
    assert_eq!(u64::from(u32_at(fadt, 40)), all["DSDT"].0, "32-bit DSDT");
    let mut facs = [0u8; 64];
    mem.read_slice(&mut facs, GuestAddress(facs_addr)).unwrap();
    assert_eq!((&facs[..4], u32_at(&facs, 4)), (&b"FACS"[..], 64));
    // SCI_INT, PM1a_EVT_BLK, PM1a_CNT_BLK, PM1_EVT_LEN, PM1_CNT_LEN.
    assert_eq!(u16::from_le_bytes([fadt[46], fadt[47]]), 9);
    assert_eq!((u32_at(fadt, 56), u32_at(fadt, 64)), (0x600, 0x604));
    assert_eq!((fadt[88], fadt[89]), (4, 2));
    // PM_TMR_BLK and PM_TMR_LEN (vmexit's inl_pmtimer reads the 32-bit field).
    assert_eq!((u32_at(fadt, 76), fadt[91]), (0x608, 4));
    assert_eq!(gas_at(fadt, 208), (1, 32, 0, 3, 0x608), "X_PM_TMR_BLK");
    assert_eq!(u32_at(fadt, 48), 0, "no SMI_CMD: always in ACPI mode");
    assert_eq!(gas_at(fadt, 148), (1, 32, 0, 2, 0x600), "X_PM1a_EVT_BLK");
    assert_eq!(gas_at(fadt, 172), (1, 16, 0, 2, 0x604), "X_PM1a_CNT_BLK");
    assert_eq!(u32_at(&all["APIC"].1, 40), 1, "PCAT_COMPAT");
    let dsdt = &all["DSDT"].1;
    // `Name (\\_S3_, Package (4) { 1, 1, 0, 0 })`.
    let s3: [u8; 13] = [
        0x08, b'\\', b'_', b'S', b'3', b'_', 0x12, 0x06, 0x04, 0x01, 0x01, 0x00, 0x00,
    ];
    let at = dsdt.windows(4).position(|w| w == b"_S3_").expect("\\_S3_") - 2;
    assert_eq!(dsdt[at..at + 13], s3);
    assert!(dsdt.windows(5).any(|w| w == b"\\_S5_"));

    // The hardware-reduced power registers and the PM1 blocks exclude each other.
    let err = build_acpi_with_pm1(&two_socket_config(), &pm1, &AcpiLayout::default());
    assert!(matches!(err, Err(AcpiError::PowerAndPm1)));
}

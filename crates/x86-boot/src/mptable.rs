//! Intel MultiProcessor Specification 1.4 tables.
//!
//! Linux finds the 16-byte floating pointer structure ("_MP_") by scanning
//! the first KiB of the EBDA, the last KiB of base memory (`0x9fc00`) and
//! `0xf0000..0x100000`; it points to the configuration table ("PCMP") that
//! lists processors, buses, IOAPICs and interrupt routing.
//!
//! [`build_mptable`] writes, for every slot: a processor entry (enabled for
//! present CPUs, disabled for hot-pluggable ones, the first present one is the
//! bootstrap processor), one ISA bus, the IOAPIC, I/O interrupt entries for ISA
//! IRQs 0-15 (IRQ 0 on [`IoApicConfig::timer_pin`]) and local interrupt
//! entries (ExtINT on LINT0, NMI on LINT1 of every local APIC).
//!
//! The MP table only has 8-bit APIC ids: ids above 254 are an error, such
//! guests must be described by ACPI (MADT x2APIC entries) alone. When ACPI
//! tables are present Linux uses them and ignores the MP table (unless booted
//! with `acpi=off`).

use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryError};

use crate::platform::{checksum_for, CpuEntry, IoApicConfig, LAPIC_ADDR, MAX_XAPIC_ID};

/// Default address: start of the BIOS area `0xf0000..0x100000` Linux scans.
/// (`0x9fc00`, the last KiB of base memory, is scanned too, but a table for
/// 254 CPUs (about 5.3 KiB) would run into the ACPI area at `0xa0000`.)
pub const MPTABLE_DEFAULT_ADDR: u64 = 0xf_0000;
/// MP specification revision written (1.4).
pub const MP_SPEC_REV: u8 = 4;
/// Size of the floating pointer structure.
pub const FLOATING_POINTER_SIZE: usize = 16;
/// Size of the configuration table header.
pub const CONFIG_HEADER_SIZE: usize = 44;
/// Size of a processor entry.
pub const PROCESSOR_ENTRY_SIZE: usize = 20;
/// Size of every other entry type.
pub const ENTRY_SIZE: usize = 8;

/// Entry type codes in the configuration table.
pub mod entry_type {
    /// Processor.
    pub const PROCESSOR: u8 = 0;
    /// Bus.
    pub const BUS: u8 = 1;
    /// I/O APIC.
    pub const IOAPIC: u8 = 2;
    /// I/O interrupt assignment.
    pub const IO_INTERRUPT: u8 = 3;
    /// Local interrupt assignment.
    pub const LOCAL_INTERRUPT: u8 = 4;
}

/// Processor entry flag: enabled.
pub const CPU_ENABLED: u8 = 1;
/// Processor entry flag: bootstrap processor.
pub const CPU_BSP: u8 = 2;
/// Interrupt type INT (vectored through the APIC).
pub const INT_TYPE_INT: u8 = 0;
/// Interrupt type NMI.
pub const INT_TYPE_NMI: u8 = 1;
/// Interrupt type ExtINT (8259-compatible).
pub const INT_TYPE_EXTINT: u8 = 3;

const LAPIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
/// Family 6 signature and CPUID.1:EDX FPU|APIC, as QEMU/Firecracker write.
const CPU_SIGNATURE: u32 = 0x600;
const CPU_FEATURES: u32 = 0x201;
const ISA_BUS_ID: u8 = 0;

/// Errors from building or writing the MP table.
#[derive(Debug, thiserror::Error)]
pub enum MpTableError {
    /// No CPU slots given.
    #[error("the MP table needs at least one CPU")]
    NoCpus,
    /// No slot is present at boot, so there is no bootstrap processor.
    #[error("the MP table needs at least one present CPU (the bootstrap processor)")]
    NoPresentCpu,
    /// An APIC id needs more than 8 bits.
    #[error("APIC id {apic_id} of CPU slot {index} does not fit the MP table (max {MAX_XAPIC_ID}); describe this guest with ACPI x2APIC entries only")]
    ApicIdTooLarge {
        /// Slot index.
        index: usize,
        /// The id.
        apic_id: u32,
    },
    /// Writing into guest memory failed.
    #[error("failed to write the MP table at {addr:#x}")]
    Write {
        /// Guest address of the floating pointer.
        addr: u64,
        /// The memory error.
        #[source]
        source: GuestMemoryError,
    },
}

fn entry(kind: u8, rest: [u8; 7]) -> [u8; ENTRY_SIZE] {
    let mut e = [0u8; ENTRY_SIZE];
    e[0] = kind;
    e[1..].copy_from_slice(&rest);
    e
}

fn interrupt_entry(kind: u8, int_type: u8, src_irq: u8, dst_id: u8, dst_pin: u8) -> [u8; 8] {
    // flags 0: polarity and trigger conform to the bus (ISA: edge, high).
    entry(kind, [int_type, 0, 0, ISA_BUS_ID, src_irq, dst_id, dst_pin])
}

/// Build the floating pointer followed by the configuration table, for a
/// structure placed at guest address `addr` (16-byte aligned).
pub fn build_mptable(
    addr: u64,
    cpus: &[CpuEntry],
    ioapic: &IoApicConfig,
) -> Result<Vec<u8>, MpTableError> {
    if cpus.is_empty() {
        return Err(MpTableError::NoCpus);
    }
    let bsp = cpus
        .iter()
        .position(|c| c.present)
        .ok_or(MpTableError::NoPresentCpu)?;
    let mut entries: Vec<u8> = Vec::new();
    let mut count: u16 = 0;
    for (index, cpu) in cpus.iter().enumerate() {
        if cpu.apic_id > MAX_XAPIC_ID {
            return Err(MpTableError::ApicIdTooLarge {
                index,
                apic_id: cpu.apic_id,
            });
        }
        let mut flags = if cpu.present { CPU_ENABLED } else { 0 };
        if index == bsp {
            flags |= CPU_BSP;
        }
        let mut e = [0u8; PROCESSOR_ENTRY_SIZE];
        e[0] = entry_type::PROCESSOR;
        e[1] = cpu.apic_id as u8;
        e[2] = LAPIC_VERSION;
        e[3] = flags;
        e[4..8].copy_from_slice(&CPU_SIGNATURE.to_le_bytes());
        e[8..12].copy_from_slice(&CPU_FEATURES.to_le_bytes());
        entries.extend_from_slice(&e);
        count += 1;
    }
    entries.extend_from_slice(&entry(
        entry_type::BUS,
        [ISA_BUS_ID, b'I', b'S', b'A', b' ', b' ', b' '],
    ));
    let a = ioapic.address.to_le_bytes();
    entries.extend_from_slice(&entry(
        entry_type::IOAPIC,
        [ioapic.id, IOAPIC_VERSION, 1, a[0], a[1], a[2], a[3]],
    ));
    count += 2;
    for irq in 0u8..16 {
        let pin = if irq == 0 { ioapic.timer_pin } else { irq };
        if irq != 0 && irq == ioapic.timer_pin {
            // The timer took this pin (IRQ 2 is the 8259 cascade anyway).
            continue;
        }
        entries.extend_from_slice(&interrupt_entry(
            entry_type::IO_INTERRUPT,
            INT_TYPE_INT,
            irq,
            ioapic.id,
            pin,
        ));
        count += 1;
    }
    // 0xff: every local APIC.
    entries.extend_from_slice(&interrupt_entry(
        entry_type::LOCAL_INTERRUPT,
        INT_TYPE_EXTINT,
        0,
        0xff,
        0,
    ));
    entries.extend_from_slice(&interrupt_entry(
        entry_type::LOCAL_INTERRUPT,
        INT_TYPE_NMI,
        0,
        0xff,
        1,
    ));
    count += 2;

    let config_addr = addr + FLOATING_POINTER_SIZE as u64;
    let mut header = [0u8; CONFIG_HEADER_SIZE];
    header[0..4].copy_from_slice(b"PCMP");
    let base_len = (CONFIG_HEADER_SIZE + entries.len()) as u16;
    header[4..6].copy_from_slice(&base_len.to_le_bytes());
    header[6] = MP_SPEC_REV;
    header[8..16].copy_from_slice(b"KVMCPU  ");
    header[16..28].copy_from_slice(b"X86-BOOT    ");
    header[34..36].copy_from_slice(&count.to_le_bytes());
    header[36..40].copy_from_slice(&LAPIC_ADDR.to_le_bytes());
    let mut config = header.to_vec();
    config.extend_from_slice(&entries);
    config[7] = checksum_for(&config);

    let mut fp = [0u8; FLOATING_POINTER_SIZE];
    fp[0..4].copy_from_slice(b"_MP_");
    fp[4..8].copy_from_slice(&(config_addr as u32).to_le_bytes());
    fp[8] = 1; // length in 16-byte units
    fp[9] = MP_SPEC_REV;
    // fp[11] = 0: a configuration table is present (no default config).
    fp[10] = checksum_for(&fp);

    let mut out = fp.to_vec();
    out.extend_from_slice(&config);
    Ok(out)
}

/// Build the MP table and write it at `addr`; returns its size in bytes.
pub fn write_mptable<M: GuestMemory + ?Sized>(
    mem: &M,
    addr: GuestAddress,
    cpus: &[CpuEntry],
    ioapic: &IoApicConfig,
) -> Result<usize, MpTableError> {
    let bytes = build_mptable(addr.0, cpus, ioapic)?;
    mem.write_slice(&bytes, addr)
        .map_err(|source| MpTableError::Write {
            addr: addr.0,
            source,
        })?;
    Ok(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::byte_sum;
    use cpu_topology::{CpuTopology, VcpuIndex};
    use vm_memory::GuestMemoryMmap;

    /// A decoded configuration table: (apic id, flags) per processor and the
    /// count of each other entry type.
    struct Parsed {
        processors: Vec<(u8, u8)>,
        buses: usize,
        ioapics: Vec<(u8, u32)>,
        io_ints: Vec<(u8, u8, u8)>,
        local_ints: Vec<(u8, u8, u8)>,
    }

    fn parse(mem: &GuestMemoryMmap, addr: GuestAddress) -> Parsed {
        let mut fp = [0u8; 16];
        mem.read_slice(&mut fp, addr).unwrap();
        assert_eq!(&fp[0..4], b"_MP_");
        assert_eq!(byte_sum(&fp), 0, "floating pointer checksum");
        assert_eq!(fp[8], 1);
        assert_eq!(fp[9], 4);
        let config_addr = u32::from_le_bytes(fp[4..8].try_into().unwrap()) as u64;
        let mut hdr = [0u8; 44];
        mem.read_slice(&mut hdr, GuestAddress(config_addr)).unwrap();
        assert_eq!(&hdr[0..4], b"PCMP");
        assert_eq!(hdr[6], 4);
        assert_eq!(
            u32::from_le_bytes(hdr[36..40].try_into().unwrap()),
            0xfee0_0000
        );
        let len = u16::from_le_bytes([hdr[4], hdr[5]]) as usize;
        let count = u16::from_le_bytes([hdr[34], hdr[35]]) as usize;
        let mut table = vec![0u8; len];
        mem.read_slice(&mut table, GuestAddress(config_addr))
            .unwrap();
        assert_eq!(byte_sum(&table), 0, "configuration table checksum");
        let mut p = Parsed {
            processors: vec![],
            buses: 0,
            ioapics: vec![],
            io_ints: vec![],
            local_ints: vec![],
        };
        let mut off = 44;
        for _ in 0..count {
            let e = &table[off..];
            match e[0] {
                0 => {
                    p.processors.push((e[1], e[3]));
                    off += 20;
                    continue;
                }
                1 => {
                    assert_eq!(&e[2..8], b"ISA   ");
                    p.buses += 1
                }
                2 => p
                    .ioapics
                    .push((e[1], u32::from_le_bytes(e[4..8].try_into().unwrap()))),
                3 => p.io_ints.push((e[1], e[5], e[7])),
                4 => p.local_ints.push((e[1], e[6], e[7])),
                t => panic!("unknown entry type {t}"),
            }
            off += 8;
        }
        assert_eq!(off, len, "entry count matches the table length");
        p
    }

    fn topology_cpus(topo: &CpuTopology) -> Vec<CpuEntry> {
        let layout = topo.apic_layout();
        (0..topo.max_cpus())
            .map(|i| {
                let id = layout.apic_id(VcpuIndex(i)).unwrap().0;
                CpuEntry::new(id, i < topo.cpus())
            })
            .collect()
    }

    #[test]
    fn eight_present_eight_hotpluggable() {
        // 2 sockets x 4 cores x 2 threads = 16 slots, 8 present.
        let topo = CpuTopology::new(2, 1, 1, 4, 2, 8).unwrap();
        let cpus = topology_cpus(&topo);
        assert_eq!(cpus.len(), 16);
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let size = write_mptable(
            &mem,
            GuestAddress(MPTABLE_DEFAULT_ADDR),
            &cpus,
            &IoApicConfig::default(),
        )
        .unwrap();
        assert_eq!(size, 16 + 44 + 16 * 20 + 2 * 8 + 15 * 8 + 2 * 8);
        let p = parse(&mem, GuestAddress(MPTABLE_DEFAULT_ADDR));
        let want: Vec<(u8, u8)> = cpus
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let flags = match (c.present, i) {
                    (true, 0) => 3,
                    (true, _) => 1,
                    (false, _) => 0,
                };
                (c.apic_id as u8, flags)
            })
            .collect();
        assert_eq!(p.processors, want);
        assert_eq!(p.processors.iter().filter(|p| p.1 & 1 == 1).count(), 8);
        assert_eq!(p.buses, 1);
        assert_eq!(p.ioapics, vec![(0, 0xfec0_0000)]);
        // IRQ 0 -> pin 2, IRQ 2 omitted, others identity.
        assert_eq!(p.io_ints.len(), 15);
        assert_eq!(p.io_ints[0], (INT_TYPE_INT, 0, 2));
        assert!(p.io_ints[1..]
            .iter()
            .all(|&(t, irq, pin)| t == 0 && irq == pin && irq != 2));
        assert_eq!(
            p.local_ints,
            vec![(INT_TYPE_EXTINT, 0xff, 0), (INT_TYPE_NMI, 0xff, 1)]
        );
    }

    #[test]
    fn timer_on_pin_zero_lists_all_sixteen_irqs() {
        let ioapic = IoApicConfig {
            timer_pin: 0,
            ..Default::default()
        };
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        write_mptable(
            &mem,
            GuestAddress(0xf0000),
            &[CpuEntry::new(0, true)],
            &ioapic,
        )
        .unwrap();
        let p = parse(&mem, GuestAddress(0xf0000));
        assert_eq!(p.io_ints.len(), 16);
        assert!(p.io_ints.iter().all(|&(_, irq, pin)| irq == pin));
    }

    #[test]
    fn largest_xapic_guest_fits_and_255_fails() {
        let cpus: Vec<_> = (0..=254).map(|id| CpuEntry::new(id, id < 100)).collect();
        let bytes = build_mptable(0xf0000, &cpus, &IoApicConfig::default()).unwrap();
        assert_eq!(byte_sum(&bytes[16..]), 0);
        let mut cpus = cpus;
        cpus.push(CpuEntry::new(255, false));
        assert_eq!(
            build_mptable(0xf0000, &cpus, &IoApicConfig::default())
                .unwrap_err()
                .to_string(),
            "APIC id 255 of CPU slot 255 does not fit the MP table (max 254); describe this guest with ACPI x2APIC entries only"
        );
    }

    #[test]
    fn errors() {
        let io = IoApicConfig::default();
        assert_eq!(
            build_mptable(0, &[], &io).unwrap_err().to_string(),
            "the MP table needs at least one CPU"
        );
        assert_eq!(
            build_mptable(0, &[CpuEntry::new(0, false)], &io)
                .unwrap_err()
                .to_string(),
            "the MP table needs at least one present CPU (the bootstrap processor)"
        );
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        let err =
            write_mptable(&mem, GuestAddress(0x9fc00), &[CpuEntry::new(0, true)], &io).unwrap_err();
        assert_eq!(err.to_string(), "failed to write the MP table at 0x9fc00");
    }
}

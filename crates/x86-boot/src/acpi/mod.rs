//! ACPI tables for Linux guests: RSDP, XSDT, FADT, MADT, DSDT (processor
//! devices, CPU hot-plug, sleep states, power button), SRAT and SLIT.
//!
//! [`build_acpi`] is pure: it validates an [`AcpiConfig`], lays the tables
//! out inside an [`AcpiLayout`] and returns their bytes and addresses
//! ([`AcpiTables`]); [`AcpiTables::write_to`] (or [`write_acpi`]) stores them
//! in guest memory. Pass [`AcpiTables::rsdp_addr`] to the kernel as
//! `boot_params.acpi_rsdp_addr` ([`crate::zero_page::ZeroPageConfig`]); the
//! default layout also puts the RSDP in `0xe0000..0x100000`, where Linux
//! scans for it.
//!
//! Choices (see DESIGN.md for the reasoning and the hot-plug registers):
//! - the FADT is hardware-reduced (no PM timer, SCI, GPE or 8259: what
//!   Firecracker and Cloud Hypervisor give Linux); hot-plug and power
//!   button events arrive through a Generic Event Device (`ACPI0013`), one
//!   interrupt per event; power off and reset go through the FADT's sleep
//!   control and reset registers ([`power`]);
//! - the MADT has revision 5: present CPUs are Enabled, hot-pluggable slots
//!   Online Capable, so Linux prints "smpboot: Allowing N CPUs, M hotplug CPUs";
//! - slots with an APIC id or UID above 254 get Local x2APIC structures,
//!   others Local APIC structures;
//! - the processor UID of a slot is its index in [`AcpiConfig::cpus`].

mod dsdt;
pub mod hotplug;
pub mod pm1;
pub mod power;
mod tables;

use std::collections::HashSet;

use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryError};

pub use dsdt::{cpu_device_name, HOTPLUG_IO_LEN};
pub use hotplug::{CpuHotplugController, HotplugError, HotplugEvent};
pub use pm1::Pm1Config;
pub use power::{PowerConfig, PowerEvent, PowerRegisters, POWER_IO_LEN};
pub use tables::{
    madt_type, processor_structure, uses_x2apic, DSDT_REVISION, MADT_ENABLED, MADT_ONLINE_CAPABLE,
    MADT_REVISION, SLIT_REVISION, SRAT_REVISION,
};

use crate::platform::{CpuEntry, IoApicConfig};

/// OEM id written in every table header.
pub const OEM_ID: [u8; 6] = *b"KVMCPU";
/// OEM table id written in every table header.
pub const OEM_TABLE_ID: [u8; 8] = *b"X86BOOT ";
/// Default RSDP address: start of the BIOS area Linux scans.
pub const RSDP_DEFAULT_ADDR: u64 = 0xe_0000;
/// Default start of the table area (the legacy VGA/option-ROM window).
pub const TABLES_DEFAULT_START: u64 = 0xa_0000;
/// Default end (exclusive) of the table area.
pub const TABLES_DEFAULT_END: u64 = 0xe_0000;
/// Default I/O port base of the CPU hot-plug register block (QEMU's).
pub const HOTPLUG_DEFAULT_IO_BASE: u16 = 0x0cd8;
/// Default GSI of the Generic Event Device.
pub const GED_DEFAULT_GSI: u32 = 5;
/// Most slots the DSDT device names (`C000`..`CFFF`) can number.
pub const MAX_CPU_SLOTS: usize = 4096;
/// Highest guest-physical address a layout may use (52-bit physical space).
pub const MAX_PHYS_ADDR: u64 = 1 << 52;
/// Size of the RSDP (ACPI 2.0+).
pub const RSDP_SIZE: usize = 36;
/// Local distance in the SLIT.
pub const LOCAL_DISTANCE: u8 = 10;
/// Default remote distance when none are given.
pub const REMOTE_DISTANCE: u8 = 20;

/// A RAM range and its NUMA node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRange {
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub size: u64,
    /// NUMA node (proximity domain).
    pub node: u32,
}

/// NUMA description: makes [`build_acpi`] emit SRAT and SLIT and `_PXM`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NumaConfig {
    /// Every RAM range with its node (below the 32-bit hole and above 4 GiB).
    pub memory: Vec<MemoryRange>,
    /// `distances[i][j]` from node i to node j; 10 on the diagonal, above 10
    /// elsewhere. `None`: 10 local, 20 remote.
    pub distances: Option<Vec<Vec<u8>>>,
}

/// The CPU hot-plug interface the VMM implements (see DESIGN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuHotplugConfig {
    /// First port of the 12-byte register block.
    pub io_base: u16,
    /// GSI the VMM pulses (edge, active high) to make the guest rescan.
    pub ged_gsi: u32,
}

impl Default for CpuHotplugConfig {
    fn default() -> Self {
        CpuHotplugConfig {
            io_base: HOTPLUG_DEFAULT_IO_BASE,
            ged_gsi: GED_DEFAULT_GSI,
        }
    }
}

/// What the ACPI tables describe.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AcpiConfig {
    /// Every possible CPU slot; the index is the ACPI processor UID.
    pub cpus: Vec<CpuEntry>,
    /// The IOAPIC.
    pub ioapic: IoApicConfig,
    /// NUMA nodes; `None` for a single-node guest (no SRAT/SLIT).
    pub numa: Option<NumaConfig>,
    /// CPU hot-plug; `None` makes `_STA` static and omits its GED event.
    pub hotplug: Option<CpuHotplugConfig>,
    /// Power off, reset and the power button; `None` leaves the FADT
    /// without sleep and reset registers and the DSDT without `\_S5_`.
    pub power: Option<PowerConfig>,
    /// A 16550 UART described as a `PNP0501` device (`\_SB.COM1`) with its ports and
    /// IRQ. A guest under hardware-reduced ACPI has no legacy IRQs: without this device
    /// Linux cannot give the UART its interrupt, and writes to the tty fail with EIO.
    pub serial: Option<IsaSerialConfig>,
}

/// An ISA 16550 UART: I/O base (8 ports) and IRQ (GSI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsaSerialConfig {
    /// First of the UART's 8 I/O ports.
    pub io_base: u16,
    /// Its interrupt: ISA IRQ n is GSI n on this platform.
    pub gsi: u32,
}

impl IsaSerialConfig {
    /// COM1: ports 0x3f8..0x3ff, IRQ 4.
    pub const COM1: IsaSerialConfig = IsaSerialConfig {
        io_base: 0x3f8,
        gsi: 4,
    };
}

/// Where the tables go in guest memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcpiLayout {
    /// RSDP address (16-byte aligned; Linux scans 0xe0000..0x100000).
    pub rsdp_addr: u64,
    /// First byte of the area for the other tables.
    pub tables_start: u64,
    /// End (exclusive) of that area.
    pub tables_end: u64,
}

impl Default for AcpiLayout {
    fn default() -> Self {
        AcpiLayout {
            rsdp_addr: RSDP_DEFAULT_ADDR,
            tables_start: TABLES_DEFAULT_START,
            tables_end: TABLES_DEFAULT_END,
        }
    }
}

/// One built table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpiTable {
    /// Signature, e.g. `*b"APIC"` for the MADT.
    pub signature: [u8; 4],
    /// Guest address.
    pub addr: GuestAddress,
    /// Complete table including its header.
    pub bytes: Vec<u8>,
}

/// The built tables and where they go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpiTables {
    /// Where the RSDP goes (for `boot_params.acpi_rsdp_addr`).
    pub rsdp_addr: GuestAddress,
    /// The RSDP bytes.
    pub rsdp: Vec<u8>,
    /// FACS (with PM1 blocks only), DSDT, FACP, APIC, [SRAT, SLIT,] XSDT, in address order.
    pub tables: Vec<AcpiTable>,
}

impl AcpiTables {
    /// The table with this signature.
    pub fn table(&self, signature: &[u8; 4]) -> Option<&AcpiTable> {
        self.tables.iter().find(|t| &t.signature == signature)
    }

    /// Write the RSDP and every table into guest memory.
    pub fn write_to<M: GuestMemory + ?Sized>(&self, mem: &M) -> Result<(), AcpiError> {
        let write = |sig: [u8; 4], addr: GuestAddress, bytes: &[u8]| {
            mem.write_slice(bytes, addr)
                .map_err(|source| AcpiError::Write {
                    table: String::from_utf8_lossy(&sig).into_owned(),
                    addr: addr.0,
                    source,
                })
        };
        write(*b"RSD ", self.rsdp_addr, &self.rsdp)?;
        for t in &self.tables {
            write(t.signature, t.addr, &t.bytes)?;
        }
        Ok(())
    }
}

/// Errors from building or writing ACPI tables.
#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    /// No CPU slot given.
    #[error("ACPI tables need at least one CPU")]
    NoCpus,
    /// No slot is present at boot.
    #[error("ACPI tables need at least one present CPU")]
    NoPresentCpu,
    /// More slots than the DSDT naming supports.
    #[error("{count} CPU slots exceed the supported {MAX_CPU_SLOTS}")]
    TooManyCpus {
        /// Slots given.
        count: usize,
    },
    /// Two slots share an APIC id.
    #[error("APIC id {apic_id} is used by CPU slots {first} and {second}")]
    DuplicateApicId {
        /// The id.
        apic_id: u32,
        /// First slot.
        first: usize,
        /// Second slot.
        second: usize,
    },
    /// 0xffffffff is not a valid x2APIC id.
    #[error("CPU slot {index} has the invalid APIC id 0xffffffff")]
    InvalidApicId {
        /// Slot index.
        index: usize,
    },
    /// The CPU hot-plug and power button GED events share a GSI (each needs its own).
    #[error("the CPU hot-plug and power button events both use GSI {gsi}")]
    GedGsiConflict {
        /// The shared GSI.
        gsi: u32,
    },
    /// The power register block would wrap around the 16-bit port space or
    /// overlap the CPU hot-plug block.
    #[error(
        "power registers at port {io_base:#x} overlap the CPU hot-plug block or end beyond 0xffff"
    )]
    PowerPorts {
        /// The power block's first port.
        io_base: u16,
    },
    /// Both the hardware-reduced power registers and the PM1 blocks were asked for.
    #[error("the hardware-reduced power registers and the PM1 blocks exclude each other")]
    PowerAndPm1,
    /// NUMA configured without memory ranges.
    #[error("NUMA configuration has no memory ranges")]
    NumaWithoutMemory,
    /// A NUMA memory range has size 0.
    #[error("NUMA memory range at {start:#x} has size 0")]
    EmptyMemoryRange {
        /// Start of the range.
        start: u64,
    },
    /// Two NUMA memory ranges overlap.
    #[error("NUMA memory ranges at {first:#x} and {second:#x} overlap")]
    OverlappingMemory {
        /// Start of the lower range.
        first: u64,
        /// Start of the range overlapping it.
        second: u64,
    },
    /// The distance matrix is not `nodes x nodes`.
    #[error("distance matrix row {row} has {len} entries, expected {nodes} (one per node)")]
    DistanceShape {
        /// Row index (or the row count when the number of rows is wrong).
        row: usize,
        /// Entries found.
        len: usize,
        /// Nodes referenced by CPUs and memory.
        nodes: usize,
    },
    /// A local distance is not 10 or a remote one is not above 10.
    #[error("distance from node {from} to node {to} is {value}: local distances must be 10, remote ones 11..=255")]
    InvalidDistance {
        /// Source node.
        from: usize,
        /// Destination node.
        to: usize,
        /// The value.
        value: u8,
    },
    /// The table area is empty, reversed or beyond 52-bit physical addresses.
    #[error("invalid ACPI table area {start:#x}..{end:#x}")]
    InvalidArea {
        /// Area start.
        start: u64,
        /// Area end.
        end: u64,
    },
    /// An address in the layout is not aligned.
    #[error("RSDP address {addr:#x} is not 16-byte aligned")]
    MisalignedRsdp {
        /// The address.
        addr: u64,
    },
    /// The RSDP would overlap the other tables.
    #[error("RSDP at {rsdp:#x} overlaps the ACPI tables at {start:#x}..{end:#x}")]
    RsdpOverlapsTables {
        /// RSDP address.
        rsdp: u64,
        /// Tables start.
        start: u64,
        /// Tables end (exclusive).
        end: u64,
    },
    /// The tables do not fit the area.
    #[error("ACPI tables need {needed} bytes but the area {start:#x}..{end:#x} holds {available}")]
    TablesTooLarge {
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
        /// Area start.
        start: u64,
        /// Area end.
        end: u64,
    },
    /// Writing a table into guest memory failed.
    #[error("failed to write ACPI table {table} at {addr:#x}")]
    Write {
        /// Table signature.
        table: String,
        /// Its address.
        addr: u64,
        /// The memory error.
        #[source]
        source: GuestMemoryError,
    },
}

fn validate(config: &AcpiConfig) -> Result<Option<Vec<Vec<u8>>>, AcpiError> {
    if config.cpus.is_empty() {
        return Err(AcpiError::NoCpus);
    }
    if config.cpus.len() > MAX_CPU_SLOTS {
        return Err(AcpiError::TooManyCpus {
            count: config.cpus.len(),
        });
    }
    if !config.cpus.iter().any(|c| c.present) {
        return Err(AcpiError::NoPresentCpu);
    }
    let mut seen = std::collections::HashMap::new();
    for (index, cpu) in config.cpus.iter().enumerate() {
        if cpu.apic_id == u32::MAX {
            return Err(AcpiError::InvalidApicId { index });
        }
        if let Some(first) = seen.insert(cpu.apic_id, index) {
            return Err(AcpiError::DuplicateApicId {
                apic_id: cpu.apic_id,
                first,
                second: index,
            });
        }
    }
    validate_power(config)?;
    let Some(numa) = &config.numa else {
        return Ok(None);
    };
    if numa.memory.is_empty() {
        return Err(AcpiError::NumaWithoutMemory);
    }
    if let Some(m) = numa.memory.iter().find(|m| m.size == 0) {
        return Err(AcpiError::EmptyMemoryRange { start: m.start });
    }
    let mut ranges: Vec<(u64, u64)> = numa
        .memory
        .iter()
        .map(|m| (m.start, m.start.saturating_add(m.size)))
        .collect();
    ranges.sort_unstable();
    if let Some(w) = ranges.windows(2).find(|w| w[1].0 < w[0].1) {
        return Err(AcpiError::OverlappingMemory {
            first: w[0].0,
            second: w[1].0,
        });
    }
    let nodes: HashSet<u32> = config
        .cpus
        .iter()
        .map(|c| c.node)
        .chain(numa.memory.iter().map(|m| m.node))
        .collect();
    let count = nodes.iter().max().map_or(0, |&m| m as usize + 1);
    let matrix = match &numa.distances {
        Some(d) => d.clone(),
        None => (0..count)
            .map(|i| {
                (0..count)
                    .map(|j| {
                        if i == j {
                            LOCAL_DISTANCE
                        } else {
                            REMOTE_DISTANCE
                        }
                    })
                    .collect()
            })
            .collect(),
    };
    if matrix.len() != count {
        return Err(AcpiError::DistanceShape {
            row: matrix.len(),
            len: matrix.len(),
            nodes: count,
        });
    }
    for (from, row) in matrix.iter().enumerate() {
        if row.len() != count {
            return Err(AcpiError::DistanceShape {
                row: from,
                len: row.len(),
                nodes: count,
            });
        }
        for (to, &value) in row.iter().enumerate() {
            let ok = if from == to {
                value == LOCAL_DISTANCE
            } else {
                value > LOCAL_DISTANCE
            };
            if !ok {
                return Err(AcpiError::InvalidDistance { from, to, value });
            }
        }
    }
    Ok(Some(matrix))
}

fn validate_power(config: &AcpiConfig) -> Result<(), AcpiError> {
    let Some(power) = config.power else {
        return Ok(());
    };
    let start = u32::from(power.io_base);
    let end = start + u32::from(POWER_IO_LEN);
    let overlaps = config.hotplug.is_some_and(|hp| {
        let hp_start = u32::from(hp.io_base);
        start < hp_start + u32::from(HOTPLUG_IO_LEN) && hp_start < end
    });
    if end > 0x1_0000 || overlaps {
        return Err(AcpiError::PowerPorts {
            io_base: power.io_base,
        });
    }
    if let (Some(hp), Some(gsi)) = (config.hotplug, power.button_gsi) {
        if hp.ged_gsi == gsi {
            return Err(AcpiError::GedGsiConflict { gsi });
        }
    }
    Ok(())
}

/// Validate `config` and build every table for `layout` (nothing is written).
pub fn build_acpi(config: &AcpiConfig, layout: &AcpiLayout) -> Result<AcpiTables, AcpiError> {
    build(config, None, layout)
}

/// [`build_acpi`] for a PC platform with fixed-hardware power management
/// ([`pm1`]): a FACS first in the area, a full FADT pointing at it and at the PM1a
/// blocks, `\_S3_` and `\_S5_` in the DSDT, and `PCAT_COMPAT` in the MADT.
/// `config.power` (the hardware-reduced registers) must be `None`.
pub fn build_acpi_with_pm1(
    config: &AcpiConfig,
    pm1: &Pm1Config,
    layout: &AcpiLayout,
) -> Result<AcpiTables, AcpiError> {
    if config.power.is_some() {
        return Err(AcpiError::PowerAndPm1);
    }
    build(config, Some(pm1), layout)
}

fn build(
    config: &AcpiConfig,
    pm1: Option<&Pm1Config>,
    layout: &AcpiLayout,
) -> Result<AcpiTables, AcpiError> {
    let distances = validate(config)?;
    if layout.rsdp_addr % 16 != 0 {
        return Err(AcpiError::MisalignedRsdp {
            addr: layout.rsdp_addr,
        });
    }
    if layout.tables_start >= layout.tables_end
        || layout.tables_end > MAX_PHYS_ADDR
        || layout.rsdp_addr > MAX_PHYS_ADDR
    {
        return Err(AcpiError::InvalidArea {
            start: layout.tables_start,
            end: layout.tables_end,
        });
    }
    // The FACS comes first: it needs 64-byte alignment.
    let mut next = match pm1 {
        Some(_) => layout.tables_start.next_multiple_of(pm1::FACS_ALIGN),
        None => layout.tables_start.next_multiple_of(16),
    };
    let mut tables: Vec<AcpiTable> = Vec::new();
    let mut place = |signature: [u8; 4], bytes: Vec<u8>| -> u64 {
        let addr = next;
        next = (next + bytes.len() as u64).next_multiple_of(16);
        tables.push(AcpiTable {
            signature,
            addr: GuestAddress(addr),
            bytes,
        });
        addr
    };
    let facs_addr = pm1.map(|_| place(*b"FACS", pm1::facs()));
    let mut aml = dsdt::dsdt_aml(config);
    if pm1.is_some() {
        aml.extend(dsdt::pm1_sleep_states());
    }
    let dsdt_addr = place(*b"DSDT", tables::dsdt(&aml));
    let fadt_pm1 = pm1.zip(facs_addr);
    let mut xsdt_entries = vec![place(
        *b"FACP",
        tables::fadt(dsdt_addr, config.power.as_ref(), fadt_pm1),
    )];
    xsdt_entries.push(place(*b"APIC", tables::madt(config, pm1.is_some())));
    if let (Some(numa), Some(d)) = (&config.numa, &distances) {
        xsdt_entries.push(place(*b"SRAT", tables::srat(&config.cpus, numa)));
        xsdt_entries.push(place(*b"SLIT", tables::slit(d)));
    }
    let mut xsdt = acpi_tables::xsdt::XSDT::new(OEM_ID, OEM_TABLE_ID, 1);
    for e in xsdt_entries {
        xsdt.add_entry(e);
    }
    let mut xsdt_bytes = Vec::new();
    acpi_tables::Aml::to_aml_bytes(&xsdt, &mut xsdt_bytes);
    let xsdt_addr = place(*b"XSDT", xsdt_bytes);

    let end = tables
        .last()
        .map_or(layout.tables_start, |t| t.addr.0 + t.bytes.len() as u64);
    if end > layout.tables_end {
        return Err(AcpiError::TablesTooLarge {
            needed: end - layout.tables_start,
            available: layout.tables_end.saturating_sub(layout.tables_start),
            start: layout.tables_start,
            end: layout.tables_end,
        });
    }
    if layout.rsdp_addr < end && layout.tables_start < layout.rsdp_addr + RSDP_SIZE as u64 {
        return Err(AcpiError::RsdpOverlapsTables {
            rsdp: layout.rsdp_addr,
            start: layout.tables_start,
            end,
        });
    }
    let mut rsdp = Vec::new();
    acpi_tables::Aml::to_aml_bytes(&acpi_tables::rsdp::Rsdp::new(OEM_ID, xsdt_addr), &mut rsdp);
    Ok(AcpiTables {
        rsdp_addr: GuestAddress(layout.rsdp_addr),
        rsdp,
        tables,
    })
}

/// [`build_acpi_with_pm1`] then [`AcpiTables::write_to`].
pub fn write_acpi_with_pm1<M: GuestMemory + ?Sized>(
    mem: &M,
    config: &AcpiConfig,
    pm1: &Pm1Config,
    layout: &AcpiLayout,
) -> Result<AcpiTables, AcpiError> {
    let tables = build_acpi_with_pm1(config, pm1, layout)?;
    tables.write_to(mem)?;
    Ok(tables)
}

/// [`build_acpi`] then [`AcpiTables::write_to`].
pub fn write_acpi<M: GuestMemory + ?Sized>(
    mem: &M,
    config: &AcpiConfig,
    layout: &AcpiLayout,
) -> Result<AcpiTables, AcpiError> {
    let tables = build_acpi(config, layout)?;
    tables.write_to(mem)?;
    Ok(tables)
}

#[cfg(test)]
mod tests;

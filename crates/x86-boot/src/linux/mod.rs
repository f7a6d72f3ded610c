//! What a Linux guest reads at boot, as plain data written into guest memory: the
//! identity page tables and GDT of the 64-bit entry, the command line, the MP table, the
//! ACPI tables and the zero page with its e820 map.
//!
//! No KVM here: [`write_boot_tables`] takes any `GuestMemory`, so the unit tests below
//! check the result on an ordinary mapping.

use crate::acpi::{
    self, AcpiConfig, AcpiError, AcpiLayout, AcpiTables, CpuHotplugConfig, MemoryRange, PowerConfig,
};
use crate::e820::{build_e820_map, E820Entry, E820Error, E820Type};
use crate::long_mode::{write_long_mode_tables, LongModeError, LongModeLayout};
use crate::mptable::{write_mptable, MpTableError};
use crate::platform::MAX_XAPIC_ID;
use crate::zero_page::{write_zero_page, ZeroPageConfig, ZeroPageError};
use crate::{layout, CpuEntry, IoApicConfig};
use cpu_topology::{CpuTopology, TopologyError};
use guest_memory::{MemoryLayout, NumaTopology};
use vm_memory::{Bytes, GuestAddress, GuestMemory};

pub mod loader;

/// The command line when `--append` is not given: COM1 console from the first line on,
/// reboot through the keyboard controller (the VM then ends cleanly), reboot at once on
/// a panic.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 earlyprintk=serial,ttyS0 reboot=k panic=-1";

/// The identity map of the 64-bit entry: everything below 4 GiB (kernel, zero page,
/// command line and initrd all live there).
pub const IDENTITY_MAP_SIZE: u64 = 4 << 30;

/// Highest address (exclusive) for the initrd: the 64-bit kernel's `initrd_addr_max`.
pub const INITRD_ADDR_MAX: u64 = 0x8000_0000;

/// Why the boot tables could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The command line holds a NUL byte.
    #[error("--append: the kernel command line must not contain a NUL byte")]
    CmdlineNul,
    /// The command line is too long.
    #[error("--append: the kernel command line is {len} bytes; at most {max} fit")]
    CmdlineTooLong {
        /// Its length including the NUL.
        len: usize,
        /// The limit including the NUL.
        max: u64,
    },
    /// A slot's APIC id could not be computed.
    #[error("APIC ids")]
    Topology(#[from] TopologyError),
    /// The e820 map was refused.
    #[error("e820 map")]
    E820(#[from] E820Error),
    /// Page tables or GDT could not be written.
    #[error("long-mode page tables")]
    LongMode(#[from] LongModeError),
    /// The command line could not be written.
    #[error("write the command line at {addr:#x}")]
    WriteCmdline {
        /// Where.
        addr: u64,
        /// Why.
        #[source]
        source: vm_memory::GuestMemoryError,
    },
    /// The MP table was refused.
    #[error("MP table")]
    MpTable(#[from] MpTableError),
    /// The ACPI tables were refused.
    #[error("ACPI tables")]
    Acpi(#[from] AcpiError),
    /// The zero page was refused.
    #[error("zero page")]
    ZeroPage(#[from] ZeroPageError),
    /// The initrd does not fit below the kernel's limit.
    #[error("--initrd: {size} bytes do not fit between the kernel's end ({kernel_end:#x}) and {limit:#x}; raise -m")]
    InitrdTooLarge {
        /// Initrd size.
        size: u64,
        /// End of the loaded kernel.
        kernel_end: u64,
        /// Top of the usable range.
        limit: u64,
    },
}

impl BootError {
    /// True when the user's input is at fault.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            BootError::CmdlineNul
                | BootError::CmdlineTooLong { .. }
                | BootError::InitrdTooLarge { .. }
        )
    }
}

/// Every possible CPU slot of `topo` in slot order, with its APIC id, whether it is present
/// at boot, and its NUMA node (0 without NUMA).
pub fn cpu_entries(
    topo: &CpuTopology,
    numa: Option<&NumaTopology>,
) -> Result<Vec<CpuEntry>, TopologyError> {
    let apic = topo.apic_layout();
    topo.slots()
        .map(|slot| {
            Ok(CpuEntry {
                apic_id: apic.apic_id(slot)?.0,
                present: slot.0 < topo.cpus(),
                node: numa.and_then(|n| n.node_of_cpu(slot)).map_or(0, |n| n.0),
            })
        })
        .collect()
}

/// The e820 map of `layout`: its RAM regions, its reserved ranges (the 32-bit MMIO hole),
/// and the legacy area `0x9fc00..0x100000` (always reserved by the builder), which holds
/// the ACPI tables and the MP table.
pub fn e820_map(layout: &MemoryLayout) -> Result<Vec<E820Entry>, E820Error> {
    let ram = layout
        .regions()
        .iter()
        .map(|r| (r.gpa.0, r.size, E820Type::Ram));
    let reserved = layout
        .reserved()
        .iter()
        .map(|r| (r.gpa.0, r.size, E820Type::Reserved));
    build_e820_map(&ram.chain(reserved).collect::<Vec<_>>())
}

/// The command line as the kernel reads it: NUL-terminated, no NUL inside, fitting the
/// space the layout reserves for it.
pub fn cmdline_bytes(cmdline: &str) -> Result<Vec<u8>, BootError> {
    if cmdline.contains('\0') {
        return Err(BootError::CmdlineNul);
    }
    let mut bytes = Vec::with_capacity(cmdline.len() + 1);
    bytes.extend_from_slice(cmdline.as_bytes());
    bytes.push(0);
    if bytes.len() as u64 > layout::CMDLINE_MAX_SIZE {
        return Err(BootError::CmdlineTooLong {
            len: bytes.len(),
            max: layout::CMDLINE_MAX_SIZE,
        });
    }
    Ok(bytes)
}

/// Where an initrd of `size` bytes goes: page aligned, as high as possible in the first
/// RAM region below [`INITRD_ADDR_MAX`], above the kernel's end.
pub fn initrd_address(layout: &MemoryLayout, kernel_end: u64, size: u64) -> Result<u64, BootError> {
    let limit = layout
        .regions()
        .first()
        .map_or(0, |r| r.end())
        .min(INITRD_ADDR_MAX);
    let too_large = BootError::InitrdTooLarge {
        size,
        kernel_end,
        limit,
    };
    let start = limit.checked_sub(size).ok_or(too_large)? & !0xfff;
    if start < kernel_end.max(layout::HIGH_MEMORY_START) {
        return Err(BootError::InitrdTooLarge {
            size,
            kernel_end,
            limit,
        });
    }
    Ok(start)
}

/// The ACPI description: every slot, the CPU hot-plug device when there are slots to
/// plug, SRAT/SLIT with each node's memory and distances when NUMA is configured, and
/// always the power registers (S5 power off, reset) and the power button
/// ([`PowerConfig::default`]: ports `0x3c0..0x3c3`, button on GSI 6).
///
/// The IOAPIC's timer pin is 0: KVM's default GSI routing wires the in-kernel PIT (GSI 0)
/// to IOAPIC pin 0, so no interrupt source override is described.
pub fn acpi_config(
    cpus: Vec<CpuEntry>,
    mem: &MemoryLayout,
    numa: Option<&NumaTopology>,
) -> AcpiConfig {
    let hotplug = cpus
        .iter()
        .any(|c| !c.present)
        .then(CpuHotplugConfig::default);
    let numa = numa.map(|n| acpi::NumaConfig {
        memory: n
            .srat_input(mem)
            .iter()
            .flat_map(|node| {
                node.memory.iter().map(|&(start, size)| MemoryRange {
                    start,
                    size,
                    node: node.node.0,
                })
            })
            .collect(),
        distances: Some(n.distances().to_vec()),
    });
    AcpiConfig {
        cpus,
        ioapic: IoApicConfig {
            timer_pin: 0,
            ..IoApicConfig::default()
        },
        numa,
        hotplug,
        power: Some(PowerConfig::default()),
        serial: Some(acpi::IsaSerialConfig::COM1),
    }
}

/// What [`write_boot_tables`] needs.
#[derive(Debug, Clone)]
pub struct BootInput<'a> {
    /// Guest RAM layout.
    pub layout: &'a MemoryLayout,
    /// Every CPU slot ([`cpu_entries`]).
    pub cpus: Vec<CpuEntry>,
    /// NUMA configuration, if any.
    pub numa: Option<&'a NumaTopology>,
    /// Kernel command line (without the NUL).
    pub cmdline: &'a str,
    /// Initrd as (guest address, size).
    pub initrd: Option<(u64, u64)>,
    /// A bzImage's setup header (bytes from 0x1f1); `None` for an ELF vmlinux.
    pub setup_header: Option<Vec<u8>>,
}

/// What [`write_boot_tables`] wrote.
#[derive(Debug, Clone)]
pub struct BootTables {
    /// The zero page, for `RSI`.
    pub zero_page: GuestAddress,
    /// The long-mode layout (GDT, page tables) for the BSP's special registers.
    pub long_mode: LongModeLayout,
    /// The ACPI tables.
    pub acpi: AcpiTables,
    /// The CPU hot-plug register block, when there are hot-pluggable slots.
    pub hotplug: Option<CpuHotplugConfig>,
    /// The ACPI power registers and power button the tables describe.
    pub power: Option<PowerConfig>,
    /// Whether an MP table was written (only when every APIC id is at most 254).
    pub mptable: bool,
}

/// Write everything a Linux guest reads at boot into `mem`, at the addresses of
/// [`crate::layout`].
pub fn write_boot_tables<M: GuestMemory + ?Sized>(
    mem: &M,
    input: BootInput<'_>,
) -> Result<BootTables, BootError> {
    let long_mode = LongModeLayout {
        gdt_addr: GuestAddress(layout::GDT_ADDR),
        pml4_addr: GuestAddress(layout::PML4_ADDR),
        identity_map_size: IDENTITY_MAP_SIZE,
    };
    write_long_mode_tables(mem, &long_mode)?;

    let cmdline = cmdline_bytes(input.cmdline)?;
    mem.write_slice(&cmdline, GuestAddress(layout::CMDLINE_ADDR))
        .map_err(|source| BootError::WriteCmdline {
            addr: layout::CMDLINE_ADDR,
            source,
        })?;

    let acpi_config = acpi_config(input.cpus, input.layout, input.numa);
    let ioapic = acpi_config.ioapic;
    // Linux reads the MP table only without ACPI (`acpi=off`); it cannot describe x2APIC ids.
    let mptable = acpi_config.cpus.iter().all(|c| c.apic_id <= MAX_XAPIC_ID);
    if mptable {
        write_mptable(
            mem,
            GuestAddress(layout::MPTABLE_ADDR),
            &acpi_config.cpus,
            &ioapic,
        )?;
    }
    let acpi = acpi::write_acpi(mem, &acpi_config, &AcpiLayout::default())?;

    let zero_page = write_zero_page(
        mem,
        GuestAddress(layout::ZERO_PAGE_ADDR),
        &ZeroPageConfig {
            cmdline_addr: layout::CMDLINE_ADDR,
            cmdline_size: cmdline.len() as u32,
            initrd: input.initrd,
            acpi_rsdp_addr: Some(acpi.rsdp_addr.0),
            e820: e820_map(input.layout)?,
            setup_header: input.setup_header,
        },
    )?;
    Ok(BootTables {
        zero_page,
        long_mode,
        acpi,
        hotplug: acpi_config.hotplug,
        power: acpi_config.power,
        mptable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zero_page::offsets;
    use cpu_topology::smp::parse_smp;
    use guest_memory::{NumaConfig, NumaMachine, UnassignedCpus};
    use vm_memory::GuestMemoryMmap;

    const MIB: u64 = 1 << 20;

    fn numa(topo: &CpuTopology, ram: u64, args: &[&str]) -> NumaTopology {
        NumaConfig::parse(args.iter().copied())
            .unwrap()
            .resolve(&NumaMachine {
                ram_size: ram,
                max_cpus: topo.max_cpus(),
                cpus_per_socket: topo.threads_per_socket(),
                backends: &[],
                unassigned: UnassignedCpus::Reject,
            })
            .unwrap()
    }

    fn mem_for(layout: &MemoryLayout) -> GuestMemoryMmap {
        // Only the first 64 MiB are mapped: the tables all live in the first MiB.
        let low = layout.regions()[0].size.min(64 * MIB);
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), low as usize)]).unwrap()
    }

    fn u32_at(mem: &GuestMemoryMmap, addr: u64) -> u32 {
        mem.read_obj(GuestAddress(addr)).unwrap()
    }

    fn e820_of(mem: &GuestMemoryMmap) -> Vec<(u64, u64, u32)> {
        let zp = layout::ZERO_PAGE_ADDR;
        let n: u8 = mem
            .read_obj(GuestAddress(zp + offsets::E820_ENTRIES as u64))
            .unwrap();
        (0..u64::from(n))
            .map(|i| {
                let at = zp + offsets::E820_TABLE as u64 + i * 20;
                let addr: u64 = mem.read_obj(GuestAddress(at)).unwrap();
                let size: u64 = mem.read_obj(GuestAddress(at + 8)).unwrap();
                (addr, size, u32_at(mem, at + 16))
            })
            .collect()
    }

    #[test]
    fn cmdline_rules() {
        assert_eq!(cmdline_bytes("console=ttyS0").unwrap(), b"console=ttyS0\0");
        assert_eq!(
            cmdline_bytes("a\0b").unwrap_err().to_string(),
            "--append: the kernel command line must not contain a NUL byte"
        );
        let long = "x".repeat(layout::CMDLINE_MAX_SIZE as usize);
        assert_eq!(
            cmdline_bytes(&long).unwrap_err().to_string(),
            "--append: the kernel command line is 65537 bytes; at most 65536 fit"
        );
        assert!(cmdline_bytes(&long[1..]).is_ok());
    }

    #[test]
    fn e820_of_a_small_and_a_large_guest() {
        let small = e820_map(&MemoryLayout::x86_64(128 * MIB).unwrap()).unwrap();
        let rows: Vec<(u64, u64, E820Type)> =
            small.iter().map(|e| (e.addr, e.size, e.kind)).collect();
        assert_eq!(
            rows,
            [
                (0, 0x9fc00, E820Type::Ram),
                (0x9fc00, 0x100000 - 0x9fc00, E820Type::Reserved),
                (0x100000, 128 * MIB - 0x100000, E820Type::Ram),
                (0xc000_0000, 0x4000_0000, E820Type::Reserved),
            ]
        );
        let large = e820_map(&MemoryLayout::x86_64(4 << 30).unwrap()).unwrap();
        let last = large.last().unwrap();
        assert_eq!(
            (last.addr, last.size, last.kind),
            (4 << 30, 1 << 30, E820Type::Ram)
        );
        assert!(large
            .iter()
            .any(|e| e.addr == 0xc000_0000 && e.kind == E820Type::Reserved));
    }

    #[test]
    fn cpu_entries_follow_the_topology_and_the_nodes() {
        let topo = parse_smp("4,sockets=2,cores=2,threads=2,maxcpus=8").unwrap();
        let flat = cpu_entries(&topo, None).unwrap();
        let ids: Vec<(u32, bool, u32)> = flat
            .iter()
            .map(|c| (c.apic_id, c.present, c.node))
            .collect();
        assert_eq!(
            ids,
            [
                (0, true, 0),
                (1, true, 0),
                (2, true, 0),
                (3, true, 0),
                (4, false, 0),
                (5, false, 0),
                (6, false, 0),
                (7, false, 0)
            ]
        );
        let n = numa(
            &topo,
            256 * MIB,
            &[
                "node,nodeid=0,cpus=0-3,mem=128M",
                "node,nodeid=1,cpus=4-7,mem=128M",
            ],
        );
        let nodes: Vec<u32> = cpu_entries(&topo, Some(&n))
            .unwrap()
            .iter()
            .map(|c| c.node)
            .collect();
        assert_eq!(nodes, [0, 0, 0, 0, 1, 1, 1, 1]);
    }

    #[test]
    fn initrd_goes_high_in_low_ram() {
        let l = MemoryLayout::x86_64(128 * MIB).unwrap();
        assert_eq!(
            initrd_address(&l, 32 * MIB, 0x1800).unwrap(),
            128 * MIB - 0x2000
        );
        let big = MemoryLayout::x86_64(8 << 30).unwrap();
        assert_eq!(
            initrd_address(&big, 32 * MIB, MIB).unwrap(),
            INITRD_ADDR_MAX - MIB
        );
        assert_eq!(
            initrd_address(&l, 100 * MIB, 30 * MIB)
                .unwrap_err()
                .to_string(),
            "--initrd: 31457280 bytes do not fit between the kernel's end (0x6400000) and \
             0x8000000; raise -m"
        );
        assert!(initrd_address(&l, 0, 200 * MIB).is_err());
    }

    #[test]
    fn tables_without_numa() {
        let topo = parse_smp("2,maxcpus=4").unwrap();
        let l = MemoryLayout::x86_64(128 * MIB).unwrap();
        let mem = mem_for(&l);
        let t = write_boot_tables(
            &mem,
            BootInput {
                layout: &l,
                cpus: cpu_entries(&topo, None).unwrap(),
                numa: None,
                cmdline: DEFAULT_CMDLINE,
                initrd: Some((0x700_0000, 0x1234)),
                setup_header: None,
            },
        )
        .unwrap();
        let zp = t.zero_page.0;
        assert_eq!(zp, layout::ZERO_PAGE_ADDR);
        assert_eq!(u32_at(&mem, zp + 0x202), u32::from_le_bytes(*b"HdrS"));
        assert_eq!(
            u32_at(&mem, zp + offsets::CMD_LINE_PTR as u64),
            layout::CMDLINE_ADDR as u32
        );
        assert_eq!(u32_at(&mem, zp + offsets::RAMDISK_IMAGE as u64), 0x700_0000);
        assert_eq!(u32_at(&mem, zp + offsets::RAMDISK_SIZE as u64), 0x1234);
        let mut cmdline = vec![0u8; DEFAULT_CMDLINE.len() + 1];
        mem.read_slice(&mut cmdline, GuestAddress(layout::CMDLINE_ADDR))
            .unwrap();
        assert_eq!(
            &cmdline[..DEFAULT_CMDLINE.len()],
            DEFAULT_CMDLINE.as_bytes()
        );
        assert_eq!(cmdline.last(), Some(&0));
        let rsdp: u64 = mem
            .read_obj(GuestAddress(zp + offsets::ACPI_RSDP_ADDR as u64))
            .unwrap();
        assert_eq!(rsdp, layout::RSDP_ADDR);
        let mut sig = [0u8; 8];
        mem.read_slice(&mut sig, GuestAddress(rsdp)).unwrap();
        assert_eq!(&sig, b"RSD PTR ");
        let e820 = e820_of(&mem);
        assert_eq!(e820[0], (0, 0x9fc00, 1));
        assert_eq!(e820[2], (0x100000, 127 * MIB, 1));
        assert!(t.mptable);
        let mut mp = [0u8; 4];
        mem.read_slice(&mut mp, GuestAddress(layout::MPTABLE_ADDR))
            .unwrap();
        assert_eq!(&mp, b"_MP_");
        // Hot-pluggable slots: the DSDT has the register block; no NUMA tables.
        assert!(t.hotplug.is_some());
        assert!(t.acpi.table(b"SRAT").is_none());
        assert!(t.acpi.table(b"SLIT").is_none());
        assert!(t.acpi.table(b"APIC").is_some());
    }

    #[test]
    fn tables_with_numa() {
        let topo = parse_smp("4,sockets=2,cores=2,maxcpus=4").unwrap();
        let l_ram = 256 * MIB;
        let n = numa(
            &topo,
            l_ram,
            &[
                "node,nodeid=0,cpus=0-1,mem=64M",
                "node,nodeid=1,cpus=2-3,mem=192M",
                "dist,src=0,dst=1,val=21",
            ],
        );
        let l = n.layout().unwrap();
        let mem = mem_for(&l);
        let t = write_boot_tables(
            &mem,
            BootInput {
                layout: &l,
                cpus: cpu_entries(&topo, Some(&n)).unwrap(),
                numa: Some(&n),
                cmdline: "console=ttyS0",
                initrd: None,
                setup_header: None,
            },
        )
        .unwrap();
        assert!(t.hotplug.is_none(), "every slot present: no hot-plug block");
        let srat = t.acpi.table(b"SRAT").expect("SRAT");
        let slit = &t.acpi.table(b"SLIT").expect("SLIT").bytes;
        // SLIT: header (36) + node count (8) + the 2x2 matrix.
        assert_eq!(&slit[44..48], &[10, 21, 21, 10]);
        // SRAT memory affinity entries (type 1, 40 bytes) after the 48-byte header.
        let mut mem_entries = Vec::new();
        let mut cpu_nodes = Vec::new();
        let b = &srat.bytes;
        let mut i = 48;
        while i < b.len() {
            let (kind, len) = (b[i], b[i + 1] as usize);
            match kind {
                0 => cpu_nodes.push((b[i + 3], b[i + 2])),
                1 => {
                    let node = u32::from_le_bytes(b[i + 2..i + 6].try_into().unwrap());
                    let base = u64::from_le_bytes(b[i + 8..i + 16].try_into().unwrap());
                    let size = u64::from_le_bytes(b[i + 16..i + 24].try_into().unwrap());
                    mem_entries.push((node, base, size));
                }
                _ => {}
            }
            i += len;
        }
        assert_eq!(
            mem_entries,
            [(0, 0, 64 * MIB), (1, 64 * MIB, 192 * MIB)],
            "SRAT memory"
        );
        // (APIC id, node)
        assert_eq!(cpu_nodes, [(0, 0), (1, 0), (2, 1), (3, 1)]);
        // e820 sees the same RAM as one map.
        let e820 = e820_of(&mem);
        assert_eq!(e820[2], (0x100000, 255 * MIB, 1));
    }
}

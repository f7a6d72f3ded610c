//! PCI bus 0 behind configuration mechanism #1 (ports `0xcf8` address, `0xcfc..=0xcff`
//! data), the type-0 configuration space of one function ([`ConfigSpace`]: write masks,
//! BAR sizing, the command register, a capability list with MSI), and a q35-like host
//! bridge at 00:00.0.
//!
//! The VMM plays the firmware: it assigns each BAR its address and enables memory decode
//! before the guest starts, as SeaBIOS does under QEMU, and the bus's MMIO table is fixed
//! from then on. A guest may size a BAR (write all ones, read the mask, write the address
//! back); a device answers its MMIO only while its BAR holds the assigned address and
//! memory decode is on.
//!
//! As under QEMU, the register offset is the address register's low byte ORed with the
//! data port's offset, so both `outl(reg 2); inw(0xcfc)` (kvm-unit-tests) and
//! `outl(reg 0); inw(0xcfe)` (the specification's way) read the device id.

use std::fmt;
use std::sync::{Arc, Mutex};

use cpu_topology::VcpuIndex;

use crate::bus::{BusDevice, DeviceAction, Range};

/// The address and data ports of configuration mechanism #1.
pub const PCI_CONFIG_RANGE: Range = Range::ports(0xcf8, 8);

/// Command register bits.
pub mod command {
    /// I/O space decode.
    pub const IO: u16 = 1 << 0;
    /// Memory space decode.
    pub const MEMORY: u16 = 1 << 1;
    /// Bus master (the function may DMA).
    pub const MASTER: u16 = 1 << 2;
    /// INTx disable.
    pub const INTX_DISABLE: u16 = 1 << 10;
}

const VENDOR: usize = 0x00;
const DEVICE: usize = 0x02;
const COMMAND: usize = 0x04;
const STATUS: usize = 0x06;
const REVISION: usize = 0x08;
const HEADER_TYPE: usize = 0x0e;
const BAR0: usize = 0x10;
const SUBSYSTEM_VENDOR: usize = 0x2c;
const CAP_POINTER: usize = 0x34;
const INTERRUPT_LINE: usize = 0x3c;
const INTERRUPT_PIN: usize = 0x3d;
const STATUS_CAP_LIST: u16 = 1 << 4;
const FIRST_CAP: usize = 0x40;
const MSI_CAP_ID: u8 = 0x05;
const MSI_ENABLE: u16 = 1 << 0;
const MSI_64BIT: u16 = 1 << 7;

/// A bus/device/function on bus 0 as its 16-bit requester id (`bus << 8 | devfn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf(pub u16);

impl Bdf {
    /// Device `dev` (0..32), function `func` (0..8) on bus 0.
    pub const fn new(dev: u8, func: u8) -> Self {
        Self((((dev & 0x1f) as u16) << 3) | (func & 7) as u16)
    }

    /// The device/function byte.
    pub const fn devfn(self) -> u8 {
        (self.0 & 0xff) as u8
    }

    /// The bus number.
    pub const fn bus(self) -> u8 {
        (self.0 >> 8) as u8
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let devfn = self.devfn();
        write!(f, "{:02x}:{:02x}.{}", self.bus(), devfn >> 3, devfn & 7)
    }
}

/// What identifies a function in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciId {
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Class code (bits 23:16), sub-class and programming interface.
    pub class: u32,
    /// Revision.
    pub revision: u8,
}

/// A 32-bit memory BAR the firmware placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBar {
    /// Guest-physical address (aligned to `size`).
    pub addr: u32,
    /// Size, a power of two of at least 16 bytes.
    pub size: u32,
}

/// An MSI message: the address and data a function writes to signal an interrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MsiMessage {
    /// The 64-bit message address.
    pub address: u64,
    /// The message data (16 bits are significant).
    pub data: u32,
}

/// The 256-byte type-0 configuration space of one function, with a write mask per byte.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigSpace {
    bytes: [u8; 256],
    wmask: [u8; 256],
    bars: [Option<MemoryBar>; 6],
    msi: Option<usize>,
}

impl fmt::Debug for ConfigSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigSpace")
            .field("vendor", &format_args!("{:#06x}", self.word(VENDOR)))
            .field("device", &format_args!("{:#06x}", self.word(DEVICE)))
            .field("bars", &self.bars)
            .field("msi", &self.msi)
            .finish()
    }
}

impl ConfigSpace {
    /// A function with identity `id`, memory decode on, bus master off, no BARs, no
    /// capabilities, no interrupt pin.
    pub fn new(id: PciId) -> Self {
        let mut c = Self {
            bytes: [0; 256],
            wmask: [0; 256],
            bars: [None; 6],
            msi: None,
        };
        c.set_word(VENDOR, id.vendor);
        c.set_word(DEVICE, id.device);
        c.bytes[REVISION] = id.revision;
        c.bytes[REVISION + 1..REVISION + 4].copy_from_slice(&id.class.to_le_bytes()[..3]);
        c.set_word(SUBSYSTEM_VENDOR, 0x1af4);
        c.set_word(SUBSYSTEM_VENDOR + 2, 0x1100);
        c.set_word(COMMAND, command::MEMORY);
        let cmd_mask = command::IO | command::MEMORY | command::MASTER | command::INTX_DISABLE;
        c.wmask[COMMAND..COMMAND + 2].copy_from_slice(&cmd_mask.to_le_bytes());
        c.wmask[INTERRUPT_LINE] = 0xff;
        c
    }

    /// Add 32-bit non-prefetchable memory BAR `index` (0..6) of `bar.size` bytes at
    /// `bar.addr`. A size that is not a power of two of at least 16, or an unaligned
    /// address, leaves the BAR out (returns false).
    pub fn add_memory_bar(&mut self, index: usize, bar: MemoryBar) -> bool {
        let fits = index < 6 && bar.size.is_power_of_two() && bar.size >= 16;
        if !fits || bar.addr % bar.size != 0 {
            return false;
        }
        let off = BAR0 + 4 * index;
        self.set_dword(off, bar.addr);
        self.wmask[off..off + 4].copy_from_slice(&(!(bar.size - 1)).to_le_bytes());
        self.bars[index] = Some(bar);
        true
    }

    /// Route INTx pin `pin` (1 = INTA#) to interrupt line `line` (the IOAPIC input the
    /// firmware wired it to; the guest reads it back from the interrupt line register).
    pub fn set_interrupt(&mut self, pin: u8, line: u8) {
        self.bytes[INTERRUPT_PIN] = pin;
        self.bytes[INTERRUPT_LINE] = line;
    }

    /// Add a 64-bit MSI capability with one vector (the first capability at 0x40).
    pub fn add_msi_capability(&mut self) {
        let off = FIRST_CAP;
        self.bytes[off] = MSI_CAP_ID;
        self.bytes[off + 1] = 0;
        self.set_word(off + 2, MSI_64BIT);
        self.wmask[off + 2] = MSI_ENABLE as u8;
        self.wmask[off + 4..off + 8].copy_from_slice(&0xffff_fffcu32.to_le_bytes());
        self.wmask[off + 8..off + 12].fill(0xff);
        self.wmask[off + 12..off + 14].fill(0xff);
        self.bytes[CAP_POINTER] = off as u8;
        let status = self.word(STATUS) | STATUS_CAP_LIST;
        self.set_word(STATUS, status);
        self.msi = Some(off);
    }

    /// Read `data.len()` bytes at `offset` (bytes past 256 read as ones).
    pub fn read(&self, offset: usize, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.bytes.get(offset + i).copied().unwrap_or(0xff);
        }
    }

    /// Write `data` at `offset` through the write mask (read-only bits keep their value).
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        for (i, &v) in data.iter().enumerate() {
            let Some(mask) = self.wmask.get(offset + i).copied() else {
                return;
            };
            let old = self.bytes[offset + i];
            self.bytes[offset + i] = (old & !mask) | (v & mask);
        }
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        self.word(COMMAND)
    }

    /// Whether the function may master the bus (DMA).
    pub fn bus_master(&self) -> bool {
        self.command() & command::MASTER != 0
    }

    /// The interrupt line register.
    pub fn interrupt_line(&self) -> u8 {
        self.bytes[INTERRUPT_LINE]
    }

    /// Whether BAR `index` decodes its firmware-assigned range: memory decode is on and
    /// the guest left (or put back) the address the firmware gave it.
    pub fn bar_decodes(&self, index: usize) -> bool {
        let Some(Some(bar)) = self.bars.get(index) else {
            return false;
        };
        self.command() & command::MEMORY != 0 && self.dword(BAR0 + 4 * index) == bar.addr
    }

    /// The MSI message, when the guest enabled MSI.
    pub fn msi(&self) -> Option<MsiMessage> {
        let off = self.msi?;
        (self.word(off + 2) & MSI_ENABLE != 0).then(|| MsiMessage {
            address: u64::from(self.dword(off + 4)) | u64::from(self.dword(off + 8)) << 32,
            data: u32::from(self.word(off + 12)),
        })
    }

    fn word(&self, off: usize) -> u16 {
        u16::from_le_bytes([self.bytes[off], self.bytes[off + 1]])
    }

    fn dword(&self, off: usize) -> u32 {
        let mut b = [0; 4];
        b.copy_from_slice(&self.bytes[off..off + 4]);
        u32::from_le_bytes(b)
    }

    fn set_word(&mut self, off: usize, v: u16) {
        self.bytes[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }

    fn set_dword(&mut self, off: usize, v: u32) {
        self.bytes[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
}

/// A function on the bus: it owns its configuration space.
pub trait PciFunction: Send + Sync + fmt::Debug {
    /// Read `data.len()` bytes of configuration space at `offset`.
    fn config_read(&self, offset: usize, data: &mut [u8]);
    /// Write `data` to configuration space at `offset`.
    fn config_write(&self, offset: usize, data: &[u8]);
}

/// A function with a configuration space and nothing behind it (the host bridge).
#[derive(Debug)]
pub struct PlainFunction(Mutex<ConfigSpace>);

impl PlainFunction {
    /// A function with `config`.
    pub fn new(config: ConfigSpace) -> Self {
        Self(Mutex::new(config))
    }

    /// The q35 host bridge (Intel 82G33 DRAM controller, 8086:29c0, class 0x0600).
    pub fn q35_host_bridge() -> Self {
        let mut c = ConfigSpace::new(PciId {
            vendor: 0x8086,
            device: 0x29c0,
            class: 0x06_00_00,
            revision: 0,
        });
        c.bytes[HEADER_TYPE] = 0;
        Self::new(c)
    }
}

impl PciFunction for PlainFunction {
    fn config_read(&self, offset: usize, data: &mut [u8]) {
        lock(&self.0).read(offset, data);
    }

    fn config_write(&self, offset: usize, data: &[u8]) {
        lock(&self.0).write(offset, data);
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Bus 0 behind configuration mechanism #1; see the [module docs](self).
#[derive(Debug)]
pub struct PciHost {
    address: Mutex<u32>,
    functions: Vec<(Bdf, Arc<dyn PciFunction>)>,
}

impl PciHost {
    /// A bus with `functions` (each at its own bdf on bus 0; a later duplicate is
    /// ignored).
    pub fn new(functions: Vec<(Bdf, Arc<dyn PciFunction>)>) -> Self {
        let mut unique: Vec<(Bdf, Arc<dyn PciFunction>)> = Vec::new();
        for (bdf, f) in functions {
            if bdf.bus() == 0 && !unique.iter().any(|(b, _)| *b == bdf) {
                unique.push((bdf, f));
            }
        }
        Self {
            address: Mutex::new(0),
            functions: unique,
        }
    }

    /// The function and register the address register selects (enable bit set, bus 0,
    /// a present function).
    fn selected(&self) -> Option<(&dyn PciFunction, usize)> {
        let addr = *lock(&self.address);
        if addr & (1 << 31) == 0 || (addr >> 16) & 0xff != 0 {
            return None;
        }
        let bdf = Bdf(((addr >> 8) & 0xff) as u16);
        let f = self.functions.iter().find(|(b, _)| *b == bdf)?;
        Some((f.1.as_ref(), (addr & 0xff) as usize))
    }
}

impl BusDevice for PciHost {
    fn read(&self, _: VcpuIndex, offset: u64, data: &mut [u8]) -> DeviceAction {
        data.fill(0xff);
        match offset {
            0 if data.len() == 4 => data.copy_from_slice(&lock(&self.address).to_le_bytes()),
            4..=7 => {
                if let Some((f, reg)) = self.selected() {
                    let off = reg | (offset as usize - 4);
                    let n = data.len().min(256 - off);
                    f.config_read(off, &mut data[..n]);
                }
            }
            _ => {}
        }
        DeviceAction::Continue
    }

    fn write(&self, _: VcpuIndex, offset: u64, data: &[u8]) -> DeviceAction {
        match offset {
            0 if data.len() == 4 => {
                let mut b = [0; 4];
                b.copy_from_slice(data);
                *lock(&self.address) = u32::from_le_bytes(b) & 0x80ff_ffff;
            }
            4..=7 => {
                if let Some((f, reg)) = self.selected() {
                    let off = reg | (offset as usize - 4);
                    let n = data.len().min(256 - off);
                    f.config_write(off, &data[..n]);
                }
            }
            _ => {}
        }
        DeviceAction::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: VcpuIndex = VcpuIndex(0);

    fn edu_like() -> ConfigSpace {
        let mut c = ConfigSpace::new(PciId {
            vendor: 0x1234,
            device: 0x11e8,
            class: 0x00_ff_00,
            revision: 0x10,
        });
        assert!(c.add_memory_bar(
            0,
            MemoryBar {
                addr: 0xfea0_0000,
                size: 1 << 20
            }
        ));
        c.set_interrupt(1, 16);
        c.add_msi_capability();
        c
    }

    fn host() -> PciHost {
        PciHost::new(vec![
            (Bdf::new(0, 0), Arc::new(PlainFunction::q35_host_bridge())),
            (Bdf::new(3, 0), Arc::new(PlainFunction::new(edu_like()))),
        ])
    }

    fn cfg_read(h: &PciHost, bdf: Bdf, reg: u32, len: usize) -> u32 {
        let addr = (1u32 << 31) | u32::from(bdf.0) << 8 | (reg & 0xfc);
        h.write(V, 0, &addr.to_le_bytes());
        let mut d = [0u8; 4];
        h.read(V, 4 + u64::from(reg & 3), &mut d[..len]);
        u32::from_le_bytes(d)
    }

    fn cfg_write(h: &PciHost, bdf: Bdf, reg: u32, v: u32, len: usize) {
        let addr = (1u32 << 31) | u32::from(bdf.0) << 8 | (reg & 0xfc);
        h.write(V, 0, &addr.to_le_bytes());
        h.write(V, 4 + u64::from(reg & 3), &v.to_le_bytes()[..len]);
    }

    #[test]
    fn mechanism_one_reads_ids_and_absent_functions_read_ones() {
        let h = host();
        assert_eq!(cfg_read(&h, Bdf::new(0, 0), 0, 4), 0x29c0_8086);
        assert_eq!(cfg_read(&h, Bdf::new(3, 0), 0, 2), 0x1234);
        assert_eq!(cfg_read(&h, Bdf::new(3, 0), 2, 2), 0x11e8);
        let addr = (1u32 << 31) | 0x18 << 8 | 2;
        h.write(V, 0, &addr.to_le_bytes());
        let mut w = [0u8; 2];
        h.read(V, 4, &mut w);
        assert_eq!(
            u16::from_le_bytes(w),
            0x11e8,
            "low address bits select the word"
        );
        assert_eq!(cfg_read(&h, Bdf::new(3, 0), 0x0b, 1), 0x00, "class");
        assert_eq!(cfg_read(&h, Bdf::new(3, 0), 0x0a, 1), 0xff, "sub-class");
        assert_eq!(cfg_read(&h, Bdf::new(0, 0), 0x0b, 1), 0x06, "bridge");
        assert_eq!(cfg_read(&h, Bdf::new(4, 0), 0, 4), 0xffff_ffff);
        let mut d = [0u8; 4];
        h.write(V, 0, &0x0000_1800u32.to_le_bytes());
        h.read(V, 4, &mut d);
        assert_eq!(d, [0xff; 4], "enable bit clear");
        h.read(V, 0, &mut d);
        assert_eq!(
            u32::from_le_bytes(d),
            0x1800,
            "the address register reads back"
        );
    }

    #[test]
    fn bar_sizing_reads_the_size_mask_and_the_address_restores() {
        let h = host();
        let edu = Bdf::new(3, 0);
        assert_eq!(cfg_read(&h, edu, 0x10, 4), 0xfea0_0000);
        cfg_write(&h, edu, 0x10, !0, 4);
        assert_eq!(
            cfg_read(&h, edu, 0x10, 4),
            0xfff0_0000,
            "1 MiB, 32-bit memory"
        );
        cfg_write(&h, edu, 0x14, !0, 4);
        assert_eq!(cfg_read(&h, edu, 0x14, 4), 0, "no BAR 1");
        cfg_write(&h, edu, 0x10, 0xfea0_0000, 4);
        assert_eq!(cfg_read(&h, edu, 0x10, 4), 0xfea0_0000);
    }

    #[test]
    fn bar_decode_follows_the_command_register_and_the_address() {
        let mut c = edu_like();
        assert!(c.bar_decodes(0));
        assert!(!c.bar_decodes(1));
        c.write(0x10, &u32::MAX.to_le_bytes());
        assert!(!c.bar_decodes(0), "while sized");
        c.write(0x10, &0xfea0_0000u32.to_le_bytes());
        c.write(COMMAND, &0u16.to_le_bytes());
        assert!(!c.bar_decodes(0), "memory decode off");
        c.write(COMMAND, &(command::MEMORY | command::MASTER).to_le_bytes());
        assert!(c.bar_decodes(0) && c.bus_master());
        c.write(COMMAND, &0xffffu16.to_le_bytes());
        assert_eq!(c.command(), 0x0407, "reserved command bits stay clear");
    }

    #[test]
    fn bad_bars_are_refused() {
        let mut c = edu_like();
        let bar = |addr, size| MemoryBar { addr, size };
        assert!(!c.add_memory_bar(1, bar(0x1000, 0x1800)));
        assert!(!c.add_memory_bar(1, bar(0x1800, 0x1000)));
        assert!(!c.add_memory_bar(6, bar(0x1000, 0x1000)));
        assert!(c.add_memory_bar(1, bar(0x1000, 0x1000)));
    }

    #[test]
    fn the_capability_list_has_msi_and_msi_enable_gives_the_message() {
        let h = host();
        let edu = Bdf::new(3, 0);
        assert_eq!(cfg_read(&h, edu, 0x06, 2) & 0x10, 0x10, "capability list");
        assert_eq!(cfg_read(&h, edu, 0x34, 1), 0x40);
        assert_eq!(cfg_read(&h, edu, 0x40, 2), 0x0005, "MSI, last capability");
        assert_eq!(cfg_read(&h, edu, 0x42, 2), 0x0080, "64-bit, disabled");
        assert_eq!(cfg_read(&h, edu, 0x3c, 2), 0x0110, "INTA#, line 16");
        let mut c = edu_like();
        assert_eq!(c.msi(), None);
        c.write(0x44, &0xfee0_0013u32.to_le_bytes());
        c.write(0x48, &0u32.to_le_bytes());
        c.write(0x4c, &0x1234_0041u32.to_le_bytes());
        assert_eq!(c.msi(), None, "not enabled yet");
        c.write(0x42, &0xffffu16.to_le_bytes());
        assert_eq!(
            c.msi(),
            Some(MsiMessage {
                address: 0xfee0_0010,
                data: 0x0041
            }),
            "address bits 1:0 and data bits above 15 are not writable"
        );
        c.write(0x3c, &[10]);
        assert_eq!(c.interrupt_line(), 10);
    }

    #[test]
    fn bdf_formats_like_lspci() {
        assert_eq!(Bdf::new(3, 1).to_string(), "00:03.1");
        assert_eq!(Bdf::new(3, 1).devfn(), 0x19);
        let dup = PciHost::new(vec![
            (Bdf::new(0, 0), Arc::new(PlainFunction::q35_host_bridge())),
            (Bdf::new(0, 0), Arc::new(PlainFunction::new(edu_like()))),
        ]);
        assert_eq!(cfg_read(&dup, Bdf::new(0, 0), 0, 4), 0x29c0_8086);
    }
}

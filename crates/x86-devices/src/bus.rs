//! The bus: a routing table from port and MMIO ranges to devices, and the
//! [`ExitHandler`] the vCPU run loop calls for every port-I/O and MMIO exit.
//!
//! The table is built once with [`BusBuilder`] and is immutable afterwards: an exit takes
//! no lock on the bus and allocates nothing; it finds its device by a binary search of a
//! small sorted slice and calls it through `dyn BusDevice`. Devices lock their own state.
//! CPU hot-plug needs no new ranges (its register block covers every slot).
//!
//! One device can be placed in front of the table, by type ([`BusBuilder::first_io`]):
//! its range is checked first and its methods are inlined into the run loop, so a VM whose
//! hottest exit is one doorbell port (the probe guest) pays no table search and no
//! indirect call for it.
//!
//! Unassigned ports read all ones and swallow writes, as an empty ISA bus does; so does
//! MMIO that no range claims.

use std::fmt;
use std::sync::{Arc, OnceLock};

use cpu_topology::VcpuIndex;
use vcpu_lifecycle::{ExitAction, ExitHandler, StopRequest};

/// A device on the bus. One instance serves every vCPU thread at once, so methods take
/// `&self` and the device locks its own state. `offset` is relative to the start of the
/// range the device was registered at; `data.len()` is the access size (for `rep ins` /
/// `rep outs`, size times count). Keep both methods short and non-blocking: they run on
/// the vCPU thread between two `KVM_RUN`s.
pub trait BusDevice: Send + Sync {
    /// The guest read `data.len()` bytes at `offset`: fill `data`.
    fn read(&self, vcpu: VcpuIndex, offset: u64, data: &mut [u8]) -> DeviceAction;
    /// The guest wrote `data` at `offset`.
    fn write(&self, vcpu: VcpuIndex, offset: u64, data: &[u8]) -> DeviceAction;
}

impl<T: BusDevice + ?Sized> BusDevice for Arc<T> {
    #[inline]
    fn read(&self, vcpu: VcpuIndex, offset: u64, data: &mut [u8]) -> DeviceAction {
        (**self).read(vcpu, offset, data)
    }

    #[inline]
    fn write(&self, vcpu: VcpuIndex, offset: u64, data: &[u8]) -> DeviceAction {
        (**self).write(vcpu, offset, data)
    }
}

/// What a device asks the vCPU to do after an access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceAction {
    /// Re-enter the guest.
    Continue,
    /// This vCPU is finished (its guest code is done); the other vCPUs run on.
    HaltVcpu,
    /// The guest ended the whole VM; the bus records the first such exit
    /// ([`Bus::vm_exit`]) and stops the VM.
    End(VmExit),
}

/// How the guest ended the VM: the VMM maps it to a process exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmExit {
    /// The guest reset the machine.
    Reboot(ResetSource),
    /// The guest powered off (ACPI S5).
    PowerOff,
    /// The guest wrote `value` to isa-debug-exit: QEMU exits with
    /// [`VmExit::debug_exit_status`] (`(value << 1) | 1`).
    DebugExit(u32),
    /// A device found the guest at fault (for example a malformed report) and stops the
    /// VM with this reason.
    Stop(StopRequest),
}

/// Which register reset the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetSource {
    /// Command `0xfe` to the i8042 (pulse the CPU reset line; Linux's `reboot=k`).
    I8042,
    /// The reset value written to the ACPI reset register (`reboot=acpi`).
    AcpiResetRegister,
}

impl VmExit {
    /// QEMU's exit status for a debug-exit write of `value`: `(value << 1) | 1`, so a
    /// guest cannot make the VMM report 0. A process exit code keeps the low 8 bits.
    pub fn debug_exit_status(value: u32) -> i32 {
        ((value << 1) | 1) as i32
    }
}

impl fmt::Display for VmExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmExit::Reboot(ResetSource::I8042) => f.write_str("guest reboot (i8042 reset)"),
            VmExit::Reboot(ResetSource::AcpiResetRegister) => {
                f.write_str("guest reboot (ACPI reset register)")
            }
            VmExit::PowerOff => f.write_str("guest power off (ACPI S5)"),
            VmExit::DebugExit(value) => write!(
                f,
                "guest wrote {value:#x} to isa-debug-exit (exit status {})",
                Self::debug_exit_status(*value)
            ),
            VmExit::Stop(reason) => f.write_str(reason.reason()),
        }
    }
}

/// An address range on the bus: `len` bytes from `base`, ports or guest-physical.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// First address.
    pub base: u64,
    /// Length in bytes (at least 1).
    pub len: u64,
}

impl Range {
    /// `len` ports from `base`.
    pub const fn ports(base: u16, len: u16) -> Self {
        Self {
            base: base as u64,
            len: len as u64,
        }
    }

    /// `len` bytes of guest-physical space from `base`.
    pub const fn mmio(base: u64, len: u64) -> Self {
        Self { base, len }
    }

    /// The last address, or `None` for an empty or wrapping range.
    fn last(&self) -> Option<u64> {
        self.len
            .checked_sub(1)
            .and_then(|l| self.base.checked_add(l))
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.last() {
            Some(last) => write!(f, "{:#x}..={last:#x}", self.base),
            None => write!(f, "{:#x}+{:#x}", self.base, self.len),
        }
    }
}

/// Which address space a range is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    /// Port I/O (`in`/`out`).
    Io,
    /// Guest-physical MMIO.
    Mmio,
}

impl fmt::Display for Space {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Space::Io => "port",
            Space::Mmio => "MMIO",
        })
    }
}

/// Why a device could not be placed on the bus.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The range is empty or runs past the end of the address space.
    #[error("register {name} at {space} range {range}: the range is empty or wraps")]
    InvalidRange {
        /// The device.
        name: &'static str,
        /// Its address space.
        space: Space,
        /// The range asked for.
        range: Range,
    },
    /// The range overlaps a device already on the bus.
    #[error("register {name} at {space} range {range}: overlaps {other} at {other_range}")]
    Overlap {
        /// The device.
        name: &'static str,
        /// Its address space.
        space: Space,
        /// The range asked for.
        range: Range,
        /// The device already there.
        other: &'static str,
        /// Its range.
        other_range: Range,
    },
}

/// One row of the routing table.
#[derive(Clone)]
struct Entry {
    base: u64,
    last: u64,
    name: &'static str,
    device: Arc<dyn BusDevice>,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {:#x}..={:#x}", self.name, self.base, self.last)
    }
}

impl Entry {
    fn range(&self) -> Range {
        Range::mmio(self.base, self.last - self.base + 1)
    }
}

/// No device: the default "first" device of a bus that has none.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDevice;

impl BusDevice for NoDevice {
    fn read(&self, _: VcpuIndex, _: u64, data: &mut [u8]) -> DeviceAction {
        data.fill(0xff);
        DeviceAction::Continue
    }

    fn write(&self, _: VcpuIndex, _: u64, _: &[u8]) -> DeviceAction {
        DeviceAction::Continue
    }
}

/// A device that can sit in front of the table ([`BusBuilder::first_io`]): its port
/// range is a constant, so the bus checks it with two instructions and calls the device
/// without dynamic dispatch (and the check vanishes for [`NoDevice`]).
pub trait FirstDevice: BusDevice {
    /// The ports the device answers (`len` 0: none).
    const PORTS: Range;
}

impl FirstDevice for NoDevice {
    const PORTS: Range = Range::ports(0, 0);
}

/// Builds a [`Bus`]: register every device, then [`BusBuilder::build`].
#[derive(Debug)]
pub struct BusBuilder<F = NoDevice> {
    first: F,
    first_name: &'static str,
    io: Vec<Entry>,
    mmio: Vec<Entry>,
}

impl Default for BusBuilder<NoDevice> {
    fn default() -> Self {
        Self::new()
    }
}

impl BusBuilder<NoDevice> {
    /// An empty bus.
    pub fn new() -> Self {
        Self {
            first: NoDevice,
            first_name: "",
            io: Vec::new(),
            mmio: Vec::new(),
        }
    }
}

impl<F: FirstDevice> BusBuilder<F> {
    /// Place `device` in front of the table at its constant port range
    /// ([`FirstDevice::PORTS`]): the bus checks it before the table and calls it without
    /// dynamic dispatch, so its code is inlined into the run loop. Meant for one hot
    /// doorbell; replaces an earlier first device.
    pub fn first_io<G: FirstDevice>(
        self,
        name: &'static str,
        device: G,
    ) -> Result<BusBuilder<G>, BusError> {
        check(&self.io, name, Space::Io, G::PORTS, 0xffff)?;
        Ok(BusBuilder {
            first: device,
            first_name: name,
            io: self.io,
            mmio: self.mmio,
        })
    }

    /// Route port range `range` to `device`.
    pub fn io(
        mut self,
        name: &'static str,
        range: Range,
        device: Arc<dyn BusDevice>,
    ) -> Result<Self, BusError> {
        let last = check(&self.io, name, Space::Io, range, 0xffff)?;
        let first = F::PORTS;
        if first.len > 0 && first.base <= last && range.base < first.base + first.len {
            return Err(overlap(name, Space::Io, range, self.first_name, first));
        }
        insert(&mut self.io, name, range, last, device);
        Ok(self)
    }

    /// Route guest-physical range `range` to `device`.
    pub fn mmio(
        mut self,
        name: &'static str,
        range: Range,
        device: Arc<dyn BusDevice>,
    ) -> Result<Self, BusError> {
        let last = check(&self.mmio, name, Space::Mmio, range, u64::MAX)?;
        insert(&mut self.mmio, name, range, last, device);
        Ok(self)
    }

    /// The finished, immutable bus.
    pub fn build(self) -> Bus<F> {
        Bus {
            first: self.first,
            first_name: self.first_name,
            io: Table::new(self.io),
            mmio: Table::new(self.mmio),
            exit: OnceLock::new(),
        }
    }
}

fn overlap(
    name: &'static str,
    space: Space,
    range: Range,
    other: &'static str,
    o: Range,
) -> BusError {
    BusError::Overlap {
        name,
        space,
        range,
        other,
        other_range: o,
    }
}

/// Validate `range` against `table`; its last address on success.
fn check(
    table: &[Entry],
    name: &'static str,
    space: Space,
    range: Range,
    max: u64,
) -> Result<u64, BusError> {
    let last = range
        .last()
        .filter(|&l| l <= max)
        .ok_or(BusError::InvalidRange { name, space, range })?;
    match table
        .iter()
        .find(|e| e.base <= last && range.base <= e.last)
    {
        Some(e) => Err(overlap(name, space, range, e.name, e.range())),
        None => Ok(last),
    }
}

fn insert(
    table: &mut Vec<Entry>,
    name: &'static str,
    range: Range,
    last: u64,
    device: Arc<dyn BusDevice>,
) {
    let at = table.partition_point(|e| e.base < range.base);
    table.insert(
        at,
        Entry {
            base: range.base,
            last,
            name,
            device,
        },
    );
}

/// The routing table of one address space: the ranges' first addresses in a compact
/// sorted array for the search, the rest beside it.
#[derive(Debug)]
struct Table {
    bases: Box<[u64]>,
    entries: Box<[Entry]>,
}

impl Table {
    fn new(entries: Vec<Entry>) -> Self {
        Self {
            bases: entries.iter().map(|e| e.base).collect(),
            entries: entries.into_boxed_slice(),
        }
    }

    /// The device covering `addr` and the offset into its range: a binary search for
    /// the last range starting at or below `addr` (one compare per halving, no early
    /// exits), then its end.
    #[inline]
    fn route(&self, addr: u64) -> Option<(&Entry, u64)> {
        let bases = &self.bases[..];
        if bases.first().is_none_or(|&b| addr < b) {
            return None;
        }
        let (mut lo, mut len) = (0, bases.len());
        while len > 1 {
            let half = len / 2;
            if bases[lo + half] <= addr {
                lo += half;
            }
            len -= half;
        }
        let entry = self.entries.get(lo)?;
        (addr <= entry.last).then(|| (entry, addr - entry.base))
    }
}

/// The port-I/O/MMIO bus of a VM; see the [module docs](self).
#[derive(Debug)]
pub struct Bus<F = NoDevice> {
    first: F,
    first_name: &'static str,
    io: Table,
    mmio: Table,
    exit: OnceLock<VmExit>,
}

impl<F> Bus<F> {
    /// How the guest ended the VM: the first [`DeviceAction::End`] any device returned,
    /// once a vCPU got [`ExitAction::StopVm`] from the bus.
    pub fn vm_exit(&self) -> Option<&VmExit> {
        self.exit.get()
    }

    /// The first device (the probe doorbell, say).
    pub fn first(&self) -> &F {
        &self.first
    }

    #[inline]
    fn act(&self, action: DeviceAction) -> ExitAction {
        match action {
            DeviceAction::Continue => ExitAction::Continue,
            DeviceAction::HaltVcpu => ExitAction::Halt,
            DeviceAction::End(exit) => self.end(exit),
        }
    }

    #[cold]
    #[inline(never)]
    fn end(&self, exit: VmExit) -> ExitAction {
        let reason = exit.to_string();
        // The first end wins: a second vCPU racing to a different exit does not change
        // what the VMM reports.
        let _ = self.exit.set(exit);
        ExitAction::StopVm(StopRequest::new(reason))
    }

    /// A port read the first device does not claim (kept out of line, so the inlined
    /// fast path stays small).
    #[inline(never)]
    fn table_in(&self, vcpu: VcpuIndex, port: u16, data: &mut [u8]) -> ExitAction {
        match self.io.route(u64::from(port)) {
            Some((e, offset)) => self.act(e.device.read(vcpu, offset, data)),
            None => {
                data.fill(0xff);
                ExitAction::Continue
            }
        }
    }

    /// A port write the first device does not claim.
    #[inline(never)]
    fn table_out(&self, vcpu: VcpuIndex, port: u16, data: &[u8]) -> ExitAction {
        match self.io.route(u64::from(port)) {
            Some((e, offset)) => self.act(e.device.write(vcpu, offset, data)),
            None => ExitAction::Continue,
        }
    }
}

impl<F: FirstDevice> Bus<F> {
    /// Every registered range: `(space, range, device name)`, in address order, the
    /// first device included (for `info mtree`-like listings and tests).
    pub fn map(&self) -> Vec<(Space, Range, &'static str)> {
        let first = (F::PORTS.len > 0).then_some((Space::Io, F::PORTS, self.first_name));
        let io = self
            .io
            .entries
            .iter()
            .map(|e| (Space::Io, e.range(), e.name));
        let mut io: Vec<_> = io.chain(first).collect();
        io.sort_by_key(|(_, r, _)| r.base);
        let mmio = self
            .mmio
            .entries
            .iter()
            .map(|e| (Space::Mmio, e.range(), e.name));
        io.into_iter().chain(mmio).collect()
    }

    /// The offset of `port` in the first device's range, if it is there.
    #[inline(always)]
    fn first_offset(port: u16) -> Option<u64> {
        let offset = u64::from(port.wrapping_sub(F::PORTS.base as u16));
        (offset < F::PORTS.len).then_some(offset)
    }
}

impl<F: FirstDevice> ExitHandler for Bus<F> {
    #[inline]
    fn io_in(&self, vcpu: VcpuIndex, port: u16, data: &mut [u8]) -> ExitAction {
        if let Some(offset) = Self::first_offset(port) {
            return self.act(self.first.read(vcpu, offset, data));
        }
        self.table_in(vcpu, port, data)
    }

    #[inline]
    fn io_out(&self, vcpu: VcpuIndex, port: u16, data: &[u8]) -> ExitAction {
        if let Some(offset) = Self::first_offset(port) {
            return self.act(self.first.write(vcpu, offset, data));
        }
        self.table_out(vcpu, port, data)
    }

    fn mmio_read(&self, vcpu: VcpuIndex, addr: u64, data: &mut [u8]) -> ExitAction {
        match self.mmio.route(addr) {
            Some((e, offset)) => self.act(e.device.read(vcpu, offset, data)),
            None => {
                data.fill(0xff);
                ExitAction::Continue
            }
        }
    }

    fn mmio_write(&self, vcpu: VcpuIndex, addr: u64, data: &[u8]) -> ExitAction {
        match self.mmio.route(addr) {
            Some((e, offset)) => self.act(e.device.write(vcpu, offset, data)),
            None => ExitAction::Continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records accesses; reads return the low byte of the offset.
    #[derive(Debug, Default)]
    struct Probe(Mutex<Vec<(u64, Vec<u8>)>>);

    impl BusDevice for Probe {
        fn read(&self, _: VcpuIndex, offset: u64, data: &mut [u8]) -> DeviceAction {
            data.fill(offset as u8);
            DeviceAction::Continue
        }
        fn write(&self, _: VcpuIndex, offset: u64, data: &[u8]) -> DeviceAction {
            self.0.lock().unwrap().push((offset, data.to_vec()));
            match data.first() {
                Some(0xdd) => DeviceAction::HaltVcpu,
                Some(0xee) => DeviceAction::End(VmExit::DebugExit(u32::from(data[0]))),
                Some(0xef) => DeviceAction::End(VmExit::PowerOff),
                _ => DeviceAction::Continue,
            }
        }
    }

    /// A first device at ports 0x510..=0x513.
    #[derive(Debug, Default)]
    struct Doorbell(Probe);

    impl BusDevice for Doorbell {
        fn read(&self, v: VcpuIndex, offset: u64, data: &mut [u8]) -> DeviceAction {
            self.0.read(v, offset, data)
        }
        fn write(&self, v: VcpuIndex, offset: u64, data: &[u8]) -> DeviceAction {
            self.0.write(v, offset, data)
        }
    }

    impl FirstDevice for Doorbell {
        const PORTS: Range = Range::ports(0x510, 4);
    }

    const V: VcpuIndex = VcpuIndex(0);

    #[test]
    fn routes_by_range_with_offsets_and_empty_bus_elsewhere() {
        let a = Arc::new(Probe::default());
        let b = Arc::new(Probe::default());
        let bus = BusBuilder::new()
            .io("b", Range::ports(0x3f8, 8), b.clone())
            .unwrap()
            .io("a", Range::ports(0x60, 5), a.clone())
            .unwrap()
            .mmio("m", Range::mmio(0xff00_0000, 0x1_0000), a.clone())
            .unwrap()
            .build();
        let mut d = [0u8; 2];
        bus.io_in(V, 0x3fd, &mut d);
        assert_eq!(d, [5, 5]);
        bus.io_in(V, 0x64, &mut d);
        assert_eq!(d, [4, 4]);
        for port in [0x5f, 0x65, 0x3f7, 0x400, 0, 0xffff] {
            bus.io_in(V, port, &mut d);
            assert_eq!(d, [0xff, 0xff], "{port:#x}");
            assert_eq!(bus.io_out(V, port, &[1]), ExitAction::Continue);
        }
        bus.io_out(V, 0x3f8, &[7]);
        bus.mmio_write(V, 0xff00_fffe, &[1, 2]);
        assert_eq!(*b.0.lock().unwrap(), [(0, vec![7])]);
        assert_eq!(*a.0.lock().unwrap(), [(0xfffe, vec![1, 2])]);
        bus.mmio_read(V, 0xff01_0000, &mut d);
        assert_eq!(d, [0xff, 0xff]);
        let names: Vec<_> = bus.map().into_iter().map(|m| m.2).collect();
        assert_eq!(names, ["a", "b", "m"], "sorted by address");
    }

    #[test]
    fn overlaps_and_bad_ranges_are_typed_errors() {
        let d = Arc::new(NoDevice);
        let bus = BusBuilder::new()
            .io("com1", Range::ports(0x3f8, 8), d.clone())
            .unwrap();
        let err = bus.io("x", Range::ports(0x3ff, 2), d.clone()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "register x at port range 0x3ff..=0x400: overlaps com1 at 0x3f8..=0x3ff"
        );
        let bus = BusBuilder::new()
            .io("com1", Range::ports(0x3f8, 8), d.clone())
            .unwrap();
        assert!(matches!(
            bus.io("x", Range::ports(0x3f0, 9), d.clone()),
            Err(BusError::Overlap { other: "com1", .. })
        ));
        let bus = BusBuilder::new();
        assert!(matches!(
            bus.io("x", Range::ports(0x10, 0), d.clone()),
            Err(BusError::InvalidRange { .. })
        ));
        let bus = BusBuilder::new();
        assert!(matches!(
            bus.io("x", Range::mmio(0xffff, 2), d.clone()),
            Err(BusError::InvalidRange { .. })
        ));
        let bus = BusBuilder::new();
        assert!(matches!(
            bus.mmio("x", Range::mmio(u64::MAX, 2), d.clone()),
            Err(BusError::InvalidRange { .. })
        ));
        // The first device's range counts too, whichever is registered first.
        let bus = BusBuilder::new()
            .first_io("doorbell", Doorbell::default())
            .unwrap();
        assert_eq!(
            bus.io("fw_cfg", Range::ports(0x510, 2), d.clone())
                .unwrap_err()
                .to_string(),
            "register fw_cfg at port range 0x510..=0x511: overlaps doorbell at 0x510..=0x513"
        );
        let bus = BusBuilder::new()
            .io("fw_cfg", Range::ports(0x513, 2), d)
            .unwrap();
        assert!(bus.first_io("doorbell", Doorbell::default()).is_err());
    }

    #[test]
    fn the_first_device_is_checked_before_the_table() {
        let bus = BusBuilder::new()
            .io("table", Range::ports(0x3f8, 8), Arc::new(NoDevice))
            .unwrap()
            .first_io("doorbell", Doorbell::default())
            .unwrap()
            .build();
        assert_eq!(bus.io_out(V, 0x512, &[0xdd]), ExitAction::Halt);
        assert_eq!(*bus.first().0 .0.lock().unwrap(), [(2, vec![0xdd])]);
        let mut d = [0u8; 1];
        bus.io_in(V, 0x513, &mut d);
        assert_eq!(d, [3]);
        bus.io_in(V, 0x514, &mut d);
        assert_eq!(d, [0xff]);
        let map: Vec<_> = bus.map().into_iter().map(|(_, r, n)| (r.base, n)).collect();
        assert_eq!(map, [(0x3f8, "table"), (0x510, "doorbell")]);
    }

    #[test]
    fn the_first_end_of_the_vm_is_recorded() {
        let bus = BusBuilder::new()
            .io("p", Range::ports(0xf4, 4), Arc::new(Probe::default()))
            .unwrap()
            .build();
        assert_eq!(bus.vm_exit(), None);
        let action = bus.io_out(V, 0xf4, &[0xee]);
        assert_eq!(
            action,
            ExitAction::StopVm("guest wrote 0xee to isa-debug-exit (exit status 477)".into())
        );
        assert!(matches!(
            bus.io_out(V, 0xf4, &[0xef]),
            ExitAction::StopVm(_)
        ));
        assert_eq!(bus.vm_exit(), Some(&VmExit::DebugExit(0xee)));
    }

    #[test]
    fn lookup_agrees_with_a_linear_scan() {
        // Ranges of 1..=7 ports every 10 ports, for every table size up to 12.
        for n in 0..12u16 {
            let mut b = BusBuilder::new();
            let mut naive = Vec::new();
            for i in (0..n).rev() {
                let r = Range::ports(0x100 + 10 * i, 1 + i % 7);
                b = b.io("d", r, Arc::new(Probe::default())).unwrap();
                naive.push(r);
            }
            let bus = b.build();
            for port in 0xf0..0x100 + 10 * n + 10 {
                let want = naive
                    .iter()
                    .find(|r| r.base <= u64::from(port) && u64::from(port) < r.base + r.len)
                    .map(|r| (u64::from(port) - r.base) as u8);
                let mut d = [0u8];
                bus.io_in(V, port, &mut d);
                assert_eq!(d[0], want.unwrap_or(0xff), "{n} ranges, port {port:#x}");
            }
        }
    }

    #[test]
    fn debug_exit_status_is_qemus() {
        assert_eq!(VmExit::debug_exit_status(0), 1);
        assert_eq!(VmExit::debug_exit_status(1), 3);
        assert_eq!(VmExit::debug_exit_status(0x7f) & 0xff, 0xff);
    }
}

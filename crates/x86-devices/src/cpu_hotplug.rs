//! The CPU hot-plug register block the DSDT's `\_SB.CPUS` methods drive (x86-boot's
//! [`CpuHotplugController`]) and its GED interrupt line.
//!
//! The VMM plugs a slot ([`CpuHotplug::plug_cpu`]) or asks the guest to release one
//! ([`CpuHotplug::request_cpu_unplug`]); each raises the GED edge so the guest's `_EVT`
//! rescans the slots. A guest eject (`_EJ0`) is queued for [`CpuHotplug::take_ejected`].
//! The block covers every slot from the start, so hot-plug never adds bus ranges.

use std::sync::{Mutex, MutexGuard};

use cpu_topology::VcpuIndex;
use x86_boot::acpi::{
    CpuHotplugConfig, CpuHotplugController, HotplugError, HotplugEvent, HOTPLUG_IO_LEN,
};
use x86_boot::CpuEntry;

use crate::bus::{BusDevice, DeviceAction, Range};
use crate::irq::{InterruptLine, IrqError};

/// The CPU hot-plug register block.
#[derive(Debug)]
pub struct CpuHotplug {
    range: Range,
    ctl: Mutex<CpuHotplugController>,
    ejected: Mutex<Vec<u32>>,
    line: InterruptLine,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl CpuHotplug {
    /// The block at `config.io_base` for `cpus` (the index is the ACPI processor UID;
    /// present slots start enabled), with its GED line on `config.ged_gsi`.
    pub fn new(config: &CpuHotplugConfig, cpus: &[CpuEntry]) -> Result<Self, IrqError> {
        Ok(Self {
            range: Range::ports(config.io_base, HOTPLUG_IO_LEN),
            ctl: Mutex::new(CpuHotplugController::new(cpus)),
            ejected: Mutex::new(Vec::with_capacity(cpus.len())),
            line: InterruptLine::new("CPU hot-plug", config.ged_gsi)?,
        })
    }

    /// Where to register the device.
    pub fn range(&self) -> Range {
        self.range
    }

    /// The GED line (register its eventfd as irqfd).
    pub fn line(&self) -> &InterruptLine {
        &self.line
    }

    fn pulse(&self) -> Result<(), HotplugError> {
        self.line
            .eventfd()
            .write(1)
            .map_err(|source| HotplugError::Interrupt {
                gsi: self.line.gsi(),
                source,
            })
    }

    /// Mark slot `uid` populated with an insert pending and raise the GED edge. Create
    /// the slot's vCPU (waiting for INIT/SIPI) first.
    pub fn plug_cpu(&self, uid: u32) -> Result<(), HotplugError> {
        lock(&self.ctl).plug(uid)?;
        self.pulse()
    }

    /// Ask the guest to release slot `uid` (remove pending) and raise the GED edge.
    pub fn request_cpu_unplug(&self, uid: u32) -> Result<(), HotplugError> {
        lock(&self.ctl).request_unplug(uid)?;
        self.pulse()
    }

    /// Slots the guest ejected since the last call, in eject order.
    pub fn take_ejected(&self) -> Vec<u32> {
        std::mem::take(&mut *lock(&self.ejected))
    }

    /// Whether slot `uid` holds a CPU.
    pub fn cpu_slot_enabled(&self, uid: u32) -> bool {
        lock(&self.ctl).is_enabled(uid)
    }
}

impl BusDevice for CpuHotplug {
    fn read(&self, _: VcpuIndex, offset: u64, data: &mut [u8]) -> DeviceAction {
        lock(&self.ctl).read(offset, data);
        DeviceAction::Continue
    }

    fn write(&self, _: VcpuIndex, offset: u64, data: &[u8]) -> DeviceAction {
        let event = lock(&self.ctl).write(offset, data);
        if let Some(HotplugEvent::Eject { uid }) = event {
            // Capacity is the slot count: an eject per populated slot never allocates.
            lock(&self.ejected).push(uid);
        }
        DeviceAction::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: VcpuIndex = VcpuIndex(0);

    fn status(hp: &CpuHotplug, uid: u32) -> u8 {
        hp.write(V, 0, &uid.to_le_bytes());
        let mut b = [0u8];
        hp.read(V, 4, &mut b);
        b[0]
    }

    #[test]
    fn plug_unplug_and_eject() {
        let cpus = [CpuEntry::new(0, true), CpuEntry::new(1, false)];
        let hp = CpuHotplug::new(&CpuHotplugConfig::default(), &cpus).unwrap();
        assert_eq!(hp.range().len, 12);
        assert_eq!(status(&hp, 0), 1);
        assert_eq!(status(&hp, 1), 0);
        hp.plug_cpu(1).unwrap();
        assert_eq!(hp.line().take_pulses(), 1);
        assert_eq!(status(&hp, 1), 0b011, "enabled, insert pending");
        assert_eq!(
            hp.plug_cpu(1).unwrap_err().to_string(),
            "CPU slot 1 is already populated"
        );
        assert_eq!(hp.line().take_pulses(), 0, "no edge for a refused plug");
        hp.request_cpu_unplug(1).unwrap();
        assert_eq!(status(&hp, 1) & 0b100, 0b100);
        assert!(hp.take_ejected().is_empty());
        hp.write(V, 0, &1u32.to_le_bytes());
        hp.write(V, 4, &[0b1000]);
        assert_eq!(hp.take_ejected(), [1]);
        assert!(hp.take_ejected().is_empty());
        assert!(!hp.cpu_slot_enabled(1));
        assert_eq!(
            hp.plug_cpu(7).unwrap_err().to_string(),
            "CPU slot 7 does not exist (2 slots)"
        );
    }
}

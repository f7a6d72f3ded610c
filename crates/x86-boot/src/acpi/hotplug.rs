//! The VMM side of the CPU hot-plug register block the DSDT drives.
//!
//! The DSDT's `\_SB.CPUS` methods access a 12-byte I/O port block at
//! [`CpuHotplugConfig::io_base`](super::CpuHotplugConfig::io_base):
//!
//! | offset | size | read | write |
//! |---|---|---|---|
//! | 0 | 4 | selected slot (UID) | select a slot |
//! | 4 | 1 | status of the selected slot: bit 0 enabled, bit 1 insert pending, bit 2 remove pending | bit 1: acknowledge insert, bit 2: acknowledge remove, bit 3: eject (the guest has offlined the CPU) |
//! | 5..12 | - | 0 | ignored |
//!
//! [`CpuHotplugController`] implements these semantics as plain state so a
//! VMM only routes port reads/writes to it and acts on the returned
//! [`HotplugEvent`]. Port handlers call [`CpuHotplugController::read`] and
//! [`CpuHotplugController::write`], which do not allocate.

use crate::platform::CpuEntry;

/// Status bit: the slot holds a CPU (`_STA` returns 0xF).
pub const STATUS_ENABLED: u8 = 1 << 0;
/// Status bit: an insert event is pending (write 1 to acknowledge).
pub const STATUS_INSERTING: u8 = 1 << 1;
/// Status bit: a remove request is pending (write 1 to acknowledge).
pub const STATUS_REMOVING: u8 = 1 << 2;
/// Write-only bit: the guest ejects the slot (`_EJ0`).
pub const STATUS_EJECT: u8 = 1 << 3;
/// Offset of the selector register.
pub const REG_SELECTOR: u64 = 0;
/// Offset of the status register.
pub const REG_STATUS: u64 = 4;

/// What a guest register write asks the VMM to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HotplugEvent {
    /// The guest offlined slot `uid` and ejected it: stop its vCPU. The slot
    /// now reads as disabled.
    Eject {
        /// Slot index (ACPI processor UID).
        uid: u32,
    },
}

/// Errors from VMM-side hot-plug requests.
#[derive(Debug, thiserror::Error)]
pub enum HotplugError {
    /// The machine has no hot-plug register block (every slot is present
    /// at boot, so the tables describe no hot-pluggable CPU).
    #[error("CPU hot-plug is not configured (start the VM with maxcpus above cpus)")]
    NotConfigured,
    /// The VMM could not raise the GED interrupt that makes the guest
    /// rescan the slots (the slot state has changed already).
    #[error("raise the CPU hot-plug interrupt (GSI {gsi})")]
    Interrupt {
        /// The GED GSI.
        gsi: u32,
        /// The eventfd write error.
        #[source]
        source: std::io::Error,
    },
    /// No such slot.
    #[error("CPU slot {uid} does not exist ({slots} slots)")]
    NoSuchSlot {
        /// Requested slot.
        uid: u32,
        /// Number of slots.
        slots: usize,
    },
    /// Plugging a slot that holds a CPU.
    #[error("CPU slot {uid} is already populated")]
    AlreadyPresent {
        /// Requested slot.
        uid: u32,
    },
    /// Unplugging an empty slot.
    #[error("CPU slot {uid} is empty")]
    NotPresent {
        /// Requested slot.
        uid: u32,
    },
}

/// Register state of the CPU hot-plug block: one status byte per slot and
/// the selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuHotplugController {
    selector: u32,
    status: Vec<u8>,
}

impl CpuHotplugController {
    /// Slots as in [`super::AcpiConfig::cpus`]: present ones start enabled.
    pub fn new(cpus: &[CpuEntry]) -> Self {
        CpuHotplugController {
            selector: 0,
            status: cpus
                .iter()
                .map(|c| if c.present { STATUS_ENABLED } else { 0 })
                .collect(),
        }
    }

    fn slot(&self, uid: u32) -> Result<usize, HotplugError> {
        let i = uid as usize;
        if i < self.status.len() {
            Ok(i)
        } else {
            Err(HotplugError::NoSuchSlot {
                uid,
                slots: self.status.len(),
            })
        }
    }

    /// Mark slot `uid` populated with an insert event pending. Create the
    /// vCPU (waiting for INIT/SIPI) before this, then pulse the GED GSI.
    pub fn plug(&mut self, uid: u32) -> Result<(), HotplugError> {
        let i = self.slot(uid)?;
        if self.status[i] & STATUS_ENABLED != 0 {
            return Err(HotplugError::AlreadyPresent { uid });
        }
        self.status[i] = STATUS_ENABLED | STATUS_INSERTING;
        Ok(())
    }

    /// Ask the guest to release slot `uid`, then pulse the GED GSI. The
    /// guest answers with [`HotplugEvent::Eject`] once the CPU is offline
    /// (or never, if it refuses).
    pub fn request_unplug(&mut self, uid: u32) -> Result<(), HotplugError> {
        let i = self.slot(uid)?;
        if self.status[i] & STATUS_ENABLED == 0 {
            return Err(HotplugError::NotPresent { uid });
        }
        self.status[i] |= STATUS_REMOVING;
        Ok(())
    }

    /// Whether slot `uid` holds a CPU.
    pub fn is_enabled(&self, uid: u32) -> bool {
        self.status
            .get(uid as usize)
            .is_some_and(|s| s & STATUS_ENABLED != 0)
    }

    /// Status byte of slot `uid` (0 for a slot that does not exist).
    pub fn status(&self, uid: u32) -> u8 {
        self.status.get(uid as usize).copied().unwrap_or(0)
    }

    /// Guest read of `data.len()` bytes at `offset` in the block.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = match offset.saturating_add(i as u64) {
                o @ 0..=3 => self.selector.to_le_bytes()[o as usize],
                4 => self.status(self.selector) & !STATUS_EJECT,
                _ => 0,
            };
        }
    }

    /// Guest write of `data` at `offset` in the block.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Option<HotplugEvent> {
        let mut event = None;
        for (i, &byte) in data.iter().enumerate() {
            match offset.saturating_add(i as u64) {
                o @ 0..=3 => {
                    let mut sel = self.selector.to_le_bytes();
                    sel[o as usize] = byte;
                    self.selector = u32::from_le_bytes(sel);
                }
                4 => event = self.write_status(byte),
                _ => {}
            }
        }
        event
    }

    fn write_status(&mut self, byte: u8) -> Option<HotplugEvent> {
        let uid = self.selector;
        let status = self.status.get_mut(uid as usize)?;
        if byte & STATUS_INSERTING != 0 {
            *status &= !STATUS_INSERTING;
        }
        if byte & STATUS_REMOVING != 0 {
            *status &= !STATUS_REMOVING;
        }
        if byte & STATUS_EJECT != 0 && *status & STATUS_ENABLED != 0 {
            *status = 0;
            return Some(HotplugEvent::Eject { uid });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controller() -> CpuHotplugController {
        CpuHotplugController::new(&[
            CpuEntry::new(0, true),
            CpuEntry::new(1, true),
            CpuEntry::new(2, false),
            CpuEntry::new(3, false),
        ])
    }

    /// What the DSDT's CSTA does: select, read the status byte.
    fn sta(c: &mut CpuHotplugController, uid: u32) -> u8 {
        c.write(REG_SELECTOR, &uid.to_le_bytes());
        let mut b = [0u8];
        c.read(REG_STATUS, &mut b);
        if b[0] & STATUS_ENABLED != 0 {
            0xf
        } else {
            0
        }
    }

    /// What CSCN does: walk the slots, acknowledge and report events.
    fn scan(c: &mut CpuHotplugController, slots: u32) -> Vec<(u32, u8)> {
        let mut notes = vec![];
        for uid in 0..slots {
            c.write(REG_SELECTOR, &uid.to_le_bytes());
            let mut b = [0u8];
            c.read(REG_STATUS, &mut b);
            if b[0] & STATUS_INSERTING != 0 {
                notes.push((uid, 1));
                c.write(REG_STATUS, &[STATUS_INSERTING]);
            } else if b[0] & STATUS_REMOVING != 0 {
                notes.push((uid, 3));
                c.write(REG_STATUS, &[STATUS_REMOVING]);
            }
        }
        notes
    }

    #[test]
    fn plug_scan_unplug_eject_cycle() {
        let mut c = controller();
        assert_eq!(
            (0..4).map(|u| sta(&mut c, u)).collect::<Vec<_>>(),
            [0xf, 0xf, 0, 0]
        );
        assert_eq!(scan(&mut c, 4), vec![]);

        c.plug(2).unwrap();
        assert_eq!(scan(&mut c, 4), vec![(2, 1)], "device check for slot 2");
        assert_eq!(scan(&mut c, 4), vec![], "events are acknowledged");
        assert_eq!(sta(&mut c, 2), 0xf);

        c.request_unplug(1).unwrap();
        assert_eq!(scan(&mut c, 4), vec![(1, 3)], "eject request for slot 1");
        assert!(c.is_enabled(1), "still enabled until the guest ejects");
        // _EJ0 -> CEJ0(1): select, write the eject bit.
        c.write(REG_SELECTOR, &1u32.to_le_bytes());
        assert_eq!(
            c.write(REG_STATUS, &[STATUS_EJECT]),
            Some(HotplugEvent::Eject { uid: 1 })
        );
        assert_eq!(sta(&mut c, 1), 0);
        assert_eq!(c.write(REG_STATUS, &[STATUS_EJECT]), None, "already empty");
    }

    #[test]
    fn register_access_widths() {
        let mut c = controller();
        c.write(0, &[0x03, 0, 0, 0]);
        let mut sel = [0u8; 4];
        c.read(0, &mut sel);
        assert_eq!(u32::from_le_bytes(sel), 3);
        c.write(1, &[0x01]);
        c.read(0, &mut sel);
        assert_eq!(u32::from_le_bytes(sel), 0x103);
        // Selected slot out of range: status reads 0, writes do nothing.
        let mut st = [0xffu8];
        c.read(4, &mut st);
        assert_eq!(st[0], 0);
        assert_eq!(c.write(4, &[0xff]), None);
        let mut rest = [0xffu8; 7];
        c.read(5, &mut rest);
        assert_eq!(rest, [0; 7]);
    }

    #[test]
    fn vmm_request_errors() {
        let mut c = controller();
        assert_eq!(
            c.plug(0).unwrap_err().to_string(),
            "CPU slot 0 is already populated"
        );
        assert_eq!(
            c.request_unplug(3).unwrap_err().to_string(),
            "CPU slot 3 is empty"
        );
        assert_eq!(
            c.plug(9).unwrap_err().to_string(),
            "CPU slot 9 does not exist (4 slots)"
        );
    }
}

//! ACPI power management of a hardware-reduced platform: the sleep control/status and
//! reset registers the FADT points at (decoded by x86-boot's [`PowerRegisters`]) and the
//! power button's GED interrupt.
//!
//! | guest write | result |
//! |---|---|
//! | `SLP_TYP 5 \| SLP_EN` (`0x34`) to sleep control | [`VmExit::PowerOff`] |
//! | the reset value to the reset register | [`VmExit::Reboot`] (ACPI reset register) |
//! | another sleep type | ignored (the DSDT offers only S5), warned once |

use std::sync::atomic::{AtomicBool, Ordering};

use cpu_topology::VcpuIndex;
use x86_boot::acpi::{PowerConfig, PowerEvent, PowerRegisters, POWER_IO_LEN};

use crate::bus::{BusDevice, DeviceAction, Range, ResetSource, VmExit};
use crate::irq::{InterruptLine, IrqError};

/// Why the power button could not be pressed.
#[derive(Debug, thiserror::Error)]
pub enum PowerButtonError {
    /// The VM was built without a power button.
    #[error("the VM has no ACPI power button")]
    NoPowerButton,
    /// The GED interrupt could not be raised.
    #[error("press the ACPI power button")]
    Raise(#[source] IrqError),
}

/// The ACPI power register block and the power button.
#[derive(Debug)]
pub struct AcpiPm {
    range: Range,
    button: Option<InterruptLine>,
    warned_sleep: AtomicBool,
}

impl AcpiPm {
    /// The registers at `config.io_base` and, with `config.button_gsi`, the power
    /// button's GED line (an eventfd to register as irqfd).
    pub fn new(config: &PowerConfig) -> Result<Self, IrqError> {
        Ok(Self {
            range: Range::ports(config.io_base, POWER_IO_LEN),
            button: config
                .button_gsi
                .map(|gsi| InterruptLine::new("power button", gsi))
                .transpose()?,
            warned_sleep: AtomicBool::new(false),
        })
    }

    /// Where to register the device.
    pub fn range(&self) -> Range {
        self.range
    }

    /// The power button's GED line, if any.
    pub fn button(&self) -> Option<&InterruptLine> {
        self.button.as_ref()
    }

    /// Press the power button: one edge on its GED line, so the guest's `_EVT` notifies
    /// `\_SB.PWRB` and the guest shuts down in order (QMP `system_powerdown`).
    pub fn press_power_button(&self) -> Result<(), PowerButtonError> {
        let line = self
            .button
            .as_ref()
            .ok_or(PowerButtonError::NoPowerButton)?;
        line.pulse().map_err(PowerButtonError::Raise)
    }
}

impl BusDevice for AcpiPm {
    fn read(&self, _: VcpuIndex, offset: u64, data: &mut [u8]) -> DeviceAction {
        PowerRegisters::read(offset, data);
        DeviceAction::Continue
    }

    fn write(&self, _: VcpuIndex, offset: u64, data: &[u8]) -> DeviceAction {
        match PowerRegisters::write(offset, data) {
            Some(PowerEvent::PowerOff) => DeviceAction::End(VmExit::PowerOff),
            Some(PowerEvent::Reset) => {
                DeviceAction::End(VmExit::Reboot(ResetSource::AcpiResetRegister))
            }
            Some(PowerEvent::Sleep { slp_typ }) => {
                if !self.warned_sleep.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "guest asked for ACPI sleep type {slp_typ}, which the tables do not \
                         offer (only S5, power off): ignored"
                    );
                }
                DeviceAction::Continue
            }
            None => DeviceAction::Continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: VcpuIndex = VcpuIndex(0);

    #[test]
    fn s5_powers_off_reset_reboots_other_states_are_ignored() {
        let pm = AcpiPm::new(&PowerConfig::default()).unwrap();
        assert_eq!(pm.range(), Range::ports(0x3c0, 3));
        // acpi_hw_extended_sleep(): clear WAK_STS, then SLP_TYP 5 << 2 | SLP_EN.
        assert_eq!(pm.write(V, 1, &[0x80]), DeviceAction::Continue);
        assert_eq!(pm.write(V, 0, &[0x34]), DeviceAction::End(VmExit::PowerOff));
        assert_eq!(
            pm.write(V, 2, &[x86_boot::acpi::power::RESET_VALUE]),
            DeviceAction::End(VmExit::Reboot(ResetSource::AcpiResetRegister))
        );
        assert_eq!(pm.write(V, 2, &[0]), DeviceAction::Continue);
        for byte in [0x24, 0x2c, 0x14] {
            assert_eq!(pm.write(V, 0, &[byte]), DeviceAction::Continue, "{byte:#x}");
        }
        assert!(pm.warned_sleep.load(Ordering::Relaxed));
        let mut d = [0xff];
        pm.read(V, 1, &mut d);
        assert_eq!(d, [0], "no wake status");
    }

    #[test]
    fn the_power_button_pulses_its_line() {
        let pm = AcpiPm::new(&PowerConfig::default()).unwrap();
        pm.press_power_button().unwrap();
        let line = pm.button().unwrap();
        assert_eq!((line.gsi(), line.take_pulses()), (6, 1));
        let none = AcpiPm::new(&PowerConfig {
            button_gsi: None,
            ..PowerConfig::default()
        })
        .unwrap();
        assert_eq!(
            none.press_power_button().unwrap_err().to_string(),
            "the VM has no ACPI power button"
        );
    }
}

//! The VMM side of ACPI power management on a hardware-reduced platform:
//! the sleep control/status registers and the reset register the FADT
//! points at, and the power button the DSDT describes.
//!
//! A hardware-reduced FADT has no PM1 blocks; instead it names a one-byte
//! `SLEEP_CONTROL_REG`, a one-byte `SLEEP_STATUS_REG` and a `RESET_REG`
//! (ACPI 6.5, 4.8.3.7 and 4.8.3.6). The registers live in a 3-byte I/O port
//! block at [`PowerConfig::io_base`]:
//!
//! | offset | register | guest write | read |
//! |---|---|---|---|
//! | 0 | sleep control | `SLP_TYP << 2 \| SLP_EN` (bit 5) enters sleep state `SLP_TYP` | 0 |
//! | 1 | sleep status | `WAK_STS` (bit 7) write-1-to-clear, ignored | 0 (never woken) |
//! | 2 | reset | [`RESET_VALUE`] resets the machine | 0 |
//!
//! The DSDT offers only `\_S5_` (soft off) with `SLP_TYP` [`SLP_TYP_S5`],
//! so Linux's `acpi_hw_extended_sleep()` powers off by writing
//! `5 << 2 | 1 << 5 = 0x34` to the sleep control register; any other
//! `SLP_TYP` is reported as [`PowerEvent::Sleep`] for the VMM to ignore.
//!
//! [`PowerRegisters::write`] decodes a guest write into a [`PowerEvent`];
//! it keeps no state and does not allocate, so a VMM's port handler can
//! call it on every exit.

/// Default first port of the power register block (Cloud Hypervisor's
/// shutdown port; there is no VGA on this platform).
pub const POWER_DEFAULT_IO_BASE: u16 = 0x3c0;
/// Size of the power register block.
pub const POWER_IO_LEN: u16 = 3;
/// Offset of the sleep control register.
pub const REG_SLEEP_CONTROL: u16 = 0;
/// Offset of the sleep status register.
pub const REG_SLEEP_STATUS: u16 = 1;
/// Offset of the reset register.
pub const REG_RESET: u16 = 2;
/// Value the guest writes to the reset register (`FADT.RESET_VALUE`).
pub const RESET_VALUE: u8 = 0x01;
/// Sleep control: the sleep enable bit (`SLP_EN`).
pub const SLP_EN: u8 = 1 << 5;
/// Sleep control: bit position of `SLP_TYP` (3 bits).
pub const SLP_TYP_SHIFT: u8 = 2;
/// Sleep control: mask of `SLP_TYP` in place.
pub const SLP_TYP_MASK: u8 = 0b111 << SLP_TYP_SHIFT;
/// The `SLP_TYP` value `\_S5_` gives (soft off).
pub const SLP_TYP_S5: u8 = 5;
/// Sleep status: the wake status bit (`WAK_STS`).
pub const WAK_STS: u8 = 1 << 7;
/// Default GSI of the power button's GED event: ISA IRQ 6 (the floppy
/// controller's line on a PC; this platform has none). ISA IRQs conform to
/// edge/active-high without an interrupt source override.
pub const POWER_BUTTON_DEFAULT_GSI: u32 = 6;
/// Notify value the GED sends to `\_SB.PWRB` on a button press (ACPI 6.5,
/// table 5.166: "power button pressed").
pub const POWER_BUTTON_NOTIFY: u8 = 0x80;

/// ACPI power management the VMM implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PowerConfig {
    /// First port of the [`POWER_IO_LEN`]-byte register block.
    pub io_base: u16,
    /// GSI the VMM pulses (edge, active high) for a power button press;
    /// `None` omits the `PNP0C0C` device and its GED event.
    pub button_gsi: Option<u32>,
}

impl Default for PowerConfig {
    fn default() -> Self {
        PowerConfig {
            io_base: POWER_DEFAULT_IO_BASE,
            button_gsi: Some(POWER_BUTTON_DEFAULT_GSI),
        }
    }
}

impl PowerConfig {
    /// Port of the sleep control register.
    pub fn sleep_control_port(&self) -> u16 {
        self.io_base.wrapping_add(REG_SLEEP_CONTROL)
    }

    /// Port of the sleep status register.
    pub fn sleep_status_port(&self) -> u16 {
        self.io_base.wrapping_add(REG_SLEEP_STATUS)
    }

    /// Port of the reset register.
    pub fn reset_port(&self) -> u16 {
        self.io_base.wrapping_add(REG_RESET)
    }
}

/// What a guest write to the power registers asks the VMM to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerEvent {
    /// `SLP_EN` with `SLP_TYP` 5: power off (S5).
    PowerOff,
    /// [`RESET_VALUE`] written to the reset register: reset the machine.
    Reset,
    /// `SLP_EN` with another `SLP_TYP` (the DSDT offers none, so a guest
    /// that writes one is confused): the VMM ignores it.
    Sleep {
        /// The `SLP_TYP` value written.
        slp_typ: u8,
    },
}

/// Decoder of the power register block (stateless).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PowerRegisters;

impl PowerRegisters {
    /// Guest read of `data.len()` bytes at `offset`: every register reads 0
    /// (no wake status, no reset pending).
    pub fn read(offset: u64, data: &mut [u8]) {
        let _ = offset;
        data.fill(0);
    }

    /// Guest write of `data` at `offset`. Only the first byte counts: the
    /// registers are one byte wide (a wider access starting at the sleep
    /// control register reaches the others, as on real port hardware).
    pub fn write(offset: u64, data: &[u8]) -> Option<PowerEvent> {
        let mut event = None;
        for (i, &byte) in data.iter().enumerate() {
            let e = match offset.saturating_add(i as u64) {
                o if o == u64::from(REG_SLEEP_CONTROL) => Self::sleep_control(byte),
                o if o == u64::from(REG_RESET) && byte == RESET_VALUE => Some(PowerEvent::Reset),
                _ => None,
            };
            event = event.or(e);
        }
        event
    }

    /// Decode one byte written to the sleep control register.
    pub fn sleep_control(byte: u8) -> Option<PowerEvent> {
        if byte & SLP_EN == 0 {
            return None;
        }
        match (byte & SLP_TYP_MASK) >> SLP_TYP_SHIFT {
            SLP_TYP_S5 => Some(PowerEvent::PowerOff),
            slp_typ => Some(PowerEvent::Sleep { slp_typ }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_s5_write_powers_off() {
        // acpi_hw_extended_sleep(): clear WAK_STS, then SLP_TYP << 2 | SLP_EN.
        assert_eq!(
            PowerRegisters::write(u64::from(REG_SLEEP_STATUS), &[WAK_STS]),
            None
        );
        assert_eq!(
            PowerRegisters::write(u64::from(REG_SLEEP_CONTROL), &[0x34]),
            Some(PowerEvent::PowerOff)
        );
    }

    #[test]
    fn sleep_control_table() {
        let rows: &[(u8, Option<PowerEvent>)] = &[
            (0x00, None),
            (0x14, None), // S5 type without SLP_EN
            (0x34, Some(PowerEvent::PowerOff)),
            (0x34 | 0x03 | 0x80, Some(PowerEvent::PowerOff)), // other bits ignored
            (0x20, Some(PowerEvent::Sleep { slp_typ: 0 })),
            (0x24, Some(PowerEvent::Sleep { slp_typ: 1 })),
            (0x2c, Some(PowerEvent::Sleep { slp_typ: 3 })),
            (0x3c, Some(PowerEvent::Sleep { slp_typ: 7 })),
        ];
        for &(byte, want) in rows {
            assert_eq!(PowerRegisters::sleep_control(byte), want, "{byte:#x}");
        }
    }

    /// Every byte: power off exactly when SLP_EN is set and SLP_TYP is 5; a sleep
    /// request for the other types with SLP_EN; nothing without it.
    #[test]
    fn every_sleep_control_byte() {
        for byte in 0..=u8::MAX {
            let slp_typ = (byte >> 2) & 7;
            let want = match (byte & 0x20 != 0, slp_typ) {
                (false, _) => None,
                (true, 5) => Some(PowerEvent::PowerOff),
                (true, t) => Some(PowerEvent::Sleep { slp_typ: t }),
            };
            assert_eq!(PowerRegisters::write(0, &[byte]), want, "{byte:#04x}");
            assert_eq!(
                PowerRegisters::write(1, &[byte]),
                None,
                "status {byte:#04x}"
            );
            let reset = (byte == RESET_VALUE).then_some(PowerEvent::Reset);
            assert_eq!(
                PowerRegisters::write(2, &[byte]),
                reset,
                "reset {byte:#04x}"
            );
        }
    }

    #[test]
    fn reset_register_needs_the_reset_value() {
        let reset = u64::from(REG_RESET);
        assert_eq!(
            PowerRegisters::write(reset, &[RESET_VALUE]),
            Some(PowerEvent::Reset)
        );
        assert_eq!(PowerRegisters::write(reset, &[0x00]), None);
        assert_eq!(PowerRegisters::write(reset, &[0x34]), None);
        // A word write at offset 1 reaches the reset register with its second byte.
        assert_eq!(
            PowerRegisters::write(1, &[0, RESET_VALUE]),
            Some(PowerEvent::Reset)
        );
        assert_eq!(PowerRegisters::write(3, &[RESET_VALUE]), None);
    }

    #[test]
    fn registers_read_zero() {
        let mut d = [0xffu8; 3];
        PowerRegisters::read(0, &mut d);
        assert_eq!(d, [0; 3]);
    }

    #[test]
    fn ports_follow_the_base() {
        let c = PowerConfig::default();
        assert_eq!(
            (
                c.sleep_control_port(),
                c.sleep_status_port(),
                c.reset_port()
            ),
            (0x3c0, 0x3c1, 0x3c2)
        );
    }
}

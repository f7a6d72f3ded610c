//! Fixed-hardware ACPI power management, as on a PC chipset (QEMU's PIIX4 PM): the
//! PM1a event and control register blocks, and the FACS through which the guest hands
//! its waking vector to the firmware.
//!
//! [`build_acpi_with_pm1`](super::build_acpi_with_pm1) builds the same tables as
//! [`build_acpi`](super::build_acpi) with a full (not hardware-reduced) FADT: it points
//! at the FACS (`FIRMWARE_CTRL`) and at these two blocks, and the DSDT offers
//! `\_S3_` and `\_S5_`. The register layout is QEMU's, at QEMU's ports:
//!
//! | port | register | bits the VMM implements |
//! |---|---|---|
//! | `evt_base + 0` | `PM1_STS` (16 bits, write 1 to clear) | `WAK_STS` (15), set on resume from S3 |
//! | `evt_base + 2` | `PM1_EN` (16 bits) | stored (`RTC_EN`, 10, is what kvm-unit-tests' s3 sets) |
//! | `cnt_base + 0` | `PM1_CNT` (16 bits) | `SCI_EN` (0) reads 1; `SLP_TYP` (10-12) with `SLP_EN` (13) enters a sleep state |
//! | `tmr_base + 0` | `PM_TMR` (32-bit reads) | the 24-bit power-management timer, [`PM_TIMER_HZ`] |
//!
//! Sleep types are QEMU's: [`SLP_TYP_S3`] 1 (suspend to RAM), [`SLP_TYP_S5`] 0 (soft
//! off). The FADT has no `SMI_CMD` port, so the platform is always in ACPI mode.

/// QEMU's PIIX4 PM I/O base (`PM1a_EVT_BLK`).
pub const PM1_DEFAULT_EVT_BASE: u16 = 0x600;
/// QEMU's `PM1a_CNT_BLK` (the PM base + 4).
pub const PM1_DEFAULT_CNT_BASE: u16 = 0x604;
/// QEMU's SCI: ISA IRQ 9.
pub const PM1_DEFAULT_SCI: u16 = 9;
/// QEMU's `PM_TMR_BLK` (the PM base + 8).
pub const PM_TMR_DEFAULT_BASE: u16 = 0x608;
/// Bytes of the PM timer block.
pub const PM_TMR_LEN: u8 = 4;
/// The PM timer's frequency (3.579545 MHz); it counts in 24 bits.
pub const PM_TIMER_HZ: u64 = 3_579_545;
/// Bytes of the PM1 event block (`PM1_STS` + `PM1_EN`).
pub const PM1_EVT_LEN: u8 = 4;
/// Bytes of the PM1 control block.
pub const PM1_CNT_LEN: u8 = 2;
/// `PM1_STS`: woken from a sleep state.
pub const WAK_STS: u16 = 1 << 15;
/// `PM1_EN`: the RTC alarm may wake the system.
pub const RTC_EN: u16 = 1 << 10;
/// `PM1_CNT`: the SCI is enabled (ACPI mode).
pub const SCI_EN: u16 = 1;
/// `PM1_CNT`: the sleep enable bit.
pub const SLP_EN: u16 = 1 << 13;
/// `PM1_CNT`: bit position of the 3-bit `SLP_TYP`.
pub const SLP_TYP_SHIFT: u16 = 10;
/// `SLP_TYP` of `\_S3_` (QEMU's value).
pub const SLP_TYP_S3: u8 = 1;
/// `SLP_TYP` of `\_S5_` (QEMU's value).
pub const SLP_TYP_S5: u8 = 0;
/// Size of the FACS (it has no checksum).
pub const FACS_LEN: usize = 64;
/// FACS alignment required by the ACPI specification.
pub const FACS_ALIGN: u64 = 64;
/// Offset of the 32-bit `Firmware_Waking_Vector` in the FACS.
pub const FACS_WAKING_VECTOR: u64 = 12;
/// FACS version written (ACPI 2.0+ layout with the 64-bit waking vector).
pub const FACS_VERSION: u8 = 2;

/// Where the PM1 blocks are and which line is the SCI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pm1Config {
    /// First port of the 4-byte PM1a event block.
    pub evt_base: u16,
    /// First port of the 2-byte PM1a control block.
    pub cnt_base: u16,
    /// Port of the 4-byte PM timer.
    pub tmr_base: u16,
    /// The SCI's ISA interrupt (`SCI_INT`).
    pub sci: u16,
}

impl Default for Pm1Config {
    fn default() -> Self {
        Self {
            evt_base: PM1_DEFAULT_EVT_BASE,
            cnt_base: PM1_DEFAULT_CNT_BASE,
            tmr_base: PM_TMR_DEFAULT_BASE,
            sci: PM1_DEFAULT_SCI,
        }
    }
}

/// What a guest write to `PM1_CNT` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SleepRequest {
    /// S3: suspend to RAM; the firmware resumes at the FACS waking vector.
    SuspendToRam,
    /// S5: soft off.
    PowerOff,
    /// Another `SLP_TYP` with `SLP_EN` (the DSDT offers none): ignored.
    Other {
        /// The `SLP_TYP` written.
        slp_typ: u8,
    },
}

/// Decode a 16-bit `PM1_CNT` value (`None`: `SLP_EN` is clear).
pub fn sleep_request(pm1_cnt: u16) -> Option<SleepRequest> {
    if pm1_cnt & SLP_EN == 0 {
        return None;
    }
    Some(match ((pm1_cnt >> SLP_TYP_SHIFT) & 7) as u8 {
        SLP_TYP_S3 => SleepRequest::SuspendToRam,
        SLP_TYP_S5 => SleepRequest::PowerOff,
        slp_typ => SleepRequest::Other { slp_typ },
    })
}

/// The FACS: signature, length, no hardware signature, no waking vector yet, no
/// global lock, no flags.
pub fn facs() -> Vec<u8> {
    let mut t = vec![0u8; FACS_LEN];
    t[0..4].copy_from_slice(b"FACS");
    t[4..8].copy_from_slice(&(FACS_LEN as u32).to_le_bytes());
    t[32] = FACS_VERSION;
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_requests_as_qemu_decodes_them() {
        // kvm-unit-tests s3.c: outw(0x2400, pm1a_cnt_blk).
        assert_eq!(sleep_request(0x2400), Some(SleepRequest::SuspendToRam));
        assert_eq!(sleep_request(0x2000), Some(SleepRequest::PowerOff));
        assert_eq!(sleep_request(0x2001), Some(SleepRequest::PowerOff));
        assert_eq!(
            sleep_request(0x2c00),
            Some(SleepRequest::Other { slp_typ: 3 })
        );
        assert_eq!(sleep_request(0x0400), None, "no SLP_EN");
        assert_eq!(sleep_request(SCI_EN), None);
    }

    #[test]
    fn facs_layout() {
        let f = facs();
        assert_eq!(f.len(), 64);
        assert_eq!(&f[..4], b"FACS");
        assert_eq!(u32::from_le_bytes(f[4..8].try_into().unwrap()), 64);
        assert_eq!(f[FACS_WAKING_VECTOR as usize..][..4], [0; 4]);
        assert_eq!(f[32], 2);
    }
}

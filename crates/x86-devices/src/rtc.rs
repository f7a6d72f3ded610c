//! The PC's CMOS real-time clock (MC146818) at ports `0x70` (index) and `0x71`
//! (data), as far as guests that read the time and wait for an update need it.
//!
//! | register | read | write |
//! |---|---|---|
//! | `0x00`, `0x02`, `0x04`, `0x06`-`0x09`, `0x32` | the host's UTC time (seconds, minutes, hours, weekday, day, month, year, century), BCD unless register B's `DM` bit asks for binary | ignored: the guest cannot set the clock |
//! | `0x0a` (A) | stored value, with `UIP` (bit 7) set during the last 244 us of each host second | stored, except `UIP` |
//! | `0x0b` (B) | stored value (default `0x02`: 24-hour, BCD) | stored |
//! | `0x0c` (C) | 0: no interrupt flags | ignored |
//! | `0x0d` (D) | `0x80`: the battery is good | ignored |
//! | others (alarms `0x01`, `0x03`, `0x05`; CMOS RAM) | the stored byte | stored |
//!
//! Left out: the RTC's interrupt (IRQ 8: periodic, alarm and update-ended
//! interrupts), 12-hour mode and setting the clock. kvm-unit-tests' s3 programs an
//! alarm as its wake-up source; here the platform resumes from S3 at once (see
//! [`crate::acpi_pm1`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cpu_topology::VcpuIndex;

use crate::bus::{BusDevice, DeviceAction, Range};

/// The index and data ports.
pub const RTC_RANGE: Range = Range::ports(0x70, 2);
/// Register A.
pub const REG_A: u8 = 0x0a;
/// Register B.
pub const REG_B: u8 = 0x0b;
/// Register C.
pub const REG_C: u8 = 0x0c;
/// Register D.
pub const REG_D: u8 = 0x0d;
/// Register A: update in progress.
pub const REG_A_UIP: u8 = 0x80;
/// Register B: binary (not BCD) data mode.
pub const REG_B_DM: u8 = 0x04;
/// Register B: 24-hour mode.
pub const REG_B_24H: u8 = 0x02;
/// How long before each second `UIP` is set (the MC146818's 244 us).
pub const UIP_WINDOW: Duration = Duration::from_micros(244);
/// The century register (the FADT's `CENTURY` field names it).
pub const REG_CENTURY: u8 = 0x32;

/// The time source: the time since the Unix epoch.
pub type Clock = Arc<dyn Fn() -> Duration + Send + Sync>;

/// The CMOS RTC; see the [module docs](self).
pub struct CmosRtc {
    state: Mutex<CmosState>,
    clock: Clock,
}

struct CmosState {
    index: u8,
    ram: [u8; 128],
}

impl std::fmt::Debug for CmosRtc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CmosRtc").finish_non_exhaustive()
    }
}

impl Default for CmosRtc {
    fn default() -> Self {
        Self::with_clock(Arc::new(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
        }))
    }
}

impl CmosRtc {
    /// An RTC reading the host's clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// An RTC reading `clock` (tests).
    pub fn with_clock(clock: Clock) -> Self {
        let mut ram = [0u8; 128];
        ram[usize::from(REG_A)] = 0x26; // 32.768 kHz time base, 1024 Hz rate
        ram[usize::from(REG_B)] = REG_B_24H;
        Self {
            state: Mutex::new(CmosState { index: 0, ram }),
            clock,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, CmosState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register `index` as the guest reads it.
    pub fn read_register(&self, index: u8) -> u8 {
        let state = self.state();
        let stored = state.ram[usize::from(index & 0x7f)];
        let now = (self.clock)();
        let binary = state.ram[usize::from(REG_B)] & REG_B_DM != 0;
        let time = |v: u64| {
            let v = v as u8;
            if binary {
                v
            } else {
                ((v / 10) << 4) | (v % 10)
            }
        };
        let secs = now.as_secs();
        let days = secs / 86_400;
        let (year, month, day) = civil_from_days(days);
        match index {
            0x00 => time(secs % 60),
            0x02 => time(secs / 60 % 60),
            0x04 => time(secs / 3600 % 24),
            // 1970-01-01 was a Thursday; the RTC counts Sunday as 1.
            0x06 => time((days + 4) % 7 + 1),
            0x07 => time(day),
            0x08 => time(month),
            0x09 => time(year % 100),
            REG_CENTURY => time(year / 100),
            REG_A => {
                let to_next =
                    Duration::from_secs(1) - Duration::from_nanos(now.subsec_nanos().into());
                let uip = if to_next <= UIP_WINDOW { REG_A_UIP } else { 0 };
                (stored & !REG_A_UIP) | uip
            }
            REG_C => 0,
            REG_D => 0x80,
            _ => stored,
        }
    }

    /// The guest writes `value` to register `index`.
    pub fn write_register(&self, index: u8, value: u8) {
        match index {
            0x00 | 0x02 | 0x04 | 0x06..=0x09 | REG_CENTURY | REG_C | REG_D => {}
            REG_A => self.state().ram[usize::from(REG_A)] = value & !REG_A_UIP,
            _ => self.state().ram[usize::from(index & 0x7f)] = value,
        }
    }
}

/// Year, month (1-12) and day (1-31) of `days` since 1970-01-01 (the proleptic
/// Gregorian calendar; H. Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

impl BusDevice for CmosRtc {
    fn read(&self, _: VcpuIndex, offset: u64, data: &mut [u8]) -> DeviceAction {
        data.fill(0xff);
        if let (1, Some(b)) = (offset, data.first_mut()) {
            let index = self.state().index;
            *b = self.read_register(index);
        }
        DeviceAction::Continue
    }

    fn write(&self, _: VcpuIndex, offset: u64, data: &[u8]) -> DeviceAction {
        match (offset, data.first()) {
            // Bit 7 of the index port is the NMI mask (no NMI source here).
            (0, Some(&v)) => self.state().index = v & 0x7f,
            (1, Some(&v)) => {
                let index = self.state().index;
                self.write_register(index, v);
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

    /// 2026-12-04 07:31:09 UTC, a Friday, plus `nanos`.
    fn at(nanos: u32) -> CmosRtc {
        CmosRtc::with_clock(Arc::new(move || Duration::new(1_796_369_469, nanos)))
    }

    fn read(rtc: &CmosRtc, index: u8) -> u8 {
        rtc.write(V, 0, &[index | 0x80]);
        let mut d = [0];
        rtc.read(V, 1, &mut d);
        d[0]
    }

    #[test]
    fn time_reads_as_bcd_then_binary() {
        let rtc = at(0);
        let regs: Vec<u8> = [0, 2, 4, 6, 7, 8, 9, REG_CENTURY]
            .iter()
            .map(|&r| read(&rtc, r))
            .collect();
        assert_eq!(regs, [0x09, 0x31, 0x07, 0x06, 0x04, 0x12, 0x26, 0x20]);
        rtc.write(V, 0, &[REG_B]);
        rtc.write(V, 1, &[REG_B_24H | REG_B_DM]);
        assert_eq!((read(&rtc, 0), read(&rtc, 2), read(&rtc, 9)), (9, 31, 26));
        rtc.write(V, 0, &[0]);
        rtc.write(V, 1, &[0x59]);
        assert_eq!(read(&rtc, 0), 9, "the clock cannot be set");
    }

    #[test]
    fn uip_is_set_in_the_last_244_us_of_a_second() {
        assert_eq!(read(&at(0), REG_A), 0x26);
        assert_eq!(read(&at(999_755_000), REG_A), 0x26);
        assert_eq!(read(&at(999_757_000), REG_A), 0xa6);
        assert_eq!(read(&at(999_999_999), REG_A), 0xa6);
    }

    #[test]
    fn alarm_and_status_registers_as_s3_c_uses_them() {
        let rtc = at(0);
        for (r, v) in [(1, 0xc0), (3, 0xc0), (5, 0xc0)] {
            rtc.write(V, 0, &[r]);
            rtc.write(V, 1, &[v]);
            assert_eq!(read(&rtc, r), v);
        }
        let b = read(&rtc, REG_B);
        rtc.write(V, 0, &[REG_B]);
        rtc.write(V, 1, &[b | 0x20]);
        assert_eq!(read(&rtc, REG_B), 0x22);
        assert_eq!((read(&rtc, REG_C), read(&rtc, REG_D)), (0, 0x80));
        rtc.write(V, 0, &[0x40]);
        rtc.write(V, 1, &[0x5a]);
        assert_eq!(read(&rtc, 0x40), 0x5a, "CMOS RAM");
        let mut d = [0; 2];
        rtc.read(V, 0, &mut d);
        assert_eq!(d, [0xff; 2], "the index port reads as nothing");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_791), (2026, 12, 4));
    }
}

//! Fixed-hardware ACPI power management (x86-boot's [`x86_boot::acpi::pm1`]): the
//! PM1a event block (`PM1_STS`, `PM1_EN`), control block (`PM1_CNT`) and PM timer
//! (`PM_TMR`: 24 bits at 3.579545 MHz, from the host's monotonic clock) a full FADT
//! points at.
//!
//! | guest write to `PM1_CNT` | result |
//! |---|---|
//! | `SLP_TYP 1 \| SLP_EN` (`0x2400`, S3) | `WAK_STS` is set and [`SleepHooks::suspend_to_ram`] resets the vCPUs: the BSP resumes through the firmware at the FACS waking vector |
//! | `SLP_TYP 0 \| SLP_EN` (S5) | [`VmExit::PowerOff`] |
//! | another sleep type | ignored, warned once |
//!
//! Deliberate difference from QEMU: QEMU keeps a suspended VM stopped until a wake
//! event (the RTC alarm when `PM1_EN.RTC_EN` is set, or QMP `system_wakeup`). This
//! platform has no wake event sources, so S3 resumes at once: the guest sees a sleep
//! of zero length, with `WAK_STS` set as after any wake.

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Instant;

use cpu_topology::VcpuIndex;
use x86_boot::acpi::pm1::{sleep_request, Pm1Config, SleepRequest, SCI_EN, SLP_EN, WAK_STS};
use x86_boot::acpi::pm1::{PM1_CNT_LEN, PM1_EVT_LEN, PM_TIMER_HZ, PM_TMR_LEN};

use crate::bus::{BusBuilder, BusDevice, BusError, DeviceAction, FirstDevice, Range, VmExit};

/// What the PM1 block needs from the VMM.
pub trait SleepHooks: Send + Sync + std::fmt::Debug {
    /// Put the machine through S3 and wake it: reset every vCPU as a wake-up does, so
    /// the BSP starts at the reset vector and the firmware resumes the guest. Called on
    /// the vCPU thread that wrote `PM1_CNT`, before it re-enters the guest: that
    /// vCPU runs no further guest instruction of the old context.
    fn suspend_to_ram(&self) -> Result<(), String>;
}

/// Hooks that refuse to sleep (the VM stops with the reason).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSleep;

impl SleepHooks for NoSleep {
    fn suspend_to_ram(&self) -> Result<(), String> {
        Err("S3 is not supported by this VMM".into())
    }
}

/// S3 on KVM: an INIT to every vCPU through `KVM_SIGNAL_MSI`. KVM resets the BSP to
/// the reset vector (where the VMM maps x86-boot's resume ROM) and puts the APs in
/// wait-for-SIPI, as a PC's wake-up does.
#[derive(Debug)]
pub struct KvmInitOnWake {
    /// The VM.
    pub vm: Arc<kvm_ioctls::VmFd>,
    /// The APIC id of every vCPU.
    pub apic_ids: Vec<u32>,
}

/// MSI address of the LAPICs; bits 19:12 name the destination.
const MSI_ADDRESS: u32 = 0xfee0_0000;
/// MSI data: INIT delivery mode (5 << 8), edge-triggered.
const MSI_DATA_INIT: u32 = 5 << 8;

impl SleepHooks for KvmInitOnWake {
    fn suspend_to_ram(&self) -> Result<(), String> {
        for &id in &self.apic_ids {
            let msi = kvm_bindings::kvm_msi {
                address_lo: MSI_ADDRESS | ((id & 0xff) << 12),
                // The high destination bits, with KVM's x2APIC API.
                address_hi: id & !0xff,
                data: MSI_DATA_INIT,
                ..Default::default()
            };
            self.vm
                .signal_msi(msi)
                .map_err(|e| format!("S3: INIT to APIC id {id} (KVM_SIGNAL_MSI): {e}"))?;
        }
        Ok(())
    }
}

/// The PM1a event and control blocks; see the [module docs](self).
#[derive(Debug)]
pub struct Pm1 {
    config: Pm1Config,
    sts: AtomicU16,
    en: AtomicU16,
    cnt: AtomicU16,
    hooks: Arc<dyn SleepHooks>,
    warned_sleep: AtomicBool,
    timer_start: Instant,
}

impl Pm1 {
    /// The blocks at `config`'s ports, sleeping through `hooks`.
    pub fn new(config: Pm1Config, hooks: Arc<dyn SleepHooks>) -> Arc<Self> {
        Arc::new(Self {
            config,
            sts: AtomicU16::new(0),
            en: AtomicU16::new(0),
            // No SMI command port: the platform is always in ACPI mode.
            cnt: AtomicU16::new(SCI_EN),
            hooks,
            warned_sleep: AtomicBool::new(false),
            timer_start: Instant::now(),
        })
    }

    /// Put the three blocks on `bus`.
    pub fn register<F: FirstDevice>(
        self: &Arc<Self>,
        bus: BusBuilder<F>,
    ) -> Result<BusBuilder<F>, BusError> {
        let part = |block| {
            Arc::new(Part {
                pm: self.clone(),
                block,
            }) as Arc<dyn BusDevice>
        };
        let evt = Range::ports(self.config.evt_base, PM1_EVT_LEN.into());
        let cnt = Range::ports(self.config.cnt_base, PM1_CNT_LEN.into());
        let tmr = Range::ports(self.config.tmr_base, PM_TMR_LEN.into());
        bus.io("acpi pm1 event", evt, part(Block::Event))?
            .io("acpi pm1 control", cnt, part(Block::Control))?
            .io("acpi pm timer", tmr, part(Block::Timer))
    }

    /// `PM_TMR`: ticks of the 3.579545 MHz clock since the device was created, in 24
    /// bits.
    pub fn timer(&self) -> u32 {
        let nanos = self.timer_start.elapsed().as_nanos();
        (nanos * u128::from(PM_TIMER_HZ) / 1_000_000_000) as u32 & 0x00ff_ffff
    }

    /// `PM1_STS`, `PM1_EN` and `PM1_CNT` as the guest reads them.
    pub fn registers(&self) -> [u16; 3] {
        [&self.sts, &self.en, &self.cnt].map(|r| r.load(Ordering::Relaxed))
    }

    fn event_write(&self, offset: u64, data: &[u8]) {
        for (at, &byte) in (offset..).zip(data) {
            let shift = 8 * (at % 2);
            match at {
                // Write 1 to clear.
                0 | 1 => {
                    self.sts
                        .fetch_and(!(u16::from(byte) << shift), Ordering::Relaxed);
                }
                2 | 3 => {
                    let keep = !(0xff << shift);
                    let en = (self.en.load(Ordering::Relaxed) & keep) | (u16::from(byte) << shift);
                    self.en.store(en, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    }

    fn control_write(&self, offset: u64, data: &[u8]) -> DeviceAction {
        let mut value = self.cnt.load(Ordering::Relaxed);
        for (at, &byte) in (offset..2).zip(data) {
            let shift = 8 * at;
            value = (value & !(0xff << shift)) | (u16::from(byte) << shift);
        }
        // SLP_EN is write-only; SCI_EN stays set.
        self.cnt.store(value & !SLP_EN | SCI_EN, Ordering::Relaxed);
        match sleep_request(value) {
            Some(SleepRequest::SuspendToRam) => {
                self.sts.fetch_or(WAK_STS, Ordering::Relaxed);
                match self.hooks.suspend_to_ram() {
                    Ok(()) => DeviceAction::Continue,
                    Err(reason) => DeviceAction::End(VmExit::Stop(reason.into())),
                }
            }
            Some(SleepRequest::PowerOff) => DeviceAction::End(VmExit::PowerOff),
            Some(SleepRequest::Other { slp_typ }) => {
                if !self.warned_sleep.swap(true, Ordering::Relaxed) {
                    log::warn!("guest asked for ACPI sleep type {slp_typ}, which the DSDT does not offer: ignored");
                }
                DeviceAction::Continue
            }
            None => DeviceAction::Continue,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Block {
    Event,
    Control,
    Timer,
}

#[derive(Debug)]
struct Part {
    pm: Arc<Pm1>,
    block: Block,
}

impl BusDevice for Part {
    fn read(&self, _: VcpuIndex, offset: u64, data: &mut [u8]) -> DeviceAction {
        let [sts, en, cnt] = self.pm.registers();
        let [s0, s1] = sts.to_le_bytes();
        let [e0, e1] = en.to_le_bytes();
        let bytes = match self.block {
            Block::Event => [s0, s1, e0, e1],
            Block::Control => {
                let [c0, c1] = cnt.to_le_bytes();
                [c0, c1, 0xff, 0xff]
            }
            Block::Timer => self.pm.timer().to_le_bytes(),
        };
        for (i, b) in data.iter_mut().enumerate() {
            *b = bytes.get(offset as usize + i).copied().unwrap_or(0xff);
        }
        DeviceAction::Continue
    }

    fn write(&self, _: VcpuIndex, offset: u64, data: &[u8]) -> DeviceAction {
        match self.block {
            Block::Control => self.pm.control_write(offset, data),
            Block::Event => {
                self.pm.event_write(offset, data);
                DeviceAction::Continue
            }
            // Read-only.
            Block::Timer => DeviceAction::Continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Bus;
    use std::sync::atomic::AtomicUsize;
    use vcpu_lifecycle::{ExitAction, ExitHandler};

    const V: VcpuIndex = VcpuIndex(0);

    #[derive(Debug, Default)]
    struct Count(AtomicUsize);
    impl SleepHooks for Count {
        fn suspend_to_ram(&self) -> Result<(), String> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }

    fn bus(hooks: Arc<dyn SleepHooks>) -> (Bus, Arc<Pm1>) {
        let pm = Pm1::new(Pm1Config::default(), hooks);
        (pm.register(BusBuilder::new()).unwrap().build(), pm)
    }

    fn inw(bus: &Bus, port: u16) -> u16 {
        let mut d = [0; 2];
        bus.io_in(V, port, &mut d);
        u16::from_le_bytes(d)
    }

    #[test]
    fn s3_as_kvm_unit_tests_enters_it() {
        let hooks = Arc::new(Count::default());
        let (bus, pm) = bus(hooks.clone());
        assert_eq!(inw(&bus, 0x604), SCI_EN, "always in ACPI mode");
        // s3.c: outw(0x400, pm1a_evt_blk + 2) (RTC_EN), then outw(0x2400, pm1a_cnt_blk).
        bus.io_out(V, 0x602, &0x400u16.to_le_bytes());
        assert_eq!(
            bus.io_out(V, 0x604, &0x2400u16.to_le_bytes()),
            ExitAction::Continue
        );
        assert_eq!(hooks.0.load(Ordering::Relaxed), 1);
        assert_eq!(pm.registers(), [WAK_STS, 0x400, 0x0401], "SLP_EN reads 0");
        // The OS clears WAK_STS by writing 1 to it.
        bus.io_out(V, 0x601, &[0x80]);
        assert_eq!(inw(&bus, 0x600), 0);
        // A byte write of the high half also sleeps.
        bus.io_out(V, 0x605, &[0x24]);
        assert_eq!(hooks.0.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn the_pm_timer_counts_at_3_58_mhz_in_24_bits() {
        let (bus, _) = bus(Arc::new(NoSleep));
        let read = || {
            let mut d = [0; 4];
            bus.io_in(V, 0x608, &mut d);
            u32::from_le_bytes(d)
        };
        let t0 = read();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let t1 = read();
        assert_eq!(t1 >> 24, 0, "24 bits");
        // At least the 20 ms slept (71591 ticks), short of the 4.7 s wrap-around.
        assert!(t1.wrapping_sub(t0) & 0xff_ffff >= 71_591, "{t0} -> {t1}");
    }

    #[test]
    fn s5_powers_off_other_types_are_ignored_failures_stop_the_vm() {
        let (bus, pm) = bus(Arc::new(NoSleep));
        assert_eq!(
            bus.io_out(V, 0x604, &0x2c00u16.to_le_bytes()),
            ExitAction::Continue
        );
        assert!(pm.warned_sleep.load(Ordering::Relaxed));
        assert!(matches!(
            bus.io_out(V, 0x604, &0x2400u16.to_le_bytes()),
            ExitAction::StopVm(_)
        ));
        assert_eq!(
            bus.vm_exit(),
            Some(&VmExit::Stop("S3 is not supported by this VMM".into()))
        );
        let (bus, _) = self::bus(Arc::new(NoSleep));
        bus.io_out(V, 0x604, &0x2000u16.to_le_bytes());
        assert_eq!(bus.vm_exit(), Some(&VmExit::PowerOff));
    }
}

//! A kernel payload's whole device set in one value: the [`Bus`] with COM1 and the
//! i8042 always, the ACPI power registers and the CPU hot-plug block when the ACPI
//! tables describe them, and the kvm-unit-tests devices (fw_cfg, isa-debug-exit,
//! pc-testdev) for a multiboot test kernel. [`Platform`] is the vCPUs' exit handler and
//! keeps the handles the VMM's control plane needs (hot-plug, power button, console).

use std::sync::Arc;

use cpu_topology::VcpuIndex;
use vcpu_lifecycle::{ExitAction, ExitHandler};
use x86_boot::acpi::{CpuHotplugConfig, HotplugError, PowerConfig};
use x86_boot::CpuEntry;

use x86_boot::acpi::Pm1Config;

use crate::acpi_pm::{AcpiPm, PowerButtonError};
use crate::acpi_pm1::{Pm1, SleepHooks};
use crate::bus::{Bus, BusBuilder, BusError, VmExit};
use crate::com1::{Com1, Com1Error, ConsoleSink, COM1_RANGE};
use crate::cpu_hotplug::CpuHotplug;
use crate::debug_exit::{DebugExit, DEBUG_EXIT_RANGE};
use crate::fw_cfg::{FwCfg, FW_CFG_RANGE};
use crate::i8042::{I8042, I8042_COMMAND_RANGE, I8042_DATA_RANGE};
use crate::irq::{InterruptLine, IrqError};
use crate::pc_testdev::{PcTestdev, TestdevHooks};
use crate::q35::{Q35Config, Q35};
use crate::rtc::{CmosRtc, RTC_RANGE};

/// The devices kvm-unit-tests talks to.
#[derive(Debug)]
pub struct TestDevices {
    /// What fw_cfg reports (CPU counts, RAM size, files).
    pub fw_cfg: FwCfg,
    /// How pc-testdev drives interrupt lines (`pc_testdev::KvmIrqLines` on KVM).
    pub testdev_hooks: Arc<dyn TestdevHooks>,
}

/// What to put on the bus besides COM1 and the i8042.
#[derive(Debug)]
pub struct PlatformConfig<'a> {
    /// COM1's output.
    pub console: ConsoleSink,
    /// The ACPI power registers and power button (`None`: neither).
    pub power: Option<PowerConfig>,
    /// The CPU hot-plug block and every slot (`None`: no hot-pluggable slot).
    pub hotplug: Option<(CpuHotplugConfig, &'a [CpuEntry])>,
    /// fw_cfg, isa-debug-exit and pc-testdev (`None`: not a test kernel).
    pub test_devices: Option<TestDevices>,
    /// The fixed-hardware ACPI PM1 blocks and the CMOS RTC of a PC chipset (`None`:
    /// neither; exclusive with `power`, as the ACPI tables are).
    pub pc_power: Option<PcPower>,
    /// The PCI bus, user-space I/O APIC, VT-d and edu of a split-irqchip q35 machine
    /// (`None`: none of them; the in-kernel irqchip has the I/O APIC). With it,
    /// pc-testdev's IRQ lines drive the user-space I/O APIC.
    pub q35: Option<Q35Config>,
}

/// A PC chipset's power management: the PM1a blocks and the CMOS RTC.
#[derive(Debug)]
pub struct PcPower {
    /// Where the PM1a blocks are (the FADT's).
    pub pm1: Pm1Config,
    /// How S3 resets the vCPUs (`acpi_pm1::KvmInitOnWake` on KVM).
    pub sleep: Arc<dyn SleepHooks>,
}

/// Why the platform could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// COM1.
    #[error("create COM1")]
    Com1(#[source] Com1Error),
    /// A GED interrupt line.
    #[error("create the platform's interrupt lines")]
    Irq(#[source] IrqError),
    /// Two devices claim the same addresses (a configuration error).
    #[error("lay out the platform bus")]
    Bus(#[source] BusError),
}

/// A kernel payload's devices; see the [module docs](self).
#[derive(Debug)]
pub struct Platform {
    bus: Bus,
    com1: Arc<Com1>,
    pm: Option<Arc<AcpiPm>>,
    hotplug: Option<Arc<CpuHotplug>>,
    q35: Option<Q35>,
}

impl Platform {
    /// Create every device `config` names and lay out the bus.
    pub fn new(config: PlatformConfig<'_>) -> Result<Self, PlatformError> {
        let com1 = Arc::new(Com1::new(config.console).map_err(PlatformError::Com1)?);
        let mut bus = BusBuilder::new()
            .io("com1", COM1_RANGE, com1.clone())
            .and_then(|b| b.io("i8042 data", I8042_DATA_RANGE, Arc::new(I8042::Data)))
            .and_then(|b| {
                b.io(
                    "i8042 command",
                    I8042_COMMAND_RANGE,
                    Arc::new(I8042::Command),
                )
            })
            .map_err(PlatformError::Bus)?;
        let pm = match config.power {
            Some(cfg) => Some(Arc::new(AcpiPm::new(&cfg).map_err(PlatformError::Irq)?)),
            None => None,
        };
        if let Some(pm) = &pm {
            bus = bus
                .io("acpi pm", pm.range(), pm.clone())
                .map_err(PlatformError::Bus)?;
        }
        let hotplug = match config.hotplug {
            Some((cfg, cpus)) => Some(Arc::new(
                CpuHotplug::new(&cfg, cpus).map_err(PlatformError::Irq)?,
            )),
            None => None,
        };
        if let Some(hp) = &hotplug {
            bus = bus
                .io("cpu hot-plug", hp.range(), hp.clone())
                .map_err(PlatformError::Bus)?;
        }
        if let Some(pc) = config.pc_power {
            bus = Pm1::new(pc.pm1, pc.sleep)
                .register(bus)
                .and_then(|b| b.io("cmos rtc", RTC_RANGE, Arc::new(CmosRtc::new())))
                .map_err(PlatformError::Bus)?;
        }
        let q35 = match config.q35 {
            Some(cfg) => {
                let (b, q35) = Q35::register(cfg, bus).map_err(PlatformError::Bus)?;
                bus = b;
                Some(q35)
            }
            None => None,
        };
        if let Some(test) = config.test_devices {
            let hooks: Arc<dyn TestdevHooks> = match &q35 {
                Some(q35) => q35.ioapic().clone(),
                None => test.testdev_hooks,
            };
            bus = bus
                .io("fw_cfg", FW_CFG_RANGE, Arc::new(test.fw_cfg))
                .and_then(|b| b.io("isa-debug-exit", DEBUG_EXIT_RANGE, Arc::new(DebugExit)))
                .and_then(|b| PcTestdev::new(hooks).register(b))
                .map_err(PlatformError::Bus)?;
        }
        Ok(Self {
            bus: bus.build(),
            com1,
            pm,
            hotplug,
            q35,
        })
    }

    /// The bus.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// COM1 (console input, tail, flush; hand it to the serial subscriber).
    pub fn com1(&self) -> &Arc<Com1> {
        &self.com1
    }

    /// The q35 PCI part, when the machine has one.
    pub fn q35(&self) -> Option<&Q35> {
        self.q35.as_ref()
    }

    /// How the guest ended the VM (see [`Bus::vm_exit`]).
    pub fn vm_exit(&self) -> Option<&VmExit> {
        self.bus.vm_exit()
    }

    fn ged_lines(&self) -> impl Iterator<Item = &InterruptLine> {
        let hotplug = self.hotplug.as_deref().map(CpuHotplug::line);
        hotplug
            .into_iter()
            .chain(self.pm.as_deref().and_then(AcpiPm::button))
    }

    /// The GED's interrupt lines: `(GSI, what it signals)`.
    pub fn ged_interrupts(&self) -> Vec<(u32, &'static str)> {
        self.ged_lines().map(|l| (l.gsi(), l.name())).collect()
    }

    /// Register every interrupt (COM1 and the GED lines) as a KVM irqfd.
    pub fn register_irqfds(&self, vm: &kvm_ioctls::VmFd) -> Result<(), kvm_ioctls::Error> {
        self.com1.register_irqfd(vm)?;
        self.ged_lines().try_for_each(|line| line.register(vm))
    }

    fn hotplug(&self) -> Result<&CpuHotplug, HotplugError> {
        self.hotplug.as_deref().ok_or(HotplugError::NotConfigured)
    }

    /// Plug a CPU into slot `uid` ([`CpuHotplug::plug_cpu`]).
    pub fn plug_cpu(&self, uid: u32) -> Result<(), HotplugError> {
        self.hotplug()?.plug_cpu(uid)
    }

    /// Ask the guest to release slot `uid` ([`CpuHotplug::request_cpu_unplug`]).
    pub fn request_cpu_unplug(&self, uid: u32) -> Result<(), HotplugError> {
        self.hotplug()?.request_cpu_unplug(uid)
    }

    /// Slots the guest ejected since the last call (empty without hot-plug).
    pub fn take_ejected(&self) -> Vec<u32> {
        self.hotplug
            .as_deref()
            .map(CpuHotplug::take_ejected)
            .unwrap_or_default()
    }

    /// Whether slot `uid` holds a CPU (false without hot-plug).
    pub fn cpu_slot_enabled(&self, uid: u32) -> bool {
        self.hotplug
            .as_deref()
            .is_some_and(|h| h.cpu_slot_enabled(uid))
    }

    /// Press the ACPI power button (QMP `system_powerdown`).
    pub fn press_power_button(&self) -> Result<(), PowerButtonError> {
        match &self.pm {
            Some(pm) => pm.press_power_button(),
            None => Err(PowerButtonError::NoPowerButton),
        }
    }
}

impl ExitHandler for Platform {
    #[inline]
    fn io_in(&self, vcpu: VcpuIndex, port: u16, data: &mut [u8]) -> ExitAction {
        self.bus.io_in(vcpu, port, data)
    }

    #[inline]
    fn io_out(&self, vcpu: VcpuIndex, port: u16, data: &[u8]) -> ExitAction {
        self.bus.io_out(vcpu, port, data)
    }

    #[inline]
    fn mmio_read(&self, vcpu: VcpuIndex, addr: u64, data: &mut [u8]) -> ExitAction {
        self.bus.mmio_read(vcpu, addr, data)
    }

    #[inline]
    fn mmio_write(&self, vcpu: VcpuIndex, addr: u64, data: &[u8]) -> ExitAction {
        self.bus.mmio_write(vcpu, addr, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{ResetSource, Space};
    use crate::fw_cfg::FwCfgBuilder;
    use crate::pc_testdev::NoHooks;

    const V: VcpuIndex = VcpuIndex(0);

    fn linux(cpus: &[CpuEntry]) -> Platform {
        Platform::new(PlatformConfig {
            console: ConsoleSink::ring_only(),
            power: Some(PowerConfig::default()),
            hotplug: Some((CpuHotplugConfig::default(), cpus)),
            test_devices: None,
            pc_power: None,
            q35: None,
        })
        .unwrap()
    }

    #[test]
    fn a_linux_platform_has_the_acpi_devices_and_no_test_devices() {
        let cpus = [CpuEntry::new(0, true), CpuEntry::new(1, false)];
        let p = linux(&cpus);
        let names: Vec<_> = p.bus().map().into_iter().map(|m| m.2).collect();
        assert_eq!(
            names,
            [
                "i8042 data",
                "i8042 command",
                "acpi pm",
                "com1",
                "cpu hot-plug"
            ]
        );
        assert_eq!(
            p.ged_interrupts(),
            [(5, "CPU hot-plug"), (6, "power button")]
        );
        p.plug_cpu(1).unwrap();
        assert!(p.cpu_slot_enabled(1));
        p.press_power_button().unwrap();
        assert!(matches!(p.io_out(V, 0x64, &[0xfe]), ExitAction::StopVm(_)));
        assert_eq!(p.vm_exit(), Some(&VmExit::Reboot(ResetSource::I8042)));
        let mut d = [0u8; 4];
        p.io_in(V, 0x510, &mut d);
        assert_eq!(d, [0xff; 4], "no fw_cfg");
    }

    #[test]
    fn a_test_kernel_platform_has_the_kvm_unit_tests_devices() {
        let p = Platform::new(PlatformConfig {
            console: ConsoleSink::ring_only(),
            power: None,
            hotplug: None,
            test_devices: Some(TestDevices {
                fw_cfg: FwCfgBuilder::new(4, 4, 1 << 30).build(),
                testdev_hooks: Arc::new(NoHooks),
            }),
            pc_power: Some(PcPower {
                pm1: Pm1Config::default(),
                sleep: Arc::new(crate::acpi_pm1::NoSleep),
            }),
            q35: None,
        })
        .unwrap();
        let map = p.bus().map();
        assert_eq!(
            map.len(),
            3 + 4 + 2 + 5,
            "COM1, i8042 x2, PM1 x3, RTC, fw_cfg, debug-exit, 5 testdev ranges"
        );
        p.io_out(V, 0x70, &[0x0d]);
        let mut d = [0];
        p.io_in(V, 0x71, &mut d);
        assert_eq!(d, [0x80], "RTC register D");
        p.io_in(V, 0x604, &mut d);
        assert_eq!(d, [1], "PM1_CNT.SCI_EN");
        assert!(map.contains(&(
            Space::Mmio,
            crate::pc_testdev::TESTDEV_IOMEM,
            "pc-testdev-iomem"
        )));
        assert!(p.ged_interrupts().is_empty());
        assert_eq!(
            p.plug_cpu(1).unwrap_err().to_string(),
            "CPU hot-plug is not configured (start the VM with maxcpus above cpus)"
        );
        assert!(p.press_power_button().is_err());
        assert!(p.take_ejected().is_empty());
        p.io_out(V, 0xf4, &[1, 0, 0, 0]);
        assert_eq!(p.vm_exit(), Some(&VmExit::DebugExit(1)));
    }
}

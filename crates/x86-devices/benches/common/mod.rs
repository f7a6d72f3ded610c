//! What both dispatch benchmarks share: the probe doorbell as a first device, a handler
//! of ProbeBus's shape, and a Linux-like table of real devices.

use std::sync::Arc;

use cpu_topology::VcpuIndex;
use vcpu_lifecycle::{ExitAction, ExitHandler};
use x86_devices::bus::Range;
use x86_devices::{
    AcpiPm, BusBuilder, BusDevice, Com1, ConsoleSink, CpuHotplug, DebugExit, DeviceAction,
    FirstDevice, FwCfgBuilder, I8042,
};

pub const DOORBELL: u16 = 0x510;
pub const PING: u32 = 0x5052_0003;

/// The probe doorbell as a bus device: a 4-byte write of a known code.
#[derive(Debug)]
pub struct Doorbell;

impl BusDevice for Doorbell {
    fn read(&self, _: VcpuIndex, _: u64, data: &mut [u8]) -> DeviceAction {
        data.fill(0xff);
        DeviceAction::Continue
    }

    #[inline]
    fn write(&self, _: VcpuIndex, offset: u64, data: &[u8]) -> DeviceAction {
        match (offset, <[u8; 4]>::try_from(data).map(u32::from_le_bytes)) {
            (0, Ok(PING)) => DeviceAction::Continue,
            (0, Ok(0x5052_0002)) => DeviceAction::HaltVcpu,
            _ => DeviceAction::Continue,
        }
    }
}

/// Today's ProbeBus shape: the handler matches the port itself.
impl FirstDevice for Doorbell {
    const PORTS: Range = Range::ports(DOORBELL, 1);
}

#[derive(Debug)]
pub struct Direct;

impl ExitHandler for Direct {
    fn io_in(&self, _: VcpuIndex, _: u16, data: &mut [u8]) -> ExitAction {
        data.fill(0xff);
        ExitAction::Continue
    }
    #[inline]
    fn io_out(&self, _: VcpuIndex, port: u16, data: &[u8]) -> ExitAction {
        if port != DOORBELL {
            return ExitAction::Continue;
        }
        match <[u8; 4]>::try_from(data).map(u32::from_le_bytes) {
            Ok(0x5052_0002) => ExitAction::Halt,
            _ => ExitAction::Continue,
        }
    }
    fn mmio_read(&self, _: VcpuIndex, _: u64, data: &mut [u8]) -> ExitAction {
        data.fill(0xff);
        ExitAction::Continue
    }
    fn mmio_write(&self, _: VcpuIndex, _: u64, _: &[u8]) -> ExitAction {
        ExitAction::Continue
    }
}

/// A Linux-like table: COM1, i8042, ACPI PM, CPU hot-plug, fw_cfg, debug-exit.
pub fn linux_like<F: FirstDevice>(b: BusBuilder<F>) -> BusBuilder<F> {
    let com1 = Arc::new(Com1::new(ConsoleSink::ring_only()).expect("COM1"));
    let cpus = [x86_boot::CpuEntry::new(0, true)];
    let pm = AcpiPm::new(&Default::default()).unwrap();
    let hp = CpuHotplug::new(&Default::default(), &cpus).unwrap();
    b.io("com1", x86_devices::com1::COM1_RANGE, com1)
        .unwrap()
        .io(
            "i8042 data",
            x86_devices::i8042::I8042_DATA_RANGE,
            Arc::new(I8042::Data),
        )
        .unwrap()
        .io(
            "i8042 cmd",
            x86_devices::i8042::I8042_COMMAND_RANGE,
            Arc::new(I8042::Command),
        )
        .unwrap()
        .io("acpi pm", pm.range(), Arc::new(pm))
        .unwrap()
        .io("cpu hotplug", hp.range(), Arc::new(hp))
        .unwrap()
        .io(
            "debug exit",
            x86_devices::debug_exit::DEBUG_EXIT_RANGE,
            Arc::new(DebugExit),
        )
        .unwrap()
        .io(
            "fw_cfg",
            Range::ports(0x600, 2),
            Arc::new(FwCfgBuilder::new(1, 1, 0).build()),
        )
        .unwrap()
}

//! Cost of one port-I/O exit's dispatch through the bus, against a handler that matches
//! the port itself (what vmm-reference's ProbeBus does today).
//!
//! `cargo bench -p x86-devices --bench bus_dispatch`

use std::hint::black_box;
use std::sync::Arc;

use cpu_topology::VcpuIndex;
use criterion::{criterion_group, criterion_main, Criterion};
use vcpu_lifecycle::{ExitAction, ExitHandler};
use x86_devices::bus::Range;
use x86_devices::{
    AcpiPm, BusBuilder, BusDevice, Com1, ConsoleSink, CpuHotplug, DebugExit, DeviceAction,
    FirstDevice, FwCfgBuilder, I8042,
};

const DOORBELL: u16 = 0x510;
const PING: u32 = 0x5052_0003;

/// The probe doorbell as a bus device: a 4-byte write of a known code.
#[derive(Debug)]
struct Doorbell;

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
struct Direct;

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
fn linux_like<F: FirstDevice>(b: BusBuilder<F>, com1: Arc<Com1>) -> BusBuilder<F> {
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

fn dispatch(c: &mut Criterion) {
    let ping = PING.to_le_bytes();
    let v = VcpuIndex(0);
    let com1 = Arc::new(Com1::new(ConsoleSink::ring_only()).unwrap());
    let first = linux_like(BusBuilder::new(), com1.clone())
        .first_io("doorbell", Doorbell)
        .unwrap()
        .build();
    let table = linux_like(BusBuilder::new(), com1)
        .io("doorbell", Range::ports(DOORBELL, 4), Arc::new(Doorbell))
        .unwrap()
        .build();
    let dyn_table: &dyn ExitHandler = &table;

    let mut g = c.benchmark_group("port_io_exit");
    g.bench_function("direct handler (ProbeBus shape)", |b| {
        b.iter(|| Direct.io_out(v, black_box(DOORBELL), black_box(&ping)))
    });
    g.bench_function("bus, doorbell as first device", |b| {
        b.iter(|| first.io_out(v, black_box(DOORBELL), black_box(&ping)))
    });
    g.bench_function("bus, doorbell in the table (8 ranges)", |b| {
        b.iter(|| table.io_out(v, black_box(DOORBELL), black_box(&ping)))
    });
    g.bench_function("&dyn ExitHandler, doorbell in the table", |b| {
        b.iter(|| dyn_table.io_out(v, black_box(DOORBELL), black_box(&ping)))
    });
    g.bench_function("bus, unassigned port read", |b| {
        let mut d = [0u8; 1];
        b.iter(|| table.io_in(v, black_box(0x80), black_box(&mut d)))
    });
    g.bench_function("bus, COM1 THR write (vm-superio + mutex)", |b| {
        b.iter(|| table.io_out(v, black_box(0x3f8), black_box(b"x")))
    });
    g.finish();
}

criterion_group!(benches, dispatch);
criterion_main!(benches);

//! Instructions per dispatch, for callgrind (noise-free on a shared machine): run the
//! named case N times. Compare two runs to cancel the set-up:
//!
//! ```text
//! cargo bench -p x86-devices --bench dispatch_instructions --no-run
//! B=$(ls -t target/release/deps/dispatch_instructions-* | grep -v '\.d$' | head -1)
//! for n in 1000 11000; do valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$n $B first $n; done
//! ```
//!
//! Then (Ir of the 11000 run - Ir of the 1000 run) / 10000. Cases: `direct` (a handler
//! that matches the port itself, ProbeBus's shape), `first` (the doorbell as the bus's
//! first device), `table` (the doorbell in an 8-range table), `dyn` (the same through
//! `&dyn ExitHandler`), `com1` (a COM1 THR write through the table).

use std::hint::black_box;
use std::sync::Arc;

use cpu_topology::VcpuIndex;
use vcpu_lifecycle::{ExitAction, ExitHandler};
use x86_devices::bus::Range;
use x86_devices::{
    BusBuilder, BusDevice, Com1, ConsoleSink, DebugExit, DeviceAction, FirstDevice, I8042,
};

const DOORBELL: u16 = 0x510;
const PING: u32 = 0x5052_0003;

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
            (0, Ok(0x5052_0002)) => DeviceAction::HaltVcpu,
            _ => DeviceAction::Continue,
        }
    }
}

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

#[inline(never)]
fn run<H: ExitHandler + ?Sized>(h: &H, port: u16, data: &[u8], n: u64) -> u64 {
    let mut halts = 0;
    for _ in 0..n {
        if h.io_out(VcpuIndex(0), black_box(port), black_box(data)) != ExitAction::Continue {
            halts += 1;
        }
    }
    halts
}

fn table<F: FirstDevice>(b: BusBuilder<F>) -> BusBuilder<F> {
    let com1 = Arc::new(Com1::new(ConsoleSink::ring_only()).expect("COM1"));
    let d = |r: Range, name, dev: Arc<dyn BusDevice>| (r, name, dev);
    let rows = [
        d(x86_devices::com1::COM1_RANGE, "com1", com1),
        d(Range::ports(0x60, 1), "i8042 data", Arc::new(I8042::Data)),
        d(Range::ports(0x64, 1), "i8042 cmd", Arc::new(I8042::Command)),
        d(Range::ports(0x3c0, 3), "acpi", Arc::new(DebugExit)),
        d(Range::ports(0xcd8, 12), "hotplug", Arc::new(DebugExit)),
        d(Range::ports(0xf4, 4), "debug exit", Arc::new(DebugExit)),
        d(Range::ports(0xe0, 4), "testdev", Arc::new(DebugExit)),
    ];
    rows.into_iter().fold(b, |b, (r, name, dev)| {
        b.io(name, r, dev).expect("no overlap")
    })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().unwrap_or_else(|| "first".into());
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let ping = PING.to_le_bytes();
    let halts = match case.as_str() {
        "direct" => run(&Direct, DOORBELL, &ping, n),
        "first" => {
            let bus = table(BusBuilder::new())
                .first_io("doorbell", Doorbell)
                .expect("free")
                .build();
            run(&bus, DOORBELL, &ping, n)
        }
        "table" | "dyn" => {
            let bus = table(BusBuilder::new())
                .io("doorbell", Range::ports(DOORBELL, 4), Arc::new(Doorbell))
                .expect("free")
                .build();
            if case == "dyn" {
                run::<dyn ExitHandler>(&bus, DOORBELL, &ping, n)
            } else {
                run(&bus, DOORBELL, &ping, n)
            }
        }
        "com1" => run(&table(BusBuilder::new()).build(), 0x3f8, b"x", n),
        other => {
            eprintln!("unknown case {other} (direct, first, table, dyn, com1)");
            std::process::exit(2);
        }
    };
    println!("{case}: {n} dispatches, {halts} not Continue");
}

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

mod common;

use std::hint::black_box;
use std::sync::Arc;

use common::{linux_like, Direct, Doorbell, DOORBELL, PING};
use cpu_topology::VcpuIndex;
use vcpu_lifecycle::{ExitAction, ExitHandler};
use x86_devices::bus::Range;
use x86_devices::BusBuilder;

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

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().unwrap_or_else(|| "first".into());
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let ping = PING.to_le_bytes();
    let halts = match case.as_str() {
        "direct" => run(&Direct, DOORBELL, &ping, n),
        "first" => {
            let bus = linux_like(BusBuilder::new())
                .first_io("doorbell", Doorbell)
                .expect("free")
                .build();
            run(&bus, DOORBELL, &ping, n)
        }
        "table" | "dyn" => {
            let bus = linux_like(BusBuilder::new())
                .io("doorbell", Range::ports(DOORBELL, 4), Arc::new(Doorbell))
                .expect("free")
                .build();
            if case == "dyn" {
                run::<dyn ExitHandler>(&bus, DOORBELL, &ping, n)
            } else {
                run(&bus, DOORBELL, &ping, n)
            }
        }
        "com1" => run(&linux_like(BusBuilder::new()).build(), 0x3f8, b"x", n),
        other => {
            eprintln!("unknown case {other} (direct, first, table, dyn, com1)");
            std::process::exit(2);
        }
    };
    println!("{case}: {n} dispatches, {halts} not Continue");
}

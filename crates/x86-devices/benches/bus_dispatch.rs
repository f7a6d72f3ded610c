//! Cost of one port-I/O exit's dispatch through the bus, against a handler that matches
//! the port itself (what vmm-reference's ProbeBus does today).
//!
//! `cargo bench -p x86-devices --bench bus_dispatch`

mod common;

use std::hint::black_box;
use std::sync::Arc;

use common::{linux_like, Direct, Doorbell, DOORBELL, PING};
use cpu_topology::VcpuIndex;
use criterion::{criterion_group, criterion_main, Criterion};
use vcpu_lifecycle::ExitHandler;
use x86_devices::bus::Range;
use x86_devices::BusBuilder;

fn dispatch(c: &mut Criterion) {
    let ping = PING.to_le_bytes();
    let v = VcpuIndex(0);
    let first = linux_like(BusBuilder::new())
        .first_io("doorbell", Doorbell)
        .unwrap()
        .build();
    let table = linux_like(BusBuilder::new())
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

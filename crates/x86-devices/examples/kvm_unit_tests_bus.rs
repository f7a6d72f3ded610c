//! The bus a multiboot kvm-unit-tests kernel needs, driven by hand the way the suite's
//! library drives it: read the CPU count from fw_cfg, print on COM1, then `exit(0)`
//! through isa-debug-exit. Prints the bus map and the exit status QEMU would return.
//!
//! `cargo run -p x86-devices --example kvm_unit_tests_bus`

use std::sync::Arc;

use cpu_topology::VcpuIndex;
use vcpu_lifecycle::{ExitAction, ExitHandler};
use x86_devices::com1::COM1_RANGE;
use x86_devices::debug_exit::DEBUG_EXIT_RANGE;
use x86_devices::fw_cfg::{FW_CFG_NB_CPUS, FW_CFG_RANGE};
use x86_devices::i8042::{I8042_COMMAND_RANGE, I8042_DATA_RANGE};
use x86_devices::pc_testdev::NoHooks;
use x86_devices::{
    BusBuilder, Com1, ConsoleSink, DebugExit, FwCfgBuilder, PcTestdev, VmExit, I8042,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let com1 = Arc::new(Com1::new(ConsoleSink::line_buffered(Box::new(
        std::io::stdout(),
    )))?);
    let fw_cfg = FwCfgBuilder::new(2, 2, 128 << 20).build();
    let bus = BusBuilder::new()
        .io("com1", COM1_RANGE, com1.clone())?
        .io("i8042 data", I8042_DATA_RANGE, Arc::new(I8042::Data))?
        .io(
            "i8042 command",
            I8042_COMMAND_RANGE,
            Arc::new(I8042::Command),
        )?
        .io("fw_cfg", FW_CFG_RANGE, Arc::new(fw_cfg))?
        .io("isa-debug-exit", DEBUG_EXIT_RANGE, Arc::new(DebugExit))?;
    let bus = PcTestdev::new(Arc::new(NoHooks)).register(bus)?.build();

    println!("bus map:");
    for (space, range, name) in bus.map() {
        println!("  {space:>4} {:<26} {name}", range.to_string());
    }

    let cpu = VcpuIndex(0);
    // fwcfg_get_nb_cpus(): select the key, read two bytes.
    bus.io_out(cpu, 0x510, &FW_CFG_NB_CPUS.to_le_bytes());
    let (mut lo, mut hi) = ([0u8], [0u8]);
    bus.io_in(cpu, 0x511, &mut lo);
    bus.io_in(cpu, 0x511, &mut hi);
    let cpus = u16::from_le_bytes([lo[0], hi[0]]);

    for b in format!("enabling apic\nsmp: {cpus} cpus\nSUMMARY: 1 tests\n").bytes() {
        bus.io_out(cpu, 0x3f8, &[b]);
    }
    // exit(0): outl(0, 0xf4).
    let action = bus.io_out(cpu, 0xf4, &0u32.to_le_bytes());
    assert!(matches!(action, ExitAction::StopVm(_)));
    if let Some(VmExit::DebugExit(value)) = bus.vm_exit() {
        println!(
            "guest exit: debug-exit value {value}, exit status {} (the runner's PASS)",
            VmExit::debug_exit_status(*value)
        );
    }
    Ok(())
}

//! x86 platform devices on one port-I/O/MMIO bus, for a KVM VMM.
//!
//! A [`Bus`] routes the port and MMIO exits of every vCPU to [`BusDevice`]s by address
//! and implements `vcpu_lifecycle::ExitHandler`, so the vCPU run loop hands it every
//! exit. It is built once ([`BusBuilder`]; overlapping ranges are a [`BusError`]) and is
//! immutable afterwards: an exit takes no lock on the bus and allocates nothing. One hot
//! device can sit in front of the table, by type, so its code is inlined into the run
//! loop ([`BusBuilder::first_io`]). Unclaimed ports and MMIO read all ones and swallow
//! writes, as an empty ISA bus.
//!
//! | device | module | ranges | interrupt |
//! |---|---|---|---|
//! | COM1, a 16550 UART (vm-superio) | [`com1`] | ports `0x3f8..=0x3ff` | GSI 4, irqfd |
//! | i8042 reset line | [`i8042`] | ports `0x60`, `0x64` | - |
//! | ACPI PM: sleep control/status, reset | [`acpi_pm`] | ports `0x3c0..=0x3c2` | power button GED, GSI 6, irqfd |
//! | ACPI PM1a event and control blocks (S3, S5), PM timer | [`acpi_pm1`] | ports `0x600..=0x603`, `0x604..=0x605`, `0x608..=0x60b` | - |
//! | CMOS RTC (time, `UIP`, CMOS RAM) | [`rtc`] | ports `0x70..=0x71` | - |
//! | CPU hot-plug registers | [`cpu_hotplug`] | ports `0xcd8..=0xce3` | GED, GSI 5, irqfd |
//! | QEMU fw_cfg (I/O interface) | [`fw_cfg`] | ports `0x510..=0x511` | - |
//! | isa-debug-exit | [`debug_exit`] | ports `0xf4..=0xf7` | - |
//! | pc-testdev | [`pc_testdev`] | ports `0xe0..=0xeb`, `0x2000..=0x2017`, MMIO `0xff000000..=0xff00ffff` | drives ISA lines through a hook |
//! | PCI bus 0, configuration mechanism #1, q35 host bridge | [`pci`] | ports `0xcf8..=0xcff` | - |
//! | user-space I/O APIC (split irqchip) | [`ioapic`] | MMIO `0xfec00000..=0xfec00fff` | MSIs through remapping |
//! | Intel VT-d DMA and interrupt remapping | [`vtd`], [`vtd_tables`] | MMIO `0xfed90000..=0xfed90fff` | invalidation-wait MSI |
//! | QEMU's edu (PCI 1234:11e8) | [`edu`] | BAR 0, MMIO `0xfea00000..=0xfeafffff` | INTA# on I/O APIC pin 16, MSI |
//!
//! A device that ends the VM returns [`DeviceAction::End`] with a typed [`VmExit`]
//! (reboot, power off, debug-exit value, stop reason); the bus records the first one
//! ([`Bus::vm_exit`]) and stops the VM, and the VMM maps it to its exit code.
//!
//! [`Platform`] bundles a kernel payload's whole device set (Linux: COM1, i8042, ACPI
//! PM, CPU hot-plug; a multiboot kvm-unit-tests kernel: COM1, i8042, PM1 blocks, RTC,
//! fw_cfg, isa-debug-exit, pc-testdev; with `q35` also the PCI part of [`q35`]: PCI
//! bus, user-space I/O APIC, VT-d, edu) with the control-plane calls the VMM needs.
//!
//! COM1's host side ([`serial`]) parses `--serial` and runs on the VMM's one
//! `event-manager` loop: a [`serial::SerialSubscriber`] per VM, no threads.
//!
//! ```
//! use std::sync::Arc;
//! use vcpu_lifecycle::{ExitAction, ExitHandler};
//! use cpu_topology::VcpuIndex;
//! use x86_devices::{BusBuilder, Com1, ConsoleSink, DebugExit, VmExit};
//! use x86_devices::{com1::COM1_RANGE, debug_exit::DEBUG_EXIT_RANGE};
//!
//! let com1 = Arc::new(Com1::new(ConsoleSink::ring_only())?);
//! let bus = BusBuilder::new()
//!     .io("com1", COM1_RANGE, com1.clone())?
//!     .io("isa-debug-exit", DEBUG_EXIT_RANGE, Arc::new(DebugExit))?
//!     .build();
//! for b in b"PASS\n" {
//!     bus.io_out(VcpuIndex(0), 0x3f8, &[*b]);
//! }
//! assert_eq!(com1.console_tail(1), ["PASS"]);
//! let stop = bus.io_out(VcpuIndex(0), 0xf4, &0u32.to_le_bytes());
//! assert!(matches!(stop, ExitAction::StopVm(_)));
//! assert_eq!(bus.vm_exit(), Some(&VmExit::DebugExit(0)));
//! assert_eq!(VmExit::debug_exit_status(0), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

pub mod acpi_pm;
pub mod acpi_pm1;
pub mod bus;
pub mod com1;
pub mod cpu_hotplug;
pub mod debug_exit;
pub mod edu;
pub mod fw_cfg;
pub mod i8042;
pub mod ioapic;
pub mod irq;
pub mod pc_testdev;
pub mod pci;
pub mod platform;
pub mod q35;
pub mod rtc;
pub mod serial;
pub mod vtd;
pub mod vtd_tables;

pub use acpi_pm::AcpiPm;
pub use bus::{
    Bus, BusBuilder, BusDevice, BusError, DeviceAction, FirstDevice, NoDevice, Range, ResetSource,
    Space, VmExit,
};
pub use com1::{Com1, ConsoleRing, ConsoleSink};
pub use cpu_hotplug::CpuHotplug;
pub use debug_exit::DebugExit;
pub use fw_cfg::{FwCfg, FwCfgBuilder};
pub use i8042::I8042;
pub use irq::InterruptLine;
pub use pc_testdev::{PcTestdev, TestdevHooks};
pub use platform::{PcPower, Platform, PlatformConfig, PlatformError, TestDevices};
pub use q35::{Q35Config, Q35};
pub use vtd::{KvmMsi, MsiSink};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

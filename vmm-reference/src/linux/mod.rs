//! What a kernel payload brings into a VM (see [`crate::vm`] for the VM itself): the
//! full in-kernel irqchip (PIC, IOAPIC, local APICs) and PIT, COM1 on IRQ 4, the i8042
//! reset line, the ACPI power registers (S5 power off, reset) and power button, and the
//! CPU hot-plug register block when `maxcpus` exceeds `cpus`. The BSP starts in 64-bit
//! mode at the kernel's entry with `RSI` pointing at the zero page (the Linux 64-bit boot
//! protocol); the APs wait in KVM's INIT-received state until Linux starts them with
//! INIT/SIPI.
//!
//! - [`boot`]: command line, e820, MP table, ACPI (FADT, MADT, DSDT, SRAT, SLIT), zero
//!   page;
//! - [`loader`]: vmlinux (ELF) or bzImage, initrd;
//! - [`bus`]: the platform devices and their interrupts;
//! - [`serial`]: COM1's backends (`--serial`: stdio, file, null, Unix or TCP socket).

pub mod boot;
pub mod bus;
pub mod loader;
pub mod serial;

pub use crate::vm::GuestExit;
pub use serial::{parse_serial, SerialOutput};

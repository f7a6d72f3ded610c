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
//!
//! The devices (COM1 and its `--serial` backends, i8042, ACPI power registers, CPU
//! hot-plug block) are the `x86-devices` crate's `Platform`.

pub use x86_boot::linux as boot;
pub use x86_boot::linux::loader;

pub use crate::vm::GuestExit;
pub use x86_devices::serial::{parse_serial, SerialOutput};

//! x86-64 boot state for KVM guests: long-mode entry, page tables, GDT, and
//! the firmware tables a Linux guest reads (zero page, e820, MP table, ACPI).
//!
//! This crate computes and writes the architectural state a VMM needs to start
//! a vCPU directly in 64-bit mode:
//!
//! - [`gdt`]: a flat 64-bit GDT (kernel and user code/data) and the conversion
//!   of descriptors to `kvm_segment`;
//! - [`paging`]: identity-mapping page tables with 2 MiB pages, User bit on
//!   every level;
//! - [`long_mode`]: writes both into guest memory and turns a vCPU's
//!   `kvm_sregs` into 64-bit CPL0 state.
//!
//! and describes CPU topology, NUMA and CPU hot-plug to a Linux guest booted
//! through the 64-bit boot protocol:
//!
//! - [`e820`] and [`zero_page`]: the memory map and `boot_params`;
//! - [`mptable`]: Intel MP specification 1.4 tables (xAPIC ids only);
//! - [`acpi`]: RSDP, XSDT, FADT, MADT, DSDT (processor devices, hot-plug,
//!   `\_S5_`, power button), SRAT, SLIT, and [`acpi::hotplug`] and
//!   [`acpi::power`], the VMM side of the hot-plug and power registers;
//! - [`platform`]: the CPU slot and IOAPIC inputs shared by both;
//! - [`layout`]: a default guest memory map for all of the above;
//! - [`multiboot`] and [`multiboot_info`]: a Multiboot (v1) kernel loader
//!   (ELF32/ELF64 or a.out kludge) with the information structure and the
//!   32-bit protected-mode entry state;
//! - [`bios`]: the 8259 and LAPIC state a PC BIOS leaves for a boot loader.
//!
//! DESIGN.md in the crate explains the memory map, what Linux reads from each
//! table and the hot-plug register interface.
//!
//! Everything is plain data plus [`vm_memory::GuestMemory`] writes: no ioctls,
//! no unsafe code. The caller applies the returned `kvm_sregs` with
//! `KVM_SET_SREGS`.
//!
//! ```
//! use vm_memory::{GuestAddress, GuestMemoryMmap};
//! use x86_boot::long_mode::{long_mode_sregs, write_long_mode_tables, LongModeLayout};
//!
//! let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
//! let layout = LongModeLayout {
//!     gdt_addr: GuestAddress(0x1000),
//!     pml4_addr: GuestAddress(0x2000),
//!     identity_map_size: 4 << 30,
//! };
//! let cr3 = write_long_mode_tables(&mem, &layout).unwrap();
//! // `base` would come from VcpuFd::get_sregs().
//! let sregs = long_mode_sregs(&Default::default(), &layout);
//! assert_eq!(sregs.cr3, cr3);
//! assert_eq!(sregs.cs.l, 1);
//! ```

#![forbid(unsafe_code)]

pub mod acpi;
pub mod bios;
pub mod e820;
pub mod gdt;
pub mod layout;
pub mod linux;
pub mod long_mode;
pub mod mptable;
pub mod multiboot;
pub mod multiboot_info;
pub mod paging;
pub mod platform;
pub mod zero_page;

pub use platform::{CpuEntry, IoApicConfig};

/// The README example, compiled as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

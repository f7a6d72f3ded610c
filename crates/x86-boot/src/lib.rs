//! x86-64 boot state for KVM guests: long-mode entry, page tables, GDT.
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

pub mod gdt;
pub mod long_mode;
pub mod paging;

/// The README example, compiled as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

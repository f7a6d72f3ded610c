//! Guest memory for x86-64 KVM guests.
//!
//! - [`size`]: the `-m` grammar (`2G`, `512`, `size=4.5G`), QEMU-compatible, plus
//!   `256 MiB`-style formatting.
//! - [`layout`]: where RAM sits in the guest-physical address space: RAM from 0 to 3 GiB,
//!   the 32-bit MMIO hole (IOAPIC, LAPIC, PCI), the rest from 4 GiB.
//! - [`ram`]: the layout backed by anonymous `MAP_NORESERVE` mappings (vm-memory's
//!   `GuestMemoryMmap`), with guest-physical to host-virtual translation that never crosses
//!   a region boundary.
//! - [`slots`]: the regions registered as KVM memory slots, deleted before their mappings
//!   are released (the crate's only `unsafe` code).
//! - [`walk`]: guest-virtual to guest-physical translation by walking the guest's 4- or
//!   5-level page tables.
//!
//! `size`, `layout` and `walk` are pure and need no `/dev/kvm`.
//!
//! ```
//! use guest_memory::{layout::MemoryLayout, ram::GuestRam, size::parse_mem_size};
//! use vm_memory::{Bytes, GuestAddress};
//!
//! let bytes = parse_mem_size("4.5G").unwrap();
//! let layout = MemoryLayout::x86_64(bytes).unwrap();
//! assert_eq!(layout.regions().len(), 2); // below and above the MMIO hole
//! let ram = GuestRam::new(&layout).unwrap(); // 4.5 GiB mapped, nothing resident yet
//! ram.memory().write_obj(42u32, GuestAddress(4 << 30)).unwrap();
//! assert_eq!(ram.memory().read_obj::<u32>(GuestAddress(4 << 30)).unwrap(), 42);
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod layout;
pub mod ram;
pub mod size;
#[allow(unsafe_code)]
pub mod slots;
pub mod walk;

pub use layout::{LayoutError, MemoryLayout, NodeId, RamRegion, ReservedKind, ReservedRange};
pub use ram::{GuestRam, HostAddress, MemoryError};
pub use size::{format_size, parse_mem_size, parse_size, SizeError, DEFAULT_MEM_SIZE};
pub use slots::{MemorySlots, SlotError, SlotId, SlotInfo};
pub use walk::{gva_to_gpa, PageFlags, PageSize, PagingLevel, PagingMode, Translation, WalkError};

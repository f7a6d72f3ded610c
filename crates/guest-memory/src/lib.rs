//! Guest memory for x86-64 KVM guests.
//!
//! - [`size`]: the `-m` grammar (`2G`, `512`, `size=4.5G`), QEMU-compatible, plus
//!   `256 MiB`-style formatting.
//! - [`layout`]: where RAM sits in the guest-physical address space: RAM from 0 to 3 GiB,
//!   the 32-bit MMIO hole (IOAPIC, LAPIC, PCI), the rest from 4 GiB.
//! - [`ram`]: the layout backed by anonymous `MAP_NORESERVE` mappings (vm-memory's
//!   `GuestMemoryMmap`), with guest-physical to host-virtual translation that never crosses
//!   a region boundary.
//! - [`numa`]: QEMU's `-numa node|dist` grammar and libvirt's `<cell>` as config, checked
//!   against the machine into a [`NumaTopology`] (per-node CPUs, sizes, distances, layout).
//! - [`backend`]: QEMU's `-object memory-backend-ram|memfd|file` grammar as typed config.
//! - [`backing`]: RAM mapped from those backends (memfd, hugetlb, files, `share`,
//!   `prealloc`), bound to host NUMA nodes with `mbind`.
//! - [`slots`]: the regions registered as KVM memory slots, deleted before their mappings
//!   are released.
//! - [`walk`]: guest-virtual to guest-physical translation by walking the guest's 4- or
//!   5-level page tables.
//!
//! `size`, `layout`, `numa`, `backend` and `walk` are pure and need no `/dev/kvm`. The
//! `unsafe` code lives in `slots` (KVM slots) and the private `host_sys` module
//! (`memfd_create`, `fstatfs`, `mbind`, `madvise`).
//!
//! A two-node guest, node 1 from a memfd bound to host node 0:
//!
//! ```
//! use guest_memory::{parse_memory_backend, GuestRam, NumaConfig, NumaMachine, UnassignedCpus};
//!
//! let m1 = parse_memory_backend("memory-backend-memfd,id=m1,size=1G,policy=bind,host-nodes=0")?;
//! let m0 = parse_memory_backend("memory-backend-ram,id=m0,size=1G")?;
//! let numa = NumaConfig::parse(["node,cpus=0-1,memdev=m0", "node,cpus=2-3,memdev=m1"])?;
//! let backends = [m0, m1];
//! let topology = numa.resolve(&NumaMachine {
//!     ram_size: 2 << 30,
//!     max_cpus: 4,
//!     cpus_per_socket: 4,
//!     backends: &backends,
//!     unassigned: UnassignedCpus::Reject,
//! })?;
//! let layout = topology.layout()?; // node 0 at [0, 1G), node 1 at [1G, 2G)
//! let ram = GuestRam::with_backends(&layout, &topology.node_backends(&backends))?;
//! assert_eq!(ram.layout().ram_size(), 2 << 30);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
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

pub mod backend;
pub mod backing;
#[allow(unsafe_code)]
mod host_sys;
pub mod layout;
pub mod numa;
pub mod ram;
pub mod size;
#[allow(unsafe_code)]
pub mod slots;
pub mod walk;

pub use backend::{
    parse_memory_backend, BackendConfigError, BackendKind, HostMemPolicy, MemoryBackendConfig,
};
pub use backing::BackingError;
pub use layout::{LayoutError, MemoryLayout, NodeId, RamRegion, ReservedKind, ReservedRange};
pub use numa::{
    parse_numa, NumaConfig, NumaError, NumaMachine, NumaNode, NumaTopology, UnassignedCpus,
};
pub use ram::{GuestRam, HostAddress, MemoryError};
pub use size::{format_size, parse_mem_size, parse_size, SizeError, DEFAULT_MEM_SIZE};
pub use slots::{MemorySlots, SlotError, SlotId, SlotInfo};
pub use walk::{gva_to_gpa, PageFlags, PageSize, PagingLevel, PagingMode, Translation, WalkError};

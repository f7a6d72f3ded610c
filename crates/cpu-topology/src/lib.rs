//! SMP topology vocabulary shared by the other crates of this workspace.
//!
//! * [`CpuTopology`]: the shape of a guest (sockets, dies, modules, cores, threads) and how
//!   many of its `max_cpus` slots are present at boot.
//! * [`ApicIdLayout`]: QEMU's packed APIC-id encoding (each level gets `ceil(log2(n))` bits),
//!   mapping both ways between [`VcpuIndex`], [`TopologyPosition`] and [`ApicId`].
//! * [`smp`]: the `-smp` grammar.
//!
//! The crate makes no system calls besides reading sysfs in the host inventory, and it
//! forbids `unsafe`.
#![forbid(unsafe_code)]

pub mod smp;
mod topology;

pub use topology::{
    ApicId, ApicIdLayout, CpuTopology, TopologyError, TopologyPosition, VcpuIndex, MAX_XAPIC_ID,
};
pub mod cpuset;
pub mod host;

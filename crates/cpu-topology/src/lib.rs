//! SMP topology vocabulary shared by the other crates of this workspace.
//!
//! * [`CpuTopology`]: the shape of a guest (sockets, dies, modules, cores, threads) and how
//!   many of its `max_cpus` slots are present at boot.
//! * [`ApicIdLayout`]: QEMU's packed APIC-id encoding (each level gets `ceil(log2(n))` bits),
//!   mapping both ways between [`VcpuIndex`], [`TopologyPosition`] and [`ApicId`].
//! * [`smp`]: the `-smp` grammar (QEMU's and Cloud Hypervisor's).
//! * [`cpuset`]: host CPU sets and their grammars: libvirt cpusets (`1-4,^3,6`), kernel
//!   cpu-lists (`0-10:2`, `100-2000:2/25`), taskset masks and `/proc` mask words.
//! * [`host`]: the host's CPU inventory (online, isolated, siblings, packages, nodes) read
//!   from sysfs under an injectable root, so tests use fixture trees.
//!
//! The crate makes no system calls besides reading sysfs in the host inventory, and it
//! forbids `unsafe`.
#![forbid(unsafe_code)]

pub mod cpuset;
pub mod host;
pub mod smp;
mod topology;

pub use cpuset::{CpuSetError, HostCpuId, HostCpuSet, MAX_HOST_CPUS};
pub use host::{HostCpuInfo, HostCpuInventory, HostError};
pub use topology::{
    ApicId, ApicIdLayout, CpuTopology, TopologyError, TopologyPosition, VcpuIndex, MAX_XAPIC_ID,
};

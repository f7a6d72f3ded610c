//! vCPU placement for KVM VMMs: where each vCPU thread may run, whether the host can take
//! one more VM, and applying the answer to real threads.
//!
//! The crate has a pure policy half and a small system half:
//!
//! * [`config`]: what the user asks for (`--vcpupin VCPUS:CPUSET`, `--cpuset`,
//!   `--emulatorpin`, a [`PlacementPolicy`]).
//! * [`plan`]: [`PlacementPlan::compute`] turns a config and a
//!   [`HostCpuInventory`](cpu_topology::host::HostCpuInventory) into per-vCPU host CPU sets
//!   with reasons and warnings; `Display` prints it as a table.
//! * [`admission`]: over-commit limits per VM and host-wide, counting every live VM
//!   (a vCPU floating over `k` CPUs counts `1/k` on each).
//! * [`ledger`]: the host-wide record of live VMs (one JSON file per VM, `flock`-protected
//!   admission, reclaim of dead processes).
//! * [`thread`]: applying a plan (`sched_setaffinity`), live re-pin by thread id, and
//!   `virsh vcpuinfo`-style reports read from `/proc`.
//!
//! Only the private `sys` module contains `unsafe` (libc calls); every other module
//! forbids it.
//!
//! ```
//! use cpu_topology::host::HostCpuInventory;
//! use vcpu_placement::{PlacementConfig, PlacementPlan, PlacementPolicy};
//!
//! // 1 socket, 4 cores, 2 threads: CPUs 0-3 are first threads, 4-7 their siblings.
//! let host = HostCpuInventory::uniform(1, 4, 2);
//! let config = PlacementConfig { policy: PlacementPolicy::Dedicated, ..Default::default() };
//! let plan = PlacementPlan::compute(&config, &host, 3).unwrap();
//! // One vCPU per core before any SMT sibling is used.
//! let cpus: Vec<String> = plan.vcpus().iter().map(|p| p.cpus.to_string()).collect();
//! assert_eq!(cpus, ["0", "1", "2"]);
//! assert_eq!(plan.emulator().cpus.to_string(), "3-7");
//! ```
#![deny(unsafe_code)]

pub mod admission;
pub mod advice;
pub mod config;
pub mod ledger;
pub mod plan;
#[allow(unsafe_code)]
mod sys;
pub mod thread;

/// Compiles and runs the README example as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub use admission::{
    admit, AdmissionError, AdmissionWarning, HostLoad, Load, OvercommitPolicy, VcpuLoad, VmLoad,
};
pub use config::{ConfigError, CpuSpec, PlacementConfig, PlacementPolicy, VcpuPin};
pub use ledger::{Admitted, Ledger, LedgerEntry, LedgerError};
pub use plan::{Placement, PlacementError, PlacementPlan, PlacementReason, PlacementWarning};
pub use thread::{
    apply_emulator_to_current_thread, apply_to_current_thread, pin_current_thread, pin_thread,
    thread_affinity, ThreadError, Tid, VcpuInfo,
};

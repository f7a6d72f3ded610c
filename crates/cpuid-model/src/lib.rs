//! CPUID tables for KVM guests, computed without KVM.
//!
//! The host's supported CPUID comes in as data (a [`CpuidTable`], e.g. from
//! `KVM_GET_SUPPORTED_CPUID` through [`kvm::from_kvm`], or from a `cpuid -r` dump through
//! [`dump::parse_raw`]), so every function here runs in tests, fuzzers and planners for
//! hosts you are not on.
//!
//! The pipeline a VMM runs once per VM:
//! 1. [`spec::parse`] a QEMU-style model spec (`EPYC,+avx2,-x2apic,enforce`),
//! 2. [`check::resolve`] it against the host: the model's CPUID (vendor, levels, caches,
//!    XSAVE layout, address sizes, all from the model), with the features the host
//!    lacks dropped with a warning (or refused under `enforce`),
//! 3. [`normalize::Normalizer`] turns that base table into each vCPU's table: APIC ids and
//!    the topology leaves (0x1, 0x4, 0xB, 0x1F, 0x8000_0001/8/1D/1E), Intel and AMD each in
//!    their own module,
//! 4. [`kvm::to_kvm`] for `KVM_SET_CPUID2`.
//!
//! And back: [`decode::topology_view`] reads a vCPU's place from its CPUID view the way
//! Linux does; [`dump`] and [`hwloc`] write what vCPUs saw for the `cpuid` tool and hwloc;
//! [`diff`] compares tables by feature name; [`baseline`] finds the largest model a fleet
//! of hosts can all run. DESIGN.md has the leaf-by-leaf table.
//!
//! ```
//! use cpu_topology::{smp::parse_smp, VcpuIndex};
//! use cpuid_model::{check, dump, normalize::Normalizer, spec, CpuidKey};
//!
//! // A host's supported CPUID, here from a dump in the `cpuid -r` format.
//! let host = &dump::parse_raw(include_str!("../tests/data/host-amd-zen4.txt")).unwrap()[0].table;
//! let resolved = check::resolve(&spec::parse("EPYC").unwrap(), host).unwrap();
//! let topo = parse_smp("8,sockets=2,cores=2,threads=2").unwrap();
//! let vcpu5 = Normalizer::new(&resolved.table, &topo).unwrap().for_vcpu(VcpuIndex(5)).unwrap();
//! // vCPU 5 is socket 1, core 0, thread 1: x2APIC id 0b101.
//! assert_eq!(vcpu5.regs(CpuidKey::subleaf(0xb, 0)).unwrap().edx, 5);
//! ```
#![forbid(unsafe_code)]

mod table;

pub mod baseline;
pub mod cache;
pub mod check;
pub mod decode;
pub mod diff;
pub mod dump;
pub mod features;
pub mod hwloc;
pub mod kvm;
pub mod model;
pub mod normalize;
pub mod plan;
mod props;
pub mod report;
pub mod spec;
mod synth;

pub use table::{CpuidEntry, CpuidKey, CpuidRegs, CpuidTable, Reg};

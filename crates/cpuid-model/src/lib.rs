//! CPUID tables for KVM guests.
#![forbid(unsafe_code)]

mod table;

// Core (per-vCPU normalisation, decoding, dumps).
pub mod decode;
pub mod dump;
pub mod hwloc;
pub mod kvm;
pub mod normalize;
// Models (database, spec grammar, host check, diff, baseline).
pub mod baseline;
pub mod check;
pub mod diff;
pub mod features;
pub mod model;
pub mod spec;

pub use table::{CpuidEntry, CpuidKey, CpuidRegs, CpuidTable, Reg};

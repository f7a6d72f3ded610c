//! CPUID tables for KVM guests.
#![forbid(unsafe_code)]

mod table;

pub use table::{CpuidEntry, CpuidKey, CpuidRegs, CpuidTable, Reg};

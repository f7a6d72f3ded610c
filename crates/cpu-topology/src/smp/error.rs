//! Errors of the `-smp` grammar.

use super::{quote, ChTopology, SmpLevels};
use crate::topology::TopologyError;

/// Errors from parsing or resolving an `-smp` string. Every message is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmpError {
    /// An item between two commas (or after the last one) is empty.
    #[error("empty item {position} in the -smp list (stray comma?)")]
    EmptyItem {
        /// 1-based position of the empty item.
        position: usize,
    },
    /// A value without `key=` that is not the first item (only `cpus` may be implied).
    #[error("invalid -smp item '{}': only the first item may omit its key (cpus=)", quote(.item))]
    BareValueNotFirst {
        /// The item as written.
        item: String,
    },
    /// A key this grammar does not know.
    #[error(
        "unknown -smp parameter '{}' (expected cpus, maxcpus, drawers, books, sockets, dies, \
         clusters, modules, cores, threads; or boot, max, topology)",
        quote(.key)
    )]
    UnknownKey {
        /// The key as written.
        key: String,
    },
    /// A known key written without `=value`.
    #[error("-smp parameter '{key}' needs a value ({key}=N)")]
    MissingValue {
        /// The key.
        key: &'static str,
    },
    /// The same parameter given twice (the leading bare value counts as `cpus`).
    #[error("-smp parameter '{key}' is given more than once")]
    DuplicateKey {
        /// The key.
        key: &'static str,
    },
    /// A value that is not a plain decimal number.
    #[error(
        "invalid value '{}' for -smp parameter '{key}': expected a decimal integer \
         (no sign, spaces, hex or leading zeros)",
        quote(.value)
    )]
    InvalidNumber {
        /// The key the value belongs to.
        key: &'static str,
        /// The value as written.
        value: String,
    },
    /// A decimal number above `u32::MAX`.
    #[error("value '{}' for -smp parameter '{key}' is out of range (at most 4294967295)", quote(.value))]
    NumberOutOfRange {
        /// The key the value belongs to.
        key: &'static str,
        /// The value as written.
        value: String,
    },
    /// Keys of QEMU's and Cloud Hypervisor's grammar in one string.
    #[error(
        "-smp mixes QEMU ('{qemu_key}') and Cloud Hypervisor ('{ch_key}') syntax; use one of them"
    )]
    MixedGrammar {
        /// A QEMU key that was given (`cpus` for a leading bare value).
        qemu_key: &'static str,
        /// A Cloud Hypervisor key that was given.
        ch_key: &'static str,
    },
    /// Cloud Hypervisor's form without `boot=`.
    #[error("Cloud Hypervisor CPU syntax needs boot=N")]
    MissingBoot,
    /// A Cloud Hypervisor `topology=` value that is not four numbers.
    #[error(
        "invalid topology '{}': expected threads_per_core:cores_per_die:dies_per_package:packages",
        quote(.value)
    )]
    InvalidChTopology {
        /// The value as written.
        value: String,
    },
    /// An explicitly given value is zero.
    #[error("Invalid CPU topology: CPU topology parameters must be greater than zero ({param}=0)")]
    ZeroValue {
        /// The parameter given as zero.
        param: &'static str,
    },
    /// A level the x86 PC machine does not have (drawers, books, clusters) given as > 1.
    #[error("{level} > 1 not supported by this machine's CPU topology")]
    UnsupportedLevel {
        /// `drawers`, `books` or `clusters`.
        level: &'static str,
    },
    /// The levels (given and computed) do not multiply to maxcpus.
    #[error("Invalid CPU topology: product of the hierarchy must match maxcpus: {levels} != maxcpus ({max_cpus})")]
    ProductMismatch {
        /// The levels as resolved (a computed level may be 0).
        levels: SmpLevels,
        /// maxcpus as given or taken from cpus.
        max_cpus: u32,
    },
    /// More boot CPUs than slots.
    #[error("Invalid CPU topology: maxcpus must be equal to or greater than smp: {levels} == maxcpus ({max_cpus}) < smp_cpus ({cpus})")]
    MaxCpusBelowCpus {
        /// The levels as resolved.
        levels: SmpLevels,
        /// maxcpus.
        max_cpus: u32,
        /// cpus.
        cpus: u32,
    },
    /// Cloud Hypervisor: `max` below `boot`.
    #[error("max ({max}) must be greater than or equal to boot ({boot})")]
    ChMaxBelowBoot {
        /// boot vCPUs.
        boot: u32,
        /// max vCPUs.
        max: u32,
    },
    /// Cloud Hypervisor: the topology does not multiply to `max` (or `boot` without `max`).
    #[error("topology {topology} describes {product} vCPUs, but max is {max}")]
    ChTopologyMismatch {
        /// The topology as given.
        topology: ChTopology,
        /// Its product.
        product: u64,
        /// max (or boot) vCPUs.
        max: u32,
    },
    /// The packed APIC ids of this topology would not fit in 32 bits (each level takes
    /// `ceil(log2(count))` bits, so this can happen below `u32::MAX` slots).
    #[error("Invalid CPU topology: APIC ids for {levels} need {bits} bits, more than 32")]
    ApicIdTooWide {
        /// The levels.
        levels: SmpLevels,
        /// Bits the packed APIC id needs.
        bits: u32,
    },
    /// The package (socket) id would start at APIC-id bit 32: CPUID leaves 0xB/0x1F give
    /// that shift in `EAX[4:0]`, which holds at most 31.
    #[error("Invalid CPU topology: the package id for {levels} would start at APIC id bit {shift}, but CPUID can describe at most 31")]
    PackageShiftTooLarge {
        /// The levels.
        levels: SmpLevels,
        /// Bits below the package id.
        shift: u32,
    },
    /// The resolved values were rejected by [`CpuTopology::new`](crate::topology::CpuTopology::new) (not expected to happen:
    /// the checks above cover its invariant).
    #[error("building the CPU topology failed")]
    Topology(#[source] TopologyError),
}

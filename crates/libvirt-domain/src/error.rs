//! Why a domain definition was refused. Every message is one line and names the element
//! (as a path from `<domain>`) and, where there is one, the attribute.

use cpu_topology::CpuSetError;
use thiserror::Error;

/// Why a libvirt domain definition was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    /// The text is not well-formed XML.
    #[error("domain XML does not parse: {0}")]
    Xml(#[source] roxmltree::Error),
    /// The root element is not `<domain>`.
    #[error("the root element is <{0}>, expected <domain>")]
    NotADomain(String),
    /// A required element or attribute is absent.
    #[error("<{element}>: {what} is missing")]
    Missing {
        /// Path of the element.
        element: String,
        /// `attribute 'x'` or `element <x>`.
        what: String,
    },
    /// A value the grammar does not allow.
    #[error("<{element}> {attribute}='{value}': expected {expected}")]
    Invalid {
        /// Path of the element.
        element: String,
        /// The attribute, or `text` for the element's content.
        attribute: String,
        /// The value as written.
        value: String,
        /// What the grammar wants.
        expected: &'static str,
    },
    /// A memory `unit=` libvirt does not know.
    #[error("<{element}> unit='{unit}': unknown unit (expected b, bytes, KB, k, KiB, MB, M, MiB, GB, G, GiB, TB, T, TiB, PB, P, PiB, EB, E, EiB)")]
    UnknownUnit {
        /// Path of the element.
        element: String,
        /// The unit as written.
        unit: String,
    },
    /// A size that does not fit in 64 bits of bytes.
    #[error("<{element}>: size {value} {unit} is too large")]
    SizeOverflow {
        /// Path of the element.
        element: String,
        /// The number.
        value: u64,
        /// The unit.
        unit: String,
    },
    /// A CPU or node list that does not parse.
    #[error("<{element}> {attribute}='{value}': {source}")]
    CpuSet {
        /// Path of the element.
        element: String,
        /// The attribute.
        attribute: &'static str,
        /// The list as written.
        value: String,
        /// The grammar error.
        #[source]
        source: Box<CpuSetError>,
    },
    /// A vCPU index at or above `<vcpu>`'s count.
    #[error("<{element}> {attribute}: vCPU {vcpu} does not exist (the domain has {count} vCPUs, 0-{last})", last = count.saturating_sub(1))]
    NoSuchVcpu {
        /// Path of the element.
        element: String,
        /// The attribute naming the vCPU.
        attribute: &'static str,
        /// The vCPU index.
        vcpu: u32,
        /// `<vcpu>`'s count.
        count: u32,
    },
    /// The same key twice where libvirt allows it once.
    #[error("<{element}>: {what} is given more than once")]
    Duplicate {
        /// Path of the element.
        element: String,
        /// What repeats.
        what: String,
    },
    /// Values that are each valid but contradict each other.
    #[error("<{element}>: {reason}")]
    Inconsistent {
        /// Path of the element.
        element: String,
        /// What contradicts what.
        reason: String,
    },
    /// Host CPUs a pin or cpuset names that are not online on this host.
    #[error("<{element}> {attribute}: host CPU(s) {missing} are not online on this host (online: {online})")]
    BeyondHost {
        /// Path of the element.
        element: String,
        /// The attribute.
        attribute: &'static str,
        /// The CPUs that are not online, as a cpu list.
        missing: String,
        /// The host's online CPUs, as a cpu list.
        online: String,
    },
}

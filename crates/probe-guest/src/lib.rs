//! The embedded probe guest: reports each vCPU's CPUID view and runs CPL3
//! workloads.
//!
//! The guest is x86-64 machine code assembled at build time (build.rs, with
//! iced-x86) and embedded in this crate, so a VMM needs no guest files. Every
//! vCPU enters the same code directly in 64-bit mode; a control block in guest
//! memory selects the [`ProbeMode`]. Results go to a per-vCPU area of guest
//! memory and the guest signals with one port write per message (a
//! [`Doorbell`]), so the VMM pays one exit per report rather than one per byte.
//!
//! Typical use with kvm-ioctls:
//!
//! 1. [`ProbeLayout::new`] with the number of vCPU slots and the RAM size;
//! 2. [`ProbeGuest::load`] into guest memory with the CPUID queries;
//! 3. per vCPU: `set_sregs(probe.vcpu_sregs(&vcpu.get_sregs()?))`,
//!    `set_regs(probe.vcpu_regs(index)?)`, mp_state RUNNABLE;
//! 4. run; on `KVM_EXIT_IO` out decode [`Doorbell::from_port_write`]; on
//!    [`Doorbell::Report`] call [`ProbeGuest::read_report`]; after
//!    [`Doorbell::Done`] stop entering that vCPU.
//!
//! ```
//! use cpu_topology::VcpuIndex;
//! use probe_guest::{ProbeGuest, ProbeLayout, ProbeMode};
//! use vm_memory::{GuestAddress, GuestMemoryMmap};
//!
//! let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
//! let layout = ProbeLayout::new(4, 16 << 20).unwrap();
//! let probe = ProbeGuest::new(ProbeMode::Report, layout);
//! probe.load(&mem, &[(0, 0), (1, 0), (0xb, 0)], 4).unwrap();
//! let regs = probe.vcpu_regs(VcpuIndex(2)).unwrap();
//! assert_eq!(regs.rdi, 2);
//! // Before the guest ran, the report is empty.
//! assert!(probe.read_report(&mem, VcpuIndex(2)).unwrap().entries.is_empty());
//! ```
//!
//! DESIGN.md in the crate describes the memory map, register contract and
//! protocol.

#![forbid(unsafe_code)]

/// The binary interface shared by the guest code and this library: port,
/// message codes, mode codes, addresses and offsets (see DESIGN.md).
pub mod abi;
mod guest;
mod layout;

pub use abi::DOORBELL_PORT;
pub use guest::{Doorbell, ProbeCpuid, ProbeGuest, ProbeMode, ProbeReport};
pub use layout::{ProbeLayout, MAX_PROBE_END};

use cpu_topology::VcpuIndex;
use vm_memory::GuestMemoryError;
use x86_boot::long_mode::LongModeError;

/// The guest machine code, assembled by build.rs for [`abi::CODE_GPA`].
pub static PROBE_CODE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/probe_guest.bin"));

// The guest code hard-codes the selectors of x86-boot's standard GDT.
const _: () = {
    assert!(abi::SEL_KERNEL_CODE == x86_boot::gdt::KERNEL_CODE64_SELECTOR);
    assert!(abi::SEL_USER_DATA == x86_boot::gdt::USER_DATA_SELECTOR);
    assert!(abi::SEL_USER_CODE == x86_boot::gdt::USER_CODE64_SELECTOR);
};

/// Errors from laying out, loading or reading the probe guest.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// `max_vcpus` was 0.
    #[error("the probe guest needs at least one vCPU slot")]
    NoVcpus,
    /// The per-vCPU areas would reach past [`MAX_PROBE_END`].
    #[error(
        "{max_vcpus} vCPU slots put the probe's memory end at {end:#x}, above the limit {limit:#x}"
    )]
    TooManyVcpus {
        /// Requested slots.
        max_vcpus: u32,
        /// End of the last per-vCPU area.
        end: u64,
        /// [`MAX_PROBE_END`].
        limit: u64,
    },
    /// Guest RAM is too small for the layout.
    #[error(
        "the probe guest needs {needed} bytes ({} MiB) of guest RAM for {max_vcpus} vCPUs, \
         but only {ram_size} bytes ({} MiB) are configured",
        needed.div_ceil(1 << 20),
        ram_size >> 20
    )]
    RamTooSmall {
        /// Requested slots.
        max_vcpus: u32,
        /// Bytes needed from GPA 0.
        needed: u64,
        /// Bytes configured.
        ram_size: u64,
    },
    /// A vCPU index outside the layout.
    #[error("vCPU index {index} is out of range (the probe has {max_vcpus} slots)")]
    IndexOutOfRange {
        /// The index asked for.
        index: VcpuIndex,
        /// Slots in the layout.
        max_vcpus: u32,
    },
    /// More queries than a report holds.
    #[error("{count} CPUID queries exceed the probe's maximum of {max}")]
    TooManyQueries {
        /// Queries given.
        count: usize,
        /// [`abi::MAX_QUERIES`].
        max: u32,
    },
    /// Barrier participants outside `1..=max_vcpus`.
    #[error("barrier participants {participants} not in 1..={max_vcpus}")]
    BadParticipants {
        /// Participants given.
        participants: u32,
        /// Slots in the layout.
        max_vcpus: u32,
    },
    /// The bad-fetch target is backed by RAM, so the mode would not fault.
    #[error("bad-fetch target {0:#x} is guest RAM; the mode needs it unbacked")]
    BadFetchTargetIsRam(u64),
    /// The guest wrote a result count larger than the query list.
    #[error("vCPU {index} reported {count} CPUID results for {queries} queries")]
    BadReportCount {
        /// The reporting vCPU.
        index: VcpuIndex,
        /// Count found in its area.
        count: u32,
        /// Queries in the control block (capped at the maximum).
        queries: u32,
    },
    /// Writing the long-mode tables failed.
    #[error("writing the probe's GDT and page tables failed")]
    LongMode {
        /// Cause.
        #[source]
        source: LongModeError,
    },
    /// Writing guest memory failed.
    #[error("writing {len} bytes of the probe at {addr:#x} failed")]
    WriteMemory {
        /// Start address.
        addr: u64,
        /// Bytes to write.
        len: usize,
        /// Cause.
        #[source]
        source: GuestMemoryError,
    },
    /// Reading guest memory failed.
    #[error("reading probe memory at {addr:#x} failed")]
    ReadMemory {
        /// Start address.
        addr: u64,
        /// Cause.
        #[source]
        source: GuestMemoryError,
    },
}

/// The README example, compiled as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

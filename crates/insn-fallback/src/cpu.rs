//! The CPU state the core reads and writes: [`CpuState`], and the plain data it is made of.

use crate::exception::Exception;
use crate::features::Features;

/// CR0.PE: protection enabled.
pub const CR0_PE: u64 = 1 << 0;
/// CR0.MP: monitor coprocessor (WAIT/FWAIT honours CR0.TS).
pub const CR0_MP: u64 = 1 << 1;
/// CR0.EM: x87 emulation (SSE instructions raise #UD).
pub const CR0_EM: u64 = 1 << 2;
/// CR0.TS: task switched (FPU/SSE instructions raise #NM).
pub const CR0_TS: u64 = 1 << 3;
/// CR0.NE: native x87 error reporting (#MF instead of FERR#).
pub const CR0_NE: u64 = 1 << 5;
/// CR0.WP: supervisor writes honour read-only pages.
pub const CR0_WP: u64 = 1 << 16;
/// CR0.PG: paging.
pub const CR0_PG: u64 = 1 << 31;
/// CR4.LA57: five-level paging.
pub const CR4_LA57: u64 = 1 << 12;
/// CR4.OSFXSR: the OS supports FXSAVE/FXRSTOR (SSE instructions allowed).
pub const CR4_OSFXSR: u64 = 1 << 9;
/// CR4.OSXSAVE: XGETBV/XSETBV and XCR0 enabled.
pub const CR4_OSXSAVE: u64 = 1 << 18;
/// CR4.SMAP: supervisor-mode access prevention.
pub const CR4_SMAP: u64 = 1 << 21;

/// RFLAGS.CF.
pub const CF: u64 = 1 << 0;
/// RFLAGS.PF.
pub const PF: u64 = 1 << 2;
/// RFLAGS.AF.
pub const AF: u64 = 1 << 4;
/// RFLAGS.ZF.
pub const ZF: u64 = 1 << 6;
/// RFLAGS.SF.
pub const SF: u64 = 1 << 7;
/// RFLAGS.TF: single-step.
pub const TF: u64 = 1 << 8;
/// RFLAGS.OF.
pub const OF: u64 = 1 << 11;
/// RFLAGS.RF: resume flag (cleared when an instruction completes).
pub const RF: u64 = 1 << 16;
/// RFLAGS.VM: virtual-8086 mode.
pub const VM: u64 = 1 << 17;
/// RFLAGS.AC: alignment check / SMAP override.
pub const AC: u64 = 1 << 18;

/// The six arithmetic status flags.
pub const STATUS_FLAGS: u64 = CF | PF | AF | ZF | SF | OF;

/// Execution mode, from CR0.PE, EFER.LMA and the code segment's L and D bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CpuMode {
    /// Real-address mode (16-bit, segment base = selector * 16).
    Real,
    /// Protected mode or compatibility mode with a 16-bit code segment.
    Protected16,
    /// Protected mode or compatibility mode with a 32-bit code segment.
    Protected32,
    /// 64-bit mode (EFER.LMA and CS.L).
    Long64,
}

impl CpuMode {
    /// Default operand and address size in bits: what the decoder needs.
    pub fn bitness(self) -> u32 {
        match self {
            CpuMode::Real | CpuMode::Protected16 => 16,
            CpuMode::Protected32 => 32,
            CpuMode::Long64 => 64,
        }
    }
}

/// A segment register, for the base of a memory operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Segment {
    /// ES.
    Es,
    /// CS.
    Cs,
    /// SS.
    Ss,
    /// DS.
    Ds,
    /// FS.
    Fs,
    /// GS.
    Gs,
}

/// The x87/SSE state the core touches: the legacy region of the XSAVE area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimdState {
    /// x87 control word.
    pub fcw: u16,
    /// x87 status word (bit 7, ES: an unmasked exception is pending).
    pub fsw: u16,
    /// MXCSR.
    pub mxcsr: u32,
    /// MXCSR_MASK: the MXCSR bits this CPU implements (FXSAVE byte 28; 0 means 0xffbf).
    pub mxcsr_mask: u32,
    /// XMM0..XMM15, little-endian lanes.
    pub xmm: [u128; 16],
}

impl Default for SimdState {
    /// The state after FNINIT and reset of MXCSR: FCW 0x37f, MXCSR 0x1f80, zeroed registers.
    fn default() -> Self {
        SimdState {
            fcw: 0x37f,
            fsw: 0,
            mxcsr: 0x1f80,
            mxcsr_mask: 0xffff,
            xmm: [0; 16],
        }
    }
}

/// A failure of the backend behind a [`CpuState`] (an ioctl, guest memory outside RAM):
/// the instruction cannot be completed and the VM stops.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct StateError {
    what: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StateError {
    /// A failure described by `what`, without an underlying error.
    pub fn new(what: impl Into<String>) -> Self {
        StateError {
            what: what.into(),
            source: None,
        }
    }

    /// A failure described by `what`, caused by `source`.
    pub fn with_source(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StateError {
            what: what.into(),
            source: Some(Box::new(source)),
        }
    }
}

/// Why a guest memory access did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The guest takes an exception (#PF with its error code and CR2, #GP for a
    /// non-canonical address): the instruction faults.
    #[error("the access raises {0}")]
    Fault(Exception),
    /// The backend could not do the access (e.g. the page is MMIO): the VM stops.
    #[error(transparent)]
    State(#[from] StateError),
}

/// What a data access is, for the page-protection checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessKind {
    /// A data read.
    Read,
    /// A data write.
    Write,
}

/// The architectural state of one vCPU as the instruction completion sees it.
///
/// Registers read at the start (GPRs, RIP, RFLAGS, control registers, segment bases) are
/// plain getters; the x87/SSE state and XCR0 cost an ioctl each on KVM, so they are fetched
/// on first use and may fail. Writes to registers are buffered by the implementation and
/// committed only when the instruction completed (the core never leaves an instruction half
/// done: it checks every fault before it changes anything but memory, and it writes memory
/// last). Memory is addressed by linear (guest-virtual) address; the implementation
/// translates it under the guest's paging and reports a fault as [`AccessError::Fault`].
pub trait CpuState {
    /// The execution mode.
    fn mode(&self) -> CpuMode;
    /// Current privilege level (0..=3).
    fn cpl(&self) -> u8;
    /// CR0.
    fn cr0(&self) -> u64;
    /// CR4.
    fn cr4(&self) -> u64;
    /// The guest's CPUID feature bits.
    fn features(&self) -> &Features;
    /// General-purpose register `index` (0 = RAX .. 15 = R15), all 64 bits.
    fn gpr(&self, index: usize) -> u64;
    /// Sets general-purpose register `index` (all 64 bits).
    fn set_gpr(&mut self, index: usize, value: u64);
    /// RIP.
    fn rip(&self) -> u64;
    /// Sets RIP.
    fn set_rip(&mut self, value: u64);
    /// RFLAGS.
    fn rflags(&self) -> u64;
    /// Sets RFLAGS.
    fn set_rflags(&mut self, value: u64);
    /// The base address of a segment (in 64-bit mode only FS and GS have one).
    fn segment_base(&self, segment: Segment) -> u64;
    /// The x87/SSE state, for reading.
    fn simd(&mut self) -> Result<&SimdState, StateError>;
    /// The x87/SSE state, for writing (marks it to be written back).
    fn simd_mut(&mut self) -> Result<&mut SimdState, StateError>;
    /// XCR0.
    fn xcr0(&mut self) -> Result<u64, StateError>;
    /// XINUSE: the state components not in their initial configuration (XGETBV with
    /// ECX = 1 returns `XCR0 & XINUSE`).
    fn xinuse(&mut self) -> Result<u64, StateError>;
    /// Reads `buf.len()` bytes at linear address `addr`.
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), AccessError>;
    /// Writes `data` at linear address `addr`; all or nothing.
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), AccessError>;
}

//! User-space completion of KVM emulation failures: the KVM side of `insn-fallback`.
//!
//! When KVM_RUN returns KVM_EXIT_INTERNAL_ERROR with suberror 1 (the in-kernel emulator
//! gave up), the run loop calls [`Fallback::complete`] on the vCPU thread, still on the
//! cold path. It reads the vCPU's state (KVM_GET_REGS, KVM_GET_SREGS; KVM_GET_XSAVE and
//! KVM_GET_XCRS only for instructions that need them), fetches the instruction's bytes
//! from guest memory through the guest's own page tables (or takes KVM's copy of them),
//! lets `insn_fallback::complete` decide, and then commits: the changed registers, the
//! x87/SSE state (through XSAVE, with the SSE bit set in XSTATE_BV so a register file in
//! its init state takes the new values), and the vCPU events: the #UD that KVM queued when
//! it gave up is dropped, and the exception the instruction raises, if any, is injected.
//! The port-I/O and MMIO exits never come here.

use std::fmt;
use std::str::FromStr;

use guest_memory::walk::{walk, PagingMode, WalkError};
use insn_fallback::paging::{self, PagePermissions, PfCode};
use insn_fallback::{
    complete, AccessError, AccessKind, Completion, CpuMode, CpuState, Exception, Features, Outcome,
    Segment, SimdState, StateError, Unsupported, Vector, CR0_PE, CR0_PG, CR4_LA57,
};
use kvm_bindings::{
    kvm_regs, kvm_sregs, kvm_xsave, KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES,
};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::sys;

/// Whether KVM emulation failures are completed in user space (the default) or stop the VM.
///
/// Parses from and displays as `on` / `off` (the VMM's `--emulation-fallback` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EmulationFallback {
    /// Complete the listed instructions (see `insn_fallback::InsnClass`); stop on others.
    #[default]
    On,
    /// Every emulation failure stops the VM.
    Off,
}

impl fmt::Display for EmulationFallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EmulationFallback::On => "on",
            EmulationFallback::Off => "off",
        })
    }
}

/// A value other than `on` and `off`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid emulation fallback {0:?}: expected \"on\" or \"off\"")]
pub struct ParseEmulationFallbackError(String);

impl FromStr for EmulationFallback {
    type Err = ParseEmulationFallbackError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "on" => Ok(EmulationFallback::On),
            "off" => Ok(EmulationFallback::Off),
            other => Err(ParseEmulationFallbackError(other.to_string())),
        }
    }
}

/// Why the emulation fallback left an instruction to the VM stop (not on its list, with its
/// bytes, or a failed ioctl). The text sits behind one thin pointer so that
/// [`crate::StopReason`] (and every error that carries one) stays small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackDeclined(Box<DeclinedText>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct DeclinedText(String);

impl FallbackDeclined {
    /// A reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Self(Box::new(DeclinedText(reason.into())))
    }

    /// The reason.
    pub fn reason(&self) -> &str {
        &self.0 .0
    }
}

impl fmt::Display for FallbackDeclined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// Largest x86 instruction.
const MAX_INSN: usize = 15;
const PAGE: u64 = 4096;
/// Byte offsets in the XSAVE area's legacy region (Intel SDM Vol. 1, 10.5.1).
const FCW: usize = 0;
const FSW: usize = 2;
const MXCSR: usize = 24;
const MXCSR_MASK: usize = 28;
const XMM0: usize = 160;
const XSTATE_BV: usize = 512;
/// XSTATE_BV bits of the x87 and SSE components.
const XSTATE_X87_SSE: u64 = 0b11;

/// The per-vCPU fallback: guest memory to read instructions and operands from, and the
/// vCPU's CPUID features (read with KVM_GET_CPUID2 at the first failure).
#[derive(Debug)]
pub(crate) struct Fallback {
    mem: Option<GuestMemoryMmap>,
    features: Option<Features>,
}

impl Fallback {
    pub(crate) fn new(mem: Option<GuestMemoryMmap>) -> Self {
        Fallback {
            mem,
            features: None,
        }
    }

    /// Completes the instruction KVM failed to emulate. `data` is
    /// `kvm_run.internal.data[..ndata]` (it may carry KVM's copy of the instruction bytes).
    pub(crate) fn complete(
        &mut self,
        fd: &VcpuFd,
        data: &[u64],
    ) -> Result<Completion, FallbackError> {
        let features = match self.features {
            Some(f) => f,
            None => {
                let f = guest_features(fd)?;
                self.features = Some(f);
                f
            }
        };
        let regs = fd
            .get_regs()
            .map_err(|e| FallbackError::Ioctl("KVM_GET_REGS", e))?;
        let sregs = fd
            .get_sregs()
            .map_err(|e| FallbackError::Ioctl("KVM_GET_SREGS", e))?;
        let mut cpu = KvmCpu::new(fd, self.mem.as_ref(), features, regs, sregs);
        let bytes = match cpu.fetch() {
            Some(b) if !b.is_empty() => b,
            _ => kvm_insn_bytes(data).ok_or(FallbackError::NoBytes)?,
        };
        let done = complete(&mut cpu, &bytes).map_err(FallbackError::Unsupported)?;
        cpu.commit(done.outcome)?;
        Ok(done)
    }
}

/// Why an emulation failure was not completed; the VM stops with this text.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FallbackError {
    #[error("ioctl {0} failed")]
    Ioctl(&'static str, #[source] vmm_sys_util::errno::Error),
    #[error("the instruction bytes at RIP could not be read (no guest memory attached, page not mapped) and KVM did not report them")]
    NoBytes,
    #[error(transparent)]
    Unsupported(Unsupported),
}

/// The guest's CPUID feature bits from the vCPU's CPUID table.
fn guest_features(fd: &VcpuFd) -> Result<Features, FallbackError> {
    let cpuid = fd
        .get_cpuid2(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .map_err(|e| FallbackError::Ioctl("KVM_GET_CPUID2", e))?;
    let entries = cpuid.as_slice();
    Ok(Features::from_cpuid(|function, index| {
        entries
            .iter()
            .find(|e| {
                e.function == function
                    && (e.index == index
                        || e.flags & kvm_bindings::KVM_CPUID_FLAG_SIGNIFCANT_INDEX == 0)
            })
            .map(|e| [e.eax, e.ebx, e.ecx, e.edx])
    }))
}

/// KVM's copy of the instruction bytes (KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES):
/// `data[0]` holds the flags, then one byte of length and 15 bytes of instruction.
fn kvm_insn_bytes(data: &[u64]) -> Option<Vec<u8>> {
    let flags = *data.first()?;
    if flags & u64::from(KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) == 0 {
        return None;
    }
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&data.get(1)?.to_le_bytes());
    raw[8..].copy_from_slice(&data.get(2)?.to_le_bytes());
    let len = usize::from(raw[0]).min(MAX_INSN);
    Some(raw[1..=len].to_vec())
}

/// The vCPU state as `insn_fallback` sees it, read from KVM and written back on commit.
struct KvmCpu<'a> {
    fd: &'a VcpuFd,
    mem: Option<&'a GuestMemoryMmap>,
    features: Features,
    regs: kvm_regs,
    sregs: kvm_sregs,
    regs_dirty: bool,
    xsave: Option<(Box<kvm_xsave>, SimdState)>,
    simd_dirty: bool,
}

impl<'a> KvmCpu<'a> {
    fn new(
        fd: &'a VcpuFd,
        mem: Option<&'a GuestMemoryMmap>,
        features: Features,
        regs: kvm_regs,
        sregs: kvm_sregs,
    ) -> Self {
        KvmCpu {
            fd,
            mem,
            features,
            regs,
            sregs,
            regs_dirty: false,
            xsave: None,
            simd_dirty: false,
        }
    }

    /// Up to 15 bytes at CS:RIP, stopping where the guest's mapping ends.
    fn fetch(&self) -> Option<Vec<u8>> {
        let mem = self.mem?;
        let mut la = if self.mode() == CpuMode::Long64 {
            self.regs.rip
        } else {
            self.sregs.cs.base.wrapping_add(self.regs.rip) & 0xffff_ffff
        };
        let mut out = Vec::with_capacity(MAX_INSN);
        while out.len() < MAX_INSN {
            let Ok(gpa) = self.translate(la, None) else {
                break;
            };
            let chunk = (MAX_INSN - out.len()).min((PAGE - la % PAGE) as usize);
            let mut buf = [0u8; MAX_INSN];
            if mem
                .read_slice(&mut buf[..chunk], GuestAddress(gpa))
                .is_err()
            {
                break;
            }
            out.extend_from_slice(&buf[..chunk]);
            la = la.wrapping_add(chunk as u64);
        }
        Some(out)
    }

    /// The guest-physical address of linear address `la`. With `access`, the page must
    /// allow it (U/S, R/W with CR0.WP, SMAP): a violation is the #PF the CPU would raise.
    fn translate(&self, la: u64, access: Option<AccessKind>) -> Result<u64, AccessError> {
        let cr0 = self.sregs.cr0;
        if cr0 & CR0_PG == 0 {
            return Ok(la);
        }
        let kind = access.unwrap_or(AccessKind::Read);
        let cpl = self.cpl();
        if self.sregs.efer & EFER_LMA == 0 {
            // 32-bit and PAE paging: KVM_TRANSLATE (presence only; no permission checks).
            let t = self
                .fd
                .translate_gva(la)
                .map_err(|e| StateError::with_source("ioctl KVM_TRANSLATE failed", e))?;
            if t.valid == 0 {
                return Err(AccessError::Fault(Exception::page_fault(
                    la,
                    PfCode::not_present(kind, cpl),
                )));
            }
            return Ok(t.physical_address);
        }
        let mem = self.mem.ok_or_else(no_memory)?;
        let mode = PagingMode {
            cr3: self.sregs.cr3,
            la57: self.sregs.cr4 & CR4_LA57 != 0,
        };
        match walk(mem, mode, la) {
            Ok(t) => {
                if access.is_some() {
                    let perms = PagePermissions {
                        writable: t.flags.writable,
                        user: t.flags.user,
                    };
                    paging::check(perms, kind, cpl, cr0, self.sregs.cr4, self.regs.rflags)
                        .map_err(|code| AccessError::Fault(Exception::page_fault(la, code)))?;
                }
                Ok(t.gpa.0)
            }
            Err(WalkError::NotPresent { .. }) => Err(AccessError::Fault(Exception::page_fault(
                la,
                PfCode::not_present(kind, cpl),
            ))),
            Err(WalkError::ReservedBits { .. }) => Err(AccessError::Fault(Exception::page_fault(
                la,
                PfCode::PRESENT | PfCode::RESERVED | PfCode::not_present(kind, cpl),
            ))),
            Err(WalkError::NonCanonical { .. }) => Err(AccessError::Fault(Exception::GP0)),
            Err(e @ WalkError::TableOutsideRam { .. }) => {
                Err(StateError::with_source("walking the guest page tables failed", e).into())
            }
        }
    }

    /// Splits `[la, la + len)` at page boundaries and translates every piece first, so a
    /// fault on the second page leaves the first untouched.
    fn pieces(
        &self,
        la: u64,
        len: usize,
        kind: AccessKind,
    ) -> Result<Vec<(u64, usize)>, AccessError> {
        let mut out = Vec::with_capacity(2);
        let mut done = 0;
        while done < len {
            let at = la.wrapping_add(done as u64);
            let chunk = (len - done).min((PAGE - at % PAGE) as usize);
            out.push((self.translate(at, Some(kind))?, chunk));
            done += chunk;
        }
        Ok(out)
    }

    fn load_xsave(&mut self) -> Result<&mut (Box<kvm_xsave>, SimdState), StateError> {
        if self.xsave.is_none() {
            let xsave = self
                .fd
                .get_xsave()
                .map_err(|e| StateError::with_source("ioctl KVM_GET_XSAVE failed", e))?;
            let simd = simd_from_xsave(&xsave);
            self.xsave = Some((Box::new(xsave), simd));
        }
        Ok(self.xsave.as_mut().expect("loaded above"))
    }

    /// Writes back what the instruction changed and delivers its exception.
    fn commit(&mut self, outcome: Outcome) -> Result<(), FallbackError> {
        if self.regs_dirty {
            self.fd
                .set_regs(&self.regs)
                .map_err(|e| FallbackError::Ioctl("KVM_SET_REGS", e))?;
        }
        if self.simd_dirty {
            if let Some((xsave, simd)) = self.xsave.as_mut() {
                simd_into_xsave(simd, xsave);
                sys::set_xsave(self.fd, xsave)
                    .map_err(|e| FallbackError::Ioctl("KVM_SET_XSAVE", e))?;
            }
        }
        let mut events = self
            .fd
            .get_vcpu_events()
            .map_err(|e| FallbackError::Ioctl("KVM_GET_VCPU_EVENTS", e))?;
        // At CPL0 KVM queues #UD before it reports the failure: the instruction completed
        // here, so that #UD must not reach the guest.
        if events.exception.nr == Vector::InvalidOpcode.number() {
            events.exception.injected = 0;
            events.exception.pending = 0;
        }
        events.exception_has_payload = 0;
        if let Outcome::Exception(e) = outcome {
            if let Some(cr2) = e.cr2 {
                self.sregs.cr2 = cr2;
                self.fd
                    .set_sregs(&self.sregs)
                    .map_err(|e| FallbackError::Ioctl("KVM_SET_SREGS", e))?;
            }
            events.exception.injected = 1;
            events.exception.pending = 0;
            events.exception.nr = e.vector.number();
            events.exception.has_error_code = u8::from(e.error_code.is_some());
            events.exception.error_code = e.error_code.unwrap_or(0);
        }
        if outcome == Outcome::Retired
            || matches!(outcome, Outcome::Exception(e) if e.vector.is_trap())
        {
            // The instruction after STI or MOV SS has run: its interrupt shadow is over.
            events.interrupt.shadow = 0;
        }
        self.fd
            .set_vcpu_events(&events)
            .map_err(|e| FallbackError::Ioctl("KVM_SET_VCPU_EVENTS", e))
    }
}

const EFER_LMA: u64 = 1 << 10;

fn no_memory() -> StateError {
    StateError::new("no guest memory attached to the vCPU context (VcpuContext::with_guest_memory)")
}

fn simd_from_xsave(xsave: &kvm_xsave) -> SimdState {
    let bytes = |at: usize, n: usize| -> Vec<u8> {
        (at..at + n)
            .map(|i| (xsave.region[i / 4] >> ((i % 4) * 8)) as u8)
            .collect()
    };
    let u16_at = |at| u16::from_le_bytes(bytes(at, 2).try_into().expect("2 bytes"));
    let u32_at = |at| u32::from_le_bytes(bytes(at, 4).try_into().expect("4 bytes"));
    SimdState {
        fcw: u16_at(FCW),
        fsw: u16_at(FSW),
        mxcsr: u32_at(MXCSR),
        mxcsr_mask: u32_at(MXCSR_MASK),
        xmm: std::array::from_fn(|i| {
            u128::from_le_bytes(bytes(XMM0 + 16 * i, 16).try_into().expect("16 bytes"))
        }),
    }
}

fn simd_into_xsave(simd: &SimdState, xsave: &mut kvm_xsave) {
    let mut put = |at: usize, data: &[u8]| {
        for (k, b) in data.iter().enumerate() {
            let i = at + k;
            let shift = (i % 4) * 8;
            let word = &mut xsave.region[i / 4];
            *word = (*word & !(0xff << shift)) | (u32::from(*b) << shift);
        }
    };
    put(MXCSR, &simd.mxcsr.to_le_bytes());
    for (i, x) in simd.xmm.iter().enumerate() {
        put(XMM0 + 16 * i, &x.to_le_bytes());
    }
    let bv =
        u64::from(xsave.region[XSTATE_BV / 4]) | (u64::from(xsave.region[XSTATE_BV / 4 + 1]) << 32);
    let bv = bv | XSTATE_X87_SSE;
    xsave.region[XSTATE_BV / 4] = bv as u32;
    xsave.region[XSTATE_BV / 4 + 1] = (bv >> 32) as u32;
}

impl CpuState for KvmCpu<'_> {
    fn mode(&self) -> CpuMode {
        if self.sregs.cr0 & CR0_PE == 0 {
            CpuMode::Real
        } else if self.sregs.efer & EFER_LMA != 0 && self.sregs.cs.l != 0 {
            CpuMode::Long64
        } else if self.sregs.cs.db != 0 {
            CpuMode::Protected32
        } else {
            CpuMode::Protected16
        }
    }

    fn cpl(&self) -> u8 {
        if self.sregs.cr0 & CR0_PE == 0 {
            0
        } else {
            self.sregs.ss.dpl & 3
        }
    }

    fn cr0(&self) -> u64 {
        self.sregs.cr0
    }

    fn cr4(&self) -> u64 {
        self.sregs.cr4
    }

    fn features(&self) -> &Features {
        &self.features
    }

    fn gpr(&self, index: usize) -> u64 {
        let r = &self.regs;
        [
            r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11,
            r.r12, r.r13, r.r14, r.r15,
        ][index & 15]
    }

    fn set_gpr(&mut self, index: usize, value: u64) {
        let r = &mut self.regs;
        let slot = match index & 15 {
            0 => &mut r.rax,
            1 => &mut r.rcx,
            2 => &mut r.rdx,
            3 => &mut r.rbx,
            4 => &mut r.rsp,
            5 => &mut r.rbp,
            6 => &mut r.rsi,
            7 => &mut r.rdi,
            8 => &mut r.r8,
            9 => &mut r.r9,
            10 => &mut r.r10,
            11 => &mut r.r11,
            12 => &mut r.r12,
            13 => &mut r.r13,
            14 => &mut r.r14,
            _ => &mut r.r15,
        };
        *slot = value;
        self.regs_dirty = true;
    }

    fn rip(&self) -> u64 {
        self.regs.rip
    }

    fn set_rip(&mut self, value: u64) {
        self.regs.rip = value;
        self.regs_dirty = true;
    }

    fn rflags(&self) -> u64 {
        self.regs.rflags
    }

    fn set_rflags(&mut self, value: u64) {
        self.regs.rflags = value;
        self.regs_dirty = true;
    }

    fn segment_base(&self, segment: Segment) -> u64 {
        let s = &self.sregs;
        match segment {
            Segment::Es => s.es.base,
            Segment::Cs => s.cs.base,
            Segment::Ss => s.ss.base,
            Segment::Ds => s.ds.base,
            Segment::Fs => s.fs.base,
            Segment::Gs => s.gs.base,
        }
    }

    fn simd(&mut self) -> Result<&SimdState, StateError> {
        Ok(&self.load_xsave()?.1)
    }

    fn simd_mut(&mut self) -> Result<&mut SimdState, StateError> {
        self.simd_dirty = true;
        Ok(&mut self.load_xsave()?.1)
    }

    fn xcr0(&mut self) -> Result<u64, StateError> {
        let xcrs = self
            .fd
            .get_xcrs()
            .map_err(|e| StateError::with_source("ioctl KVM_GET_XCRS failed", e))?;
        let n = (xcrs.nr_xcrs as usize).min(xcrs.xcrs.len());
        xcrs.xcrs[..n]
            .iter()
            .find(|x| x.xcr == 0)
            .map(|x| x.value)
            .ok_or_else(|| StateError::new("KVM_GET_XCRS did not report XCR0"))
    }

    fn xinuse(&mut self) -> Result<u64, StateError> {
        let (xsave, _) = self.load_xsave()?;
        Ok(u64::from(xsave.region[XSTATE_BV / 4])
            | (u64::from(xsave.region[XSTATE_BV / 4 + 1]) << 32))
    }

    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), AccessError> {
        let mem = self.mem.ok_or_else(no_memory)?;
        let mut at = 0;
        for (gpa, len) in self.pieces(addr, buf.len(), AccessKind::Read)? {
            mem.read_slice(&mut buf[at..at + len], GuestAddress(gpa))
                .map_err(|e| {
                    StateError::with_source(
                        format!("reading guest-physical {gpa:#x} (not RAM?)"),
                        e,
                    )
                })?;
            at += len;
        }
        Ok(())
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), AccessError> {
        let mem = self.mem.ok_or_else(no_memory)?;
        let pieces = self.pieces(addr, data.len(), AccessKind::Write)?;
        // Every piece must be RAM before anything is written.
        for &(gpa, len) in &pieces {
            if !vm_memory::GuestMemory::check_range(
                mem,
                GuestAddress(gpa),
                len,
                vm_memory::Permissions::Write,
            ) {
                return Err(StateError::new(format!(
                    "guest-physical {gpa:#x} is not RAM (MMIO operand)"
                ))
                .into());
            }
        }
        let mut at = 0;
        for (gpa, len) in pieces {
            mem.write_slice(&data[at..at + len], GuestAddress(gpa))
                .map_err(|e| {
                    StateError::with_source(format!("writing guest-physical {gpa:#x}"), e)
                })?;
            at += len;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulation_fallback_parses_on_and_off() {
        assert_eq!("on".parse(), Ok(EmulationFallback::On));
        assert_eq!("off".parse(), Ok(EmulationFallback::Off));
        assert_eq!(EmulationFallback::default(), EmulationFallback::On);
        let err = "yes".parse::<EmulationFallback>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid emulation fallback \"yes\": expected \"on\" or \"off\""
        );
        assert_eq!(EmulationFallback::Off.to_string(), "off");
    }

    #[test]
    fn kvm_instruction_bytes_are_taken_from_the_internal_error_data() {
        // flags = 1, then length 3 and 0f 01 d0 (xgetbv), padded with 0x90.
        let word1 = u64::from_le_bytes([3, 0x0f, 0x01, 0xd0, 0x90, 0x90, 0x90, 0x90]);
        assert_eq!(
            kvm_insn_bytes(&[1, word1, 0x9090_9090_9090_9090]),
            Some(vec![0x0f, 0x01, 0xd0])
        );
        assert_eq!(kvm_insn_bytes(&[0, word1, 0]), None, "flag clear: no bytes");
        assert_eq!(kvm_insn_bytes(&[1]), None, "truncated data");
    }

    #[test]
    fn xsave_legacy_region_round_trip_sets_sse_in_xstate_bv() {
        let mut xsave = kvm_xsave::default();
        xsave.region[MXCSR / 4] = 0x1f80;
        xsave.region[MXCSR_MASK / 4] = 0xffff;
        xsave.region[0] = 0x0000_037f; // FCW 0x37f, FSW 0
        let mut simd = simd_from_xsave(&xsave);
        assert_eq!(
            (simd.fcw, simd.fsw, simd.mxcsr, simd.mxcsr_mask),
            (0x37f, 0, 0x1f80, 0xffff)
        );
        simd.xmm[15] = 0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10;
        simd.mxcsr = 0x9fc0;
        simd_into_xsave(&simd, &mut xsave);
        assert_eq!(simd_from_xsave(&xsave), simd);
        assert_eq!(xsave.region[XSTATE_BV / 4] & 0b11, 0b11);
        assert_eq!(xsave.region[(XMM0 + 15 * 16) / 4], 0x0d0e_0f10);
    }
}

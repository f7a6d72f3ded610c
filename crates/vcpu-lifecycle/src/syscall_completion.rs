//! Completing the 64-bit SYSCALLs that a software KVM backend leaves half done: the KVM
//! side of `insn_fallback::syscall`.
//!
//! On such a backend a `syscall` from CPL3 sets RCX, R11, RFLAGS and RIP = LSTAR but keeps
//! CS/SS at CPL3, so the fetch at LSTAR raises #PF, delivered to the guest's #PF handler at
//! CPL0. No exit reaches the VMM, and hardware breakpoints do not fire at CPL3 there; they
//! do at CPL0. So, once the guest has an IDT and LSTAR, this module puts a hardware execute
//! breakpoint (KVM_SET_GUEST_DEBUG, KVM_GUESTDBG_USE_HW_BP, DR0) on the #PF handler. At a
//! KVM_EXIT_DEBUG there it reads the exception frame from the guest stack and, for a
//! half-done SYSCALL, loads the state SYSCALL should have produced (the #PF frame is
//! dropped); for any other page fault it single-steps one instruction (RF does not
//! suppress a host breakpoint on that backend) and re-arms.
//!
//! All of it runs on the vCPU thread's cold path: arming is checked on cold exits
//! (emulation failures, interruptions), the debug exits are "other" exits. The port-I/O and
//! MMIO exits never come here.

use std::fmt;
use std::str::FromStr;

use insn_fallback::syscall::{
    check_page_fault, idt_gate_target, CompletedSyscall, FlatSegment, PageFaultFrame, SyscallCheck,
    SyscallMsrs, MSR_FMASK, MSR_LSTAR, MSR_STAR,
};
use kvm_bindings::{
    kvm_guest_debug, kvm_msr_entry, kvm_segment, Msrs, KVM_GUESTDBG_ENABLE,
    KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_HW_BP,
};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Whether the vCPU completes SYSCALLs that KVM left at CPL3 (default: off).
///
/// Parses from and displays as `on` / `off` (the VMM's `--syscall-completion` values).
/// With it on, the run loop owns guest debugging (KVM_SET_GUEST_DEBUG): the guest's own
/// hardware breakpoints and a debugger attached through KVM cannot be used at the same
/// time. Every guest page fault then costs two extra exits (the breakpoint and a single
/// step), every SYSCALL one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SyscallCompletion {
    /// Complete half-done SYSCALLs (needed for Linux user space on a software KVM backend
    /// whose SYSCALL stays at CPL3).
    On,
    /// Leave SYSCALL to KVM.
    #[default]
    Off,
}

impl fmt::Display for SyscallCompletion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SyscallCompletion::On => "on",
            SyscallCompletion::Off => "off",
        })
    }
}

/// A value other than `on` and `off`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid syscall completion {0:?}: expected \"on\" or \"off\"")]
pub struct ParseSyscallCompletionError(String);

impl FromStr for SyscallCompletion {
    type Err = ParseSyscallCompletionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "on" => Ok(SyscallCompletion::On),
            "off" => Ok(SyscallCompletion::Off),
            other => Err(ParseSyscallCompletionError(other.to_string())),
        }
    }
}

/// A failed step of the completion; it stops the VM (the breakpoint cannot be left in an
/// unknown state).
#[derive(Debug, thiserror::Error)]
pub(crate) enum CompletionError {
    /// An ioctl failed.
    #[error("{0} failed")]
    Ioctl(&'static str, #[source] vmm_sys_util::errno::Error),
    /// KVM_GET_MSRS returned fewer entries than asked.
    #[error("KVM_GET_MSRS read {0} of the 3 SYSCALL MSRs")]
    Msrs(usize),
    /// A KVM_EXIT_DEBUG the completion did not cause.
    #[error("KVM_EXIT_DEBUG at {rip:#x}, the breakpoint is at {armed:?}")]
    Stray {
        /// Guest RIP.
        rip: u64,
        /// The armed address.
        armed: Option<u64>,
    },
    /// The #PF frame on the guest stack could not be read.
    #[error("reading the page-fault frame at {0:#x} failed")]
    Frame(u64),
}

/// What a debug exit turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DebugOutcome {
    /// A half-done SYSCALL, now completed.
    Completed,
    /// Another page fault: the handler's first instruction is being single-stepped.
    Stepping,
    /// The single step is done; the breakpoint is armed again.
    Rearmed,
}

/// DR7: L0 enabled, RW0 = 00 (execute), LEN0 = 00.
const DR7_L0_EXECUTE: u64 = 1;
const PF_VECTOR: u64 = 14;
const IDT_GATE: u64 = 16;
const EFER_LMA: u64 = 1 << 10;
/// Once armed, the #PF handler and LSTAR are read again every this many cold exits (a
/// kernel that moves its handler or entry point after boot gets the breakpoint moved).
const RECHECK_EVERY: u32 = 64;

/// The per-vCPU completion state.
#[derive(Debug)]
pub(crate) struct SyscallCompleter {
    mem: GuestMemoryMmap,
    /// Address of the guest's #PF handler carrying the breakpoint.
    armed_at: Option<u64>,
    /// A single step over the handler's first instruction is under way.
    stepping: bool,
    /// Cold exits since the last check.
    cold_exits: u32,
}

impl SyscallCompleter {
    pub(crate) fn new(mem: GuestMemoryMmap) -> Self {
        SyscallCompleter {
            mem,
            armed_at: None,
            stepping: false,
            cold_exits: 0,
        }
    }

    /// Called on cold exits: arms the breakpoint once the guest is in long mode with an
    /// IDT #PF gate and LSTAR set, and moves it if the handler moved. An ioctl failure is
    /// reported; the next cold exit tries again.
    pub(crate) fn poll(&mut self, fd: &VcpuFd) -> Result<(), CompletionError> {
        if self.stepping {
            return Ok(());
        }
        if self.armed_at.is_some() {
            self.cold_exits += 1;
            if self.cold_exits < RECHECK_EVERY {
                return Ok(());
            }
        }
        self.cold_exits = 0;
        let Some(handler) = self.pf_handler(fd)? else {
            return Ok(());
        };
        if self.armed_at != Some(handler) && read_msrs(fd)?.lstar != 0 {
            arm(fd, handler)?;
            log::debug!("syscall completion: breakpoint on the #PF handler at {handler:#x}");
            self.armed_at = Some(handler);
        }
        Ok(())
    }

    /// Handles a KVM_EXIT_DEBUG.
    pub(crate) fn on_debug(&mut self, fd: &VcpuFd) -> Result<DebugOutcome, CompletionError> {
        let armed = self.armed_at;
        if self.stepping {
            self.stepping = false;
            if let Some(handler) = armed {
                arm(fd, handler)?;
            }
            return Ok(DebugOutcome::Rearmed);
        }
        let mut regs = fd
            .get_regs()
            .map_err(|e| CompletionError::Ioctl("KVM_GET_REGS", e))?;
        if armed != Some(regs.rip) {
            return Err(CompletionError::Stray {
                rip: regs.rip,
                armed,
            });
        }
        let mut sregs = fd
            .get_sregs()
            .map_err(|e| CompletionError::Ioctl("KVM_GET_SREGS", e))?;
        let frame = self
            .read_frame(fd, regs.rsp)
            .ok_or(CompletionError::Frame(regs.rsp))?;
        let msrs = read_msrs(fd)?;
        match check_page_fault(&frame, sregs.cr2, regs.r11, &msrs) {
            SyscallCheck::HalfDone(done) => {
                apply(&mut regs, &mut sregs, &done);
                fd.set_sregs(&sregs)
                    .map_err(|e| CompletionError::Ioctl("KVM_SET_SREGS", e))?;
                fd.set_regs(&regs)
                    .map_err(|e| CompletionError::Ioctl("KVM_SET_REGS", e))?;
                Ok(DebugOutcome::Completed)
            }
            SyscallCheck::NotASyscall => {
                set_debug(fd, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP, None)?;
                self.stepping = true;
                Ok(DebugOutcome::Stepping)
            }
        }
    }

    /// The handler of the guest's IDT gate 14, if the guest is in long mode with one.
    fn pf_handler(&self, fd: &VcpuFd) -> Result<Option<u64>, CompletionError> {
        let sregs = fd
            .get_sregs()
            .map_err(|e| CompletionError::Ioctl("KVM_GET_SREGS", e))?;
        let gate_end = (PF_VECTOR + 1) * IDT_GATE - 1;
        if sregs.efer & EFER_LMA == 0 || u64::from(sregs.idt.limit) < gate_end {
            return Ok(None);
        }
        let mut gate = [0u8; IDT_GATE as usize];
        if !self.read_linear(fd, sregs.idt.base + PF_VECTOR * IDT_GATE, &mut gate) {
            return Ok(None);
        }
        Ok(idt_gate_target(&gate))
    }

    /// The #PF frame (error code, RIP, CS, RFLAGS, RSP, SS) at `rsp`.
    fn read_frame(&self, fd: &VcpuFd, rsp: u64) -> Option<PageFaultFrame> {
        let mut bytes = [0u8; 48];
        if !self.read_linear(fd, rsp, &mut bytes) {
            return None;
        }
        let slot = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            u64::from_le_bytes(b)
        };
        Some(PageFaultFrame::from_slots(std::array::from_fn(slot)))
    }

    /// Reads `buf.len()` bytes at a guest linear address through the vCPU's paging
    /// (KVM_TRANSLATE per page).
    fn read_linear(&self, fd: &VcpuFd, gva: u64, buf: &mut [u8]) -> bool {
        let mut done = 0;
        while done < buf.len() {
            let addr = gva.wrapping_add(done as u64);
            let in_page = (4096 - (addr & 0xfff)) as usize;
            let n = in_page.min(buf.len() - done);
            let Ok(t) = fd.translate_gva(addr) else {
                return false;
            };
            if t.valid == 0
                || self
                    .mem
                    .read_slice(&mut buf[done..done + n], GuestAddress(t.physical_address))
                    .is_err()
            {
                return false;
            }
            done += n;
        }
        true
    }
}

/// Loads the completed SYSCALL into the register sets.
fn apply(
    regs: &mut kvm_bindings::kvm_regs,
    sregs: &mut kvm_bindings::kvm_sregs,
    done: &CompletedSyscall,
) {
    sregs.cs = kvm_segment_of(&done.cs);
    sregs.ss = kvm_segment_of(&done.ss);
    regs.rip = done.rip;
    regs.rsp = done.rsp;
    regs.rflags = done.rflags;
}

fn kvm_segment_of(s: &FlatSegment) -> kvm_segment {
    kvm_segment {
        base: s.base,
        limit: s.byte_limit(),
        selector: s.selector,
        type_: s.type_,
        present: u8::from(s.present),
        dpl: s.dpl,
        db: u8::from(s.db),
        s: u8::from(s.s),
        l: u8::from(s.long_mode),
        g: u8::from(s.granularity),
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

fn arm(fd: &VcpuFd, handler: u64) -> Result<(), CompletionError> {
    set_debug(
        fd,
        KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP,
        Some(handler),
    )
}

fn set_debug(fd: &VcpuFd, control: u32, breakpoint: Option<u64>) -> Result<(), CompletionError> {
    let mut dbg = kvm_guest_debug {
        control,
        ..Default::default()
    };
    if let Some(addr) = breakpoint {
        dbg.arch.debugreg[0] = addr;
        dbg.arch.debugreg[7] = DR7_L0_EXECUTE;
    }
    fd.set_guest_debug(&dbg)
        .map_err(|e| CompletionError::Ioctl("KVM_SET_GUEST_DEBUG", e))
}

fn read_msrs(fd: &VcpuFd) -> Result<SyscallMsrs, CompletionError> {
    let entry = |index| kvm_msr_entry {
        index,
        ..Default::default()
    };
    let mut msrs = Msrs::from_entries(&[entry(MSR_STAR), entry(MSR_LSTAR), entry(MSR_FMASK)])
        .map_err(|_| CompletionError::Msrs(0))?;
    let n = fd
        .get_msrs(&mut msrs)
        .map_err(|e| CompletionError::Ioctl("KVM_GET_MSRS", e))?;
    match msrs.as_slice() {
        [star, lstar, fmask] if n == 3 => Ok(SyscallMsrs {
            star: star.data,
            lstar: lstar.data,
            fmask: fmask.data,
        }),
        _ => Err(CompletionError::Msrs(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_on_and_off() {
        for v in [SyscallCompletion::On, SyscallCompletion::Off] {
            assert_eq!(v.to_string().parse::<SyscallCompletion>(), Ok(v));
        }
        assert_eq!(SyscallCompletion::default(), SyscallCompletion::Off);
        assert!("yes".parse::<SyscallCompletion>().is_err());
    }

    #[test]
    fn kvm_segments_are_flat_dpl0() {
        let regs_before = kvm_bindings::kvm_regs::default();
        let mut regs = regs_before;
        let mut sregs = kvm_bindings::kvm_sregs::default();
        let frame = PageFaultFrame::from_slots([0x15, 0x1000, 0x33, 0x46, 0x8000, 0x2b]);
        let msrs = SyscallMsrs {
            star: (0x23 << 48) | (0x10 << 32),
            lstar: 0x1000,
            fmask: 0x4_7700,
        };
        let SyscallCheck::HalfDone(done) = check_page_fault(&frame, 0x1000, 0x246, &msrs) else {
            panic!("not taken for a SYSCALL");
        };
        apply(&mut regs, &mut sregs, &done);
        assert_eq!(
            (
                sregs.cs.selector,
                sregs.cs.limit,
                sregs.cs.l,
                sregs.cs.db,
                sregs.cs.dpl
            ),
            (0x10, 0xffff_ffff, 1, 0, 0)
        );
        assert_eq!(
            (
                sregs.ss.selector,
                sregs.ss.type_,
                sregs.ss.db,
                sregs.ss.present
            ),
            (0x18, 3, 1, 1)
        );
        assert_eq!((regs.rip, regs.rsp, regs.rflags), (0x1000, 0x8000, 0x46));
        assert_eq!((regs.rcx, regs.r11), (regs_before.rcx, regs_before.r11));
    }
}

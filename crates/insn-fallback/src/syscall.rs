//! Recognising a 64-bit SYSCALL that the KVM backend left half done, and the state that
//! completes it.
//!
//! Some software KVM backends execute a 64-bit `syscall` from CPL3 only in part: RCX, R11,
//! RFLAGS (masked with IA32_FMASK) and RIP (= IA32_LSTAR) are set, but CS and SS keep
//! their CPL3 selectors. The fetch at LSTAR (a supervisor page) then raises #PF, which the
//! backend delivers to the guest's #PF handler at CPL0. A VMM that stops the vCPU at that
//! handler (a hardware breakpoint) reads the exception frame from the guest stack and asks
//! [`check_page_fault`] whether this fault is such a half-done SYSCALL. If so, the answer
//! is the architectural result of SYSCALL (Intel SDM Vol. 2B, SYSCALL; AMD APM Vol. 3):
//! CS = STAR\[47:32\] & 0xfffc as a flat 64-bit DPL0 code segment, SS = CS + 8 as a flat
//! DPL0 data segment, RIP = LSTAR, RFLAGS masked, and RSP still the user's (SYSCALL does
//! not switch stacks). The #PF frame is discarded. RCX and R11 were already set by the
//! backend and are left alone.
//!
//! ```
//! use insn_fallback::syscall::{check_page_fault, PageFaultFrame, SyscallCheck, SyscallMsrs};
//!
//! let msrs = SyscallMsrs {
//!     star: (0x23 << 48) | (0x10 << 32),
//!     lstar: 0xffff_ffff_81c0_0080,
//!     fmask: 0x4_7700, // AC, NT, IOPL, DF, IF, TF: Linux's mask
//! };
//! // The user's RFLAGS were 0x246; the backend masked them to 0x46.
//! let frame = PageFaultFrame {
//!     error_code: 0x15, // present, user, instruction fetch
//!     rip: msrs.lstar,
//!     cs: 0x33,
//!     rflags: 0x46,
//!     rsp: 0x7ffc_0000,
//!     ss: 0x2b,
//! };
//! let SyscallCheck::HalfDone(done) = check_page_fault(&frame, msrs.lstar, 0x246, &msrs) else {
//!     panic!("a half-done SYSCALL");
//! };
//! assert_eq!((done.cs.selector, done.ss.selector), (0x10, 0x18));
//! assert_eq!((done.rip, done.rsp, done.rflags), (msrs.lstar, 0x7ffc_0000, 0x46));
//! assert!(done.cs.long_mode && done.cs.dpl == 0);
//! ```

/// IA32_STAR: SYSCALL's CS in bits 47:32, SYSRET's base selector in bits 63:48.
pub const MSR_STAR: u32 = 0xc000_0081;
/// IA32_LSTAR: the 64-bit SYSCALL entry point.
pub const MSR_LSTAR: u32 = 0xc000_0082;
/// IA32_FMASK (SFMASK): the RFLAGS bits SYSCALL clears.
pub const MSR_FMASK: u32 = 0xc000_0084;

/// #PF error code bits (Intel SDM Vol. 3A, 4.7).
const PF_WRITE: u64 = 1 << 1;
const PF_USER: u64 = 1 << 2;
const PF_RSVD: u64 = 1 << 3;
/// RFLAGS.RF (resume flag).
const RF: u64 = 1 << 16;

/// The 64-bit exception frame a #PF pushes on the handler's stack, lowest address first:
/// error code, then the interrupted RIP, CS, RFLAGS, RSP and SS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageFaultFrame {
    /// The #PF error code.
    pub error_code: u64,
    /// RIP of the faulting instruction.
    pub rip: u64,
    /// CS selector at the fault (the low 16 bits of the slot).
    pub cs: u64,
    /// RFLAGS at the fault.
    pub rflags: u64,
    /// RSP at the fault.
    pub rsp: u64,
    /// SS selector at the fault.
    pub ss: u64,
}

impl PageFaultFrame {
    /// The frame from its six stack slots, in stack order.
    pub fn from_slots(slots: [u64; 6]) -> Self {
        let [error_code, rip, cs, rflags, rsp, ss] = slots;
        PageFaultFrame {
            error_code,
            rip,
            cs,
            rflags,
            rsp,
            ss,
        }
    }
}

/// The guest's SYSCALL MSRs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyscallMsrs {
    /// IA32_STAR.
    pub star: u64,
    /// IA32_LSTAR.
    pub lstar: u64,
    /// IA32_FMASK.
    pub fmask: u64,
}

/// A segment register as SYSCALL loads it: the selector and the fixed descriptor cache
/// values (no GDT read happens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlatSegment {
    /// Selector (RPL 0).
    pub selector: u16,
    /// Base address: 0.
    pub base: u64,
    /// The descriptor's 20-bit limit field: 0xfffff (4 GiB with G = 1).
    pub limit: u32,
    /// Descriptor type: 0xb (execute/read, accessed) for CS, 0x3 (read/write, accessed)
    /// for SS.
    pub type_: u8,
    /// Code or data descriptor (S = 1).
    pub s: bool,
    /// Descriptor privilege level: 0.
    pub dpl: u8,
    /// Present.
    pub present: bool,
    /// 64-bit code segment (CS only).
    pub long_mode: bool,
    /// D/B: 0 for the 64-bit CS, 1 for SS.
    pub db: bool,
    /// Granularity: 4 KiB units.
    pub granularity: bool,
}

impl FlatSegment {
    /// The limit in bytes (what KVM's `kvm_segment.limit` holds): 0xffff_ffff.
    pub fn byte_limit(&self) -> u32 {
        if self.granularity {
            (self.limit << 12) | 0xfff
        } else {
            self.limit
        }
    }

    fn flat(selector: u16, type_: u8, long_mode: bool, db: bool) -> Self {
        FlatSegment {
            selector,
            base: 0,
            limit: 0xf_ffff,
            type_,
            s: true,
            dpl: 0,
            present: true,
            long_mode,
            db,
            granularity: true,
        }
    }
}

/// The state that completes a half-done SYSCALL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedSyscall {
    /// The new CS: flat 64-bit code, DPL 0.
    pub cs: FlatSegment,
    /// The new SS: flat data, DPL 0.
    pub ss: FlatSegment,
    /// RIP: IA32_LSTAR.
    pub rip: u64,
    /// RSP: the user's, from the #PF frame.
    pub rsp: u64,
    /// RFLAGS: the frame's, masked with IA32_FMASK, RF clear.
    pub rflags: u64,
}

/// What [`check_page_fault`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyscallCheck {
    /// The fault is the fetch at LSTAR of a SYSCALL that stayed at CPL3: load this state
    /// and resume at LSTAR, dropping the #PF frame.
    HalfDone(CompletedSyscall),
    /// Any other page fault: let the guest's handler run.
    NotASyscall,
}

/// Decides whether a #PF is the fetch at LSTAR of a SYSCALL that the backend left at CPL3.
///
/// `frame` is the exception frame on the #PF handler's stack, `cr2` the faulting address,
/// `r11` the vCPU's R11 at the handler (SYSCALL stored the user's RFLAGS there; the #PF
/// delivery does not change it). All of these must hold:
///
/// * the fault was at LSTAR: frame RIP == CR2 == LSTAR, and LSTAR is not 0 (unset);
/// * it came from CPL3: frame CS and SS have RPL 3;
/// * it was a user-mode read or fetch, not a reserved-bit fault (error code U = 1, W = 0,
///   RSVD = 0). The instruction-fetch bit is not required: the CPU reports it only with
///   EFER.NXE or CR4.SMEP set;
/// * RFLAGS were masked: the frame's RFLAGS have no IA32_FMASK bit set, and equal R11
///   masked with IA32_FMASK (RF ignored: the fault sets it in the frame). A plain `jmp` to LSTAR from CPL3 leaves IF set
///   in the frame, so with IF in the mask (as every kernel sets it) it is not taken for a
///   SYSCALL.
pub fn check_page_fault(
    frame: &PageFaultFrame,
    cr2: u64,
    r11: u64,
    msrs: &SyscallMsrs,
) -> SyscallCheck {
    let at_lstar = msrs.lstar != 0 && frame.rip == msrs.lstar && cr2 == msrs.lstar;
    let from_cpl3 = frame.cs & 3 == 3 && frame.ss & 3 == 3;
    let user_read = frame.error_code & (PF_USER | PF_WRITE | PF_RSVD) == PF_USER;
    // The #PF delivery sets RF in the pushed image (as for every fault), so RF is left out
    // even where IA32_FMASK has it (Linux masks RF too).
    let masked =
        frame.rflags & msrs.fmask & !RF == 0 && frame.rflags & !RF == r11 & !msrs.fmask & !RF;
    if !(at_lstar && from_cpl3 && user_read && masked) {
        return SyscallCheck::NotASyscall;
    }
    let cs = ((msrs.star >> 32) & 0xfffc) as u16;
    SyscallCheck::HalfDone(CompletedSyscall {
        cs: FlatSegment::flat(cs, 0xb, true, false),
        ss: FlatSegment::flat(cs.wrapping_add(8), 0x3, false, true),
        rip: msrs.lstar,
        rsp: frame.rsp,
        rflags: frame.rflags & !msrs.fmask & !RF,
    })
}

/// The handler address of a 64-bit IDT gate (16 bytes, as in guest memory), if the gate is
/// a present interrupt or trap gate (Intel SDM Vol. 3A, 6.14.1).
pub fn idt_gate_target(gate: &[u8; 16]) -> Option<u64> {
    let present = gate[5] & 0x80 != 0;
    let gate_type = gate[5] & 0xf;
    if !present || !(gate_type == 0xe || gate_type == 0xf) {
        return None;
    }
    let word = |i: usize| u64::from(u16::from_le_bytes([gate[i], gate[i + 1]]));
    let high = u64::from(u32::from_le_bytes([gate[8], gate[9], gate[10], gate[11]]));
    Some(word(0) | (word(6) << 16) | (high << 32))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LSTAR: u64 = 0xffff_ffff_81c0_0080;
    /// Linux: TF | IF | DF | IOPL | NT | AC (and the test guest's IF | TF | DF | AC).
    const FMASK: u64 = 0x4_7700;
    const USER_RFLAGS: u64 = 0x246;
    const MASKED: u64 = 0x46;

    fn msrs() -> SyscallMsrs {
        SyscallMsrs {
            star: (0x23 << 48) | (0x10 << 32),
            lstar: LSTAR,
            fmask: FMASK,
        }
    }

    fn frame() -> PageFaultFrame {
        PageFaultFrame::from_slots([0x15, LSTAR, 0x33, MASKED, 0x7ffd_1000, 0x2b])
    }

    fn check(f: &PageFaultFrame) -> SyscallCheck {
        check_page_fault(f, LSTAR, USER_RFLAGS, &msrs())
    }

    fn done(f: &PageFaultFrame) -> CompletedSyscall {
        match check(f) {
            SyscallCheck::HalfDone(d) => d,
            SyscallCheck::NotASyscall => panic!("{f:x?} not taken for a SYSCALL"),
        }
    }

    #[test]
    fn half_done_syscall_gets_the_architectural_segments() {
        let d = done(&frame());
        let cs = d.cs;
        assert_eq!(cs.selector, 0x10);
        assert_eq!(
            (cs.base, cs.limit, cs.byte_limit()),
            (0, 0xf_ffff, 0xffff_ffff)
        );
        assert_eq!((cs.type_, cs.s, cs.dpl, cs.present), (0xb, true, 0, true));
        assert_eq!((cs.long_mode, cs.db, cs.granularity), (true, false, true));
        let ss = d.ss;
        assert_eq!(ss.selector, 0x18);
        assert_eq!(
            (ss.base, ss.limit, ss.byte_limit()),
            (0, 0xf_ffff, 0xffff_ffff)
        );
        assert_eq!((ss.type_, ss.s, ss.dpl, ss.present), (0x3, true, 0, true));
        assert_eq!((ss.long_mode, ss.db, ss.granularity), (false, true, true));
        assert_eq!((d.rip, d.rsp, d.rflags), (LSTAR, 0x7ffd_1000, MASKED));
    }

    #[test]
    fn star_rpl_bits_are_cleared() {
        let mut m = msrs();
        m.star = (0x23 << 48) | (0x13 << 32);
        let SyscallCheck::HalfDone(d) = check_page_fault(&frame(), LSTAR, USER_RFLAGS, &m) else {
            panic!("not taken");
        };
        assert_eq!((d.cs.selector, d.ss.selector), (0x10, 0x18));
    }

    #[test]
    fn fault_without_the_fetch_bit_is_a_syscall_when_nx_is_off() {
        // Error code 0x5 (present, user): no I/D bit without EFER.NXE or CR4.SMEP.
        let mut f = frame();
        f.error_code = 0x5;
        assert_eq!(done(&f).rip, LSTAR);
    }

    #[test]
    fn rf_is_cleared_and_ignored() {
        let mut f = frame();
        f.rflags |= RF;
        assert_eq!(done(&f).rflags, MASKED);
    }

    #[test]
    fn kernel_fault_at_lstar_is_not_a_syscall() {
        let mut f = frame();
        f.cs = 0x10;
        f.ss = 0x18;
        f.error_code = 0x11;
        assert_eq!(check(&f), SyscallCheck::NotASyscall);
        // CS RPL 0 alone is enough.
        let mut f = frame();
        f.cs = 0x10;
        assert_eq!(check(&f), SyscallCheck::NotASyscall);
    }

    #[test]
    fn fault_elsewhere_is_not_a_syscall() {
        let mut f = frame();
        f.rip = LSTAR + 1;
        assert_eq!(check(&f), SyscallCheck::NotASyscall);
        // Right RIP, but the fault is on a data address.
        assert_eq!(
            check_page_fault(&frame(), 0x7ffd_0ff8, USER_RFLAGS, &msrs()),
            SyscallCheck::NotASyscall
        );
    }

    #[test]
    fn write_or_reserved_bit_or_supervisor_faults_are_not_a_syscall() {
        for err in [0x17, 0x1d, 0x11, 0x1] {
            let mut f = frame();
            f.error_code = err;
            assert_eq!(check(&f), SyscallCheck::NotASyscall, "error code {err:#x}");
        }
    }

    #[test]
    fn linux_mask_with_rf_and_the_faults_rf_in_the_frame() {
        // Linux 6.1 masks CF PF AF ZF SF TF IF DF OF IOPL NT RF AC ID; the #PF frame
        // carries RF = 1 (what this host pushed for init's first `brk`).
        let m = SyscallMsrs {
            fmask: 0x25_7fd5,
            ..msrs()
        };
        let f = PageFaultFrame::from_slots([0x15, LSTAR, 0x33, 0x1_0002, 0x7fff_f498_ef60, 0x2b]);
        let SyscallCheck::HalfDone(d) = check_page_fault(&f, LSTAR, 0x246, &m) else {
            panic!("Linux's SYSCALL not recognised");
        };
        assert_eq!((d.rflags, d.rsp), (0x2, 0x7fff_f498_ef60));
        // IF set in the frame: not masked, so not a SYSCALL.
        let f = PageFaultFrame {
            rflags: 0x1_0202,
            ..f
        };
        assert_eq!(
            check_page_fault(&f, LSTAR, 0x246, &m),
            SyscallCheck::NotASyscall
        );
    }

    #[test]
    fn unmasked_rflags_mean_a_jump_not_a_syscall() {
        // `jmp` to LSTAR from CPL3: IF still set in the frame.
        let mut f = frame();
        f.rflags = USER_RFLAGS;
        assert_eq!(check(&f), SyscallCheck::NotASyscall);
    }

    #[test]
    fn r11_must_hold_the_user_rflags() {
        let f = frame();
        assert_eq!(
            check_page_fault(&f, LSTAR, USER_RFLAGS | 0x1, &msrs()),
            SyscallCheck::NotASyscall
        );
        // Bits of the mask may differ (they were cleared after R11 was written).
        assert_eq!(
            check_page_fault(&f, LSTAR, USER_RFLAGS | 0x400, &msrs()),
            SyscallCheck::HalfDone(done(&f))
        );
    }

    #[test]
    fn unset_lstar_is_never_a_syscall() {
        let m = SyscallMsrs { lstar: 0, ..msrs() };
        let f = PageFaultFrame { rip: 0, ..frame() };
        assert_eq!(
            check_page_fault(&f, 0, USER_RFLAGS, &m),
            SyscallCheck::NotASyscall
        );
    }

    #[test]
    fn idt_gate_target_joins_the_offset_fields() {
        let handler: u64 = 0xffff_ffff_81a0_1230;
        let mut gate = [0u8; 16];
        gate[0..2].copy_from_slice(&(handler as u16).to_le_bytes());
        gate[2..4].copy_from_slice(&0x10u16.to_le_bytes());
        gate[5] = 0x8e; // present, DPL 0, 64-bit interrupt gate
        gate[6..8].copy_from_slice(&((handler >> 16) as u16).to_le_bytes());
        gate[8..12].copy_from_slice(&((handler >> 32) as u32).to_le_bytes());
        assert_eq!(idt_gate_target(&gate), Some(handler));
        gate[5] = 0x8f; // trap gate
        assert_eq!(idt_gate_target(&gate), Some(handler));
        gate[5] = 0x0e; // not present
        assert_eq!(idt_gate_target(&gate), None);
        gate[5] = 0x85; // task gate: none in long mode
        assert_eq!(idt_gate_target(&gate), None);
    }
}

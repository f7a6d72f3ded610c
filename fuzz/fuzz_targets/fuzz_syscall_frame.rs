#![no_main]
//! The syscall completion's decision over guest-written data: a #PF exception frame read
//! from the guest's stack, CR2, R11 and the guest's SYSCALL MSRs (`check_page_fault`), and
//! an IDT gate read from guest memory (`idt_gate_target`). Nothing may panic; a completion
//! is only ever given for a fault at LSTAR from CPL3, and always loads flat DPL0 segments.
use insn_fallback::syscall::{
    check_page_fault, idt_gate_target, PageFaultFrame, SyscallCheck, SyscallMsrs,
};
use libfuzzer_sys::fuzz_target;

fn word(data: &[u8], i: usize) -> u64 {
    let mut b = [0u8; 8];
    for (k, v) in b.iter_mut().enumerate() {
        *v = data.get(i * 8 + k).copied().unwrap_or(0);
    }
    u64::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    let frame = PageFaultFrame {
        error_code: word(data, 0),
        rip: word(data, 1),
        cs: word(data, 2),
        rflags: word(data, 3),
        rsp: word(data, 4),
        ss: word(data, 5),
    };
    let (cr2, r11) = (word(data, 6), word(data, 7));
    let msrs = SyscallMsrs {
        star: word(data, 8),
        lstar: word(data, 9),
        fmask: word(data, 10),
    };
    if let SyscallCheck::HalfDone(done) = check_page_fault(&frame, cr2, r11, &msrs) {
        assert!(msrs.lstar != 0 && frame.rip == msrs.lstar && cr2 == msrs.lstar);
        assert_eq!(frame.cs & 3, 3);
        assert_eq!(done.rip, msrs.lstar);
        assert_eq!(done.rsp, frame.rsp);
        for seg in [done.cs, done.ss] {
            assert_eq!((seg.dpl, seg.selector & 3, seg.base), (0, 0, 0));
            assert_eq!(seg.byte_limit(), 0xffff_ffff);
        }
        assert_eq!(done.ss.selector, done.cs.selector.wrapping_add(8));
    }
    let mut gate = [0u8; 16];
    for (g, d) in gate.iter_mut().zip(data.iter().skip(88)) {
        *g = *d;
    }
    let _ = idt_gate_target(&gate);
});

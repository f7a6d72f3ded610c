//! The syscall completion on a real vCPU. A CPL3 program first touches an unmapped page
//! (a real #PF that the guest's handler fixes up), then makes three 64-bit `syscall`s; the
//! CPL0 entry at LSTAR proves its privilege with an `out` and returns with `sysretq`, the
//! third one halts the vCPU.
//!
//! This project's software KVM backend leaves each SYSCALL at CPL3: the fetch at LSTAR
//! page-faults into the guest's #PF handler, which stops the VM through port 0x12. The
//! test first runs the program with the completion off to learn which kind of host it is
//! on, then with it on: the program must then finish on any host, with three completions
//! where the host needed them and none where SYSCALL works natively. The real page fault
//! hits the breakpoint on either host and is single-stepped over.

mod common;

use common::{open_kvm, recv_events, vm_with_ram, TestBus, LONG};
use cpu_topology::VcpuIndex;
use iced_x86::code_asm::*;
use kvm_bindings::{kvm_msr_entry, Msrs, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{VcpuFd, VmFd};
use vcpu_lifecycle::{
    event_channel, ExitStats, StopReason, SyscallCompletion, VcpuContext, VcpuEvent, VmStop,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use x86_boot::gdt::{Gdt, KERNEL_CODE64_SELECTOR, USER_CODE64_SELECTOR, USER_DATA_SELECTOR};
use x86_boot::long_mode::{long_mode_sregs, LongModeLayout};

const MEM_SIZE: usize = 4 << 20;
const GDT: u64 = 0x1000;
const PML4: u64 = 0x2000;
const PDPT: u64 = 0x3000;
const PD: u64 = 0x4000;
const TSS: u64 = 0x5000;
const IDT: u64 = 0x6000;
/// CPL3 code, data and stack, in the user-accessible first 2 MiB.
const UCODE: u64 = 0x2_0000;
const UDATA: u64 = 0x3_0000;
const USTACK: u64 = 0x8_0000;
/// CPL0 code and stack, in the supervisor-only second 2 MiB.
const KENTRY: u64 = 0x20_0000;
const PF_HANDLER: u64 = 0x21_0000;
const KSTACK: u64 = 0x30_0000;
/// Not mapped (PDPT entry 1 is empty): the program's real page fault.
const UNMAPPED: u64 = 0x4000_0000;
const TSS_SELECTOR: u16 = 0x28;
const TSS_LIMIT: u64 = 0x67;

const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_FMASK: u32 = 0xc000_0084;
/// Linux 6.1's mask: CF PF AF ZF SF TF IF DF OF IOPL NT RF AC ID (RF included: the #PF
/// frame carries RF, which the completion must not take for an unmasked flag).
const FMASK: u64 = 0x25_7fd5;
/// `rax` of the SYSCALL that halts.
const EXIT: u64 = 99;

struct Guest {
    _vm: VmFd,
    mem: GuestMemoryMmap,
}

/// Writes the program: page tables, GDT with a TSS (RSP0 = KSTACK), IDT gate 14, the
/// code, the SYSCALL MSRs, and vCPU 0 at CPL3 at UCODE.
fn guest() -> (Guest, VcpuFd) {
    let kvm = open_kvm();
    let (vm, mem) = vm_with_ram(&kvm, MEM_SIZE);

    // 2 MiB pages: [0, 2 MiB) user, [2 MiB, 4 MiB) supervisor, nothing above 1 GiB.
    mem.write_obj(PDPT | 0x7, GuestAddress(PML4)).unwrap();
    mem.write_obj(PD | 0x7, GuestAddress(PDPT)).unwrap();
    mem.write_obj(0x87u64, GuestAddress(PD)).unwrap();
    mem.write_obj((1u64 << 21) | 0x83, GuestAddress(PD + 8))
        .unwrap();
    let mut gdt = Gdt::standard_64bit().to_bytes();
    let tss_low = (TSS_LIMIT & 0xffff)
        | ((TSS & 0xff_ffff) << 16)
        | (0x89u64 << 40)
        | (((TSS >> 24) & 0xff) << 56);
    gdt.extend_from_slice(&tss_low.to_le_bytes());
    gdt.extend_from_slice(&(TSS >> 32).to_le_bytes());
    mem.write_slice(&gdt, GuestAddress(GDT)).unwrap();
    mem.write_obj(KSTACK, GuestAddress(TSS + 4)).unwrap(); // RSP0
    let mut gate = [0u8; 16];
    gate[0..2].copy_from_slice(&(PF_HANDLER as u16).to_le_bytes());
    gate[2..4].copy_from_slice(&KERNEL_CODE64_SELECTOR.to_le_bytes());
    gate[5] = 0x8e; // present, DPL0, 64-bit interrupt gate
    gate[6..8].copy_from_slice(&((PF_HANDLER >> 16) as u16).to_le_bytes());
    mem.write_slice(&gate, GuestAddress(IDT + 14 * 16)).unwrap();

    // CPL3: fault on UNMAPPED (resuming at `after_fault`, CR2 in r15), then SYSCALL 12, 13
    // and EXIT, storing what comes back.
    asm_at(&mem, UCODE, |a| {
        let mut after_fault = a.create_label();
        a.lea(r14, ptr(after_fault))?;
        a.mov(rax, qword_ptr(UNMAPPED))?;
        a.set_label(&mut after_fault)?;
        a.mov(qword_ptr(UDATA), r15)?;
        a.mov(eax, 12)?;
        a.mov(rbx, 0x1111u64)?;
        a.syscall()?;
        a.mov(qword_ptr(UDATA + 8), rax)?;
        a.mov(qword_ptr(UDATA + 16), rbx)?;
        a.mov(eax, 13)?;
        a.syscall()?;
        a.mov(qword_ptr(UDATA + 24), rax)?;
        a.mov(eax, EXIT as u32)?;
        a.syscall()?;
        a.ud2()
    });
    // CPL0 at LSTAR: `out` (a #GP at CPL3), EXIT halts, else rax += 0x100 and return.
    asm_at(&mem, KENTRY, |a| {
        let mut exit = a.create_label();
        a.mov(r12, rsp)?;
        a.mov(rsp, KSTACK)?;
        a.out(0x10, al)?;
        a.cmp(rax, EXIT as i32)?;
        a.je(exit)?;
        a.add(rax, 0x100)?;
        a.mov(rbx, 0x2222u64)?;
        a.mov(rsp, r12)?;
        a.sysretq()?;
        a.set_label(&mut exit)?;
        a.out(0x11, al)
    });
    // #PF: a fetch at LSTAR is a SYSCALL left at CPL3 (stop through port 0x12); anything
    // else resumes at r14 with CR2 in r15.
    asm_at(&mem, PF_HANDLER, |a| {
        let mut resume = a.create_label();
        a.mov(r15, cr2)?;
        a.mov(rax, KENTRY)?;
        a.cmp(r15, rax)?;
        a.jne(resume)?;
        a.out(0x12, al)?;
        a.set_label(&mut resume)?;
        a.add(rsp, 8)?; // error code
        a.mov(qword_ptr(rsp), r14)?;
        a.iretq()
    });

    let fd = vm.create_vcpu(0).expect("KVM_CREATE_VCPU");
    let cpuid = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).unwrap();
    fd.set_cpuid2(&cpuid).expect("KVM_SET_CPUID2");
    let layout = LongModeLayout {
        gdt_addr: GuestAddress(GDT),
        pml4_addr: GuestAddress(PML4),
        identity_map_size: 1 << 30,
    };
    let mut s = long_mode_sregs(&fd.get_sregs().unwrap(), &layout);
    let std_gdt = Gdt::standard_64bit();
    let udata = std_gdt.segment(USER_DATA_SELECTOR).unwrap();
    s.cs = std_gdt.segment(USER_CODE64_SELECTOR).unwrap();
    (s.ss, s.ds, s.es) = (udata, udata, udata);
    s.gdt.limit = (gdt.len() - 1) as u16;
    s.idt.base = IDT;
    s.idt.limit = 32 * 16 - 1;
    s.tr.base = TSS;
    s.tr.limit = TSS_LIMIT as u32;
    s.tr.selector = TSS_SELECTOR;
    s.tr.type_ = 11; // busy 64-bit TSS
    s.tr.present = 1;
    s.tr.s = 0;
    fd.set_sregs(&s).unwrap();
    // SYSCALL: CS 0x08, SS 0x10; SYSRET base 0x10: SS 0x1b, CS 0x23.
    let star = (0x10u64 << 48) | (u64::from(KERNEL_CODE64_SELECTOR) << 32);
    let entries: Vec<_> = [(MSR_STAR, star), (MSR_LSTAR, KENTRY), (MSR_FMASK, FMASK)]
        .iter()
        .map(|&(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .collect();
    let msrs = Msrs::from_entries(&entries).unwrap();
    assert_eq!(fd.set_msrs(&msrs).expect("KVM_SET_MSRS"), 3);
    let mut regs = fd.get_regs().unwrap();
    regs.rip = UCODE;
    regs.rsp = USTACK;
    regs.rflags = 0x202;
    fd.set_regs(&regs).unwrap();
    (Guest { _vm: vm, mem }, fd)
}

fn asm_at(
    mem: &GuestMemoryMmap,
    at: u64,
    f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
) {
    let mut a = CodeAssembler::new(64).unwrap();
    f(&mut a).unwrap();
    let code = a.assemble(at).unwrap();
    mem.write_slice(&code, GuestAddress(at)).unwrap();
}

/// Runs the program to its first event; the event, the exit counters and the number of
/// `out` exits (CPL0 entries plus the halt).
fn run(completion: SyscallCompletion) -> (Guest, VcpuEvent, ExitStats, u64) {
    let (g, fd) = guest();
    let (events, rx) = event_channel(None);
    let bus = TestBus::new();
    let ctx = VcpuContext::new(bus.clone(), events)
        .unwrap()
        .with_syscall_completion(completion)
        .with_guest_memory(g.mem.clone());
    let mut handle = ctx.spawn(VcpuIndex(0), fd, None).unwrap();
    handle.start(LONG).unwrap();
    let event = recv_events(&rx, 1).remove(0);
    let stats = handle.stats();
    handle.stop(LONG).unwrap();
    (g, event, stats, bus.outs(0))
}

fn read_u64(g: &Guest, addr: u64) -> u64 {
    g.mem.read_obj(GuestAddress(addr)).unwrap()
}

/// Whether `event` is the guest's #PF handler reporting a SYSCALL left at CPL3.
fn syscall_left_at_cpl3(event: &VcpuEvent) -> bool {
    matches!(
        event,
        VcpuEvent::StopVm(VmStop { reason: StopReason::Requested(why), .. })
            if why.to_string().contains("port 0x12")
    )
}

#[test]
fn kvm_syscall_completion_runs_cpl3_syscalls_on_any_host() {
    // Off: learn what the host does with a CPL3 SYSCALL.
    let (_, event, stats, _) = run(SyscallCompletion::Off);
    let host_leaves_cpl3 = syscall_left_at_cpl3(&event);
    assert!(
        host_leaves_cpl3 || event == VcpuEvent::Halted { vcpu: VcpuIndex(0) },
        "completion off: {event}"
    );
    assert_eq!(
        (stats.debug, stats.syscall.completed),
        (0, 0),
        "off: no debug exits"
    );
    eprintln!("host leaves a CPL3 SYSCALL at CPL3: {host_leaves_cpl3}");

    // On: the program finishes on any host.
    let (g, event, stats, outs) = run(SyscallCompletion::On);
    eprintln!(
        "completion on: {event}; syscall {}, debug exits {}",
        stats.syscall, stats.debug
    );
    assert_eq!(event, VcpuEvent::Halted { vcpu: VcpuIndex(0) }, "{event}");
    assert_eq!(read_u64(&g, UDATA), UNMAPPED, "CR2 of the real page fault");
    assert_eq!(read_u64(&g, UDATA + 8), 12 + 0x100, "rax after SYSCALL 12");
    assert_eq!(read_u64(&g, UDATA + 16), 0x2222, "rbx set at CPL0");
    assert_eq!(read_u64(&g, UDATA + 24), 13 + 0x100, "rax after SYSCALL 13");
    assert_eq!(outs, 4, "three entries at CPL0 (`out`) and the halt");
    let expected = if host_leaves_cpl3 { 3 } else { 0 };
    assert_eq!(stats.syscall.completed, expected, "SYSCALLs completed");
    assert_eq!(
        stats.syscall.page_faults_stepped, 1,
        "the real #PF hits the breakpoint and is stepped over"
    );
    // Each completion is one debug exit; the stepped fault two (breakpoint, step).
    assert_eq!(stats.debug, expected + 2);
}

#[test]
fn kvm_syscall_completion_needs_guest_memory() {
    let (_g, fd) = guest();
    let (events, _rx) = event_channel(None);
    let ctx = VcpuContext::new(TestBus::new(), events)
        .unwrap()
        .with_syscall_completion(SyscallCompletion::On);
    let err = ctx.spawn(VcpuIndex(0), fd, None).unwrap_err();
    assert!(err.to_string().contains("guest memory"), "{err}");
}

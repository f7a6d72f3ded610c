//! A tiny real-mode test VM: 64 KiB of RAM at GPA 0, hand-assembled guest code, vCPUs
//! starting in 16-bit real mode with CS base 0 (no page tables, no GDT).

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use cpu_topology::VcpuIndex;
use kvm_bindings::{kvm_mp_state, kvm_userspace_memory_region, KVM_MP_STATE_RUNNABLE};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vcpu_lifecycle::{ExitAction, ExitHandler, VcpuEvent};

/// Guest programs, 16-bit real mode. Each is loaded at its own address (see `TestVm::new`).
pub mod guest {
    /// `out 0x10, al` (e6 10); `jmp $-2` back to the out (eb fc). One port exit per loop.
    pub const OUT_LOOP: &[u8] = &[0xe6, 0x10, 0xeb, 0xfc];
    /// `out 0x11, al` (e6 11): the test handler answers Halt; `hlt` (f4) is never reached.
    pub const OUT_HALT: &[u8] = &[0xe6, 0x11, 0xf4];
    /// `out 0x12, al` (e6 12): the test handler answers StopVm.
    pub const OUT_STOP: &[u8] = &[0xe6, 0x12, 0xf4];
    /// `out 0x13, al` (e6 13): the test handler blocks on a gate; `jmp` back (eb fc).
    pub const OUT_GATE_LOOP: &[u8] = &[0xe6, 0x13, 0xeb, 0xfc];
    /// `hlt` (f4): KVM_EXIT_HLT without an in-kernel irqchip.
    pub const HLT: &[u8] = &[0xf4];
    /// `hlt` (f4); `jmp $-1` back to the hlt (eb fd). With the in-kernel irqchip and IF=0
    /// the vCPU sleeps inside KVM_RUN forever; only a kick gets it out.
    pub const HLT_LOOP: &[u8] = &[0xf4, 0xeb, 0xfd];
    /// A guaranteed triple fault without any descriptor table:
    ///
    /// | bytes            | instruction        | effect                                   |
    /// |------------------|--------------------|------------------------------------------|
    /// | `0f 01 1e 00 20` | `lidt [0x2000]`    | IDTR := base 0, limit 0 (zeroed memory)  |
    /// | `0f 20 c0`       | `mov eax, cr0`     |                                          |
    /// | `0c 01`          | `or al, 1`         | CR0.PE                                   |
    /// | `0f 22 c0`       | `mov cr0, eax`     | protected mode (CS keeps its cached base)|
    /// | `0f 0b`          | `ud2`              | #UD; vector 6 is beyond the IDT limit,   |
    /// |                  |                    | so #GP, then #DF, then shutdown          |
    ///
    /// (The same `lidt`/`ud2` pair in real mode did not shut down on the development host,
    /// so the program enters protected mode first.)
    pub const TRIPLE_FAULT: &[u8] = &[
        0x0f, 0x01, 0x1e, 0x00, 0x20, // lidt [0x2000]
        0x0f, 0x20, 0xc0, // mov eax, cr0
        0x0c, 0x01, // or al, 1
        0x0f, 0x22, 0xc0, // mov cr0, eax
        0x0f, 0x0b, // ud2
    ];
    /// Offset of the `ud2` in `TRIPLE_FAULT`.
    pub const TRIPLE_FAULT_UD2: u64 = 13;
    /// `in al, 0x15` (e4 15); `jmp $-2` back to the in (eb fc). The handler hands out
    /// 1, 2, 3, ... (mod 256), so AL shows whether the last `in` completed.
    pub const IN_LOOP: &[u8] = &[0xe4, 0x15, 0xeb, 0xfc];
    /// MMIO loop above the 64 KiB of RAM (DS base 0x10000 is not backed by a slot):
    ///
    /// | offset | bytes      | instruction        |
    /// |--------|------------|--------------------|
    /// | 0      | `b8 00 10` | `mov ax, 0x1000`   |
    /// | 3      | `8e d8`    | `mov ds, ax`       |
    /// | 5      | `a2 00 00` | `mov [0], al`      | MMIO write to GPA 0x10000
    /// | 8      | `a0 00 00` | `mov al, [0]`      | MMIO read of GPA 0x10000 (1, 2, 3, ...)
    /// | 11     | `eb f8`    | `jmp` to offset 5  |
    pub const MMIO_LOOP: &[u8] = &[
        0xb8, 0x00, 0x10, 0x8e, 0xd8, 0xa2, 0x00, 0x00, 0xa0, 0x00, 0x00, 0xeb, 0xf8,
    ];
    /// Offsets in `MMIO_LOOP` where a paused vCPU may stand: at an instruction boundary
    /// inside the loop.
    pub const MMIO_LOOP_BOUNDARIES: &[u64] = &[5, 8, 11];
    /// `out 0x14, al` (e6 14): the test handler panics.
    pub const OUT_PANIC: &[u8] = &[0xe6, 0x14];
    /// `xgetbv` (0f 01 d0): KVM's instruction emulator cannot run it, so on a host that
    /// emulates real mode it ends in KVM_EXIT_INTERNAL_ERROR (suberror 1). A CPU that runs
    /// real mode natively raises #UD instead (CR4.OSXSAVE is clear), and the #UD vector of
    /// the IVT points at `OUT_STOP` (see `IVT_UD`).
    pub const XGETBV: &[u8] = &[0x0f, 0x01, 0xd0];
}

/// Real-mode IVT entry 6 (#UD) at GPA 0x18: offset 0x1200 (`out_stop`), segment 0.
pub const IVT_UD: (usize, [u8; 4]) = (6 * 4, [0x00, 0x12, 0x00, 0x00]);

/// Where each program lives in guest memory.
pub const PROGRAMS: &[(&str, u16, &[u8])] = &[
    ("out_loop", 0x1000, guest::OUT_LOOP),
    ("out_halt", 0x1100, guest::OUT_HALT),
    ("out_stop", 0x1200, guest::OUT_STOP),
    ("out_gate_loop", 0x1300, guest::OUT_GATE_LOOP),
    ("hlt", 0x1400, guest::HLT),
    ("hlt_loop", 0x1500, guest::HLT_LOOP),
    ("triple_fault", 0x1600, guest::TRIPLE_FAULT),
    ("out_panic", 0x1700, guest::OUT_PANIC),
    ("xgetbv", 0x1800, guest::XGETBV),
    ("in_loop", 0x1900, guest::IN_LOOP),
    ("mmio_loop", 0x1a00, guest::MMIO_LOOP),
];

/// Entry address of a program.
pub fn entry(name: &str) -> u16 {
    PROGRAMS
        .iter()
        .find(|p| p.0 == name)
        .map(|p| p.1)
        .expect("unknown program")
}

const MEM_SIZE: usize = 0x10000;

/// Opens /dev/kvm or fails the test with a clear message.
pub fn open_kvm() -> Kvm {
    match Kvm::new() {
        Ok(k) => k,
        Err(e) => panic!(
            "this test needs /dev/kvm, which could not be opened ({e}); \
             run it on a host with KVM and access to /dev/kvm"
        ),
    }
}

/// A VM with `size` bytes of RAM at GPA 0 in one slot; the mapping is shared with the
/// returned `GuestMemoryMmap`, which the caller keeps as long as the VM.
pub fn vm_with_ram(kvm: &Kvm, size: usize) -> (VmFd, vm_memory::GuestMemoryMmap) {
    use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
    let vm = kvm.create_vm().expect("KVM_CREATE_VM");
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), size)]).unwrap();
    let host = mem.get_host_address(GuestAddress(0)).unwrap();
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: size as u64,
        userspace_addr: host as u64,
    };
    // SAFETY: the mapping belongs to `mem`, which the caller keeps alive as long as the VM
    // (a VcpuContext given the memory holds another reference to the same regions).
    unsafe { vm.set_user_memory_region(region) }.expect("KVM_SET_USER_MEMORY_REGION");
    (vm, mem)
}

/// A VM with 64 KiB of RAM holding every program of `PROGRAMS`. The RAM is leaked on
/// purpose so it always outlives the VM.
pub struct TestVm {
    pub kvm: Kvm,
    pub vm: VmFd,
    mem: *mut libc::c_void,
    irqchip: bool,
}

impl TestVm {
    pub fn new(irqchip: bool) -> Self {
        let kvm = open_kvm();
        let vm = kvm.create_vm().expect("KVM_CREATE_VM");
        if irqchip {
            vm.create_irq_chip().expect("KVM_CREATE_IRQCHIP");
        }
        // SAFETY: fresh anonymous private mapping; the result is checked below.
        let mem = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                MEM_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(mem, libc::MAP_FAILED, "mmap of guest memory failed");
        for (_, addr, code) in PROGRAMS {
            // SAFETY: every program fits in the 64 KiB mapping at its address.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    code.as_ptr(),
                    (mem as *mut u8).add(usize::from(*addr)),
                    code.len(),
                )
            };
        }
        let (ivt_at, ivt_entry) = IVT_UD;
        // SAFETY: GPA 0x18..0x1c lies inside the mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(ivt_entry.as_ptr(), (mem as *mut u8).add(ivt_at), 4)
        };
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: MEM_SIZE as u64,
            userspace_addr: mem as u64,
        };
        // SAFETY: the mapping is valid for MEM_SIZE bytes and is never unmapped (the test
        // process leaks these 64 KiB), so it outlives the VM.
        unsafe { vm.set_user_memory_region(region) }.expect("KVM_SET_USER_MEMORY_REGION");
        TestVm {
            kvm,
            vm,
            mem,
            irqchip,
        }
    }

    /// A vCPU in real mode at `entry` (CS base 0, selector 0), runnable.
    pub fn vcpu(&self, id: u64, entry: u16) -> VcpuFd {
        let fd = self.vm.create_vcpu(id).expect("KVM_CREATE_VCPU");
        let mut sregs = fd.get_sregs().expect("KVM_GET_SREGS");
        sregs.cs.base = 0;
        sregs.cs.selector = 0;
        fd.set_sregs(&sregs).expect("KVM_SET_SREGS");
        let mut regs = fd.get_regs().expect("KVM_GET_REGS");
        regs.rip = u64::from(entry);
        regs.rflags = 0x2;
        fd.set_regs(&regs).expect("KVM_SET_REGS");
        if self.irqchip {
            // APs with an in-kernel LAPIC start waiting for INIT/SIPI; make all runnable.
            fd.set_mp_state(kvm_mp_state {
                mp_state: KVM_MP_STATE_RUNNABLE,
            })
            .expect("KVM_SET_MP_STATE");
        }
        fd
    }
}

/// A test exit handler: counts port writes per vCPU and answers by port.
///
/// * 0x10: Continue.  * 0x11: Halt.  * 0x12: StopVm.  * 0x13: wait for the gate to open.
/// * 0x14: panic.  * in 0x15 and MMIO reads of 0x10000: 1, 2, 3, ...
#[derive(Default)]
pub struct TestBus {
    out_exits: Mutex<HashMap<u32, Arc<AtomicU64>>>,
    gate: Mutex<bool>,
    gate_cv: Condvar,
    entered: Mutex<Option<Sender<VcpuIndex>>>,
    last_in: AtomicU8,
}

impl TestBus {
    pub fn new() -> Arc<Self> {
        Arc::new(TestBus::default())
    }

    /// Reports each vCPU that reaches the closed gate.
    pub fn on_gate(&self, tx: Sender<VcpuIndex>) {
        *self.entered.lock().unwrap() = Some(tx);
    }

    pub fn open_gate(&self) {
        *self.gate.lock().unwrap() = true;
        self.gate_cv.notify_all();
    }

    /// The last value handed to the guest by `in al, 0x15` or an MMIO read of 0x10000.
    pub fn last_in(&self) -> u8 {
        self.last_in.load(Ordering::SeqCst)
    }

    pub fn outs(&self, vcpu: u32) -> u64 {
        self.out_exits
            .lock()
            .unwrap()
            .get(&vcpu)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

impl ExitHandler for TestBus {
    fn io_in(&self, _: VcpuIndex, port: u16, data: &mut [u8]) -> ExitAction {
        data.fill(0);
        if port == 0x15 {
            data[0] = self.last_in.load(Ordering::SeqCst).wrapping_add(1);
            self.last_in.store(data[0], Ordering::SeqCst);
        }
        ExitAction::Continue
    }

    fn io_out(&self, vcpu: VcpuIndex, port: u16, data: &[u8]) -> ExitAction {
        self.out_exits
            .lock()
            .unwrap()
            .entry(vcpu.0)
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
        match port {
            0x11 => ExitAction::Halt,
            0x12 => ExitAction::StopVm(format!("guest wrote {:#x} to port 0x12", data[0]).into()),
            0x13 => {
                let mut open = self.gate.lock().unwrap();
                if !*open {
                    if let Some(tx) = self.entered.lock().unwrap().as_ref() {
                        let _ = tx.send(vcpu);
                    }
                }
                while !*open {
                    open = self.gate_cv.wait(open).unwrap();
                }
                ExitAction::Continue
            }
            0x14 => panic!("test bus bug on port 0x14"),
            _ => ExitAction::Continue,
        }
    }

    fn mmio_read(&self, _: VcpuIndex, addr: u64, data: &mut [u8]) -> ExitAction {
        data.fill(0xff);
        if addr == 0x10000 {
            data[0] = self.last_in.load(Ordering::SeqCst).wrapping_add(1);
            self.last_in.store(data[0], Ordering::SeqCst);
        }
        ExitAction::Continue
    }

    fn mmio_write(&self, _: VcpuIndex, _: u64, _: &[u8]) -> ExitAction {
        ExitAction::Continue
    }
}

/// Generous limit for anything that should take milliseconds (the host emulates real mode
/// and is shared with other builds).
pub const LONG: Duration = Duration::from_secs(20);

/// Waits until `cond` holds, failing the test after `LONG`.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LONG;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Receives `n` events, failing after `LONG`.
pub fn recv_events(rx: &Receiver<VcpuEvent>, n: usize) -> Vec<VcpuEvent> {
    (0..n)
        .map(|i| {
            rx.recv_timeout(LONG)
                .unwrap_or_else(|e| panic!("event {} of {n} did not arrive: {e}", i + 1))
        })
        .collect()
}

/// `comm` of a thread of this process, or `None` if the thread does not exist.
pub fn thread_comm(tid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_string())
}

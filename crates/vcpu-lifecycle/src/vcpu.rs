//! The vCPU thread: control phase (drain commands), run phase (KVM_RUN, dispatch one exit).

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::Arc;

use cpu_topology::VcpuIndex;
use kvm_ioctls::VcpuFd;

use crate::event::{EventSender, Rip, StopReason, VcpuEvent, VmStop};
use crate::fallback::{Fallback, FallbackDeclined};
use crate::handler::{ExitAction, ExitHandler};
use crate::state::{transition, VcpuCommand, VcpuState};
use crate::stats::{ExitCounters, ExitKind};
use crate::sys::{self, KickableVcpu, RunExit};
use crate::syscall_completion::{DebugOutcome, SyscallCompleter};

/// Upper bound on the extra KVM_RUN calls a pause makes to complete pending I/O. One is
/// normally enough; a `rep ins/outs` may need one per chunk. Past the bound the vCPU pauses
/// anyway (the I/O then completes on resume).
const MAX_COMPLETION_RUNS: u32 = 16;

/// State shared between a vCPU thread and its observers.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) state: AtomicU8,
    /// Host CPU the thread recorded at its last state change (`u32::MAX`: none yet).
    pub(crate) last_cpu: AtomicU32,
    /// Requests sent so far. The controller bumps it after each send and before the kick;
    /// the running vCPU compares it with its own receive count, one plain load per exit,
    /// and only touches the queue when they differ.
    pub(crate) queued: AtomicU64,
    pub(crate) counters: ExitCounters,
    /// Why the emulation fallback left the last emulation failure to a VM stop.
    declined: std::sync::Mutex<Option<FallbackDeclined>>,
}

impl Shared {
    pub(crate) fn new() -> Self {
        Shared {
            state: AtomicU8::new(VcpuState::Created.as_u8()),
            last_cpu: AtomicU32::new(u32::MAX),
            queued: AtomicU64::new(0),
            counters: ExitCounters::default(),
            declined: std::sync::Mutex::new(None),
        }
    }

    /// Records why the fallback declined (cold path, once before the VM stops).
    fn set_declined(&self, why: FallbackDeclined) {
        if let Ok(mut slot) = self.declined.lock() {
            *slot = Some(why);
        }
    }

    /// Why the emulation fallback declined the instruction the VM stopped at, if it did.
    pub(crate) fn declined(&self) -> Option<FallbackDeclined> {
        self.declined.lock().ok().and_then(|d| d.clone())
    }

    pub(crate) fn state(&self) -> VcpuState {
        VcpuState::from_u8(self.state.load(Ordering::Acquire))
    }

    fn set_state(&self, s: VcpuState) {
        self.state.store(s.as_u8(), Ordering::Release);
    }

    /// Records the host CPU the calling (vCPU) thread is on. Called at state changes, not
    /// per exit: observers read the live value from the kernel while the thread exists.
    fn note_cpu(&self) {
        self.last_cpu.store(sys::current_cpu(), Ordering::Relaxed);
    }
}

/// A closure run on the vCPU thread for [`VcpuCommand::FdAccess`].
pub(crate) type FdCall = Box<dyn FnOnce(&VcpuFd) + Send>;

/// A command with its sequence number; the reply carries the same number so a late reply to
/// a command that timed out is never taken for the reply to a later one.
pub(crate) struct Request {
    pub(crate) seq: u64,
    pub(crate) command: VcpuCommand,
    /// Set for [`VcpuCommand::FdAccess`].
    pub(crate) call: Option<FdCall>,
}

/// Reply to a [`Request`]: the state after the command, or the state that refused it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reply {
    pub(crate) seq: u64,
    pub(crate) result: Result<VcpuState, VcpuState>,
}

/// What the run phase decided. The stop reason is boxed so that `Flow` stays two words and
/// comes back in registers on every exit; only the cold paths allocate.
enum Flow {
    Continue,
    Halt,
    Stop(Box<StopReason>),
}

impl Flow {
    #[cold]
    fn stop(reason: StopReason) -> Flow {
        Flow::Stop(Box::new(reason))
    }
}

/// Why the thread leaves its loop.
enum LoopExit {
    /// A Stop command; reply after the fd is closed.
    Stop(u64),
    /// The guest or the handler stopped the VM (already reported), or the controller is gone.
    Done,
}

/// Everything the vCPU thread owns.
pub(crate) struct VcpuThread<H: ExitHandler + ?Sized> {
    pub(crate) index: VcpuIndex,
    pub(crate) vcpu: KickableVcpu,
    pub(crate) handler: Arc<H>,
    pub(crate) events: EventSender,
    pub(crate) shared: Arc<Shared>,
    pub(crate) requests: Receiver<Request>,
    pub(crate) replies: Sender<Reply>,
    /// Requests taken from `requests` so far (compared with [`Shared::queued`]).
    pub(crate) received: u64,
    /// The last exit was port I/O or MMIO: KVM completes it on the next KVM_RUN.
    pub(crate) io_pending: bool,
    /// User-space completion of emulation failures; `None` when switched off.
    pub(crate) fallback: Option<Fallback>,
    /// Completion of half-done SYSCALLs; `None` when switched off.
    pub(crate) syscall: Option<SyscallCompleter>,
}

impl<H: ExitHandler + ?Sized> VcpuThread<H> {
    fn state(&self) -> VcpuState {
        self.shared.state()
    }

    fn reply(&self, seq: u64, result: Result<VcpuState, VcpuState>) {
        // The controller may have given up on us; a lost reply is fine then.
        let _ = self.replies.send(Reply { seq, result });
    }

    /// Runs the thread to its end. After a Stop command the vCPU fd is handed back as the
    /// thread's result (the handle closes or parks it when it joins); after a guest fault
    /// or a panic it is closed here.
    pub(crate) fn run(mut self) -> Option<VcpuFd> {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.main_loop()));
        let stop_seq = match result {
            Ok(LoopExit::Stop(seq)) => Some(seq),
            Ok(LoopExit::Done) => None,
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".to_string());
                self.stop_vm(StopReason::Panicked(msg));
                None
            }
        };
        let VcpuThread {
            vcpu,
            shared,
            replies,
            ..
        } = self;
        let fd = match stop_seq {
            Some(_) => Some(vcpu.into_fd()),
            None => {
                drop(vcpu);
                None
            }
        };
        shared.note_cpu();
        shared.set_state(VcpuState::Stopped);
        if let Some(seq) = stop_seq {
            let _ = replies.send(Reply {
                seq,
                result: Ok(VcpuState::Stopped),
            });
        }
        fd
    }

    fn main_loop(&mut self) -> LoopExit {
        loop {
            // Control phase. Clear immediate_exit *before* looking for commands: a kick that
            // arrives after this store either finds its command counted in `queued` below or
            // leaves immediate_exit set so the KVM_RUN below returns at once.
            self.vcpu.set_immediate_exit(0);
            if self.state() != VcpuState::Running
                || self.shared.queued.load(Ordering::Acquire) != self.received
            {
                if let Some(exit) = self.drain_requests() {
                    return exit;
                }
                if self.state() != VcpuState::Running {
                    continue;
                }
            }
            // Run phase: state is Running.
            match self.run_once() {
                Flow::Continue => {}
                Flow::Halt => self.halt(),
                Flow::Stop(reason) => return self.stop_vm(*reason),
            }
        }
    }

    /// Applies queued commands: all of them while Running, and blocks for the next one
    /// while not. Returns once the vCPU is Running with nothing queued; `Some` ends the
    /// thread.
    #[cold]
    fn drain_requests(&mut self) -> Option<LoopExit> {
        loop {
            let request = if self.state() == VcpuState::Running {
                if self.shared.queued.load(Ordering::Acquire) == self.received {
                    return None;
                }
                match self.requests.try_recv() {
                    Ok(r) => r,
                    // Counted but not yet visible: nothing to do now; the kick that follows
                    // every send brings the vCPU back here.
                    Err(TryRecvError::Empty) => return None,
                    Err(TryRecvError::Disconnected) => return Some(self.orphaned()),
                }
            } else {
                match self.requests.recv() {
                    Ok(r) => r,
                    Err(_) => return Some(self.orphaned()),
                }
            };
            self.received += 1;
            if let Some(exit) = self.handle(request) {
                return Some(exit);
            }
        }
    }

    /// The handle was dropped without a Stop (e.g. it gave up waiting): end the thread.
    fn orphaned(&mut self) -> LoopExit {
        LoopExit::Done
    }

    fn halt(&mut self) {
        self.shared.note_cpu();
        self.shared.set_state(VcpuState::Halted);
        self.events.send(VcpuEvent::Halted { vcpu: self.index });
    }

    fn stop_vm(&mut self, reason: StopReason) -> LoopExit {
        self.shared.note_cpu();
        self.shared.set_state(VcpuState::Stopped);
        self.events.send(VcpuEvent::StopVm(VmStop {
            vcpu: self.index,
            reason,
        }));
        LoopExit::Done
    }

    /// Applies one command; `Some` ends the thread.
    fn handle(&mut self, request: Request) -> Option<LoopExit> {
        let from = self.state();
        let Some(to) = transition(from, request.command) else {
            self.reply(request.seq, Err(from));
            return None;
        };
        match (from, request.command) {
            (_, VcpuCommand::Stop) => {
                self.shared.set_state(VcpuState::Stopped);
                return Some(LoopExit::Stop(request.seq));
            }
            (_, VcpuCommand::FdAccess) => {
                if let Some(call) = request.call {
                    call(self.vcpu.fd());
                }
            }
            (VcpuState::Running, VcpuCommand::Pause) => match self.complete_pending_io() {
                Flow::Continue => self.shared.set_state(VcpuState::Paused),
                Flow::Halt => self.halt(),
                Flow::Stop(reason) => {
                    let exit = self.stop_vm(*reason);
                    self.reply(request.seq, Ok(VcpuState::Stopped));
                    return Some(exit);
                }
            },
            _ => {
                self.shared.set_state(to);
                if to == VcpuState::Running {
                    // A vCPU started or resumed with its IDT and LSTAR already set (no cold
                    // exit may come before its first SYSCALL).
                    self.poll_syscall();
                }
            }
        }
        self.shared.note_cpu();
        self.reply(request.seq, Ok(self.state()));
        None
    }

    /// Re-enters the guest with immediate_exit set so KVM finishes a pending port/MMIO
    /// instruction (registers consistent, read data consumed) without running further.
    fn complete_pending_io(&mut self) -> Flow {
        let mut runs = 0;
        while self.io_pending && runs < MAX_COMPLETION_RUNS {
            runs += 1;
            self.vcpu.set_immediate_exit(1);
            match self.run_once() {
                Flow::Continue => {}
                other => {
                    self.vcpu.set_immediate_exit(0);
                    return other;
                }
            }
        }
        self.vcpu.set_immediate_exit(0);
        Flow::Continue
    }

    /// One KVM_RUN and the dispatch of its exit. Hot path: no allocation, no logging, no
    /// system call besides KVM_RUN; anything but a handled exit goes to [`Self::slow_exit`].
    #[inline]
    fn run_once(&mut self) -> Flow {
        let index = self.index;
        let handler = &*self.handler;
        let counters = &self.shared.counters;
        // Any KVM_RUN call completes the previously pending I/O first.
        self.io_pending = false;
        let action = match self.vcpu.run() {
            Ok(RunExit::IoOut(port, data)) => {
                counters.count(ExitKind::IoOut);
                self.io_pending = true;
                handler.io_out(index, port, data)
            }
            Ok(RunExit::IoIn(port, data)) => {
                counters.count(ExitKind::IoIn);
                self.io_pending = true;
                handler.io_in(index, port, data)
            }
            Ok(RunExit::MmioRead(addr, data)) => {
                counters.count(ExitKind::MmioRead);
                self.io_pending = true;
                handler.mmio_read(index, addr, data)
            }
            Ok(RunExit::MmioWrite(addr, data)) => {
                counters.count(ExitKind::MmioWrite);
                self.io_pending = true;
                handler.mmio_write(index, addr, data)
            }
            Ok(RunExit::Hlt) => {
                counters.count(ExitKind::Hlt);
                ExitAction::Halt
            }
            Ok(RunExit::Intr) => {
                counters.count(ExitKind::Interrupted);
                ExitAction::Continue
            }
            Ok(RunExit::Shutdown) => return self.slow_exit(Outcome::TripleFault),
            Ok(RunExit::InternalError) => return self.slow_exit(Outcome::InternalError),
            Ok(RunExit::FailEntry {
                hardware_reason,
                host_cpu,
            }) => {
                return self.slow_exit(Outcome::FailEntry {
                    hardware_reason,
                    host_cpu,
                })
            }
            Ok(RunExit::Other) => return self.slow_exit(Outcome::Unexpected),
            Err(e) => return self.slow_exit(Outcome::RunFailed(e)),
        };
        match action {
            ExitAction::Continue => Flow::Continue,
            ExitAction::Halt => Flow::Halt,
            ExitAction::StopVm(why) => Flow::stop(StopReason::Requested(why.into_reason())),
        }
    }

    /// Every return of KVM_RUN that is not a handled exit: interruptions, retries and the
    /// faults that stop the VM.
    #[cold]
    #[inline(never)]
    fn slow_exit(&mut self, outcome: Outcome) -> Flow {
        let counters = &self.shared.counters;
        match outcome {
            Outcome::RunFailed(e) if e.errno() == libc::EINTR => {
                counters.count(ExitKind::Interrupted);
                self.poll_syscall();
                Flow::Continue
            }
            Outcome::RunFailed(e) if e.errno() == libc::EAGAIN => {
                counters.count(ExitKind::Retried);
                self.poll_syscall();
                Flow::Continue
            }
            Outcome::RunFailed(e) => {
                counters.count(ExitKind::Other);
                Flow::stop(StopReason::RunFailed(e))
            }
            Outcome::TripleFault => {
                counters.count(ExitKind::Shutdown);
                Flow::stop(StopReason::TripleFault { rip: self.rip() })
            }
            Outcome::InternalError => {
                counters.count(ExitKind::InternalError);
                let (suberror, data) = self.vcpu.internal_error().unwrap_or((0, Vec::new()));
                if suberror == kvm_bindings::KVM_INTERNAL_ERROR_EMULATION {
                    if let Some(fallback) = self.fallback.as_mut() {
                        match fallback.complete(self.vcpu.fd(), &data) {
                            Ok(done) => {
                                let raised =
                                    matches!(done.outcome, insn_fallback::Outcome::Exception(_));
                                counters.count_emulated(done.class, raised);
                                self.poll_syscall();
                                return Flow::Continue;
                            }
                            Err(why) => {
                                let why = FallbackDeclined::new(error_chain(&why));
                                log::warn!(
                                    "vCPU {}: emulation failure not completed in user space: {why}",
                                    self.index
                                );
                                self.shared.set_declined(why);
                            }
                        }
                    }
                }
                let rip = self.rip();
                Flow::stop(StopReason::InternalError {
                    suberror,
                    data,
                    rip,
                    code_gpa: rip.0.and_then(|rip| self.translate(rip)),
                })
            }
            Outcome::FailEntry {
                hardware_reason,
                host_cpu,
            } => {
                counters.count(ExitKind::FailEntry);
                Flow::stop(StopReason::FailEntry {
                    hardware_reason,
                    host_cpu,
                    rip: self.rip(),
                })
            }
            Outcome::Unexpected => {
                let exit_reason = self.vcpu.exit_reason();
                if exit_reason == kvm_bindings::KVM_EXIT_DEBUG {
                    if let Some(flow) = self.syscall_debug_exit() {
                        return flow;
                    }
                }
                self.shared.counters.count(ExitKind::Other);
                Flow::stop(StopReason::UnexpectedExit {
                    exit_reason,
                    name: exit_reason_name(exit_reason),
                    rip: self.rip(),
                })
            }
        }
    }

    /// On a cold exit: lets the syscall completion arm or move its breakpoint. A failure
    /// switches the completion off for this vCPU (logged once).
    fn poll_syscall(&mut self) {
        if let Some(completer) = self.syscall.as_mut() {
            if let Err(e) = completer.poll(self.vcpu.fd()) {
                log::warn!(
                    "vCPU {}: syscall completion switched off: {}",
                    self.index,
                    error_chain(&e)
                );
                self.syscall = None;
            }
        }
    }

    /// A KVM_EXIT_DEBUG with the syscall completion on: `None` when it did not cause it
    /// (the VM stops as for any unexpected exit).
    fn syscall_debug_exit(&mut self) -> Option<Flow> {
        let completer = self.syscall.as_mut()?;
        let counters = &self.shared.counters;
        counters.count_debug();
        match completer.on_debug(self.vcpu.fd()) {
            Ok(DebugOutcome::Completed) => counters.count_syscall_completed(),
            Ok(DebugOutcome::Stepping) => counters.count_page_fault_stepped(),
            Ok(DebugOutcome::Rearmed) => {}
            Err(e) => {
                log::error!(
                    "vCPU {}: syscall completion: {}",
                    self.index,
                    error_chain(&e)
                );
                return None;
            }
        }
        Some(Flow::Continue)
    }

    /// Guest RIP, read on this thread (fault path only).
    fn rip(&self) -> Rip {
        Rip(self.vcpu.fd().get_regs().ok().map(|r| r.rip))
    }

    /// The guest-physical address of `gva` under the vCPU's current paging.
    fn translate(&self, gva: u64) -> Option<u64> {
        let t = self.vcpu.fd().translate_gva(gva).ok()?;
        (t.valid != 0).then_some(t.physical_address)
    }
}

/// An error and its sources, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A KVM_RUN return that is not a handled exit, with the `kvm_run` borrow released.
enum Outcome {
    TripleFault,
    InternalError,
    FailEntry { hardware_reason: u64, host_cpu: u32 },
    Unexpected,
    RunFailed(vmm_sys_util::errno::Error),
}

/// `KVM_EXIT_*` name of an exit reason (include/uapi/linux/kvm.h).
pub(crate) fn exit_reason_name(reason: u32) -> &'static str {
    const NAMES: [&str; 42] = [
        "KVM_EXIT_UNKNOWN",
        "KVM_EXIT_EXCEPTION",
        "KVM_EXIT_IO",
        "KVM_EXIT_HYPERCALL",
        "KVM_EXIT_DEBUG",
        "KVM_EXIT_HLT",
        "KVM_EXIT_MMIO",
        "KVM_EXIT_IRQ_WINDOW_OPEN",
        "KVM_EXIT_SHUTDOWN",
        "KVM_EXIT_FAIL_ENTRY",
        "KVM_EXIT_INTR",
        "KVM_EXIT_SET_TPR",
        "KVM_EXIT_TPR_ACCESS",
        "KVM_EXIT_S390_SIEIC",
        "KVM_EXIT_S390_RESET",
        "KVM_EXIT_DCR",
        "KVM_EXIT_NMI",
        "KVM_EXIT_INTERNAL_ERROR",
        "KVM_EXIT_OSI",
        "KVM_EXIT_PAPR_HCALL",
        "KVM_EXIT_S390_UCONTROL",
        "KVM_EXIT_WATCHDOG",
        "KVM_EXIT_S390_TSCH",
        "KVM_EXIT_EPR",
        "KVM_EXIT_SYSTEM_EVENT",
        "KVM_EXIT_S390_STSI",
        "KVM_EXIT_IOAPIC_EOI",
        "KVM_EXIT_HYPERV",
        "KVM_EXIT_ARM_NISV",
        "KVM_EXIT_X86_RDMSR",
        "KVM_EXIT_X86_WRMSR",
        "KVM_EXIT_DIRTY_RING_FULL",
        "KVM_EXIT_AP_RESET_HOLD",
        "KVM_EXIT_X86_BUS_LOCK",
        "KVM_EXIT_XEN",
        "KVM_EXIT_RISCV_SBI",
        "KVM_EXIT_RISCV_CSR",
        "KVM_EXIT_NOTIFY",
        "KVM_EXIT_LOONGARCH_IOCSR",
        "KVM_EXIT_MEMORY_FAULT",
        "KVM_EXIT_TDX",
        "KVM_EXIT_ARM_SEA",
    ];
    usize::try_from(reason)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("KVM_EXIT_(unknown)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_names_match_kvm_bindings() {
        use kvm_bindings as kb;
        let rows = [
            (kb::KVM_EXIT_UNKNOWN, "KVM_EXIT_UNKNOWN"),
            (kb::KVM_EXIT_HYPERCALL, "KVM_EXIT_HYPERCALL"),
            (kb::KVM_EXIT_SHUTDOWN, "KVM_EXIT_SHUTDOWN"),
            (kb::KVM_EXIT_INTERNAL_ERROR, "KVM_EXIT_INTERNAL_ERROR"),
            (kb::KVM_EXIT_SYSTEM_EVENT, "KVM_EXIT_SYSTEM_EVENT"),
            (kb::KVM_EXIT_X86_RDMSR, "KVM_EXIT_X86_RDMSR"),
            (kb::KVM_EXIT_X86_WRMSR, "KVM_EXIT_X86_WRMSR"),
            (kb::KVM_EXIT_NOTIFY, "KVM_EXIT_NOTIFY"),
            (kb::KVM_EXIT_MEMORY_FAULT, "KVM_EXIT_MEMORY_FAULT"),
            (9999, "KVM_EXIT_(unknown)"),
        ];
        for (reason, name) in rows {
            assert_eq!(exit_reason_name(reason), name);
        }
    }
}

//! The vCPU thread: control phase (drain commands), run phase (KVM_RUN, dispatch one exit).

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::Arc;

use cpu_topology::VcpuIndex;
use kvm_ioctls::{VcpuExit, VcpuFd};

use crate::event::{EventSender, Rip, StopReason, VcpuEvent, VmStop};
use crate::handler::{ExitAction, ExitHandler};
use crate::state::{transition, VcpuCommand, VcpuState};
use crate::stats::{ExitCounters, ExitKind};
use crate::sys::{self, KickableVcpu};

/// Upper bound on the extra KVM_RUN calls a pause makes to complete pending I/O. One is
/// normally enough; a `rep ins/outs` may need one per chunk. Past the bound the vCPU pauses
/// anyway (the I/O then completes on resume).
const MAX_COMPLETION_RUNS: u32 = 16;

/// State shared between a vCPU thread and its observers.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) state: AtomicU8,
    pub(crate) last_cpu: AtomicU32,
    pub(crate) counters: ExitCounters,
}

impl Shared {
    pub(crate) fn new() -> Self {
        Shared {
            state: AtomicU8::new(VcpuState::Created.as_u8()),
            last_cpu: AtomicU32::new(u32::MAX),
            counters: ExitCounters::default(),
        }
    }

    pub(crate) fn state(&self) -> VcpuState {
        VcpuState::from_u8(self.state.load(Ordering::Acquire))
    }

    fn set_state(&self, s: VcpuState) {
        self.state.store(s.as_u8(), Ordering::Release);
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

/// What the run phase decided.
enum Flow {
    Continue,
    Halt,
    Stop(StopReason),
}

/// Why the thread leaves its loop.
enum LoopExit {
    /// A Stop command; reply after the fd is closed.
    Stop(u64),
    /// The guest or the handler stopped the VM (already reported), or the controller is gone.
    Done,
}

/// Everything the vCPU thread owns.
pub(crate) struct VcpuThread {
    pub(crate) index: VcpuIndex,
    pub(crate) vcpu: KickableVcpu,
    pub(crate) handler: Arc<dyn ExitHandler>,
    pub(crate) events: EventSender,
    pub(crate) shared: Arc<Shared>,
    pub(crate) requests: Receiver<Request>,
    pub(crate) replies: Sender<Reply>,
    /// The last exit was port I/O or MMIO: KVM completes it on the next KVM_RUN.
    pub(crate) io_pending: bool,
}

impl VcpuThread {
    fn state(&self) -> VcpuState {
        self.shared.state()
    }

    fn reply(&self, seq: u64, result: Result<VcpuState, VcpuState>) {
        // The controller may have given up on us; a lost reply is fine then.
        let _ = self.replies.send(Reply { seq, result });
    }

    /// Runs the thread to its end and closes the vCPU fd before the final Stop reply.
    pub(crate) fn run(mut self) {
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
        drop(vcpu);
        shared.set_state(VcpuState::Stopped);
        if let Some(seq) = stop_seq {
            let _ = replies.send(Reply {
                seq,
                result: Ok(VcpuState::Stopped),
            });
        }
    }

    fn main_loop(&mut self) -> LoopExit {
        loop {
            // Control phase. Clear immediate_exit *before* draining: a kick that arrives
            // after this store either finds its command in the drain below or leaves
            // immediate_exit set so the KVM_RUN below returns at once.
            self.vcpu.set_immediate_exit(0);
            loop {
                let request = if self.state() == VcpuState::Running {
                    match self.requests.try_recv() {
                        Ok(r) => r,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => return self.orphaned(),
                    }
                } else {
                    match self.requests.recv() {
                        Ok(r) => r,
                        Err(_) => return self.orphaned(),
                    }
                };
                if let Some(exit) = self.handle(request) {
                    return exit;
                }
            }
            // Run phase: state is Running.
            match self.run_once() {
                Flow::Continue => {}
                Flow::Halt => self.halt(),
                Flow::Stop(reason) => return self.stop_vm(reason),
            }
        }
    }

    /// The handle was dropped without a Stop (e.g. it gave up waiting): end the thread.
    fn orphaned(&mut self) -> LoopExit {
        LoopExit::Done
    }

    fn halt(&mut self) {
        self.shared.set_state(VcpuState::Halted);
        self.events.send(VcpuEvent::Halted { vcpu: self.index });
    }

    fn stop_vm(&mut self, reason: StopReason) -> LoopExit {
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
                    let exit = self.stop_vm(reason);
                    self.reply(request.seq, Ok(VcpuState::Stopped));
                    return Some(exit);
                }
            },
            _ => self.shared.set_state(to),
        }
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

    /// One KVM_RUN and the dispatch of its exit. Hot path: no allocation, no logging.
    fn run_once(&mut self) -> Flow {
        let index = self.index;
        let handler = &*self.handler;
        let counters = &self.shared.counters;
        // Any KVM_RUN call completes the previously pending I/O first.
        self.io_pending = false;
        let mut io = false;
        let outcome = match self.vcpu.run() {
            Ok(exit) => match exit {
                VcpuExit::IoIn(port, data) => {
                    counters.count(ExitKind::IoIn);
                    io = true;
                    Outcome::Action(handler.io_in(index, port, data))
                }
                VcpuExit::IoOut(port, data) => {
                    counters.count(ExitKind::IoOut);
                    io = true;
                    Outcome::Action(handler.io_out(index, port, data))
                }
                VcpuExit::MmioRead(addr, data) => {
                    counters.count(ExitKind::MmioRead);
                    io = true;
                    Outcome::Action(handler.mmio_read(index, addr, data))
                }
                VcpuExit::MmioWrite(addr, data) => {
                    counters.count(ExitKind::MmioWrite);
                    io = true;
                    Outcome::Action(handler.mmio_write(index, addr, data))
                }
                VcpuExit::Hlt => {
                    counters.count(ExitKind::Hlt);
                    Outcome::Action(ExitAction::Halt)
                }
                VcpuExit::Intr => {
                    counters.count(ExitKind::Interrupted);
                    Outcome::Action(ExitAction::Continue)
                }
                VcpuExit::Shutdown => {
                    counters.count(ExitKind::Shutdown);
                    Outcome::TripleFault
                }
                VcpuExit::InternalError => {
                    counters.count(ExitKind::InternalError);
                    Outcome::InternalError
                }
                VcpuExit::FailEntry(hardware_reason, host_cpu) => {
                    counters.count(ExitKind::FailEntry);
                    Outcome::FailEntry {
                        hardware_reason,
                        host_cpu,
                    }
                }
                _ => {
                    counters.count(ExitKind::Other);
                    Outcome::Unexpected
                }
            },
            Err(e) => match e.errno() {
                libc::EINTR => {
                    counters.count(ExitKind::Interrupted);
                    Outcome::Action(ExitAction::Continue)
                }
                libc::EAGAIN => {
                    counters.count(ExitKind::Retried);
                    Outcome::Action(ExitAction::Continue)
                }
                _ => {
                    counters.count(ExitKind::Other);
                    Outcome::RunFailed(e)
                }
            },
        };
        self.io_pending = io;
        self.shared
            .last_cpu
            .store(sys::current_cpu(), Ordering::Relaxed);
        match outcome {
            Outcome::Action(ExitAction::Continue) => Flow::Continue,
            Outcome::Action(ExitAction::Halt) => Flow::Halt,
            Outcome::Action(ExitAction::StopVm(why)) => Flow::Stop(StopReason::Requested(why)),
            Outcome::TripleFault => Flow::Stop(StopReason::TripleFault { rip: self.rip() }),
            Outcome::InternalError => {
                let (suberror, data) = self.vcpu.internal_error().unwrap_or((0, Vec::new()));
                Flow::Stop(StopReason::InternalError {
                    suberror,
                    data,
                    rip: self.rip(),
                })
            }
            Outcome::FailEntry {
                hardware_reason,
                host_cpu,
            } => Flow::Stop(StopReason::FailEntry {
                hardware_reason,
                host_cpu,
                rip: self.rip(),
            }),
            Outcome::Unexpected => {
                let exit_reason = self.vcpu.exit_reason();
                Flow::Stop(StopReason::UnexpectedExit {
                    exit_reason,
                    name: exit_reason_name(exit_reason),
                    rip: self.rip(),
                })
            }
            Outcome::RunFailed(e) => Flow::Stop(StopReason::RunFailed(e)),
        }
    }

    /// Guest RIP, read on this thread (fault path only).
    fn rip(&self) -> Rip {
        Rip(self.vcpu.fd().get_regs().ok().map(|r| r.rip))
    }
}

/// The exit, with the `kvm_run` borrow released.
enum Outcome {
    Action(ExitAction),
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

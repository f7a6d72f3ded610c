//! Spawning vCPU threads and controlling one of them: [`VcpuContext`], [`VcpuHandle`].

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, sync_channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cpu_topology::VcpuIndex;
use kvm_ioctls::VcpuFd;
use libc::c_int;
use vmm_sys_util::errno;
use vmm_sys_util::signal::{Killable, SIGRTMIN};

use vm_memory::GuestMemoryMmap;

use crate::event::EventSender;
use crate::fallback::{EmulationFallback, Fallback, FallbackDeclined};
use crate::handler::ExitHandler;
use crate::observer::VcpuObserver;
use crate::state::{VcpuCommand, VcpuState};
use crate::stats::ExitStats;
use crate::sys::{self, KickableVcpu};
use crate::syscall_completion::{SyscallCompleter, SyscallCompletion};
use crate::vcpu::{FdCall, Reply, Request, Shared, VcpuThread};

/// How long [`Drop`] of a handle or set waits for a vCPU to acknowledge Stop.
pub const DROP_TIMEOUT: Duration = Duration::from_secs(2);

/// How long [`VcpuContext::spawn`] waits by default for the new thread to run its hook and
/// report its thread id.
pub const DEFAULT_SPAWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Error returned by a [`PreRunHook`].
pub type HookError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Runs once on the new vCPU thread, before it reports ready and before the first KVM_RUN
/// (e.g. to set its CPU affinity). An error aborts the spawn.
pub type PreRunHook = Box<dyn FnOnce(VcpuIndex, &VcpuFd) -> Result<(), HookError> + Send>;

/// Kernel thread id (`gettid`) of a vCPU thread, as `ps -L`, `top -H` and QEMU's
/// `info cpus` (`thread_id=`) show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostTid(pub i32);

impl fmt::Display for HostTid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Errors of spawning and controlling vCPU threads.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    /// The kick signal number is not a real-time signal, or installing its handler failed.
    #[error("installing the vCPU kick handler for signal {signum} failed")]
    KickHandler {
        /// The signal.
        signum: c_int,
        /// Cause.
        #[source]
        source: errno::Error,
    },
    /// The OS refused to create the thread.
    #[error("creating the thread of vCPU {vcpu} failed")]
    SpawnThread {
        /// Which vCPU.
        vcpu: VcpuIndex,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The new thread could not unblock the kick signal.
    #[error("vCPU {vcpu}: unblocking the kick signal on the new thread failed")]
    SignalMask {
        /// Which vCPU.
        vcpu: VcpuIndex,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The pre-run hook failed on the new thread; the vCPU never ran.
    #[error("vCPU {vcpu}: pre-run hook failed")]
    Hook {
        /// Which vCPU.
        vcpu: VcpuIndex,
        /// Cause.
        #[source]
        source: HookError,
    },
    /// [`SyscallCompletion::On`] without [`VcpuContext::with_guest_memory`].
    #[error("vCPU {vcpu}: syscall completion needs the guest memory (with_guest_memory)")]
    SyscallCompletionWithoutMemory {
        /// Which vCPU.
        vcpu: VcpuIndex,
    },
    /// The new thread did not report ready in time (its hook is stuck).
    #[error("vCPU {vcpu}: thread did not report ready within {timeout:?}")]
    SpawnTimeout {
        /// Which vCPU.
        vcpu: VcpuIndex,
        /// The limit.
        timeout: Duration,
    },
    /// The vCPU did not answer a command in time (it is stuck in the exit handler or in
    /// the kernel). The command stays queued; a late reply is discarded.
    #[error("vCPU {vcpu} did not answer the {command} command within {timeout:?}")]
    Timeout {
        /// Which vCPU.
        vcpu: VcpuIndex,
        /// The command.
        command: VcpuCommand,
        /// The limit.
        timeout: Duration,
    },
    /// The command is not legal in the vCPU's current state.
    #[error("vCPU {vcpu}: {command} is not allowed in state {state}")]
    InvalidTransition {
        /// Which vCPU.
        vcpu: VcpuIndex,
        /// The command.
        command: VcpuCommand,
        /// The state that refused it.
        state: VcpuState,
    },
    /// The vCPU thread has ended (stopped, or the VM was stopped by a guest fault).
    #[error("vCPU {vcpu}: {command} failed: the vCPU is stopped")]
    Stopped {
        /// Which vCPU.
        vcpu: VcpuIndex,
        /// The command.
        command: VcpuCommand,
    },
    /// Sending the kick signal failed.
    #[error("vCPU {vcpu}: sending the kick signal failed")]
    Kick {
        /// Which vCPU.
        vcpu: VcpuIndex,
        /// Cause.
        #[source]
        source: errno::Error,
    },
    /// The thread ended on a guest fault or panic before a Stop, so its fd is closed.
    #[error("vCPU {vcpu}: its thread had already ended (guest fault); the vCPU fd is gone")]
    FdNotReturned {
        /// Which vCPU.
        vcpu: VcpuIndex,
    },
}

/// What all vCPUs of one VM share: the exit handler, the event channel and the kick signal.
///
/// `H` is the handler type. The default, `dyn ExitHandler`, suits a VMM with several kinds
/// of bus; naming the concrete type (`VcpuContext<MyBus>`) lets the compiler inline the
/// handler into the run loop (no indirect call per exit).
pub struct VcpuContext<H: ExitHandler + ?Sized = dyn ExitHandler> {
    handler: Arc<H>,
    events: EventSender,
    kick_signal: c_int,
    spawn_timeout: Duration,
    emulation_fallback: EmulationFallback,
    syscall_completion: SyscallCompletion,
    guest_memory: Option<GuestMemoryMmap>,
}

impl<H: ExitHandler + ?Sized> Clone for VcpuContext<H> {
    fn clone(&self) -> Self {
        Self {
            handler: Arc::clone(&self.handler),
            events: self.events.clone(),
            kick_signal: self.kick_signal,
            spawn_timeout: self.spawn_timeout,
            emulation_fallback: self.emulation_fallback,
            syscall_completion: self.syscall_completion,
            guest_memory: self.guest_memory.clone(),
        }
    }
}

impl<H: ExitHandler + ?Sized> fmt::Debug for VcpuContext<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VcpuContext")
            .field("events", &self.events)
            .field("kick_signal", &self.kick_signal)
            .field("spawn_timeout", &self.spawn_timeout)
            .field("emulation_fallback", &self.emulation_fallback)
            .field("syscall_completion", &self.syscall_completion)
            .field("guest_memory", &self.guest_memory.is_some())
            .finish_non_exhaustive()
    }
}

impl<H: ExitHandler + ?Sized + 'static> VcpuContext<H> {
    /// A context kicking with `SIGRTMIN()`; installs the (process-wide) kick handler.
    pub fn new(handler: Arc<H>, events: EventSender) -> Result<Self, VcpuError> {
        Self::with_kick_signal(handler, events, SIGRTMIN())
    }

    /// A context kicking with `signum`, which must be in `SIGRTMIN()..=SIGRTMAX()` and not
    /// used for anything else in the process.
    pub fn with_kick_signal(
        handler: Arc<H>,
        events: EventSender,
        signum: c_int,
    ) -> Result<Self, VcpuError> {
        sys::install_kick_handler(signum)
            .map_err(|source| VcpuError::KickHandler { signum, source })?;
        Ok(VcpuContext {
            handler,
            events,
            kick_signal: signum,
            spawn_timeout: DEFAULT_SPAWN_TIMEOUT,
            emulation_fallback: EmulationFallback::default(),
            syscall_completion: SyscallCompletion::default(),
            guest_memory: None,
        })
    }

    /// Changes how long [`VcpuContext::spawn`] waits for the new thread.
    pub fn with_spawn_timeout(mut self, timeout: Duration) -> Self {
        self.spawn_timeout = timeout;
        self
    }

    /// The kick signal number.
    pub fn kick_signal(&self) -> c_int {
        self.kick_signal
    }

    /// Switches the user-space completion of KVM emulation failures on (the default) or
    /// off for the vCPUs spawned from now on. With it off, every
    /// KVM_EXIT_INTERNAL_ERROR stops the VM ([`StopReason::InternalError`]); with it on,
    /// the instructions it does not complete do, and
    /// [`VcpuHandle::emulation_declined`] says why.
    ///
    /// [`StopReason::InternalError`]: crate::StopReason::InternalError
    pub fn with_emulation_fallback(mut self, fallback: EmulationFallback) -> Self {
        self.emulation_fallback = fallback;
        self
    }

    /// Whether emulation failures are completed in user space.
    pub fn emulation_fallback(&self) -> EmulationFallback {
        self.emulation_fallback
    }

    /// Switches the completion of half-done 64-bit SYSCALLs on or off (the default) for
    /// the vCPUs spawned from now on. A software KVM backend may leave a `syscall` from
    /// CPL3 at CPL3 (see [`SyscallCompletion`]); with this on, the vCPU thread finishes it
    /// from a hardware breakpoint on the guest's #PF handler, which makes the run loop the
    /// owner of KVM_SET_GUEST_DEBUG. Needs [`VcpuContext::with_guest_memory`] (the
    /// exception frame is read from the guest stack); [`VcpuContext::spawn`] fails without
    /// it. Completions and stepped page faults show in [`ExitStats`].
    ///
    /// [`ExitStats`]: crate::ExitStats
    pub fn with_syscall_completion(mut self, completion: SyscallCompletion) -> Self {
        self.syscall_completion = completion;
        self
    }

    /// Whether half-done SYSCALLs are completed.
    pub fn syscall_completion(&self) -> SyscallCompletion {
        self.syscall_completion
    }

    /// The guest's RAM, from which the fallback reads the failing instruction and its
    /// memory operands (walking the guest's page tables). Without it only instructions
    /// without memory operands complete, and only if KVM reports the instruction bytes.
    /// A clone is cheap (the regions are shared).
    pub fn with_guest_memory(mut self, memory: GuestMemoryMmap) -> Self {
        self.guest_memory = Some(memory);
        self
    }

    /// Starts the thread `vcpu N` for a configured vCPU fd (CPUID, registers and so on are
    /// the caller's business). The thread runs `hook` (if any), reports its thread id and
    /// waits in [`VcpuState::Created`] for [`VcpuHandle::start`]; this call returns once it
    /// did, so the thread id is known. A failing hook is returned as [`VcpuError::Hook`].
    pub fn spawn(
        &self,
        index: VcpuIndex,
        fd: VcpuFd,
        hook: Option<PreRunHook>,
    ) -> Result<VcpuHandle, VcpuError> {
        let mut handle = self.spawn_unsettled(index, fd, hook)?;
        handle.settle()?;
        Ok(handle)
    }

    /// Like [`VcpuContext::spawn`], but returns as soon as the thread has reported its
    /// thread id, while it still unblocks its kick signal and runs `hook`. The caller goes
    /// on with its own set-up meanwhile: a VM spawns all its vCPUs, builds its event loop
    /// and so on, then [`VcpuSet::start_all`](crate::VcpuSet::start_all) waits for every
    /// set-up before any vCPU enters the guest. The set-up's outcome is
    /// [`VcpuHandle::settle`]; every command waits for it first.
    pub fn spawn_unsettled(
        &self,
        index: VcpuIndex,
        fd: VcpuFd,
        hook: Option<PreRunHook>,
    ) -> Result<VcpuHandle, VcpuError> {
        let (req_tx, req_rx) = channel::<Request>();
        let (rep_tx, rep_rx) = channel::<Reply>();
        let (tid_tx, tid_rx) = sync_channel::<HostTid>(1);
        let (setup_tx, setup_rx) = sync_channel::<Result<(), VcpuError>>(1);
        let shared = Arc::new(Shared::new());
        let handler = Arc::clone(&self.handler);
        let events = self.events.clone();
        let signum = self.kick_signal;
        let thread_shared = Arc::clone(&shared);
        let fallback = match self.emulation_fallback {
            EmulationFallback::On => Some(Fallback::new(self.guest_memory.clone())),
            EmulationFallback::Off => None,
        };
        let syscall = match (self.syscall_completion, &self.guest_memory) {
            (SyscallCompletion::Off, _) => None,
            (SyscallCompletion::On, Some(mem)) => Some(SyscallCompleter::new(mem.clone())),
            (SyscallCompletion::On, None) => {
                return Err(VcpuError::SyscallCompletionWithoutMemory { vcpu: index })
            }
        };
        let thread = std::thread::Builder::new()
            .name(format!("vcpu {}", index.0))
            .spawn(move || {
                // Both channels have room for their one message: the sends never block.
                let _ = tid_tx.send(HostTid(sys::gettid()));
                let setup = sys::unblock_signal(signum)
                    .map_err(|source| VcpuError::SignalMask {
                        vcpu: index,
                        source,
                    })
                    .and_then(|()| match hook {
                        Some(hook) => hook(index, &fd).map_err(|source| VcpuError::Hook {
                            vcpu: index,
                            source,
                        }),
                        None => Ok(()),
                    });
                let failed = setup.is_err();
                if setup_tx.send(setup).is_err() || failed {
                    return None; // the handle is gone, or the set-up failed
                }
                VcpuThread {
                    index,
                    vcpu: KickableVcpu::new(fd),
                    handler,
                    events,
                    shared: thread_shared,
                    requests: req_rx,
                    replies: rep_tx,
                    received: 0,
                    io_pending: false,
                    fallback,
                    syscall,
                }
                .run()
            })
            .map_err(|source| VcpuError::SpawnThread {
                vcpu: index,
                source,
            })?;
        let tid = match tid_rx.recv_timeout(self.spawn_timeout) {
            Ok(tid) => tid,
            Err(RecvTimeoutError::Timeout) => {
                // Detach: the thread ends on its own when it finds the channels closed.
                return Err(VcpuError::SpawnTimeout {
                    vcpu: index,
                    timeout: self.spawn_timeout,
                });
            }
            Err(RecvTimeoutError::Disconnected) => {
                let _ = thread.join();
                return Err(VcpuError::Hook {
                    vcpu: index,
                    source: "the thread ended before reporting its id".into(),
                });
            }
        };
        Ok(VcpuHandle {
            view: VcpuObserver { index, tid, shared },
            requests: req_tx,
            replies: rep_rx,
            next_seq: 0,
            thread: Some(thread),
            setup: Some((setup_rx, self.spawn_timeout)),
            returned_fd: None,
            kick_signal: signum,
        })
    }
}

/// A command that was sent and not yet answered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pending {
    seq: u64,
    command: VcpuCommand,
    /// The thread was already gone when sending.
    gone: bool,
}

/// Controller of one vCPU thread: commands with replies, kick, state, statistics.
///
/// Dropping the handle stops the thread (waiting at most [`DROP_TIMEOUT`]).
#[derive(Debug)]
pub struct VcpuHandle {
    /// Index, thread id and the state shared with the thread: the read side, which a
    /// handle shares with every [`VcpuObserver`].
    view: VcpuObserver,
    requests: Sender<Request>,
    replies: Receiver<Reply>,
    next_seq: u64,
    thread: Option<JoinHandle<Option<VcpuFd>>>,
    /// The outcome of the thread's set-up and how long to wait for it, until
    /// [`VcpuHandle::settle`] has read it.
    setup: Option<(Receiver<Result<(), VcpuError>>, Duration)>,
    /// The vCPU fd the thread handed back after a Stop, until closed or taken.
    returned_fd: Option<VcpuFd>,
    kick_signal: c_int,
}

impl VcpuHandle {
    /// The vCPU index.
    pub fn index(&self) -> VcpuIndex {
        self.view.index
    }

    /// The host thread id of the vCPU thread.
    pub fn thread_id(&self) -> HostTid {
        self.view.tid
    }

    /// The current state, as last published by the vCPU thread.
    pub fn state(&self) -> VcpuState {
        self.view.state()
    }

    /// A snapshot of the exit counters.
    pub fn stats(&self) -> ExitStats {
        self.view.stats()
    }

    /// Why the emulation fallback did not complete the instruction a
    /// [`StopReason::InternalError`](crate::StopReason::InternalError) stopped at (not on its
    /// list, with the instruction's bytes; or a failed ioctl). `None` when it did not decline
    /// anything (fallback off, other stop reasons).
    pub fn emulation_declined(&self) -> Option<FallbackDeclined> {
        self.view.emulation_declined()
    }

    /// The host CPU the vCPU thread last ran on (see [`VcpuObserver::last_host_cpu`]).
    pub fn last_host_cpu(&self) -> Option<u32> {
        self.view.last_host_cpu()
    }

    /// A cheap, cloneable read-only view for other threads (a monitor, statistics).
    pub fn observer(&self) -> VcpuObserver {
        self.view.clone()
    }

    /// Makes the thread leave KVM_RUN now (it re-enters unless a command says otherwise).
    pub fn kick(&self) -> Result<(), VcpuError> {
        match &self.thread {
            Some(t) => t.kill(self.kick_signal).map_err(|source| VcpuError::Kick {
                vcpu: self.view.index,
                source,
            }),
            None => Ok(()),
        }
    }

    /// Waits for the thread's set-up (kick signal, pre-run hook) to finish, if
    /// [`VcpuContext::spawn_unsettled`] returned before it; at once otherwise. On an error
    /// the thread has ended without entering the guest: the error is returned here once,
    /// and later commands find the thread gone ([`VcpuError::Stopped`]; `stop` succeeds).
    pub fn settle(&mut self) -> Result<(), VcpuError> {
        let Some((setup, timeout)) = self.setup.take() else {
            return Ok(());
        };
        let index = self.view.index;
        match setup.recv_timeout(timeout) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.join();
                Err(e)
            }
            Err(RecvTimeoutError::Timeout) => {
                // Detach: the thread ends on its own when it finds the channels closed.
                self.thread = None;
                Err(VcpuError::SpawnTimeout {
                    vcpu: index,
                    timeout,
                })
            }
            Err(RecvTimeoutError::Disconnected) => {
                // The thread died without reporting (panicking hook).
                self.join();
                Err(VcpuError::Hook {
                    vcpu: index,
                    source: "the pre-run hook panicked".into(),
                })
            }
        }
    }

    /// Enters the guest for the first time (`Created -> Running`).
    pub fn start(&mut self, timeout: Duration) -> Result<VcpuState, VcpuError> {
        self.command(VcpuCommand::Start, timeout)
    }

    /// Leaves the guest after completing pending I/O (`Running -> Paused`).
    pub fn pause(&mut self, timeout: Duration) -> Result<VcpuState, VcpuError> {
        self.command(VcpuCommand::Pause, timeout)
    }

    /// Enters the guest again (`Paused -> Running`).
    pub fn resume(&mut self, timeout: Duration) -> Result<VcpuState, VcpuError> {
        self.command(VcpuCommand::Resume, timeout)
    }

    /// Ends the thread and closes the vCPU fd (`any -> Stopped`); idempotent. On success
    /// the thread has been joined.
    pub fn stop(&mut self, timeout: Duration) -> Result<VcpuState, VcpuError> {
        let state = self.command(VcpuCommand::Stop, timeout)?;
        self.returned_fd = None;
        Ok(state)
    }

    /// Stops the thread like [`VcpuHandle::stop`] and returns the vCPU fd instead of
    /// closing it. KVM cannot destroy a vCPU before its VM, so a VMM that unplugs a vCPU
    /// parks this fd and hands it to [`VcpuContext::spawn`] again on re-plug (after setting
    /// its registers anew).
    pub fn stop_and_take_fd(mut self, timeout: Duration) -> Result<VcpuFd, VcpuError> {
        self.command(VcpuCommand::Stop, timeout)?;
        self.returned_fd.take().ok_or(VcpuError::FdNotReturned {
            vcpu: self.view.index,
        })
    }

    /// Runs `f` with the vCPU fd on the vCPU thread and returns its result: read or set
    /// registers, LAPIC or MSRs of a vCPU that is not running (`Created`, `Paused` or
    /// `Halted`; a running vCPU gives [`VcpuError::InvalidTransition`], pause it first).
    /// `f` must not block; a panic in `f` ends the vCPU thread like a guest fault.
    pub fn with_fd<R, F>(&mut self, timeout: Duration, f: F) -> Result<R, VcpuError>
    where
        F: FnOnce(&VcpuFd) -> R + Send + 'static,
        R: Send + 'static,
    {
        let deadline = Instant::now() + timeout;
        let (tx, rx) = sync_channel(1);
        let call: FdCall = Box::new(move |fd| {
            let _ = tx.send(f(fd));
        });
        let pending = self.send(VcpuCommand::FdAccess, Some(call))?;
        self.wait(pending, deadline, timeout)?;
        // The thread ran `f` before replying, so the result is already queued.
        rx.try_recv().map_err(|_| VcpuError::Stopped {
            vcpu: self.view.index,
            command: VcpuCommand::FdAccess,
        })
    }

    /// Sends `command`, kicks, and waits for the reply.
    fn command(&mut self, command: VcpuCommand, timeout: Duration) -> Result<VcpuState, VcpuError> {
        let deadline = Instant::now() + timeout;
        let pending = self.send(command, None)?;
        self.wait(pending, deadline, timeout)
    }

    /// Enqueues `command`, then kicks (in that order: see DESIGN.md, "Kick protocol").
    pub(crate) fn send(
        &mut self,
        command: VcpuCommand,
        call: Option<FdCall>,
    ) -> Result<Pending, VcpuError> {
        if let Err(e) = self.settle() {
            // A thread that never got going is stopped already.
            if command != VcpuCommand::Stop {
                return Err(e);
            }
        }
        self.next_seq += 1;
        let seq = self.next_seq;
        let request = Request { seq, command, call };
        let gone = self.thread.is_none() || self.requests.send(request).is_err();
        if !gone {
            // Counted after the send and before the kick: a running vCPU looks at its queue
            // only when this count moved (see DESIGN.md, "Kick protocol").
            self.view.shared.queued.fetch_add(1, Ordering::Release);
        }
        if !gone && command != VcpuCommand::Start {
            match self.kick() {
                // The thread is ending on its own (guest fault); `wait` sees its channels
                // close and reports that.
                Err(VcpuError::Kick { source, .. }) if source.errno() == libc::ESRCH => {}
                other => other?,
            }
        }
        Ok(Pending { seq, command, gone })
    }

    /// Waits for the reply to `pending` until `deadline`.
    pub(crate) fn wait(
        &mut self,
        pending: Pending,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<VcpuState, VcpuError> {
        let command = pending.command;
        let result = if pending.gone {
            Err(RecvTimeoutError::Disconnected)
        } else {
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.replies.recv_timeout(left) {
                    Ok(reply) if reply.seq == pending.seq => break Ok(reply.result),
                    Ok(_) => continue, // late reply to a command that timed out earlier
                    Err(e) => break Err(e),
                }
            }
        };
        match result {
            Ok(Ok(state)) => {
                if state == VcpuState::Stopped {
                    self.join();
                }
                Ok(state)
            }
            Ok(Err(state)) => Err(VcpuError::InvalidTransition {
                vcpu: self.view.index,
                command,
                state,
            }),
            Err(RecvTimeoutError::Timeout) => Err(VcpuError::Timeout {
                vcpu: self.view.index,
                command,
                timeout,
            }),
            Err(RecvTimeoutError::Disconnected) => {
                // The thread has ended (guest fault, handler StopVm, panic or earlier stop).
                self.join();
                if command == VcpuCommand::Stop {
                    Ok(VcpuState::Stopped)
                } else {
                    Err(VcpuError::Stopped {
                        vcpu: self.view.index,
                        command,
                    })
                }
            }
        }
    }

    /// Joins the thread; only called once it has answered Stop or dropped its channels.
    fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            match t.join() {
                Ok(fd) => self.returned_fd = fd,
                Err(_) => log::warn!(
                    "vcpu-lifecycle: thread of vCPU {} panicked",
                    self.view.index
                ),
            }
        }
    }
}

impl Drop for VcpuHandle {
    fn drop(&mut self) {
        if self.thread.is_none() {
            return;
        }
        if let Err(e) = self.stop(DROP_TIMEOUT) {
            // Never block forever: leave the thread detached. It ends by itself as soon as
            // it reads its (now closed) command channel.
            log::warn!(
                "vcpu-lifecycle: dropping vCPU {}: {e}; detaching its thread",
                self.view.index
            );
        }
    }
}

//! Running a VM on one event loop: rust-vmm's `event-manager` (epoll) in the main thread.
//!
//! Event sources, all on the same epoll set:
//! - the VM's lifecycle eventfd ([`Vmm::event_fd`]): a vCPU halted or stopped the VM;
//! - a signalfd for SIGTERM, SIGINT and SIGHUP ((`TerminationSignals`));
//! - a timerfd for `--timeout` (without a monitor) and one that polls for CPUs a Linux
//!   guest ejected (with a monitor);
//! - the monitor's quit eventfd, written when a client sends `quit`.
//!
//! What ends the run ([`Outcome`]): without a monitor, the VM's end ([`Vmm::on_event`]:
//! the probe done on every vCPU, the guest's reset or power off, a fault, the timeout);
//! with one, `quit`, or the guest's reset or power off (a fault keeps the VM up for
//! inspection, as QEMU's `-no-shutdown`); in both, a termination signal.

use std::cell::RefCell;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use event_manager::{EventManager, EventOps, EventSet, Events, MutEventSubscriber, SubscriberOps};
use vcpu_lifecycle::VcpuEvent;
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::timerfd::TimerFd;

use crate::error::VmmError;
use crate::machine::Machine;
use crate::signals::{Received, TerminationSignals};
use crate::vm::{Ended, GuestExit};
use crate::{Vmm, VmmConfig};
use vmm_monitor::{
    EventSink, Monitor, QmpListener, QmpOption, QmpServer, QmpVersion, ServerHandle,
};

/// How often a monitor VM looks for CPUs the guest ejected.
const EJECT_POLL: Duration = Duration::from_millis(100);

/// How a run of the VM ended without an error.
#[derive(Debug)]
pub enum Outcome {
    /// The VM ended by itself: the probe's summary, or the guest's reset or power off.
    Vm(Ended),
    /// A monitor client sent `quit`.
    Quit,
    /// A termination signal arrived.
    Signal(Received),
}

/// How the binary runs a VM beyond its configuration.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The QMP monitor (`--qmp`).
    pub qmp: Option<QmpOption>,
    /// Leave the vCPUs stopped until a monitor client sends `cont` (QEMU's `-S`).
    pub start_paused: bool,
}

type Shared<T> = Rc<RefCell<Option<T>>>;
type Subscriber = Box<dyn MutEventSubscriber>;

/// Build the VM from `config`, start it, and run the event loop until the run ends; the
/// VM is torn down (vCPU threads joined, ledger entry released, monitor socket removed)
/// before this returns.
pub fn run(config: VmmConfig, options: &RunOptions) -> Result<Outcome, VmmError> {
    let qmp = options.qmp.as_ref();
    let io = |what| move |source: std::io::Error| VmmError::EventLoop { what, source };
    // Before the first thread: every thread inherits the blocked mask.
    let signals = TerminationSignals::new().map_err(io("block SIGTERM, SIGINT, SIGHUP"))?;
    let timeout = config.timeout.filter(|_| qmp.is_none());
    // Bound before the VM drops its privileges (the socket's directory may need them).
    let listener = qmp
        .map(|q| QmpListener::bind(&q.path))
        .transpose()
        .map_err(VmmError::Monitor)?;
    let mut vmm = Vmm::new(config)?;
    let serial = vmm.take_serial_input();
    let quit = EventFd::new(libc::EFD_NONBLOCK).map_err(io("create the quit eventfd"))?;
    let sink = EventSink::new();
    let machine = Machine::new(
        vmm,
        quit.try_clone().map_err(io("clone an eventfd"))?,
        sink.clone(),
    );
    let server = match listener
        .map(|l| serve_monitor(l, &machine, sink))
        .transpose()
    {
        Ok(server) => server,
        Err(e) => {
            machine.into_exit();
            return Err(e);
        }
    };
    let monitor = server
        .as_ref()
        .map(|s| (s.handle(), qmp.is_some_and(|q| q.wait)));
    let result = event_loop(
        &machine,
        Sources {
            signals,
            quit,
            server,
            serial,
        },
        timeout,
        monitor,
        options.start_paused,
    );
    report_emulated(&machine);
    machine.into_exit();
    result
}

/// One line each on what the emulation fallback and the syscall completion did, when they
/// did anything (a software KVM backend's gaps; never on hardware KVM).
fn report_emulated(machine: &Machine) {
    let (mut emulated, mut syscall) = Default::default();
    for h in machine.vmm().vcpus().iter() {
        let stats = h.stats();
        vcpu_lifecycle::EmulatedCounts::add(&mut emulated, &stats.emulated);
        vcpu_lifecycle::SyscallCounts::add(&mut syscall, &stats.syscall);
    }
    if emulated.total() > 0 {
        eprintln!("vmm-reference: completed in user space (emulation fallback): {emulated}");
    }
    if syscall != vcpu_lifecycle::SyscallCounts::default() {
        eprintln!("vmm-reference: syscall completion: {syscall}");
    }
}

/// The QMP server for `machine` on a bound socket, greeting as this VMM.
fn serve_monitor(
    listener: QmpListener,
    machine: &Arc<Machine>,
    sink: EventSink,
) -> Result<QmpServer, VmmError> {
    let version = QmpVersion {
        package: format!("vmm-reference {}", env!("CARGO_PKG_VERSION")),
        ..QmpVersion::default()
    };
    let monitor = Monitor::new(machine.clone(), sink).with_version(version);
    QmpServer::from_listener(listener, monitor).map_err(VmmError::Monitor)
}

/// The event sources besides the VM's own.
struct Sources {
    signals: TerminationSignals,
    quit: EventFd,
    server: Option<QmpServer>,
    /// COM1's input (stdin, a socket's clients).
    serial: Option<x86_devices::serial::SerialSubscriber>,
}

fn event_loop(
    machine: &Arc<Machine>,
    sources: Sources,
    timeout: Option<Duration>,
    monitor: Option<(ServerHandle, bool)>,
    start_paused: bool,
) -> Result<Outcome, VmmError> {
    let Sources {
        signals,
        quit,
        server,
        serial,
    } = sources;
    let io = |what| move |source: std::io::Error| VmmError::EventLoop { what, source };
    let other = |e: event_manager::Error| std::io::Error::other(e.to_string());
    let mut manager: EventManager<Subscriber> = EventManager::new()
        .map_err(other)
        .map_err(io("create the epoll event loop"))?;
    let outcome: Shared<Result<Outcome, VmmError>> = Rc::new(RefCell::new(None));
    let errno = |e: vmm_sys_util::errno::Error| std::io::Error::from_raw_os_error(e.errno());
    let mut timer = TimerFd::new()
        .map_err(errno)
        .map_err(io("create a timerfd"))?;
    match (timeout, monitor.is_some()) {
        (Some(t), false) => timer.reset(t, None),
        (_, true) => timer.reset(EJECT_POLL, Some(EJECT_POLL)),
        (None, false) => Ok(()),
    }
    .map_err(errno)
    .map_err(io("arm the timerfd"))?;
    let vm_fd = machine
        .vmm()
        .event_fd()
        .try_clone()
        .map_err(io("clone the lifecycle eventfd"))?;
    if let Some(server) = server {
        manager.add_subscriber(Box::new(server));
    }
    if let Some(serial) = serial {
        manager.add_subscriber(Box::new(serial));
    }
    manager.add_subscriber(Box::new(Driver {
        machine: Arc::clone(machine),
        monitor: monitor.is_some(),
        vm_fd,
        signals,
        quit,
        timer,
        outcome: Rc::clone(&outcome),
    }));
    let mut run_once = || manager.run().map_err(other).map_err(io("epoll_wait"));
    // Without `-S` or `wait=on` the guest starts first and this thread's filter goes in
    // while it runs (the vCPUs have theirs; what the guest does waits in the epoll set).
    let wait_for_client = monitor.as_ref().filter(|(_, wait)| *wait);
    if !start_paused && wait_for_client.is_none() {
        machine.start()?;
    } else {
        machine.vmm().settle()?; // a vCPU that cannot be placed ends the run now
    }
    // Everything this thread does from here on is in its filter.
    machine
        .vmm()
        .sandbox()
        .apply(vmm_sandbox::ThreadKind::Main)?;
    // QEMU's `wait=on`: the guest starts once the first client is there.
    if let Some((handle, _)) = wait_for_client {
        while handle.clients_accepted() == 0 && outcome.borrow().is_none() {
            run_once()?;
        }
        if !start_paused && outcome.borrow().is_none() {
            machine.start()?;
        }
    }
    while outcome.borrow().is_none() {
        run_once()?;
    }
    // Dropping the manager drops the monitor server: its clients are closed and its
    // socket file removed.
    drop(manager);
    let result = outcome.borrow_mut().take();
    result.unwrap_or(Ok(Outcome::Quit))
}

/// The VM's side of the event loop: lifecycle events, signals, timers and quit.
struct Driver {
    machine: Arc<Machine>,
    monitor: bool,
    vm_fd: EventFd,
    signals: TerminationSignals,
    quit: EventFd,
    timer: TimerFd,
    outcome: Shared<Result<Outcome, VmmError>>,
}

impl Driver {
    fn end(&self, result: Result<Outcome, VmmError>) {
        let mut slot = self.outcome.borrow_mut();
        if slot.is_none() {
            *slot = Some(result);
        }
    }

    fn lifecycle(&self) {
        loop {
            let Some(event) = self.machine.vmm().try_event() else {
                return;
            };
            if self.monitor {
                // Before a stop: a guest that ejects a CPU and then resets reports the
                // eject first.
                self.machine.poll_ejected();
                if let VcpuEvent::StopVm(stop) = event {
                    if let Some(exit) = self.machine.guest_stopped(&stop) {
                        return self.end(Ok(Outcome::Vm(Ended::Guest(exit))));
                    }
                }
            } else if let Some(ended) = self.machine.vmm().on_event(event) {
                return self.end(ended.map(Outcome::Vm));
            }
        }
    }

    fn timer(&mut self) {
        let _ = self.timer.wait();
        if self.monitor {
            self.machine.poll_ejected();
        } else {
            let error = self.machine.vmm().timeout_error();
            self.end(Err(error));
        }
    }
}

impl MutEventSubscriber for Driver {
    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        let fd = events.fd();
        if fd == self.vm_fd.as_raw_fd() {
            self.lifecycle();
        } else if fd == self.signals.as_raw_fd() {
            if let Some(received) = self.signals.read() {
                self.end(Ok(Outcome::Signal(received)));
            }
        } else if fd == self.quit.as_raw_fd() {
            let _ = self.quit.read();
            self.end(Ok(Outcome::Quit));
        } else if fd == self.timer.as_raw_fd() {
            self.timer();
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        let fds = [
            self.vm_fd.as_raw_fd(),
            self.signals.as_raw_fd(),
            self.quit.as_raw_fd(),
            self.timer.as_raw_fd(),
        ];
        for fd in fds {
            if let Err(e) = ops.add(Events::new_raw(fd, EventSet::IN)) {
                log::error!("event loop: cannot watch fd {fd}: {e:?}");
            }
        }
    }
}

/// The message the binary prints for a guest's own end of the VM.
pub fn guest_exit_message(exit: GuestExit) -> String {
    match exit {
        GuestExit::Reboot => "guest reboot".into(),
        GuestExit::PowerOff => "guest power off".into(),
        GuestExit::DebugExit(v) => format!("guest wrote {v:#x} to isa-debug-exit"),
    }
}

/// The process exit status for a guest's own end of the VM: 0, or QEMU's
/// `(value << 1) | 1` for isa-debug-exit (its low 8 bits).
pub fn guest_exit_status(exit: GuestExit) -> u8 {
    match exit {
        GuestExit::Reboot | GuestExit::PowerOff => 0,
        GuestExit::DebugExit(v) => (x86_devices::VmExit::debug_exit_status(v) & 0xff) as u8,
    }
}

//! VM-level events reported asynchronously by vCPU threads.

use std::fmt;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

use cpu_topology::VcpuIndex;
use vmm_sys_util::errno;
use vmm_sys_util::eventfd::EventFd;

/// Something the VMM must learn about without asking: a vCPU finished, or the VM must stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcpuEvent {
    /// The vCPU moved to [`crate::VcpuState::Halted`].
    Halted {
        /// Which vCPU.
        vcpu: VcpuIndex,
    },
    /// The VM must stop; the reporting vCPU has already moved to
    /// [`crate::VcpuState::Stopped`].
    StopVm(VmStop),
}

impl fmt::Display for VcpuEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VcpuEvent::Halted { vcpu } => write!(f, "vCPU {vcpu}: halted"),
            VcpuEvent::StopVm(stop) => stop.fmt(f),
        }
    }
}

/// Why the VM must stop, and which vCPU said so.
///
/// Displays as `vCPU 3: triple fault (KVM_EXIT_SHUTDOWN) at RIP 0x100012`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmStop {
    /// The vCPU that stopped.
    pub vcpu: VcpuIndex,
    /// What happened.
    pub reason: StopReason,
}

impl fmt::Display for VmStop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vCPU {}: {}", self.vcpu, self.reason)
    }
}

/// The guest instruction pointer at a fault, read with KVM_GET_REGS on the vCPU thread;
/// `None` when that read failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rip(pub Option<u64>);

impl fmt::Display for Rip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(rip) => write!(f, "RIP {rip:#x}"),
            None => f.write_str("unknown RIP (KVM_GET_REGS failed)"),
        }
    }
}

/// Why a vCPU stopped the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The exit handler returned [`crate::ExitAction::StopVm`].
    Requested(String),
    /// KVM_EXIT_SHUTDOWN: the guest triple-faulted (or otherwise reset the CPU).
    TripleFault {
        /// Where.
        rip: Rip,
    },
    /// KVM_EXIT_INTERNAL_ERROR, e.g. suberror 1: the instruction emulator failed.
    InternalError {
        /// `kvm_run.internal.suberror`.
        suberror: u32,
        /// `kvm_run.internal.data[..ndata]`.
        data: Vec<u64>,
        /// Where.
        rip: Rip,
        /// Guest-physical address of the instruction at RIP (KVM_TRANSLATE under the
        /// guest's own paging), so that the VMM can show the instruction's bytes; `None`
        /// when RIP is unknown or not mapped.
        code_gpa: Option<u64>,
    },
    /// KVM_EXIT_FAIL_ENTRY: the hardware refused to enter the guest.
    FailEntry {
        /// `hardware_entry_failure_reason` (VMX exit reason / SVM exit code).
        hardware_reason: u64,
        /// Host CPU the entry was tried on.
        host_cpu: u32,
        /// Where.
        rip: Rip,
    },
    /// An exit this crate does not handle (hypercall, MSR, debug, system event, ...).
    UnexpectedExit {
        /// `kvm_run.exit_reason`.
        exit_reason: u32,
        /// Its `KVM_EXIT_*` name.
        name: &'static str,
        /// Where.
        rip: Rip,
    },
    /// KVM_RUN failed with an errno other than EINTR and EAGAIN.
    RunFailed(errno::Error),
    /// The vCPU thread panicked (a bug in the exit handler or in this crate).
    Panicked(String),
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Requested(why) => write!(f, "stop requested by the exit handler: {why}"),
            StopReason::TripleFault { rip } => {
                write!(f, "triple fault (KVM_EXIT_SHUTDOWN) at {rip}")
            }
            StopReason::InternalError {
                suberror,
                data,
                rip,
                code_gpa,
            } => {
                write!(
                    f,
                    "KVM internal error (KVM_EXIT_INTERNAL_ERROR) suberror {suberror} ({}) at {rip}",
                    internal_suberror_name(*suberror)
                )?;
                if let Some(gpa) = code_gpa {
                    write!(f, " (GPA {gpa:#x})")?;
                }
                if !data.is_empty() {
                    f.write_str(", data")?;
                    for d in data {
                        write!(f, " {d:#x}")?;
                    }
                }
                Ok(())
            }
            StopReason::FailEntry {
                hardware_reason,
                host_cpu,
                rip,
            } => write!(
                f,
                "VM entry failed (KVM_EXIT_FAIL_ENTRY), hardware reason {hardware_reason:#x} \
                 on host CPU {host_cpu}, at {rip}"
            ),
            StopReason::UnexpectedExit {
                exit_reason,
                name,
                rip,
            } => write!(f, "unexpected exit {name} ({exit_reason}) at {rip}"),
            StopReason::RunFailed(e) => write!(f, "ioctl KVM_RUN failed: {e}"),
            StopReason::Panicked(msg) => write!(f, "vCPU thread panicked: {msg}"),
        }
    }
}

/// Name of a `KVM_INTERNAL_ERROR_*` suberror.
fn internal_suberror_name(suberror: u32) -> &'static str {
    match suberror {
        1 => "emulation failure",
        2 => "simultaneous exception",
        3 => "delivery event",
        4 => "unexpected exit reason",
        _ => "unknown suberror",
    }
}

/// The sending half of the VM event channel, shared by all vCPU threads of a VM.
///
/// Each event is queued on an `std::sync::mpsc` channel and then, when configured, an
/// [`EventFd`] is written, so a main loop waiting in epoll wakes up and drains the channel
/// with `try_recv`. The event is queued *before* the eventfd is written: a reader woken by
/// the eventfd always finds it.
#[derive(Debug, Clone)]
pub struct EventSender {
    tx: Sender<VcpuEvent>,
    notify: Option<Arc<EventFd>>,
}

impl EventSender {
    /// Queues `event` and signals the eventfd. A dropped receiver is not an error (nobody is
    /// listening any more); a failed eventfd write is logged.
    pub(crate) fn send(&self, event: VcpuEvent) {
        // The receiver may be gone while the VMM shuts down; the event is then moot.
        let _ = self.tx.send(event);
        if let Some(fd) = &self.notify {
            if let Err(e) = fd.write(1) {
                log::warn!("vcpu-lifecycle: writing the event notification eventfd failed: {e}");
            }
        }
    }
}

/// Creates the VM event channel. Pass a clone of the VMM's [`EventFd`] (see
/// [`EventFd::try_clone`]) as `notify` to be woken in epoll on every event.
pub fn event_channel(notify: Option<EventFd>) -> (EventSender, Receiver<VcpuEvent>) {
    let (tx, rx) = channel();
    (
        EventSender {
            tx,
            notify: notify.map(Arc::new),
        },
        rx,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_table() {
        let v = VcpuIndex(3);
        let rows: Vec<(StopReason, &str)> = vec![
            (
                StopReason::TripleFault {
                    rip: Rip(Some(0x100012)),
                },
                "vCPU 3: triple fault (KVM_EXIT_SHUTDOWN) at RIP 0x100012",
            ),
            (
                StopReason::TripleFault { rip: Rip(None) },
                "vCPU 3: triple fault (KVM_EXIT_SHUTDOWN) at unknown RIP (KVM_GET_REGS failed)",
            ),
            (
                StopReason::InternalError {
                    suberror: 1,
                    data: vec![0x10, 0x0],
                    rip: Rip(Some(0xfff0)),
                    code_gpa: None,
                },
                "vCPU 3: KVM internal error (KVM_EXIT_INTERNAL_ERROR) suberror 1 \
                 (emulation failure) at RIP 0xfff0, data 0x10 0x0",
            ),
            (
                StopReason::InternalError {
                    suberror: 1,
                    data: vec![],
                    rip: Rip(Some(0xffffffff81000000)),
                    code_gpa: Some(0x1000000),
                },
                "vCPU 3: KVM internal error (KVM_EXIT_INTERNAL_ERROR) suberror 1 \
                 (emulation failure) at RIP 0xffffffff81000000 (GPA 0x1000000)",
            ),
            (
                StopReason::FailEntry {
                    hardware_reason: 0x21,
                    host_cpu: 5,
                    rip: Rip(Some(0x1000)),
                },
                "vCPU 3: VM entry failed (KVM_EXIT_FAIL_ENTRY), hardware reason 0x21 on host \
                 CPU 5, at RIP 0x1000",
            ),
            (
                StopReason::UnexpectedExit {
                    exit_reason: 3,
                    name: "KVM_EXIT_HYPERCALL",
                    rip: Rip(Some(0x2000)),
                },
                "vCPU 3: unexpected exit KVM_EXIT_HYPERCALL (3) at RIP 0x2000",
            ),
            (
                StopReason::RunFailed(errno::Error::new(libc::EFAULT)),
                "vCPU 3: ioctl KVM_RUN failed: Bad address (os error 14)",
            ),
            (
                StopReason::Requested("guest wrote 0xff to the exit port".into()),
                "vCPU 3: stop requested by the exit handler: guest wrote 0xff to the exit port",
            ),
        ];
        for (reason, want) in rows {
            assert_eq!(VmStop { vcpu: v, reason }.to_string(), want);
        }
        assert_eq!(VcpuEvent::Halted { vcpu: v }.to_string(), "vCPU 3: halted");
    }

    #[test]
    fn events_reach_receiver_and_eventfd() {
        let efd = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let (tx, rx) = event_channel(Some(efd.try_clone().unwrap()));
        tx.send(VcpuEvent::Halted { vcpu: VcpuIndex(0) });
        tx.clone().send(VcpuEvent::Halted { vcpu: VcpuIndex(1) });
        assert_eq!(efd.read().unwrap(), 2);
        let got: Vec<VcpuEvent> = rx.try_iter().collect();
        assert_eq!(got.len(), 2);
        drop(rx);
        // A dropped receiver is not an error.
        tx.send(VcpuEvent::Halted { vcpu: VcpuIndex(2) });
    }
}

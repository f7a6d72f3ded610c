//! What every VMM behind this monitor does the same way: the run state and its
//! transitions ([`RunControl`]: `stop`, `cont`, a guest fault or shutdown, `quit`, with
//! their events), and QMP's names for CPU slots ([`cpu_props`], [`plug_position`],
//! [`default_device_id`], [`qom_path`]).

use std::sync::Mutex;

use cpu_topology::{CpuTopology, TopologyPosition, VcpuIndex};
use vmm_sys_util::eventfd::EventFd;

use crate::backend::{BackendError, CpuProps, RunState};
use crate::events::EventSink;

/// How a guest stopped its VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestFault {
    /// A triple fault (KVM_EXIT_SHUTDOWN): a reset request.
    TripleFault,
    /// Anything else the VMM could not go on from (emulation failure, failed entry...).
    Internal,
}

/// Run state, quit signal and event sink of a VM behind a monitor, with the state
/// transitions every backend makes the same way.
#[derive(Debug)]
pub struct RunControl {
    state: Mutex<RunState>,
    /// Held across a whole `stop` or `cont`, so two clients cannot both pause (or both
    /// resume) the VM. Taken before the VM's lock, never while holding it.
    transition: Mutex<()>,
    /// Written when a client asks to quit: the event loop waits on it.
    quit: EventFd,
    events: EventSink,
}

impl RunControl {
    /// A VM in `prelaunch`; `quit` is written when a client asks to quit.
    pub fn new(quit: EventFd, events: EventSink) -> Self {
        Self {
            state: Mutex::new(RunState::Prelaunch),
            transition: Mutex::new(()),
            quit,
            events,
        }
    }

    /// The current run state.
    pub fn status(&self) -> RunState {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record a new run state.
    pub fn set(&self, s: RunState) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }

    /// Where the backend emits the events it originates.
    pub fn events(&self) -> &EventSink {
        &self.events
    }

    /// Tell the main thread that a client asked to quit.
    pub fn quit(&self) {
        if let Err(e) = self.quit.write(1) {
            log::error!("cannot wake the main loop for quit: {e}");
        }
    }

    /// `stop`: `pause` every vCPU when the VM runs; a VM in any other state is left alone.
    pub fn stop(
        &self,
        pause: impl FnOnce() -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        let _transition = self.transition.lock().unwrap_or_else(|p| p.into_inner());
        if self.status() == RunState::Running {
            pause()?;
            self.set(RunState::Paused);
        }
        Ok(())
    }

    /// `cont`: `resume` a paused VM, or `start` one that was never started (QEMU's
    /// `-S`); a VM the guest stopped cannot be resumed.
    pub fn cont(
        &self,
        start: impl FnOnce() -> Result<(), BackendError>,
        resume: impl FnOnce() -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        let _transition = self.transition.lock().unwrap_or_else(|p| p.into_inner());
        match self.status() {
            RunState::Paused => resume()?,
            RunState::Prelaunch => start()?,
            RunState::Running => return Ok(()),
            RunState::Shutdown | RunState::InternalError => {
                return Err(BackendError::Rejected(
                    "the guest stopped the VM; it cannot be resumed (quit, and start it again)"
                        .to_string(),
                ))
            }
        }
        self.set(RunState::Running);
        Ok(())
    }

    /// The guest faulted and its vCPUs were stopped: record the state and tell clients, as
    /// QEMU does with `-no-shutdown` (the process stays up for inspection until `quit`).
    /// A triple fault is a reset request (`SHUTDOWN`, `guest-reset`); anything else is an
    /// internal error (`STOP`).
    pub fn guest_fault(&self, fault: GuestFault) {
        match fault {
            GuestFault::TripleFault => {
                self.set(RunState::Shutdown);
                self.events.emit(
                    "SHUTDOWN",
                    serde_json::json!({"guest": true, "reason": "guest-reset"}),
                );
            }
            GuestFault::Internal => {
                self.set(RunState::InternalError);
                self.events.emit("STOP", serde_json::json!({}));
            }
        }
    }

    /// The guest ended the VM itself (`reason` in QMP's `ShutdownCause` spelling, e.g.
    /// `guest-reset`, `guest-shutdown`): record it and emit `SHUTDOWN` with `guest: true`.
    pub fn guest_shutdown(&self, reason: &str) {
        self.set(RunState::Shutdown);
        self.events.emit(
            "SHUTDOWN",
            serde_json::json!({"guest": true, "reason": reason}),
        );
    }
}

/// QMP `CpuInstanceProperties` of a topology position on NUMA node `node`.
pub fn cpu_props(p: TopologyPosition, node: Option<u32>) -> CpuProps {
    CpuProps {
        socket_id: p.socket,
        die_id: p.die,
        module_id: None,
        core_id: p.core,
        thread_id: p.thread,
        node_id: node,
    }
}

/// The topology position a `device_add` asks for (`module-id` defaults to 0).
pub fn plug_position(p: &CpuProps) -> TopologyPosition {
    TopologyPosition {
        socket: p.socket_id,
        die: p.die_id,
        module: p.module_id.unwrap_or(0),
        core: p.core_id,
        thread: p.thread_id,
    }
}

/// The `device_add` id when the client gave none: `cpu<index>` of the slot (`cpu4294967295`
/// for a position outside the topology, which the plug then refuses).
pub fn default_device_id(topo: &CpuTopology, position: TopologyPosition) -> String {
    let index = topo.index_of(position).map_or(u32::MAX, |i| i.0);
    format!("cpu{index}")
}

/// QOM path of a vCPU: `/machine/peripheral/<id>` for one hot-plugged with `id`,
/// `/machine/unattached/device[N]` for a boot vCPU, as in QEMU.
pub fn qom_path(index: VcpuIndex, plugged_id: Option<&str>) -> String {
    match plugged_id {
        Some(id) => format!("/machine/peripheral/{id}"),
        None => format!("/machine/unattached/device[{}]", index.0),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cpu_topology::smp::parse_smp;
    use serde_json::{json, Value};

    use super::*;

    /// A control whose events are collected without timestamps.
    fn control() -> (RunControl, EventFd, Arc<Mutex<Vec<Value>>>) {
        let quit = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let rx = quit.try_clone().unwrap();
        let sink = EventSink::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        sink.subscribe(Box::new(move |line| {
            let mut v: Value = serde_json::from_str(line).unwrap();
            v.as_object_mut().unwrap().remove("timestamp");
            s.lock().unwrap().push(v);
            true
        }));
        (RunControl::new(quit, sink), rx, seen)
    }

    #[test]
    fn stop_and_cont_call_the_vm_only_when_the_state_changes() {
        let (c, _rx, _) = control();
        let calls = Mutex::new(Vec::new());
        let pause = || {
            calls.lock().unwrap().push("pause");
            Ok(())
        };
        // Not started yet: nothing to pause or resume.
        c.stop(pause).unwrap();
        assert_eq!(c.status(), RunState::Prelaunch);
        c.set(RunState::Running);
        c.stop(pause).unwrap();
        c.stop(pause).unwrap();
        assert_eq!(c.status(), RunState::Paused);
        assert_eq!(*calls.lock().unwrap(), ["pause"]);
        c.cont(|| unreachable!("a paused VM is resumed"), || Ok(()))
            .unwrap();
        assert_eq!(c.status(), RunState::Running);
        // A failed pause leaves the VM running and reports why.
        let err = c
            .stop(|| Err(BackendError::Rejected("wedged".into())))
            .unwrap_err();
        assert_eq!(err.to_string(), "wedged");
        assert_eq!(c.status(), RunState::Running);
    }

    #[test]
    fn cont_starts_a_vm_that_was_never_started() {
        let (c, _rx, _) = control();
        let started = std::cell::Cell::new(false);
        c.cont(
            || {
                started.set(true);
                Ok(())
            },
            || unreachable!("prelaunch is started, not resumed"),
        )
        .unwrap();
        assert!(started.get());
        assert_eq!(c.status(), RunState::Running);
    }

    #[test]
    fn concurrent_stops_pause_once() {
        let (c, _rx, _) = control();
        c.set(RunState::Running);
        let pauses = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    c.stop(|| {
                        pauses.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        // A pause takes a while: the others must wait, not pause again.
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        Ok(())
                    })
                    .unwrap();
                });
            }
        });
        assert_eq!(pauses.into_inner(), 1);
        assert_eq!(c.status(), RunState::Paused);
    }

    #[test]
    fn guest_fault_keeps_the_vm_for_inspection_and_refuses_cont() {
        let (c, _rx, events) = control();
        c.set(RunState::Running);
        c.guest_fault(GuestFault::TripleFault);
        assert_eq!(c.status(), RunState::Shutdown);
        c.set(RunState::Running);
        c.guest_fault(GuestFault::Internal);
        assert_eq!(c.status(), RunState::InternalError);
        assert_eq!(
            *events.lock().unwrap(),
            [
                json!({"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-reset"}}),
                json!({"event": "STOP", "data": {}}),
            ]
        );
        let err = c.cont(|| unreachable!(), || unreachable!()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the guest stopped the VM; it cannot be resumed (quit, and start it again)"
        );
    }

    #[test]
    fn guest_shutdown_and_quit() {
        let (c, rx, events) = control();
        c.guest_shutdown("guest-shutdown");
        assert_eq!(c.status(), RunState::Shutdown);
        assert_eq!(
            *events.lock().unwrap(),
            [json!({"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}})]
        );
        assert!(rx.read().is_err(), "no quit yet");
        c.quit();
        assert_eq!(rx.read().unwrap(), 1);
    }

    #[test]
    fn props_positions_and_qom_paths() {
        let topo = parse_smp("4,maxcpus=8,sockets=2,cores=2,threads=2").unwrap();
        for index in topo.slots() {
            let position = topo.position(index).unwrap();
            let props = cpu_props(position, Some(1));
            assert_eq!(props.node_id, Some(1));
            assert_eq!(props.module_id, None);
            // What device_add sends back for this slot names the same position.
            assert_eq!(plug_position(&props), position);
            assert_eq!(
                default_device_id(&topo, position),
                format!("cpu{}", index.0)
            );
        }
        let p = topo.position(VcpuIndex(5)).unwrap();
        assert_eq!((p.socket, p.core, p.thread), (1, 0, 1));
        let outside = TopologyPosition {
            socket: 9,
            ..TopologyPosition::default()
        };
        assert_eq!(default_device_id(&topo, outside), "cpu4294967295");
        assert_eq!(
            qom_path(VcpuIndex(3), None),
            "/machine/unattached/device[3]"
        );
        assert_eq!(
            qom_path(VcpuIndex(3), Some("cpu3")),
            "/machine/peripheral/cpu3"
        );
    }
}

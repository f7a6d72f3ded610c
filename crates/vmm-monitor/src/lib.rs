//! A QMP-compatible monitor for VMMs, so existing QMP clients (`qemu.qmp`, libvirt-style
//! tools, `socat`) control a VMM unchanged, served on the embedder's rust-vmm
//! [`event_manager::EventManager`]: one epoll loop, no thread of its own.
//!
//! Layers, each usable alone:
//! - [`protocol`]: the wire format without sockets: framing ([`JsonStream`]), envelopes,
//!   negotiation ([`Session`]), QEMU's error texts and classes.
//! - [`commands`]: [`Monitor`] executes requests; every command is one call of the
//!   [`MonitorBackend`] trait, which the VMM implements.
//! - [`hmp`]: the human monitor commands behind `human-monitor-command`.
//! - [`server`]: [`QmpServer`], the Unix-socket server, an event-manager subscriber that
//!   owns the listening socket and every client connection; [`option`]: the `--qmp`
//!   grammar.
//! - [`events`]: [`EventSink`], the fan-out of asynchronous events; it may be fed from any
//!   thread (vCPU threads, device code) and the server delivers in the loop thread.
//! - [`fake`]: [`FakeBackend`], an in-memory backend for tests and client development.
//!
//! An embedder creates the server, registers it on its event loop and runs the loop; the
//! backend's [`MonitorBackend::quit`] and [`ServerHandle::quit_requested`] tell it when a
//! client asked to quit (the server has then closed its connections and its socket):
//!
//! ```no_run
//! use std::sync::Arc;
//! use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
//! use vmm_monitor::{parse_qmp_option, EventSink, FakeBackend, Monitor, QmpServer};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let opt = parse_qmp_option("unix:/tmp/vmm.qmp,server,wait=off")?;
//!     let events = EventSink::new(); // clone it into vCPU threads to emit events
//!     let monitor = Monitor::new(Arc::new(FakeBackend::new(1, 2, 1, 2)), events.clone());
//!     let server = QmpServer::bind(&opt.path, monitor)?;
//!     let handle = server.handle();
//!     let mut loop_: EventManager<Box<dyn MutEventSubscriber + Send>> = EventManager::new()?;
//!     let id = loop_.add_subscriber(Box::new(server));
//!     // wait=on: run the loop until the first client is there, then start the guest.
//!     while opt.wait && handle.clients_accepted() == 0 {
//!         loop_.run()?;
//!     }
//!     while !handle.quit_requested() {
//!         loop_.run()?;
//!     }
//!     // Dropping the server closes what is left and removes the socket file.
//!     drop(loop_.remove_subscriber(id)?);
//!     Ok(())
//! }
//! ```

#![forbid(unsafe_code)]

pub mod backend;
mod client;
pub mod commands;
pub mod control;
pub mod cpu_models;
pub mod domain;
pub mod events;
pub mod fake;
pub mod hmp;
pub mod option;
pub mod protocol;
pub mod server;
mod socket;
pub mod virsh;

pub use backend::{
    BackendError, CpuInfo, CpuPlugRequest, CpuProps, CpuSlot, DescriptorTable, EmulatedInsns,
    KvmState, MachineInfo, MonitorBackend, NumaNode, Registers, RunState, Segment, Unplug,
    VcpuAffinity, NIL_UUID,
};
pub use commands::{run_script, Monitor, Outcome, COMMANDS};
pub use events::{EventSink, QmpEvent};
pub use fake::FakeBackend;
/// The domain model `dumpxml` prints, for [`MonitorBackend::complete_domain`].
pub use libvirt_domain;
pub use option::{parse_qmp_option, QmpOption, QmpOptionError};
pub use protocol::{ErrorClass, JsonStream, QmpError, QmpVersion, Session};
pub use server::{QmpListener, QmpServer, ServerError, ServerHandle};

/// An error and its sources on one line, each cause once (a `Display` that already quotes
/// its source is not repeated).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    for cause in std::iter::successors(e.source(), |c| c.source()) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

#[cfg(test)]
mod tests;

/// The README's example, compiled as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

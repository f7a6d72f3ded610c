//! A QMP-compatible monitor, so existing QMP clients (`qemu.qmp`, libvirt-style tools,
//! `socat`) control the VMM unchanged.
//!
//! Layers, each usable alone:
//! - [`protocol`]: the wire format without sockets: framing ([`JsonStream`]), envelopes,
//!   negotiation ([`Session`]), QEMU's error texts.
//! - [`commands`]: [`Monitor`] executes requests; every command is one call of the
//!   [`MonitorBackend`] trait, which the VMM implements.
//! - [`hmp`]: the human monitor commands behind `human-monitor-command`.
//! - [`server`]: [`QmpServer`], the Unix-socket server; [`option`]: the `--qmp` grammar.
//! - [`events`]: [`EventSink`], the fan-out of asynchronous events to clients.
//! - [`fake`]: [`FakeBackend`], an in-memory backend for tests and client development.
//!
//! ```no_run
//! use std::sync::Arc;
//! use vmm_reference::monitor::{parse_qmp_option, EventSink, Monitor, MonitorBackend, QmpServer};
//!
//! fn serve(backend: Arc<dyn MonitorBackend>) -> Result<(), Box<dyn std::error::Error>> {
//!     let opt = parse_qmp_option("unix:/tmp/vmm.qmp,server,wait=off")?;
//!     let monitor = Monitor::new(backend, EventSink::new());
//!     let server = QmpServer::start(&opt.path, monitor)?;
//!     server.join(); // returns after a client's `quit`
//!     Ok(())
//! }
//! ```

pub mod backend;
pub mod commands;
pub mod events;
pub mod hmp;
pub mod option;
pub mod protocol;
pub mod server;

pub use backend::{
    BackendError, CpuInfo, CpuPlugRequest, CpuProps, CpuSlot, DescriptorTable, KvmState,
    MonitorBackend, NumaNode, Registers, RunState, Segment, Unplug,
};
pub use commands::{run_script, Monitor, Outcome, COMMANDS};
pub use events::{EventSink, QmpEvent};
pub use fake::FakeBackend;
pub use option::{parse_qmp_option, QmpOption, QmpOptionError};
pub use protocol::{ErrorClass, JsonStream, QmpError, QmpVersion, Session};
pub use server::{QmpServer, ServerError};

pub mod fake;

#[cfg(test)]
mod tests;

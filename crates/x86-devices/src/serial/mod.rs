//! COM1's host side: the `--serial` grammar ([`config`]) and the backends on the event
//! loop ([`backend`]).

pub mod backend;
pub mod config;

pub use backend::{SerialBackend, SerialError, SerialInput, SerialSubscriber, SocketSink};
pub use config::{parse_serial, SerialOutput, SocketAddress, SocketServer};

//! One client connection: a non-blocking socket, its input framer, its negotiation state and
//! its output buffer. Nothing here blocks: reads and writes stop at `WouldBlock`, and what
//! could not be written waits in the buffer for the socket to become writable.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;

use event_manager::EventSet;
use serde_json::Value;

use crate::protocol::{JsonStream, Session};

/// What a read produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadOutcome {
    /// Bytes were added to the framer.
    Data,
    /// Nothing to read right now.
    Nothing,
    /// The client closed its sending side.
    Eof,
    /// The connection failed.
    Failed,
}

#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) stream: UnixStream,
    pub(crate) framer: JsonStream,
    pub(crate) session: Session,
    out: Vec<u8>,
    sent: usize,
    /// What the loop watches the socket for.
    pub(crate) watched: EventSet,
    /// The client sent EOF: no more input, close once the output is flushed.
    pub(crate) eof: bool,
    /// A write failed or the output bound was passed: drop the client.
    pub(crate) dead: bool,
}

/// One message on the wire: compact JSON and CRLF, as QEMU sends it.
pub(crate) fn to_line(v: &Value) -> String {
    let mut s = v.to_string();
    s.push_str("\r\n");
    s
}

impl Client {
    pub(crate) fn new(stream: UnixStream) -> Self {
        Client {
            stream,
            framer: JsonStream::new(),
            session: Session::new(),
            out: Vec::new(),
            sent: 0,
            watched: EventSet::IN,
            eof: false,
            dead: false,
        }
    }

    /// Reads what is available, at most one `buf` full, into the framer.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> ReadOutcome {
        loop {
            return match self.stream.read(buf) {
                Ok(0) => {
                    self.eof = true;
                    ReadOutcome::Eof
                }
                Ok(n) => {
                    self.framer.push(&buf[..n]);
                    ReadOutcome::Data
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::Nothing,
                Err(_) => {
                    self.dead = true;
                    ReadOutcome::Failed
                }
            };
        }
    }

    /// Appends one whole message to the output.
    pub(crate) fn push(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
    }

    /// What the loop should watch: input until EOF, writability while output waits.
    pub(crate) fn wanted(&self) -> EventSet {
        let mut set = if self.eof {
            EventSet::empty()
        } else {
            EventSet::IN
        };
        if self.pending() > 0 {
            set |= EventSet::OUT;
        }
        set
    }

    /// Bytes queued but not written yet.
    pub(crate) fn pending(&self) -> usize {
        self.out.len() - self.sent
    }

    /// Writes as much queued output as the socket takes now; a write error marks the
    /// client dead.
    pub(crate) fn flush(&mut self) {
        while self.sent < self.out.len() && !self.dead {
            match self.stream.write(&self.out[self.sent..]) {
                Ok(0) => self.dead = true,
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => self.dead = true,
            }
        }
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
        }
    }
}

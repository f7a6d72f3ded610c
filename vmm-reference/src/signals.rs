//! SIGTERM, SIGINT and SIGHUP as an event source: the signals are blocked and read from a
//! signalfd on the event loop, so the VMM stops cleanly (QEMU's "terminating on signal N").
//!
//! Block them with [`TerminationSignals::new`] before any other thread exists: threads
//! inherit the mask, so a process-directed signal then waits for the signalfd instead of
//! interrupting a vCPU thread.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

use vmm_sys_util::signal::block_signal;

/// The signals that end the VM.
pub const TERMINATION: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// A received signal and who sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The signal number.
    pub signal: i32,
    /// The sender's pid, as the kernel reports it (0 when the kernel itself sent it).
    pub pid: u32,
}

/// A signalfd for [`TERMINATION`].
#[derive(Debug)]
pub struct TerminationSignals {
    fd: File,
}

impl TerminationSignals {
    /// Block [`TERMINATION`] in the calling thread (and so in every thread it creates
    /// later) and open a non-blocking signalfd for them.
    pub fn new() -> io::Result<Self> {
        for s in TERMINATION {
            block_signal(s).map_err(|e| io::Error::other(e.to_string()))?;
        }
        Ok(Self {
            fd: sys::signalfd(&TERMINATION)?,
        })
    }

    /// The next pending signal, if any.
    pub fn read(&mut self) -> Option<Received> {
        let mut buf = [0u8; sys::SIGINFO_SIZE];
        match self.fd.read(&mut buf) {
            Ok(n) if n == buf.len() => Some(sys::parse(&buf)),
            _ => None,
        }
    }
}

impl AsRawFd for TerminationSignals {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

mod sys {
    use super::*;

    /// `sizeof(struct signalfd_siginfo)`.
    pub const SIGINFO_SIZE: usize = std::mem::size_of::<libc::signalfd_siginfo>();

    /// A non-blocking, close-on-exec signalfd for `signals`.
    pub fn signalfd(signals: &[libc::c_int]) -> io::Result<File> {
        let mut set = vmm_sys_util::signal::create_sigset(signals)
            .map_err(|e| io::Error::from_raw_os_error(e.errno()))?;
        // SAFETY: `set` is an initialised sigset_t on our stack; -1 asks for a new fd.
        let fd = unsafe {
            libc::signalfd(
                -1,
                &mut set as *mut libc::sigset_t,
                libc::SFD_NONBLOCK | libc::SFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new file descriptor that nothing else owns.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// The signal number and sender of one `signalfd_siginfo` record.
    pub fn parse(buf: &[u8; SIGINFO_SIZE]) -> Received {
        // ssi_signo is the first u32, ssi_pid the fourth (after errno and code).
        let word = |i: usize| u32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        Received {
            signal: word(0) as i32,
            pid: word(12),
        }
    }
}

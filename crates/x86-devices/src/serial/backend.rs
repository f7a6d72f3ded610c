//! The host side of COM1 on the VMM's one event loop: no threads.
//!
//! [`SerialBackend::open`] creates the output (stdout, a file, nothing, or a socket
//! server) before the VM starts; a socket server with `wait` blocks there until the
//! first client connects (logging `waiting for connection on ADDRESS`; an embedder
//! that prints it does so before the call), so the client sees the guest from its first byte. The [`ConsoleSink`] goes to
//! [`crate::Com1::new`]; the [`SerialInput`] becomes a [`SerialSubscriber`] (an
//! `event-manager` [`MutEventSubscriber`]) that the embedder adds to its `EventManager`.
//!
//! The subscriber watches, on the event loop's epoll: the input source (standard input
//! or the connected client), the listening socket, and COM1's receive-ready eventfd. It
//! reads at most as many bytes as COM1's 64-byte receive FIFO has room for; with the FIFO
//! full it stops watching the source until the guest has emptied the FIFO, so nothing is
//! dropped and nothing spins. Standard input that epoll cannot watch (a regular file) is
//! read each time the FIFO empties.
//!
//! Clients: one at a time, a later connection replaces the current one. A client that
//! disconnects, errs, or stops reading until a send blocks for 200 ms (output is written
//! on the vCPU thread, which must not stall) is dropped silently; the guest runs on and
//! its output goes to the console ring until the next client connects. A Unix socket
//! file is created (replacing a stale socket, never another kind of file) and removed
//! when the subscriber is dropped.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};

use super::config::{SerialOutput, SocketAddress, SocketServer};
use crate::com1::{Com1, ConsoleSink, ConsoleWrite};

/// How long a send to a client may block before the client counts as gone.
pub const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_millis(200);

/// Why a serial backend could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SerialError {
    /// The output file could not be created.
    #[error("--serial: create {}", path.display())]
    CreateFile {
        /// Which file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The socket could not be bound.
    #[error("--serial: listen on {address}")]
    Listen {
        /// The address as given.
        address: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Waiting for the first client failed.
    #[error("--serial: accept a connection on {address}")]
    Accept {
        /// The address.
        address: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Standard input could not be duplicated for the event loop.
    #[error("--serial stdio: duplicate standard input")]
    Stdin(#[source] io::Error),
}

impl SerialError {
    /// True when the user's input is at fault (a path or port that cannot be used).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            SerialError::CreateFile { .. } | SerialError::Listen { .. }
        )
    }
}

/// A connected client stream (Unix or TCP).
trait Conn: Read + Write + Send + AsRawFd + std::fmt::Debug {
    fn try_clone_conn(&self) -> io::Result<Box<dyn Conn>>;
    fn shutdown_conn(&self);
}

macro_rules! conn {
    ($t:ty) => {
        impl Conn for $t {
            fn try_clone_conn(&self) -> io::Result<Box<dyn Conn>> {
                Ok(Box::new(self.try_clone()?))
            }
            fn shutdown_conn(&self) {
                let _ = self.shutdown(Shutdown::Both);
            }
        }
    };
}
conn!(UnixStream);
conn!(TcpStream);

#[derive(Debug)]
enum Listener {
    Unix(UnixListener, PathBuf),
    Tcp(TcpListener),
}

impl Listener {
    fn bind(address: &SocketAddress) -> io::Result<Self> {
        match address {
            SocketAddress::Unix(path) => {
                if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
                    std::fs::remove_file(path)?;
                }
                Ok(Listener::Unix(UnixListener::bind(path)?, path.clone()))
            }
            SocketAddress::Tcp { host, port } => {
                let host = match host.as_str() {
                    "" => "0.0.0.0",
                    h => h.trim_start_matches('[').trim_end_matches(']'),
                };
                Ok(Listener::Tcp(TcpListener::bind((host, *port))?))
            }
        }
    }

    fn accept(&self) -> io::Result<Box<dyn Conn>> {
        let conn: Box<dyn Conn> = match self {
            Listener::Unix(l, _) => {
                let s = l.accept()?.0;
                s.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT))?;
                Box::new(s)
            }
            Listener::Tcp(l) => {
                let s = l.accept()?.0;
                s.set_nodelay(true)?;
                s.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT))?;
                Box::new(s)
            }
        };
        Ok(conn)
    }

    fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Listener::Unix(l, _) => l.set_nonblocking(true),
            Listener::Tcp(l) => l.set_nonblocking(true),
        }
    }

    fn raw_fd(&self) -> RawFd {
        match self {
            Listener::Unix(l, _) => l.as_raw_fd(),
            Listener::Tcp(l) => l.as_raw_fd(),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            if std::fs::symlink_metadata(&*path).is_ok_and(|m| m.file_type().is_socket()) {
                let _ = std::fs::remove_file(&*path);
            }
        }
    }
}

/// The connected client, shared by the output sink (vCPU thread) and the subscriber
/// (event loop). Each client gets a number so that the end of an old one never drops
/// its successor.
#[derive(Debug, Default)]
struct Current {
    client: Option<(u64, Box<dyn Conn>)>,
    next_id: u64,
}

impl Current {
    fn replace(&mut self, conn: Box<dyn Conn>) -> u64 {
        if let Some((_, old)) = self.client.take() {
            old.shutdown_conn();
        }
        self.next_id += 1;
        self.client = Some((self.next_id, conn));
        self.next_id
    }

    fn drop_client(&mut self, id: u64) {
        if self.client.as_ref().is_some_and(|(c, _)| *c == id) {
            if let Some((_, conn)) = self.client.take() {
                // The subscriber's duplicate reads end of file and unregisters.
                conn.shutdown_conn();
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Console output to whichever client is connected; nothing when none is. A failed or
/// timed-out send drops the client without an error: the guest neither stops nor
/// stalls because of a viewer.
#[derive(Debug, Clone, Default)]
pub struct SocketSink {
    current: Arc<Mutex<Current>>,
}

impl SocketSink {
    /// Whether a client is connected.
    pub fn connected(&self) -> bool {
        lock(&self.current).client.is_some()
    }
}

impl Write for SocketSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut current = lock(&self.current);
        if let Some((id, conn)) = &mut current.client {
            if conn.write_all(buf).is_err() {
                let id = *id;
                current.drop_client(id);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// COM1's input, to be turned into a [`SerialSubscriber`] once COM1 exists.
#[derive(Debug)]
pub struct SerialInput(Input);

#[derive(Debug)]
enum Input {
    None,
    Stdin(File),
    Socket {
        listener: Listener,
        sink: SocketSink,
    },
}

/// An opened backend: COM1's output and its input.
#[derive(Debug)]
pub struct SerialBackend {
    /// COM1's output, for [`Com1::new`].
    pub sink: ConsoleSink,
    /// COM1's input, for [`SerialInput::subscriber`].
    pub input: SerialInput,
}

impl SerialBackend {
    /// Open `serial`: create the file or bind the socket and, for a socket server with
    /// `wait`, block until the first client connects.
    pub fn open(serial: &SerialOutput) -> Result<Self, SerialError> {
        let stdout = || Box::new(io::stdout()) as Box<dyn ConsoleWrite>;
        let (sink, input) = match serial {
            SerialOutput::Stdout => (ConsoleSink::line_buffered(stdout()), Input::None),
            SerialOutput::Stdio => {
                let fd = io::stdin().as_fd().try_clone_to_owned();
                let stdin = File::from(fd.map_err(SerialError::Stdin)?);
                (ConsoleSink::line_buffered(stdout()), Input::Stdin(stdin))
            }
            SerialOutput::File(path) => {
                let file = File::create(path).map_err(|source| SerialError::CreateFile {
                    path: path.clone(),
                    source,
                })?;
                (ConsoleSink::line_buffered(Box::new(file)), Input::None)
            }
            SerialOutput::Null => (ConsoleSink::ring_only(), Input::None),
            SerialOutput::Socket(server) => return Self::listen(server),
        };
        Ok(Self {
            sink,
            input: SerialInput(input),
        })
    }

    fn listen(server: &SocketServer) -> Result<Self, SerialError> {
        let address = server.address.to_string();
        let listener = Listener::bind(&server.address).map_err(|source| SerialError::Listen {
            address: address.clone(),
            source,
        })?;
        let sink = SocketSink::default();
        if server.wait {
            log::info!("waiting for connection on {address}");
            let conn = listener.accept().map_err(|source| SerialError::Accept {
                address: address.clone(),
                source,
            })?;
            lock(&sink.current).replace(conn);
        }
        listener
            .set_nonblocking()
            .map_err(|source| SerialError::Listen { address, source })?;
        Ok(Self {
            sink: ConsoleSink::unbuffered(Box::new(sink.clone())),
            input: SerialInput(Input::Socket { listener, sink }),
        })
    }
}

impl SerialInput {
    /// The event-loop subscriber feeding `com1`, or `None` when the backend has no input.
    pub fn subscriber(self, com1: Arc<Com1>) -> Option<SerialSubscriber> {
        let source = match self.0 {
            Input::None => return None,
            Input::Stdin(file) => Source::Stdin {
                file,
                mode: StdinMode::Watched,
            },
            Input::Socket { listener, sink } => Source::Socket {
                listener,
                sink,
                client: None,
            },
        };
        Some(SerialSubscriber {
            com1,
            source,
            paused: false,
        })
    }
}

const TOKEN_SOURCE: u32 = 1;
const TOKEN_LISTENER: u32 = 2;
const TOKEN_RX_READY: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StdinMode {
    /// On the epoll set.
    Watched,
    /// Epoll refused it (a regular file): read whenever the FIFO empties.
    Polled,
    /// End of file.
    Done,
}

#[derive(Debug)]
enum Source {
    /// Standard input.
    Stdin { file: File, mode: StdinMode },
    /// A socket server and the read side of its current client.
    Socket {
        listener: Listener,
        sink: SocketSink,
        client: Option<(u64, Box<dyn Conn>)>,
    },
}

/// Feeds COM1 from its backend on the event loop; see the [module docs](self).
#[derive(Debug)]
pub struct SerialSubscriber {
    com1: Arc<Com1>,
    source: Source,
    /// The source is unwatched until the guest empties the receive FIFO.
    paused: bool,
}

impl SerialSubscriber {
    /// The fd the input comes from now (none between socket clients).
    fn source_fd(&self) -> Option<RawFd> {
        match &self.source {
            Source::Stdin {
                file,
                mode: StdinMode::Watched,
            } => Some(file.as_raw_fd()),
            Source::Stdin { .. } => None,
            Source::Socket { client, .. } => client.as_ref().map(|(_, c)| c.as_raw_fd()),
        }
    }

    fn watch_source(&self, ops: &mut EventOps) -> event_manager::Result<()> {
        match self.source_fd() {
            Some(fd) => ops.add(Events::with_data_raw(fd, TOKEN_SOURCE, EventSet::IN)),
            None => Ok(()),
        }
    }

    fn unwatch_source(&self, ops: &mut EventOps) {
        if let Some(fd) = self.source_fd() {
            let _ = ops.remove(Events::with_data_raw(fd, TOKEN_SOURCE, EventSet::IN));
        }
    }

    /// Move what fits from the source into COM1's FIFO.
    fn pump(&mut self, ops: &mut EventOps) {
        let space = self.com1.input_space();
        if space == 0 {
            if !self.paused {
                self.unwatch_source(ops);
                self.paused = true;
            }
            return;
        }
        let mut buf = [0u8; 64];
        let buf = &mut buf[..space.min(64)];
        let read = match &mut self.source {
            Source::Stdin {
                mode: StdinMode::Done,
                ..
            } => return,
            Source::Stdin { file, .. } => file.read(buf),
            Source::Socket {
                client: Some((_, c)),
                ..
            } => c.read(buf),
            Source::Socket { client: None, .. } => return,
        };
        match read {
            Ok(0) => self.end_of_source(ops),
            Ok(n) => {
                self.com1.enqueue_input(&buf[..n]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) => {}
            Err(_) => self.end_of_source(ops),
        }
    }

    fn end_of_source(&mut self, ops: &mut EventOps) {
        self.unwatch_source(ops);
        match &mut self.source {
            // Nothing more will come: stop reading (the file stays open, unwatched).
            Source::Stdin { mode, .. } => *mode = StdinMode::Done,
            Source::Socket { sink, client, .. } => {
                if let Some((id, _)) = client.take() {
                    lock(&sink.current).drop_client(id);
                }
            }
        }
    }

    fn accept(&mut self, ops: &mut EventOps) {
        let Source::Socket { listener, sink, .. } = &self.source else {
            return;
        };
        let conn = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => {
                log::warn!("serial: accept failed ({e})");
                return;
            }
        };
        let reader = match conn.try_clone_conn() {
            Ok(r) => r,
            Err(e) => {
                log::warn!("serial: no input from the new client ({e})");
                return;
            }
        };
        let id = lock(&sink.current).replace(conn);
        if !self.paused {
            self.unwatch_source(ops);
        }
        if let Source::Socket { client, .. } = &mut self.source {
            *client = Some((id, reader));
        }
        if !self.paused {
            if let Err(e) = self.watch_source(ops) {
                log::warn!("serial: cannot watch the new client ({e})");
            }
        }
    }
}

impl MutEventSubscriber for SerialSubscriber {
    fn init(&mut self, ops: &mut EventOps) {
        let rx = Events::with_data(self.com1.rx_ready(), TOKEN_RX_READY, EventSet::IN);
        if let Err(e) = ops.add(rx) {
            log::warn!("serial: cannot watch COM1's receive FIFO ({e}); console input disabled");
            return;
        }
        if let Source::Socket {
            listener,
            sink,
            client,
        } = &mut self.source
        {
            let events = Events::with_data_raw(listener.raw_fd(), TOKEN_LISTENER, EventSet::IN);
            if let Err(e) = ops.add(events) {
                log::warn!("serial: cannot watch the listening socket ({e}); no new clients");
            }
            // The client accepted while waiting, if any.
            let current = lock(&sink.current);
            if let Some((id, conn)) = &current.client {
                match conn.try_clone_conn() {
                    Ok(reader) => *client = Some((*id, reader)),
                    Err(e) => log::warn!("serial: no input from the client ({e})"),
                }
            }
        }
        if let Err(e) = self.watch_source(ops) {
            if let Source::Stdin { mode, .. } = &mut self.source {
                // A regular file (or /dev/null) cannot be polled: it is always readable.
                *mode = StdinMode::Polled;
                self.pump(ops);
            } else {
                log::warn!("serial: cannot watch the client ({e}); no input from it");
            }
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        match events.data() {
            TOKEN_SOURCE => self.pump(ops),
            TOKEN_LISTENER => self.accept(ops),
            TOKEN_RX_READY => {
                let _ = self.com1.rx_ready().read();
                if self.paused {
                    self.paused = false;
                    if let Err(e) = self.watch_source(ops) {
                        log::warn!("serial: cannot watch the input again ({e})");
                    }
                }
                if let Source::Stdin {
                    mode: StdinMode::Polled,
                    ..
                } = self.source
                {
                    self.pump(ops);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::BusDevice;
    use cpu_topology::VcpuIndex;
    use event_manager::{EventManager, SubscriberOps};

    const V: VcpuIndex = VcpuIndex(0);

    struct Vm {
        com1: Arc<Com1>,
        loop_: EventManager<SerialSubscriber>,
    }

    impl Vm {
        fn new(serial: &SerialOutput) -> Self {
            let backend = SerialBackend::open(serial).unwrap();
            let com1 = Arc::new(Com1::new(backend.sink).unwrap());
            let mut loop_ = EventManager::new().unwrap();
            let sub = backend.input.subscriber(com1.clone()).unwrap();
            loop_.add_subscriber(sub);
            Self { com1, loop_ }
        }

        /// Run the event loop until `done` holds (at most 5 s of 10 ms turns).
        fn run_until(&mut self, mut done: impl FnMut(&Com1) -> bool) -> bool {
            for _ in 0..500 {
                if done(&self.com1) {
                    return true;
                }
                self.loop_.run_with_timeout(10).unwrap();
            }
            done(&self.com1)
        }

        /// Run the event loop until a turn of 50 ms has nothing to do.
        fn settle(&mut self) {
            for _ in 0..100 {
                if self.loop_.run_with_timeout(50).unwrap() == 0 {
                    return;
                }
            }
        }

        fn guest_print(&self, text: &[u8]) {
            for b in text {
                self.com1.write(V, 0, &[*b]);
            }
        }

        /// What the guest reads from the receive FIFO now.
        fn guest_read_all(&self) -> Vec<u8> {
            let mut got = Vec::new();
            let mut lsr = [0u8];
            loop {
                self.com1.read(V, 5, &mut lsr);
                if lsr[0] & 1 == 0 {
                    return got;
                }
                let mut b = [0u8];
                self.com1.read(V, 0, &mut b);
                got.push(b[0]);
            }
        }
    }

    fn unix(path: &std::path::Path) -> SerialOutput {
        SerialOutput::Socket(SocketServer {
            address: SocketAddress::Unix(path.into()),
            wait: false,
        })
    }

    #[test]
    fn unix_client_gets_output_sends_input_and_may_leave() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let mut vm = Vm::new(&unix(&path));
        vm.guest_print(b"before anyone connected\n");

        let mut client = UnixStream::connect(&path).unwrap();
        vm.settle();
        vm.guest_print(b"login: ");
        let mut buf = [0u8; 7];
        client.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"login: ");

        client.write_all(b"root\n").unwrap();
        assert!(vm.run_until(|c| c.input_space() == 64 - 5));
        assert_eq!(vm.guest_read_all(), b"root\n");

        // The client leaves; the guest prints on; a second client takes over.
        drop(client);
        vm.settle();
        vm.guest_print(b"still running\n");
        let mut second = UnixStream::connect(&path).unwrap();
        vm.settle();
        vm.guest_print(b"hello\n");
        let mut buf = [0u8; 6];
        second.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello\n");
        assert_eq!(vm.com1.console_tail(2), ["login: still running", "hello"]);

        drop(vm);
        assert!(
            !path.exists(),
            "the socket file is removed with the subscriber"
        );
    }

    #[test]
    fn input_waits_for_room_in_the_fifo_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let mut vm = Vm::new(&unix(&path));
        let mut client = UnixStream::connect(&path).unwrap();
        let text: Vec<u8> = (0..300u32).map(|i| b'a' + (i % 26) as u8).collect();
        client.write_all(&text).unwrap();
        let mut got = Vec::new();
        for _ in 0..50 {
            // Turns of the event loop fill the FIFO (64 bytes) and then pause.
            let want = text.len() - got.len();
            vm.run_until(|c| c.input_space() == 0 || 64 - c.input_space() == want);
            got.extend(vm.guest_read_all());
            if got.len() == text.len() {
                break;
            }
        }
        assert_eq!(got, text);
    }

    #[test]
    fn tcp_server_accepts_and_replaces_clients() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut vm = Vm::new(&SerialOutput::Socket(SocketServer {
            address: SocketAddress::Tcp {
                host: "127.0.0.1".into(),
                port,
            },
            wait: false,
        }));
        let mut first = TcpStream::connect(("127.0.0.1", port)).unwrap();
        vm.settle();
        let mut second = TcpStream::connect(("127.0.0.1", port)).unwrap();
        vm.settle();
        vm.guest_print(b"x");
        let mut b = [0u8; 1];
        second.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"x");
        let mut rest = Vec::new();
        first.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "the first client was closed");
        second.write_all(b"y").unwrap();
        vm.run_until(|c| c.input_space() < 64);
        assert_eq!(vm.guest_read_all(), b"y");
    }

    #[test]
    fn a_client_that_stops_reading_is_dropped_not_waited_for() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        ours.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT)).unwrap();
        let mut sink = SocketSink::default();
        lock(&sink.current).replace(Box::new(ours));
        for _ in 0..16 * 1024 {
            sink.write_all(&[b'x'; 1024]).unwrap();
        }
        assert!(!sink.connected(), "the stalled client is dropped");
    }

    #[test]
    fn file_and_null_backends_have_no_input_and_bad_paths_are_user_errors() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("console.log");
        let backend = SerialBackend::open(&SerialOutput::File(log.clone())).unwrap();
        let com1 = Arc::new(Com1::new(backend.sink).unwrap());
        assert!(backend.input.subscriber(com1.clone()).is_none());
        for b in b"boot ok\n" {
            com1.write(V, 0, &[*b]);
        }
        assert_eq!(std::fs::read(&log).unwrap(), b"boot ok\n");
        assert!(matches!(
            SerialBackend::open(&SerialOutput::Null).unwrap().input.0,
            Input::None
        ));

        let regular = dir.path().join("regular");
        std::fs::write(&regular, b"keep").unwrap();
        let err = SerialBackend::open(&unix(&regular)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("--serial: listen on unix:{}", regular.display())
        );
        assert!(err.is_bad_input());
        assert_eq!(std::fs::read(&regular).unwrap(), b"keep");
        let err = SerialBackend::open(&SerialOutput::File(dir.path().join("no/such"))).unwrap_err();
        assert!(err.is_bad_input());
    }

    /// A VM whose COM1 input is `file` as standard input would be.
    fn stdin_vm(file: File) -> Vm {
        let com1 = Arc::new(Com1::new(ConsoleSink::ring_only()).unwrap());
        let sub = SerialInput(Input::Stdin(file))
            .subscriber(com1.clone())
            .unwrap();
        let mut loop_ = EventManager::new().unwrap();
        loop_.add_subscriber(sub);
        Vm { com1, loop_ }
    }

    #[test]
    fn stdin_from_a_pollable_source_is_watched_and_ends_at_eof() {
        // A socket pair stands in for a pipe or terminal (std's pipe() is newer than
        // the workspace's rust-version).
        let (reader, mut writer) = UnixStream::pair().unwrap();
        let fd = std::os::fd::OwnedFd::from(reader);
        let mut vm = stdin_vm(File::from(fd));
        writer.write_all(b"echo hi\n").unwrap();
        drop(writer);
        assert!(vm.run_until(|c| c.input_space() == 64 - 8));
        assert_eq!(vm.guest_read_all(), b"echo hi\n");
        vm.settle();
        assert_eq!(vm.com1.input_space(), 64, "end of file adds nothing");
    }

    #[test]
    fn stdin_from_a_regular_file_is_read_as_the_guest_empties_the_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("input");
        let text: Vec<u8> = (0..150u32).map(|i| b'0' + (i % 10) as u8).collect();
        std::fs::write(&path, &text).unwrap();
        // Epoll refuses regular files: the subscriber reads at registration and after
        // each time the guest empties the FIFO.
        let mut vm = stdin_vm(File::open(&path).unwrap());
        let mut got = Vec::new();
        for _ in 0..10 {
            vm.settle();
            got.extend(vm.guest_read_all());
        }
        assert_eq!(got, text);
    }

    #[test]
    fn wait_on_blocks_until_the_first_client_who_then_sees_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let connect_to = path.clone();
        let client = std::thread::spawn(move || loop {
            if let Ok(s) = UnixStream::connect(&connect_to) {
                return s;
            }
            std::thread::sleep(Duration::from_millis(5));
        });
        let mut vm = Vm::new(&SerialOutput::Socket(SocketServer {
            address: SocketAddress::Unix(path.clone()),
            wait: true,
        }));
        let mut client = client.join().unwrap();
        vm.guest_print(b"first byte");
        let mut buf = [0u8; 10];
        client.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"first byte");
        client.write_all(b"k").unwrap();
        assert!(
            vm.run_until(|c| c.input_space() == 63),
            "the waited-for client is read too"
        );
    }
}

//! COM1's backends (`--serial`, QEMU's spellings): where the guest's console output goes
//! and where its console input comes from.
//!
//! | `--serial` | output | input |
//! |---|---|---|
//! | `stdio` (default) | standard output, line buffered | standard input |
//! | `file:PATH` | PATH (created or truncated), line buffered | none |
//! | `null`, `none` | nowhere | none |
//! | `unix:PATH,server[,wait=off]` | the connected client, unbuffered | the connected client |
//! | `tcp:[HOST]:PORT,server[,wait=off]` | the connected client, unbuffered | the connected client |
//!
//! Whatever the backend, the last bytes stay in the bus's console ring for error reports.
//!
//! Socket servers: with `wait` (QEMU's default for `server`; `wait=off` or `nowait` turn
//! it off) [`SerialBackend::open`] prints `waiting for connection on unix:PATH` to
//! standard error and blocks until a client connects, so it sees the guest from its first
//! byte. Without it the guest starts at once and output before a client connects goes
//! only to the ring. One client at a time: a later connection replaces the current one.
//! A client that disconnects, whose socket errors, or that stops reading until a send
//! blocks for 200 ms is dropped silently (output is written on the vCPU thread, which
//! must not stall); the guest runs on, its output goes to the ring until the next client
//! connects. An existing socket
//! file at PATH is replaced, as QEMU does.
//!
//! Input: a reader thread per source (standard input, or each accepted client) moves the
//! bytes into COM1's 64-byte receive FIFO (vm-superio `enqueue_raw_bytes`), waiting while
//! the FIFO is full, so nothing is dropped. `stdio` reads standard input whether or not it
//! is a terminal, as QEMU's `-serial stdio` does; unlike QEMU it leaves a terminal in its
//! normal (cooked) mode, so input reaches the guest a line at a time, the terminal echoes
//! it, and Ctrl-C still stops the VMM. The readers hold only a weak reference to the bus
//! and end when the VM is gone or their source reaches end of file.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use super::bus::{ConsoleSink, LinuxBus, WriteDebug};

/// Where COM1's output goes and its input comes from (`--serial`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SerialOutput {
    /// Output to the VMM's standard output, no input (the library default, so a test
    /// harness's standard input is never read).
    #[default]
    Stdout,
    /// `stdio`: output to standard output, input from standard input.
    Stdio,
    /// A file (created or truncated).
    File(PathBuf),
    /// Nowhere (the last lines are still kept for error reports).
    Null,
    /// A listening socket; output to and input from its connected client.
    Socket(SocketServer),
}

/// A listening socket for the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketServer {
    /// Where to listen.
    pub address: SocketAddress,
    /// Block until the first client connects before the guest starts.
    pub wait: bool,
}

/// The address of a [`SocketServer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketAddress {
    /// A Unix-domain stream socket at this path.
    Unix(PathBuf),
    /// A TCP socket; `host` as given (empty in `tcp::PORT` means every interface).
    Tcp {
        /// Host name or address (IPv6 in brackets).
        host: String,
        /// Port, 1..=65535.
        port: u16,
    },
}

impl fmt::Display for SocketAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketAddress::Unix(path) => write!(f, "unix:{}", path.display()),
            SocketAddress::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
        }
    }
}

/// Parse `--serial`: `stdio`, `file:PATH`, `null` (or `none`), `unix:PATH,server[,...]`
/// or `tcp:[HOST]:PORT,server[,...]`, with the options `server` (`server=on`), `wait=on`,
/// `wait=off` and `nowait`.
pub fn parse_serial(s: &str) -> Result<SerialOutput, String> {
    match s {
        "stdio" => return Ok(SerialOutput::Stdio),
        "null" | "none" => return Ok(SerialOutput::Null),
        _ => {}
    }
    if let Some(path) = s.strip_prefix("file:") {
        return match path {
            "" => Err("file: needs a path".to_string()),
            _ => Ok(SerialOutput::File(PathBuf::from(path))),
        };
    }
    let (address, options) = if let Some(rest) = s.strip_prefix("unix:") {
        let (path, options) = rest.split_once(',').unwrap_or((rest, ""));
        if path.is_empty() {
            return Err("unix: needs a path".to_string());
        }
        (SocketAddress::Unix(PathBuf::from(path)), options)
    } else if let Some(rest) = s.strip_prefix("tcp:") {
        let (hostport, options) = rest.split_once(',').unwrap_or((rest, ""));
        let Some((host, port)) = hostport.rsplit_once(':') else {
            return Err(format!("{s}: expected tcp:HOST:PORT"));
        };
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("{s}: invalid port '{port}' (expected 1..65535)")),
        };
        let host = host.to_string();
        (SocketAddress::Tcp { host, port }, options)
    } else {
        return Err(format!(
            "unknown serial backend '{s}' (expected stdio, file:PATH, null, \
             unix:PATH,server or tcp:HOST:PORT,server)"
        ));
    };
    let (mut server, mut wait) = (false, true);
    for option in options.split(',').filter(|o| !o.is_empty()) {
        match option {
            "server" | "server=on" => server = true,
            "wait" | "wait=on" => wait = true,
            "nowait" | "wait=off" => wait = false,
            _ => {
                return Err(format!(
                    "{s}: unknown option '{option}' (expected server, wait=on, wait=off or nowait)"
                ))
            }
        }
    }
    if !server {
        return Err(format!("{s}: only server mode is supported (add ,server)"));
    }
    Ok(SerialOutput::Socket(SocketServer { address, wait }))
}

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
}

impl SerialError {
    /// True when the user's input is at fault (a path or port that cannot be used).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, SerialError::Accept { .. })
    }
}

/// How long a write to a client may block before the client counts as gone. Output is
/// written on the vCPU thread: a client that stops reading must not stall the guest.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_millis(200);

/// A connected client stream (Unix or TCP).
trait Conn: Read + Write + Send + fmt::Debug {
    fn try_clone_conn(&self) -> io::Result<Box<dyn Conn>>;
}

impl Conn for UnixStream {
    fn try_clone_conn(&self) -> io::Result<Box<dyn Conn>> {
        Ok(Box::new(self.try_clone()?))
    }
}

impl Conn for TcpStream {
    fn try_clone_conn(&self) -> io::Result<Box<dyn Conn>> {
        Ok(Box::new(self.try_clone()?))
    }
}

/// Bound how long sends to `stream` block (`SO_SNDTIMEO`: receives are unaffected, so
/// the reader sharing the socket still blocks normally).
fn unix_client(stream: UnixStream) -> io::Result<Box<dyn Conn>> {
    stream.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT))?;
    Ok(Box::new(stream))
}

#[derive(Debug)]
enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Listener {
    fn bind(address: &SocketAddress) -> io::Result<Self> {
        match address {
            SocketAddress::Unix(path) => {
                // Replace a stale socket from an earlier run, never another kind of file.
                if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
                    std::fs::remove_file(path)?;
                }
                Ok(Listener::Unix(UnixListener::bind(path)?))
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
        match self {
            Listener::Unix(l) => unix_client(l.accept()?.0),
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                // Interactive console: send each write at once.
                s.set_nodelay(true)?;
                s.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT))?;
                Ok(Box::new(s))
            }
        }
    }
}

/// The connected client, shared by the output sink and the accept and reader threads.
/// Each client gets a number so a reader ending late does not drop its successor.
#[derive(Debug, Default)]
struct Current {
    client: Option<(u64, Box<dyn Conn>)>,
    next_id: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Current {
    /// Make `conn` the client (dropping any previous one); returns its number.
    fn replace(&mut self, conn: Box<dyn Conn>) -> u64 {
        self.next_id += 1;
        self.client = Some((self.next_id, conn));
        self.next_id
    }

    /// Drop client `id` if it is still the current one.
    fn drop_client(&mut self, id: u64) {
        if self.client.as_ref().is_some_and(|(c, _)| *c == id) {
            self.client = None;
        }
    }
}

/// Console output to whichever client is connected; nothing when none is. A write error
/// (the client went away, or stopped reading for 200 ms with its socket buffer full)
/// drops the client and is not reported: the guest must neither stop nor stall because of
/// a viewer.
#[derive(Debug, Clone, Default)]
pub struct SocketSink {
    current: Arc<Mutex<Current>>,
}

impl SocketSink {
    /// Whether a client is connected.
    pub fn connected(&self) -> bool {
        lock(&self.current).client.is_some()
    }

    /// Make `stream` the connected client (tests and embedders).
    pub fn attach_unix(&self, stream: UnixStream) -> io::Result<()> {
        lock(&self.current).replace(unix_client(stream)?);
        Ok(())
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

/// Where COM1's input comes from, started once the bus exists
/// ([`SerialInput::start`]).
#[derive(Debug)]
pub struct SerialInput(Input);

#[derive(Debug)]
enum Input {
    None,
    Stdin,
    Socket {
        listener: Listener,
        address: String,
        sink: SocketSink,
    },
}

/// An opened serial backend: the console sink for the bus and the input to start.
#[derive(Debug)]
pub struct SerialBackend {
    /// COM1's output.
    pub sink: ConsoleSink,
    /// COM1's input.
    pub input: SerialInput,
}

impl SerialBackend {
    /// Open `serial`: create the file or bind the socket and, for a socket server with
    /// `wait`, block until the first client connects.
    pub fn open(serial: &SerialOutput) -> Result<Self, SerialError> {
        let (out, input): (Option<Box<dyn WriteDebug>>, SerialInput) = match serial {
            SerialOutput::Stdout => (Some(Box::new(io::stdout())), SerialInput(Input::None)),
            SerialOutput::Stdio => (Some(Box::new(io::stdout())), SerialInput(Input::Stdin)),
            SerialOutput::File(path) => {
                let file =
                    std::fs::File::create(path).map_err(|source| SerialError::CreateFile {
                        path: path.clone(),
                        source,
                    })?;
                (Some(Box::new(file)), SerialInput(Input::None))
            }
            SerialOutput::Null => (None, SerialInput(Input::None)),
            SerialOutput::Socket(server) => return Self::listen(server),
        };
        Ok(Self {
            sink: ConsoleSink::new(out),
            input,
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
            eprintln!("vmm-reference: waiting for connection on {address}");
            let conn = listener.accept().map_err(|source| SerialError::Accept {
                address: address.clone(),
                source,
            })?;
            lock(&sink.current).replace(conn);
        }
        Ok(Self {
            sink: ConsoleSink::unbuffered(Box::new(sink.clone())),
            input: SerialInput(Input::Socket {
                listener,
                address,
                sink,
            }),
        })
    }
}

/// How long a reader waits before retrying a full receive FIFO.
const FIFO_RETRY: Duration = Duration::from_millis(2);

/// Move `data` into COM1's receive FIFO, waiting while it is full. False when the VM is
/// gone.
fn feed(bus: &Weak<LinuxBus>, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        let Some(bus) = bus.upgrade() else {
            return false;
        };
        let n = bus.queue_console_input(data);
        drop(bus);
        data = &data[n..];
        if !data.is_empty() {
            std::thread::sleep(FIFO_RETRY);
        }
    }
    true
}

/// Read `source` into COM1 until end of file, an error, or the VM is gone.
fn pump(mut source: impl Read, bus: &Weak<LinuxBus>) {
    let mut buf = [0u8; 256];
    loop {
        match source.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if !feed(bus, &buf[..n]) {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new().name(name.into()).spawn(f) {
        log::warn!("serial: cannot start the {name} thread ({e}); console input disabled");
    }
}

/// Read the current client of `sink` (client `id`) into COM1; drop it at its end.
fn spawn_client_reader(sink: &SocketSink, id: u64, conn: Box<dyn Conn>, bus: Weak<LinuxBus>) {
    let current = Arc::clone(&sink.current);
    spawn("serial client", move || {
        pump(conn, &bus);
        lock(&current).drop_client(id);
    });
}

impl SerialInput {
    /// Start the reader threads feeding `bus`'s COM1. They are detached: a reader ends
    /// with its source or the VM; a socket's accept thread ends at the first connection
    /// after the VM is gone (or with the process).
    pub fn start(self, bus: &Arc<LinuxBus>) {
        let weak = Arc::downgrade(bus);
        match self.0 {
            Input::None => {}
            Input::Stdin => spawn("serial stdin", move || pump(io::stdin(), &weak)),
            Input::Socket {
                listener,
                address,
                sink,
            } => {
                // The client accepted while waiting, if any.
                let first = {
                    let current = lock(&sink.current);
                    current
                        .client
                        .as_ref()
                        .map(|(id, c)| (*id, c.try_clone_conn()))
                };
                if let Some((id, conn)) = first {
                    match conn {
                        Ok(conn) => spawn_client_reader(&sink, id, conn, weak.clone()),
                        Err(e) => log::warn!("serial: {address}: no input from the client ({e})"),
                    }
                }
                spawn("serial accept", move || loop {
                    let conn = match listener.accept() {
                        Ok(c) => c,
                        Err(e) => {
                            log::warn!("serial: accept on {address} failed ({e}); no more clients");
                            return;
                        }
                    };
                    if weak.strong_count() == 0 {
                        return;
                    }
                    let reader = conn.try_clone_conn();
                    let id = lock(&sink.current).replace(conn);
                    match reader {
                        Ok(r) => spawn_client_reader(&sink, id, r, weak.clone()),
                        Err(e) => log::warn!("serial: {address}: no input from the client ({e})"),
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(path: &str, wait: bool) -> SerialOutput {
        SerialOutput::Socket(SocketServer {
            address: SocketAddress::Unix(path.into()),
            wait,
        })
    }

    fn tcp(host: &str, port: u16, wait: bool) -> SerialOutput {
        SerialOutput::Socket(SocketServer {
            address: SocketAddress::Tcp {
                host: host.into(),
                port,
            },
            wait,
        })
    }

    #[test]
    fn serial_grammar() {
        let rows: &[(&str, Result<SerialOutput, &str>)] = &[
            ("stdio", Ok(SerialOutput::Stdio)),
            ("null", Ok(SerialOutput::Null)),
            ("none", Ok(SerialOutput::Null)),
            ("file:/tmp/x", Ok(SerialOutput::File("/tmp/x".into()))),
            ("file:", Err("file: needs a path")),
            ("unix:/tmp/s,server", Ok(unix("/tmp/s", true))),
            ("unix:/tmp/s,server=on", Ok(unix("/tmp/s", true))),
            ("unix:/tmp/s,server,wait=off", Ok(unix("/tmp/s", false))),
            ("unix:/tmp/s,server,nowait", Ok(unix("/tmp/s", false))),
            ("unix:/tmp/s,wait=off,server", Ok(unix("/tmp/s", false))),
            ("unix:/tmp/s,server,wait=on", Ok(unix("/tmp/s", true))),
            ("unix:", Err("unix: needs a path")),
            ("unix:,server", Err("unix: needs a path")),
            (
                "unix:/tmp/s",
                Err("unix:/tmp/s: only server mode is supported (add ,server)"),
            ),
            (
                "unix:/tmp/s,server,wait=maybe",
                Err(
                    "unix:/tmp/s,server,wait=maybe: unknown option 'wait=maybe' \
                     (expected server, wait=on, wait=off or nowait)",
                ),
            ),
            (
                "tcp:127.0.0.1:4444,server",
                Ok(tcp("127.0.0.1", 4444, true)),
            ),
            ("tcp::4444,server,nowait", Ok(tcp("", 4444, false))),
            (
                "tcp:[::1]:4444,server,wait=off",
                Ok(tcp("[::1]", 4444, false)),
            ),
            (
                "tcp:localhost",
                Err("tcp:localhost: expected tcp:HOST:PORT"),
            ),
            (
                "tcp:localhost:http,server",
                Err("tcp:localhost:http,server: invalid port 'http' (expected 1..65535)"),
            ),
            (
                "tcp:localhost:0,server",
                Err("tcp:localhost:0,server: invalid port '0' (expected 1..65535)"),
            ),
            (
                "tcp:localhost:70000,server",
                Err("tcp:localhost:70000,server: invalid port '70000' (expected 1..65535)"),
            ),
            (
                "tcp:localhost:4444",
                Err("tcp:localhost:4444: only server mode is supported (add ,server)"),
            ),
            (
                "pty",
                Err(
                    "unknown serial backend 'pty' (expected stdio, file:PATH, null, \
                     unix:PATH,server or tcp:HOST:PORT,server)",
                ),
            ),
        ];
        for (input, want) in rows {
            assert_eq!(
                parse_serial(input),
                want.clone().map_err(str::to_string),
                "{input}"
            );
        }
    }

    #[test]
    fn socket_addresses_print_as_given() {
        assert_eq!(
            SocketAddress::Unix("/run/vm.sock".into()).to_string(),
            "unix:/run/vm.sock"
        );
        let tcp = SocketAddress::Tcp {
            host: "[::1]".into(),
            port: 5,
        };
        assert_eq!(tcp.to_string(), "tcp:[::1]:5");
    }

    #[test]
    fn socket_sink_writes_to_the_client_and_survives_its_departure() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let mut sink = SocketSink::default();
        assert!(!sink.connected());
        // No client: the bytes go nowhere, without an error.
        sink.write_all(b"lost\n").unwrap();
        sink.attach_unix(ours).unwrap();
        assert!(sink.connected());
        sink.write_all(b"login: ").unwrap();
        let mut buf = [0u8; 7];
        theirs.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"login: ");

        drop(theirs);
        // The first write after the peer left fails (EPIPE; Rust ignores SIGPIPE) and
        // drops the client; neither it nor later writes report an error.
        for _ in 0..3 {
            sink.write_all(b"more output\n").unwrap();
        }
        assert!(!sink.connected());
    }

    #[test]
    fn a_client_that_stops_reading_does_not_stall_the_guest() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let mut sink = SocketSink::default();
        sink.attach_unix(ours).unwrap();
        let start = std::time::Instant::now();
        // Far more than a socket buffer holds; the peer never reads.
        for _ in 0..16 * 1024 {
            sink.write_all(&[b'x'; 1024]).unwrap();
        }
        assert!(!sink.connected(), "the stalled client is dropped");
        assert!(
            start.elapsed() < CLIENT_WRITE_TIMEOUT * 5,
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn a_later_client_replaces_the_first() {
        let sink = SocketSink::default();
        let (a, mut a_peer) = UnixStream::pair().unwrap();
        let (b, mut b_peer) = UnixStream::pair().unwrap();
        sink.attach_unix(a).unwrap();
        sink.attach_unix(b).unwrap();
        sink.clone().write_all(b"x").unwrap();
        let mut got = [0u8; 1];
        b_peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"x");
        // The first client was closed when replaced.
        let mut rest = Vec::new();
        a_peer.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        // A reader of client 1 ending late does not drop client 2.
        lock(&sink.current).drop_client(1);
        assert!(sink.connected());
        lock(&sink.current).drop_client(2);
        assert!(!sink.connected());
    }

    #[test]
    fn unix_listener_replaces_a_stale_socket_but_not_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let addr = SocketAddress::Unix(path.clone());
        drop(Listener::bind(&addr).unwrap());
        assert!(path.exists(), "the socket file stays after the listener");
        Listener::bind(&addr).expect("a stale socket is replaced");
        let file = dir.path().join("regular");
        std::fs::write(&file, b"keep").unwrap();
        let err = SerialBackend::open(&unix(file.to_str().unwrap(), false)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("--serial: listen on unix:{}", file.display())
        );
        assert!(err.is_bad_input());
        assert_eq!(std::fs::read(&file).unwrap(), b"keep");
    }
}

//! The QMP server on a Unix socket, as a rust-vmm `event-manager` subscriber.
//!
//! One [`QmpServer`] owns the listening socket, every client connection and a wake-up
//! [`EventFd`]; it registers them all on the embedder's [`EventManager`] and does its work
//! in [`MutEventSubscriber::process`], on the thread that runs the loop. It starts no
//! thread, whatever the number of clients.
//!
//! - Sockets are non-blocking. Each client has its own input framer ([`JsonStream`](crate::JsonStream)) and
//!   output buffer; output that the socket does not take now waits for `EPOLLOUT`. A client
//!   whose unsent output passes [`QmpServer::with_output_limit`] is dropped, so a stuck
//!   client never blocks the loop nor grows without bound.
//! - Events: the server subscribes to the monitor's [`EventSink`], which any thread may feed;
//!   an event is queued and the wake-up `EventFd` written, and the loop hands each event, in
//!   emission order, to every negotiated client as one whole line between replies. Events a
//!   command emits itself (`stop` emits `STOP`) reach every client before that command's
//!   reply is queued, as in QEMU; those a command defers (`DEVICE_DELETED`) follow it.
//! - `quit`: once the reply is queued, the backend's
//!   [`MonitorBackend::quit`](crate::MonitorBackend::quit) is called and `SHUTDOWN` queued
//!   for every client; then what the sockets take is flushed, every connection is closed,
//!   the socket file removed, and [`ServerHandle::quit_requested`] turns true. Requests
//!   after `quit` are not executed.
//!
//! [`EventManager`]: event_manager::EventManager

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use serde_json::Value;
use vmm_sys_util::eventfd::EventFd;

use crate::client::{to_line, Client, ReadOutcome};
use crate::commands::Monitor;
use crate::events::EventSink;
use crate::socket::{bind_private, remove_if_same, Identity};

/// Default bound on a client's unsent output ([`QmpServer::with_output_limit`]).
pub const DEFAULT_OUTPUT_LIMIT: usize = 4 << 20;

/// Events kept for the loop at most; past it the oldest are dropped (the loop is not being
/// run, or something emits events without end).
pub const MAX_QUEUED_EVENTS: usize = 4096;

/// Bytes read from one client per readiness event, so a flooding client cannot starve the
/// others (the loop is level-triggered: the rest is read on the next round).
const READ_CHUNK: usize = 64 * 1024;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Something that is not a socket exists at the path.
    #[error("cannot create the QMP socket {path}: a file that is not a socket exists there")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// Another process serves the socket.
    #[error("cannot create the QMP socket {path}: another process is listening on it")]
    InUse {
        /// The path.
        path: PathBuf,
    },
    /// Creating, binding or moving the socket failed.
    #[error("cannot create the QMP socket {path}")]
    Bind {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The wake-up event could not be created.
    #[error("cannot create the QMP server's wake-up event")]
    WakeEvent(#[source] io::Error),
}

/// State the server shares with [`ServerHandle`]s.
#[derive(Debug)]
struct Shared {
    wake: EventFd,
    /// Serialised events waiting for the loop, oldest first.
    queue: Mutex<VecDeque<String>>,
    quit: AtomicBool,
    shutdown: AtomicBool,
    closed: AtomicBool,
    accepted: AtomicU64,
    connected: AtomicUsize,
}

impl Shared {
    fn take_events(&self) -> Vec<String> {
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        q.drain(..).collect()
    }
}

/// A cheap, thread-safe view of a [`QmpServer`] that lives inside an event loop: its state
/// flags and a shutdown request.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

impl ServerHandle {
    /// Whether a client's `quit` was executed. The server has then closed every connection
    /// and removed its socket; stop running the loop for it.
    pub fn quit_requested(&self) -> bool {
        self.shared.quit.load(Ordering::SeqCst)
    }

    /// Connections accepted so far. `wait=on`: start the guest once this is non-zero.
    pub fn clients_accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn clients_connected(&self) -> usize {
        self.shared.connected.load(Ordering::SeqCst)
    }

    /// Whether the server has closed its socket and connections (after `quit`, a shutdown
    /// request, or a failed registration).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// Asks the server to close every connection and remove its socket. Callable from any
    /// thread; the loop does it on its next round. Dropping the server does the same.
    pub fn shutdown(&self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        let _ = self.shared.wake.write(1);
    }
}

/// A QMP socket bound and listening, not served yet; dropped unused, it removes its file.
#[derive(Debug)]
pub struct QmpListener {
    path: PathBuf,
    listener: Option<UnixListener>,
    identity: Identity,
}

impl QmpListener {
    /// Bind the socket at `path` with the same safety as [`QmpServer::bind`].
    pub fn bind(path: &Path) -> Result<Self, ServerError> {
        let (listener, identity) = bind_private(path)?;
        Ok(Self {
            path: path.to_owned(),
            listener: Some(listener),
            identity,
        })
    }

    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn into_parts(mut self) -> (PathBuf, UnixListener, Identity) {
        let listener = self.listener.take().expect("a listener is consumed once");
        (std::mem::take(&mut self.path), listener, self.identity)
    }
}

impl Drop for QmpListener {
    fn drop(&mut self) {
        if self.listener.is_some() {
            remove_if_same(&self.path, self.identity);
        }
    }
}

/// The QMP server: a [`MutEventSubscriber`] serving a [`Monitor`] on a Unix socket.
///
/// Dropping it closes every connection and removes the socket file (if it is still the
/// one it created).
pub struct QmpServer {
    path: PathBuf,
    identity: Identity,
    listener: Option<UnixListener>,
    clients: HashMap<RawFd, Client>,
    monitor: Monitor,
    shared: Arc<Shared>,
    subscription: Option<u64>,
    output_limit: usize,
    on_first_client: Option<Box<dyn FnOnce() + Send>>,
    read_buf: Vec<u8>,
}

impl std::fmt::Debug for QmpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QmpServer")
            .field("path", &self.path)
            .field("clients", &self.clients.len())
            .field("closed", &self.listener.is_none())
            .finish_non_exhaustive()
    }
}

impl QmpServer {
    /// Creates the socket at `path` (mode 0600) for serving `monitor`. Nothing is served
    /// until the server is added to an event loop; connections made before wait in the
    /// listen backlog.
    pub fn bind(path: &Path, monitor: Monitor) -> Result<Self, ServerError> {
        Self::from_listener(QmpListener::bind(path)?, monitor)
    }

    /// Serve `monitor` on a socket bound earlier (for example before the process gave
    /// up the privileges the socket's directory needs).
    pub fn from_listener(bound: QmpListener, monitor: Monitor) -> Result<Self, ServerError> {
        let wake = EventFd::new(libc::EFD_NONBLOCK).map_err(ServerError::WakeEvent)?;
        let (path, listener, identity) = bound.into_parts();
        let path = path.as_path();
        let shared = Arc::new(Shared {
            wake,
            queue: Mutex::new(VecDeque::new()),
            quit: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            connected: AtomicUsize::new(0),
        });
        let queue = shared.clone();
        let subscription = monitor.events().subscribe(Box::new(move |line| {
            let mut q = queue.queue.lock().unwrap_or_else(PoisonError::into_inner);
            if q.len() >= MAX_QUEUED_EVENTS {
                q.pop_front();
                log::warn!("QMP event queue full: the oldest event was dropped");
            }
            // Every message ends with CRLF on the wire, as QEMU sends them.
            q.push_back(format!("{}\r\n", line.trim_end()));
            drop(q);
            let _ = queue.wake.write(1);
            true
        }));
        log::info!("QMP monitor listening on {}", path.display());
        Ok(QmpServer {
            path: path.to_owned(),
            identity,
            listener: Some(listener),
            clients: HashMap::new(),
            monitor,
            shared,
            subscription: Some(subscription),
            output_limit: DEFAULT_OUTPUT_LIMIT,
            on_first_client: None,
            read_buf: vec![0; READ_CHUNK],
        })
    }

    /// Sets the bound on a client's unsent output, in bytes; a client past it is dropped.
    pub fn with_output_limit(mut self, bytes: usize) -> Self {
        self.output_limit = bytes;
        self
    }

    /// Calls `f` on the loop thread when the first client connects (`wait=on`: start the
    /// guest there, or write an `EventFd` the embedder watches).
    pub fn on_first_client(mut self, f: impl FnOnce() + Send + 'static) -> Self {
        self.on_first_client = Some(Box::new(f));
        self
    }

    /// A handle to the server's state, usable after the server moved into the loop.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: self.shared.clone(),
        }
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The monitor being served (its [`EventSink`] is for the VMM).
    pub fn monitor(&self) -> &Monitor {
        &self.monitor
    }

    fn events(&self) -> &EventSink {
        self.monitor.events()
    }

    fn accept(&mut self, ops: &mut EventOps) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: the connection stays in the backlog until the
                    // next readiness round.
                    log::warn!("QMP accept failed: {e}");
                    return;
                }
            };
            if let Err(e) = stream.set_nonblocking(true) {
                log::warn!("QMP client dropped: {e}");
                continue;
            }
            if let Err(e) = ops.add(Events::new(&stream, EventSet::IN)) {
                log::warn!("QMP client dropped: cannot watch its socket: {e}");
                continue;
            }
            let fd = stream.as_raw_fd();
            let mut client = Client::new(stream);
            client.push(&to_line(&self.monitor.greeting()));
            self.clients.insert(fd, client);
            self.shared.accepted.fetch_add(1, Ordering::SeqCst);
            if let Some(f) = self.on_first_client.take() {
                f();
            }
        }
    }

    /// Queues `lines` for every negotiated client.
    fn broadcast(&mut self, lines: &[String]) {
        if lines.is_empty() {
            return;
        }
        for c in self.clients.values_mut() {
            if c.session.negotiated() {
                for l in lines {
                    c.push(l);
                }
            }
        }
    }

    /// Executes one framed input of client `fd`; returns `false` after `quit`.
    fn execute(&mut self, fd: RawFd, item: Result<Value, crate::QmpError>) -> bool {
        let Some(client) = self.clients.get_mut(&fd) else {
            return true;
        };
        let was_negotiated = client.session.negotiated();
        let out = self.monitor.handle(&mut client.session, item);
        // Events the command emitted (or any thread emitted meanwhile) precede the reply
        // for every client that was already receiving events; a client that negotiated
        // just now gets them after its `qmp_capabilities` reply.
        let lines = self.shared.take_events();
        for (other, c) in self.clients.iter_mut() {
            if *other == fd {
                if was_negotiated {
                    lines.iter().for_each(|l| c.push(l));
                }
                c.push(&to_line(&out.reply));
                if !was_negotiated && c.session.negotiated() {
                    lines.iter().for_each(|l| c.push(l));
                }
            } else if c.session.negotiated() {
                lines.iter().for_each(|l| c.push(l));
            }
        }
        for e in &out.events_after {
            self.events().send(e);
        }
        if out.quit {
            self.monitor.finish_quit();
        }
        let after = self.shared.take_events();
        self.broadcast(&after);
        !out.quit
    }

    /// Reads from client `fd` and executes every complete request; returns `false` after
    /// `quit`.
    fn serve_input(&mut self, fd: RawFd) -> bool {
        let Some(client) = self.clients.get_mut(&fd) else {
            return true;
        };
        if client.eof || client.read(&mut self.read_buf) != ReadOutcome::Data {
            return true;
        }
        loop {
            let Some(client) = self.clients.get_mut(&fd) else {
                return true;
            };
            // A client that sends faster than it reads stops being served here; `settle`
            // drops it.
            if client.pending() > self.output_limit {
                return true;
            }
            let Some(item) = client.framer.next_value() else {
                return true;
            };
            if !self.execute(fd, item) {
                return false;
            }
        }
    }

    /// Writes pending output of every client, updates what the loop watches, and drops
    /// clients that failed, hung up with nothing left to send, or passed the output bound.
    fn settle(&mut self, ops: &mut EventOps) {
        let mut gone = Vec::new();
        for (fd, c) in self.clients.iter_mut() {
            c.flush();
            if c.pending() > self.output_limit {
                log::warn!(
                    "QMP client dropped: more than {} bytes unread",
                    self.output_limit
                );
                c.dead = true;
            }
            if c.dead || (c.eof && c.pending() == 0) {
                gone.push(*fd);
                continue;
            }
            let wanted = c.wanted();
            if wanted != c.watched {
                if ops.modify(Events::new(&c.stream, wanted)).is_err() {
                    gone.push(*fd);
                    continue;
                }
                c.watched = wanted;
            }
        }
        for fd in gone {
            if let Some(c) = self.clients.remove(&fd) {
                let _ = ops.remove(Events::empty(&c.stream));
            }
        }
        self.shared
            .connected
            .store(self.clients.len(), Ordering::SeqCst);
    }

    /// Sends the events still queued (a guest's SHUTDOWN just before the VMM exits),
    /// flushes what the sockets take now, closes every connection and the listener, and
    /// removes the socket file.
    fn close(&mut self, mut ops: Option<&mut EventOps>) {
        if self.listener.is_some() {
            let lines = self.shared.take_events();
            self.broadcast(&lines);
        }
        for (_, mut c) in self.clients.drain() {
            c.flush();
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
            if let Some(ops) = ops.as_deref_mut() {
                let _ = ops.remove(Events::empty(&c.stream));
            }
        }
        if let Some(listener) = self.listener.take() {
            if let Some(ops) = ops.as_deref_mut() {
                let _ = ops.remove(Events::empty(&listener));
            }
            remove_if_same(&self.path, self.identity);
        }
        if let Some(id) = self.subscription.take() {
            self.monitor.events().unsubscribe(id);
        }
        if let Some(ops) = ops {
            let _ = ops.remove(Events::empty(&self.shared.wake));
        }
        self.shared.connected.store(0, Ordering::SeqCst);
        self.shared.closed.store(true, Ordering::SeqCst);
    }
}

impl MutEventSubscriber for QmpServer {
    fn init(&mut self, ops: &mut EventOps) {
        let registered = match &self.listener {
            Some(l) => ops
                .add(Events::new(l, EventSet::IN))
                .and_then(|()| ops.add(Events::new(&self.shared.wake, EventSet::IN))),
            None => return,
        };
        if let Err(e) = registered {
            log::error!("QMP server cannot join the event loop: {e}");
            self.close(Some(ops));
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        if self.listener.is_none() {
            return;
        }
        let fd = events.fd();
        if fd == self.shared.wake.as_raw_fd() {
            let _ = self.shared.wake.read();
            if self.shared.shutdown.load(Ordering::SeqCst) {
                self.close(Some(ops));
                return;
            }
            let lines = self.shared.take_events();
            self.broadcast(&lines);
        } else if self.listener.as_ref().map(AsRawFd::as_raw_fd) == Some(fd) {
            self.accept(ops);
        } else if let Some(c) = self.clients.get_mut(&fd) {
            let set = events.event_set();
            if set.contains(EventSet::ERROR) {
                c.dead = true;
            } else if set.intersects(EventSet::IN | EventSet::HANG_UP) && !self.serve_input(fd) {
                self.shared.quit.store(true, Ordering::SeqCst);
                self.close(Some(ops));
                return;
            }
        }
        self.settle(ops);
    }
}

impl Drop for QmpServer {
    fn drop(&mut self) {
        self.close(None);
    }
}

//! The QMP server on a Unix socket: one accept thread, one thread per client.
//!
//! Threads: the accept thread polls the listening socket and a stop [`EventFd`]; each client
//! thread reads, frames and executes requests in order and writes each reply whole under
//! the connection's writer lock, which events for that client also take, so a reply and an
//! event never interleave. A client that vanishes only ends its own thread.
//!
//! The socket is created with mode 0600 inside a fresh 0700 directory and renamed into
//! place, so it is never reachable with a looser mode. It is removed when the server stops,
//! if it is still the same file.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::poll::PollContext;

use super::commands::Monitor;
use super::protocol::{JsonStream, Session};

/// How long a write to a client may block before the client is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// The stop event or poll set could not be created.
    #[error("cannot set up the QMP server event loop")]
    EventLoop(#[source] io::Error),
    /// The accept thread could not be spawned.
    #[error("cannot start the QMP server thread")]
    Spawn(#[source] io::Error),
}

#[derive(Default)]
struct Shared {
    clients_seen: Mutex<u64>,
    client_arrived: Condvar,
}

/// A running QMP server. Dropping it stops the server and removes the socket.
pub struct QmpServer {
    path: PathBuf,
    identity: (u64, u64),
    stop: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    monitor: Monitor,
}

impl std::fmt::Debug for QmpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QmpServer")
            .field("path", &self.path)
            .field("running", &!self.is_finished())
            .finish_non_exhaustive()
    }
}

fn bind_error(path: &Path) -> impl FnOnce(io::Error) -> ServerError + '_ {
    move |source| ServerError::Bind {
        path: path.to_owned(),
        source,
    }
}

/// Creates the listening socket at `path` with mode 0600 without a window where it has a
/// looser mode: bind in a private directory, chmod, then rename into place.
fn bind_private(path: &Path) -> Result<(UnixListener, (u64, u64)), ServerError> {
    match fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => {
            return Err(ServerError::NotASocket {
                path: path.to_owned(),
            })
        }
        Ok(_) if UnixStream::connect(path).is_ok() => {
            return Err(ServerError::InUse {
                path: path.to_owned(),
            })
        }
        // A stale socket of a dead process: replaced by the rename below.
        _ => {}
    }
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let private = parent.join(format!(
        ".qmp-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(bind_error(path))?;
    let tmp = private.join("s");
    let result = (|| {
        let listener = UnixListener::bind(&tmp)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
        fs::rename(&tmp, path)?;
        let m = fs::symlink_metadata(path)?;
        Ok((listener, (m.dev(), m.ino())))
    })();
    let _ = fs::remove_file(&tmp);
    let _ = fs::remove_dir(&private);
    result.map_err(bind_error(path))
}

impl QmpServer {
    /// Creates the socket at `path` and starts serving `monitor` on it.
    pub fn start(path: &Path, monitor: Monitor) -> Result<Self, ServerError> {
        let (listener, identity) = bind_private(path)?;
        let cleanup = |e| {
            remove_if_same(path, identity);
            e
        };
        listener
            .set_nonblocking(true)
            .map_err(|e| cleanup(bind_error(path)(e)))?;
        let stop = Arc::new(
            EventFd::new(libc::EFD_NONBLOCK).map_err(|e| cleanup(ServerError::EventLoop(e)))?,
        );
        let shared = Arc::new(Shared::default());
        let thread = {
            let (stop, shared, monitor) = (stop.clone(), shared.clone(), monitor.clone());
            std::thread::Builder::new()
                .name("qmp".into())
                .spawn(move || accept_loop(listener, stop, shared, monitor))
                .map_err(|e| cleanup(ServerError::Spawn(e)))?
        };
        log::info!("QMP monitor listening on {}", path.display());
        Ok(QmpServer {
            path: path.to_owned(),
            identity,
            stop,
            thread: Some(thread),
            shared,
            monitor,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The monitor being served (its [`EventSink`](super::EventSink) is for the VMM).
    pub fn monitor(&self) -> &Monitor {
        &self.monitor
    }

    /// Blocks until a client has connected (`wait=on`) or `timeout` passes; returns whether
    /// one did.
    pub fn wait_for_client(&self, timeout: Duration) -> bool {
        let seen = self
            .shared
            .clients_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (seen, _) = self
            .shared
            .client_arrived
            .wait_timeout_while(seen, timeout, |n| *n == 0)
            .unwrap_or_else(PoisonError::into_inner);
        *seen > 0
    }

    /// Whether the server has stopped (after `quit` or [`QmpServer::shutdown`]).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Blocks until the server stops by itself, i.e. after a client's `quit`.
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Stops serving: disconnects every client, waits for the threads, removes the socket.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for QmpServer {
    fn drop(&mut self) {
        let _ = self.stop.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        remove_if_same(&self.path, self.identity);
    }
}

/// Removes the socket file if it is still the one this server created.
fn remove_if_same(path: &Path, identity: (u64, u64)) {
    if let Ok(m) = fs::symlink_metadata(path) {
        if (m.dev(), m.ino()) == identity {
            let _ = fs::remove_file(path);
        }
    }
}

const LISTENER: u32 = 0;
const STOP: u32 = 1;

struct Client {
    stream: UnixStream,
    thread: JoinHandle<()>,
}

fn accept_loop(listener: UnixListener, stop: Arc<EventFd>, shared: Arc<Shared>, monitor: Monitor) {
    let ctx = match PollContext::<u32>::new()
        .and_then(|c| c.add(&listener, LISTENER).map(|()| c))
        .and_then(|c| c.add(stop.as_ref(), STOP).map(|()| c))
    {
        Ok(c) => c,
        Err(e) => {
            log::error!("QMP server cannot poll: {e}");
            return;
        }
    };
    let mut clients: Vec<Client> = Vec::new();
    'serve: loop {
        let events = match ctx.wait() {
            Ok(ev) => ev,
            Err(e) if e.errno() == libc::EINTR => continue,
            Err(e) => {
                log::error!("QMP server poll failed: {e}");
                break;
            }
        };
        for ev in events.iter_readable() {
            if ev.token() == STOP {
                break 'serve;
            }
        }
        loop {
            match listener.accept() {
                Ok((stream, _)) => match spawn_client(stream, &monitor, &stop) {
                    Ok(c) => {
                        clients.push(c);
                        let mut n = shared
                            .clients_seen
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner);
                        *n += 1;
                        shared.client_arrived.notify_all();
                    }
                    Err(e) => log::warn!("QMP client dropped: {e}"),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("QMP accept failed: {e}");
                    break;
                }
            }
        }
        let (done, live): (Vec<_>, Vec<_>) =
            clients.drain(..).partition(|c| c.thread.is_finished());
        clients = live;
        for c in done {
            let _ = c.thread.join();
        }
    }
    for c in &clients {
        let _ = c.stream.shutdown(std::net::Shutdown::Both);
    }
    for c in clients {
        let _ = c.thread.join();
    }
}

fn spawn_client(stream: UnixStream, monitor: &Monitor, stop: &Arc<EventFd>) -> io::Result<Client> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let control = stream.try_clone()?;
    let (monitor, stop) = (monitor.clone(), stop.clone());
    let thread = std::thread::Builder::new()
        .name("qmp client".into())
        .spawn(move || serve_client(stream, &monitor, &stop))?;
    Ok(Client {
        stream: control,
        thread,
    })
}

/// One client's outgoing side. Events that arrive between subscribing and the end of
/// the `qmp_capabilities` reply are held back, so they follow that reply and none is lost.
struct Conn {
    stream: UnixStream,
    ready: bool,
    held: Vec<String>,
}

/// Events held for a client whose negotiation reply is still being written.
const MAX_HELD_EVENTS: usize = 64;

/// Writes one whole message; a failure shuts the connection down so its reader ends too.
fn write_locked(conn: &mut Conn, line: &str) -> bool {
    let ok = conn.stream.write_all(line.as_bytes()).is_ok();
    if !ok {
        let _ = conn.stream.shutdown(std::net::Shutdown::Both);
    }
    ok
}

fn write_message(conn: &Mutex<Conn>, line: &str) -> bool {
    write_locked(
        &mut conn.lock().unwrap_or_else(PoisonError::into_inner),
        line,
    )
}

/// Delivers an event to one client (the [`EventSink`](super::EventSink) subscriber).
fn deliver_event(conn: &Mutex<Conn>, line: &str) -> bool {
    let mut c = conn.lock().unwrap_or_else(PoisonError::into_inner);
    if c.ready {
        write_locked(&mut c, line)
    } else if c.held.len() < MAX_HELD_EVENTS {
        c.held.push(line.to_owned());
        true
    } else {
        false
    }
}

fn to_line(v: &Value) -> String {
    let mut s = v.to_string();
    s.push_str("\r\n");
    s
}

fn serve_client(mut reader: UnixStream, monitor: &Monitor, stop: &EventFd) {
    let conn = match reader.try_clone() {
        Ok(stream) => Arc::new(Mutex::new(Conn {
            stream,
            ready: false,
            held: Vec::new(),
        })),
        Err(_) => return,
    };
    if !write_message(&conn, &to_line(&monitor.greeting())) {
        return;
    }
    let mut session = Session::new();
    let mut subscription = None;
    let mut framer = JsonStream::new();
    let mut buf = [0u8; 4096];
    'conn: loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        framer.push(&buf[..n]);
        while let Some(item) = framer.next_value() {
            let out = monitor.handle(&mut session, item);
            let newly_negotiated = session.negotiated() && subscription.is_none();
            if newly_negotiated {
                // Subscribe before the reply goes out, so no event emitted after the
                // client has seen the reply can miss it; held events follow the reply.
                let c = conn.clone();
                subscription = Some(
                    monitor
                        .events()
                        .subscribe(Box::new(move |line| deliver_event(&c, line))),
                );
            }
            {
                let mut c = conn.lock().unwrap_or_else(PoisonError::into_inner);
                let mut ok = write_locked(&mut c, &to_line(&out.reply));
                if newly_negotiated {
                    for line in std::mem::take(&mut c.held) {
                        ok = ok && write_locked(&mut c, &line);
                    }
                    c.ready = true;
                }
                if !ok {
                    break 'conn;
                }
            }
            for e in &out.events_after {
                monitor.events().send(e);
            }
            if out.quit {
                monitor.finish_quit();
                let _ = stop.write(1);
                break 'conn;
            }
        }
    }
    if let Some(id) = subscription {
        monitor.events().unsubscribe(id);
    }
}

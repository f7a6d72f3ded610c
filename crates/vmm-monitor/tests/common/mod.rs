//! A server on its own event-manager thread, and a line-oriented raw client.

#![allow(dead_code)] // each test binary uses its own part

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use event_manager::{EventManager, SubscriberOps};
use serde_json::{json, Value};
use vmm_monitor::{EventSink, FakeBackend, Monitor, QmpServer, ServerHandle};

/// A server running on an event loop in a thread of its own, as an embedder's main thread
/// would run it.
pub struct Rig {
    pub fake: Arc<FakeBackend>,
    pub events: EventSink,
    pub handle: ServerHandle,
    pub path: PathBuf,
    thread: Option<JoinHandle<()>>,
}

pub fn fake_monitor() -> (Arc<FakeBackend>, EventSink, Monitor) {
    let fake = Arc::new(FakeBackend::new(1, 4, 1, 2));
    let events = EventSink::new();
    let monitor = Monitor::new(fake.clone(), events.clone());
    (fake, events, monitor)
}

impl Rig {
    pub fn start(dir: &Path) -> Rig {
        Rig::start_with(dir, |s| s)
    }

    /// Starts a server configured by `configure` (output limit, first-client callback).
    pub fn start_with(dir: &Path, configure: impl FnOnce(QmpServer) -> QmpServer) -> Rig {
        let (fake, events, monitor) = fake_monitor();
        let path = dir.join("qmp.sock");
        let server = configure(QmpServer::bind(&path, monitor).unwrap());
        let handle = server.handle();
        let h = handle.clone();
        let thread = std::thread::spawn(move || {
            let mut event_loop = EventManager::<QmpServer>::new().unwrap();
            event_loop.add_subscriber(server);
            while !h.is_closed() {
                event_loop.run().unwrap();
            }
        });
        Rig {
            fake,
            events,
            handle,
            path,
            thread: Some(thread),
        }
    }

    /// Waits for the loop thread to end (after `quit` or a shutdown request).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub struct Client {
    pub reader: BufReader<UnixStream>,
    pub writer: UnixStream,
}

impl Client {
    pub fn connect(path: &Path) -> (Client, Value) {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut c = Client {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        };
        let greeting = c.recv();
        (c, greeting)
    }

    pub fn negotiated(path: &Path) -> Client {
        let (mut c, _) = Client::connect(path);
        assert_eq!(
            c.call(r#"{"execute":"qmp_capabilities"}"#),
            json!({"return": {}})
        );
        c
    }

    pub fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).unwrap();
    }

    pub fn recv(&mut self) -> Value {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).unwrap();
        assert!(n > 0, "connection closed");
        assert!(line.ends_with("\r\n"), "partial message {line:?}");
        serde_json::from_str(&line).unwrap()
    }

    pub fn call(&mut self, text: &str) -> Value {
        self.send(&format!("{text}\n"));
        self.recv()
    }
}

/// Threads of this process now.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Runs `tests/qmp/SCRIPT ARGS...` with python3 and returns its stdout; fails when the
/// script fails or `qemu.qmp` is missing.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/qmp")
        .join(script);
    let out = Command::new("python3")
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): pip install qemu.qmp"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stdout.contains("MISSING qemu.qmp"),
        "the qemu.qmp Python package is missing: pip install qemu.qmp"
    );
    assert!(
        out.status.success(),
        "{} failed\nstdout:\n{stdout}\nstderr:\n{stderr}",
        script.display()
    );
    stdout
}

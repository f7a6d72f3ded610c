//! The QMP monitor over a real Unix socket, with the in-memory `FakeBackend` (no KVM), and
//! the stock `qemu.qmp` Python client against it.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use vmm_reference::monitor::{EventSink, FakeBackend, Monitor, MonitorBackend, QmpServer};

fn start(dir: &Path) -> (QmpServer, Arc<FakeBackend>, PathBuf) {
    let fake = Arc::new(FakeBackend::new(1, 4, 1, 2));
    let path = dir.join("qmp.sock");
    let monitor = Monitor::new(fake.clone(), EventSink::new());
    let server = QmpServer::start(&path, monitor).unwrap();
    (server, fake, path)
}

struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    fn connect(path: &Path) -> (Client, Value) {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut c = Client {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        };
        let greeting = c.recv();
        (c, greeting)
    }

    fn negotiated(path: &Path) -> Client {
        let (mut c, _) = Client::connect(path);
        assert_eq!(
            c.call(r#"{"execute":"qmp_capabilities"}"#),
            json!({"return": {}})
        );
        c
    }

    fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).unwrap();
    }

    fn recv(&mut self) -> Value {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).unwrap();
        assert!(n > 0, "connection closed");
        assert!(line.ends_with('\n'), "partial message {line:?}");
        serde_json::from_str(&line).unwrap()
    }

    fn call(&mut self, text: &str) -> Value {
        self.send(&format!("{text}\n"));
        self.recv()
    }
}

#[test]
fn greeting_and_negotiation_required() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, _fake, path) = start(dir.path());
    let (mut c, greeting) = Client::connect(&path);
    assert_eq!(greeting["QMP"]["capabilities"], json!([]));
    assert_eq!(greeting["QMP"]["version"]["qemu"]["major"], json!(9));
    assert_eq!(
        c.call(r#"{"execute":"query-status","id":1}"#),
        json!({"error": {"class": "CommandNotFound",
               "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}, "id": 1})
    );
    assert_eq!(
        c.call(r#"{"execute":"qmp_capabilities"}"#),
        json!({"return": {}})
    );
    assert_eq!(
        c.call(r#"{"execute":"query-status","id":"x"}"#),
        json!({"return": {"running": true, "singlestep": false, "status": "running"}, "id": "x"})
    );
}

#[test]
fn malformed_json_then_good_command() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, _fake, path) = start(dir.path());
    let mut c = Client::negotiated(&path);
    let err = c.call(r#"{"execute": "query-kvm", oops}"#);
    assert_eq!(err["error"]["class"], json!("GenericError"));
    assert!(err["error"]["desc"]
        .as_str()
        .unwrap()
        .starts_with("JSON parse error, "));
    // Not newline-delimited, and split in the middle of a value.
    c.send(r#"{"execute": "query-kvm", "id": 1}{"execute": "query"#);
    assert_eq!(
        c.recv(),
        json!({"return": {"enabled": true, "present": true}, "id": 1})
    );
    std::thread::sleep(Duration::from_millis(50));
    c.send(r#"-status", "id": 2}"#);
    assert_eq!(c.recv()["id"], json!(2));
}

#[test]
fn two_clients_interleave_and_get_their_own_replies() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, _fake, path) = start(dir.path());
    let mut a = Client::negotiated(&path);
    let (mut b, _) = Client::connect(&path);
    // b is not negotiated yet: its own state, independent of a.
    assert_eq!(
        b.call(r#"{"execute":"query-kvm","id":"b0"}"#)["error"]["class"],
        json!("CommandNotFound")
    );
    assert_eq!(
        b.call(r#"{"execute":"qmp_capabilities"}"#),
        json!({"return": {}})
    );
    let threads: Vec<_> = [
        (a.writer.try_clone().unwrap(), "a"),
        (b.writer.try_clone().unwrap(), "b"),
    ]
    .into_iter()
    .map(|(mut w, tag)| {
        std::thread::spawn(move || {
            for i in 0..50 {
                let req = json!({"execute": "query-cpus-fast", "id": format!("{tag}{i}")});
                w.write_all(format!("{req}\n").as_bytes()).unwrap();
            }
        })
    })
    .collect();
    for t in threads {
        t.join().unwrap();
    }
    for (client, tag) in [(&mut a, "a"), (&mut b, "b")] {
        for i in 0..50 {
            let r = client.recv();
            assert_eq!(r["id"], json!(format!("{tag}{i}")));
            assert_eq!(r["return"].as_array().unwrap().len(), 2);
        }
    }
}

#[test]
fn client_disconnecting_mid_request_disturbs_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let (server, fake, path) = start(dir.path());
    let mut stay = Client::negotiated(&path);
    {
        let mut gone = Client::negotiated(&path);
        gone.send(r#"{"execute": "stop", "argu"#);
    }
    {
        // A complete request whose reply has nowhere to go.
        let mut gone = Client::negotiated(&path);
        gone.send("{\"execute\": \"query-cpus-fast\"}\n");
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(fake.status().as_str(), "running");
    assert_eq!(
        stay.call(r#"{"execute":"query-kvm"}"#)["return"]["enabled"],
        json!(true)
    );
    assert!(!server.is_finished());
}

#[test]
fn events_reach_negotiated_clients_only() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _fake, path) = start(dir.path());
    let mut a = Client::negotiated(&path);
    let mut b = Client::negotiated(&path);
    let (mut raw, _) = Client::connect(&path);
    assert_eq!(
        a.call(r#"{"execute":"stop","id":1}"#)["event"],
        json!("STOP")
    );
    assert_eq!(a.recv(), json!({"return": {}, "id": 1}));
    let ev = b.recv();
    assert_eq!(ev["event"], json!("STOP"));
    let ts = &ev["timestamp"];
    assert!(ts["seconds"].as_u64().unwrap() > 1_600_000_000);
    assert!(ts["microseconds"].as_u64().unwrap() < 1_000_000);
    // The backend's own events reach clients through the same sink.
    server.monitor().events().emit(
        "SHUTDOWN",
        json!({"guest": true, "reason": "guest-shutdown"}),
    );
    assert_eq!(a.recv()["data"]["reason"], json!("guest-shutdown"));
    assert_eq!(b.recv()["event"], json!("SHUTDOWN"));
    // The un-negotiated client got nothing: its next message is its own reply.
    assert_eq!(
        raw.call(r#"{"execute":"qmp_capabilities","id":"r"}"#),
        json!({"return": {}, "id": "r"})
    );
    // device_del: reply first, then DEVICE_DELETED to everyone.
    a.call(r#"{"execute":"device_add","arguments":{"driver":"qemu64-x86_64-cpu","id":"cpu3","socket-id":0,"core-id":3,"thread-id":0}}"#);
    assert_eq!(
        a.call(r#"{"execute":"device_del","arguments":{"id":"cpu3"}}"#),
        json!({"return": {}})
    );
    for c in [&mut a, &mut b, &mut raw] {
        let ev = c.recv();
        assert_eq!(ev["event"], json!("DEVICE_DELETED"));
        assert_eq!(
            ev["data"],
            json!({"device": "cpu3", "path": "/machine/peripheral/cpu3"})
        );
    }
}

#[test]
fn socket_mode_is_0600_and_quit_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (server, fake, path) = start(dir.path());
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // No leftovers of the private bind directory.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("qmp.sock")]);

    let mut other = Client::negotiated(&path);
    let mut c = Client::negotiated(&path);
    assert_eq!(
        c.call(r#"{"execute":"quit","id":"bye"}"#),
        json!({"return": {}, "id": "bye"})
    );
    let ev = c.recv();
    assert_eq!(ev["event"], json!("SHUTDOWN"));
    assert_eq!(
        ev["data"],
        json!({"guest": false, "reason": "host-qmp-quit"})
    );
    assert_eq!(other.recv()["event"], json!("SHUTDOWN"));
    // Then every connection is closed and the server ends by itself.
    let mut rest = String::new();
    assert_eq!(other.reader.read_to_string(&mut rest).unwrap(), 0);
    server.join();
    assert!(fake.quit_called());
    assert!(!path.exists());
}

#[test]
fn start_refuses_busy_or_foreign_paths_and_replaces_stale_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _fake, path) = start(dir.path());
    let monitor = || Monitor::new(Arc::new(FakeBackend::new(1, 1, 1, 1)), EventSink::new());
    let err = QmpServer::start(&path, monitor()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot create the QMP socket {}: another process is listening on it",
            path.display()
        )
    );
    drop(server);
    assert!(!path.exists());

    let file = dir.path().join("plain");
    std::fs::write(&file, b"x").unwrap();
    let err = QmpServer::start(&file, monitor()).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("a file that is not a socket exists there"),
        "{err}"
    );

    // A socket left by a dead process is replaced.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let s = QmpServer::start(&stale, monitor()).unwrap();
    let (_c, g) = Client::connect(&stale);
    assert!(g.get("QMP").is_some());
    s.shutdown();
    assert!(!stale.exists());
}

#[test]
fn qemu_qmp_python_client_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let (server, fake, path) = start(dir.path());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/qmp/client_check.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}): pip install qemu.qmp (scripts/install-deps)")
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stdout.contains("MISSING qemu.qmp"),
        "the qemu.qmp Python package is missing: pip install qemu.qmp (scripts/install-deps)"
    );
    assert!(
        out.status.success(),
        "client_check.py failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        vec![
            r#"greeting {"major": 9, "micro": 0, "minor": 2}"#,
            r#"query-status {"running": true, "singlestep": false, "status": "running"}"#,
            r#"query-cpus-fast [[0, "/machine/unattached/device[0]", 1000, "x86_64"], [1, "/machine/unattached/device[1]", 1001, "x86_64"]]"#,
            r#"info-cpus "* CPU #0: thread_id=1000\n  CPU #1: thread_id=1001 (halted)\n""#,
            r#"bad-command CommandNotFound "The command no-such-command has not been found""#,
            "event STOP True",
            "done",
        ],
        "stderr:\n{stderr}"
    );
    server.join();
    assert!(fake.quit_called());
    assert!(!path.exists());
}

#[test]
fn wait_for_client_serves_wait_on() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _fake, path) = start(dir.path());
    assert!(!server.wait_for_client(Duration::from_millis(50)));
    let (_c, _) = Client::connect(&path);
    assert!(server.wait_for_client(Duration::from_secs(5)));
    server.shutdown();
    assert!(!path.exists());
}

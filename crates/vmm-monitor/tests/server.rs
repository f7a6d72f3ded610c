//! The QMP server over a real Unix socket, on an event-manager loop in its own thread, with
//! the in-memory `FakeBackend`: raw-socket clients, framing, events, quit and shutdown.

mod common;

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{fake_monitor, run_python, Client, Rig};
use serde_json::json;
use vmm_monitor::{MonitorBackend, QmpServer};

#[test]
fn greeting_and_negotiation_required() {
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::start(dir.path());
    let (mut c, greeting) = Client::connect(&rig.path);
    assert_eq!(greeting["QMP"]["capabilities"], json!([]));
    assert_eq!(greeting["QMP"]["version"]["qemu"]["major"], json!(7));
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
    assert_eq!(rig.handle.clients_accepted(), 1);
}

#[test]
fn requests_split_across_reads_are_framed_whole() {
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::start(dir.path());
    let mut c = Client::negotiated(&rig.path);
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
    // One byte per write, each likely a read of its own on the server side.
    let req = r#"{"execute": "query-status", "id": {"k": "}{"}}"#;
    for b in req.as_bytes() {
        c.send(std::str::from_utf8(&[*b]).unwrap());
    }
    assert_eq!(c.recv()["id"], json!({"k": "}{"}));
}

#[test]
fn two_clients_interleave_and_get_their_own_replies() {
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::start(dir.path());
    let mut a = Client::negotiated(&rig.path);
    let (mut b, _) = Client::connect(&rig.path);
    // b is not negotiated yet: its own state, independent of a.
    assert_eq!(
        b.call(r#"{"execute":"query-kvm","id":"b0"}"#)["error"]["class"],
        json!("CommandNotFound")
    );
    assert_eq!(
        b.call(r#"{"execute":"qmp_capabilities"}"#),
        json!({"return": {}})
    );
    let batch = |tag: &str| {
        (0..50)
            .map(|i| json!({"execute": "query-cpus-fast", "id": format!("{tag}{i}")}).to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    a.send(&batch("a"));
    b.send(&batch("b"));
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
    let rig = Rig::start(dir.path());
    let mut stay = Client::negotiated(&rig.path);
    {
        let mut gone = Client::negotiated(&rig.path);
        gone.send(r#"{"execute": "stop", "argu"#);
    }
    {
        // A complete request whose reply has nowhere to go.
        let mut gone = Client::negotiated(&rig.path);
        gone.send("{\"execute\": \"query-cpus-fast\"}\n");
    }
    assert_eq!(
        stay.call(r#"{"execute":"query-kvm"}"#)["return"]["enabled"],
        json!(true)
    );
    assert_eq!(rig.fake.status().as_str(), "running");
    assert!(!rig.handle.is_closed());
    // The two that left are closed and forgotten once the loop saw them go.
    while rig.handle.clients_connected() != 1 {
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn half_closed_client_still_gets_its_replies() {
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::start(dir.path());
    let (mut c, _) = Client::connect(&rig.path);
    c.send("{\"execute\":\"qmp_capabilities\"}{\"execute\":\"query-kvm\",\"id\":7}");
    c.writer.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(c.recv(), json!({"return": {}}));
    assert_eq!(c.recv()["id"], json!(7));
    let mut rest = String::new();
    assert_eq!(c.reader.read_to_string(&mut rest).unwrap(), 0);
}

#[test]
fn events_reach_negotiated_clients_only() {
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::start(dir.path());
    let mut a = Client::negotiated(&rig.path);
    let mut b = Client::negotiated(&rig.path);
    let (mut raw, _) = Client::connect(&rig.path);
    // STOP precedes the reply of the stop that caused it, as in QEMU.
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
    // The VMM's own events, from another thread, reach clients through the same sink.
    let sink = rig.events.clone();
    std::thread::spawn(move || {
        sink.emit(
            "SHUTDOWN",
            json!({"guest": true, "reason": "guest-shutdown"}),
        )
    })
    .join()
    .unwrap();
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
fn events_from_many_threads_arrive_whole_and_in_each_threads_order() {
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::start(dir.path());
    let mut c = Client::negotiated(&rig.path);
    let emitters: Vec<_> = (0..4)
        .map(|t| {
            let sink = rig.events.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    sink.emit("TEST", json!({"thread": t, "seq": i}));
                }
            })
        })
        .collect();
    // Requests in flight at the same time: no event may land inside a reply.
    for i in 0..20 {
        c.send(&format!("{{\"execute\":\"query-cpus-fast\",\"id\":{i}}}\n"));
    }
    for e in emitters {
        e.join().unwrap();
    }
    let mut next = [0u64; 4];
    let mut replies = 0;
    while replies < 20 || next.iter().sum::<u64>() < 400 {
        let v = c.recv();
        if v["event"] == json!("TEST") {
            let t = v["data"]["thread"].as_u64().unwrap() as usize;
            assert_eq!(v["data"]["seq"].as_u64().unwrap(), next[t]);
            next[t] += 1;
        } else {
            assert_eq!(v["id"], json!(replies));
            replies += 1;
        }
    }
}

#[test]
fn a_client_that_does_not_read_is_dropped_not_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::start_with(dir.path(), |s| s.with_output_limit(64 * 1024));
    let mut stuck = Client::negotiated(&rig.path);
    let mut other = Client::negotiated(&rig.path);
    // Replies of about 2 KiB each, never read: the socket buffer fills, then the bound.
    let req = "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"info registers\"}}\n";
    let mut writes = 0;
    while stuck.writer.write_all_nonfatal(req) {
        writes += 1;
        assert!(
            writes < 1_000_000,
            "the server never dropped the stuck client"
        );
    }
    assert_eq!(
        other.call(r#"{"execute":"query-kvm","id":"alive"}"#)["id"],
        json!("alive")
    );
    assert_eq!(rig.handle.clients_connected(), 1);
}

trait WriteNonFatal {
    fn write_all_nonfatal(&mut self, s: &str) -> bool;
}

impl WriteNonFatal for std::os::unix::net::UnixStream {
    /// Writes `s`; `false` once the server has closed the connection.
    fn write_all_nonfatal(&mut self, s: &str) -> bool {
        use std::io::Write;
        self.set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        self.write_all(s.as_bytes()).is_ok()
    }
}

#[test]
fn socket_mode_is_0600_and_quit_closes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::start(dir.path());
    let path = rig.path.clone();
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
    // Nothing after quit is executed.
    c.send("{\"execute\":\"quit\",\"id\":\"bye\"}{\"execute\":\"stop\"}\n");
    assert_eq!(c.recv(), json!({"return": {}, "id": "bye"}));
    let ev = c.recv();
    assert_eq!(ev["event"], json!("SHUTDOWN"));
    assert_eq!(
        ev["data"],
        json!({"guest": false, "reason": "host-qmp-quit"})
    );
    assert_eq!(other.recv()["event"], json!("SHUTDOWN"));
    // Then every connection is closed and the server is done.
    let mut rest = String::new();
    assert_eq!(other.reader.read_to_string(&mut rest).unwrap(), 0);
    assert_eq!(c.reader.read_to_string(&mut rest).unwrap(), 0);
    let (fake, handle) = (rig.fake.clone(), rig.handle.clone());
    rig.join();
    assert!(handle.quit_requested());
    assert!(fake.quit_called());
    assert_eq!(fake.status().as_str(), "shutdown");
    assert!(!path.exists());
}

#[test]
fn shutdown_request_closes_clients_and_removes_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::start(dir.path());
    let mut c = Client::negotiated(&rig.path);
    let path = rig.path.clone();
    let handle = rig.handle.clone();
    std::thread::spawn(move || handle.shutdown())
        .join()
        .unwrap();
    let mut rest = String::new();
    assert_eq!(c.reader.read_to_string(&mut rest).unwrap(), 0);
    let handle = rig.handle.clone();
    rig.join();
    assert!(handle.is_closed());
    assert!(!handle.quit_requested());
    assert!(!path.exists());
}

#[test]
fn bind_refuses_busy_or_foreign_paths_and_replaces_stale_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::start(dir.path());
    let path = rig.path.clone();
    let err = QmpServer::bind(&path, fake_monitor().2).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot create the QMP socket {}: another process is listening on it",
            path.display()
        )
    );
    drop(rig);
    assert!(!path.exists());

    let file = dir.path().join("plain");
    std::fs::write(&file, b"x").unwrap();
    let err = QmpServer::bind(&file, fake_monitor().2).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("a file that is not a socket exists there"),
        "{err}"
    );

    // A socket left by a dead process is replaced; a server dropped without ever joining a
    // loop still removes its socket.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let s = QmpServer::bind(&stale, fake_monitor().2).unwrap();
    assert!(std::fs::symlink_metadata(&stale)
        .unwrap()
        .file_type()
        .is_socket());
    drop(s);
    assert!(!stale.exists());

    // A file that replaced the socket meanwhile is not the server's to remove.
    let s = QmpServer::bind(&stale, fake_monitor().2).unwrap();
    std::fs::remove_file(&stale).unwrap();
    std::fs::write(&stale, b"someone else's").unwrap();
    drop(s);
    assert_eq!(std::fs::read(&stale).unwrap(), b"someone else's");
}

#[test]
fn first_client_callback_serves_wait_on() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let rig = Rig::start_with(dir.path(), move |s| {
        s.on_first_client(move || {
            seen.fetch_add(1, Ordering::SeqCst);
        })
    });
    assert_eq!(rig.handle.clients_accepted(), 0);
    let (_a, _) = Client::connect(&rig.path);
    let (_b, _) = Client::connect(&rig.path);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(rig.handle.clients_accepted(), 2);
}

#[test]
fn qemu_qmp_python_client_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::start(dir.path());
    let path = rig.path.clone();
    let stdout = run_python("client_check.py", &[path.to_str().unwrap()]);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        vec![
            r#"greeting {"major": 7, "micro": 0, "minor": 2}"#,
            r#"query-status {"running": true, "singlestep": false, "status": "running"}"#,
            r#"query-cpus-fast [[0, "/machine/unattached/device[0]", 1000, "x86_64"], [1, "/machine/unattached/device[1]", 1001, "x86_64"]]"#,
            r#"info-cpus "* CPU #0: thread_id=1000\n  CPU #1: thread_id=1001 (halted)\n""#,
            r#"bad-command CommandNotFound "The command no-such-command has not been found""#,
            "event STOP True",
            "done",
        ]
    );
    let fake = rig.fake.clone();
    rig.join();
    assert!(fake.quit_called());
    assert!(!path.exists());
}

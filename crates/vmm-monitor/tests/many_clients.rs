//! Twenty `qemu.qmp` clients at once against a server on one event-manager loop: every
//! client is answered, every client receives the STOP and RESUME of one client's stop/cont,
//! and the process gains no thread for its clients.
//!
//! Alone in its test binary, so no other test's threads change the count.

mod common;

use std::path::Path;
use std::process::Command;

use common::{thread_count, Rig};

const CLIENTS: usize = 20;

#[test]
fn twenty_qemu_qmp_clients_on_one_loop_thread() {
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::start(dir.path());
    let path = rig.path.clone();
    // The test thread, the loop thread and whatever the harness runs: none of them grows
    // with clients.
    let before = thread_count();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/qmp/many_clients.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&path)
        .arg(std::process::id().to_string())
        .arg(CLIENTS.to_string())
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): pip install qemu.qmp"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stdout.contains("MISSING qemu.qmp"),
        "the qemu.qmp Python package is missing: pip install qemu.qmp"
    );
    assert!(
        out.status.success(),
        "many_clients.py failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        vec![
            format!("connected {CLIENTS}"),
            format!("answered {CLIENTS}"),
            format!("threads-connected {before}"),
            format!("stop-resume {CLIENTS}"),
            "done".to_owned(),
        ],
        "stderr:\n{stderr}"
    );
    println!("threads: {before} before the clients, {before} with {CLIENTS} connected");
    let (fake, handle) = (rig.fake.clone(), rig.handle.clone());
    rig.join();
    assert!(handle.quit_requested());
    assert!(fake.quit_called());
    assert!(!path.exists());
}

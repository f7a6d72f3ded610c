//! Twenty `qemu.qmp` clients at once against a server on one event-manager loop: every
//! client is answered, every client receives the STOP and RESUME of one client's stop/cont,
//! and the process gains no thread for its clients.
//!
//! Alone in its test binary, so no other test's threads change the count.

mod common;

use common::{run_python, thread_count, Rig};

const CLIENTS: usize = 20;

#[test]
fn twenty_qemu_qmp_clients_on_one_loop_thread() {
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::start(dir.path());
    let path = rig.path.clone();
    // The test thread, the loop thread and whatever the harness runs: none of them grows
    // with clients.
    let before = thread_count();
    let pid = std::process::id().to_string();
    let stdout = run_python(
        "many_clients.py",
        &[path.to_str().unwrap(), &pid, &CLIENTS.to_string()],
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
        ]
    );
    println!("threads: {before} before the clients, {before} with {CLIENTS} connected");
    let (fake, handle) = (rig.fake.clone(), rig.handle.clone());
    rig.join();
    assert!(handle.quit_requested());
    assert!(fake.quit_called());
    assert!(!path.exists());
}

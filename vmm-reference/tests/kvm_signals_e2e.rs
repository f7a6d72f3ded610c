//! Every way out is clean: a termination signal stops the VM at once, and the process
//! leaves nothing behind (its socket files, its host-ledger entry). Needs /dev/kvm.

#[path = "common/tiny_kernel.rs"]
mod tiny_kernel;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tiny_kernel::{asm, write_tiny_kernel};
use vmm_reference::testing::require_kvm;

/// Wait until `path` exists (the VMM has bound its socket), at most 20 s.
fn wait_for(path: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the VMM exited early with {status}");
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Ledger entries the VMM left in `dir`.
fn ledger_entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json"))
                .collect()
        })
        .unwrap_or_default()
}

fn signal(child: &Child, signal: i32) {
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: kill(2) with a pid this test spawned and has not reaped yet.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

/// The child's exit within `limit`: the VMM must not wait on its guest or its clients.
fn exit_within(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("the VMM did not exit within {limit:?} of the signal");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn kvm_sigterm_with_monitor_and_socket_serial_leaves_nothing_behind() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_tiny_kernel(dir.path(), &asm::HLT_LOOP);
    let (qmp, console, ledger) = (
        dir.path().join("qmp.sock"),
        dir.path().join("console.sock"),
        dir.path().join("ledger"),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmm-reference"))
        .arg("--kernel")
        .arg(&kernel)
        .args(["--smp", "2"])
        .arg("--qmp")
        .arg(format!("unix:{},server,wait=off", qmp.display()))
        .arg("--serial")
        .arg(format!("unix:{},server,wait=off", console.display()))
        .arg("--ledger-dir")
        .arg(&ledger)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The QMP socket is bound first, then the VM (serial socket, ledger entry).
    wait_for(&qmp, &mut child);
    wait_for(&console, &mut child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while ledger_entries(&ledger).is_empty() {
        assert!(Instant::now() < deadline, "the VM never entered the ledger");
        std::thread::sleep(Duration::from_millis(20));
    }

    signal(&child, libc::SIGTERM);
    let status = exit_within(&mut child, Duration::from_secs(1));
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("vmm-reference: terminating on signal 15 from pid "),
        "{stderr}"
    );
    assert!(!qmp.exists(), "the QMP socket file is removed");
    assert!(!console.exists(), "the serial socket file is removed");
    assert_eq!(ledger_entries(&ledger), Vec::<String>::new());
}

#[test]
fn kvm_sigint_stops_a_probe_run() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmm-reference"))
        .args(["--smp", "2", "--probe", "spin=0", "--ledger-dir"])
        .arg(&ledger)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ledger_entries(&ledger).is_empty() {
        assert!(Instant::now() < deadline, "the VM never entered the ledger");
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&child, libc::SIGINT);
    let status = exit_within(&mut child, Duration::from_secs(1));
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("terminating on signal 2 from pid"),
        "{stderr}"
    );
    assert_eq!(ledger_entries(&ledger), Vec::<String>::new());
}

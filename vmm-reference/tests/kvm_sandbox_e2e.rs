//! The running VMM confines itself: every thread has a seccomp filter and NoNewPrivs, a
//! forbidden syscall ends the process naming it (or is only logged with `--seccomp log`),
//! and `--runas` leaves no root and no capability while the guest runs. Needs /dev/kvm.

#[path = "common/tiny_kernel.rs"]
mod tiny_kernel;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tiny_kernel::{asm, write_tiny_kernel};
use vmm_reference::testing::require_kvm;

fn spawn(args: &[&str]) -> Child {
    require_kvm();
    Command::new(env!("CARGO_BIN_EXE_vmm-reference"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `Key:` values of every thread of `pid`, as (thread name, value) rows.
fn thread_fields(pid: u32, key: &str) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let (Ok(status), Ok(comm)) = (
            std::fs::read_to_string(dir.join("status")),
            std::fs::read_to_string(dir.join("comm")),
        ) else {
            continue;
        };
        // Kernel workers KVM attaches to the process (kvm-nx-lpage-recovery) are not ours.
        if comm.starts_with("kvm-") {
            continue;
        }
        let value = status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
            .unwrap_or_default();
        rows.push((comm.trim().to_string(), value));
    }
    rows.sort();
    rows
}

/// Wait until `cond` holds for the child, at most 20 s.
fn wait_until(child: &mut Child, what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        if let Some(status) = child.try_wait().unwrap() {
            let err = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
            panic!("the VMM exited ({status}) before {what}: {err}");
        }
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn check_every_thread_filtered(child: &mut Child, vcpus: usize) {
    let pid = child.id();
    wait_until(child, "the vCPU threads ran", || {
        thread_fields(pid, "Seccomp:")
            .iter()
            .filter(|(name, _)| name.starts_with("vcpu "))
            .count()
            == vcpus
    });
    // Give the main thread the moment it needs to enter its loop (and its filter).
    std::thread::sleep(Duration::from_millis(300));
    for key in ["Seccomp:", "NoNewPrivs:"] {
        let want = if key == "Seccomp:" { "2" } else { "1" };
        for (name, value) in thread_fields(pid, key) {
            assert_eq!(value, want, "thread '{name}': {key} {value}");
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn kvm_every_thread_of_a_probe_vm_with_a_monitor_is_filtered() {
    let dir = tempfile::tempdir().unwrap();
    let qmp = dir.path().join("qmp.sock");
    let mut child = spawn(&[
        "--smp",
        "2",
        "--probe",
        "spin",
        "--qmp",
        &format!("unix:{},server,wait=off", qmp.display()),
        "--ledger-dir",
        dir.path().join("ledger").to_str().unwrap(),
    ]);
    check_every_thread_filtered(&mut child, 2);
}

#[test]
fn kvm_every_thread_of_a_linux_vm_is_filtered() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_tiny_kernel(dir.path(), &asm::PAUSE_LOOP);
    let mut child = spawn(&[
        "--kernel",
        kernel.to_str().unwrap(),
        "--smp",
        "2",
        "--serial",
        "null",
        "--ledger-dir",
        dir.path().join("ledger").to_str().unwrap(),
    ]);
    check_every_thread_filtered(&mut child, 2);
}

fn selftest(mode: &str) -> std::process::Output {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_vmm-reference"))
        .args(["--smp", "1", "--seccomp", mode, "--seccomp-selftest"])
        .arg("--ledger-dir")
        .arg(dir.path().join("ledger"))
        .output()
        .unwrap()
}

#[test]
fn kvm_a_forbidden_syscall_on_a_vcpu_thread_ends_the_vmm_naming_it() {
    let out = selftest("on");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("seccomp: forbidden syscall"))
        .unwrap_or_else(|| panic!("no seccomp report in {err}"));
    assert!(line.starts_with("vmm-reference: "), "{line}");
    assert!(
        line.contains("(getppid)") || line.contains("getppid"),
        "{line}"
    );
    assert!(line.contains("'vcpu 0'"), "{line}");
}

#[test]
fn kvm_log_mode_allows_the_forbidden_syscall() {
    let out = selftest("log");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("logical CPU number in total: 1"),
        "{err}"
    );
}

#[test]
fn kvm_runas_nobody_runs_the_guest_without_root_or_capabilities() {
    if effective_uid() != 0 {
        panic!("--runas needs root to start with; run this test as root (CI does)");
    }
    let dir = tempfile::tempdir().unwrap();
    // A ledger directory nobody can write: the VMM keeps its entry current after the drop.
    let ledger = dir.path().join("ledger");
    std::fs::create_dir(&ledger).unwrap();
    std::os::unix::fs::chown(&ledger, Some(65534), Some(65534)).unwrap();
    let mut child = spawn(&[
        "--smp",
        "2",
        "--probe",
        "spin",
        "--runas",
        "nobody",
        "--ledger-dir",
        ledger.to_str().unwrap(),
    ]);
    let pid = child.id();
    wait_until(&mut child, "the vCPU threads ran", || {
        thread_fields(pid, "Uid:")
            .iter()
            .filter(|(n, _)| n.starts_with("vcpu "))
            .count()
            == 2
    });
    for (key, want) in [
        ("Uid:", "65534\t65534\t65534\t65534"),
        ("Gid:", "65534\t65534\t65534\t65534"),
        ("CapEff:", "0000000000000000"),
        ("CapPrm:", "0000000000000000"),
    ] {
        for (name, value) in thread_fields(pid, key) {
            assert_eq!(value, want, "thread '{name}': {key}");
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(Path::new(&ledger).exists());
}

/// The test process's effective uid, from /proc.
fn effective_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1)?.parse().ok())
        .unwrap()
}

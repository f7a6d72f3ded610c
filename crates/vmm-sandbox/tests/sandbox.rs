//! End-to-end checks of the sandbox in child processes (a filter cannot be removed, and a
//! trapped syscall ends the process): this file is its own harness (`harness = false`);
//! run without arguments it starts itself with `--child SCENARIO` once per scenario and
//! checks what the child printed, its exit status and `/proc` as the child saw it.

use std::io::Read;
use std::process::{Command, Output};

use vmm_sandbox::{
    drop_privileges, parse_runas, set_report_prefix, Sandbox, SeccompMode, ThreadKind,
};

/// The calling thread's `/proc/<pid>/task/<tid>/status`, opened before its filter is
/// installed (a vCPU filter allows no `openat`); the kernel fills it in at the first read.
fn open_status() -> std::fs::File {
    // SAFETY: gettid has no arguments.
    let tid = unsafe { libc::gettid() };
    std::fs::File::open(format!("/proc/{}/task/{tid}/status", std::process::id())).unwrap()
}

/// Print `Seccomp` and `NoNewPrivs` from a status file opened by [`open_status`], with
/// plain `read` calls only.
fn print_status(label: &str, mut file: std::fs::File) {
    let mut text = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        match file.read(&mut chunk).unwrap() {
            0 => break,
            n => text.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8(text).unwrap();
    let field = |key: &str| {
        let line = text.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace().nth(1).unwrap().to_owned()
    };
    println!(
        "{label}: Seccomp={} NoNewPrivs={}",
        field("Seccomp:"),
        field("NoNewPrivs:")
    );
}

/// A vCPU thread that installs its filter and then makes `forbidden`.
fn vcpu_then(mode: SeccompMode, forbidden: fn() -> i64) {
    set_report_prefix("sandbox-test");
    let sandbox = Sandbox::new(mode).unwrap();
    std::thread::Builder::new()
        .name("vcpu 0".into())
        .spawn(move || {
            let status = open_status();
            sandbox.apply(ThreadKind::Vcpu).unwrap();
            print_status("vcpu", status);
            let rc = forbidden();
            println!("survived: rc={rc}");
        })
        .unwrap()
        .join()
        .unwrap();
}

fn getppid() -> i64 {
    // SAFETY: getppid has no arguments.
    i64::from(unsafe { libc::getppid() })
}

fn kvm_create_vm_on_bad_fd() -> i64 {
    // SAFETY: an ioctl on fd -1 only fails with EBADF (when the filter lets it through).
    i64::from(unsafe { libc::ioctl(-1, 0xae01, 0) })
}

fn child(scenario: &str) {
    match scenario {
        "vcpu-on" => vcpu_then(SeccompMode::On, getppid),
        "vcpu-log" => vcpu_then(SeccompMode::Log, getppid),
        "vcpu-ioctl" => vcpu_then(SeccompMode::On, kvm_create_vm_on_bad_fd),
        "off" => vcpu_then(SeccompMode::Off, getppid),
        "vcpu-panic" => {
            // vmm-reference turns a vCPU thread's panic into a reported guest stop: the
            // panic message, a backtrace when RUST_BACKTRACE asks for one, and the
            // unwinding must all work under the vCPU filter.
            let sandbox = Sandbox::new(SeccompMode::On).unwrap();
            let result = std::thread::Builder::new()
                .name("vcpu 0".into())
                .spawn(move || {
                    sandbox.apply(ThreadKind::Vcpu).unwrap();
                    let data = vec![1u8; 1 << 20];
                    panic!("guest stopped under the filter ({} bytes)", data.len());
                })
                .unwrap()
                .join();
            println!("joined: panicked={}", result.is_err());
        }
        "main-then-threads" => {
            // The main filter first, then threads that add their own on top: what a
            // hot-plugged vCPU does. Everything ends through the normal exit paths.
            let sandbox = Sandbox::new(SeccompMode::On).unwrap();
            let status = open_status();
            sandbox.apply(ThreadKind::Main).unwrap();
            print_status("main", status);
            let mut threads = Vec::new();
            for (name, kind) in [("vcpu 1", ThreadKind::Vcpu), ("stdin", ThreadKind::Helper)] {
                let s = sandbox;
                threads.push(
                    std::thread::Builder::new()
                        .name(name.into())
                        .spawn(move || {
                            let status = open_status();
                            s.apply(kind).unwrap();
                            print_status(kind.name(), status);
                        })
                        .unwrap(),
                );
            }
            for t in threads {
                t.join().unwrap();
            }
            println!("done");
        }
        "runas-nobody" => {
            let creds = parse_runas("nobody").unwrap().resolve().unwrap();
            drop_privileges(Some(&creds)).unwrap();
            print_proc_ids();
            let shadow = std::fs::File::open("/etc/shadow")
                .map(|_| ())
                .map_err(|e| e.kind());
            println!("open /etc/shadow: {shadow:?}");
        }
        "caps-root" => {
            drop_privileges(None).unwrap();
            print_proc_ids();
        }
        "caps-root-late" => {
            // A thread spawned before the drop keeps its own capability sets.
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let (started_tx, started) = std::sync::mpsc::channel::<()>();
            let early = std::thread::Builder::new()
                .name("early".into())
                .spawn(move || {
                    started_tx.send(()).unwrap();
                    rx.recv()
                })
                .unwrap();
            started.recv().unwrap();
            let err = drop_privileges(None).unwrap_err();
            println!("{err}");
            tx.send(()).unwrap();
            early.join().unwrap().unwrap();
        }
        other => panic!("unknown scenario {other}"),
    }
}

fn print_proc_ids() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    for line in status.lines() {
        if [
            "Uid:", "Gid:", "Groups:", "CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:",
        ]
        .iter()
        .any(|k| line.starts_with(k))
        {
            println!("{}", line.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
}

fn run(scenario: &str) -> (Output, String, String) {
    run_with(scenario, None)
}

/// Run a scenario with `RUST_BACKTRACE` set to `backtrace`, or removed.
fn run_with(scenario: &str, backtrace: Option<&str>) -> (Output, String, String) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--child", scenario]);
    match backtrace {
        Some(value) => cmd.env("RUST_BACKTRACE", value),
        None => cmd.env_remove("RUST_BACKTRACE"),
    };
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

fn forbidden_syscall_ends_the_process_naming_it() {
    let (out, stdout, stderr) = run("vcpu-on");
    assert_eq!(
        out.status.code(),
        Some(Sandbox::VIOLATION_EXIT_CODE),
        "{stdout}{stderr}"
    );
    assert!(stdout.contains("vcpu: Seccomp=2 NoNewPrivs=1"), "{stdout}");
    assert!(!stdout.contains("survived"), "{stdout}");
    assert!(
        stderr.starts_with("sandbox-test: seccomp: forbidden syscall 110 (getppid) on thread "),
        "{stderr}"
    );
    assert!(
        stderr.contains("'vcpu 0' (vcpu filter); ending the process"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

fn forbidden_ioctl_names_the_request() {
    let (out, _, stderr) = run("vcpu-ioctl");
    assert_eq!(
        out.status.code(),
        Some(Sandbox::VIOLATION_EXIT_CODE),
        "{stderr}"
    );
    assert!(
        stderr.contains("forbidden syscall 16 (ioctl, request 0xae01)"),
        "{stderr}"
    );
}

fn log_mode_lets_it_through() {
    let (out, stdout, stderr) = run("vcpu-log");
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("vcpu: Seccomp=2 NoNewPrivs=1"), "{stdout}");
    // getppid returned the parent: this test process.
    assert!(
        stdout.contains(&format!("survived: rc={}", std::process::id())),
        "{stdout}"
    );
}

fn off_mode_installs_nothing() {
    let (out, stdout, stderr) = run("off");
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("vcpu: Seccomp=0 NoNewPrivs=0"), "{stdout}");
    assert!(stdout.contains("survived"), "{stdout}");
}

fn a_vcpu_thread_panic_unwinds_under_the_filter() {
    for backtrace in [None, Some("0"), Some("1"), Some("full")] {
        let (out, stdout, stderr) = run_with("vcpu-panic", backtrace);
        assert!(
            out.status.success(),
            "RUST_BACKTRACE={backtrace:?}: {stdout}{stderr}"
        );
        assert!(stdout.contains("joined: panicked=true"), "{stdout}");
        assert!(
            stderr.contains("guest stopped under the filter (1048576 bytes)"),
            "{stderr}"
        );
        let traced = stderr.contains("stack backtrace:");
        assert_eq!(traced, matches!(backtrace, Some("1" | "full")), "{stderr}");
    }
}

fn threads_stack_their_filter_on_the_main_one() {
    let (out, stdout, stderr) = run("main-then-threads");
    assert!(out.status.success(), "{stdout}{stderr}");
    for kind in ["main", "vcpu", "helper"] {
        assert!(
            stdout.contains(&format!("{kind}: Seccomp=2 NoNewPrivs=1")),
            "{stdout}"
        );
    }
    assert!(stdout.contains("done"), "{stdout}");
}

fn is_root() -> bool {
    // SAFETY: geteuid has no arguments.
    unsafe { libc::geteuid() == 0 }
}

fn runas_nobody_has_no_ids_or_capabilities_left() {
    let nobody = parse_runas("nobody").unwrap().resolve().unwrap();
    let (out, stdout, stderr) = run("runas-nobody");
    assert!(out.status.success(), "{stdout}{stderr}");
    let (u, g) = (nobody.uid, nobody.gid);
    for want in [
        format!("Uid: {u} {u} {u} {u}"),
        format!("Gid: {g} {g} {g} {g}"),
        format!("Groups: {g}"),
        "CapPrm: 0000000000000000".into(),
        "CapEff: 0000000000000000".into(),
        "CapBnd: 0000000000000000".into(),
        "CapAmb: 0000000000000000".into(),
        "open /etc/shadow: Err(PermissionDenied)".into(),
    ] {
        assert!(
            stdout.lines().any(|l| l == want),
            "want {want:?} in\n{stdout}"
        );
    }
}

fn root_without_runas_keeps_uid_but_no_capability() {
    let (out, stdout, stderr) = run("caps-root");
    assert!(out.status.success(), "{stdout}{stderr}");
    for want in [
        "Uid: 0 0 0 0",
        "CapPrm: 0000000000000000",
        "CapEff: 0000000000000000",
        "CapBnd: 0000000000000000",
    ] {
        assert!(
            stdout.lines().any(|l| l == want),
            "want {want:?} in\n{stdout}"
        );
    }
}

fn a_thread_spawned_before_the_drop_is_reported() {
    let (out, stdout, stderr) = run("caps-root-late");
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("'early' still holds capabilities (CapPrm 0x"),
        "{stdout}"
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 && args[1] == "--child" {
        child(&args[2]);
        return;
    }
    let mut tests: Vec<(&str, fn())> = vec![
        (
            "forbidden_syscall_ends_the_process_naming_it",
            forbidden_syscall_ends_the_process_naming_it,
        ),
        (
            "forbidden_ioctl_names_the_request",
            forbidden_ioctl_names_the_request,
        ),
        ("log_mode_lets_it_through", log_mode_lets_it_through),
        ("off_mode_installs_nothing", off_mode_installs_nothing),
        (
            "a_vcpu_thread_panic_unwinds_under_the_filter",
            a_vcpu_thread_panic_unwinds_under_the_filter,
        ),
        (
            "threads_stack_their_filter_on_the_main_one",
            threads_stack_their_filter_on_the_main_one,
        ),
    ];
    let root_tests: [(&str, fn()); 3] = [
        (
            "a_thread_spawned_before_the_drop_is_reported",
            a_thread_spawned_before_the_drop_is_reported,
        ),
        (
            "runas_nobody_has_no_ids_or_capabilities_left",
            runas_nobody_has_no_ids_or_capabilities_left,
        ),
        (
            "root_without_runas_keeps_uid_but_no_capability",
            root_without_runas_keeps_uid_but_no_capability,
        ),
    ];
    if is_root() {
        tests.extend(root_tests);
    } else if std::env::var_os("REQUIRE_ROOT").is_some() {
        panic!("REQUIRE_ROOT is set but this test runs as uid != 0");
    } else {
        for (name, _) in root_tests {
            println!("test {name} ... skipped (needs root; REQUIRE_ROOT=1 makes this an error)");
        }
    }
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-'));
    for (name, test) in &tests {
        if filter.is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        test();
        println!("test {name} ... ok");
    }
}

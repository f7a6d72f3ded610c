//! ACPI power off and reset, and the socket serial backends, end to end: the binary boots
//! a tiny hand-made kernel (tests/common/tiny_kernel.rs) that talks to COM1 and writes the
//! FADT's sleep control or reset register. Needs /dev/kvm and fails without it.

#[path = "common/tiny_kernel.rs"]
mod tiny_kernel;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tiny_kernel::{asm, write_tiny_kernel};
use vmm_reference::testing::require_kvm;

const HELLO: &[u8] = b"hello from a tiny kernel\n";

fn vmm() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vmm-reference"));
    c.args(["--timeout", "20"]);
    c
}

fn run(kernel: &Path, extra: &[&str]) -> Output {
    vmm()
        .arg("--kernel")
        .arg(kernel)
        .args(extra)
        .output()
        .expect("run vmm-reference")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn kvm_tiny_kernel_prints_and_powers_off() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let code = asm::program(&[&asm::com1_print(HELLO), &asm::power_off(), &asm::HLT_LOOP]);
    let out = run(&write_tiny_kernel(dir.path(), &code), &[]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout, "hello from a tiny kernel\n");
    assert!(
        stderr.contains("vmm-reference: guest power off"),
        "{stderr}"
    );
}

#[test]
fn kvm_tiny_kernel_resets_through_the_acpi_reset_register() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let code = asm::program(&[
        &asm::com1_print(b"reset\n"),
        &asm::acpi_reset(),
        &asm::HLT_LOOP,
    ]);
    let out = run(
        &write_tiny_kernel(dir.path(), &code),
        &["--smp", "2,maxcpus=4"],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(text(&out.stdout), "reset\n");
    assert!(stderr.contains("vmm-reference: guest reboot"), "{stderr}");
    assert!(!stderr.contains("power off"), "{stderr}");
}

#[test]
fn kvm_sleep_states_other_than_s5_do_not_stop_the_guest() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    // S3 (SLP_TYP 3 | SLP_EN) is not offered: ignored; the guest then powers off.
    let code = asm::program(&[
        &asm::outb(tiny_kernel::SLEEP_CONTROL, 3 << 2 | 1 << 5),
        &asm::com1_print(b"still running\n"),
        &asm::power_off(),
        &asm::HLT_LOOP,
    ]);
    let out = run(&write_tiny_kernel(dir.path(), &code), &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(text(&out.stdout), "still running\n");
    assert!(stderr.contains("guest power off"), "{stderr}");
}

#[test]
fn kvm_stdin_reaches_com1_with_serial_stdio() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let code = asm::program(&[
        &asm::com1_print(b"> "),
        &asm::com1_echo_until(b'\n'),
        &asm::power_off(),
        &asm::HLT_LOOP,
    ]);
    let mut child = vmm()
        .arg("--kernel")
        .arg(write_tiny_kernel(dir.path(), &code))
        .args(["--serial", "stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"echo me\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(text(&out.stdout), "> echo me\n");
}

/// Kill the child if a test fails before it exits.
struct Reap(Option<Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Reap {
    fn finish(mut self) -> Output {
        self.0.take().unwrap().wait_with_output().unwrap()
    }
}

/// Connect to `path`, retrying until the VMM listens.
fn connect_unix(path: &Path) -> UnixStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("connect to {}: {e}", path.display()),
        }
    }
}

/// The guest: print the greeting, echo input until 'q', say bye, power off.
fn echo_kernel(dir: &Path) -> std::path::PathBuf {
    let code = asm::program(&[
        &asm::com1_print(HELLO),
        &asm::com1_echo_until(b'q'),
        &asm::com1_print(b"\nbye\n"),
        &asm::power_off(),
        &asm::HLT_LOOP,
    ]);
    write_tiny_kernel(dir, &code)
}

fn spawn(kernel: &Path, serial: &str) -> Reap {
    Reap(Some(
        vmm()
            .arg("--kernel")
            .arg(kernel)
            .args(["--serial", serial])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ))
}

/// Read from `stream` until `want` has arrived (or fail after a while).
fn read_until(stream: &mut impl Read, want: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !text(&got).contains(want) {
        let n = stream.read(&mut buf).expect("read the console");
        assert!(
            n > 0,
            "console closed before {want:?}; got {:?}",
            text(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    text(&got)
}

#[test]
fn kvm_serial_unix_server_waits_for_its_client() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("console.sock");
    let vm = spawn(
        &echo_kernel(dir.path()),
        &format!("unix:{},server", sock.display()),
    );
    let mut client = connect_unix(&sock);
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // Waited for us: the client sees the guest's first byte.
    assert_eq!(read_until(&mut client, "kernel\n"), text(HELLO));
    client.write_all(b"ab q").unwrap();
    assert_eq!(read_until(&mut client, "bye\n"), "ab q\nbye\n");
    let out = vm.finish();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "vmm-reference: waiting for connection on unix:{}",
            sock.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("guest power off"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "console output went to the socket only"
    );
}

#[test]
fn kvm_serial_unix_server_without_wait_serves_a_late_client() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("console.sock");
    let vm = spawn(
        &echo_kernel(dir.path()),
        &format!("unix:{},server,wait=off", sock.display()),
    );
    let mut client = connect_unix(&sock);
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // The guest runs without us; what it printed before we connected is not replayed.
    client.write_all(b"xq").unwrap();
    let seen = read_until(&mut client, "bye\n");
    assert!(seen.ends_with("xq\nbye\n"), "{seen:?}");
    let out = vm.finish();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("waiting for connection"), "{stderr}");
}

#[test]
fn kvm_serial_client_that_leaves_does_not_stop_the_guest() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("console.sock");
    let vm = spawn(
        &echo_kernel(dir.path()),
        &format!("unix:{},server", sock.display()),
    );
    let mut client = connect_unix(&sock);
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    read_until(&mut client, "kernel\n");
    // Send the stop byte and hang up before the guest answers.
    client.write_all(b"q").unwrap();
    drop(client);
    let out = vm.finish();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("guest power off"), "{stderr}");
}

#[test]
fn kvm_serial_tcp_server() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    // A port that was free a moment ago.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let vm = spawn(
        &echo_kernel(dir.path()),
        &format!("tcp:127.0.0.1:{port},server"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut client = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("connect to port {port}: {e}"),
        }
    };
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut lines = BufReader::new(client.try_clone().unwrap());
    let mut first = String::new();
    lines.read_line(&mut first).unwrap();
    assert_eq!(first.as_bytes(), HELLO);
    client.write_all(b"q").unwrap();
    assert_eq!(read_until(&mut lines, "bye\n"), "q\nbye\n");
    let out = vm.finish();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("waiting for connection on tcp:127.0.0.1:{port}")),
        "{stderr}"
    );
}

#[test]
fn serial_socket_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"").unwrap();
    let kernel = write_tiny_kernel(dir.path(), &asm::HLT_LOOP);
    let rows: &[(String, String)] = &[
        (
            "unix:/tmp/x.sock".to_string(),
            "vmm-reference: invalid value 'unix:/tmp/x.sock' for '--serial <BACKEND>': \
             unix:/tmp/x.sock: only server mode is supported (add ,server)"
                .to_string(),
        ),
        (
            format!("unix:{},server,nowait", file.display()),
            format!(
                "vmm-reference: --serial: listen on unix:{}: Address already in use",
                file.display()
            ),
        ),
        (
            "unix:/nonexistent-dir/x.sock,server".to_string(),
            "vmm-reference: --serial unix: /nonexistent-dir/x.sock: \
             the directory /nonexistent-dir does not exist"
                .to_string(),
        ),
    ];
    for (serial, want) in rows {
        let out = run(&kernel, &["--serial", serial]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{serial}: {stderr}");
        assert!(
            stderr.starts_with(want.as_str()),
            "{serial}:\n{stderr}\nwant: {want}"
        );
    }
}

/// `popcnt` at CPL0 is one of the instructions this host's software KVM cannot emulate:
/// the emulation fallback completes it, the guest goes on, and the VMM says what it
/// completed. (On hardware KVM the instruction runs natively and no line is printed.)
#[test]
fn kvm_the_emulation_fallback_completes_popcnt_and_the_guest_goes_on() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    const POPCNT_EAX_ECX: [u8; 4] = [0xf3, 0x0f, 0xb8, 0xc1];
    let code = asm::program(&[
        &POPCNT_EAX_ECX,
        &asm::com1_print(HELLO),
        &asm::power_off(),
        &asm::HLT_LOOP,
    ]);
    let out = run(&write_tiny_kernel(dir.path(), &code), &[]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout, "hello from a tiny kernel\n");
    // A host without vmx/svm runs KVM's software backend, whose emulator cannot run
    // popcnt at CPL0 (shared/design/HOST.md): the fallback must have completed it there.
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let hardware = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    if !hardware {
        assert!(
            stderr.contains("completed in user space (emulation fallback): popcnt=1"),
            "{stderr}"
        );
    }
}

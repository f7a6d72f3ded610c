//! End-to-end through QEMU's own QMP client (`qemu.qmp` from PyPI): the real binary with
//! `--qmp`, scenarios in tests/qmp/vmm_scenarios.py. Needs /dev/kvm and python3 with
//! qemu.qmp (scripts/install-deps installs it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use probe_guest::abi;

fn layout_json() -> String {
    format!(
        r#"{{"vcpu_areas": {}, "vcpu_area_size": {}, "progress": {}, "count": {}, "results": {}, "control": {}, "query_count": {}, "query_list": {}}}"#,
        abi::VCPU_AREAS_GPA,
        abi::VCPU_AREA_SIZE,
        abi::VA_PROGRESS,
        abi::VA_COUNT,
        abi::VA_RESULTS,
        abi::CONTROL_GPA,
        abi::CTL_QUERY_COUNT,
        abi::QUERY_LIST_GPA
    )
}

fn start_vmm(socket: &Path, args: &[&str]) -> Child {
    vmm_reference::testing::require_kvm();
    let child = Command::new(env!("CARGO_BIN_EXE_vmm-reference"))
        .args(args)
        .arg("--qmp")
        .arg(format!("unix:{},server,wait=off", socket.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "the QMP socket never appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

/// Run one scenario; it ends with `quit`, so the VMM must then exit 0 by itself.
fn scenario(name: &str, args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let socket: PathBuf = dir.path().join("qmp.sock");
    let mut vmm = start_vmm(&socket, args);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/qmp/vmm_scenarios.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([
            name,
            socket.to_str().unwrap(),
            &vmm.id().to_string(),
            &layout_json(),
        ])
        .output()
        .expect("python3 is missing: scripts/install-deps installs it and qemu.qmp");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named 'qemu'") {
        let _ = vmm.kill();
        panic!("pip install qemu.qmp (scripts/install-deps)");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let _ = vmm.kill();
        let vmm_err = vmm
            .wait_with_output()
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned());
        panic!("scenario {name} failed:\n{stdout}\n{stderr}\nVMM stderr: {vmm_err:?}");
    }
    assert!(stdout.contains(&format!("{name}: ok")), "{stdout}");
    // quit ends the process with status 0 and removes the socket.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = vmm.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the VMM did not exit after quit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    assert!(!socket.exists(), "the QMP socket was left behind");
}

#[test]
fn kvm_qmp_thread_ids_and_stop_cont() {
    scenario("basic", &["--smp", "2,sockets=2", "--probe", "spin"]);
}

#[test]
fn kvm_qmp_hotplug_several_vcpus_each_reports() {
    scenario("hotplug", &["--smp", "2,maxcpus=6,sockets=2,cores=3"]);
}

#[test]
fn kvm_qmp_stress_plug_unplug_stop_cont_leaks_nothing() {
    scenario(
        "stress",
        &["--smp", "2,maxcpus=6,sockets=2,cores=3", "--probe", "spin"],
    );
}

/// QEMU 7.2's CPU model, machine, name and uuid queries, then virsh's CPU verbs over HMP:
/// vcpupin and emulatorpin change the threads' affinity in /proc, setvcpus plugs vCPUs that
/// run and show in query-cpus-fast, and unplugs them again.
#[test]
fn kvm_qmp_cpu_queries_and_virsh_verbs() {
    scenario(
        "virsh",
        &[
            "--smp",
            "2,maxcpus=4,sockets=2,cores=2",
            "--name",
            "web1",
            "--uuid",
            "6D3B8C2A-1F4E-4B7A-9C1D-2E5F8A9B0C3D",
        ],
    );
}

/// `query-cpu-definitions` equals QEMU 7.2's on this host, `unavailable-features` included
/// (QEMU is run with `-accel kvm` by the scenario; scripts/install-deps installs it).
#[test]
fn kvm_qmp_cpu_definitions_match_qemu() {
    let qemu = Command::new("qemu-system-x86_64").arg("--version").output();
    let version =
        qemu.expect("qemu-system-x86_64 is missing: scripts/install-deps qemu-system-x86");
    assert!(
        String::from_utf8_lossy(&version.stdout).contains("version 7.2"),
        "the reference is QEMU 7.2"
    );
    scenario("vs-qemu", &["--smp", "1"]);
}

/// Twenty QMP clients at once on a 4-vCPU VM: every client is answered and sees the STOP
/// and RESUME of one client's stop/cont, and the process has its 4 `vcpu N` threads, the
/// main thread, and nothing per client.
#[test]
fn kvm_qmp_twenty_clients_on_the_main_loop() {
    let dir = tempfile::tempdir().unwrap();
    let socket: PathBuf = dir.path().join("qmp.sock");
    let mut vmm = start_vmm(&socket, &["--smp", "4", "--probe", "spin"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/vmm-monitor/tests/qmp/many_clients.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([socket.to_str().unwrap(), &vmm.id().to_string(), "20"])
        .output()
        .expect("python3 is missing: scripts/install-deps installs it and qemu.qmp");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let _ = vmm.kill();
        panic!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let value = |key: &str| -> u32 {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no '{key}' in {stdout}"))
    };
    assert_eq!(value("connected"), 20);
    assert_eq!(value("answered"), 20);
    assert_eq!(value("stop-resume"), 20);
    let threads = value("threads-connected");
    assert!(threads <= 4 + 3, "{threads} threads with 20 clients");
    println!("threads with 20 clients connected: {threads}");
    let status = vmm.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(!socket.exists());
}

//! The QMP monitor, CPU hot-plug and vCPU placement of a Linux VM (`--kernel`), end to end
//! with the real binary and hand-made "kernels" (tests/common/tiny_kernel.rs), plus the
//! library path a VMM embedding `LinuxVm` takes. Every test needs /dev/kvm and fails
//! without it.
//!
//! The hot-plug guest is a stand-in for Linux's ACPI CPU driver, reduced to what the
//! VMM observes: it selects slot 1 in the CPU hot-plug register block and polls its
//! status; when the VMM marks the slot "remove pending" it ejects it (`_EJ0`). After
//! a given number of ejects it ends the VM itself (a reset or an ACPI power off).

#[path = "common/tiny_kernel.rs"]
mod tiny_kernel;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tiny_kernel::{asm, write_tiny_kernel, LOAD_ADDR};
use vmm_reference::testing::require_kvm;

/// The CPU hot-plug register block (x86-boot's default): selector, then status.
const HOTPLUG_SELECTOR: u16 = 0xcd8;
const HOTPLUG_STATUS: u16 = HOTPLUG_SELECTOR + 4;
/// Status bit the VMM sets for `device_del`, and the bit the guest writes to eject.
const STATUS_REMOVING: u8 = 1 << 2;
const STATUS_EJECT: u8 = 1 << 3;
/// Select hot-plug slot 1, eject it whenever its removal is requested, and run `then`
/// after `ejects` ejects.
fn ejector(ejects: u8, then: &[u8]) -> Vec<u8> {
    let mut c = asm::mov_dx(HOTPLUG_SELECTOR);
    c.extend_from_slice(&[0xb8, 1, 0, 0, 0, 0xef]); // mov eax, 1; out dx, eax
    c.extend_from_slice(&[0x31, 0xdb]); // xor ebx, ebx
    let top = c.len();
    c.extend_from_slice(&asm::mov_dx(HOTPLUG_STATUS));
    c.push(0xec); // in al, dx
    c.extend_from_slice(&[0xa8, STATUS_REMOVING]); // test al, REMOVING
    c.extend_from_slice(&[0x74, 0]); // jz top
    let jz = c.len() - 1;
    c[jz] = (top as isize - c.len() as isize) as i8 as u8;
    c.extend_from_slice(&[0xb0, STATUS_EJECT, 0xee]); // mov al, EJECT; out dx, al
    c.extend_from_slice(&[0xff, 0xc3]); // inc ebx
    c.extend_from_slice(&[0x83, 0xfb, ejects]); // cmp ebx, ejects
    c.extend_from_slice(&[0x75, 0]); // jne top
    let jne = c.len() - 1;
    c[jne] = (top as isize - c.len() as isize) as i8 as u8;
    asm::program(&[&c, then, &asm::HLT_LOOP])
}

/// The VMM under test; killed if a test fails before it exits by itself.
struct Vmm {
    child: Child,
    socket: PathBuf,
}

impl Vmm {
    /// Start the binary with `--kernel kernel`, a QMP socket in `dir` and `args`; wait for
    /// the socket.
    fn start(dir: &Path, kernel: &Path, args: &[&str]) -> Vmm {
        require_kvm();
        let socket = dir.join("qmp.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_vmm-reference"))
            .arg("--kernel")
            .arg(kernel)
            .args(["--serial", "null", "--ledger-dir"])
            .arg(dir.join("ledger"))
            .arg("--qmp")
            .arg(format!("unix:{},server,wait=off", socket.display()))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut vmm = Vmm { child, socket };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !vmm.socket.exists() {
            if let Some(status) = vmm.child.try_wait().unwrap() {
                panic!("the VMM exited with {status}: {}", vmm.stderr());
            }
            assert!(Instant::now() < deadline, "the QMP socket never appeared");
            std::thread::sleep(Duration::from_millis(10));
        }
        vmm
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut err, &mut text);
        }
        text
    }

    /// Wait for the process to exit by itself; its status and stderr.
    fn wait_exit(&mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), self.stderr());
            }
            assert!(Instant::now() < deadline, "the VMM did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Vmm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A negotiated QMP connection; events that arrive between replies are kept.
struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    events: Vec<Value>,
}

impl Qmp {
    fn connect(vmm: &Vmm) -> Qmp {
        let s = UnixStream::connect(&vmm.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut q = Qmp {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
            events: Vec::new(),
        };
        assert!(q.recv().get("QMP").is_some(), "no greeting");
        assert_eq!(q.cmd("qmp_capabilities", json!({})), json!({}));
        q
    }

    fn recv(&mut self) -> Value {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).unwrap();
        assert!(n > 0, "the VMM closed the connection");
        serde_json::from_str(&line).unwrap()
    }

    /// Execute a command; the whole reply (`{"return": ...}` or `{"error": ...}`).
    fn call(&mut self, execute: &str, arguments: Value) -> Value {
        let req = json!({"execute": execute, "arguments": arguments});
        self.writer
            .write_all(format!("{req}\n").as_bytes())
            .unwrap();
        loop {
            let msg = self.recv();
            if msg.get("event").is_some() {
                self.events.push(msg);
            } else {
                return msg;
            }
        }
    }

    /// Execute a command that must succeed; its return value.
    fn cmd(&mut self, execute: &str, arguments: Value) -> Value {
        let reply = self.call(execute, arguments);
        reply
            .get("return")
            .cloned()
            .unwrap_or_else(|| panic!("{execute}: {reply}"))
    }

    fn hmp(&mut self, line: &str) -> String {
        let out = self.cmd("human-monitor-command", json!({"command-line": line}));
        out.as_str().unwrap().to_string()
    }

    /// The next event named `name`, waiting for it if it has not arrived yet.
    fn event(&mut self, name: &str) -> Value {
        loop {
            if let Some(i) = self.events.iter().position(|e| e["event"] == name) {
                return self.events.remove(i);
            }
            let msg = self.recv();
            assert!(msg.get("event").is_some(), "unexpected {msg}");
            self.events.push(msg);
        }
    }

    fn event_names(&self) -> Vec<&str> {
        self.events
            .iter()
            .map(|e| e["event"].as_str().unwrap())
            .collect()
    }

    /// `quit`: the reply, then the process exits 0 and removes its socket.
    fn quit(mut self, vmm: &mut Vmm) {
        assert_eq!(self.cmd("quit", json!({})), json!({}));
        let (code, stderr) = vmm.wait_exit();
        assert_eq!(code, Some(0), "{stderr}");
        assert!(!vmm.socket.exists(), "the QMP socket was left behind");
    }
}

/// `/proc/<pid>/task/<tid>/<file>` of the VMM.
fn task_file(pid: u32, tid: i64, file: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/{file}"))
        .unwrap_or_else(|e| panic!("thread {tid} of {pid}: {e}"))
}

fn allowed_cpus(pid: u32, tid: i64) -> String {
    task_file(pid, tid, "status")
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_string())
        .unwrap()
}

/// `query-cpus-fast` as (cpu-index, host thread id).
fn vcpu_threads(q: &mut Qmp) -> Vec<(u64, i64)> {
    q.cmd("query-cpus-fast", json!({}))
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["cpu-index"].as_u64().unwrap(),
                c["thread-id"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn kvm_linux_qmp_threads_numa_status_and_inspection() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_tiny_kernel(dir.path(), &asm::HLT_LOOP);
    let mut vmm = Vmm::start(
        dir.path(),
        &kernel,
        &[
            "--smp",
            "4,sockets=2,cores=2",
            "-m",
            "256M",
            "--numa",
            "node,nodeid=0,cpus=0-1,mem=64M",
            "--numa",
            "node,nodeid=1,cpus=2-3,mem=192M",
        ],
    );
    let mut q = Qmp::connect(&vmm);

    // Each thread id is a thread of the VMM named after its vCPU, and its props carry
    // the node --numa put it on.
    let cpus = q.cmd("query-cpus-fast", json!({}));
    let cpus = cpus.as_array().unwrap();
    assert_eq!(cpus.len(), 4);
    for (i, c) in cpus.iter().enumerate() {
        assert_eq!(c["cpu-index"], json!(i));
        assert_eq!(
            c["qom-path"],
            json!(format!("/machine/unattached/device[{i}]"))
        );
        let tid = c["thread-id"].as_i64().unwrap();
        assert_eq!(
            task_file(vmm.pid(), tid, "comm").trim(),
            format!("vcpu {i}")
        );
        assert_eq!(
            c["props"],
            json!({"node-id": i / 2, "socket-id": i / 2, "die-id": 0, "core-id": i % 2, "thread-id": 0})
        );
    }
    let info_cpus = q.hmp("info cpus");
    let tid0 = cpus[0]["thread-id"].as_i64().unwrap();
    assert!(
        info_cpus.starts_with(&format!("* CPU #0: thread_id={tid0}")),
        "{info_cpus}"
    );
    assert_eq!(info_cpus.lines().count(), 4, "{info_cpus}");
    assert_eq!(
        q.hmp("info numa"),
        "2 nodes\n\
         node 0 cpus: 0 1\nnode 0 size: 64 MB\nnode 0 plugged: 0 MB\n\
         node 1 cpus: 2 3\nnode 1 size: 192 MB\nnode 1 plugged: 0 MB\n"
    );

    // stop / cont change query-status and emit STOP / RESUME.
    let status = |q: &mut Qmp| q.cmd("query-status", json!({}))["status"].clone();
    assert_eq!(status(&mut q), json!("running"));
    assert_eq!(q.cmd("stop", json!({})), json!({}));
    assert_eq!(status(&mut q), json!("paused"));
    assert_eq!(q.hmp("info status"), "VM status: paused\n");
    assert_eq!(q.cmd("cont", json!({})), json!({}));
    assert_eq!(status(&mut q), json!("running"));
    assert_eq!(q.event_names(), ["STOP", "RESUME"]);
    q.events.clear();

    // The BSP sits in the kernel's `hlt` (its RIP just past it), in 64-bit mode on the
    // identity map; the kernel's bytes are in guest memory where the ELF put them.
    let regs = q.hmp("info registers");
    assert!(
        regs.contains(&format!("RIP={:016x}", LOAD_ADDR + 1)),
        "{regs}"
    );
    assert_eq!(
        q.hmp(&format!("gva2gpa {LOAD_ADDR:#x}")),
        format!("gpa: {LOAD_ADDR:#x}\n")
    );
    let xp = q.hmp(&format!("xp /3xb {LOAD_ADDR:#x}"));
    assert!(xp.contains("0xf4 0xeb 0xfd"), "{xp}");
    assert_eq!(
        q.hmp("info registers"),
        regs,
        "a read does not move the guest"
    );

    // The power button is pressed (POWERDOWN); this guest ignores it.
    assert_eq!(q.cmd("system_powerdown", json!({})), json!({}));
    q.event("POWERDOWN");
    assert_eq!(status(&mut q), json!("running"));
    q.quit(&mut vmm);
}

#[test]
fn kvm_linux_qmp_hotplug_unplug_replug_and_guest_reset() {
    let dir = tempfile::tempdir().unwrap();
    const ROUNDS: u8 = 2;
    let kernel = write_tiny_kernel(dir.path(), &ejector(ROUNDS, &asm::i8042_reset()));
    let mut vmm = Vmm::start(dir.path(), &kernel, &["--smp", "1,maxcpus=4"]);
    let mut q = Qmp::connect(&vmm);
    let cpu1 = json!({"driver": "qemu64-x86_64-cpu", "id": "cpu1", "socket-id": 0, "core-id": 1, "thread-id": 0});

    let slot1 = |q: &mut Qmp| {
        let slots = q.cmd("query-hotpluggable-cpus", json!({}));
        let slots = slots.as_array().unwrap().clone();
        assert_eq!(slots.len(), 4);
        // Highest index first, as in QEMU.
        slots[2].clone()
    };
    assert_eq!(slot1(&mut q).get("qom-path"), None);

    for round in 0..ROUNDS {
        // device_add creates thread "vcpu 1" and fills the slot.
        assert_eq!(
            q.cmd("device_add", cpu1.clone()),
            json!({}),
            "round {round}"
        );
        let threads = vcpu_threads(&mut q);
        assert_eq!(threads.len(), 2);
        let (index, tid) = threads[1];
        assert_eq!(index, 1);
        assert_eq!(task_file(vmm.pid(), tid, "comm").trim(), "vcpu 1");
        let slot = slot1(&mut q);
        assert_eq!(slot["qom-path"], json!("/machine/peripheral/cpu1"));
        assert_eq!(slot["props"]["core-id"], json!(1));
        let again = q.call("device_add", cpu1.clone());
        assert_eq!(
            again["error"]["desc"],
            json!("CPU[1] with APIC ID 1 exists"),
            "{again}"
        );

        // device_del only asks the guest; the CPU goes when the guest ejects it.
        assert_eq!(q.cmd("device_del", json!({"id": "cpu1"})), json!({}));
        let deleted = q.event("DEVICE_DELETED");
        assert_eq!(
            deleted["data"],
            json!({"device": "cpu1", "path": "/machine/peripheral/cpu1"})
        );
        if round + 1 < ROUNDS {
            assert_eq!(vcpu_threads(&mut q).len(), 1);
            assert_eq!(slot1(&mut q).get("qom-path"), None);
            // The thread is gone from the process.
            assert!(!Path::new(&format!("/proc/{}/task/{tid}", vmm.pid())).exists());
        }
    }
    // After its last eject the guest resets: SHUTDOWN, and the VMM exits 0 by itself.
    let shutdown = q.event("SHUTDOWN");
    assert_eq!(
        shutdown["data"],
        json!({"guest": true, "reason": "guest-reset"})
    );
    let (code, stderr) = vmm.wait_exit();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("guest reboot"), "{stderr}");
    assert!(!vmm.socket.exists());
}

/// Threads and open fds of the VMM process. The kernel's `kvm-nx-lpage-recovery` worker,
/// which KVM attaches to the process when it first needs it, is not the VMM's.
fn task_and_fd_counts(pid: u32) -> (usize, usize) {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| !comm.starts_with("kvm-"))
        .count();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    (tasks, fds)
}

#[test]
fn kvm_linux_qmp_unplug_waits_for_a_paused_guest_and_cycles_leak_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // 100 ejects before the reset: more than this test makes.
    let kernel = write_tiny_kernel(dir.path(), &ejector(100, &asm::i8042_reset()));
    let mut vmm = Vmm::start(dir.path(), &kernel, &["--smp", "1,maxcpus=2"]);
    let mut q = Qmp::connect(&vmm);
    let pid = vmm.pid();
    let add = json!({"driver": "qemu64-x86_64-cpu", "id": "hot", "socket-id": 0, "core-id": 1, "thread-id": 0});
    let before = task_and_fd_counts(pid);

    // Plugged into a stopped VM, the vCPU waits with the others; the guest cannot eject
    // it before it runs again, so DEVICE_DELETED waits for `cont`.
    assert_eq!(q.cmd("stop", json!({})), json!({}));
    assert_eq!(q.cmd("device_add", add.clone()), json!({}));
    assert_eq!(q.hmp("info status"), "VM status: paused\n");
    let vcpuinfo = q.hmp("vcpuinfo");
    let states: Vec<&str> = vcpuinfo
        .lines()
        .filter_map(|l| l.strip_prefix("State:"))
        .map(str::trim)
        .collect();
    assert_eq!(states, ["paused", "paused"], "{vcpuinfo}");
    assert_eq!(q.cmd("device_del", json!({"id": "hot"})), json!({}));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(vcpu_threads(&mut q).len(), 2);
    assert!(
        !q.event_names().contains(&"DEVICE_DELETED"),
        "{:?}",
        q.events
    );
    assert_eq!(q.cmd("cont", json!({})), json!({}));
    q.event("DEVICE_DELETED");
    assert_eq!(vcpu_threads(&mut q).len(), 1);
    // The slot's KVM vCPU was made at start and parked; plugging and unplugging it
    // opens no fd and leaves no thread.
    let (tasks, fds) = task_and_fd_counts(pid);
    assert_eq!((tasks, fds), before);

    for round in 0..10 {
        assert_eq!(q.cmd("device_add", add.clone()), json!({}), "round {round}");
        assert_eq!(q.cmd("device_del", json!({"id": "hot"})), json!({}));
        q.event("DEVICE_DELETED");
    }
    assert_eq!(vcpu_threads(&mut q).len(), 1);
    assert_eq!(task_and_fd_counts(pid), (tasks, fds));
    q.quit(&mut vmm);
}

#[test]
fn kvm_linux_qmp_guest_power_off_ends_the_vmm() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_tiny_kernel(dir.path(), &ejector(1, &asm::power_off()));
    let mut vmm = Vmm::start(dir.path(), &kernel, &["--smp", "1,maxcpus=2"]);
    let mut q = Qmp::connect(&vmm);
    let add = json!({"driver": "qemu64-x86_64-cpu", "socket-id": 0, "core-id": 1, "thread-id": 0});
    assert_eq!(q.cmd("device_add", add), json!({}));
    // Without an id the CPU is named after its index, as `cpu-add` names it.
    let slots = q.cmd("query-hotpluggable-cpus", json!({}));
    assert_eq!(slots[0]["qom-path"], json!("/machine/peripheral/cpu1"));
    assert_eq!(
        q.call("device_del", json!({"id": "nope"}))["error"],
        json!({"class": "DeviceNotFound", "desc": "Device 'nope' not found"})
    );
    assert_eq!(q.cmd("device_del", json!({"id": "cpu1"})), json!({}));
    assert_eq!(q.event("DEVICE_DELETED")["data"]["device"], json!("cpu1"));
    let shutdown = q.event("SHUTDOWN");
    assert_eq!(
        shutdown["data"],
        json!({"guest": true, "reason": "guest-shutdown"})
    );
    let (code, stderr) = vmm.wait_exit();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("guest power off"), "{stderr}");
}

#[test]
fn kvm_linux_qmp_guest_fault_keeps_the_vmm_for_inspection() {
    let dir = tempfile::tempdir().unwrap();
    let code = asm::program(&[&asm::com1_print(b"about to fault\n"), &asm::UD2]);
    let kernel = write_tiny_kernel(dir.path(), &code);
    let mut vmm = Vmm::start(dir.path(), &kernel, &["--smp", "2"]);
    let mut q = Qmp::connect(&vmm);
    // The fault may come before this client negotiated: poll the state, not the event.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = q.cmd("query-status", json!({}));
        if status["status"] == "shutdown" {
            assert_eq!(status["running"], json!(false));
            break;
        }
        assert!(Instant::now() < deadline, "{status}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The process stays: guest memory can still be read, the VM cannot be resumed.
    let xp = q.hmp(&format!("xp /2xb {LOAD_ADDR:#x}"));
    assert!(xp.contains("0x66 0xba"), "{xp}");
    let cont = q.call("cont", json!({}));
    assert_eq!(
        cont["error"]["desc"],
        json!("the guest stopped the VM; it cannot be resumed (quit, and start it again)")
    );
    assert!(vmm.child.try_wait().unwrap().is_none());
    q.quit(&mut vmm);
}

#[test]
fn kvm_linux_vcpu_threads_have_the_pinned_affinity() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_tiny_kernel(dir.path(), &asm::HLT_LOOP);
    let mut vmm = Vmm::start(
        dir.path(),
        &kernel,
        &[
            "--smp",
            "2,maxcpus=3",
            "--vcpupin",
            "0:1",
            "--vcpupin",
            "1-2:0",
            "--emulatorpin",
            "1",
        ],
    );
    let mut q = Qmp::connect(&vmm);
    let pid = vmm.pid();
    let threads = vcpu_threads(&mut q);
    let allowed: Vec<String> = threads.iter().map(|&(_, t)| allowed_cpus(pid, t)).collect();
    assert_eq!(allowed, ["1", "0"]);
    // The main thread runs where --emulatorpin says.
    assert_eq!(allowed_cpus(pid, i64::from(pid)), "1");

    // A hot-plugged vCPU gets its slot's pin before it ever runs.
    let add = json!({"driver": "qemu64-x86_64-cpu", "id": "cpu2", "socket-id": 0, "core-id": 2, "thread-id": 0});
    assert_eq!(q.cmd("device_add", add), json!({}));
    let threads = vcpu_threads(&mut q);
    assert_eq!(threads.len(), 3);
    assert_eq!(allowed_cpus(pid, threads[2].1), "0");

    // Live re-pin through HMP, and vcpuinfo reads back what /proc says.
    assert_eq!(q.hmp("vcpupin 0 0-1"), "");
    assert_eq!(allowed_cpus(pid, threads[0].1), "0-1");
    let info = q.hmp("vcpuinfo");
    let affinity: Vec<&str> = info
        .lines()
        .filter_map(|l| l.strip_prefix("CPU Affinity:"))
        .map(str::trim)
        .collect();
    assert_eq!(affinity, ["yy", "y-", "y-"], "{info}");
    assert_eq!(q.hmp("vcpupin 7 0"), "Error: CPU 7 does not exist\n");
    q.quit(&mut vmm);
}

#[test]
fn kvm_linux_placement_plan_prints_the_plan_and_exits() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_tiny_kernel(dir.path(), &asm::HLT_LOOP);
    let out = Command::new(env!("CARGO_BIN_EXE_vmm-reference"))
        .arg("--kernel")
        .arg(&kernel)
        .args(["--smp", "2,maxcpus=3", "--vcpupin", "0:1", "--cpuset", "0"])
        .arg("--ledger-dir")
        .arg(dir.path().join("ledger"))
        .arg("--placement-plan")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().take(2).collect())
        .collect();
    assert!(stdout.starts_with("placement policy: "), "{stdout}");
    assert_eq!(
        rows,
        [
            vec!["0", "1"],
            vec!["1", "0"],
            vec!["2", "0"],
            // Without --emulatorpin the VMM's threads share the VM's CPUs.
            vec!["emulator", "0"]
        ],
        "{stdout}"
    );
}

#[test]
fn probe_options_are_refused_with_a_kernel() {
    let rows: &[(&[&str], &str)] = &[
        (
            &["--probe", "spin"],
            "vmm-reference: --probe is not supported with --kernel\n",
        ),
        (
            &["--dump-cpuid", "/tmp/x"],
            "vmm-reference: --dump-cpuid is not supported with --kernel\n",
        ),
    ];
    for (args, want) in rows {
        let out = Command::new(env!("CARGO_BIN_EXE_vmm-reference"))
            .args(["--kernel", "/nonexistent"])
            .args(*args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), *want, "{args:?}");
    }
}

/// The library path: a VMM embedding `Vmm` with a kernel drives hot-plug itself and sees an eject
/// the guest makes (here written to the bus as the guest's vCPU would).
#[test]
fn kvm_linux_vm_unplug_completes_on_eject_and_the_slot_replugs() {
    use cpu_topology::smp::parse_smp;
    use cpu_topology::{TopologyPosition, VcpuIndex};
    use vcpu_lifecycle::ExitHandler;
    use vmm_reference::linux::SerialOutput;
    use vmm_reference::vm::{EjectedCpu, Unplugged};
    use vmm_reference::{Vmm, VmmConfig};

    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_tiny_kernel(dir.path(), &asm::HLT_LOOP);
    let mut config = VmmConfig::kernel(parse_smp("1,maxcpus=2").unwrap(), kernel);
    config.kernel_mut().unwrap().serial = SerialOutput::Null;
    config.placement.ledger_dir = Some(dir.path().join("ledger"));
    let mut vm = Vmm::new(config).unwrap();
    vm.start().unwrap();
    let slot1 = TopologyPosition {
        core: 1,
        ..TopologyPosition::default()
    };
    let base = vm.boot_tables().unwrap().hotplug.unwrap().io_base;
    assert_eq!(base, HOTPLUG_SELECTOR);

    for round in 0..2 {
        assert_eq!(vm.add_vcpu(slot1, "cpu1").unwrap(), VcpuIndex(1), "{round}");
        assert_eq!(vm.present_vcpus(), [VcpuIndex(0), VcpuIndex(1)]);
        let err = vm.add_vcpu(slot1, "cpu9").unwrap_err();
        assert_eq!(err.to_string(), "CPU[1] with APIC ID 1 exists");
        assert_eq!(vm.remove_vcpu("nope").unwrap(), None);
        assert_eq!(
            vm.remove_vcpu("cpu1").unwrap(),
            Some(Unplugged::Requested(VcpuIndex(1)))
        );
        // Nothing happens until the guest ejects.
        assert_eq!(vm.finish_ejected(), []);
        assert_eq!(vm.present_vcpus().len(), 2);
        let bus = vm.bus().devices().unwrap();
        bus.io_out(VcpuIndex(0), base, &1u32.to_le_bytes());
        let mut status = [0u8];
        bus.io_in(VcpuIndex(0), base + 4, &mut status);
        assert_eq!(status[0] & STATUS_REMOVING, STATUS_REMOVING);
        bus.io_out(VcpuIndex(0), base + 4, &[STATUS_EJECT]);
        assert_eq!(
            vm.finish_ejected(),
            [EjectedCpu {
                index: VcpuIndex(1),
                id: Some("cpu1".to_string())
            }]
        );
        assert_eq!(vm.present_vcpus(), [VcpuIndex(0)]);
    }
    vm.stop().unwrap();
    vm.exit();
}

/// `info emulated` shows what the emulation fallback completed, per vCPU and in total:
/// here two `popcnt` at CPL0, which this host's software KVM cannot emulate (on hardware
/// KVM they run natively and every line says `none`).
#[test]
fn kvm_linux_info_emulated_counts_what_the_fallback_completed() {
    let dir = tempfile::tempdir().unwrap();
    const POPCNT_EAX_ECX: [u8; 4] = [0xf3, 0x0f, 0xb8, 0xc1];
    let code = asm::program(&[&POPCNT_EAX_ECX, &POPCNT_EAX_ECX, &asm::HLT_LOOP]);
    let kernel = write_tiny_kernel(dir.path(), &code);
    let vmm = Vmm::start(dir.path(), &kernel, &["--smp", "2"]);
    let mut q = Qmp::connect(&vmm);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let hardware = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    let want = if hardware {
        "CPU #0: none\nCPU #1: none\ntotal: none\n"
    } else {
        "CPU #0: popcnt=2\nCPU #1: none\ntotal: popcnt=2\n"
    };
    // The guest runs on while the client asks: wait for its two instructions.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = q.hmp("info emulated");
    while got != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        got = q.hmp("info emulated");
    }
    assert_eq!(got, want);
    assert!(q
        .hmp("help")
        .contains("info emulated -- show the instructions"));
}

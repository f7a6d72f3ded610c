//! The ledger across real OS processes: concurrent admission races, reclaim of killed
//! processes and of reused pids, removal on drop.
//!
//! The child processes are this test binary itself, run with `--exact ledger_child_role`
//! and `LEDGER_CHILD_DIR` set; without that variable the child role returns at once.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cpu_topology::cpuset::{HostCpuSet, MAX_HOST_CPUS};
use cpu_topology::host::HostCpuInventory;
use vcpu_placement::{Ledger, LedgerEntry, LedgerError, OvercommitPolicy, VcpuLoad, VmLoad};

/// 4 vCPUs floating over CPUs 0-1: 2 vCPUs per CPU. Under 5:1, two such VMs fit.
fn four_vcpus(name: &str) -> VmLoad {
    VmLoad {
        name: name.to_string(),
        vcpus: vec![
            VcpuLoad {
                cpus: HostCpuSet::parse_cpu_list("0-1", MAX_HOST_CPUS).unwrap(),
                dedicated: false,
            };
            4
        ],
    }
}

fn host() -> HostCpuInventory {
    HostCpuInventory::uniform(1, 2, 1)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("placement-ledger-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Children that are released (and killed if still running) when the test ends, even when
/// an assertion fails, so no child outlives its test.
struct Children {
    work: PathBuf,
    procs: Vec<Child>,
}

impl Drop for Children {
    fn drop(&mut self) {
        let _ = fs::write(self.work.join("release"), "");
        let deadline = Instant::now() + Duration::from_secs(10);
        for child in &mut self.procs {
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn_child(work: &Path, id: usize) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "ledger_child_role",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LEDGER_CHILD_DIR", work)
        .env("LEDGER_CHILD_ID", id.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Child role: admit one VM, write the outcome to `result-<id>`, hold the entry until the
/// parent creates `release`, then drop it (which removes the entry) and exit.
#[test]
fn ledger_child_role() {
    let Some(work) = std::env::var_os("LEDGER_CHILD_DIR") else {
        return;
    };
    let work = PathBuf::from(work);
    let id = std::env::var("LEDGER_CHILD_ID").unwrap();
    let ledger = Ledger::open(work.join("ledger")).unwrap();
    // Start barrier: every child admits as soon as the parent creates `go`.
    fs::write(work.join(format!("ready-{id}")), "").unwrap();
    let start = Instant::now();
    while !work.join("go").exists() && start.elapsed() < Duration::from_secs(60) {
        std::hint::spin_loop();
    }
    let outcome = ledger.admit(
        four_vcpus(&format!("vm{id}")),
        &OvercommitPolicy::default(),
        &host(),
    );
    let text = match &outcome {
        Ok(_) => "admitted".to_string(),
        Err(LedgerError::Refused(e)) => format!("refused: {e}"),
        Err(e) => format!("error: {e}"),
    };
    let tmp = work.join(format!("result-{id}.tmp"));
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, work.join(format!("result-{id}"))).unwrap();
    let start = Instant::now();
    while !work.join("release").exists() && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(outcome);
}

#[test]
fn concurrent_processes_admit_at_most_the_limit() {
    const CHILDREN: usize = 6;
    let work = scratch("race");
    let mut children = Children {
        work: work.clone(),
        procs: (0..CHILDREN).map(|i| spawn_child(&work, i)).collect(),
    };
    wait_for("all children ready", Duration::from_secs(60), || {
        (0..CHILDREN).all(|i| work.join(format!("ready-{i}")).exists())
    });
    // Release them at once: they race for the lock.
    fs::write(work.join("go"), "").unwrap();
    wait_for("all children's results", Duration::from_secs(60), || {
        (0..CHILDREN).all(|i| work.join(format!("result-{i}")).exists())
    });
    let results: Vec<String> = (0..CHILDREN)
        .map(|i| fs::read_to_string(work.join(format!("result-{i}"))).unwrap())
        .collect();
    let admitted = results.iter().filter(|r| *r == "admitted").count();
    assert_eq!(admitted, 2, "results: {results:#?}");
    for r in results.iter().filter(|r| *r != "admitted") {
        assert!(
            r.starts_with("refused: VM `vm") && r.ends_with("host CPUs 0 would carry 6.00 vCPUs (limit 5), 1 would carry 6.00 vCPUs (limit 5)"),
            "{r}"
        );
    }
    let ledger = Ledger::open(work.join("ledger")).unwrap();
    assert_eq!(ledger.entries().unwrap().len(), 2);
    fs::write(work.join("release"), "").unwrap();
    for mut child in children.procs.drain(..) {
        assert!(child.wait().unwrap().success());
    }
    // Entries are removed when the admitted VMs are dropped.
    assert!(ledger.entries().unwrap().is_empty());
    fs::remove_dir_all(&work).unwrap();
}

#[test]
fn killed_process_entry_is_reclaimed() {
    let work = scratch("kill");
    fs::write(work.join("go"), "").unwrap();
    let mut children = Children {
        work: work.clone(),
        procs: vec![spawn_child(&work, 0)],
    };
    let child = &mut children.procs[0];
    wait_for("the child's admission", Duration::from_secs(60), || {
        work.join("result-0").exists()
    });
    assert_eq!(
        fs::read_to_string(work.join("result-0")).unwrap(),
        "admitted"
    );
    let ledger = Ledger::open(work.join("ledger")).unwrap();
    let entries = ledger.entries().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].pid, child.id());
    // SIGKILL: no destructor runs, the file stays behind.
    child.kill().unwrap();
    // Before reaping, the child is a zombie: already dead for the ledger.
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        ledger.entries().unwrap().is_empty(),
        "zombie entry reclaimed"
    );
    child.wait().unwrap();
    let leftovers: Vec<_> = fs::read_dir(ledger.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("vm-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // And its capacity is free again: two more VMs fit.
    let a = ledger
        .admit(four_vcpus("a"), &OvercommitPolicy::default(), &host())
        .unwrap();
    let b = ledger
        .admit(four_vcpus("b"), &OvercommitPolicy::default(), &host())
        .unwrap();
    drop((a, b));
    fs::remove_dir_all(&work).unwrap();
}

#[test]
fn entry_of_a_reused_pid_is_reclaimed() {
    let dir = scratch("reuse");
    let ledger = Ledger::open(&dir).unwrap();
    // An entry claiming this very pid, but with another start time: the pid was reused.
    let stale = LedgerEntry {
        pid: std::process::id(),
        start_time: 1,
        vm: four_vcpus("old"),
    };
    fs::write(
        dir.join("vm-stale.json"),
        serde_json::to_vec(&stale).unwrap(),
    )
    .unwrap();
    // An entry of a pid that cannot exist (above pid_max).
    let gone = LedgerEntry {
        pid: 0x7fff_fff0,
        start_time: 1,
        vm: four_vcpus("gone"),
    };
    fs::write(dir.join("vm-gone.json"), serde_json::to_vec(&gone).unwrap()).unwrap();
    // Garbage is ignored, not counted, not deleted.
    fs::write(dir.join("vm-garbage.json"), "{").unwrap();
    assert!(ledger.entries().unwrap().is_empty());
    assert!(!dir.join("vm-stale.json").exists());
    assert!(!dir.join("vm-gone.json").exists());
    assert!(dir.join("vm-garbage.json").exists());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn admitted_entry_lives_until_drop_and_readmit_rechecks() {
    let dir = scratch("drop");
    let ledger = Ledger::open(&dir).unwrap();
    let policy = OvercommitPolicy::default();
    let mut a = ledger.admit(four_vcpus("a"), &policy, &host()).unwrap();
    let warnings: Vec<String> = a.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        ["4 vCPUs on 2 host CPUs (0-1) is not recommended"]
    );
    let entries = ledger.entries().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].vm.name, "a");
    assert_eq!(entries[0].pid, std::process::id());
    let b = ledger.admit(four_vcpus("b"), &policy, &host()).unwrap();
    // Growing `a` to 8 vCPUs would put 6 on each CPU: refused, old entry kept.
    let mut bigger = four_vcpus("a");
    bigger.vcpus.extend(four_vcpus("a").vcpus);
    let err = ledger
        .readmit(&mut a, bigger.clone(), &policy, &host())
        .unwrap_err();
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "VM `a` refused: host CPUs 0 would carry 6.00 vCPUs (limit 5), 1 would carry 6.00 vCPUs (limit 5)"
    );
    assert_eq!(ledger.entries().unwrap()[0].vm.vcpus.len(), 4);
    b.release().unwrap();
    ledger.readmit(&mut a, bigger, &policy, &host()).unwrap();
    assert_eq!(ledger.entries().unwrap()[0].vm.vcpus.len(), 8);
    drop(a);
    assert!(ledger.entries().unwrap().is_empty());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn host_cpu_set_serde_round_trip() {
    let set = HostCpuSet::parse_cpu_list("0,2-3", MAX_HOST_CPUS).unwrap();
    let json = serde_json::to_string(&set).unwrap();
    assert_eq!(json, "\"0,2-3\"");
    assert_eq!(serde_json::from_str::<HostCpuSet>(&json).unwrap(), set);
    assert_eq!(
        serde_json::from_str::<HostCpuSet>("\"\"").unwrap(),
        HostCpuSet::new()
    );
    assert!(serde_json::from_str::<HostCpuSet>("\"5-3\"").is_err());
}

//! Applying plans to real threads and reading back what the kernel reports in /proc.

use std::sync::mpsc;
use std::time::Duration;

use cpu_topology::cpuset::{HostCpuId, HostCpuSet, MAX_HOST_CPUS};
use cpu_topology::host::HostCpuInventory;
use cpu_topology::VcpuIndex;
use vcpu_placement::thread::{parse_cpus_allowed_list, TaskStat};
use vcpu_placement::{
    apply_to_current_thread, pin_thread, thread_affinity, PlacementConfig, PlacementPlan,
    PlacementPolicy, ThreadError, Tid, VcpuInfo,
};

fn list(s: &str) -> HostCpuSet {
    HostCpuSet::parse_cpu_list(s, MAX_HOST_CPUS).unwrap()
}

/// What /proc/self/task/<tid>/status says the thread may use.
fn proc_allowed(tid: Tid) -> HostCpuSet {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
    parse_cpus_allowed_list(&status).unwrap()
}

/// Messages from the test to a "vCPU" thread.
enum Cmd {
    Report,
    Exit,
}

/// What a vCPU thread reports: its id, whether it pinned itself, its Cpus_allowed_list.
type Report = (Tid, bool, HostCpuSet);

/// A running test vCPU thread: command channel, report channel, join handle.
type VcpuThread = (
    mpsc::Sender<Cmd>,
    mpsc::Receiver<Report>,
    std::thread::JoinHandle<()>,
);

/// Spawns a thread that applies `plan` for `vcpu` on itself, then reports its
/// Cpus_allowed_list each time it is asked.
fn spawn_vcpu(plan: PlacementPlan, vcpu: u32) -> VcpuThread {
    let (cmd_tx, cmd_rx) = mpsc::channel();
    let (rep_tx, rep_rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name(format!("vcpu {vcpu}"))
        .spawn(move || {
            let (tid, pinned) = apply_to_current_thread(&plan, VcpuIndex(vcpu)).unwrap();
            while let Ok(Cmd::Report) = cmd_rx.recv() {
                rep_tx.send((tid, pinned, proc_allowed(tid))).unwrap();
            }
        })
        .unwrap();
    (cmd_tx, rep_rx, handle)
}

fn ask(
    tx: &mpsc::Sender<Cmd>,
    rx: &mpsc::Receiver<(Tid, bool, HostCpuSet)>,
) -> (Tid, bool, HostCpuSet) {
    tx.send(Cmd::Report).unwrap();
    rx.recv_timeout(Duration::from_secs(10)).unwrap()
}

#[test]
fn dedicated_plan_applied_to_threads_shows_in_proc_and_live_repin_works() {
    let host = HostCpuInventory::read().unwrap();
    let usable = thread_affinity(Tid::current())
        .unwrap()
        .intersection(host.online());
    assert!(
        usable.len() >= 2,
        "this test needs two usable CPUs, has {usable}"
    );
    let config = PlacementConfig {
        policy: PlacementPolicy::Dedicated,
        cpuset: Some(vcpu_placement::CpuSpec::Cpus(usable.clone())),
        ..Default::default()
    };
    let plan = PlacementPlan::compute(&config, &host, 2).unwrap();
    let threads: Vec<_> = (0..2).map(|v| spawn_vcpu(plan.clone(), v)).collect();
    let mut tids = Vec::new();
    for (v, (tx, rx, _)) in threads.iter().enumerate() {
        let (tid, pinned, allowed) = ask(tx, rx);
        assert!(pinned);
        let want = &plan.vcpu(VcpuIndex(v as u32)).unwrap().cpus;
        assert_eq!(want.len(), 1);
        assert_eq!(&allowed, want, "vCPU {v}: /proc Cpus_allowed_list");
        assert_eq!(
            &thread_affinity(tid).unwrap(),
            want,
            "vCPU {v}: sched_getaffinity"
        );
        tids.push(tid);
    }
    assert_ne!(threads_cpus(&plan, 0), threads_cpus(&plan, 1));
    // The vCPU thread ran after pinning itself, so /proc says it is on its CPU.
    let info = VcpuInfo::read(VcpuIndex(0), tids[0]).unwrap();
    assert_eq!(HostCpuSet::single(info.cpu_now), threads_cpus(&plan, 0));
    assert_eq!(info.affinity, threads_cpus(&plan, 0));
    let text = info.to_libvirt_string("running", host.cpu_id_limit());
    assert!(
        text.starts_with("VCPU:           0\nCPU:            "),
        "{text}"
    );
    assert!(
        text.ends_with(&format!(
            "CPU Affinity:   {}\n",
            threads_cpus(&plan, 0).to_affinity_string(host.cpu_id_limit())
        )),
        "{text}"
    );
    // Live re-pin from this thread: vCPU 0 moves to vCPU 1's CPU.
    let target = threads_cpus(&plan, 1);
    pin_thread(tids[0], &target).unwrap();
    assert_eq!(ask(&threads[0].0, &threads[0].1).2, target);
    assert_eq!(proc_allowed(tids[0]), target);
    for (tx, _, handle) in threads {
        tx.send(Cmd::Exit).unwrap();
        handle.join().unwrap();
    }
}

fn threads_cpus(plan: &PlacementPlan, v: u32) -> HostCpuSet {
    plan.vcpu(VcpuIndex(v)).unwrap().cpus.clone()
}

#[test]
fn unpinned_vcpu_keeps_inherited_affinity() {
    let host = HostCpuInventory::read().unwrap();
    let plan = PlacementPlan::compute(&PlacementConfig::default(), &host, 1).unwrap();
    let inherited = thread_affinity(Tid::current()).unwrap();
    let (tx, rx, handle) = spawn_vcpu(plan, 0);
    let (_, pinned, allowed) = ask(&tx, &rx);
    assert!(!pinned);
    assert_eq!(allowed, inherited);
    tx.send(Cmd::Exit).unwrap();
    handle.join().unwrap();
}

#[test]
fn affinity_errors_name_the_operation() {
    let err = pin_thread(Tid(1), &HostCpuSet::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "refusing to pin thread 1 to an empty CPU set"
    );
    // A thread id above pid_max cannot exist.
    let err = pin_thread(Tid(0x7fff_fff0), &list("0")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "sched_setaffinity(thread 2147483632, CPUs 0) failed"
    );
    let ThreadError::SetAffinity { source, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(source.raw_os_error(), Some(libc_esrch()));
    let err = thread_affinity(Tid(0x7fff_fff0)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "sched_getaffinity(thread 2147483632) failed"
    );
    let err = VcpuInfo::read(VcpuIndex(0), Tid(0x7fff_fff0)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot read /proc/self/task/2147483632/stat"
    );
}

/// ESRCH on Linux.
fn libc_esrch() -> i32 {
    3
}

#[test]
fn task_stat_parses_odd_command_names() {
    // Field 2 may hold spaces and parentheses; fields are counted after the last ')'.
    let mut line = String::from("4242 (vcpu 0) (x)) R");
    for field in 4..=52 {
        let value = match field {
            14 => 150,
            15 => 50,
            22 => 987_654,
            39 => 1,
            _ => 0,
        };
        line.push_str(&format!(" {value}"));
    }
    let stat = TaskStat::parse(&line).unwrap();
    assert_eq!(
        stat,
        TaskStat {
            state: 'R',
            utime: 150,
            stime: 50,
            start_time: 987_654,
            processor: 1
        }
    );
    assert_eq!(TaskStat::parse("1 (x) R 2 3"), None);
    assert_eq!(TaskStat::parse("no parenthesis"), None);
}

#[test]
fn vcpuinfo_text_matches_virsh_layout() {
    let info = VcpuInfo {
        vcpu: VcpuIndex(0),
        tid: Tid(1234),
        cpu_now: HostCpuId(1),
        cpu_time: Duration::from_millis(500),
        affinity: list("0-1"),
    };
    assert_eq!(
        info.to_libvirt_string("running", 4),
        "VCPU:           0\n\
         CPU:            1\n\
         State:          running\n\
         CPU time:       0.5s\n\
         CPU Affinity:   yy--\n"
    );
}

#[test]
fn this_process_start_time_is_stable() {
    let a = TaskStat::of_process(std::process::id()).unwrap().unwrap();
    let b = TaskStat::of_process(std::process::id()).unwrap().unwrap();
    assert_eq!(a.start_time, b.start_time);
    assert!(TaskStat::of_process(0x7fff_fff0).unwrap().is_none());
}

#[test]
fn emulator_pin_applies_to_the_calling_thread() {
    let host = HostCpuInventory::read().unwrap();
    let usable = thread_affinity(Tid::current())
        .unwrap()
        .intersection(host.online());
    let last = usable.last().unwrap();
    let config = PlacementConfig {
        emulator_pin: Some(vcpu_placement::CpuSpec::Cpus(HostCpuSet::single(last))),
        ..Default::default()
    };
    let plan = PlacementPlan::compute(&config, &host, 1).unwrap();
    let unpinned = PlacementPlan::compute(&PlacementConfig::default(), &host, 1).unwrap();
    let (pinned, allowed, untouched) = std::thread::spawn(move || {
        let before = proc_allowed(Tid::current());
        let untouched = !vcpu_placement::apply_emulator_to_current_thread(&unpinned).unwrap()
            && proc_allowed(Tid::current()) == before;
        let pinned = vcpu_placement::apply_emulator_to_current_thread(&plan).unwrap();
        (pinned, proc_allowed(Tid::current()), untouched)
    })
    .join()
    .unwrap();
    assert!(pinned);
    assert!(untouched, "an unpinned emulator placement changes nothing");
    assert_eq!(allowed, HostCpuSet::single(last));
}

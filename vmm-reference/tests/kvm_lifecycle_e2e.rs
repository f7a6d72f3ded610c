//! The VM's vCPUs spinning at CPL3 in the probe guest: pause stops their progress,
//! resume restarts it, stop ends their threads, and nothing hangs.

use std::time::{Duration, Instant};

use cpu_topology::smp::parse_smp;
use cpu_topology::VcpuIndex;
use probe_guest::ProbeMode;
use vcpu_lifecycle::{VcpuEvent, VcpuState};
use vmm_reference::{Vmm, VmmConfig};

fn spinning_vm(smp: &str) -> Vmm {
    vmm_reference::testing::require_kvm();
    let mut config = VmmConfig::new(parse_smp(smp).unwrap());
    config.probe_mut().unwrap().mode = ProbeMode::Spin { iterations: 0 };
    Vmm::new(config).unwrap()
}

fn progress(vmm: &Vmm) -> Vec<u64> {
    vmm.vcpus()
        .iter()
        .map(|h| vmm.progress(h.index()).unwrap())
        .collect()
}

fn states(vmm: &Vmm) -> Vec<VcpuState> {
    vmm.vcpus().iter().map(|h| h.state()).collect()
}

/// Wait until every counter moved past `before` (or fail after a generous limit).
fn wait_for_progress(vmm: &Vmm, before: &[u64]) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = progress(vmm);
        if now.iter().zip(before).all(|(n, b)| n > b) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "vCPUs made no progress: {before:?} -> {now:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn kvm_pause_resume_stop_of_spinning_vcpus() {
    let mut vmm = spinning_vm("4,sockets=2,cores=2");
    assert!(states(&vmm).iter().all(|s| *s == VcpuState::Created));
    vmm.start().unwrap();
    assert!(states(&vmm).iter().all(|s| *s == VcpuState::Running));
    let running = wait_for_progress(&vmm, &[0; 4]);

    vmm.pause().unwrap();
    assert!(
        states(&vmm).iter().all(|s| *s == VcpuState::Paused),
        "{:?}",
        states(&vmm)
    );
    let paused = progress(&vmm);
    assert!(paused.iter().zip(&running).all(|(p, r)| p >= r));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        progress(&vmm),
        paused,
        "a paused vCPU kept running its guest"
    );

    vmm.resume().unwrap();
    assert!(states(&vmm).iter().all(|s| *s == VcpuState::Running));
    wait_for_progress(&vmm, &paused);

    // Several quick cycles: each pause must take effect and none may hang.
    for _ in 0..20 {
        vmm.pause().unwrap();
        vmm.resume().unwrap();
    }

    vmm.stop().unwrap();
    assert!(states(&vmm).iter().all(|s| *s == VcpuState::Stopped));
    let stopped = progress(&vmm);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(progress(&vmm), stopped);
    // No vCPU thread is left: the names `vcpu N` are gone from this process.
    let names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .collect();
    assert!(!names.iter().any(|n| n.starts_with("vcpu ")), "{names:?}");
}

#[test]
fn kvm_finite_spin_halts_each_vcpu_once() {
    vmm_reference::testing::require_kvm();
    let mut config = VmmConfig::new(parse_smp("2").unwrap());
    config.probe_mut().unwrap().mode = ProbeMode::Spin {
        iterations: 100_000,
    };
    let mut vmm = Vmm::new(config).unwrap();
    vmm.start().unwrap();
    let mut halted = Vec::new();
    while halted.len() < 2 {
        match vmm.next_event(Duration::from_secs(20)) {
            Some(VcpuEvent::Halted { vcpu }) => halted.push(vcpu),
            other => panic!("expected Halted, got {other:?}"),
        }
    }
    halted.sort();
    assert_eq!(halted, [VcpuIndex(0), VcpuIndex(1)]);
    assert_eq!(progress(&vmm), [100_000, 100_000]);
    assert!(states(&vmm).iter().all(|s| *s == VcpuState::Halted));
    vmm.stop().unwrap();
}

#[test]
fn kvm_run_reports_workload_progress() {
    vmm_reference::testing::require_kvm();
    let mut config = VmmConfig::new(parse_smp("2").unwrap());
    config.probe_mut().unwrap().mode = ProbeMode::Barrier {
        rounds: 50,
        work: 1000,
    };
    let summary = Vmm::new(config).unwrap().run().unwrap().summary().unwrap();
    let rounds: Vec<u64> = summary.workload.iter().map(|w| w.progress).collect();
    assert_eq!(rounds, [50, 50]);
}

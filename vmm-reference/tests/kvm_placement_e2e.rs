//! vCPU threads apply their pins on themselves; what /proc shows is exactly the plan,
//! before and after a live re-pin, and vcpuinfo agrees with /proc.

use std::time::Duration;

use cpu_topology::smp::parse_smp;
use cpu_topology::VcpuIndex;
use probe_guest::ProbeMode;
use vcpu_placement::VcpuPin;
use vmm_reference::{Vmm, VmmConfig};

/// `Cpus_allowed_list` of one thread of this process.
fn allowed(tid: i32) -> String {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_string())
        .unwrap()
}

/// Field 39 of /proc/self/task/TID/stat: the CPU the thread last ran on.
fn last_cpu(tid: i32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    after_comm
        .split_whitespace()
        .nth(36)
        .unwrap()
        .parse()
        .unwrap()
}

fn pinned_vm(pins: &[&str], ledger: &std::path::Path) -> Vmm {
    vmm_reference::testing::require_kvm();
    let mut config = VmmConfig::new(parse_smp("4").unwrap());
    config.probe_mut().unwrap().mode = ProbeMode::Spin { iterations: 0 };
    config.placement.config.vcpu_pins = pins.iter().map(|p| VcpuPin::parse(p).unwrap()).collect();
    config.placement.ledger_dir = Some(ledger.to_path_buf());
    Vmm::new(config).unwrap()
}

#[test]
fn kvm_vcpu_threads_have_exactly_the_planned_affinity() {
    let ledger = tempfile::tempdir().unwrap();
    let mut vmm = pinned_vm(&["0:0", "1:1", "2-3:0-1"], ledger.path());
    vmm.start().unwrap();
    let tids: Vec<i32> = vmm.vcpus().iter().map(|h| h.thread_id().0).collect();
    // The hook ran on each thread before its first KVM_RUN.
    assert_eq!(
        tids.iter().map(|&t| allowed(t)).collect::<Vec<_>>(),
        ["0", "1", "0-1", "0-1"]
    );
    // The VM is recorded in the host ledger while it lives.
    let entries = std::fs::read_dir(ledger.path()).unwrap().filter(|e| {
        e.as_ref()
            .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".json"))
    });
    assert_eq!(entries.count(), 1);

    // Live re-pin, as `virsh vcpupin 2 1` would.
    vmm.vcpupin(VcpuIndex(2), "1").unwrap();
    vmm.vcpupin(VcpuIndex(0), "r").unwrap();
    assert_eq!(
        tids.iter().map(|&t| allowed(t)).collect::<Vec<_>>(),
        ["0-1", "1", "1", "0-1"]
    );
    // Give the scheduler a moment to move vCPU 2 to its only CPU.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(last_cpu(tids[2]), 1);

    // vcpuinfo agrees with /proc: affinity strings and current CPUs.
    let info = vmm.vcpuinfo().unwrap();
    let blocks: Vec<&str> = info.split("\n\n").collect();
    assert_eq!(blocks.len(), 4, "{info}");
    let affinity: Vec<&str> = blocks
        .iter()
        .map(|b| {
            b.lines()
                .find_map(|l| l.strip_prefix("CPU Affinity:"))
                .unwrap()
                .trim()
        })
        .collect();
    assert_eq!(affinity, ["yy", "-y", "-y", "yy"], "{info}");
    assert!(
        blocks.iter().all(|b| b.contains("State:          running")),
        "{info}"
    );
    assert!(blocks[2].contains("CPU:            1"), "{info}");

    // Bad re-pins are refused and change nothing.
    assert!(vmm.vcpupin(VcpuIndex(9), "0").is_err());
    assert!(vmm.vcpupin(VcpuIndex(1), "7").is_err());
    assert!(vmm.vcpupin(VcpuIndex(1), "5-3").is_err());
    assert_eq!(allowed(tids[1]), "1");

    vmm.stop().unwrap();
    drop(vmm);
    // The ledger entry is gone with the VM.
    let left = std::fs::read_dir(ledger.path()).unwrap().filter(|e| {
        e.as_ref()
            .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".json"))
    });
    assert_eq!(left.count(), 0);
}

#[test]
fn kvm_bad_pins_are_refused_before_any_vcpu_runs() {
    vmm_reference::testing::require_kvm();
    let ledger = tempfile::tempdir().unwrap();
    for (pin, want) in [("7:0", "names vCPU 7"), ("0:64", "this host does not have")] {
        let mut config = VmmConfig::new(parse_smp("2").unwrap());
        config.placement.config.vcpu_pins = vec![VcpuPin::parse(pin).unwrap()];
        config.placement.ledger_dir = Some(ledger.path().to_path_buf());
        let err = Vmm::new(config).unwrap_err();
        assert!(err.is_bad_input(), "{pin}: {err}");
        assert!(
            vmm_reference::error_chain(&err).contains(want),
            "{pin}: {}",
            vmm_reference::error_chain(&err)
        );
    }
}

#[test]
fn kvm_overcommit_advice_explains_and_measures_each_width() {
    vmm_reference::testing::require_kvm();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vmm-reference"))
        .args([
            "overcommit-advice",
            "--smp",
            "4",
            "--window-ms",
            "250",
            "--barrier-work",
            "1000",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with("guest: 4 vCPUs; allowed host CPUs: "),
        "{text}"
    );
    assert!(text.contains("\nadvice: "), "{text}");
    // One row per measured width, 1, 2 and 4, each with a positive spin rate.
    let rows: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| vCPUs"))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    assert_eq!(
        rows.iter().map(|r| r[0]).collect::<Vec<_>>(),
        ["1", "2", "4"],
        "{text}"
    );
    for r in &rows {
        assert!(
            r[2].parse::<f64>().unwrap() > 0.0,
            "no spin progress: {r:?}"
        );
        assert!(
            r[6].parse::<f64>().unwrap() > 0.0,
            "no barrier round passed: {r:?}"
        );
    }
}

//! `cpuid-plan` and `cpuid-baseline` through the binary: no KVM, host CPUID from dumps.
//! hwloc's x86 backend decodes what the planner wrote, independently of our decoder.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/cpuid-model/tests/data")
        .join(name)
}

fn vmm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmm-reference"))
        .args(args)
        .output()
        .unwrap()
}

fn plan(host: &str, smp: &str, cpu: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let hw = dir.path().join("hw");
    let raw = dir.path().join("cpuid.txt");
    let out = vmm(&[
        "cpuid-plan",
        "--host-dump",
        fixture(host).to_str().unwrap(),
        "--smp",
        smp,
        "--cpu",
        cpu,
        "--dump-cpuid",
        raw.to_str().unwrap(),
        "--dump-cpuid-hwloc",
        hw.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{host} {smp} {cpu}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

#[test]
fn hwloc_finds_the_planned_topology_on_both_vendors() {
    // (smp, packages, dies, cores, pus)
    let rows = [
        ("8,sockets=2,cores=2,threads=2", 2, 2, 4, 8),
        ("12,sockets=2,dies=2,cores=3", 2, 4, 12, 12),
        ("6,maxcpus=12,sockets=2,cores=3,threads=2", 1, 1, 3, 6),
        ("16,sockets=2,dies=2,cores=2,threads=2", 2, 4, 8, 16),
    ];
    for (host, cpu) in [
        ("host-intel-cascadelake-synth.txt", "Cascadelake-Server"),
        ("host-amd-zen4.txt", "EPYC"),
    ] {
        for (smp, packages, dies, cores, pus) in rows {
            let dir = plan(host, smp, cpu);
            let hw = dir.path().join("hw");
            let what = format!("{host} --smp {smp}");
            assert_eq!(
                vmm_reference::testing::hwloc_count(&hw, "package"),
                packages,
                "{what}: packages"
            );
            assert_eq!(
                vmm_reference::testing::hwloc_count(&hw, "core"),
                cores,
                "{what}: cores"
            );
            assert_eq!(
                vmm_reference::testing::hwloc_count(&hw, "pu"),
                pus,
                "{what}: PUs"
            );
            // Intel guests describe dies in leaf 0x1F, present only with more than one die.
            if host.contains("intel") && dies > packages {
                assert_eq!(
                    vmm_reference::testing::hwloc_count(&hw, "die"),
                    dies,
                    "{what}: dies"
                );
            }
        }
    }
}

#[test]
fn the_plan_prints_the_cpu_info_summary() {
    let out = vmm(&[
        "cpuid-plan",
        "--host-dump",
        fixture("host-amd-zen4.txt").to_str().unwrap(),
        "--smp",
        "8,sockets=2,cores=2,threads=2",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Hyper threading is enabled. Each core has 2 threads."),
        "{text}"
    );
    assert!(text.contains("physical CPU number in total: 2"), "{text}");
}

#[test]
fn enforce_on_a_host_without_the_features_is_refused() {
    let out = vmm(&[
        "cpuid-plan",
        "--host-dump",
        fixture("host-amd-zen4.txt").to_str().unwrap(),
        "--cpu",
        "Haswell,enforce",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("hle"), "{err}");
}

#[test]
fn baseline_of_a_fleet() {
    let amd = fixture("host-amd-zen4.txt");
    let out = vmm(&["cpuid-baseline", amd.to_str().unwrap()]);
    assert!(out.status.success());
    let spec = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(spec.starts_with("EPYC"), "{spec}");
    // The baseline plans cleanly on its own host under enforce.
    let out = vmm(&[
        "cpuid-plan",
        "--host-dump",
        amd.to_str().unwrap(),
        "--cpu",
        &format!("{spec},enforce"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = vmm(&["cpuid-baseline", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(2));
}

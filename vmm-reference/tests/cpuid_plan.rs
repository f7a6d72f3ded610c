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

#[test]
fn bad_cpu_specs_are_one_line_errors_with_exit_2() {
    let zen4 = fixture("host-amd-zen4.txt");
    for (cpu, says) in [
        ("Skylake-Servr", "unknown CPU model 'Skylake-Servr'"),
        ("EPYC-Rome-v7", "unknown CPU model 'EPYC-Rome-v7'"),
        ("EPYC-Rome-v2,+avx9", "unknown CPU feature 'avx9'"),
        ("EPYC,phys-bits=0", "invalid value '0' for 'phys-bits'"),
        ("EPYC,phys-bits=53", "invalid value '53' for 'phys-bits'"),
    ] {
        let out = vmm(&[
            "cpuid-plan",
            "--host-dump",
            zen4.to_str().unwrap(),
            "--cpu",
            cpu,
        ]);
        assert_eq!(out.status.code(), Some(2), "{cpu}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{cpu}: {err}");
        assert!(err.contains(says), "{cpu}: {err}");
    }
}

/// A copy of a fixture dump with every feature of `model` (and QEMU's KVM defaults) on.
fn dump_with_features_of(host: &str, model: &str, dir: &Path) -> PathBuf {
    use cpuid_model::{check, dump, features, model as models, CpuidEntry};
    let text = std::fs::read_to_string(fixture(host)).unwrap();
    let mut t = dump::parse_raw(&text).unwrap().remove(0).table;
    let m = models::find(model).unwrap();
    let defaults = check::KVM_DEFAULT_ON
        .iter()
        .map(|n| features::by_name(n).unwrap());
    for f in m.features.iter().copied().chain(defaults) {
        if t.get(f.key()).is_none() {
            t.insert(f.key(), CpuidEntry::default());
        }
        f.set(&mut t, true);
    }
    let path = dir.join(format!("{model}-{host}"));
    std::fs::write(&path, dump::to_raw_string(&[(0, &t)])).unwrap();
    path
}

#[test]
fn a_named_model_plans_the_same_cpuid_on_an_amd_and_an_intel_host() {
    let dir = tempfile::tempdir().unwrap();
    for cpu in [
        "Skylake-Server-v4",
        "EPYC-Rome-v2",
        "Cooperlake-v2",
        "Dhyana",
    ] {
        let mut dumps = Vec::new();
        for host in ["host-amd-zen4.txt", "host-intel-cascadelake-synth.txt"] {
            let hd = dump_with_features_of(host, cpu, dir.path());
            let raw = dir.path().join(format!("{cpu}-{host}.plan"));
            let out = vmm(&[
                "cpuid-plan",
                "--host-dump",
                hd.to_str().unwrap(),
                "--smp",
                "6,sockets=2,cores=3",
                "--cpu",
                cpu,
                "--dump-cpuid",
                raw.to_str().unwrap(),
            ]);
            assert!(
                out.status.success(),
                "{cpu} on {host}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = std::fs::read_to_string(&raw).unwrap();
            // The hypervisor leaves belong to the accelerator, not the model.
            let model_lines: Vec<String> = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("0x4000"))
                .map(str::to_string)
                .collect();
            dumps.push(model_lines);
        }
        assert!(dumps[0].len() > 40, "{cpu}");
        assert_eq!(dumps[0], dumps[1], "{cpu}");
    }
}

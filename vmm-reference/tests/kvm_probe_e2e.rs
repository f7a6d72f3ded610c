//! End-to-end: the real binary runs the probe guest and every vCPU reports its own view.
//! These tests need /dev/kvm and fail loudly without it.

use std::process::{Command, Output};

use cpu_topology::smp::parse_smp;
use cpu_topology::VcpuIndex;
use cpuid_model::decode::topology_view;
use cpuid_model::dump::parse_raw;
use cpuid_model::CpuidKey;

fn vmm(args: &[&str]) -> Output {
    vmm_reference::testing::require_kvm();
    Command::new(env!("CARGO_BIN_EXE_vmm-reference"))
        .args(args)
        .output()
        .expect("run vmm-reference")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Run `--smp smp` with a dump and check that vCPU i saw exactly the APIC id and position
/// the topology gives slot i, through its own CPUID (leaf 0xB EDX and the decoded view).
fn check_every_vcpu_reports_its_own_apic_id(smp: &str) {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("cpuid.txt");
    let out = vmm(&["--smp", smp, "--dump-cpuid", dump.to_str().unwrap()]);
    assert!(out.status.success(), "--smp {smp}: {}", stderr(&out));

    let topo = parse_smp(smp).unwrap();
    let layout = topo.apic_layout();
    let cpus = parse_raw(&std::fs::read_to_string(&dump).unwrap()).unwrap();
    assert_eq!(
        cpus.len(),
        topo.cpus() as usize,
        "--smp {smp}: one CPU section per vCPU"
    );
    for (i, cpu) in cpus.iter().enumerate() {
        let index = VcpuIndex(i as u32);
        assert_eq!(cpu.index, Some(index.0));
        let want = layout.apic_id(index).unwrap().0;
        let x2apic = cpu.table.regs(CpuidKey::subleaf(0xb, 0)).map(|r| r.edx);
        assert_eq!(x2apic, Some(want), "--smp {smp}: vCPU {i} leaf 0xB EDX");
        let view = topology_view(&cpu.table).unwrap();
        let pos = topo.position(index).unwrap();
        assert_eq!(view.apic_id, want, "--smp {smp}: vCPU {i}");
        assert_eq!(view.package_id, pos.socket, "--smp {smp}: vCPU {i} socket");
        assert_eq!(view.thread_id, pos.thread, "--smp {smp}: vCPU {i} thread");
        assert_eq!(
            view.threads_per_core,
            topo.threads(),
            "--smp {smp}: vCPU {i}"
        );
    }
    // The summary table has one row per vCPU with that APIC id.
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("logical CPU number in total: {}\n", topo.cpus())),
        "{text}"
    );
    for i in 0..topo.cpus() {
        let id = layout.apic_id(VcpuIndex(i)).unwrap().0;
        let row = format!("\n{i:>5} {id:>8} ");
        assert!(
            text.contains(&row),
            "--smp {smp}: no row {row:?} in\n{text}"
        );
    }
}

#[test]
fn kvm_one_vcpu() {
    check_every_vcpu_reports_its_own_apic_id("1");
}

#[test]
fn kvm_two_vcpus() {
    check_every_vcpu_reports_its_own_apic_id("2");
}

#[test]
fn kvm_two_sockets_two_cores_two_threads() {
    check_every_vcpu_reports_its_own_apic_id("8,sockets=2,cores=2,threads=2");
}

#[test]
fn kvm_sparse_apic_ids_with_dies() {
    check_every_vcpu_reports_its_own_apic_id("12,sockets=2,dies=2,cores=3");
}

#[test]
fn kvm_64_vcpus() {
    check_every_vcpu_reports_its_own_apic_id("64");
}

#[test]
fn kvm_present_below_maxcpus() {
    check_every_vcpu_reports_its_own_apic_id("4,maxcpus=8,sockets=2");
}

#[test]
fn kvm_300_vcpus_with_x2apic_ids() {
    check_every_vcpu_reports_its_own_apic_id("300");
}

#[test]
fn kvm_cpu_info_sh_summary() {
    let out = vmm(&["--smp", "8,sockets=2,cores=2,threads=2", "-m", "256M"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let head: Vec<&str> = text.lines().take(5).collect();
    assert_eq!(
        head,
        [
            "logical CPU number in total: 8",
            "physical CPU number in total: 2",
            "core number in a physical CPU: 2",
            "logical CPU number in a physical CPU: 4",
            "Hyper threading is enabled. Each core has 2 threads.",
        ]
    );
}

#[test]
fn kvm_dump_decodes_with_the_cpuid_tool() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("cpuid.txt");
    let out = vmm(&[
        "--smp",
        "4,sockets=2,cores=2",
        "--dump-cpuid",
        dump.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let decoded = Command::new("cpuid").arg("-f").arg(&dump).output().expect(
        "the `cpuid` tool is missing: install the Debian package cpuid (scripts/install-deps)",
    );
    assert!(decoded.status.success());
    let text = stdout(&decoded);
    assert_eq!(
        text.matches("\nCPU ").count() + usize::from(text.starts_with("CPU ")),
        4,
        "{text}"
    );
    // cpuid's own synthesized decode of each vCPU's APIC id: 2 packages of 2 cores.
    let synth: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("(APIC synth):"))
        .map(str::trim)
        .collect();
    assert_eq!(
        synth,
        [
            "(APIC synth): PKG_ID=0 CORE_ID=0 SMT_ID=0",
            "(APIC synth): PKG_ID=0 CORE_ID=1 SMT_ID=0",
            "(APIC synth): PKG_ID=1 CORE_ID=0 SMT_ID=0",
            "(APIC synth): PKG_ID=1 CORE_ID=1 SMT_ID=0",
        ],
        "{text}"
    );
}

#[test]
fn kvm_hwloc_sees_the_guest_topology() {
    let dir = tempfile::tempdir().unwrap();
    let hw = dir.path().join("hwloc");
    let out = vmm(&[
        "--smp",
        "8,sockets=2,cores=2,threads=2",
        "--dump-cpuid-hwloc",
        hw.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(vmm_reference::testing::hwloc_count(&hw, "package"), 2);
    assert_eq!(vmm_reference::testing::hwloc_count(&hw, "core"), 4);
    assert_eq!(vmm_reference::testing::hwloc_count(&hw, "pu"), 8);
}

#[test]
fn kvm_triple_fault_stops_the_vm_with_the_reason() {
    let out = vmm(&["--smp", "2", "--probe", "triple-fault"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("guest stopped: vCPU "), "{err}");
    assert!(
        err.contains("triple fault (KVM_EXIT_SHUTDOWN) at RIP 0x"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn kvm_emulation_failure_stops_the_vm_with_the_reason() {
    let out = vmm(&["--probe", "bad-fetch"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("KVM_EXIT_INTERNAL_ERROR"), "{err}");
    assert!(err.contains("emulation failure"), "{err}");
    assert!(err.contains("at RIP 0xd0000000"), "{err}");
}

#[test]
fn kvm_host_check_says_kvm_works() {
    let out = vmm(&["host-check"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("KVM_CAP_MAX_VCPUS"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("verdict: KVM works here")),
        "{text}"
    );
}

/// A QEMU command line's everyday switches run the VM unchanged.
#[test]
fn kvm_qemu_switches_are_accepted() {
    let out = vmm(&[
        "-machine",
        "pc,accel=kvm",
        "-accel",
        "kvm",
        "-enable-kvm",
        "-nographic",
        "-display",
        "none",
        "-nodefaults",
        "-no-reboot",
        "-smp",
        "2",
        "-m",
        "128",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("logical CPU number in total: 2"),
        "{}",
        stdout(&out)
    );
}

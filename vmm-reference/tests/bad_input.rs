//! Bad input: one line on stderr, exit status 2, never a panic. No KVM needed: every row
//! is refused before /dev/kvm is opened.

use std::process::Command;

#[test]
fn malformed_options_give_one_line_and_status_2() {
    let rows: &[(&[&str], &str)] = &[
        (&["--bogus"], "unexpected argument '--bogus'"),
        (&["--smp"], "a value is required for '--smp <SMP>'"),
        (&["--smp", "0"], "must be greater than zero"),
        (&["--smp", "x"], "invalid value 'x' for '--smp <SMP>'"),
        (
            &["--smp", "4,sockets=3"],
            "product of the hierarchy must match maxcpus",
        ),
        (
            &["--smp", "4,maxcpus=2"],
            "maxcpus must be equal to or greater than smp",
        ),
        (
            &["-smp", "4,cores=3"],
            "product of the hierarchy must match maxcpus",
        ),
        (&["-m", "0"], "memory size must be greater than zero"),
        (&["-m", "12Q"], "unknown suffix 'Q'"),
        (&["--memory=-5"], "invalid value '-5' for '--memory <SIZE>'"),
        (&["-m", "99999999999999999999"], "invalid value"),
        (&["--cpu", "nosuch"], "unknown CPU model 'nosuch'"),
        (&["--cpu", "qemu64,+nosuchflag"], "nosuchflag"),
        (&["--probe", "dance"], "unknown probe mode 'dance'"),
        (
            &["--syscall-completion", "maybe"],
            "invalid syscall completion \"maybe\": expected \"on\" or \"off\"",
        ),
        (
            &["--timeout", "soon"],
            "invalid value 'soon' for '--timeout <SECONDS>'",
        ),
        (&["host-check", "--smp", "2"], "unexpected argument"),
        (
            &["--vcpupin", "x"],
            "invalid value 'x' for '--vcpupin <VCPU:CPUSET>'",
        ),
        (&["--vcpupin", "0:5-3"], "5-3"),
        (
            &["--cpuset", "1-4,^"],
            "invalid value '1-4,^' for '--cpuset <CPUSET>'",
        ),
        (
            &["--emulatorpin", ""],
            "invalid value '' for '--emulatorpin <CPUSET>'",
        ),
        (
            &["--placement", "greedy"],
            "invalid value 'greedy' for '--placement <POLICY>'",
        ),
        (
            &["--overcommit", "maybe"],
            "invalid value 'maybe' for '--overcommit <MODE>'",
        ),
        (
            &["--overcommit-ratio", "0"],
            "invalid value '0' for '--overcommit-ratio <N>'",
        ),
        // QEMU's switches that this VMM refuses, each with what to do instead.
        (
            &["-machine", "microvm"],
            "unsupported machine type 'microvm'",
        ),
        (
            &["-machine", "q35"],
            "this VMM's q35 has kernel-irqchip=split",
        ),
        (
            &["-M", "pc,kernel-irqchip=split"],
            "this VMM's pc has kernel-irqchip=on",
        ),
        (
            &["--kernel", "/dev/null", "-device", "edu"],
            "-device edu and intel-iommu need -machine q35,kernel-irqchip=split",
        ),
        (
            &["-device", "intel-iommu,intremap=off"],
            "intremap=off is not supported",
        ),
        (
            &["-M", "pc,accel=tcg"],
            "accelerator 'tcg' is not available",
        ),
        (&["-accel", "tcg"], "runs guests with KVM only (-accel kvm)"),
        (&["-daemonize"], "-daemonize is not supported"),
        (&["-S"], "-S needs a monitor to continue the VM: add --qmp"),
        (&["-device", "e1000"], "unsupported device 'e1000'"),
        (&["-device", "pc-testdev"], "-device is for kernel payloads"),
        (
            &["-display", "gtk"],
            "invalid value 'gtk' for '--display <TYPE>'",
        ),
    ];
    for (args, want) in rows {
        let out = Command::new(env!("CARGO_BIN_EXE_vmm-reference"))
            .args(*args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: not one line:\n{err}");
        assert!(err.starts_with("vmm-reference: "), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: expected {want:?} in {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn help_and_cpu_help_succeed() {
    let out = Command::new(env!("CARGO_BIN_EXE_vmm-reference"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("--smp <SMP>") && text.contains("host-check"),
        "{text}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_vmm-reference"))
        .args(["-cpu", "help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for model in ["qemu64", "kvm64", "SandyBridge", "EPYC", "host"] {
        assert!(text.contains(model), "{model} missing from --cpu help");
    }
}

/// `--numa-cells` files that cannot be used: one line naming the file and what is wrong.
#[test]
fn bad_numa_cells_files_give_one_line_and_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let rows = [
        (
            file("broken.xml", "<domain><cpu><numa><cell id='0'"),
            "broken.xml: libvirt XML: ",
        ),
        (
            file("nocell.xml", "<domain/>"),
            "no <numa><cell> element found",
        ),
        (
            file("nomem.xml", "<numa><cell id='0' cpus='0'/></numa>"),
            "<cell id='0'>: no memory attribute",
        ),
        (
            file("cpus.json", r#"[{"id": 0, "cpus": "3-1", "memory": 1}]"#),
            "NUMA cell 0: cpus '3-1'",
        ),
        (file("garbage.json", "{"), "not a JSON list of NUMA cells"),
        (
            dir.path().join("missing").display().to_string(),
            "cannot read",
        ),
    ];
    for (path, want) in rows {
        let out = Command::new(env!("CARGO_BIN_EXE_vmm-reference"))
            .args(["--numa-cells", &path])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{path}: {err}");
        assert_eq!(err.lines().count(), 1, "{path}: not one line:\n{err}");
        assert!(err.contains(want), "{path}: expected {want:?} in {err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_vmm-reference"))
        .args(["--numa-cells", &rows_path(&dir), "--numa", "node"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}

fn rows_path(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("ok.json");
    std::fs::write(&path, r#"[{"id": 0, "cpus": "0", "memory": 131072}]"#).unwrap();
    path.display().to_string()
}

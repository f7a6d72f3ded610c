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

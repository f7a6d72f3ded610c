//! A host check, as virt-host-validate and QEMU's `info kvm` give it: can this user open
//! /dev/kvm, which API version and capabilities does KVM offer (`vmm-reference host-check`).
//!
//! The check reports facts as found, including on hosts whose KVM is a software or nested
//! backend: there /proc/cpuinfo shows no vmx/svm flag although /dev/kvm works.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::path::Path;

use kvm_bindings::{
    KVM_CAP_IMMEDIATE_EXIT, KVM_CAP_IRQCHIP, KVM_CAP_MAX_VCPUS, KVM_CAP_MAX_VCPU_ID,
    KVM_CAP_MP_STATE, KVM_CAP_NR_MEMSLOTS, KVM_CAP_NR_VCPUS, KVM_CAP_SPLIT_IRQCHIP,
    KVM_CAP_X2APIC_API,
};
use kvm_ioctls::Kvm;

/// The KVM API version every kernel since 2.6.22 reports.
const KVM_API_VERSION: i32 = 12;

/// Capabilities this project relies on, with why.
const CAPS: &[(&str, u32, &str)] = &[
    ("KVM_CAP_IRQCHIP", KVM_CAP_IRQCHIP, "in-kernel LAPIC/IOAPIC"),
    (
        "KVM_CAP_IMMEDIATE_EXIT",
        KVM_CAP_IMMEDIATE_EXIT,
        "kicking vCPUs out of KVM_RUN",
    ),
    (
        "KVM_CAP_MP_STATE",
        KVM_CAP_MP_STATE,
        "starting every vCPU runnable",
    ),
    (
        "KVM_CAP_X2APIC_API",
        KVM_CAP_X2APIC_API,
        "APIC ids above 254",
    ),
    (
        "KVM_CAP_SPLIT_IRQCHIP",
        KVM_CAP_SPLIT_IRQCHIP,
        "user-space IOAPIC (optional)",
    ),
];

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckLine {
    /// What was checked.
    pub what: String,
    /// PASS, WARN, FAIL or INFO.
    pub status: &'static str,
    /// The value or explanation.
    pub detail: String,
}

/// The whole report and its verdict.
#[derive(Debug, Clone)]
pub struct HostReport {
    /// Lines in check order.
    pub lines: Vec<CheckLine>,
    /// True when this project's VMs can run here.
    pub usable: bool,
    /// One sentence for the user.
    pub verdict: String,
}

fn line(what: &str, status: &'static str, detail: impl Into<String>) -> CheckLine {
    CheckLine {
        what: what.to_string(),
        status,
        detail: detail.into(),
    }
}

/// The virtualization flag /proc/cpuinfo shows, if any, and whether it shows `hypervisor`.
fn cpuinfo_flags(cpuinfo: &str) -> (Option<&'static str>, bool) {
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, f)| f.split_whitespace().collect::<Vec<_>>())
        .unwrap_or_default();
    let virt = ["vmx", "svm"].into_iter().find(|f| flags.contains(f));
    (virt, flags.contains(&"hypervisor"))
}

/// Run the checks against `dev` (normally /dev/kvm) and the given /proc/cpuinfo text.
pub fn check(dev: &Path, cpuinfo: &str) -> HostReport {
    let mut lines = Vec::new();
    let (virt_flag, nested) = cpuinfo_flags(cpuinfo);
    match virt_flag {
        Some(f) => lines.push(line(
            "hardware virtualization",
            "PASS",
            format!("{f} flag in /proc/cpuinfo"),
        )),
        None => lines.push(line(
            "hardware virtualization",
            "WARN",
            "no vmx/svm flag in /proc/cpuinfo (KVM may still work: software or nested backend)",
        )),
    }
    if nested {
        lines.push(line(
            "running under a hypervisor",
            "INFO",
            "yes (hypervisor flag): nested virtualization",
        ));
    }

    if let Err(e) = OpenOptions::new().read(true).write(true).open(dev) {
        lines.push(line(
            &dev.display().to_string(),
            "FAIL",
            format!("cannot open read/write: {e}"),
        ));
        let verdict = format!(
            "KVM is not usable: {} cannot be opened ({e}); load kvm_intel or kvm_amd and check the permissions (group kvm)",
            dev.display()
        );
        return HostReport {
            lines,
            usable: false,
            verdict,
        };
    }
    lines.push(line(
        &dev.display().to_string(),
        "PASS",
        "opened read/write",
    ));

    let kvm = match std::ffi::CString::new(dev.as_os_str().as_encoded_bytes())
        .map_err(|_| kvm_ioctls::Error::new(libc::EINVAL))
        .and_then(Kvm::new_with_path)
    {
        Ok(k) => k,
        Err(e) => {
            lines.push(line("KVM_GET_API_VERSION", "FAIL", e.to_string()));
            return HostReport {
                lines,
                usable: false,
                verdict: format!("KVM is not usable: {e}"),
            };
        }
    };
    let api = kvm.get_api_version();
    let api_ok = api == KVM_API_VERSION;
    lines.push(line(
        "KVM API version",
        if api_ok { "PASS" } else { "FAIL" },
        api.to_string(),
    ));

    let raw = |cap: u32| kvm.check_extension_raw(libc::c_ulong::from(cap));
    let limits = [
        (
            "KVM_CAP_MAX_VCPUS",
            KVM_CAP_MAX_VCPUS,
            "largest -smp maxcpus",
        ),
        (
            "KVM_CAP_NR_VCPUS",
            KVM_CAP_NR_VCPUS,
            "recommended vCPUs per VM",
        ),
        (
            "KVM_CAP_MAX_VCPU_ID",
            KVM_CAP_MAX_VCPU_ID,
            "APIC ids must stay below this",
        ),
        (
            "KVM_CAP_NR_MEMSLOTS",
            KVM_CAP_NR_MEMSLOTS,
            "memory slots per VM",
        ),
    ];
    for (name, cap, why) in limits {
        lines.push(line(name, "INFO", format!("{} ({why})", raw(cap))));
    }
    let mut missing = Vec::new();
    for &(name, cap, why) in CAPS {
        let v = raw(cap);
        let optional = cap == KVM_CAP_SPLIT_IRQCHIP;
        let status = match (v > 0, optional) {
            (true, _) => "PASS",
            (false, true) => "WARN",
            (false, false) => {
                missing.push(name);
                "FAIL"
            }
        };
        lines.push(line(name, status, format!("{v} ({why})")));
    }

    let usable = api_ok && missing.is_empty();
    let verdict = if !usable {
        format!(
            "KVM is present but lacks what this VMM needs: {}",
            missing.join(", ")
        )
    } else if virt_flag.is_none() {
        "KVM works here, but without a vmx/svm flag: expect a software or nested backend (guest kernel code is emulated and slow)".to_string()
    } else {
        "KVM works here with hardware virtualization".to_string()
    };
    HostReport {
        lines,
        usable,
        verdict,
    }
}

impl HostReport {
    /// Render the report the way virt-host-validate aligns its lines.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for l in &self.lines {
            let _ = writeln!(out, "{:<28}: {:<4} {}", l.what, l.status, l.detail);
        }
        let _ = writeln!(out, "verdict: {}", self.verdict);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_found_in_cpuinfo() {
        assert_eq!(
            cpuinfo_flags("flags\t\t: fpu vme svm hypervisor\n"),
            (Some("svm"), true)
        );
        assert_eq!(cpuinfo_flags("flags\t\t: fpu vmx\n"), (Some("vmx"), false));
        assert_eq!(cpuinfo_flags("processor : 0\n"), (None, false));
    }

    #[test]
    fn missing_device_is_a_failure_with_advice() {
        let r = check(Path::new("/nonexistent/kvm"), "flags : fpu vmx\n");
        assert!(!r.usable);
        assert!(r.verdict.contains("cannot be opened"), "{}", r.verdict);
        assert!(r.render().contains("FAIL"));
    }

    #[test]
    fn kvm_host_check_reports_the_truth_here() {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
        let r = check(Path::new("/dev/kvm"), &cpuinfo);
        assert!(r.usable, "{}", r.render());
        let text = r.render();
        assert!(
            text.contains("KVM API version             : PASS 12"),
            "{text}"
        );
        let has_flag = cpuinfo_flags(&cpuinfo).0.is_some();
        assert_eq!(text.contains("without a vmx/svm flag"), !has_flag, "{text}");
    }
}

//! Test support shared by unit and integration tests (not part of the API).

/// Fail loudly when /dev/kvm cannot be opened: a test that needs KVM must never pass by
/// doing nothing.
pub fn require_kvm() {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        panic!(
            "this test needs KVM but /dev/kvm cannot be opened read/write ({e}); \
             run it on a host with KVM (see `vmm-reference host-check`)"
        );
    }
}

/// Objects of `kind` (package, die, core, pu) that hwloc's x86 backend finds in a
/// hwloc-gather-cpuid directory: an independent decoder of the CPUID we wrote. 0 when hwloc
/// creates no object of that kind (e.g. no Die with one die per package).
pub fn hwloc_count(dir: &std::path::Path, kind: &str) -> usize {
    let out = std::process::Command::new("hwloc-calc")
        .args(["--number-of", kind, "all"])
        .env("HWLOC_CPUID_PATH", dir)
        .env("HWLOC_COMPONENTS", "x86,stop")
        .output()
        .expect("hwloc-calc is missing: install the Debian package hwloc (scripts/install-deps)");
    assert!(
        out.status.success(),
        "hwloc-calc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if text.is_empty() {
        0
    } else {
        text.parse().expect("hwloc-calc prints a count")
    }
}

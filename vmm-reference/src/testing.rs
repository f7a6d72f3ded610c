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

//! The one check that needs the host: host CPUs a domain names must be online.

use cpu_topology::HostCpuSet;

use crate::config::DomainConfig;
use crate::error::DomainError;

/// Checks `<vcpu cpuset>`, every `<vcpupin cpuset>` and `<emulatorpin cpuset>` against the
/// host's online CPUs (`HostCpuInventory::online()` or `/sys/devices/system/cpu/online`).
///
/// ```
/// use cpu_topology::HostCpuSet;
/// let d = libvirt_domain::parse_domain(
///     "<domain type='kvm'><name>a</name><memory>1024</memory><vcpu cpuset='1-4,^3,6'>2</vcpu></domain>",
/// ).unwrap();
/// let e = libvirt_domain::check_host(&d, &HostCpuSet::first_n(5)).unwrap_err();
/// assert_eq!(e.to_string(), "<vcpu> cpuset: host CPU(s) 6 are not online on this host (online: 0-4)");
/// ```
pub fn check_host(domain: &DomainConfig, online: &HostCpuSet) -> Result<(), DomainError> {
    let check = |element: String, set: &HostCpuSet| {
        let missing = set.difference(online);
        if missing.is_empty() {
            Ok(())
        } else {
            Err(DomainError::BeyondHost {
                element,
                attribute: "cpuset",
                missing: missing.to_cpu_list(),
                online: online.to_cpu_list(),
            })
        }
    };
    if let Some(set) = &domain.vcpu.cpuset {
        check("vcpu".into(), set)?;
    }
    for pin in &domain.cputune.vcpupin {
        check(format!("cputune/vcpupin vcpu='{}'", pin.vcpu), &pin.cpuset)?;
    }
    if let Some(set) = &domain.cputune.emulatorpin {
        check("cputune/emulatorpin".into(), set)?;
    }
    Ok(())
}

//! Host inventory read from fixture sysfs trees and from this machine's /sys.

use std::path::{Path, PathBuf};

use cpu_topology::cpuset::{HostCpuId, HostCpuSet, MAX_HOST_CPUS};
use cpu_topology::host::{HostCpuInventory, HostError};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn list(s: &str) -> HostCpuSet {
    HostCpuSet::parse_cpu_list(s, MAX_HOST_CPUS).unwrap()
}

#[test]
fn two_socket_smt_host_with_isolcpus() {
    let host = HostCpuInventory::read_from(&fixture("two-socket-smt-isolcpus")).unwrap();
    assert_eq!(host.online(), &list("0-7"));
    assert_eq!(host.possible(), &list("0-7"));
    assert_eq!(host.isolated(), &list("2-3,6-7"));
    assert_eq!(host.nohz_full(), &list("2-3,6-7"));
    assert_eq!(host.cpu_id_limit(), 8);
    assert_eq!(host.siblings(HostCpuId(1)), list("1,5"));
    assert_eq!(host.siblings(HostCpuId(6)), list("2,6"));
    let cpu6 = host.cpu(HostCpuId(6)).unwrap();
    assert_eq!(
        (cpu6.package, cpu6.die, cpu6.core, cpu6.node),
        (1, Some(0), 0, Some(1))
    );
    assert_eq!(host.nodes().collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(host.node_cpus(1), Some(&list("2-3,6-7")));
    assert_eq!(host.node_of(HostCpuId(4)), Some(0));
    let cores: Vec<String> = host.cores().iter().map(|c| c.to_cpu_list()).collect();
    assert_eq!(cores, vec!["0,4", "1,5", "2,6", "3,7"]);
    let packages = host.packages();
    assert_eq!(packages[&0], list("0-1,4-5"));
    assert_eq!(packages[&1], list("2-3,6-7"));
}

#[test]
fn one_cpu_host_without_numa_or_die_id() {
    let host = HostCpuInventory::read_from(&fixture("one-cpu")).unwrap();
    assert_eq!(host.online(), &list("0"));
    assert!(host.isolated().is_empty());
    assert!(
        host.nohz_full().is_empty(),
        "`(null)` means no nohz_full CPU"
    );
    assert_eq!(host.nodes().count(), 0);
    let cpu0 = host.cpu(HostCpuId(0)).unwrap();
    assert_eq!(
        (cpu0.package, cpu0.die, cpu0.core, cpu0.node),
        (0, None, 0, None)
    );
    assert_eq!(host.cores(), vec![list("0")]);
}

#[test]
fn host_with_offline_cpus() {
    let host = HostCpuInventory::read_from(&fixture("offline-cpus")).unwrap();
    assert_eq!(host.online(), &list("0-1,3"));
    assert_eq!(host.present(), &list("0-3"));
    assert_eq!(host.possible(), &list("0-7"));
    assert_eq!(host.cpu_id_limit(), 8);
    assert!(!host.is_online(HostCpuId(2)));
    assert!(host.cpu(HostCpuId(2)).is_none());
    assert!(host.siblings(HostCpuId(2)).is_empty());
    assert_eq!(host.cores().len(), 3);
    assert_eq!(host.node_of(HostCpuId(3)), Some(0));
}

#[test]
fn missing_online_file_is_an_error_naming_it() {
    let err = HostCpuInventory::read_from(Path::new("/nonexistent-root")).unwrap_err();
    assert!(matches!(err, HostError::Read { .. }));
    assert_eq!(
        err.to_string(),
        "cannot read /nonexistent-root/sys/devices/system/cpu/online"
    );
}

#[test]
fn garbage_files_are_errors_naming_the_file() {
    let dir = std::env::temp_dir().join(format!("host-inv-garbage-{}", std::process::id()));
    let cpu = dir.join("sys/devices/system/cpu");
    std::fs::create_dir_all(cpu.join("cpu0/topology")).unwrap();
    std::fs::write(cpu.join("online"), "0-1x\n").unwrap();
    let err = HostCpuInventory::read_from(&dir).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot parse the CPU list in {}",
            cpu.join("online").display()
        )
    );
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "unexpected 'x' at offset 3 in `0-1x`: expected `,`, `-`, `:` or `/`"
    );
    std::fs::write(cpu.join("online"), "0\n").unwrap();
    std::fs::write(cpu.join("cpu0/topology/core_id"), "zero\n").unwrap();
    let err = HostCpuInventory::read_from(&dir).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} holds `zero`, expected an integer",
            cpu.join("cpu0/topology/core_id").display()
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn uniform_synthetic_host() {
    let host = HostCpuInventory::uniform(2, 2, 2);
    let real = HostCpuInventory::read_from(&fixture("two-socket-smt-isolcpus")).unwrap();
    assert_eq!(host.cores(), real.cores());
    assert_eq!(host.packages(), real.packages());
    let host = host.with_offline(&list("5")).with_isolated(list("3"));
    assert_eq!(host.online(), &list("0-4,6-7"));
    assert_eq!(host.siblings(HostCpuId(1)), list("1"));
    assert_eq!(host.isolated(), &list("3"));
}

/// This machine's /sys must parse, and agree with what the kernel says elsewhere.
#[test]
fn real_sys_of_this_machine() {
    let host = HostCpuInventory::read().unwrap();
    assert!(!host.online().is_empty());
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    assert_eq!(host.online().to_cpu_list(), online.trim());
    for cpu in host.online().iter() {
        let info = host.cpu(cpu).expect("every online CPU has a position");
        assert!(
            info.thread_siblings.contains(cpu),
            "{cpu} is its own sibling"
        );
    }
    // Every online CPU belongs to exactly one core.
    let total: usize = host.cores().iter().map(HostCpuSet::len).sum();
    assert_eq!(total, host.online().len());
    // The scheduler lets this process run on online CPUs only.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap();
    let allowed = HostCpuSet::parse_cpu_list(allowed, MAX_HOST_CPUS).unwrap();
    assert!(allowed.is_subset(host.possible()));
}

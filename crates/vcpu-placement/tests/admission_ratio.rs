//! Over-commit admission: per-VM checks, host-wide ratio with every live VM, and the
//! invariant that no host CPU ends above its limit after any admitted sequence.

use cpu_topology::cpuset::{HostCpuId, HostCpuSet, MAX_HOST_CPUS};
use cpu_topology::host::HostCpuInventory;
use proptest::prelude::*;
use vcpu_placement::{
    admit, AdmissionError, Load, OvercommitPolicy, PlacementConfig, PlacementPlan, PlacementPolicy,
    VcpuLoad, VmLoad,
};

fn list(s: &str) -> HostCpuSet {
    HostCpuSet::parse_cpu_list(s, MAX_HOST_CPUS).unwrap()
}

fn vm(name: &str, vcpus: &[(&str, bool)]) -> VmLoad {
    VmLoad {
        name: name.to_string(),
        vcpus: vcpus
            .iter()
            .map(|(c, d)| VcpuLoad {
                cpus: list(c),
                dedicated: *d,
            })
            .collect(),
    }
}

fn floating(name: &str, n: usize, cpus: &str) -> VmLoad {
    vm(name, &vec![(cpus, false); n])
}

#[test]
fn load_shares_and_display() {
    assert_eq!(Load::share(1), Load::vcpus(1));
    assert_eq!(Load::share(4).to_string(), "0.25");
    assert_eq!(
        Load::share(3).to_string(),
        "0.34",
        "rounded up, never under"
    );
    assert_eq!(Load::vcpus(5).to_string(), "5.00");
}

#[test]
fn per_vm_checks() {
    let host = HostCpuInventory::uniform(1, 2, 1);
    let kvm = OvercommitPolicy {
        kvm_nr_vcpus: Some(2),
        kvm_max_vcpus: Some(4),
        ..Default::default()
    };
    let warnings = admit(&kvm, &host, &[], &floating("a", 3, "0-1")).unwrap();
    let text: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            "Number of SMP cpus requested (3) exceeds the recommended cpus supported by KVM (2)",
            "3 vCPUs on 2 host CPUs (0-1) is not recommended",
        ]
    );
    let err = admit(&kvm, &host, &[], &floating("a", 5, "0-1")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Number of SMP cpus requested (5) exceeds the maximum cpus supported by KVM (4)"
    );
    let strict = OvercommitPolicy {
        strict: true,
        ..Default::default()
    };
    let err = admit(&strict, &host, &[], &floating("a", 3, "0-1")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "3 vCPUs on 2 host CPUs (0-1) is not allowed in strict mode"
    );
    let greedy = OvercommitPolicy {
        shared_ratio: 12,
        ..Default::default()
    };
    let err = admit(&greedy, &host, &[], &floating("a", 1, "0")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "over-commit ratio 12:1 is above the cap of 10 vCPUs per core; force it to allow this"
    );
    let forced = OvercommitPolicy {
        force: true,
        ..greedy
    };
    admit(&forced, &host, &[], &floating("a", 24, "0-1")).unwrap();
}

#[test]
fn host_wide_ratio_counts_every_live_vm() {
    let host = HostCpuInventory::uniform(1, 2, 1);
    let policy = OvercommitPolicy::default();
    // Each VM: 4 vCPUs floating over 2 CPUs = 2 vCPUs per CPU. Two fit under 5:1, a third not.
    let a = floating("a", 4, "0-1");
    let b = floating("b", 4, "0-1");
    admit(&policy, &host, &[], &a).unwrap();
    admit(&policy, &host, std::slice::from_ref(&a), &b).unwrap();
    let err = admit(
        &policy,
        &host,
        &[a.clone(), b.clone()],
        &floating("c", 4, "0-1"),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "VM `c` refused: host CPUs 0 would carry 6.00 vCPUs (limit 5), \
         1 would carry 6.00 vCPUs (limit 5)"
    );
    // A VM on other CPUs is not blocked by them... there are none here, so a smaller one fits.
    admit(&policy, &host, &[a, b], &floating("d", 2, "0-1")).unwrap();
}

#[test]
fn dedicated_cpus_take_one_vcpu_in_total() {
    let host = HostCpuInventory::uniform(1, 4, 1);
    let policy = OvercommitPolicy::default();
    let ded = vm("ded", &[("0", true), ("1", true)]);
    // A shared VM floating over a dedicated CPU overloads it.
    let err = admit(
        &policy,
        &host,
        std::slice::from_ref(&ded),
        &floating("s", 1, "1-3"),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "VM `s` refused: host CPUs 1 would carry 1.34 vCPUs (limit 1)"
    );
    // A second dedicated VM on the same CPU too.
    let err = admit(
        &policy,
        &host,
        std::slice::from_ref(&ded),
        &vm("ded2", &[("0", true)]),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "VM `ded2` refused: host CPUs 0 would carry 2.00 vCPUs (limit 1)"
    );
    // Next to it is fine.
    admit(
        &policy,
        &host,
        std::slice::from_ref(&ded),
        &floating("s", 5, "2-3"),
    )
    .unwrap();
    // And a dedicated vCPU cannot land where shared load already is.
    let shared = floating("s", 1, "2");
    let err = admit(
        &policy,
        &host,
        std::slice::from_ref(&shared),
        &vm("d", &[("2", true)]),
    )
    .unwrap_err();
    assert!(matches!(err, AdmissionError::CpusOverloaded { .. }));
}

#[test]
fn core_cap_limits_smt_cores_unless_forced() {
    // One core with 4 threads: 5:1 per thread would allow 20 per core; the cap says 10.
    let host = HostCpuInventory::uniform(1, 1, 4);
    let policy = OvercommitPolicy::default();
    let err = admit(&policy, &host, &[], &floating("big", 12, "0-3")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "VM `big` refused: cores 0-3 would carry 12.00 vCPUs (limit 10)"
    );
    let forced = OvercommitPolicy {
        force: true,
        ..Default::default()
    };
    admit(&forced, &host, &[], &floating("big", 12, "0-3")).unwrap();
}

#[test]
fn plans_become_loads() {
    let host = HostCpuInventory::uniform(1, 4, 1);
    let config = PlacementConfig {
        policy: PlacementPolicy::Dedicated,
        vcpu_pins: vec!["1:3".parse().unwrap()],
        ..Default::default()
    };
    let plan = PlacementPlan::compute(&config, &host, 2).unwrap();
    let load = VmLoad::from_plan("vm", &plan);
    assert_eq!(load, vm("vm", &[("0", true), ("3", true)]));
    let shared = PlacementPlan::compute(&PlacementConfig::default(), &host, 1).unwrap();
    assert_eq!(VmLoad::from_plan("u", &shared), vm("u", &[("0-3", false)]));
    // The stored form is plain JSON with cpu-list strings.
    let json = serde_json::to_string(&load).unwrap();
    assert_eq!(
        json,
        r#"{"name":"vm","vcpus":[{"cpus":"0","dedicated":true},{"cpus":"3","dedicated":true}]}"#
    );
    assert_eq!(serde_json::from_str::<VmLoad>(&json).unwrap(), load);
}

/// Exact load of `cpu` in units of 1/L vCPU, L = lcm(1..=20) (every share is exact).
const L: u128 = 232_792_560;

fn exact_load(vms: &[VmLoad], cpu: HostCpuId) -> (u128, bool) {
    let mut sum = 0;
    let mut dedicated = false;
    for vm in vms {
        for v in &vm.vcpus {
            if v.cpus.contains(cpu) {
                sum += L / v.cpus.len() as u128;
                dedicated |= v.dedicated;
            }
        }
    }
    (sum, dedicated)
}

fn arb_vm() -> impl Strategy<Value = VmLoad> {
    let vcpu = (0u32..8, 0u32..4, any::<bool>()).prop_map(|(a, n, d)| VcpuLoad {
        cpus: HostCpuSet::from_range(a, (a + if d { 0 } else { n }).min(7)),
        dedicated: d,
    });
    prop::collection::vec(vcpu, 1..12).prop_map(|vcpus| VmLoad {
        name: "vm".to_string(),
        vcpus,
    })
}

proptest! {
    #[test]
    fn no_cpu_above_its_limit_after_any_admitted_sequence(
        vms in prop::collection::vec(arb_vm(), 1..12),
        ratio in 1u32..6,
    ) {
        let host = HostCpuInventory::uniform(1, 4, 2);
        let policy = OvercommitPolicy { shared_ratio: ratio, ..Default::default() };
        let mut live: Vec<VmLoad> = Vec::new();
        for vm in vms {
            if admit(&policy, &host, &live, &vm).is_ok() {
                live.push(vm);
            }
            for cpu in 0..8 {
                let (load, dedicated) = exact_load(&live, HostCpuId(cpu));
                let limit = if dedicated { 1 } else { u128::from(ratio) };
                prop_assert!(load <= limit * L, "CPU {} carries {}/{} > {}", cpu, load, L, limit);
            }
            for core in host.cores() {
                let load: u128 = core.iter().map(|c| exact_load(&live, c).0).sum();
                prop_assert!(load <= 10 * L);
            }
        }
    }

    #[test]
    fn a_lone_vm_within_the_ratio_is_admitted(n in 1usize..=10) {
        // n vCPUs over 2 CPUs is n/2 per CPU <= 5.
        let host = HostCpuInventory::uniform(1, 2, 1);
        prop_assert!(admit(&OvercommitPolicy::default(), &host, &[], &floating("a", n, "0-1")).is_ok());
    }
}

#[test]
fn warn_only_admits_an_overload_and_names_the_cpus() {
    let host = HostCpuInventory::uniform(1, 2, 1);
    let policy = OvercommitPolicy {
        warn_only: true,
        ..Default::default()
    };
    // 16 vCPUs floating over 2 CPUs: 8 each, above the 5:1 ratio.
    let warnings = admit(&policy, &host, &[], &floating("wide", 16, "0-1")).unwrap();
    let text: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert!(
        text.iter().any(|w| w
            .starts_with("VM `wide` over-commits host CPUs 0 would carry 8.00 vCPUs (limit 5)")),
        "{text:?}"
    );
    // The same VM is refused without warn_only.
    assert!(admit(
        &OvercommitPolicy::default(),
        &host,
        &[],
        &floating("wide", 16, "0-1")
    )
    .is_err());
}

//! Placement plans: table tests per policy, errors with their exact text, and invariants.

use cpu_topology::cpuset::{HostCpuId, HostCpuSet, MAX_HOST_CPUS};
use cpu_topology::host::HostCpuInventory;
use cpu_topology::VcpuIndex;
use proptest::prelude::*;
use vcpu_placement::{
    CpuSpec, PlacementConfig, PlacementPlan, PlacementPolicy, PlacementReason, VcpuPin,
};

fn list(s: &str) -> HostCpuSet {
    HostCpuSet::parse_cpu_list(s, MAX_HOST_CPUS).unwrap()
}

fn pins(p: &[&str]) -> Vec<VcpuPin> {
    p.iter().map(|s| VcpuPin::parse(s).unwrap()).collect()
}

/// Per-vCPU CPU lists of a plan, plus the emulator's last.
fn cpus_of(plan: &PlacementPlan) -> Vec<String> {
    let mut v: Vec<String> = plan.vcpus().iter().map(|p| p.cpus.to_string()).collect();
    v.push(plan.emulator().cpus.to_string());
    v
}

fn warnings_of(plan: &PlacementPlan) -> Vec<String> {
    plan.warnings().iter().map(ToString::to_string).collect()
}

fn dedicated() -> PlacementConfig {
    PlacementConfig {
        policy: PlacementPolicy::Dedicated,
        ..Default::default()
    }
}

#[test]
fn dedicated_spreads_over_cores_before_smt_siblings() {
    // 1 socket x 4 cores x 2 threads: cores {0,4} {1,5} {2,6} {3,7}.
    let host = HostCpuInventory::uniform(1, 4, 2);
    let plan = PlacementPlan::compute(&dedicated(), &host, 3).unwrap();
    assert_eq!(cpus_of(&plan), ["0", "1", "2", "3-7"]);
    assert!(plan.warnings().is_empty());
    let plan = PlacementPlan::compute(&dedicated(), &host, 6).unwrap();
    assert_eq!(cpus_of(&plan), ["0", "1", "2", "3", "4", "5", "6-7"]);
    assert_eq!(
        plan.vcpu(VcpuIndex(4)).unwrap().reason,
        PlacementReason::Dedicated {
            isolated: false,
            shares_core: true
        }
    );
    assert_eq!(
        plan.vcpu(VcpuIndex(0)).unwrap().reason,
        PlacementReason::Dedicated {
            isolated: false,
            shares_core: false
        }
    );
}

#[test]
fn dedicated_prefers_isolated_cpus() {
    let host = HostCpuInventory::uniform(2, 2, 2).with_isolated(list("2-3,6-7"));
    let plan = PlacementPlan::compute(&dedicated(), &host, 2).unwrap();
    // Isolated CPUs, own cores; the emulator stays off the isolated CPUs.
    assert_eq!(cpus_of(&plan), ["2", "3", "0-1,4-5"]);
    assert!(plan.warnings().is_empty());
    // More vCPUs than isolated CPUs: the rest go outside, with a warning.
    let plan = PlacementPlan::compute(&dedicated(), &host, 5).unwrap();
    assert_eq!(cpus_of(&plan), ["2", "3", "6", "7", "0", "1,4-5"]);
    assert_eq!(
        warnings_of(&plan),
        ["vCPU 4 runs on host CPUs 0 outside the isolated CPUs 2-3,6-7"]
    );
}

#[test]
fn dedicated_that_cannot_fit_says_how_many_cpus_are_needed() {
    let host = HostCpuInventory::uniform(1, 2, 1);
    let err = PlacementPlan::compute(&dedicated(), &host, 3).unwrap_err();
    assert_eq!(
        err.to_string(),
        "dedicated placement needs 3 host CPUs for 3 unpinned vCPUs, but only 2 are free (0-1); \
         add CPUs to --cpuset or use a shared policy"
    );
    let config = PlacementConfig {
        vcpu_pins: pins(&["0:0-1"]),
        ..dedicated()
    };
    let err = PlacementPlan::compute(&config, &host, 2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "dedicated placement needs 1 host CPUs for 1 unpinned vCPUs, but only 0 are free (none); \
         add CPUs to --cpuset or use a shared policy"
    );
}

#[test]
fn dedicated_warnings_for_shared_pins_and_emulator_without_spare_cpu() {
    let host = HostCpuInventory::uniform(1, 2, 1);
    let config = PlacementConfig {
        vcpu_pins: pins(&["0-1:1"]),
        ..dedicated()
    };
    let plan = PlacementPlan::compute(&config, &host, 3).unwrap();
    assert_eq!(cpus_of(&plan), ["1", "1", "0", "0-1"]);
    assert_eq!(
        warnings_of(&plan),
        [
            "host CPU 1 is shared by vCPUs 0-1 under the dedicated policy",
            "no host CPU is left for the emulator threads: they share 0-1 with dedicated vCPUs",
        ]
    );
}

#[test]
fn pins_override_cpuset_and_later_pins_override_earlier() {
    let host = HostCpuInventory::uniform(1, 8, 1);
    let config = PlacementConfig {
        cpuset: Some(CpuSpec::parse("4-7").unwrap()),
        vcpu_pins: pins(&["0-1:1", "1:2,3"]),
        emulator_pin: Some(CpuSpec::parse("0").unwrap()),
        ..Default::default()
    };
    let plan = PlacementPlan::compute(&config, &host, 3).unwrap();
    assert_eq!(cpus_of(&plan), ["1", "2-3", "4-7", "0"]);
    assert_eq!(
        plan.vcpu(VcpuIndex(2)).unwrap().reason,
        PlacementReason::Cpuset
    );
    assert_eq!(plan.emulator().reason, PlacementReason::EmulatorPin);
    assert_eq!(plan.vcpu_cpus(), list("1-7"));
}

#[test]
fn unpinned_and_shared_policies() {
    let host = HostCpuInventory::uniform(1, 4, 1);
    let plan = PlacementPlan::compute(&PlacementConfig::default(), &host, 2).unwrap();
    assert_eq!(cpus_of(&plan), ["0-3", "0-3", "0-3"]);
    assert!(plan.vcpus().iter().all(|p| !p.is_pinned()));
    let config = PlacementConfig {
        policy: PlacementPolicy::parse("shared:1-3,^2").unwrap(),
        ..Default::default()
    };
    let plan = PlacementPlan::compute(&config, &host, 2).unwrap();
    assert_eq!(cpus_of(&plan), ["1,3", "1,3", "1,3"]);
    assert!(plan.vcpus().iter().all(|p| p.is_pinned()));
    let config = PlacementConfig {
        cpuset: Some(CpuSpec::parse("0").unwrap()),
        ..config
    };
    assert_eq!(
        PlacementPlan::compute(&config, &host, 2)
            .unwrap_err()
            .to_string(),
        "the shared pool 1,3 and --cpuset 0 have no host CPU in common"
    );
}

#[test]
fn r_means_every_online_cpu() {
    let host = HostCpuInventory::uniform(1, 4, 1).with_offline(&list("2"));
    let config = PlacementConfig {
        vcpu_pins: pins(&["0:r"]),
        ..Default::default()
    };
    let plan = PlacementPlan::compute(&config, &host, 1).unwrap();
    assert_eq!(plan.vcpu(VcpuIndex(0)).unwrap().cpus, list("0-1,3"));
}

#[test]
fn error_table() {
    let host = HostCpuInventory::uniform(1, 4, 1).with_offline(&list("3"));
    let rows: &[(PlacementConfig, u32, &str)] = &[
        (
            PlacementConfig::default(),
            0,
            "a VM needs at least one vCPU to place",
        ),
        (
            PlacementConfig {
                vcpu_pins: pins(&["4:0"]),
                ..Default::default()
            },
            4,
            "--vcpupin names vCPU 4, but the VM has 4 vCPUs (0-3)",
        ),
        (
            PlacementConfig {
                vcpu_pins: pins(&["0-1:2-3"]),
                ..Default::default()
            },
            2,
            "--vcpupin for vCPUs 0-1 names offline host CPUs 3 (online: 0-2)",
        ),
        (
            PlacementConfig {
                vcpu_pins: pins(&["1:8-9"]),
                ..Default::default()
            },
            2,
            "--vcpupin for vCPU 1 names host CPUs 8-9 that this host does not have (possible: 0-3)",
        ),
        (
            PlacementConfig {
                cpuset: Some(CpuSpec::parse("0,3").unwrap()),
                ..Default::default()
            },
            1,
            "--cpuset names offline host CPUs 3 (online: 0-2)",
        ),
        (
            PlacementConfig {
                emulator_pin: Some(CpuSpec::parse("4").unwrap()),
                ..Default::default()
            },
            1,
            "--emulatorpin names host CPUs 4 that this host does not have (possible: 0-3)",
        ),
        (
            PlacementConfig {
                policy: PlacementPolicy::parse("shared:2-3").unwrap(),
                ..Default::default()
            },
            1,
            "the shared pool names offline host CPUs 3 (online: 0-2)",
        ),
    ];
    for (config, vcpus, want) in rows {
        let got = PlacementPlan::compute(config, &host, *vcpus).unwrap_err();
        assert_eq!(got.to_string(), *want);
    }
}

#[test]
fn display_is_a_table_with_reasons_and_warnings() {
    let host = HostCpuInventory::uniform(1, 2, 2).with_isolated(list("1,3"));
    let config = PlacementConfig {
        vcpu_pins: pins(&["1:0"]),
        ..dedicated()
    };
    let plan = PlacementPlan::compute(&config, &host, 2).unwrap();
    assert_eq!(
        plan.to_string(),
        "placement policy: dedicated\n\
         vCPU      host CPUs  why\n\
         0         1          dedicated, isolated, own core\n\
         1         0          --vcpupin\n\
         emulator  2          CPUs no vCPU uses\n\
         warning: vCPU 1 runs on host CPUs 0 outside the isolated CPUs 1,3\n"
    );
}

#[test]
fn live_repin_is_validated() {
    let host = HostCpuInventory::uniform(1, 4, 1).with_offline(&list("3"));
    let mut plan = PlacementPlan::compute(&dedicated(), &host, 2).unwrap();
    plan.repin(VcpuIndex(1), list("2"), &host).unwrap();
    assert_eq!(plan.vcpu(VcpuIndex(1)).unwrap().cpus, list("2"));
    assert_eq!(
        plan.repin(VcpuIndex(1), list("3"), &host)
            .unwrap_err()
            .to_string(),
        "vcpupin for vCPU 1 names offline host CPUs 3 (online: 0-2)"
    );
    assert_eq!(
        plan.repin(VcpuIndex(2), list("0"), &host)
            .unwrap_err()
            .to_string(),
        "--vcpupin names vCPU 2, but the VM has 2 vCPUs (0-1)"
    );
}

#[test]
fn vcpupin_grammar() {
    type Row<'a> = (&'a str, Result<(&'a str, &'a str), &'a str>);
    let rows: &[Row] = &[
        ("0:2", Ok(("0", "2"))),
        ("0-3:4-7", Ok(("0-3", "4-7"))),
        ("0,2:1-4,^3", Ok(("0,2", "1-2,4"))),
        ("1:r", Ok(("1", "r"))),
        (
            "0",
            Err("--vcpupin `0` is not VCPU:CPUSET (for example `0:2` or `0-3:4-7`)"),
        ),
        ("x:1", Err("--vcpupin `x:1`: bad vCPU list")),
        ("0:", Err("--vcpupin `0:`: bad host CPU set")),
        ("4096:0", Err("--vcpupin `4096:0`: bad vCPU list")),
    ];
    for (text, want) in rows {
        let got = VcpuPin::parse(text).map(|p| {
            let v: Vec<VcpuIndex> = p.vcpus.iter().copied().collect();
            (vcpu_placement::plan::format_vcpus(&v), p.cpus.to_string())
        });
        match (got, want) {
            (Ok((v, c)), Ok((wv, wc))) => {
                assert_eq!((v.as_str(), c.as_str()), (*wv, *wc), "{text}")
            }
            (Err(e), Err(w)) => assert_eq!(e.to_string(), *w, "{text}"),
            (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
        }
    }
    let err = VcpuPin::parse("x:1").unwrap_err();
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "unexpected 'x' at offset 0 in `x`: expected a decimal number"
    );
    assert_eq!(
        PlacementPolicy::parse("shared:").unwrap_err().to_string(),
        "bad shared pool `shared:`"
    );
    assert_eq!(
        PlacementPolicy::parse("dedicated").unwrap(),
        PlacementPolicy::Dedicated
    );
    assert_eq!(
        PlacementPolicy::parse("unpinned").unwrap(),
        PlacementPolicy::Unpinned
    );
}

fn arb_host() -> impl Strategy<Value = HostCpuInventory> {
    (1u32..3, 1u32..5, 1u32..3, any::<u64>(), any::<u64>()).prop_map(|(p, c, t, off, iso)| {
        let host = HostCpuInventory::uniform(p, c, t);
        let n = p * c * t;
        // Keep CPU 0 online so the host has at least one CPU.
        let offline: HostCpuSet = (1..n)
            .filter(|i| off & (1 << i) != 0)
            .map(HostCpuId)
            .collect();
        let isolated: HostCpuSet = (0..n)
            .filter(|i| iso & (1 << i) != 0)
            .map(HostCpuId)
            .collect();
        host.with_offline(&offline).with_isolated(isolated)
    })
}

fn arb_config() -> impl Strategy<Value = PlacementConfig> {
    let policy = prop_oneof![
        Just(PlacementPolicy::Unpinned),
        Just(PlacementPolicy::Dedicated),
        (0u32..14, 0u32..4).prop_map(|(a, n)| PlacementPolicy::Shared {
            pool: HostCpuSet::from_range(a, a + n)
        }),
    ];
    let pin = (0u32..6, 0u32..14, 0u32..3).prop_map(|(v, a, n)| VcpuPin {
        vcpus: [VcpuIndex(v)].into_iter().collect(),
        cpus: CpuSpec::Cpus(HostCpuSet::from_range(a, a + n)),
    });
    let cpuset = prop::option::of(
        (0u32..14, 0u32..8).prop_map(|(a, n)| CpuSpec::Cpus(HostCpuSet::from_range(a, a + n))),
    );
    (policy, prop::collection::vec(pin, 0..3), cpuset).prop_map(|(policy, vcpu_pins, cpuset)| {
        PlacementConfig {
            policy,
            cpuset,
            vcpu_pins,
            emulator_pin: None,
        }
    })
}

proptest! {
    #[test]
    fn plans_use_only_online_cpus_and_dedicated_never_doubles_up(
        host in arb_host(), config in arb_config(), vcpus in 1u32..8
    ) {
        if let Ok(plan) = PlacementPlan::compute(&config, &host, vcpus) {
            prop_assert_eq!(plan.vcpu_count(), vcpus);
            for p in plan.vcpus().iter().chain([plan.emulator()]) {
                prop_assert!(!p.cpus.is_empty());
                prop_assert!(p.cpus.is_subset(host.online()), "{} not online in {}", p.cpus, host.online().to_cpu_list());
            }
            if config.policy == PlacementPolicy::Dedicated {
                let mut seen = HostCpuSet::new();
                for p in plan.vcpus() {
                    if let PlacementReason::Dedicated { .. } = p.reason {
                        prop_assert_eq!(p.cpus.len(), 1);
                        prop_assert!(!p.cpus.intersects(&seen), "CPU {} given twice", p.cpus);
                        seen = seen.union(&p.cpus);
                    }
                }
                // Policy-chosen CPUs never collide with explicit pins either.
                let pinned = plan.vcpus().iter().filter(|p| p.reason == PlacementReason::VcpuPin)
                    .fold(HostCpuSet::new(), |a, p| a.union(&p.cpus));
                prop_assert!(!seen.intersects(&pinned));
            }
        }
    }
}

//! Property tests for the `-smp` parser: print/parse round trips, the topology invariant on
//! every success, QEMU's fill-in rules, and no panic on arbitrary input.

use cpu_topology::smp::{
    parse_smp, to_smp_string, ChCpusConfig, ChTopology, SmpConfig, SmpError, SmpSpec,
};
use cpu_topology::{CpuTopology, VcpuIndex};
use proptest::prelude::*;

/// The invariant `CpuTopology::new` promises, checked from outside.
fn assert_invariant(t: &CpuTopology) {
    let levels = [t.sockets(), t.dies(), t.modules(), t.cores(), t.threads()];
    assert!(levels.iter().all(|&n| n >= 1), "{t:?}");
    let product: u64 = levels.iter().map(|&n| u64::from(n)).product();
    assert_eq!(product, u64::from(t.max_cpus()), "{t:?}");
    assert!(t.cpus() >= 1 && t.cpus() <= t.max_cpus(), "{t:?}");
    // Every parsed topology can be laid out: the first and last slots have APIC ids that
    // map back to them.
    let l = t.apic_layout();
    for i in [0, t.max_cpus() - 1].map(VcpuIndex) {
        let id = l.apic_id(i).unwrap();
        assert_eq!(l.index_of(id).unwrap(), i, "{t:?}");
    }
    assert_eq!(
        l.max_apic_id(),
        l.apic_id(VcpuIndex(t.max_cpus() - 1)).unwrap()
    );
}

/// Valid topologies with up to a few thousand slots.
fn topology() -> impl Strategy<Value = CpuTopology> {
    (1u32..=4, 1u32..=3, 1u32..=3, 1u32..=12, 1u32..=4)
        .prop_flat_map(|(s, d, m, c, t)| {
            let max = s * d * m * c * t;
            (Just((s, d, m, c, t)), 1..=max)
        })
        .prop_map(|((s, d, m, c, t), cpus)| CpuTopology::new(s, d, m, c, t, cpus).unwrap())
}

/// A QEMU config with a random subset of keys, small values, zeros included.
fn qemu_config() -> impl Strategy<Value = SmpConfig> {
    let v = || proptest::option::weighted(0.5, 0u32..=9);
    let one = || proptest::option::weighted(0.2, 0u32..=2);
    (
        (v(), proptest::option::weighted(0.4, 0u32..=64)),
        (one(), one(), v(), v(), one(), v(), v(), v()),
    )
        .prop_map(
            |(
                (cpus, max_cpus),
                (drawers, books, sockets, dies, clusters, modules, cores, threads),
            )| {
                SmpConfig {
                    cpus,
                    max_cpus,
                    drawers,
                    books,
                    sockets,
                    dies,
                    clusters,
                    modules,
                    cores,
                    threads,
                }
            },
        )
}

/// Strings made of the grammar's own pieces, so that many of them parse.
fn smp_like_string() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("cpus="),
        Just("maxcpus="),
        Just("sockets="),
        Just("dies="),
        Just("modules="),
        Just("clusters="),
        Just("cores="),
        Just("threads="),
        Just("boot="),
        Just("max="),
        Just("topology="),
        Just(""),
    ];
    let value = prop_oneof![
        (0u32..=16).prop_map(|n| n.to_string()),
        Just("4294967295".to_owned()),
        Just("4294967296".to_owned()),
        "[0-9:]{1,8}",
        "[ -~]{0,4}",
    ];
    proptest::collection::vec((key, value), 0..6).prop_map(|items| {
        items
            .into_iter()
            .map(|(k, v)| format!("{k}{v}"))
            .collect::<Vec<_>>()
            .join(",")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn canonical_string_parses_back(t in topology()) {
        let s = to_smp_string(&t);
        prop_assert_eq!(parse_smp(&s), Ok(t));
        // Canonical form is also a fixed point of the spec's own Display.
        prop_assert_eq!(SmpSpec::parse(&s).unwrap().to_string(), s);
    }

    #[test]
    fn cloud_hypervisor_form_round_trips(
        (t, with_max) in (topology(), any::<bool>()).prop_map(|(t, with_max)| {
            // Cloud Hypervisor has no module level; without max, boot is every slot.
            let cpus = if with_max { t.cpus() } else { t.max_cpus() };
            let t = CpuTopology::new(t.sockets(), t.dies(), 1, t.cores() * t.modules(), t.threads(), cpus);
            (t.unwrap(), with_max)
        })
    ) {
        let spec = ChCpusConfig {
            boot: t.cpus(),
            max: with_max.then_some(t.max_cpus()),
            topology: Some(ChTopology {
                threads_per_core: t.threads(),
                cores_per_die: t.cores(),
                dies_per_package: t.dies(),
                packages: t.sockets(),
            }),
        };
        prop_assert_eq!(parse_smp(&spec.to_string()), Ok(t));
    }

    #[test]
    fn parse_never_panics(s in "\\PC{0,40}") {
        if let Ok(t) = parse_smp(&s) {
            assert_invariant(&t);
            prop_assert_eq!(parse_smp(&to_smp_string(&t)), Ok(t));
        }
    }

    #[test]
    fn grammar_like_strings(s in smp_like_string()) {
        match SmpSpec::parse(&s) {
            Ok(spec) => {
                // Display gives back an equal spec.
                prop_assert_eq!(SmpSpec::parse(&spec.to_string()), Ok(spec));
                if let Ok(t) = spec.resolve() {
                    assert_invariant(&t);
                    prop_assert_eq!(parse_smp(&to_smp_string(&t)), Ok(t));
                }
            }
            Err(e) => prop_assert!(!e.to_string().contains('\n')),
        }
    }

    /// QEMU's rules, stated as properties of every success and failure.
    #[test]
    fn qemu_rules(c in qemu_config()) {
        let given = [
            c.cpus, c.max_cpus, c.drawers, c.books, c.sockets, c.dies, c.clusters, c.modules,
            c.cores, c.threads,
        ];
        let r = c.resolve();
        if given.contains(&Some(0)) {
            prop_assert!(matches!(r, Err(SmpError::ZeroValue { .. })), "{:?}", r);
            return Ok(());
        }
        if [c.drawers, c.books, c.clusters].iter().any(|v| v.is_some_and(|n| n > 1)) {
            prop_assert!(matches!(r, Err(SmpError::UnsupportedLevel { .. })), "{:?}", r);
            return Ok(());
        }
        let t = match r {
            Ok(t) => t,
            Err(e) => {
                prop_assert!(
                    matches!(e, SmpError::ProductMismatch { .. } | SmpError::MaxCpusBelowCpus { .. }),
                    "{:?}", e
                );
                // When every level is known, the product check is the only question.
                return Ok(());
            }
        };
        assert_invariant(&t);
        // Given values are kept.
        let pairs = [
            (c.cpus, t.cpus()),
            (c.max_cpus, t.max_cpus()),
            (c.sockets, t.sockets()),
            (c.dies, t.dies()),
            (c.modules, t.modules()),
            (c.cores, t.cores()),
            (c.threads, t.threads()),
        ];
        for (given, got) in pairs {
            if let Some(v) = given {
                prop_assert_eq!(v, got);
            }
        }
        // Omitted values default as QEMU >= 6.2 does.
        if c.dies.is_none() { prop_assert_eq!(t.dies(), 1); }
        if c.modules.is_none() { prop_assert_eq!(t.modules(), 1); }
        match (c.cpus, c.max_cpus) {
            (None, None) => {
                if c.sockets.is_none() { prop_assert_eq!(t.sockets(), 1); }
                if c.cores.is_none() { prop_assert_eq!(t.cores(), 1); }
                if c.threads.is_none() { prop_assert_eq!(t.threads(), 1); }
                prop_assert_eq!(t.cpus(), t.max_cpus());
            }
            (cpus, max) => {
                prop_assert_eq!(t.max_cpus(), max.or(cpus).unwrap());
                prop_assert_eq!(t.cpus(), cpus.or(max).unwrap());
                if c.cores.is_none() {
                    // Cores absorb what sockets and threads do not say.
                    if c.sockets.is_none() { prop_assert_eq!(t.sockets(), 1); }
                    if c.threads.is_none() { prop_assert_eq!(t.threads(), 1); }
                } else if c.sockets.is_none() && c.threads.is_none() {
                    prop_assert_eq!(t.threads(), 1);
                }
            }
        }
        // The string form of the same config gives the same answer.
        prop_assert_eq!(parse_smp(&c.to_string()), Ok(t));
    }

    /// Huge levels: either a clear error or a topology whose every APIC id can be computed.
    #[test]
    fn huge_levels_never_panic(
        levels in proptest::collection::vec(
            prop_oneof![1u32..=5, 120u32..=140, 60_000u32..=70_000, 1u32 << 20..=1u32 << 21],
            5,
        ),
        boot in proptest::option::of(1u32..=4),
    ) {
        let product: u128 = levels.iter().map(|&n| u128::from(n)).product();
        let cpus = boot
            .filter(|&b| u128::from(b) <= product)
            .map(|b| format!("{b},"))
            .unwrap_or_default();
        let input = format!(
            "{cpus}maxcpus={product},sockets={},dies={},modules={},cores={},threads={}",
            levels[0], levels[1], levels[2], levels[3], levels[4]
        );
        match parse_smp(&input) {
            Ok(t) => assert_invariant(&t),
            Err(e) => prop_assert!(
                matches!(
                    e,
                    SmpError::NumberOutOfRange { .. }
                        | SmpError::ApicIdTooWide { .. }
                        | SmpError::PackageShiftTooLarge { .. }
                ),
                "{:?}", e
            ),
        }
    }

    /// A config that names every level succeeds exactly when the product matches.
    #[test]
    fn fully_given_levels(
        s in 1u32..=5, d in 1u32..=5, m in 1u32..=5, co in 1u32..=5, th in 1u32..=5,
        max in 1u32..=700,
    ) {
        let input = format!("maxcpus={max},sockets={s},dies={d},modules={m},cores={co},threads={th}");
        let r = parse_smp(&input);
        if s * d * m * co * th == max {
            prop_assert_eq!(r, Ok(CpuTopology::new(s, d, m, co, th, max).unwrap()));
        } else {
            prop_assert!(matches!(r, Err(SmpError::ProductMismatch { .. })), "{:?}", r);
        }
    }
}

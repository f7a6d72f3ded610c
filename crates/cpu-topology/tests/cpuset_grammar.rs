//! Table tests for every CPU-set grammar, plus proptest round trips.

use cpu_topology::cpuset::{HostCpuId, HostCpuSet, MAX_HOST_CPUS};
use proptest::prelude::*;

fn set(ids: &[u32]) -> HostCpuSet {
    ids.iter().map(|&c| HostCpuId(c)).collect()
}

type Parse = fn(&str, u32) -> Result<HostCpuSet, cpu_topology::cpuset::CpuSetError>;

/// Runs rows of (input, Ok(cpu-list) or Err(message)).
fn run_table(parse: Parse, limit: u32, rows: &[(&str, Result<&str, &str>)]) {
    for (input, want) in rows {
        let got = parse(input, limit)
            .map(|s| s.to_cpu_list())
            .map_err(|e| e.to_string());
        let want = want.map(str::to_string).map_err(str::to_string);
        assert_eq!(got, want, "input {input:?}");
    }
}

#[test]
fn cpu_list_table() {
    run_table(
        HostCpuSet::parse_cpu_list,
        MAX_HOST_CPUS,
        &[
            ("0", Ok("0")),
            ("0-3,8", Ok("0-3,8")),
            ("8,0-3", Ok("0-3,8")),
            ("0-3\n", Ok("0-3")),
            (" 1 , 2 ", Ok("1-2")),
            ("1,,2", Ok("1-2")),
            ("0-10:2", Ok("0,2,4,6,8,10")),
            ("0-10:1/2", Ok("0,2,4,6,8,10")),
            ("0-9:2/5", Ok("0-1,5-6")),
            ("100-160:2/25", Ok("100-101,125-126,150-151")),
            ("3-3", Ok("3")),
            ("8191", Ok("8191")),
            ("", Err("CPU set `` selects no CPU")),
            (" \n", Err("CPU set `` selects no CPU")),
            (
                "8192",
                Err("CPU 8192 is out of range: the limit is 8192 CPUs (0-8191)"),
            ),
            (
                "0-9000",
                Err("CPU 9000 is out of range: the limit is 8192 CPUs (0-8191)"),
            ),
            (
                "5-3",
                Err("reversed range `5-3`: the start is above the end"),
            ),
            (
                "0-10:0",
                Err("bad stride or group `0-10:0`: the group size (or stride) is 0"),
            ),
            (
                "0-10:3/2",
                Err("bad stride or group `0-10:3/2`: the used size is above the group size"),
            ),
            (
                "0-10:0/2",
                Err("bad stride or group `0-10:0/2`: the used size is 0"),
            ),
            (
                "0-10:1/0",
                Err("bad stride or group `0-10:1/0`: the group size (or stride) is 0"),
            ),
            ("4294967296", Err("number `4294967296` is too large")),
            (
                "1-x",
                Err("unexpected 'x' at offset 2 in `1-x`: expected a decimal number"),
            ),
            (
                "1;2",
                Err("unexpected ';' at offset 1 in `1;2`: expected `,`, `-`, `:` or `/`"),
            ),
            (
                "-1",
                Err("unexpected '-' at offset 0 in `-1`: expected a decimal number"),
            ),
            (
                "1-",
                Err("unexpected end of input at offset 2 in `1-`: expected a decimal number"),
            ),
            (
                "0-4:",
                Err("unexpected end of input at offset 4 in `0-4:`: expected a decimal number"),
            ),
            (
                "all",
                Err("unexpected 'a' at offset 0 in `all`: expected a decimal number"),
            ),
            (
                "0x3",
                Err("unexpected 'x' at offset 1 in `0x3`: expected `,`, `-`, `:` or `/`"),
            ),
            (
                "1é",
                Err("unexpected 'é' at offset 1 in `1é`: expected `,`, `-`, `:` or `/`"),
            ),
        ],
    );
}

#[test]
fn cpu_list_respects_caller_limit() {
    let err = HostCpuSet::parse_cpu_list("0-2", 2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "CPU 2 is out of range: the limit is 2 CPUs (0-1)"
    );
}

#[test]
fn libvirt_table() {
    run_table(
        HostCpuSet::parse_libvirt,
        MAX_HOST_CPUS,
        &[
            ("1-4,^3,6", Ok("1-2,4,6")),
            ("0-7,^0,^7", Ok("1-6")),
            ("^3,1-4", Ok("1-4")),
            ("1 - 3 , 5", Ok("1-3,5")),
            ("1,", Ok("1")),
            ("2,2,2", Ok("2")),
            ("1,^1", Err("CPU set `1,^1` selects no CPU")),
            ("^1", Err("CPU set `^1` selects no CPU")),
            ("", Err("CPU set `` selects no CPU")),
            ("^1-3", Err("`^` removes a single CPU, not a range: `^1-3`")),
            (
                "5-3",
                Err("reversed range `5-3`: the start is above the end"),
            ),
            (
                "9999",
                Err("CPU 9999 is out of range: the limit is 8192 CPUs (0-8191)"),
            ),
            (
                "0-10:2",
                Err("unexpected ':' at offset 4 in `0-10:2`: expected `,` or `-`"),
            ),
            (
                "1,,2",
                Err("unexpected ',' at offset 2 in `1,,2`: expected a decimal number"),
            ),
            (
                "r",
                Err("unexpected 'r' at offset 0 in `r`: expected a decimal number"),
            ),
            (
                "^^1",
                Err("unexpected '^' at offset 1 in `^^1`: expected a decimal number"),
            ),
            ("99999999999", Err("number `99999999999` is too large")),
        ],
    );
}

#[test]
fn libvirt_r_means_all_host_cpus() {
    assert_eq!(
        HostCpuSet::parse_libvirt_or_all("r", 4).unwrap(),
        set(&[0, 1, 2, 3])
    );
    assert_eq!(
        HostCpuSet::parse_libvirt_or_all(" r ", 2).unwrap(),
        set(&[0, 1])
    );
    assert_eq!(HostCpuSet::parse_libvirt_or_all("1", 4).unwrap(), set(&[1]));
    assert_eq!(
        HostCpuSet::parse_libvirt_or_all("4", 4)
            .unwrap_err()
            .to_string(),
        "CPU 4 is out of range: the limit is 4 CPUs (0-3)"
    );
    assert_eq!(
        HostCpuSet::parse_libvirt_or_all("r", 0)
            .unwrap_err()
            .to_string(),
        "CPU set `r` selects no CPU"
    );
}

#[test]
fn hex_mask_table() {
    run_table(
        HostCpuSet::parse_hex_mask,
        MAX_HOST_CPUS,
        &[
            ("0x32", Ok("1,4-5")),
            ("32", Ok("1,4-5")),
            ("0X32", Ok("1,4-5")),
            ("3\n", Ok("0-1")),
            ("ff,ffffffff", Ok("0-39")),
            ("1,00000000", Ok("32")),
            ("1,0", Ok("32")),
            ("100000000", Ok("32")),
            ("0x00000001", Ok("0")),
            ("ffffffffffffffffffffffffffffffff", Ok("0-127")),
            ("0", Err("CPU set `0` selects no CPU")),
            ("0x0,00000000", Err("CPU set `0x0,00000000` selects no CPU")),
            (
                "0x",
                Err("unexpected end of input at offset 2 in `0x`: expected a hex digit"),
            ),
            (
                "",
                Err("unexpected end of input at offset 0 in ``: expected a hex digit"),
            ),
            (
                "0xg",
                Err("unexpected 'g' at offset 2 in `0xg`: expected a hex digit"),
            ),
            (
                "ff,",
                Err("unexpected end of input at offset 3 in `ff,`: expected a hex digit"),
            ),
            (
                "f f",
                Err("unexpected ' ' at offset 1 in `f f`: expected a hex digit or `,`"),
            ),
            ("1,123456789", Err("number `123456789` is too large")),
            ("1", Ok("0")),
        ],
    );
    let wide = format!("1{}", "0".repeat(2048));
    assert_eq!(
        HostCpuSet::parse_hex_mask(&wide, MAX_HOST_CPUS)
            .unwrap_err()
            .to_string(),
        "CPU 8192 is out of range: the limit is 8192 CPUs (0-8191)"
    );
}

#[test]
fn affinity_string_table() {
    run_table(
        HostCpuSet::parse_affinity_string,
        MAX_HOST_CPUS,
        &[
            ("yy--", Ok("0-1")),
            ("-y-y", Ok("1,3")),
            ("y", Ok("0")),
            ("----", Err("CPU set `----` selects no CPU")),
            ("", Err("CPU set `` selects no CPU")),
            (
                "yYn",
                Err("unexpected 'Y' at offset 1 in `yYn`: expected `y` or `-`"),
            ),
        ],
    );
    assert_eq!(
        HostCpuSet::parse_affinity_string("--y", 2)
            .unwrap_err()
            .to_string(),
        "CPU 2 is out of range: the limit is 2 CPUs (0-1)"
    );
}

#[test]
fn formatting_table() {
    let rows: &[(&[u32], &str, &str, &str, &str)] = &[
        // set, cpu-list, hex mask, hex words, affinity (width 4)
        (&[], "", "0", "0", "----"),
        (&[0], "0", "1", "1", "y---"),
        (&[1, 4, 5], "1,4-5", "32", "32", "-y--yy"),
        (&[0, 1], "0-1", "3", "3", "yy--"),
        (
            &[32],
            "32",
            "100000000",
            "1,00000000",
            "----------------------------------y",
        ),
        (&[64], "64", "10000000000000000", "1,00000000,00000000", ""),
    ];
    for (ids, list, mask, words, aff) in rows {
        let s = set(ids);
        assert_eq!(s.to_cpu_list(), *list, "{ids:?}");
        assert_eq!(s.to_string(), *list, "{ids:?}");
        assert_eq!(s.to_hex_mask(), *mask, "{ids:?}");
        assert_eq!(s.to_hex_words(), *words, "{ids:?}");
        if !aff.is_empty() && ids.last().copied().unwrap_or(0) < 8 {
            assert_eq!(s.to_affinity_string(4), *aff, "{ids:?}");
        }
    }
    let s = set(&(0..40).collect::<Vec<_>>());
    assert_eq!(s.to_hex_words(), "ff,ffffffff");
    assert_eq!(set(&[33]).to_affinity_string(2).len(), 34);
}

#[test]
fn set_operations() {
    let a = set(&[0, 1, 2, 70]);
    let b = set(&[2, 3, 70]);
    assert_eq!(a.union(&b), set(&[0, 1, 2, 3, 70]));
    assert_eq!(a.intersection(&b), set(&[2, 70]));
    assert_eq!(a.difference(&b), set(&[0, 1]));
    assert!(set(&[2]).is_subset(&a));
    assert!(!b.is_subset(&a));
    assert!(a.intersects(&b));
    assert_eq!(a.len(), 4);
    assert_eq!(a.first(), Some(HostCpuId(0)));
    assert_eq!(a.last(), Some(HostCpuId(70)));
    assert_eq!(a.ranges(), vec![(0, 2), (70, 70)]);
    // Removing the high CPU leaves a set equal to one that never had it.
    let mut c = a.clone();
    c.remove(HostCpuId(70));
    assert_eq!(c, set(&[0, 1, 2]));
}

fn arb_set() -> impl Strategy<Value = HostCpuSet> {
    prop::collection::btree_set(0u32..300, 1..40)
        .prop_map(|ids| ids.into_iter().map(HostCpuId).collect::<HostCpuSet>())
}

/// Valid cpu-list strings built from the grammar.
fn arb_cpu_list() -> impl Strategy<Value = String> {
    let region = prop_oneof![
        (0u32..500).prop_map(|a| a.to_string()),
        (0u32..500, 0u32..50).prop_map(|(a, n)| format!("{a}-{}", a + n)),
        (0u32..500, 0u32..80, 1u32..6).prop_map(|(a, n, s)| format!("{a}-{}:{s}", a + n)),
        (0u32..500, 0u32..80, 1u32..6, 0u32..6).prop_map(|(a, n, u, g)| format!(
            "{a}-{}:{u}/{}",
            a + n,
            u + g
        )),
    ];
    prop::collection::vec(region, 1..6).prop_map(|v| v.join(","))
}

fn arb_libvirt() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        (0u32..200).prop_map(|a| a.to_string()),
        (0u32..200, 0u32..30).prop_map(|(a, n)| format!("{a}-{}", a + n)),
        (0u32..200).prop_map(|a| format!("^{a}")),
    ];
    prop::collection::vec(token, 1..8).prop_map(|v| v.join(","))
}

proptest! {
    #[test]
    fn every_format_round_trips(s in arb_set()) {
        prop_assert_eq!(&HostCpuSet::parse_cpu_list(&s.to_cpu_list(), MAX_HOST_CPUS).unwrap(), &s);
        prop_assert_eq!(&HostCpuSet::parse_libvirt(&s.to_cpu_list(), MAX_HOST_CPUS).unwrap(), &s);
        prop_assert_eq!(&HostCpuSet::parse_hex_mask(&s.to_hex_mask(), MAX_HOST_CPUS).unwrap(), &s);
        prop_assert_eq!(&HostCpuSet::parse_hex_mask(&format!("0x{}", s.to_hex_mask()), MAX_HOST_CPUS).unwrap(), &s);
        prop_assert_eq!(&HostCpuSet::parse_hex_mask(&s.to_hex_words(), MAX_HOST_CPUS).unwrap(), &s);
        prop_assert_eq!(&HostCpuSet::parse_affinity_string(&s.to_affinity_string(8), MAX_HOST_CPUS).unwrap(), &s);
    }

    #[test]
    fn cpu_list_format_is_equivalent(text in arb_cpu_list()) {
        let parsed = HostCpuSet::parse_cpu_list(&text, MAX_HOST_CPUS).unwrap();
        let formatted = parsed.to_cpu_list();
        prop_assert_eq!(HostCpuSet::parse_cpu_list(&formatted, MAX_HOST_CPUS).unwrap(), parsed);
        // The compact form is canonical: formatting again changes nothing.
        prop_assert_eq!(HostCpuSet::parse_cpu_list(&formatted, MAX_HOST_CPUS).unwrap().to_cpu_list(), formatted);
    }

    #[test]
    fn libvirt_format_is_equivalent(text in arb_libvirt()) {
        match HostCpuSet::parse_libvirt(&text, MAX_HOST_CPUS) {
            Ok(parsed) => {
                let formatted = parsed.to_cpu_list();
                prop_assert_eq!(HostCpuSet::parse_libvirt(&formatted, MAX_HOST_CPUS).unwrap(), parsed);
            }
            // Only a string whose removals cancel everything may fail.
            Err(e) => prop_assert!(e.to_string().contains("selects no CPU"), "{}", e),
        }
    }

    #[test]
    fn libvirt_matches_a_naive_model(text in arb_libvirt()) {
        let mut model = std::collections::BTreeSet::new();
        for token in text.split(',') {
            if let Some(n) = token.strip_prefix('^') {
                model.remove(&n.parse::<u32>().unwrap());
            } else if let Some((a, b)) = token.split_once('-') {
                model.extend(a.parse::<u32>().unwrap()..=b.parse::<u32>().unwrap());
            } else {
                model.insert(token.parse::<u32>().unwrap());
            }
        }
        let got = HostCpuSet::parse_libvirt(&text, MAX_HOST_CPUS).ok();
        let want = (!model.is_empty()).then(|| model.into_iter().map(HostCpuId).collect());
        prop_assert_eq!(got, want);
    }

    #[test]
    fn parsers_never_panic(text in "\\PC{0,24}") {
        let _ = HostCpuSet::parse_cpu_list(&text, MAX_HOST_CPUS);
        let _ = HostCpuSet::parse_libvirt(&text, MAX_HOST_CPUS);
        let _ = HostCpuSet::parse_hex_mask(&text, MAX_HOST_CPUS);
        let _ = HostCpuSet::parse_affinity_string(&text, MAX_HOST_CPUS);
    }
}

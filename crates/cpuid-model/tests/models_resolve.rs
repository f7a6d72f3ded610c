//! Model data sanity and host resolution (`check::resolve`).

use cpuid_model::check::{self, encode_signature, CheckError, ModelWarning};
use cpuid_model::features;
use cpuid_model::model::{self, ModelKind, Vendor};
use cpuid_model::spec;
use cpuid_model::{CpuidEntry, CpuidKey, CpuidRegs, CpuidTable};

const ZEN4: &str = include_str!("data/host-amd-zen4.txt");

/// The first CPU section of a `cpuid -r` dump.
fn parse_cpuid_r(text: &str) -> CpuidTable {
    cpuid_model::dump::parse_raw(text).unwrap().remove(0).table
}

fn vendor_regs(v: &str) -> (u32, u32, u32) {
    let b = v.as_bytes();
    let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (w(0), w(4), w(8))
}

/// A host that supports every catalogued feature, with XSAVE components.
fn everything_host(vendor: Vendor) -> CpuidTable {
    let mut t = CpuidTable::new();
    let (ebx, edx, ecx) = vendor_regs(vendor.as_str());
    let put = |t: &mut CpuidTable, leaf, sub, regs: CpuidRegs| {
        t.insert(
            CpuidKey::subleaf(leaf, sub),
            CpuidEntry {
                regs,
                indexed: matches!(leaf, 7 | 0xd),
            },
        )
    };
    put(
        &mut t,
        0,
        0,
        CpuidRegs {
            eax: 0x20,
            ebx,
            ecx,
            edx,
        },
    );
    put(
        &mut t,
        0x8000_0000,
        0,
        CpuidRegs {
            eax: 0x8000_0022,
            ebx,
            ecx,
            edx,
        },
    );
    for leaf in [
        0x1,
        0x6,
        0xb,
        0x1f,
        0x8000_0001,
        0x8000_0007,
        0x8000_0008,
        0x8000_000a,
        0x8000_0021,
        // KVM's paravirtual feature leaf.
        0x4000_0001,
    ] {
        put(&mut t, leaf, 0, CpuidRegs::default());
    }
    put(
        &mut t,
        7,
        0,
        CpuidRegs {
            eax: 1,
            ..Default::default()
        },
    );
    put(&mut t, 7, 1, CpuidRegs::default());
    // XCR0: x87, SSE, AVX, MPX x2, AVX-512 x3, PKRU.
    put(
        &mut t,
        0xd,
        0,
        CpuidRegs {
            eax: 0x2ff,
            ebx: 0x988,
            ecx: 0xa88,
            edx: 0,
        },
    );
    put(&mut t, 0xd, 1, CpuidRegs::default());
    for (sub, size, off) in [
        (2, 256, 576),
        (3, 64, 960),
        (4, 64, 1024),
        (5, 64, 1088),
        (6, 512, 1152),
        (7, 1024, 1664),
        (9, 8, 2688),
    ] {
        put(
            &mut t,
            0xd,
            sub,
            CpuidRegs {
                eax: size,
                ebx: off,
                ecx: 0,
                edx: 0,
            },
        );
    }
    for f in features::all() {
        assert!(f.set(&mut t, true), "no entry for {}", f.name);
    }
    t
}

fn zen4() -> CpuidTable {
    parse_cpuid_r(ZEN4)
}

#[test]
fn every_model_feature_is_catalogued_and_data_is_clean() {
    assert!(
        model::data_errors().is_empty(),
        "{:?}",
        model::data_errors()
    );
    let names: Vec<&str> = model::all().iter().map(|m| m.name.as_str()).collect();
    for wanted in [
        "qemu64",
        "qemu32",
        "kvm64",
        "kvm32",
        "Nehalem",
        "Westmere",
        "SandyBridge",
        "IvyBridge",
        "Haswell",
        "Broadwell",
        "Skylake-Client",
        "Skylake-Server",
        "Cascadelake-Server",
        "Icelake-Server",
        "EPYC",
        "EPYC-Rome",
        "EPYC-Milan",
        "host",
        "max",
    ] {
        assert!(names.contains(&wanted), "missing model {wanted}");
    }
    for m in model::all() {
        for f in &m.features {
            assert_eq!(
                features::by_name(f.name),
                Some(*f),
                "{}: {}",
                m.name,
                f.name
            );
        }
        let mut sorted: Vec<&str> = m.features.iter().map(|f| f.name).collect();
        sorted.sort_unstable();
        let len = sorted.len();
        sorted.dedup();
        assert_eq!(len, sorted.len(), "{} lists a feature twice", m.name);
        if m.kind == ModelKind::Named && m.name != "base" {
            assert!(m.vendor.is_some(), "{}", m.name);
            assert!(m.level >= 1, "{}", m.name);
        }
    }
}

#[test]
fn model_generations_only_add_features() {
    let chain = [
        "Nehalem",
        "Westmere",
        "SandyBridge",
        "IvyBridge",
        "Haswell",
        "Broadwell",
        "Skylake-Client",
        "Skylake-Server",
        "Cascadelake-Server",
        "Icelake-Server",
    ];
    for pair in chain.windows(2).chain(
        [["EPYC", "EPYC-Rome"], ["EPYC-Rome", "EPYC-Milan"]]
            .iter()
            .map(|p| &p[..]),
    ) {
        let (old, new) = (model::find(pair[0]).unwrap(), model::find(pair[1]).unwrap());
        for f in &old.features {
            assert!(
                new.has(f),
                "{} has {} but {} does not",
                old.name,
                f.name,
                new.name
            );
        }
    }
}

#[test]
fn every_named_model_resolves_on_an_everything_host_without_warnings() {
    for m in model::all().iter().filter(|m| m.vendor.is_some()) {
        let host = everything_host(Vendor::Amd);
        let spec = spec::parse(&format!("{},enforce", m.name)).unwrap();
        let r = check::resolve(&spec, &host).unwrap_or_else(|e| panic!("{}: {e}", m.name));
        assert!(r.warnings.is_empty(), "{}: {:?}", m.name, r.warnings);
        // Exactly the model's features (minus KVM's default-off ones) plus the
        // KVM default-on ones are set.
        let mut want: Vec<&str> = check::required_features(m).iter().map(|f| f.name).collect();
        for d in check::KVM_DEFAULT_ON {
            if !want.contains(d) {
                want.push(d);
            }
        }
        want.sort_unstable();
        let mut got: Vec<&str> = features::present_in(&r.table)
            .iter()
            .map(|f| f.name)
            .collect();
        got.sort_unstable();
        assert_eq!(got, want, "{}", m.name);
        // Identity and levels.
        let l1 = r.table.regs(CpuidKey::leaf(1)).unwrap();
        assert_eq!(
            l1.eax,
            encode_signature(m.family, m.model, m.stepping),
            "{}",
            m.name
        );
        if m.xlevel >= 0x8000_0004 {
            assert_eq!(brand(&r.table), m.model_id, "{}", m.name);
        }
        let level = r.table.regs(CpuidKey::leaf(0)).unwrap().eax;
        let xlevel = r
            .table
            .regs(CpuidKey::leaf(0x8000_0000))
            .map_or(0, |r| r.eax);
        assert!(level >= m.level && xlevel >= m.xlevel, "{}", m.name);
        assert!(r
            .table
            .iter()
            .all(|(k, _)| k.leaf >= 0x4000_0000 || k.leaf <= level));
        assert!(r
            .table
            .iter()
            .all(|(k, _)| !(0x8000_0000..0x9000_0000).contains(&k.leaf) || k.leaf <= xlevel));
        // The vendor is the model's, on a host of either vendor.
        let vendor: [u8; 12] = m.vendor.unwrap().as_str().as_bytes().try_into().unwrap();
        assert_eq!(r.table.vendor(), Some(vendor), "{}", m.name);
    }
}

fn brand(t: &CpuidTable) -> String {
    let mut bytes = Vec::new();
    for leaf in 0x8000_0002..=0x8000_0004u32 {
        let r = t.regs(CpuidKey::leaf(leaf)).unwrap();
        for v in [r.eax, r.ebx, r.ecx, r.edx] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    String::from_utf8(bytes)
        .unwrap()
        .trim_end_matches('\0')
        .to_string()
}

#[test]
fn haswell_on_the_zen4_host_drops_tsx_with_qemu_style_warnings() {
    let host = zen4();
    let r = check::resolve(&spec::parse("Haswell").unwrap(), &host).unwrap();
    let text: Vec<String> = r.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        text,
        [
            "host doesn't support requested feature: CPUID.07H:EBX.hle [bit 4]",
            "host doesn't support requested feature: CPUID.07H:EBX.rtm [bit 11]",
        ]
    );
    let hle = features::by_name("hle").unwrap();
    assert!(!hle.is_set(&r.table));
    assert!(features::by_name("avx2").unwrap().is_set(&r.table));
    // Features Haswell does not have are gone even though the host has them.
    for gone in [
        "avx512f",
        "sha_ni",
        "topoext",
        "sse4a",
        "xsavec",
        "clflushopt",
    ] {
        assert!(!features::by_name(gone).unwrap().is_set(&r.table), "{gone}");
    }
    // AVX-512 state is no longer offered in XCR0.
    let d0 = r.table.regs(CpuidKey::subleaf(0xd, 0)).unwrap();
    assert_eq!(d0.eax, 0x7);
    assert!(r.table.get(CpuidKey::subleaf(0xd, 5)).is_none());
    assert_eq!(d0.ecx, 0x340); // 576 + 256 AVX bytes at offset 576
                               // Brand string, signature and vendor from the model.
    assert_eq!(brand(&r.table), "Intel Core Processor (Haswell)");
    assert_eq!(r.table.regs(CpuidKey::leaf(1)).unwrap().eax, 0x0003_06c4);
    assert_eq!(r.table.vendor().unwrap(), *b"GenuineIntel");
    // Level 0xd (model) and xlevel 0x80000008 (model) on a host that has more.
    assert_eq!(r.table.regs(CpuidKey::leaf(0)).unwrap().eax, 0xd);
    assert_eq!(
        r.table.regs(CpuidKey::leaf(0x8000_0000)).unwrap().eax,
        0x8000_0008
    );
    assert!(r.table.get(CpuidKey::leaf(0x8000_001e)).is_none());
}

#[test]
fn enforce_fails_with_the_full_list_of_missing_features() {
    let host = zen4();
    let err = check::resolve(&spec::parse("Haswell,enforce,+pcommit").unwrap(), &host).unwrap_err();
    assert_eq!(
        err.to_string(),
        "CPU model 'Haswell' with enforce: host doesn't support requested features: \
         CPUID.07H:EBX.hle [bit 4], CPUID.07H:EBX.rtm [bit 11], CPUID.07H:EBX.pcommit [bit 22]"
    );
    let CheckError::MissingFeatures { features, .. } = err else {
        panic!()
    };
    assert_eq!(
        features.iter().map(|f| f.name).collect::<Vec<_>>(),
        ["hle", "rtm", "pcommit"]
    );
    // Turning the missing ones off makes it pass.
    let ok = check::resolve(&spec::parse("Haswell,enforce,-hle,-rtm").unwrap(), &host).unwrap();
    assert!(ok.warnings.is_empty(), "{:?}", ok.warnings);
}

#[test]
fn check_off_silences_missing_feature_warnings() {
    let r = check::resolve(&spec::parse("Haswell,check=off").unwrap(), &zen4()).unwrap();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn epyc_runs_on_zen4_with_kvm_defaults_and_svm_on_request() {
    let host = zen4();
    let r = check::resolve(&spec::parse("EPYC,enforce").unwrap(), &host).unwrap();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let svm = features::by_name("svm").unwrap();
    let monitor = features::by_name("monitor").unwrap();
    assert!(!svm.is_set(&r.table) && !monitor.is_set(&r.table));
    assert!(features::by_name("hypervisor").unwrap().is_set(&r.table));
    assert!(features::by_name("x2apic").unwrap().is_set(&r.table));
    // 0x8000_0001 EAX mirrors the signature on AMD; EDX repeats leaf 1 bits.
    let e1 = r.table.regs(CpuidKey::leaf(0x8000_0001)).unwrap();
    assert_eq!(e1.eax, encode_signature(23, 1, 2));
    assert_eq!(
        e1.edx & 0x0183_f3ff,
        r.table.regs(CpuidKey::leaf(1)).unwrap().edx & 0x0183_f3ff
    );
    // The nested host has no SVM: asking for it warns (and enforce fails).
    let r = check::resolve(&spec::parse("EPYC,+svm").unwrap(), &host).unwrap();
    assert_eq!(
        r.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
        [
            "host doesn't support requested feature: CPUID.80000001H:ECX.svm [bit 2]",
            // With SVM on, the model's SVM leaf features are asked for too.
            "host doesn't support requested feature: CPUID.8000000AH:EDX.npt [bit 0]",
            "host doesn't support requested feature: CPUID.8000000AH:EDX.nrip_save [bit 3]",
        ]
    );
    // Leaves up to the model's xlevel 0x8000001e survive.
    assert!(r.table.get(CpuidKey::leaf(0x8000_001e)).is_some());
    assert!(r.table.get(CpuidKey::leaf(0x8000_0021)).is_none());
}

#[test]
fn host_and_max_pass_the_table_through_apart_from_spec_changes() {
    let host = zen4();
    for name in ["host", "max"] {
        // migratable=off: every host feature, the table unchanged.
        let spec = format!("{name},migratable=off");
        let r = check::resolve(&spec::parse(&spec).unwrap(), &host).unwrap();
        assert_eq!(r.table, host, "{spec}");
        assert!(r.warnings.is_empty());
        // The default, migratable=on: without invtsc, which blocks migration (QEMU's
        // only unmigratable CPUID flag), and without the paravirtual bit QEMU 7.2 has no
        // name for (so its migratable host leaves it off), unless asked for by name.
        let r = check::resolve(&spec::parse(name).unwrap(), &host).unwrap();
        let d = cpuid_model::diff::diff(&host, &r.table).to_string();
        assert_eq!(
            d, "0x40000001 0x00 eax: -kvm_asyncpf_vmexit\n0x80000007 0x00 edx: -invtsc\n",
            "{name}"
        );
        let spec = format!("{name},+invtsc,+kvm-asyncpf-vmexit");
        let r = check::resolve(&spec::parse(&spec).unwrap(), &host).unwrap();
        assert_eq!(r.table, host, "{spec}");
    }
    let r = check::resolve(
        &spec::parse("host,-avx512f,+svm,migratable=off").unwrap(),
        &host,
    )
    .unwrap();
    let changed = cpuid_model::diff::diff(&host, &r.table);
    assert_eq!(
        changed.to_string(),
        "0x00000007 0x00 ebx: -avx512f\n\
         0x0000000d 0x00 eax: 0x000000e7 -> 0x00000007\n\
         0x0000000d 0x00 ecx: 0x00000980 -> 0x00000340\n\
         0x0000000d 0x05: removed eax=0x00000040 ebx=0x00000340 ecx=0x00000000 edx=0x00000000\n\
         0x0000000d 0x06: removed eax=0x00000200 ebx=0x00000380 ecx=0x00000000 edx=0x00000000\n\
         0x0000000d 0x07: removed eax=0x00000400 ebx=0x00000580 ecx=0x00000000 edx=0x00000000\n"
    );
    assert_eq!(r.warnings.len(), 1);
}

#[test]
fn resolve_without_vendor_leaf_fails() {
    let err = check::resolve(&spec::parse("qemu64").unwrap(), &CpuidTable::new()).unwrap_err();
    assert_eq!(err, CheckError::NoVendor);
    assert_eq!(err.to_string(), "host CPUID table has no leaf 0 (vendor)");
}

#[test]
fn ambiguous_spec_is_warned_and_minus_wins() {
    let r = check::resolve(&spec::parse("EPYC,avx2=on,-avx2").unwrap(), &zen4()).unwrap();
    assert_eq!(
        r.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
        ["ambiguous CPU model string: don't mix both \"-avx2\" and \"avx2=on\" (-avx2 wins)"]
    );
    assert!(!features::by_name("avx2").unwrap().is_set(&r.table));
}

#[test]
fn help_lists_models_and_flags_like_qemu() {
    let h = model::help_text();
    assert!(h.starts_with("Available CPUs:\n"));
    assert!(h.contains("\nx86 qemu64-v1             QEMU Virtual CPU version 2.5+\n"));
    assert!(h.contains("\nx86 Skylake-Server-IBRS   (alias of Skylake-Server-v2)\n"));
    let flags = h.split("Recognized CPUID flags:\n").nth(1).unwrap();
    assert!(flags.starts_with("  3dnow 3dnowext 3dnowprefetch abm"));
    assert!(flags.lines().all(|l| l.len() < 76));
    let listed: Vec<&str> = flags.split_whitespace().collect();
    assert_eq!(listed.len(), features::all().len());
}

mod invariants {
    use super::*;
    use proptest::prelude::*;

    fn any_spec() -> impl Strategy<Value = spec::ModelSpec> {
        let n = features::all().len();
        (
            0..model::all().len(),
            proptest::collection::vec(0..n, 0..6),
            proptest::collection::vec(0..n, 0..6),
            any::<bool>(),
        )
            .prop_map(move |(m, plus, minus, enforce)| {
                let all = features::all();
                let mut s = spec::ModelSpec::new(&model::all()[m]);
                s.plus = plus.into_iter().map(|i| &all[i]).collect();
                s.minus = minus.into_iter().map(|i| &all[i]).collect();
                s.enforce = enforce;
                s
            })
    }

    proptest! {
        #[test]
        fn resolved_tables_never_exceed_the_host(s in any_spec()) {
            let host = zen4();
            match check::resolve(&s, &host) {
                Ok(r) => {
                    for f in features::all() {
                        prop_assert!(!f.is_set(&r.table) || f.is_set(&host), "{} not on host", f.name);
                    }
                    for f in &s.minus {
                        prop_assert!(!f.is_set(&r.table), "-{} still set", f.name);
                    }
                    for f in &s.plus {
                        let dropped = r.warnings.contains(&ModelWarning::FeatureUnavailable(f));
                        let removed = s.minus.contains(f);
                        // Leaf 0xD reads as zero without XSAVE (as in QEMU).
                        let no_xsave = f.leaf == 0xd
                            && !features::by_name("xsave").unwrap().is_set(&r.table);
                        // So does the SVM leaf without SVM.
                        let no_svm = f.leaf == 0x8000_000a
                            && !features::by_name("svm").unwrap().is_set(&r.table);
                        prop_assert!(
                            f.is_set(&r.table) || dropped || removed || no_xsave || no_svm,
                            "+{} lost silently", f.name
                        );
                    }
                    let vendor = s.model.vendor.map_or(host.vendor(), |v| v.as_str().as_bytes().try_into().ok());
                    prop_assert_eq!(r.table.vendor(), vendor);
                    if s.enforce {
                        prop_assert!(!r.warnings.iter().any(|w| matches!(w, ModelWarning::FeatureUnavailable(_))));
                    }
                }
                Err(CheckError::MissingFeatures { features, .. }) => {
                    prop_assert!(s.enforce);
                    prop_assert!(features.iter().all(|f| !f.is_set(&host)));
                }
                Err(e) => prop_assert!(false, "{e}"),
            }
        }
    }
}

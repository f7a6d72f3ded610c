//! Fleet baseline tests: the real Zen 4 dump and synthesized hosts.

use cpuid_model::baseline::{baseline, BaselineError};
use cpuid_model::check;
use cpuid_model::features::{self, Feature};
use cpuid_model::model::{self, Vendor};
use cpuid_model::{CpuidEntry, CpuidKey, CpuidRegs, CpuidTable};

const ZEN4: &str = include_str!("data/host-amd-zen4.txt");

/// The first CPU section of a `cpuid -r` dump.
fn parse_cpuid_r(text: &str) -> CpuidTable {
    cpuid_model::dump::parse_raw(text).unwrap().remove(0).table
}

fn zen4() -> CpuidTable {
    parse_cpuid_r(ZEN4)
}

/// A host of `vendor` supporting exactly `feats`.
fn host_with(vendor: Vendor, feats: &[&'static Feature]) -> CpuidTable {
    let b = vendor.as_str().as_bytes();
    let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let mut t = CpuidTable::new();
    let mut put = |leaf: u32, sub: u32, regs: CpuidRegs| {
        t.insert(
            CpuidKey::subleaf(leaf, sub),
            CpuidEntry {
                regs,
                indexed: leaf == 7 || leaf == 0xd,
            },
        )
    };
    put(
        0,
        0,
        CpuidRegs {
            eax: 0x1f,
            ebx: w(0),
            edx: w(4),
            ecx: w(8),
        },
    );
    put(
        0x8000_0000,
        0,
        CpuidRegs {
            eax: 0x8000_0021,
            ebx: w(0),
            edx: w(4),
            ecx: w(8),
        },
    );
    for f in features::all() {
        put(f.leaf, f.subleaf, CpuidRegs::default());
    }
    for f in feats {
        f.set(&mut t, true);
    }
    t
}

fn model_host(name: &str, extra: &[&str]) -> CpuidTable {
    let m = model::find(name).unwrap();
    let mut feats = m.features.clone();
    feats.extend(extra.iter().map(|n| features::by_name(n).unwrap()));
    feats.extend(
        check::KVM_DEFAULT_ON
            .iter()
            .map(|n| features::by_name(n).unwrap()),
    );
    host_with(m.vendor.unwrap(), &feats)
}

fn without(mut t: CpuidTable, names: &[&str]) -> CpuidTable {
    for n in names {
        features::by_name(n).unwrap().set(&mut t, false);
    }
    t
}

const ZEN4_EXTRAS: &str = "EPYC-v1,+pcid,+tsc_deadline_timer,+tsc_adjust,\
+erms,+invpcid,+avx512f,+avx512dq,+avx512ifma,+clwb,+avx512cd,+avx512bw,+avx512vl,\
+avx512vbmi,+umip,+avx512_vbmi2,+shstk,+gfni,+vaes,+vpclmulqdq,+avx512_vnni,+avx512_bitalg,\
+avx512_vpopcntdq,+rdpid,+fsrm,+avx512_vp2intersect,+avx_vnni,+avx512_bf16,+xsaves,\
+clzero,+xsaveerptr,+amd_stibp_always_on,+lfence_rdtsc";

#[test]
fn zen4_host_alone_gets_epyc_plus_its_extras() {
    let b = baseline(&[zen4()]).unwrap();
    assert_eq!(b.model.name, "EPYC-v1");
    assert_eq!(b.to_string(), ZEN4_EXTRAS);
    for never in [
        "svm",
        "monitor",
        "hypervisor",
        "x2apic",
        "osxsave",
        "ht",
        "cmp_legacy",
        "invtsc",
    ] {
        assert!(!b.extra.iter().any(|f| f.name == never), "{never}");
    }
    // The baseline resolves on the host it came from, with enforce.
    let mut spec = b.spec.clone();
    spec.enforce = true;
    let r = check::resolve(&spec, &zen4()).unwrap();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn a_host_without_avx512_removes_avx512_from_the_extras() {
    let no512 = without(
        zen4(),
        &[
            "avx512f",
            "avx512dq",
            "avx512ifma",
            "avx512cd",
            "avx512bw",
            "avx512vl",
            "avx512vbmi",
            "avx512_vbmi2",
        ],
    );
    let b = baseline(&[zen4(), no512.clone(), zen4()]).unwrap();
    assert_eq!(b.model.name, "EPYC-v1");
    let names: Vec<&str> = b.extra.iter().map(|f| f.name).collect();
    assert!(!names.contains(&"avx512f") && !names.contains(&"avx512vbmi"));
    assert!(names.contains(&"avx512_vnni")); // still on every host
                                             // Order of hosts does not matter.
    assert_eq!(baseline(&[no512, zen4()]).unwrap(), b);
}

#[test]
fn a_host_without_sha_falls_back_below_epyc() {
    let b = baseline(&[zen4(), without(zen4(), &["sha_ni"])]).unwrap();
    // No EPYC model runs everywhere; the largest AMD-defined model that does
    // (Opteron_G3) is preferred over larger Intel models, and the common features
    // come as extras.
    assert_eq!(b.model.name, "Opteron_G3-v1");
    let names: Vec<&str> = b.extra.iter().map(|f| f.name).collect();
    assert!(!names.contains(&"sha_ni"));
    for f in ["avx2", "avx512f", "sse4_2", "topoext", "xsaves"] {
        assert!(names.contains(&f), "{f}");
    }
}

#[test]
fn intel_fleet_picks_the_largest_common_model() {
    let clx = model_host("Cascadelake-Server", &[]);
    let icx = model_host("Icelake-Server", &["sha_ni"]);
    assert_eq!(
        baseline(&[clx.clone(), icx.clone()]).unwrap().to_string(),
        "Cascadelake-Server-v1"
    );
    assert_eq!(
        baseline(std::slice::from_ref(&icx)).unwrap().to_string(),
        "Icelake-Server-v1,+sha_ni"
    );
    // A Skylake-Server with VNNI but without the Cascade Lake speculation bits.
    let skx = model_host("Skylake-Server", &["avx512_vnni"]);
    assert_eq!(
        baseline(&[skx, clx, icx]).unwrap().to_string(),
        "Skylake-Server-v1,+avx512_vnni"
    );
    assert_eq!(
        baseline(&[model_host("Skylake-Server", &["avx512_vnni"])])
            .unwrap()
            .spec
            .to_qemu_string(),
        "Skylake-Server-v1,+avx512vnni"
    );
}

#[test]
fn mixed_vendor_fleet_uses_any_vendor_model() {
    let b = baseline(&[model_host("Haswell", &[]), zen4()]).unwrap();
    // Haswell needs TSX, which Zen 4 lacks; Haswell-noTSX runs on both.
    assert_eq!(b.model.name, "Haswell-v2");
}

#[test]
fn baseline_errors_say_what_is_wrong() {
    assert_eq!(baseline(&[]).unwrap_err(), BaselineError::NoHosts);
    assert_eq!(
        baseline(&[]).unwrap_err().to_string(),
        "no host CPUID tables given"
    );
    let e = baseline(&[zen4(), CpuidTable::new()]).unwrap_err();
    assert_eq!(e.to_string(), "host 1 CPUID table has no leaf 0 (vendor)");
    let bare = host_with(Vendor::Intel, &[]);
    let e = baseline(&[bare]).unwrap_err();
    assert_eq!(e.to_string(), "no CPU model is supported by all 1 hosts");
}

#[test]
fn synthesized_cascade_lake_dump_and_mixed_fleet() {
    let clx = parse_cpuid_r(include_str!("data/host-intel-cascadelake-synth.txt"));
    let alone = baseline(std::slice::from_ref(&clx)).unwrap();
    assert_eq!(alone.model.name, "Cascadelake-Server-v2");
    // Bits KVM cannot virtualize (EST, SMX, thermal, ...) are not offered.
    assert!(alone.extra.iter().all(|f| !f.is_host_only()), "{alone}");
    assert!(!alone.to_string().contains("+est"));
    // With the Zen 4 host: no common vendor, and TSX is Intel-only, so the
    // largest model without TSX wins.
    let both = baseline(&[clx, zen4()]).unwrap();
    assert_eq!(both.model.name, "Broadwell-v2");
    assert!(both.model.has(features::by_name("avx2").unwrap()));
    assert!(both.extra.iter().any(|f| f.name == "avx512f"));
}

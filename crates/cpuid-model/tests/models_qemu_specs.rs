//! `--cpu` specs behave as QEMU 7.2's `-cpu`: accepted, warned about the features the
//! host lacks, or refused under `enforce` naming them.
//!
//! Default lane: over the fixture host dumps. Slow lane (`-- --ignored`, needs /dev/kvm
//! and QEMU): over this host's `KVM_GET_SUPPORTED_CPUID`, compared with the warnings
//! QEMU 7.2 itself prints for the same spec under `-accel kvm` on this host.

use std::collections::BTreeSet;
use std::process::Command;

use cpuid_model::check::{self, CheckError, ModelWarning};
use cpuid_model::{dump, features, spec, CpuidKey, CpuidTable};

fn zen4() -> CpuidTable {
    dump::parse_raw(include_str!("data/host-amd-zen4.txt"))
        .unwrap()
        .remove(0)
        .table
}

fn clx() -> CpuidTable {
    let text = include_str!("data/host-intel-cascadelake-synth.txt");
    dump::parse_raw(text).unwrap().remove(0).table
}

fn warned(r: &check::Resolved) -> Vec<&'static str> {
    r.warnings
        .iter()
        .filter_map(|w| match w {
            ModelWarning::FeatureUnavailable(f) => Some(f.name),
            _ => None,
        })
        .collect()
}

#[test]
fn skylake_server_v4_is_accepted() {
    let s = spec::parse("Skylake-Server-v4").unwrap();
    let r = check::resolve(&s, &clx()).unwrap();
    assert_eq!(warned(&r), Vec::<&str>::new());
    // Version 4 is version 3 (IBRS, no TSX) plus VMX EPT switching, an MSR feature.
    assert_eq!(
        s.model.model_id,
        "Intel Xeon Processor (Skylake, IBRS, no TSX)"
    );
    assert!(features::by_name("spec_ctrl").unwrap().is_set(&r.table));
    assert!(!features::by_name("hle").unwrap().is_set(&r.table));
    assert_eq!(r.table.vendor(), Some(*b"GenuineIntel"));
    // On the AMD host: accepted, the Intel-only bits it lacks dropped with warnings.
    let r = check::resolve(&s, &zen4()).unwrap();
    assert_eq!(r.table.vendor(), Some(*b"GenuineIntel"));
    assert!(!warned(&r).is_empty());
}

#[test]
fn epyc_rome_v2_with_ibpb_is_accepted() {
    let s = spec::parse("EPYC-Rome-v2,+ibpb").unwrap();
    let r = check::resolve(&s, &zen4()).unwrap();
    // Accepted; the nested Zen 4 host lacks a few of Rome's bits, warned and dropped
    // (the explicit +ibpb is one of them).
    assert_eq!(
        warned(&r),
        [
            "perfctr_core",
            "wbnoinvd",
            "amd_ibpb",
            "amd_ibrs",
            "amd_stibp",
            "amd_ssbd"
        ]
    );
    assert!(!features::by_name("ibpb").unwrap().is_set(&r.table));
    // On a host that has them, nothing is dropped.
    let mut full = zen4();
    for f in &s.model.features {
        assert!(f.set(&mut full, true), "{}", f.name);
    }
    let r = check::resolve(&s, &full).unwrap();
    assert_eq!(warned(&r), Vec::<&str>::new());
    assert!(features::by_name("ibpb").unwrap().is_set(&r.table));
    // Model-owned values: Rome's 16 MiB L3 and 40 physical address bits.
    let e6 = r.table.regs(CpuidKey::leaf(0x8000_0006)).unwrap();
    assert_eq!(e6.edx, 0x0080_8140);
    assert_eq!(
        r.table.regs(CpuidKey::leaf(0x8000_0008)).unwrap().eax & 0xffff,
        0x3028
    );
}

/// Cooperlake-v2 features the Zen 4 host lacks, in catalogue order.
const COOPERLAKE_ON_ZEN4: &[&str] = &[
    "hle",
    "rtm",
    "pku",
    "spec_ctrl",
    "stibp",
    "arch_capabilities",
    "ssbd",
];

#[test]
fn cooperlake_v2_with_enforce_is_refused_naming_the_missing_features() {
    let err = check::resolve(&spec::parse("Cooperlake-v2,enforce").unwrap(), &zen4()).unwrap_err();
    let CheckError::MissingFeatures { ref features, .. } = err else {
        panic!("{err}")
    };
    let names: Vec<&str> = features.iter().map(|f| f.name).collect();
    assert_eq!(names, COOPERLAKE_ON_ZEN4);
    let text = err.to_string();
    assert!(text.starts_with("CPU model 'Cooperlake-v2' with enforce: host doesn't support requested features: CPUID.07H:EBX.hle [bit 4], "), "{text}");
    assert!(!text.contains('\n'));
    // Without enforce: the same features, warned and dropped.
    let r = check::resolve(&spec::parse("Cooperlake-v2").unwrap(), &zen4()).unwrap();
    assert_eq!(warned(&r), COOPERLAKE_ON_ZEN4);
    for f in COOPERLAKE_ON_ZEN4 {
        assert!(!features::by_name(f).unwrap().is_set(&r.table), "{f}");
    }
}

/// A feature bit as QEMU's warnings name it: leaf (hex, no subleaf: QEMU prints
/// `CPUID.07H:EAX.avx512-bf16` for leaf 7 subleaf 1), register, bit.
type BitKey = (String, String, u8);

fn key_of(f: &features::Feature) -> BitKey {
    (
        format!("{:02X}", f.leaf),
        f.reg.to_string().to_uppercase(),
        f.bit,
    )
}

/// Every "host doesn't support requested feature" warning QEMU prints for `-cpu SPEC`
/// under KVM on this host, CPUID feature bits only (QEMU also names MSR features and
/// unnamed XSAVE components, which this crate does not report), and whether QEMU
/// refused the spec.
fn qemu_warnings(spec: &str) -> (BTreeSet<BitKey>, bool) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "kvm",
            "-machine",
            "pc",
            "-nodefaults",
            "-display",
            "none",
            "-S",
        ])
        .args(["-cpu", spec, "-qmp", "stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run qemu-system-x86_64 (scripts/install-deps qemu-system-x86)");
    let mut stdin = child.stdin.take().unwrap();
    // QEMU may already have exited (enforce): a failed write is fine.
    let _ = stdin.write_all(b"{\"execute\":\"qmp_capabilities\"}{\"execute\":\"quit\"}\n");
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let mut set = BTreeSet::new();
    for line in err.lines() {
        let Some(rest) = line
            .split("host doesn't support requested feature: CPUID.")
            .nth(1)
        else {
            continue;
        };
        // "07H:EBX.hle [bit 4]"; unnamed XSAVE components read "0DH:EAX [bit 9]".
        let Some((loc, bit)) = rest.split_once(" [bit ") else {
            continue;
        };
        let Some((leaf, reg_name)) = loc.split_once("H:") else {
            continue;
        };
        let Some((reg, _name)) = reg_name.split_once('.') else {
            continue;
        };
        let bit: u8 = bit.trim_end_matches(']').parse().unwrap();
        set.insert((leaf.to_string(), reg.to_string(), bit));
    }
    let refused = err.contains("Host doesn't support requested features");
    (set, refused)
}

fn kvm_supported() -> CpuidTable {
    let kvm = kvm_ioctls::Kvm::new().expect("/dev/kvm");
    let cpuid = kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .expect("KVM_GET_SUPPORTED_CPUID");
    cpuid_model::kvm::from_kvm(&cpuid)
}

#[test]
#[ignore = "needs /dev/kvm and qemu-system-x86_64 (slow lane)"]
fn kvm_the_three_specs_warn_and_refuse_as_qemu_does_on_this_host() {
    let host = kvm_supported();
    for spec_text in [
        "Skylake-Server-v4",
        "EPYC-Rome-v2,+ibpb",
        "Cooperlake-v2,enforce",
    ] {
        let (qemu, qemu_refused) = qemu_warnings(spec_text);
        let s = spec::parse(spec_text).unwrap();
        let ours: BTreeSet<BitKey> = match check::resolve(&s, &host) {
            Ok(r) => {
                assert!(!qemu_refused, "{spec_text}: QEMU refused, we accepted");
                r.warnings
                    .iter()
                    .filter_map(|w| match w {
                        ModelWarning::FeatureUnavailable(f) => Some(key_of(f)),
                        _ => None,
                    })
                    .collect()
            }
            Err(CheckError::MissingFeatures { features, .. }) => {
                assert!(qemu_refused, "{spec_text}: we refused, QEMU accepted");
                features.iter().map(|f| key_of(f)).collect()
            }
            Err(e) => panic!("{spec_text}: {e}"),
        };
        assert_eq!(ours, qemu, "{spec_text}");
    }
}

fn phys_bits_of(t: &CpuidTable) -> u32 {
    t.regs(CpuidKey::leaf(0x8000_0008)).unwrap().eax & 0xff
}

#[test]
fn address_width_comes_from_the_spec_or_on_request_the_host() {
    let host = zen4();
    let host_bits = phys_bits_of(&host);
    assert_ne!(host_bits, 40);
    for (cpu, bits) in [
        ("EPYC", 40),
        ("EPYC,phys-bits=44", 44),
        ("EPYC,host-phys-bits=on", host_bits),
        (
            "EPYC,host-phys-bits=on,host-phys-bits-limit=39",
            39.min(host_bits),
        ),
        ("EPYC,phys-bits=44,host-phys-bits=on", host_bits),
    ] {
        let r = check::resolve(&spec::parse(cpu).unwrap(), &host).unwrap();
        assert_eq!(phys_bits_of(&r.table), bits, "{cpu}");
        // Virtual address bits: 48 without LA57 (the host has LA57).
        assert_eq!(
            r.table.regs(CpuidKey::leaf(0x8000_0008)).unwrap().eax >> 8 & 0xff,
            48
        );
    }
}

#[test]
fn l3_cache_off_hides_the_l3_as_qemu_does() {
    let host = clx();
    let on = check::resolve(&spec::parse("Skylake-Server").unwrap(), &host).unwrap();
    let off = check::resolve(&spec::parse("Skylake-Server,l3-cache=off").unwrap(), &host).unwrap();
    let regs = |t: &CpuidTable, leaf, sub| t.regs(CpuidKey::subleaf(leaf, sub)).unwrap();
    // Leaf 2 ECX: 16 MiB L3 descriptor, or none.
    assert_eq!(
        (regs(&on.table, 2, 0).ecx, regs(&off.table, 2, 0).ecx),
        (0x4d, 0)
    );
    // Leaf 4: the L3 subleaf, or the null subleaf in its place.
    assert_eq!(regs(&on.table, 4, 3).eax & 0xff, 0x63);
    assert_eq!(regs(&off.table, 4, 3).eax, 0);
    // 0x8000_0006 EDX: the L3, or 0.
    assert_eq!(regs(&on.table, 0x8000_0006, 0).edx, 0x0080_8140);
    assert_eq!(regs(&off.table, 0x8000_0006, 0).edx, 0);
}

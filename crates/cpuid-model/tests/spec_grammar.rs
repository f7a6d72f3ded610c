//! Table tests for the `-cpu` spec grammar, plus a parse/print round trip.

use cpuid_model::features;
use cpuid_model::model;
use cpuid_model::spec::{self, ModelSpec, SpecError};
use proptest::prelude::*;

/// Valid specs: input, then the canonical form it prints as, then the net
/// requests (`+name` on, `-name` off) after QEMU's precedence rules.
const VALID: &[(&str, &str, &[&str])] = &[
    ("Haswell", "Haswell", &[]),
    ("Haswell,", "Haswell", &[]),
    ("Haswell,,+avx512f,", "Haswell,+avx512f", &["+avx512f"]),
    (
        "Haswell,+x2apic,-avx",
        "Haswell,+x2apic,-avx",
        &["-avx", "+x2apic"],
    ),
    ("Haswell,avx=off", "Haswell,avx=off", &["-avx"]),
    ("Haswell,avx", "Haswell,avx=on", &["+avx"]),
    (
        "Haswell,avx=yes,sse4.2=false",
        "Haswell,avx=on,sse4_2=off",
        &["+avx", "-sse4_2"],
    ),
    ("Haswell,AVX2=On", "Haswell,avx2=on", &["+avx2"]),
    // Versions and aliases are model names of their own.
    (
        "EPYC-Rome-v2,+ibpb,phys-bits=44,l3-cache=off",
        "EPYC-Rome-v2,+amd_ibpb,phys-bits=44,l3-cache=off",
        &["+amd_ibpb"],
    ),
    (
        "Skylake-Server-IBRS,host-phys-bits=on,host-phys-bits-limit=46,l3-cache=on",
        "Skylake-Server-IBRS,host-phys-bits=on,host-phys-bits-limit=46",
        &[],
    ),
    (
        "Cooperlake-v2,phys-bits=52,enforce",
        "Cooperlake-v2,phys-bits=52,enforce",
        &[],
    ),
    // QEMU spellings map to canonical names.
    (
        "qemu64,+lahf-lm,+sse4-1,-fxsr-opt,+tsc-deadline,+avx512vnni",
        "qemu64,+lahf_lm,+sse4_1,+tsc_deadline_timer,+avx512_vnni,-fxsr_opt",
        &[
            "+avx512_vnni",
            "-fxsr_opt",
            "+lahf_lm",
            "+sse4_1",
            "+tsc_deadline_timer",
        ],
    ),
    (
        "kvm64,+sse3,+ffxsr",
        "kvm64,+pni,+fxsr_opt",
        &["+fxsr_opt", "+pni"],
    ),
    // Flags.
    ("EPYC,enforce", "EPYC,enforce", &[]),
    ("EPYC,enforce=on,check=off", "EPYC,enforce,check=off", &[]),
    ("EPYC,enforce,enforce=off", "EPYC", &[]),
    ("EPYC,check", "EPYC", &[]),
    // Precedence: "-" beats "+" beats "=on|off", whatever the order.
    ("EPYC,-avx2,+avx2", "EPYC,+avx2,-avx2", &["-avx2"]),
    ("EPYC,+avx2,avx2=off", "EPYC,+avx2,avx2=off", &["+avx2"]),
    ("EPYC,avx2=on,-avx2", "EPYC,-avx2,avx2=on", &["-avx2"]),
    // Among property forms the last one wins.
    ("EPYC,avx2=off,avx2=on", "EPYC,avx2=off,avx2=on", &["+avx2"]),
    ("host,-svm", "host,-svm", &["-svm"]),
    ("max", "max", &[]),
    // Identity, levels, kvm and migratable: QEMU's numbers (decimal, 0x hex, 0 octal),
    // printed in a fixed order, levels in hex.
    (
        "Haswell,vendor=AuthenticAMD,family=0x19,model=1,stepping=017,model-id=My CPU 1.0",
        "Haswell,vendor=AuthenticAMD,family=25,model=1,stepping=15,model-id=My CPU 1.0",
        &[],
    ),
    ("EPYC,vendor=HygonGenuine", "EPYC,vendor=HygonGenuine", &[]),
    (
        "Haswell,xlevel=0x80000008,level=010,-avx",
        "Haswell,-avx,level=0x8,xlevel=0x80000008",
        &["-avx"],
    ),
    (
        "Haswell,min-level=2,min-xlevel=2147483656",
        "Haswell,min-level=0x2,min-xlevel=0x80000008",
        &[],
    ),
    ("Haswell,model-id=", "Haswell,model-id=", &[]),
    ("Haswell,kvm=off", "Haswell,kvm=off", &[]),
    ("Haswell,kvm=off,kvm", "Haswell", &[]),
    (
        "host,migratable=off,kvm=off",
        "host,kvm=off,migratable=off",
        &[],
    ),
    ("max,migratable=no", "max,migratable=off", &[]),
    ("host,migratable=on", "host", &[]),
    (
        "host,vendor=GenuineIntel,level=0x1f,enforce",
        "host,vendor=GenuineIntel,level=0x1f,enforce",
        &[],
    ),
];

const INVALID: &[(&str, &str)] = &[
    ("", "missing CPU model name; use --cpu help to list models"),
    (
        ",+avx",
        "missing CPU model name; use --cpu help to list models",
    ),
    (
        "haswell",
        "unknown CPU model 'haswell' (did you mean 'Haswell'?); use --cpu help to list models",
    ),
    (
        "Skylake",
        "unknown CPU model 'Skylake'; use --cpu help to list models",
    ),
    (
        "Pentium4,+sse",
        "unknown CPU model 'Pentium4' (did you mean 'pentium'?); use --cpu help to list models",
    ),
    (
        "Haswell,+avx3",
        "unknown CPU feature 'avx3' (did you mean 'avx'?)",
    ),
    (
        "Haswell,-x2apci",
        "unknown CPU feature 'x2apci' (did you mean 'x2apic'?)",
    ),
    ("Haswell,frobnicate=on", "unknown CPU feature 'frobnicate'"),
    ("Haswell,+", "missing feature name in '+'"),
    ("Haswell,-", "missing feature name in '-'"),
    ("Haswell,=on", "missing feature name in '=on'"),
    (
        "Haswell,avx=maybe",
        "invalid value 'maybe' for 'avx': expected on or off",
    ),
    (
        "Haswell,avx=",
        "invalid value '' for 'avx': expected on or off",
    ),
    (
        "Haswell,enforce=1",
        "invalid value '1' for 'enforce': expected on or off",
    ),
    (
        "Haswell,+avx=on",
        "invalid item '+avx=on': use '+avx' or 'avx=on|off'",
    ),
    (
        "Haswell,-avx=off",
        "invalid item '-avx=off': use '-avx' or 'avx=on|off'",
    ),
    ("Haswell,+enforce", "unknown CPU feature 'enforce'"),
    (
        "Haswell,pmu=on",
        "CPU property 'pmu' is not supported; only feature flags and enforce, check, phys-bits, host-phys-bits, host-phys-bits-limit, l3-cache, vendor, family, model, stepping, model-id, level, xlevel, min-level, min-xlevel, kvm and migratable are",
    ),
    (
        "Haswell,hv-relaxed",
        "CPU property 'hv-relaxed' is not supported; only feature flags and enforce, check, phys-bits, host-phys-bits, host-phys-bits-limit, l3-cache, vendor, family, model, stepping, model-id, level, xlevel, min-level, min-xlevel, kvm and migratable are",
    ),
    // Identity: QEMU's ranges (family 0 to 0xF + 0xFF).
    (
        "Haswell,vendor=Intel",
        "invalid value 'Intel' for 'vendor': expected GenuineIntel, AuthenticAMD or HygonGenuine (did you mean 'GenuineIntel'?)",
    ),
    (
        "Haswell,vendor=authenticamd",
        "invalid value 'authenticamd' for 'vendor': expected GenuineIntel, AuthenticAMD or HygonGenuine (did you mean 'AuthenticAMD'?)",
    ),
    (
        "Haswell,vendor=CentaurHauls",
        "invalid value 'CentaurHauls' for 'vendor': expected GenuineIntel, AuthenticAMD or HygonGenuine",
    ),
    (
        "Haswell,vendor=GenuineIntelX",
        "invalid value 'GenuineIntelX' for 'vendor': expected GenuineIntel, AuthenticAMD or HygonGenuine (did you mean 'GenuineIntel'?)",
    ),
    ("Haswell,vendor", "missing value for 'vendor'"),
    (
        "Haswell,family=271",
        "invalid value '271' for 'family': expected a number from 0 to 270",
    ),
    (
        "Haswell,model=0x100",
        "invalid value '0x100' for 'model': expected a number from 0 to 255",
    ),
    (
        "Haswell,stepping=16",
        "invalid value '16' for 'stepping': expected a number from 0 to 15",
    ),
    (
        "Haswell,stepping=09",
        "invalid value '09' for 'stepping': expected a number from 0 to 15",
    ),
    (
        "Haswell,model-id=0123456789012345678901234567890123456789012345678",
        "invalid value '0123456789012345678901234567890123456789012345678' for 'model-id': the brand string holds at most 48 bytes, this is 49",
    ),
    // Levels: 32-bit numbers.
    (
        "Haswell,level=abc",
        "invalid value 'abc' for 'level': expected a number from 0 to 4294967295",
    ),
    (
        "Haswell,xlevel=-1",
        "invalid value '-1' for 'xlevel': expected a number from 0 to 4294967295",
    ),
    (
        "Haswell,min-level=0x100000000",
        "invalid value '0x100000000' for 'min-level': expected a number from 0 to 4294967295",
    ),
    ("Haswell,level", "missing value for 'level'"),
    (
        "Haswell,kvm=maybe",
        "invalid value 'maybe' for 'kvm': expected on or off",
    ),
    // QEMU 7.2 has `migratable` on host and max only ("Property not found" elsewhere).
    (
        "Haswell,migratable=off",
        "CPU property 'migratable' applies to the host and max models only, not 'Haswell'",
    ),
    (
        "qemu64,migratable=on",
        "CPU property 'migratable' applies to the host and max models only, not 'qemu64'",
    ),
    (
        "host,migratable=sometimes",
        "invalid value 'sometimes' for 'migratable': expected on or off",
    ),
    ("Haswell, +avx", "unknown CPU feature ' +avx'"),
    (
        "Haswell,phys-bits=0",
        "invalid value '0' for 'phys-bits': expected a number from 32 to 52",
    ),
    (
        "Haswell,phys-bits=53",
        "invalid value '53' for 'phys-bits': expected a number from 32 to 52",
    ),
    (
        "Haswell,phys-bits=forty",
        "invalid value 'forty' for 'phys-bits': expected a number from 32 to 52",
    ),
    ("Haswell,phys-bits", "missing value for 'phys-bits'"),
    (
        "Haswell,host-phys-bits-limit=64",
        "invalid value '64' for 'host-phys-bits-limit': expected a number from 32 to 52",
    ),
    (
        "Haswell,l3-cache=maybe",
        "invalid value 'maybe' for 'l3-cache': expected on or off",
    ),
    (
        "Haswell-v9",
        "unknown CPU model 'Haswell-v9' (did you mean 'Haswell-v1'?); use --cpu help to list models",
    ),
    (
        "EPYC-Rome-v2,+ibpbb",
        "unknown CPU feature 'ibpbb' (did you mean 'amd_ibpb'?)",
    ),
];

fn net(spec: &ModelSpec) -> Vec<String> {
    spec.requested()
        .values()
        .map(|(f, on)| format!("{}{}", if *on { '+' } else { '-' }, f.name))
        .collect()
}

#[test]
fn valid_specs_parse_to_the_expected_requests() {
    for (input, canonical, requests) in VALID {
        let spec = spec::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(spec.to_string(), *canonical, "{input}");
        assert_eq!(net(&spec), *requests, "{input}");
        assert_eq!(spec::parse(canonical).unwrap(), spec, "{input}: round trip");
    }
}

#[test]
fn invalid_specs_fail_with_exact_messages() {
    for (input, message) in INVALID {
        match spec::parse(input) {
            Ok(s) => panic!("{input:?} parsed as {s}"),
            Err(e) => assert_eq!(e.to_string(), *message, "{input:?}"),
        }
    }
}

#[test]
fn flags_default_to_check_on_enforce_off() {
    let s = spec::parse("Haswell").unwrap();
    assert!(s.check && !s.enforce);
    let s: ModelSpec = "Haswell,enforce".parse().unwrap();
    assert!(s.enforce);
    assert_eq!(
        spec::parse("Skylake-Srever").unwrap_err(),
        SpecError::UnknownModel {
            name: "Skylake-Srever".into(),
            suggestion: Some("Skylake-Server")
        }
    );
}

#[test]
fn ambiguities_are_reported_once_per_feature() {
    let s = spec::parse("EPYC,+avx2,avx2=off,avx2=off,-sha_ni,sha_ni=on").unwrap();
    let text: Vec<String> = s.ambiguities().iter().map(|a| a.to_string()).collect();
    assert_eq!(
        text,
        [
            "ambiguous CPU model string: don't mix both \"+avx2\" and \"avx2=off\" (+avx2 wins)",
            "ambiguous CPU model string: don't mix both \"-sha_ni\" and \"sha_ni=on\" (-sha_ni wins)",
        ]
    );
    assert!(spec::parse("EPYC,+avx2,-sha_ni")
        .unwrap()
        .ambiguities()
        .is_empty());
}

#[test]
fn qemu_rendering_uses_qemu_property_names() {
    let s =
        spec::parse("Cascadelake-Server,+avx512_vpopcntdq,-lahf_lm,tsc_deadline_timer=off,enforce")
            .unwrap();
    assert_eq!(
        s.to_qemu_string(),
        "Cascadelake-Server,+avx512-vpopcntdq,-lahf-lm,tsc-deadline=off,enforce"
    );
    assert_eq!(spec::parse(&s.to_qemu_string()).unwrap(), s);
}

fn any_spec() -> impl Strategy<Value = ModelSpec> {
    let n_models = model::all().len();
    let n_feats = features::all().len();
    (
        0..n_models,
        proptest::collection::vec(0..n_feats, 0..4),
        proptest::collection::vec(0..n_feats, 0..4),
        proptest::collection::vec((0..n_feats, any::<bool>()), 0..4),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(m, plus, minus, props, enforce, check)| {
            let all = features::all();
            let mut s = ModelSpec::new(&model::all()[m]);
            s.plus = plus.into_iter().map(|i| &all[i]).collect();
            s.minus = minus.into_iter().map(|i| &all[i]).collect();
            s.props = props.into_iter().map(|(i, on)| (&all[i], on)).collect();
            s.enforce = enforce;
            s.check = check;
            s
        })
}

proptest! {
    #[test]
    fn display_and_qemu_string_round_trip(s in any_spec()) {
        prop_assert_eq!(spec::parse(&s.to_string()).unwrap(), s.clone());
        prop_assert_eq!(spec::parse(&s.to_qemu_string()).unwrap(), s);
    }

    #[test]
    fn parse_never_panics(input in "[A-Za-z0-9,+=._ -]{0,40}") {
        let _ = spec::parse(&input);
    }
}

//! KVM's paravirtual features (CPUID leaf 0x4000_0001 EAX) against QEMU 7.2's KVM guests.
//!
//! Default lane: the snapshot `tests/data/qemu-7.2-kvm-features.json`, written by
//! `scripts/qemu-kvm-features` on this project's development host: for each `-cpu` spec,
//! the leaf a QEMU guest read (`tests/qemu-guest/cpuid-guest.c` under `-accel kvm`),
//! QEMU's warnings about that leaf, the host's `KVM_GET_SUPPORTED_CPUID` hypervisor
//! leaves, and QEMU's `query-cpu-model-expansion` of a few models. The crate resolves
//! the same specs against that supported table; the vCPU table must hold what QEMU's
//! guest read. Slow lane (`cargo test -p cpuid-model --test kvm_paravirt -- --ignored`):
//! the same comparison against a fresh run of the script on the machine at hand (needs
//! /dev/kvm, QEMU and `gcc -m32`).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use cpu_topology::smp::parse_smp;
use cpu_topology::VcpuIndex;
use cpuid_model::check::{self, ModelWarning};
use cpuid_model::normalize::Normalizer;
use cpuid_model::{dump, features, spec, CpuidEntry, CpuidKey, CpuidRegs, CpuidTable};
use serde_json::Value;

const SNAPSHOT: &str = include_str!("data/qemu-7.2-kvm-features.json");

/// QEMU 7.2's `kvm*` properties that are not bits of leaf 0x4000_0001 EAX: the `kvm`
/// switch itself, the hint word (EDX) and two accelerator options.
const NOT_FEAT_KVM: &[&str] = &[
    "kvm",
    "kvm-hint-dedicated",
    "kvm-no-smi-migration",
    "kvm-pv-enforce-cpuid",
];

/// Catalogued paravirtual bits QEMU 7.2 does not name (QEMU 8.2 does).
const NAMED_AFTER_7_2: &[&str] = &["kvm-asyncpf-vmexit"];

/// A host whose KVM has the recorded hypervisor leaves (the rest from the Zen 4 dump:
/// only leaf 0x4000_0001 is compared).
fn host_from(doc: &Value) -> CpuidTable {
    let text = include_str!("data/host-amd-zen4.txt");
    let mut t = dump::parse_raw(text).unwrap().remove(0).table;
    t.retain(|k, _| !(0x4000_0000..0x5000_0000).contains(&k.leaf));
    for (leaf, regs) in doc["supported"].as_object().expect("supported") {
        let leaf = u32::from_str_radix(leaf.trim_start_matches("0x"), 16).unwrap();
        let r: Vec<u32> = regs
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let regs = CpuidRegs {
            eax: r[0],
            ebx: r[1],
            ecx: r[2],
            edx: r[3],
        };
        t.insert(
            CpuidKey::leaf(leaf),
            CpuidEntry {
                regs,
                indexed: false,
            },
        );
    }
    t
}

/// Leaf 0x4000_0001 (EAX, EDX) as vCPU 0 of a 2-vCPU guest reads it; `None` without KVM's
/// signature leaf. Plus the names of the paravirtual features reported missing.
fn guest_reads(cpu: &str, host: &CpuidTable) -> (Option<(u32, u32)>, BTreeSet<&'static str>) {
    let r = check::resolve(&spec::parse(cpu).unwrap(), host).unwrap();
    let topo = parse_smp("2").unwrap();
    let t = Normalizer::new(&r.table, &topo)
        .unwrap()
        .for_vcpu(VcpuIndex(0))
        .unwrap();
    let signature = t
        .regs(CpuidKey::leaf(0x4000_0000))
        .is_some_and(|r| r.ebx == u32::from_le_bytes(*b"KVMK"));
    let leaf = t
        .regs(CpuidKey::leaf(0x4000_0001))
        .filter(|_| signature)
        .map(|r| (r.eax, r.edx));
    let missing = r
        .warnings
        .iter()
        .filter_map(|w| match w {
            ModelWarning::FeatureUnavailable(f) if f.is_kvm_paravirt() => Some(f.name),
            _ => None,
        })
        .collect();
    (leaf, missing)
}

/// The feature a QEMU warning names (`...CPUID.40000001H:EAX.kvm-mmu [bit 2]`).
fn warned(line: &str) -> &'static str {
    let name = line
        .split("EAX.")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap_or_else(|| panic!("unexpected warning {line}"));
    features::by_name(name)
        .unwrap_or_else(|| panic!("QEMU warns about {name}, which we do not know"))
        .name
}

/// Every difference between the crate and a recorded document.
fn differences(doc: &Value) -> Vec<String> {
    let host = host_from(doc);
    let mut out = Vec::new();
    for g in doc["guests"].as_array().expect("guests") {
        let cpu = g["cpu"].as_str().unwrap();
        let qemu = g["eax"]
            .as_u64()
            .map(|eax| (eax as u32, g["edx"].as_u64().unwrap() as u32));
        let qemu_missing: BTreeSet<&str> = g["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| warned(w.as_str().unwrap()))
            .collect();
        let (ours, missing) = guest_reads(cpu, &host);
        if ours != qemu {
            out.push(format!(
                "-cpu {cpu}: QEMU's guest reads {qemu:x?}, ours {ours:x?}"
            ));
        }
        if missing != qemu_missing {
            out.push(format!(
                "-cpu {cpu}: QEMU warns about {qemu_missing:?}, we about {missing:?}"
            ));
        }
    }
    for (model, props) in doc["expansions"].as_object().expect("expansions") {
        let m = cpuid_model::model::find(model).unwrap();
        // QEMU expands a named model before the host's filter: resolve it where KVM has
        // every paravirtual feature.
        let mut base = host.clone();
        if !m.is_passthrough() {
            for f in features::all().iter().filter(|f| f.is_kvm_paravirt()) {
                f.set(&mut base, true);
            }
        }
        let r = check::resolve(&spec::parse(model).unwrap(), &base).unwrap();
        let props = props.as_object().unwrap();
        for (prop, value) in props {
            match features::by_name(prop) {
                Some(f) if !NOT_FEAT_KVM.contains(&prop.as_str()) => {
                    if Some(f.is_set(&r.table)) != value.as_bool() {
                        out.push(format!("{model} expansion: {prop} is {value} in QEMU"));
                    }
                }
                _ if NOT_FEAT_KVM.contains(&prop.as_str()) => {}
                _ => out.push(format!("{model} expansion: {prop} is not catalogued")),
            }
        }
        for f in features::all().iter().filter(|f| f.is_kvm_paravirt()) {
            if !props.contains_key(f.qemu_name) && !NAMED_AFTER_7_2.contains(&f.qemu_name) {
                out.push(format!("{model} expansion: QEMU has no {}", f.qemu_name));
            }
        }
    }
    out
}

#[test]
fn guests_read_the_paravirtual_leaf_qemu_7_2_gives() {
    let doc: Value = serde_json::from_str(SNAPSHOT).unwrap();
    assert!(doc["qemu"].as_str().unwrap().starts_with("7.2."));
    // The snapshot covers what a user checks: a named model's defaults, host, host
    // without the hypercall-based features, kvm=off.
    let cpus: Vec<&str> = doc["guests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["cpu"].as_str().unwrap())
        .collect();
    for cpu in [
        "qemu64",
        "Skylake-Server-v4",
        "host",
        "host,-kvm-pv-ipi,-kvm-pv-unhalt,-kvm-pv-sched-yield",
        "qemu64,kvm=off",
        "host,kvm=off",
    ] {
        assert!(cpus.contains(&cpu), "{cpu} not recorded");
    }
    let diff = differences(&doc);
    assert!(diff.is_empty(), "{}", diff.join("\n"));
}

#[test]
fn host_without_pv_ipi_unhalt_and_sched_yield_keeps_the_rest() {
    // The Linux-on-this-host spelling (docs/LINUX.md): the three hypercall-based
    // features go, every other paravirtual feature KVM offers stays.
    let doc: Value = serde_json::from_str(SNAPSHOT).unwrap();
    let host = host_from(&doc);
    let (all, _) = guest_reads("host", &host);
    let (trimmed, _) = guest_reads("host,-kvm-pv-ipi,-kvm-pv-unhalt,-kvm-pv-sched-yield", &host);
    let hypercalls = ["kvm-pv-ipi", "kvm-pv-unhalt", "kvm-pv-sched-yield"]
        .iter()
        .fold(0, |m, n| m | features::by_name(n).unwrap().mask());
    let (all, trimmed) = (all.unwrap().0, trimmed.unwrap().0);
    assert_eq!(all & hypercalls, hypercalls, "{all:#x}");
    assert_eq!(trimmed, all & !hypercalls);
    // The property form says the same.
    let (props, _) = guest_reads(
        "host,kvm-pv-ipi=off,kvm_pv_unhalt=off,KVM_FEATURE_PV_SCHED_YIELD=off",
        &host,
    );
    assert_eq!(props.unwrap().0, trimmed);
}

#[test]
fn misspelled_paravirtual_features_are_one_line_errors() {
    for (cpu, err) in [
        (
            "host,-kvm-pv-ip",
            "unknown CPU feature 'kvm-pv-ip' (did you mean 'kvm_pv_ipi'?)",
        ),
        (
            "qemu64,+kvm-pv-unhalted",
            "unknown CPU feature 'kvm-pv-unhalted' (did you mean 'kvm_pv_unhalt'?)",
        ),
    ] {
        let e = spec::parse(cpu).unwrap_err().to_string();
        assert_eq!(e, err);
        assert!(!e.contains('\n'));
    }
}

/// Slow lane: QEMU and KVM on this machine, now. Fails loudly when either is missing.
#[test]
#[ignore = "boots QEMU KVM guests (slow lane)"]
fn live_qemu_kvm_guests_agree_with_the_crate() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/qemu-kvm-features");
    let live: Value = match Command::new(&script).args(["--out", "-"]).output() {
        Ok(run) if run.status.success() => serde_json::from_slice(&run.stdout).unwrap(),
        Ok(run) => panic!(
            "{} failed (needs /dev/kvm, qemu-system-x86 and gcc -m32): {}",
            script.display(),
            String::from_utf8_lossy(&run.stderr)
        ),
        Err(e) => panic!("{}: {e}", script.display()),
    };
    let diff = differences(&live);
    assert!(diff.is_empty(), "{}", diff.join("\n"));
}

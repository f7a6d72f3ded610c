//! The model data against QEMU 7.2's own definitions.
//!
//! Default lane: against the snapshot `tests/data/qemu-7.2-cpu-models.json`, written by
//! `scripts/qemu-cpu-models` from `query-cpu-definitions` and `query-cpu-model-expansion`
//! (type static) of `qemu-system-x86_64 -machine none,accel=tcg`, and its `-cpu help`.
//! Slow lane (`cargo test -p cpuid-model -- --ignored`): the same comparison against a
//! fresh run of QEMU, which must be installed (`scripts/install-deps qemu-system-x86`).
//!
//! Deliberate differences (DESIGN.md, "Named models and QEMU"): QEMU's TCG turns `vme`
//! off for every model and our data keeps the model's own `vme` (as QEMU under KVM does),
//! and every QEMU model gets `hypervisor` at load time, which our data adds in `check`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use cpuid_model::check;
use cpuid_model::model::{self, CpuModel};
use cpuid_model::{features, spec, CpuidKey, CpuidTable};
use serde_json::Value;

const SNAPSHOT: &str = include_str!("data/qemu-7.2-cpu-models.json");

/// QEMU's boolean properties that are on in `props`.
fn qemu_on(entry: &Value) -> BTreeSet<String> {
    entry["on"]
        .as_array()
        .expect("on list")
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Our model's features in QEMU's spelling, as QEMU's TCG expansion shows them.
fn ours_as_tcg_shows_them(m: &CpuModel) -> BTreeSet<String> {
    let mut s: BTreeSet<String> = m.features.iter().map(|f| f.qemu_name.to_string()).collect();
    s.extend(m.msr_features.iter().cloned());
    s.remove("vme");
    if m.name != "base" {
        s.insert("hypervisor".into());
    }
    s
}

/// Compare every model of a snapshot document with ours; returns the differences.
fn differences(doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let models = doc["models"].as_object().expect("models");
    for (name, entry) in models {
        if name == "max" {
            continue;
        }
        let Some(m) = model::find(name) else {
            out.push(format!("{name}: missing"));
            continue;
        };
        let (qemu, ours) = (qemu_on(entry), ours_as_tcg_shows_them(m));
        for f in qemu.difference(&ours) {
            out.push(format!("{name}: QEMU has {f}, we do not"));
        }
        for f in ours.difference(&qemu) {
            out.push(format!("{name}: we have {f}, QEMU does not"));
        }
        let vendor = m.vendor.map_or("", |v| v.as_str());
        let scalars = [
            ("vendor", Value::from(vendor)),
            ("family", Value::from(m.family)),
            ("model", Value::from(m.model)),
            ("stepping", Value::from(m.stepping)),
            ("model-id", Value::from(m.model_id.as_str())),
            ("min-level", Value::from(m.level)),
            ("min-xlevel", Value::from(m.xlevel)),
        ];
        for (key, ours) in scalars {
            if entry[key] != ours {
                out.push(format!(
                    "{name}: {key} is {} in QEMU, {ours} here",
                    entry[key]
                ));
            }
        }
    }
    let ours: BTreeSet<&str> = model::all().iter().map(|m| m.name.as_str()).collect();
    let defs = doc["definitions"].as_array().expect("definitions");
    let theirs: BTreeSet<&str> = defs.iter().map(|d| d["name"].as_str().unwrap()).collect();
    for n in ours.symmetric_difference(&theirs) {
        out.push(format!("{n}: in one catalogue only"));
    }
    for d in defs {
        let name = d["name"].as_str().unwrap();
        let alias = d["alias-of"].as_str();
        if let Some(m) = model::find(name) {
            if m.alias_of.as_deref() != alias {
                out.push(format!("{name}: alias of {alias:?} in QEMU"));
            }
        }
    }
    let help: Vec<String> = model::help_text()
        .lines()
        .filter(|l| l.starts_with("x86 "))
        .map(str::to_string)
        .collect();
    let qemu_help: Vec<String> = doc["help"]
        .as_array()
        .expect("help")
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    if help != qemu_help {
        out.push("--cpu help model lines differ from QEMU's".into());
    }
    out
}

#[test]
fn every_model_matches_qemus_expansion_feature_by_feature() {
    let doc: Value = serde_json::from_str(SNAPSHOT).unwrap();
    assert_eq!(doc["models"].as_object().unwrap().len(), 131); // all but host
    let diff = differences(&doc);
    assert!(
        diff.is_empty(),
        "{} differences:\n{}",
        diff.len(),
        diff.join("\n")
    );
}

#[test]
fn help_lists_the_132_names_in_qemus_order_and_words() {
    let doc: Value = serde_json::from_str(SNAPSHOT).unwrap();
    let help = model::help_text();
    let lines: Vec<&str> = help.lines().filter(|l| l.starts_with("x86 ")).collect();
    assert_eq!(lines.len(), 132);
    let qemu: Vec<&str> = doc["help"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(lines, qemu);
    assert!(lines.contains(
        &"x86 Cascadelake-Server-v2  Intel Xeon Processor (Cascadelake) [ARCH_CAPABILITIES]"
    ));
    assert!(lines.contains(&"x86 EPYC-IBPB             (alias of EPYC-v2)"));
}

/// A table with the host's vendor where every catalogued feature is supported.
fn everything(vendor: &[u8; 12]) -> CpuidTable {
    let text = include_str!("data/host-amd-zen4.txt");
    let mut t = cpuid_model::dump::parse_raw(text).unwrap().remove(0).table;
    for f in features::all() {
        if t.get(f.key()).is_none() {
            t.insert(f.key(), cpuid_model::CpuidEntry::default());
        }
        f.set(&mut t, true);
    }
    let e = t.get_mut(CpuidKey::leaf(0)).unwrap();
    let w = |i: usize| u32::from_le_bytes([vendor[i], vendor[i + 1], vendor[i + 2], vendor[i + 3]]);
    (e.regs.ebx, e.regs.edx, e.regs.ecx) = (w(0), w(4), w(8));
    t
}

#[test]
fn resolved_levels_are_qemus_automatic_levels() {
    // QEMU's min-level / min-xlevel in the expansion already include its automatic
    // raise for the model's features; ours must land on the same values.
    let doc: Value = serde_json::from_str(SNAPSHOT).unwrap();
    let host = everything(b"GenuineIntel");
    for (name, entry) in doc["models"].as_object().unwrap() {
        if name == "max" || name == "base" {
            continue;
        }
        let r = check::resolve(&spec::parse(name).unwrap(), &host).unwrap();
        let level = r.table.regs(CpuidKey::leaf(0)).unwrap().eax;
        assert_eq!(Value::from(level), entry["min-level"], "{name}");
        let xlevel = r
            .table
            .regs(CpuidKey::leaf(0x8000_0000))
            .map_or(0, |r| r.eax);
        assert_eq!(Value::from(xlevel), entry["min-xlevel"], "{name}");
    }
}

/// Slow lane: QEMU itself, now. Fails loudly when QEMU is missing.
#[test]
#[ignore = "runs qemu-system-x86_64 (slow lane)"]
fn live_qemu_agrees_with_the_snapshot_and_the_models() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/qemu-cpu-models");
    let out = Command::new(&script)
        .args(["--out", "-"])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed (is qemu-system-x86 installed? scripts/install-deps qemu-system-x86): {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let live: Value = serde_json::from_slice(&out.stdout).unwrap();
    let diff = differences(&live);
    assert!(
        diff.is_empty(),
        "{} differences:\n{}",
        diff.len(),
        diff.join("\n")
    );
    let snapshot: Value = serde_json::from_str(SNAPSHOT).unwrap();
    assert_eq!(
        live["models"], snapshot["models"],
        "snapshot is stale: rerun the script"
    );
    assert_eq!(live["help"], snapshot["help"]);
}

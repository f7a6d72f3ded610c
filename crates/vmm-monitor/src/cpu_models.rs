//! QEMU's CPU model queries over the [`cpuid_model`] catalogue, judged against the CPUID the
//! host's KVM supports: `query-cpu-definitions` and `query-cpu-model-expansion`.
//!
//! As QEMU 7.2 on x86 under KVM:
//! - a definition's `unavailable-features` are the QEMU names of the features the model
//!   needs that KVM cannot give (empty: the model runs here); `host` and `max` take what
//!   KVM has, so they always run; `base` is the one static model;
//! - an expansion describes the CPU the model asks for with KVM's default properties, on
//!   this host's vendor, before the host's filter (QEMU expands without realizing a CPU,
//!   so a feature KVM lacks still reads `true`; `unavailable-features` names those):
//!   `static` names it as `base` plus properties, `full` keeps the name.

use cpuid_model::check;
use cpuid_model::features::{self, Feature};
use cpuid_model::model::{self, CpuModel, ModelKind};
use cpuid_model::spec::ModelSpec;
use cpuid_model::{CpuidKey, CpuidTable, Reg};
use serde_json::{json, Map, Value};

use crate::protocol::{Args, QmpError};

/// The QOM type of a model, as QEMU names it (`Westmere-x86_64-cpu`).
pub fn typename(model: &str) -> String {
    format!("{model}-x86_64-cpu")
}

/// One `CpuDefinitionInfo`.
pub fn definition(m: &CpuModel, host: &CpuidTable) -> Value {
    let mut missing = if m.is_passthrough() {
        Vec::new()
    } else {
        check::missing_features(m, host)
    };
    missing.sort_by_key(|f| word_order(f));
    let unavailable: Vec<&str> = missing.iter().map(|f| f.qemu_name).collect();
    let mut d = Map::new();
    d.insert("name".into(), json!(m.name));
    d.insert("typename".into(), json!(typename(&m.name)));
    d.insert("static".into(), json!(m.name == "base"));
    d.insert("migration-safe".into(), json!(m.kind == ModelKind::Named));
    d.insert("unavailable-features".into(), json!(unavailable));
    d.insert("deprecated".into(), json!(false));
    if let Some(target) = &m.alias_of {
        d.insert("alias-of".into(), json!(target));
    }
    Value::Object(d)
}

/// QEMU 7.2's feature words in its order (`FeatureWord`): leaf, subleaf, register.
const QEMU_WORDS: &[(u32, u32, Reg)] = &[
    (1, 0, Reg::Edx),
    (1, 0, Reg::Ecx),
    (7, 0, Reg::Ebx),
    (7, 0, Reg::Ecx),
    (7, 0, Reg::Edx),
    (7, 1, Reg::Eax),
    (0x8000_0001, 0, Reg::Edx),
    (0x8000_0001, 0, Reg::Ecx),
    (0x8000_0007, 0, Reg::Edx),
    (0x8000_0008, 0, Reg::Ebx),
    (0xc000_0001, 0, Reg::Edx),
    (0x4000_0001, 0, Reg::Eax),
    (0x4000_0001, 0, Reg::Edx),
    (0x8000_000a, 0, Reg::Edx),
    (0xd, 1, Reg::Eax),
    (6, 0, Reg::Eax),
];

/// Where QEMU lists a feature: by its feature word, then by bit; words QEMU 7.2 does not
/// have go last, by leaf.
fn word_order(f: &Feature) -> (usize, u32, u32, u8) {
    let word = QEMU_WORDS
        .iter()
        .position(|&(leaf, sub, reg)| (leaf, sub, reg) == (f.leaf, f.subleaf, f.reg))
        .unwrap_or(QEMU_WORDS.len());
    (word, f.leaf, f.subleaf, f.bit)
}

/// `query-cpu-definitions`: every model, in catalogue order.
pub fn definitions(host: &CpuidTable) -> Value {
    Value::Array(model::all().iter().map(|m| definition(m, host)).collect())
}

/// The two expansion types QEMU implements for x86.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expansion {
    /// `static`: `base` plus every property.
    Static,
    /// `full`: the model's own name plus every property.
    Full,
}

/// The feature named `name` in QEMU's or Linux's spelling.
fn feature(name: &str) -> Option<&'static Feature> {
    features::all()
        .iter()
        .find(|f| f.qemu_name == name)
        .or_else(|| features::by_name(name))
}

/// What `query-cpu-model-expansion` asks for.
#[derive(Debug, Clone)]
pub struct ExpansionRequest {
    /// `type`.
    pub kind: Expansion,
    /// `model.name`.
    pub model: &'static CpuModel,
    /// `model.props`: features turned on or off.
    pub changes: Vec<(&'static Feature, bool)>,
}

/// `query-cpu-model-expansion`'s arguments: the type and `model: {name, props}`.
pub fn expansion_request(args: &mut Args) -> Result<ExpansionRequest, QmpError> {
    let kind = match args.str("type")?.as_str() {
        "static" => Expansion::Static,
        "full" => Expansion::Full,
        other => {
            return Err(QmpError::generic(format!(
                "Parameter 'type' does not accept value '{other}'"
            )))
        }
    };
    let mut model_arg = Args::new(
        args.opt_object("model")?
            .ok_or_else(|| Args::missing("model"))?,
    );
    let name = model_arg.str("name")?;
    let props = model_arg.opt_object("props")?.unwrap_or_default();
    model_arg.finish()?;
    let m = model::find(&name)
        .ok_or_else(|| QmpError::generic(format!("CPU model '{name}' not found")))?;
    let mut changes = Vec::new();
    for (key, value) in props {
        let f = feature(&key).ok_or_else(|| {
            QmpError::generic(format!("Property '{}.{key}' not found", typename(&m.name)))
        })?;
        let on = value.as_bool().ok_or_else(|| {
            QmpError::generic(format!(
                "Invalid parameter type for '{key}', expected: boolean"
            ))
        })?;
        changes.push((f, on));
    }
    Ok(ExpansionRequest {
        kind,
        model: m,
        changes,
    })
}

/// The brand string of leaves 0x8000_0002..=0x8000_0004.
fn brand(table: &CpuidTable) -> String {
    let mut bytes = Vec::new();
    for leaf in 0x8000_0002u32..=0x8000_0004 {
        if let Some(r) = table.regs(CpuidKey::leaf(leaf)) {
            for reg in [r.eax, r.ebx, r.ecx, r.edx] {
                bytes.extend_from_slice(&reg.to_le_bytes());
            }
        }
    }
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).trim().to_owned()
}

/// QEMU's static properties of a CPU (family, model, stepping, model-id, vendor, levels)
/// and every named feature as a boolean, read from the CPUID `table` the CPU would have.
pub fn props(table: &CpuidTable) -> Map<String, Value> {
    let eax1 = table.regs(CpuidKey::leaf(1)).map_or(0, |r| r.eax);
    let base_family = (eax1 >> 8) & 0xf;
    let family = if base_family == 0xf {
        base_family + ((eax1 >> 20) & 0xff)
    } else {
        base_family
    };
    let mut model_nr = (eax1 >> 4) & 0xf;
    if base_family == 6 || base_family == 0xf {
        model_nr |= ((eax1 >> 16) & 0xf) << 4;
    }
    let vendor = table
        .vendor()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default();
    let mut p = Map::new();
    p.insert("family".into(), json!(family));
    p.insert("model".into(), json!(model_nr));
    p.insert("stepping".into(), json!(eax1 & 0xf));
    p.insert("model-id".into(), json!(brand(table)));
    p.insert("vendor".into(), json!(vendor));
    let level = |leaf: u32| table.regs(CpuidKey::leaf(leaf)).map_or(0, |r| r.eax);
    p.insert("min-level".into(), json!(level(0)));
    p.insert("min-xlevel".into(), json!(level(0x8000_0000)));
    p.insert("lmce".into(), json!(false));
    for f in features::all() {
        p.insert(f.qemu_name.to_owned(), json!(f.is_set(table)));
    }
    p
}

/// `host` with every catalogue feature bit set: what the model asks for passes unfiltered.
fn unfiltered(host: &CpuidTable) -> CpuidTable {
    let mut t = host.clone();
    for f in features::all() {
        if t.get(f.key()).is_none() {
            t.insert(f.key(), cpuid_model::CpuidEntry::default());
        }
        f.set(&mut t, true);
    }
    t
}

/// `query-cpu-model-expansion`: the CPU the requested model describes (see the module
/// docs); `host` and `max` are this host's KVM CPU.
pub fn expand(request: ExpansionRequest, host: &CpuidTable) -> Result<Value, QmpError> {
    let ExpansionRequest {
        kind,
        model: m,
        changes,
    } = request;
    let mut spec = ModelSpec::new(m);
    spec.props = changes;
    let base = if m.is_passthrough() {
        host.clone()
    } else {
        unfiltered(host)
    };
    let resolved =
        check::resolve(&spec, &base).map_err(|e| QmpError::generic(crate::error_chain(&e)))?;
    let name = match kind {
        Expansion::Static => "base",
        Expansion::Full => m.name.as_str(),
    };
    Ok(json!({"model": {"name": name, "props": props(&resolved.table)}}))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use cpuid_model::{CpuidEntry, CpuidRegs};

    fn entry(regs: CpuidRegs) -> CpuidEntry {
        CpuidEntry {
            regs,
            indexed: false,
        }
    }

    /// A host table with every bit of the catalogue set except `lacking`.
    pub(crate) fn host_without(lacking: &[&str]) -> CpuidTable {
        let mut t = CpuidTable::new();
        let vendor = *b"GenuineIntel";
        let word = |i: usize| u32::from_le_bytes(vendor[i..i + 4].try_into().unwrap());
        let leaf0 = CpuidRegs {
            eax: 0xd,
            ebx: word(0),
            edx: word(4),
            ecx: word(8),
        };
        t.insert(CpuidKey::leaf(0), entry(leaf0));
        t.insert(
            CpuidKey::leaf(1),
            entry(CpuidRegs {
                eax: 0x000306c3,
                ..CpuidRegs::default()
            }),
        );
        t.insert(
            CpuidKey::leaf(0x8000_0000),
            entry(CpuidRegs {
                eax: 0x8000_0008,
                ..CpuidRegs::default()
            }),
        );
        for f in features::all() {
            if t.get(f.key()).is_none() {
                t.insert(f.key(), entry(CpuidRegs::default()));
            }
            f.set(&mut t, !lacking.contains(&f.qemu_name));
        }
        t
    }

    #[test]
    fn definitions_name_what_the_host_lacks() {
        let host = host_without(&["aes", "pclmulqdq"]);
        let defs = definitions(&host);
        let find = |name: &str| {
            defs.as_array()
                .unwrap()
                .iter()
                .find(|d| d["name"] == name)
                .unwrap_or_else(|| panic!("{name} missing"))
                .clone()
        };
        let westmere = find("Westmere-v1");
        assert_eq!(
            westmere["unavailable-features"],
            json!(["pclmulqdq", "aes"])
        );
        assert_eq!(westmere["typename"], "Westmere-v1-x86_64-cpu");
        assert_eq!(find("Westmere")["alias-of"], "Westmere-v1");
        assert_eq!(find("qemu64")["unavailable-features"], json!([]));
        let host_model = find("host");
        assert_eq!(host_model["migration-safe"], false);
        assert_eq!(host_model["unavailable-features"], json!([]));
        assert_eq!(find("base")["static"], true);
        assert_eq!(westmere["static"], false);
        assert_eq!(westmere["deprecated"], false);
    }

    #[test]
    fn expansion_is_the_model_before_the_host_filter() {
        let host = host_without(&["aes"]);
        let m = model::find("Westmere").unwrap();
        let out = expand(
            ExpansionRequest {
                kind: Expansion::Static,
                model: m,
                changes: Vec::new(),
            },
            &host,
        )
        .unwrap();
        assert_eq!(out["model"]["name"], "base");
        let p = &out["model"]["props"];
        assert_eq!(p["sse4.2"], true);
        assert_eq!(p["aes"], true, "QEMU expands before filtering");
        assert_eq!(p["avx"], false, "Westmere has no AVX");
        assert_eq!(p["family"], 6);
        assert_eq!(p["vendor"], "GenuineIntel");
        let sse42 = feature("sse4.2").unwrap();
        let out = expand(
            ExpansionRequest {
                kind: Expansion::Full,
                model: m,
                changes: vec![(sse42, false)],
            },
            &host,
        )
        .unwrap();
        assert_eq!(out["model"]["name"], "Westmere");
        assert_eq!(out["model"]["props"]["sse4.2"], false);
    }
}

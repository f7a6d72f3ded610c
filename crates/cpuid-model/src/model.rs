//! Named CPU models (QEMU's `-cpu` models) as data.
//!
//! Each model is one JSON file in `crates/cpuid-model/models/`, embedded at
//! build time; a file is parsed when its model is first looked up ([`find`]),
//! and every file when [`all`] is first called. A model names the vendor it was defined
//! for, its family/model/stepping, the brand string (`model_id`), the minimum
//! basic and extended leaf levels, and its feature list, using names from the
//! [`features`](mod@crate::features) catalogue. The feature lists follow QEMU's
//! version-1 definitions of the same models (`target/i386/cpu.c`).
//!
//! JSON was chosen because `serde_json` is already a dependency; levels are
//! written as hex strings (`"0x8000001e"`) since JSON has no hex literals.
//!
//! Two special models are built in rather than read from files: `host` (pass
//! everything KVM supports through) and `max` (the same under KVM, as in QEMU).
//!
//! A file that fails to parse or names an unknown feature is left out of
//! [`all`] and reported by [`data_errors`]; the crate's tests assert that list
//! is empty, so a broken data file fails CI instead of panicking at run time.

use std::fmt;
use std::sync::OnceLock;

use serde::Deserialize;
use thiserror::Error;

use crate::features::{self, Feature};
use crate::table::CpuidTable;

/// Embedded model files, oldest generation first within each vendor. The order
/// is the tie-break "newer" order used by [`crate::baseline`].
const MODEL_FILES: &[(&str, &str)] = &[
    ("qemu32.json", include_str!("../models/qemu32.json")),
    ("kvm32.json", include_str!("../models/kvm32.json")),
    ("qemu64.json", include_str!("../models/qemu64.json")),
    ("kvm64.json", include_str!("../models/kvm64.json")),
    ("Nehalem.json", include_str!("../models/Nehalem.json")),
    ("Westmere.json", include_str!("../models/Westmere.json")),
    (
        "SandyBridge.json",
        include_str!("../models/SandyBridge.json"),
    ),
    ("IvyBridge.json", include_str!("../models/IvyBridge.json")),
    ("Haswell.json", include_str!("../models/Haswell.json")),
    ("Broadwell.json", include_str!("../models/Broadwell.json")),
    (
        "Skylake-Client.json",
        include_str!("../models/Skylake-Client.json"),
    ),
    (
        "Skylake-Server.json",
        include_str!("../models/Skylake-Server.json"),
    ),
    (
        "Cascadelake-Server.json",
        include_str!("../models/Cascadelake-Server.json"),
    ),
    (
        "Icelake-Server.json",
        include_str!("../models/Icelake-Server.json"),
    ),
    ("EPYC.json", include_str!("../models/EPYC.json")),
    ("EPYC-Rome.json", include_str!("../models/EPYC-Rome.json")),
    ("EPYC-Milan.json", include_str!("../models/EPYC-Milan.json")),
    ("EPYC-Genoa.json", include_str!("../models/EPYC-Genoa.json")),
];

/// A CPU vendor, as named by the 12-byte string of CPUID leaf 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum Vendor {
    /// `GenuineIntel`.
    #[serde(rename = "GenuineIntel")]
    Intel,
    /// `AuthenticAMD`.
    #[serde(rename = "AuthenticAMD")]
    Amd,
    /// `HygonGenuine` (AMD-derived; treated like AMD for CPUID layout).
    #[serde(rename = "HygonGenuine")]
    Hygon,
}

impl Vendor {
    /// The 12-byte vendor string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Vendor::Intel => "GenuineIntel",
            Vendor::Amd => "AuthenticAMD",
            Vendor::Hygon => "HygonGenuine",
        }
    }

    /// Parse a vendor string; `None` for vendors this crate has no models for.
    pub fn from_bytes(v: &[u8; 12]) -> Option<Vendor> {
        [Vendor::Intel, Vendor::Amd, Vendor::Hygon]
            .into_iter()
            .find(|x| x.as_str().as_bytes() == v)
    }

    /// The vendor of a CPUID table (leaf 0), if present and known.
    pub fn of_table(table: &CpuidTable) -> Option<Vendor> {
        table.vendor().and_then(|v| Vendor::from_bytes(&v))
    }

    /// True for AMD and AMD-derived vendors (extended leaves in AMD layout).
    pub const fn is_amd_like(self) -> bool {
        matches!(self, Vendor::Amd | Vendor::Hygon)
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of model this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// A named model with a fixed feature list.
    Named,
    /// `host`: everything KVM supports, host identity.
    Host,
    /// `max`: the same as `host` under KVM.
    Max,
}

/// One CPU model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuModel {
    /// Model name as used on the command line (`Haswell`, `EPYC-Rome`).
    pub name: String,
    /// Vendor the model was defined for; `None` for `host` / `max`.
    pub vendor: Option<Vendor>,
    /// Display family (e.g. 6, 23, 25).
    pub family: u32,
    /// Display model (e.g. 60, 49).
    pub model: u32,
    /// Stepping, 0..=15.
    pub stepping: u32,
    /// Brand string for leaves 0x8000_0002..=0x8000_0004 (at most 48 bytes).
    pub model_id: String,
    /// Minimum maximum basic leaf (leaf 0 EAX).
    pub level: u32,
    /// Minimum maximum extended leaf (leaf 0x8000_0000 EAX).
    pub xlevel: u32,
    /// One-line description for `--cpu help`.
    pub description: String,
    /// Features the model enables, from the catalogue.
    pub features: Vec<&'static Feature>,
    /// Named, host or max.
    pub kind: ModelKind,
}

impl CpuModel {
    /// True for `host` and `max`, which take the host's table as it is.
    pub fn is_passthrough(&self) -> bool {
        self.kind != ModelKind::Named
    }

    /// True when the model enables `feature`.
    pub fn has(&self, feature: &Feature) -> bool {
        self.features.iter().any(|f| f.name == feature.name)
    }
}

/// Why an embedded model file was rejected.
#[derive(Debug, Error)]
pub enum ModelDataError {
    /// The JSON did not parse.
    #[error("model file {file}: invalid JSON")]
    Json {
        /// File name under `models/`.
        file: &'static str,
        /// Parser error.
        #[source]
        source: serde_json::Error,
    },
    /// A feature name is not in the catalogue.
    #[error("model file {file}: unknown feature '{feature}'")]
    UnknownFeature {
        /// File name under `models/`.
        file: &'static str,
        /// The unknown name.
        feature: String,
    },
    /// A level is not a hex number or is out of range.
    #[error("model file {file}: invalid level '{value}'")]
    BadLevel {
        /// File name under `models/`.
        file: &'static str,
        /// The rejected value.
        value: String,
    },
    /// A field is out of range (family > 0x10e, model > 0xff, stepping > 0xf,
    /// model id longer than 48 bytes).
    #[error("model file {file}: field '{field}' out of range")]
    OutOfRange {
        /// File name under `models/`.
        file: &'static str,
        /// Field name.
        field: &'static str,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFile {
    name: String,
    vendor: Vendor,
    family: u32,
    model: u32,
    stepping: u32,
    level: String,
    xlevel: String,
    model_id: String,
    description: String,
    features: Vec<String>,
}

fn parse_hex(file: &'static str, s: &str) -> Result<u32, ModelDataError> {
    s.strip_prefix("0x")
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| ModelDataError::BadLevel {
            file,
            value: s.to_string(),
        })
}

fn parse_model(file: &'static str, text: &str) -> Result<CpuModel, ModelDataError> {
    let m: ModelFile =
        serde_json::from_str(text).map_err(|source| ModelDataError::Json { file, source })?;
    let out_of_range = |field| ModelDataError::OutOfRange { file, field };
    if m.family > 0xff + 0xf {
        return Err(out_of_range("family"));
    }
    if m.model > 0xff {
        return Err(out_of_range("model"));
    }
    if m.stepping > 0xf {
        return Err(out_of_range("stepping"));
    }
    if m.model_id.len() > 48 {
        return Err(out_of_range("model_id"));
    }
    let features = m
        .features
        .iter()
        .map(|n| {
            features::by_name(n).ok_or_else(|| ModelDataError::UnknownFeature {
                file,
                feature: n.clone(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CpuModel {
        level: parse_hex(file, &m.level)?,
        xlevel: parse_hex(file, &m.xlevel)?,
        name: m.name,
        vendor: Some(m.vendor),
        family: m.family,
        model: m.model,
        stepping: m.stepping,
        model_id: m.model_id,
        description: m.description,
        features,
        kind: ModelKind::Named,
    })
}

fn passthrough(name: &str, kind: ModelKind, description: &str) -> CpuModel {
    CpuModel {
        name: name.to_string(),
        vendor: None,
        family: 0,
        model: 0,
        stepping: 0,
        model_id: String::new(),
        level: 0,
        xlevel: 0,
        description: description.to_string(),
        features: Vec::new(),
        kind,
    }
}

struct Database {
    models: Vec<CpuModel>,
    errors: Vec<ModelDataError>,
}

fn database() -> &'static Database {
    static DB: OnceLock<Database> = OnceLock::new();
    DB.get_or_init(|| {
        let mut models = Vec::new();
        let mut errors = Vec::new();
        for (file, text) in MODEL_FILES {
            match parse_model(file, text) {
                Ok(m) => models.push(m),
                Err(e) => errors.push(e),
            }
        }
        for m in passthrough_models() {
            models.push(passthrough(m.name.as_str(), m.kind, &m.description));
        }
        Database { models, errors }
    })
}

/// Every model: the named ones in data-file order (older first), then `host`
/// and `max`.
pub fn all() -> &'static [CpuModel] {
    &database().models
}

/// Problems found in the embedded model files (empty in a correct build).
pub fn data_errors() -> &'static [ModelDataError] {
    &database().errors
}

/// The model with exactly this name (model names are case-sensitive, as in
/// QEMU).
///
/// Parses only the file of the model asked for (`<name>.json`), so a VM start
/// pays for one model, not for all of them; [`all`] parses every file.
pub fn find(name: &str) -> Option<&'static CpuModel> {
    if let Some(m) = passthrough_models().iter().find(|m| m.name == name) {
        return Some(m);
    }
    let i = MODEL_FILES
        .iter()
        .position(|(file, _)| file.strip_suffix(".json") == Some(name))?;
    one_model(i).as_ref().ok().filter(|m| m.name == name)
}

/// The embedded file `MODEL_FILES[i]`, parsed on first use.
fn one_model(i: usize) -> &'static Result<CpuModel, ModelDataError> {
    static PARSED: [OnceLock<Result<CpuModel, ModelDataError>>; MODEL_FILES.len()] =
        [const { OnceLock::new() }; MODEL_FILES.len()];
    let (file, text) = MODEL_FILES[i];
    PARSED[i].get_or_init(|| parse_model(file, text))
}

/// `host` and `max`, which need no parsing.
fn passthrough_models() -> &'static [CpuModel; 2] {
    static MODELS: OnceLock<[CpuModel; 2]> = OnceLock::new();
    MODELS.get_or_init(|| {
        [
            passthrough(
                "host",
                ModelKind::Host,
                "KVM processor with all supported host features",
            ),
            passthrough(
                "max",
                ModelKind::Max,
                "Enables all features supported by the accelerator in the current host",
            ),
        ]
    })
}

/// A model whose name is close to `name` (case-insensitive match or a small
/// edit distance), for "did you mean" hints.
pub fn suggest(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    if let Some(m) = all().iter().find(|m| m.name.to_ascii_lowercase() == lower) {
        return Some(&m.name);
    }
    let limit = (lower.len() / 3).clamp(1, 3);
    all()
        .iter()
        .map(|m| {
            let d = features::edit_distance(&lower, &m.name.to_ascii_lowercase());
            (d, m.name.as_str())
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

/// The `--cpu help` text: one line per model (`x86 NAME VENDOR DESCRIPTION`),
/// then the recognised feature flags, sorted and wrapped as QEMU prints them.
pub fn help_text() -> String {
    let mut out = String::from("Available CPUs:\n");
    for m in all() {
        let vendor = m.vendor.map_or("(host)", Vendor::as_str);
        out.push_str(&format!(
            "x86 {:<20} {:<13} {}\n",
            m.name, vendor, m.description
        ));
    }
    out.push_str("\nRecognized CPUID flags:\n");
    let mut names: Vec<&str> = features::all().iter().map(|f| f.name).collect();
    names.sort_unstable();
    let mut line = String::new();
    for name in names {
        if !line.is_empty() && line.len() + name.len() + 1 >= 75 {
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        line.push_str(if line.is_empty() { "  " } else { " " });
        line.push_str(name);
    }
    if !line.is_empty() {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_models_parse_without_errors() {
        let errors: Vec<String> = data_errors().iter().map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(all().len(), MODEL_FILES.len() + 2);
    }

    #[test]
    fn find_parses_the_same_model_as_all() {
        for m in all() {
            let found = find(&m.name).unwrap();
            assert_eq!(found.name, m.name);
            assert_eq!(found.kind, m.kind);
            assert_eq!(
                (found.family, found.model, found.stepping),
                (m.family, m.model, m.stepping)
            );
            assert_eq!((found.level, found.xlevel), (m.level, m.xlevel));
            let names = |x: &CpuModel| x.features.iter().map(|f| f.name).collect::<Vec<_>>();
            assert_eq!(names(found), names(m), "{}", m.name);
        }
    }

    #[test]
    fn bad_model_files_are_rejected_with_the_reason() {
        let bad = r#"{"name":"X","vendor":"GenuineIntel","family":6,"model":1,"stepping":1,
            "level":"0xd","xlevel":"0x80000008","model_id":"x","description":"d",
            "features":["fpu","avx9"]}"#;
        let e = parse_model("x.json", bad).unwrap_err();
        assert_eq!(e.to_string(), "model file x.json: unknown feature 'avx9'");
        let bad = bad.replace("\"0xd\"", "\"13\"").replace("avx9", "avx");
        let e = parse_model("x.json", &bad).unwrap_err();
        assert_eq!(e.to_string(), "model file x.json: invalid level '13'");
        let e = parse_model("x.json", "{").unwrap_err();
        assert_eq!(e.to_string(), "model file x.json: invalid JSON");
    }

    #[test]
    fn model_lookup_is_exact_with_hints() {
        assert_eq!(find("Haswell").unwrap().family, 6);
        assert_eq!(find("host").unwrap().kind, ModelKind::Host);
        assert_eq!(find("max").unwrap().kind, ModelKind::Max);
        assert!(find("Haswell.json").is_none());
        assert!(find("haswell").is_none());
        assert_eq!(suggest("haswell"), Some("Haswell"));
        assert_eq!(suggest("Skylake-Srever"), Some("Skylake-Server"));
        assert_eq!(suggest("Pentium"), None);
    }
}

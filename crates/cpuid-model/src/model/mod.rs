//! Named CPU models (QEMU's `-cpu` models) as data: QEMU 7.2's whole x86 catalogue.
//!
//! Each model family is one JSON file in `crates/cpuid-model/models/`, embedded at build
//! time and parsed on first use: version 1 of the model (vendor, family/model/stepping,
//! brand string, levels, cache data, features) and each later version as changes to the
//! one before. Every name QEMU 7.2 accepts becomes one [`CpuModel`]: `NAME-vN` for each
//! version, the plain `NAME` (QEMU's alias rule for the pc machine: version 1) and the
//! named aliases (`Skylake-Server-IBRS` is `Skylake-Server-v2`). With `host`, `max` and
//! `base` that makes the 132 names `qemu-system-x86_64 -cpu help` lists, in the same
//! order, and [`help_text`] prints them the same way.
//!
//! The data matches QEMU's own definitions: `tests/qemu_models.rs` compares every model
//! with the `query-cpu-model-expansion` snapshot recorded by `scripts/qemu-cpu-models`.
//!
//! A file that fails to parse or names an unknown feature is left out of [`all`] and
//! reported by [`data_errors`]; the crate's tests assert that list is empty, so a broken
//! data file fails CI instead of panicking at run time.

mod data;

use std::fmt;
use std::sync::OnceLock;

use serde::Deserialize;
use thiserror::Error;

pub use data::{is_msr_feature, MSR_FEATURES};

use crate::cache::CacheModel;
use crate::features::{self, Feature};
use crate::table::CpuidTable;

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
    /// Vendor the model was defined for; `None` for `host`, `max` and `base`.
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
    /// The description `--cpu help` prints (QEMU's: the brand string and the version's
    /// note, or `(alias of ...)`).
    pub description: String,
    /// Features the model enables, from the catalogue.
    pub features: Vec<&'static Feature>,
    /// Named, host or max.
    pub kind: ModelKind,
    /// For an alias (`Skylake-Server`, `Skylake-Server-IBRS`): the versioned model it
    /// stands for (`Skylake-Server-v1`, `Skylake-Server-v2`).
    pub alias_of: Option<String>,
    /// The model version (`-vN`), for named models.
    pub version: Option<u32>,
    /// QEMU features of the model that are MSR bits, not CPUID bits (see
    /// [`MSR_FEATURES`]); recorded to match QEMU's definition, not applied.
    pub msr_features: Vec<String>,
    /// The model's cache data.
    pub cache: CacheModel,
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

fn special(name: &str, kind: ModelKind, description: &str) -> CpuModel {
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
        alias_of: None,
        version: None,
        msr_features: Vec::new(),
        cache: CacheModel::Legacy,
    }
}

struct Database {
    models: Vec<CpuModel>,
    errors: Vec<ModelDataError>,
}

static DB: OnceLock<Database> = OnceLock::new();

fn database() -> &'static Database {
    DB.get_or_init(|| {
        let mut models = Vec::new();
        let mut errors = Vec::new();
        for (file, text) in data::MODEL_FILES {
            match data::parse_family(file, text) {
                Ok(m) => models.extend(m),
                Err(e) => errors.push(e),
            }
        }
        // QEMU's order: the versioned models by name (byte order), then base, host, max.
        models.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        models.extend(specials().iter().cloned());
        Database { models, errors }
    })
}

/// Every model in `--cpu help` order: the named ones by name, then `base`, `host` and
/// `max`.
pub fn all() -> &'static [CpuModel] {
    &database().models
}

/// Problems found in the embedded model files (empty in a correct build).
pub fn data_errors() -> &'static [ModelDataError] {
    &database().errors
}

/// The model with exactly this name (model names are case-sensitive, as in QEMU).
///
/// Only the model's own family file is parsed (a VM start needs one model, not the
/// catalogue: parsing all of it costs milliseconds and pages of the binary).
pub fn find(name: &str) -> Option<&'static CpuModel> {
    if let Some(db) = DB.get() {
        return db.models.iter().find(|m| m.name == name);
    }
    if let Some(m) = specials().iter().find(|m| m.name == name) {
        return Some(m);
    }
    let index = family_index(name)?;
    let family = FAMILIES[index].get_or_init(|| {
        let (file, text) = data::MODEL_FILES[index];
        data::parse_family(file, text).unwrap_or_default()
    });
    family.iter().find(|m| m.name == name)
}

/// The family file that would define `name`: the longest family name that is `name`
/// itself or a prefix of it followed by `-` (`EPYC-Rome-v2` is EPYC-Rome's, `EPYC-IBPB`
/// is EPYC's).
fn family_index(name: &str) -> Option<usize> {
    data::MODEL_FILES
        .iter()
        .enumerate()
        .filter_map(|(i, (file, _))| {
            let family = file.strip_suffix(".json")?;
            let rest = name.strip_prefix(family)?;
            (rest.is_empty() || rest.starts_with('-')).then_some((family.len(), i))
        })
        .max()
        .map(|(_, i)| i)
}

/// Each family file's models, parsed on first use by [`find`].
static FAMILIES: [OnceLock<Vec<CpuModel>>; data::MODEL_FILES.len()] =
    [const { OnceLock::new() }; data::MODEL_FILES.len()];

/// `base`, `host` and `max`.
fn specials() -> &'static [CpuModel; 3] {
    static SPECIALS: OnceLock<[CpuModel; 3]> = OnceLock::new();
    SPECIALS.get_or_init(|| {
        [
            special(
                "base",
                ModelKind::Named,
                "base CPU model type with no features enabled",
            ),
            special(
                "host",
                ModelKind::Host,
                "processor with all supported host features ",
            ),
            special(
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

/// The `--cpu help` text as QEMU 7.2 prints it: `Available CPUs:`, one line per model
/// (`x86 NAME  DESCRIPTION`, the name padded to 20 columns), then the recognised
/// feature flags (QEMU spellings), sorted and wrapped.
pub fn help_text() -> String {
    let mut out = String::from("Available CPUs:\n");
    for m in all() {
        out.push_str(&format!("x86 {:<20}  {}\n", m.name, m.description));
    }
    out.push_str("\nRecognized CPUID flags:\n");
    let mut names: Vec<&str> = features::all().iter().map(|f| f.qemu_name).collect();
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
        assert_eq!(all().len(), 132);
    }

    #[test]
    fn aliases_follow_qemus_rule() {
        let plain = find("Skylake-Server").unwrap();
        assert_eq!(plain.alias_of.as_deref(), Some("Skylake-Server-v1"));
        let v1 = find("Skylake-Server-v1").unwrap();
        assert_eq!(plain.features, v1.features);
        let ibrs = find("Skylake-Server-IBRS").unwrap();
        assert_eq!(ibrs.alias_of.as_deref(), Some("Skylake-Server-v2"));
        assert_eq!(ibrs.features, find("Skylake-Server-v2").unwrap().features);
        assert_eq!(ibrs.description, "(alias of Skylake-Server-v2)");
        assert_eq!(
            find("Cascadelake-Server-v2").unwrap().description,
            "Intel Xeon Processor (Cascadelake) [ARCH_CAPABILITIES]"
        );
    }

    #[test]
    fn bad_model_files_are_rejected_with_the_reason() {
        let bad = r#"{"name":"X","vendor":"GenuineIntel","family":6,"model":1,"stepping":1,
            "level":"0xd","xlevel":"0x80000008","model_id":"x","cache":"legacy",
            "features":["fpu","avx9"]}"#;
        let e = data::parse_family("x.json", bad).unwrap_err();
        assert_eq!(e.to_string(), "model file x.json: unknown feature 'avx9'");
        let bad = bad.replace("\"0xd\"", "\"13\"").replace("avx9", "avx");
        let e = data::parse_family("x.json", &bad).unwrap_err();
        assert_eq!(e.to_string(), "model file x.json: invalid level '13'");
        let e = data::parse_family("x.json", "{").unwrap_err();
        assert_eq!(e.to_string(), "model file x.json: invalid JSON");
    }

    #[test]
    fn find_parses_one_family_and_agrees_with_the_catalogue() {
        // Before the catalogue is built: every name resolves through its family file.
        let names = [
            "EPYC-Rome-v2",
            "EPYC-IBPB",
            "EPYC",
            "Skylake-Server-noTSX-IBRS",
            "qemu64",
            "Opteron_G5",
            "486-v1",
            "host",
            "max",
            "base",
        ];
        let early: Vec<_> = names.iter().map(|n| find(n).cloned()).collect();
        for m in all() {
            assert_eq!(find(&m.name), Some(m), "{}", m.name);
        }
        for (name, early) in names.iter().zip(early) {
            assert_eq!(early.as_ref(), find(name), "{name}");
            assert!(early.is_some(), "{name}");
        }
        assert_eq!(family_index("EPYC-Rome-v2"), family_index("EPYC-Rome"));
        assert_ne!(family_index("EPYC-Rome"), family_index("EPYC"));
        assert_eq!(family_index("Nosuch"), None);
    }

    #[test]
    fn model_lookup_is_exact_with_hints() {
        assert_eq!(find("Haswell").unwrap().family, 6);
        assert_eq!(find("host").unwrap().kind, ModelKind::Host);
        assert_eq!(find("max").unwrap().kind, ModelKind::Max);
        assert!(find("Haswell.json").is_none());
        assert!(find("haswell").is_none());
        assert!(find("Haswell-v5").is_none());
        assert_eq!(suggest("haswell"), Some("Haswell"));
        assert_eq!(suggest("Skylake-Srever"), Some("Skylake-Server"));
        assert_eq!(suggest("Pentium"), Some("pentium"));
    }
}

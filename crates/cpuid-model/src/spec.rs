//! The CPU model spec grammar, as QEMU's `-cpu` option takes it:
//!
//! ```text
//! MODEL[,+FEAT][,-FEAT][,FEAT][,FEAT=on|off][,enforce[=on|off]][,check[=on|off]]
//! ```
//!
//! - `MODEL` is a model name from [`crate::model`] (case-sensitive, as in QEMU).
//! - `+FEAT` / `-FEAT` is QEMU's legacy form; `FEAT=on|off` the property form;
//!   a bare `FEAT` means `FEAT=on`. `on|off` also accept `yes|no|true|false`.
//!   Feature names are looked up with [`crate::features::by_name`], so Linux
//!   and QEMU spellings both work (`sse4_2`, `sse4.2`, `lahf-lm`).
//! - `enforce`: fail when the host lacks a requested feature (QEMU `enforce`,
//!   libvirt `check='full'`/fallback forbid). Off by default.
//! - `check`: warn about features the host lacks. On by default, as in QEMU;
//!   `check=off` silences those warnings.
//! - Empty items (`Haswell,,+avx,`) are skipped, as QEMU's parser does.
//! - Model options, as QEMU's properties of the same names: `phys-bits=N` (32 to 52;
//!   named models default to 40), `host-phys-bits=on|off` (take the host's physical
//!   address width), `host-phys-bits-limit=N` (32 to 52: cap it), `l3-cache=on|off`
//!   (describe the L3 cache; on by default).
//!
//! Precedence, matching QEMU (`x86_cpu_parse_featurestr` and
//! `x86_cpu_expand_features`): property forms apply first, the last one per
//! feature winning; then every `+FEAT` turns its feature on; then every `-FEAT`
//! turns it off. So `-` beats `+` beats `FEAT=on|off`, whatever the order on the
//! command line. Mixing the two forms for one feature is reported by
//! [`ModelSpec::ambiguities`] (QEMU warns "Ambiguous CPU model string").
//!
//! ```
//! let s = cpuid_model::spec::parse("Haswell,-hle,-rtm,sse4.2=on,enforce").unwrap();
//! assert_eq!(s.model.name, "Haswell");
//! assert_eq!(s.to_string(), "Haswell,-hle,-rtm,sse4_2=on,enforce");
//! assert_eq!(s.to_qemu_string(), "Haswell,-hle,-rtm,sse4.2=on,enforce");
//!
//! let err = cpuid_model::spec::parse("Haswell,+avx3").unwrap_err();
//! assert_eq!(err.to_string(), "unknown CPU feature 'avx3' (did you mean 'avx'?)");
//! ```

use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;

use crate::features::{self, Feature};
use crate::model::{self, CpuModel};

/// A parsed `-cpu` spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// The selected model.
    pub model: &'static CpuModel,
    /// `+FEAT` items, in command-line order.
    pub plus: Vec<&'static Feature>,
    /// `-FEAT` items, in command-line order.
    pub minus: Vec<&'static Feature>,
    /// `FEAT=on|off` and bare `FEAT` items, in command-line order.
    pub props: Vec<(&'static Feature, bool)>,
    /// Fail when the host lacks a requested feature.
    pub enforce: bool,
    /// Warn when the host lacks a requested feature (default on).
    pub check: bool,
    /// Address-size options.
    pub phys_bits: PhysBits,
    /// Describe the L3 cache (QEMU `l3-cache`, default on).
    pub l3_cache: bool,
}

/// Where the guest's physical address width (0x8000_0008 `EAX[7:0]`) comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PhysBits {
    /// `phys-bits=N`: this width (32 to 52). `None`: the default (40 for named models).
    pub bits: Option<u32>,
    /// `host-phys-bits=on`: the host's width, overriding `bits`.
    pub host: bool,
    /// `host-phys-bits-limit=N`: cap on the host's width.
    pub host_limit: Option<u32>,
}

/// Smallest and largest accepted `phys-bits` and `host-phys-bits-limit` (QEMU's range).
pub const PHYS_BITS_RANGE: std::ops::RangeInclusive<u32> = 32..=52;

/// Why a spec did not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    /// The model part is empty.
    #[error("missing CPU model name; use --cpu help to list models")]
    MissingModel,
    /// The model name is not known.
    #[error("unknown CPU model '{name}'{}; use --cpu help to list models", hint(.suggestion))]
    UnknownModel {
        /// The name given.
        name: String,
        /// A close known name.
        suggestion: Option<&'static str>,
    },
    /// A feature name is not in the catalogue.
    #[error("unknown CPU feature '{name}'{}", hint(.suggestion))]
    UnknownFeature {
        /// The name given.
        name: String,
        /// A close known name.
        suggestion: Option<&'static str>,
    },
    /// `+` or `-` with nothing after it, or `=on` with no name before it.
    #[error("missing feature name in '{item}'")]
    MissingFeatureName {
        /// The offending item.
        item: String,
    },
    /// A value other than on/off.
    #[error("invalid value '{value}' for '{name}': expected on or off")]
    BadValue {
        /// Feature or flag name.
        name: String,
        /// The value given.
        value: String,
    },
    /// `+FEAT=...` or `-FEAT=...`.
    #[error("invalid item '{item}': use '{sign}{name}' or '{name}=on|off'")]
    SignWithValue {
        /// The offending item.
        item: String,
        /// `+` or `-`.
        sign: char,
        /// The feature part.
        name: String,
    },
    /// A number option out of range or not a number.
    #[error("invalid value '{value}' for '{name}': expected a number from {min} to {max}")]
    BadNumber {
        /// Option name.
        name: String,
        /// The value given.
        value: String,
        /// Smallest accepted value.
        min: u32,
        /// Largest accepted value.
        max: u32,
    },
    /// An option that needs a value was given without one.
    #[error("missing value for '{name}'")]
    MissingValue {
        /// Option name.
        name: String,
    },
    /// A QEMU CPU property that is not a feature flag.
    #[error("CPU property '{name}' is not supported; only feature flags, enforce, check, phys-bits, host-phys-bits, host-phys-bits-limit and l3-cache are")]
    UnsupportedProperty {
        /// The property name.
        name: String,
    },
}

fn hint(s: &Option<&'static str>) -> String {
    s.map(|s| format!(" (did you mean '{s}'?)"))
        .unwrap_or_default()
}

/// One feature mentioned in both the `+/-` and the `=on|off` form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ambiguity {
    /// The feature.
    pub feature: &'static Feature,
    /// The sign of the legacy form that wins (`'+'` or `'-'`).
    pub sign: char,
    /// The property value that lost.
    pub value: bool,
}

impl fmt::Display for Ambiguity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ambiguous CPU model string: don't mix both \"{s}{n}\" and \"{n}={v}\" ({s}{n} wins)",
            s = self.sign,
            n = self.feature.name,
            v = on_off(self.value),
        )
    }
}

fn on_off(v: bool) -> &'static str {
    if v {
        "on"
    } else {
        "off"
    }
}

/// QEMU x86 CPU properties that are not CPUID feature flags. Naming them gives
/// a clearer error than "unknown CPU feature".
const NON_FEATURE_PROPERTIES: &[&str] = &[
    "family",
    "model",
    "stepping",
    "model-id",
    "vendor",
    "level",
    "xlevel",
    "min-level",
    "min-xlevel",
    "tsc-freq",
    "tsc-frequency",
    "pmu",
    "migratable",
    "host-cache-info",
    "kvm",
];

fn parse_bool(name: &str, value: &str) -> Result<bool, SpecError> {
    match value.to_ascii_lowercase().as_str() {
        "on" | "yes" | "true" => Ok(true),
        "off" | "no" | "false" => Ok(false),
        _ => Err(SpecError::BadValue {
            name: name.to_string(),
            value: value.to_string(),
        }),
    }
}

fn lookup_feature(name: &str, item: &str) -> Result<&'static Feature, SpecError> {
    if name.is_empty() {
        return Err(SpecError::MissingFeatureName {
            item: item.to_string(),
        });
    }
    if let Some(f) = features::by_name(name) {
        return Ok(f);
    }
    let lower = name.to_ascii_lowercase().replace('_', "-");
    if NON_FEATURE_PROPERTIES.contains(&lower.as_str()) || lower.starts_with("hv-") {
        return Err(SpecError::UnsupportedProperty {
            name: name.to_string(),
        });
    }
    Err(SpecError::UnknownFeature {
        name: name.to_string(),
        suggestion: features::suggest(name),
    })
}

/// Parse a `-cpu` spec string.
pub fn parse(s: &str) -> Result<ModelSpec, SpecError> {
    let mut items = s.split(',');
    let name = items.next().unwrap_or_default();
    if name.is_empty() {
        return Err(SpecError::MissingModel);
    }
    let model = model::find(name).ok_or_else(|| SpecError::UnknownModel {
        name: name.to_string(),
        suggestion: model::suggest(name),
    })?;
    let mut spec = ModelSpec::new(model);
    for item in items.filter(|i| !i.is_empty()) {
        if let Some(rest) = item.strip_prefix(['+', '-']) {
            let sign = if item.starts_with('+') { '+' } else { '-' };
            if let Some((name, _)) = rest.split_once('=') {
                return Err(SpecError::SignWithValue {
                    item: item.to_string(),
                    sign,
                    name: name.to_string(),
                });
            }
            let f = lookup_feature(rest, item)?;
            if sign == '+' {
                spec.plus.push(f);
            } else {
                spec.minus.push(f);
            }
            continue;
        }
        let (key, value) = match item.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (item, None),
        };
        if parse_option(&mut spec, key, value)? {
            continue;
        }
        let feature = match key {
            "enforce" | "check" => None,
            _ => Some(lookup_feature(key, item)?),
        };
        let on = match value {
            Some(v) => parse_bool(key, v)?,
            None => true,
        };
        match feature {
            Some(f) => spec.props.push((f, on)),
            None if key == "enforce" => spec.enforce = on,
            None => spec.check = on,
        }
    }
    Ok(spec)
}

/// The model options (`phys-bits`, `host-phys-bits`, `host-phys-bits-limit`,
/// `l3-cache`): applies one to `spec` and returns true, or false for other keys.
fn parse_option(spec: &mut ModelSpec, key: &str, value: Option<&str>) -> Result<bool, SpecError> {
    let number = |v: Option<&str>| {
        let v = v.ok_or_else(|| SpecError::MissingValue {
            name: key.to_string(),
        })?;
        v.parse::<u32>()
            .ok()
            .filter(|n| PHYS_BITS_RANGE.contains(n))
            .ok_or_else(|| SpecError::BadNumber {
                name: key.to_string(),
                value: v.to_string(),
                min: *PHYS_BITS_RANGE.start(),
                max: *PHYS_BITS_RANGE.end(),
            })
    };
    let flag = |v: Option<&str>| v.map_or(Ok(true), |v| parse_bool(key, v));
    match key {
        "phys-bits" => spec.phys_bits.bits = Some(number(value)?),
        "host-phys-bits-limit" => spec.phys_bits.host_limit = Some(number(value)?),
        "host-phys-bits" => spec.phys_bits.host = flag(value)?,
        "l3-cache" => spec.l3_cache = flag(value)?,
        _ => return Ok(false),
    }
    Ok(true)
}

impl ModelSpec {
    /// A spec for `model` with no feature changes and default flags.
    pub fn new(model: &'static CpuModel) -> Self {
        Self {
            model,
            plus: Vec::new(),
            minus: Vec::new(),
            props: Vec::new(),
            enforce: false,
            check: true,
            phys_bits: PhysBits::default(),
            l3_cache: true,
        }
    }

    /// The net feature requests after QEMU's precedence rules: for each
    /// mentioned feature, whether the spec turns it on or off. Keyed by
    /// canonical name.
    pub fn requested(&self) -> BTreeMap<&'static str, (&'static Feature, bool)> {
        let mut out = BTreeMap::new();
        for (f, on) in &self.props {
            out.insert(f.name, (*f, *on));
        }
        for f in &self.plus {
            out.insert(f.name, (*f, true));
        }
        for f in &self.minus {
            out.insert(f.name, (*f, false));
        }
        out
    }

    /// Features given both as `+/-FEAT` and as `FEAT=on|off`, where the
    /// property form loses (QEMU warns about these).
    pub fn ambiguities(&self) -> Vec<Ambiguity> {
        let mut out = Vec::new();
        for (f, value) in &self.props {
            let sign = if self.minus.iter().any(|m| m.name == f.name) {
                '-'
            } else if self.plus.iter().any(|p| p.name == f.name) {
                '+'
            } else {
                continue;
            };
            let a = Ambiguity {
                feature: f,
                sign,
                value: *value,
            };
            if !out.contains(&a) {
                out.push(a);
            }
        }
        out
    }

    /// The spec in QEMU's spelling (QEMU feature property names), e.g.
    /// `Skylake-Server,+avx512vnni,enforce`, ready for `qemu -cpu`.
    pub fn to_qemu_string(&self) -> String {
        self.render(|f| f.qemu_name)
    }

    fn render(&self, name: impl Fn(&Feature) -> &'static str) -> String {
        let mut s = self.model.name.clone();
        for f in &self.plus {
            s.push_str(",+");
            s.push_str(name(f));
        }
        for f in &self.minus {
            s.push_str(",-");
            s.push_str(name(f));
        }
        for (f, on) in &self.props {
            s.push(',');
            s.push_str(name(f));
            s.push('=');
            s.push_str(on_off(*on));
        }
        if let Some(n) = self.phys_bits.bits {
            s.push_str(&format!(",phys-bits={n}"));
        }
        if self.phys_bits.host {
            s.push_str(",host-phys-bits=on");
        }
        if let Some(n) = self.phys_bits.host_limit {
            s.push_str(&format!(",host-phys-bits-limit={n}"));
        }
        if !self.l3_cache {
            s.push_str(",l3-cache=off");
        }
        if self.enforce {
            s.push_str(",enforce");
        }
        if !self.check {
            s.push_str(",check=off");
        }
        s
    }
}

/// Canonical form: model, `+` items, `-` items, `FEAT=on|off` items (each
/// group in input order, canonical feature names), then the options that differ from
/// the defaults, `enforce` and `check=off` when set. Parsing the output gives back an equal spec.
impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(|f| f.name))
    }
}

impl std::str::FromStr for ModelSpec {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

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
//! - Identity, as QEMU's properties: `vendor=STR` (`GenuineIntel`, `AuthenticAMD` or
//!   `HygonGenuine`), `family=N` (0 to 270), `model=N` (0 to 255), `stepping=N`
//!   (0 to 15), `model-id=STR` (the brand string, at most 48 bytes). See [`Identity`].
//! - Levels, as QEMU's properties: `level=N` / `xlevel=N` (the highest basic /
//!   extended leaf, overriding the automatic level), `min-level=N` / `min-xlevel=N`
//!   (the floor the automatic level starts from, instead of the model's). See [`Levels`].
//!   Numbers are read as QEMU reads them: decimal, `0x` hex, or octal after a `0`.
//! - `kvm=on|off`: `off` hides the KVM signature and paravirtual leaves
//!   (0x4000_0000 and up); the leaf 1 `hypervisor` bit stays (`-hypervisor` clears it).
//! - `migratable=on|off`, `host` and `max` only (QEMU has the property on those models
//!   only): `on` (the default) leaves out the host features that block migration
//!   (`invtsc`), `off` passes them too.
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
use crate::model::{self, CpuModel, Vendor};

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
    /// Vendor, signature and brand string overrides.
    pub identity: Identity,
    /// Highest-leaf overrides.
    pub levels: Levels,
    /// Show the KVM signature and paravirtual leaves (QEMU `kvm`, default on).
    pub kvm: bool,
    /// `host` / `max`: leave out features that block migration (QEMU `migratable`,
    /// default on). Always true for named models.
    pub migratable: bool,
}

/// What the guest is told about the CPU itself, overriding the model (or, for `host`
/// and `max`, the host). `None` keeps the model's value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// `vendor=`: leaf 0 and 0x8000_0000 EBX/EDX/ECX; also picks the Intel or AMD
    /// layout of the vendor-specific leaves, as the vendor does everywhere in this crate.
    pub vendor: Option<Vendor>,
    /// `family=`: display family, 0 to 270 (0xF plus an 8-bit extended family).
    pub family: Option<u32>,
    /// `model=`: display model, 0 to 255.
    pub model: Option<u32>,
    /// `stepping=`: 0 to 15.
    pub stepping: Option<u32>,
    /// `model-id=`: brand string of leaves 0x8000_0002..=0x8000_0004, at most 48 bytes.
    pub model_id: Option<String>,
}

/// The highest basic and extended leaves, as QEMU's `level`, `xlevel`, `min-level` and
/// `min-xlevel` properties. The automatic level is the floor (the model's, or
/// `min-level`) raised to every requested feature's leaf; an explicit `level` replaces
/// it, and leaves above it are not given (an `xlevel` below 0x8000_0000: no extended
/// leaves at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Levels {
    /// `level=N`: leaf 0 EAX.
    pub level: Option<u32>,
    /// `xlevel=N`: leaf 0x8000_0000 EAX.
    pub xlevel: Option<u32>,
    /// `min-level=N`: the automatic basic level starts here instead of at the model's.
    pub min_level: Option<u32>,
    /// `min-xlevel=N`: the automatic extended level starts here instead of at the model's.
    pub min_xlevel: Option<u32>,
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
    #[error("CPU property '{name}' is not supported; only feature flags and enforce, check, phys-bits, host-phys-bits, host-phys-bits-limit, l3-cache, vendor, family, model, stepping, model-id, level, xlevel, min-level, min-xlevel, kvm and migratable are")]
    UnsupportedProperty {
        /// The property name.
        name: String,
    },
    /// A `vendor=` value this crate has no CPUID layout for.
    #[error("invalid value '{value}' for 'vendor': expected GenuineIntel, AuthenticAMD or HygonGenuine{}", hint(.suggestion))]
    BadVendor {
        /// The value given.
        value: String,
        /// The vendor the value most likely means.
        suggestion: Option<&'static str>,
    },
    /// A `model-id=` longer than the 48 bytes of the brand string leaves.
    #[error("invalid value '{value}' for 'model-id': the brand string holds at most 48 bytes, this is {len}")]
    ModelIdTooLong {
        /// The value given.
        value: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A property QEMU has on some models only.
    #[error("CPU property '{name}' applies to the host and max models only, not '{model}'")]
    PassthroughOnly {
        /// The property name.
        name: String,
        /// The model given.
        model: String,
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

/// QEMU x86 CPU properties that are not CPUID feature flags and are not taken. Naming
/// them gives a clearer error than "unknown CPU feature".
const NON_FEATURE_PROPERTIES: &[&str] = &[
    "tsc-freq",
    "tsc-frequency",
    "pmu",
    "host-cache-info",
    "level-func7",
    "xlevel2",
    "hv-passthrough",
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

/// An unsigned number as QEMU's property parser reads it (`strtoull` with base 0):
/// `0x` hex, octal after a leading `0`, else decimal.
fn parse_qemu_uint(v: &str) -> Option<u32> {
    let (digits, radix) = if let Some(h) = v.strip_prefix("0x").or(v.strip_prefix("0X")) {
        (h, 16)
    } else if v.len() > 1 && v.starts_with('0') {
        (&v[1..], 8)
    } else {
        (v, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

/// Largest `family=`: 0xF plus the 8-bit extended family.
pub const MAX_FAMILY: u32 = 0xf + 0xff;

/// The model options (`phys-bits`, `host-phys-bits`, `host-phys-bits-limit`,
/// `l3-cache`, identity, levels, `kvm`, `migratable`): applies one to `spec` and
/// returns true, or false for other keys.
fn parse_option(spec: &mut ModelSpec, key: &str, value: Option<&str>) -> Result<bool, SpecError> {
    let given = |v: Option<&str>| {
        v.map(str::to_string)
            .ok_or_else(|| SpecError::MissingValue {
                name: key.to_string(),
            })
    };
    let number = |v: Option<&str>, range: std::ops::RangeInclusive<u32>| {
        let v = given(v)?;
        parse_qemu_uint(&v)
            .filter(|n| range.contains(n))
            .ok_or_else(|| SpecError::BadNumber {
                name: key.to_string(),
                value: v,
                min: *range.start(),
                max: *range.end(),
            })
    };
    let flag = |v: Option<&str>| v.map_or(Ok(true), |v| parse_bool(key, v));
    let id = &mut spec.identity;
    let levels = &mut spec.levels;
    match key {
        "phys-bits" => spec.phys_bits.bits = Some(number(value, PHYS_BITS_RANGE)?),
        "host-phys-bits-limit" => spec.phys_bits.host_limit = Some(number(value, PHYS_BITS_RANGE)?),
        "host-phys-bits" => spec.phys_bits.host = flag(value)?,
        "l3-cache" => spec.l3_cache = flag(value)?,
        "vendor" => id.vendor = Some(parse_vendor(&given(value)?)?),
        "family" => id.family = Some(number(value, 0..=MAX_FAMILY)?),
        "model" => id.model = Some(number(value, 0..=0xff)?),
        "stepping" => id.stepping = Some(number(value, 0..=0xf)?),
        "model-id" => {
            let v = given(value)?;
            if v.len() > 48 {
                return Err(SpecError::ModelIdTooLong {
                    len: v.len(),
                    value: v,
                });
            }
            id.model_id = Some(v);
        }
        "level" => levels.level = Some(number(value, 0..=u32::MAX)?),
        "xlevel" => levels.xlevel = Some(number(value, 0..=u32::MAX)?),
        "min-level" => levels.min_level = Some(number(value, 0..=u32::MAX)?),
        "min-xlevel" => levels.min_xlevel = Some(number(value, 0..=u32::MAX)?),
        "kvm" => spec.kvm = flag(value)?,
        "migratable" => {
            let on = flag(value)?;
            if !spec.model.is_passthrough() {
                return Err(SpecError::PassthroughOnly {
                    name: key.to_string(),
                    model: spec.model.name.clone(),
                });
            }
            spec.migratable = on;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// A `vendor=` value: one of the three vendors this crate lays out CPUID for (QEMU
/// takes any 12 characters, but the vendor-specific leaves need a known layout).
fn parse_vendor(v: &str) -> Result<Vendor, SpecError> {
    let known = [Vendor::Intel, Vendor::Amd, Vendor::Hygon];
    if let Some(found) = known.into_iter().find(|k| k.as_str() == v) {
        return Ok(found);
    }
    let lower = v.to_ascii_lowercase();
    let suggestion = known
        .into_iter()
        .find(|k| {
            let name = k.as_str().to_ascii_lowercase();
            name == lower || (lower.len() >= 3 && (name.contains(&lower) || lower.contains(&name)))
        })
        .map(Vendor::as_str);
    Err(SpecError::BadVendor {
        value: v.to_string(),
        suggestion,
    })
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
            identity: Identity::default(),
            levels: Levels::default(),
            kvm: true,
            migratable: true,
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
        self.render_properties(&mut s);
        if self.enforce {
            s.push_str(",enforce");
        }
        if !self.check {
            s.push_str(",check=off");
        }
        s
    }
}

impl ModelSpec {
    /// The identity, level, `kvm` and `migratable` items that differ from the defaults.
    fn render_properties(&self, s: &mut String) {
        let id = &self.identity;
        if let Some(v) = id.vendor {
            s.push_str(&format!(",vendor={v}"));
        }
        let numbers = [
            ("family", id.family),
            ("model", id.model),
            ("stepping", id.stepping),
        ];
        for (name, value) in numbers {
            if let Some(n) = value {
                s.push_str(&format!(",{name}={n}"));
            }
        }
        if let Some(m) = &id.model_id {
            s.push_str(&format!(",model-id={m}"));
        }
        let l = &self.levels;
        let levels = [
            ("level", l.level),
            ("xlevel", l.xlevel),
            ("min-level", l.min_level),
            ("min-xlevel", l.min_xlevel),
        ];
        for (name, value) in levels {
            if let Some(n) = value {
                s.push_str(&format!(",{name}={n:#x}"));
            }
        }
        if !self.kvm {
            s.push_str(",kvm=off");
        }
        if !self.migratable {
            s.push_str(",migratable=off");
        }
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

//! Loading the embedded model files: one JSON file per model family (QEMU's version 1
//! plus its later versions as changes), expanded into one [`CpuModel`] per name QEMU
//! accepts: `NAME-vN` for every version, the plain `NAME` (version 1, QEMU's alias rule
//! for the pc machine) and the named aliases (`NAME-IBRS`, `NAME-noTSX`, ...).
//!
//! The file format is described in `models/README.md`.

use serde::Deserialize;

use super::{CpuModel, ModelDataError, ModelKind, Vendor};
use crate::cache::CacheModel;
use crate::features::{self, Feature};

/// The embedded model family files, one per file in `models/`.
pub(super) const MODEL_FILES: &[(&str, &str)] = &[
    ("486.json", include_str!("../../models/486.json")),
    (
        "Broadwell.json",
        include_str!("../../models/Broadwell.json"),
    ),
    (
        "Cascadelake-Server.json",
        include_str!("../../models/Cascadelake-Server.json"),
    ),
    ("Conroe.json", include_str!("../../models/Conroe.json")),
    (
        "Cooperlake.json",
        include_str!("../../models/Cooperlake.json"),
    ),
    (
        "Denverton.json",
        include_str!("../../models/Denverton.json"),
    ),
    ("Dhyana.json", include_str!("../../models/Dhyana.json")),
    (
        "EPYC-Milan.json",
        include_str!("../../models/EPYC-Milan.json"),
    ),
    (
        "EPYC-Rome.json",
        include_str!("../../models/EPYC-Rome.json"),
    ),
    ("EPYC.json", include_str!("../../models/EPYC.json")),
    ("Haswell.json", include_str!("../../models/Haswell.json")),
    (
        "Icelake-Server.json",
        include_str!("../../models/Icelake-Server.json"),
    ),
    (
        "IvyBridge.json",
        include_str!("../../models/IvyBridge.json"),
    ),
    (
        "KnightsMill.json",
        include_str!("../../models/KnightsMill.json"),
    ),
    ("Nehalem.json", include_str!("../../models/Nehalem.json")),
    (
        "Opteron_G1.json",
        include_str!("../../models/Opteron_G1.json"),
    ),
    (
        "Opteron_G2.json",
        include_str!("../../models/Opteron_G2.json"),
    ),
    (
        "Opteron_G3.json",
        include_str!("../../models/Opteron_G3.json"),
    ),
    (
        "Opteron_G4.json",
        include_str!("../../models/Opteron_G4.json"),
    ),
    (
        "Opteron_G5.json",
        include_str!("../../models/Opteron_G5.json"),
    ),
    ("Penryn.json", include_str!("../../models/Penryn.json")),
    (
        "SandyBridge.json",
        include_str!("../../models/SandyBridge.json"),
    ),
    (
        "Skylake-Client.json",
        include_str!("../../models/Skylake-Client.json"),
    ),
    (
        "Skylake-Server.json",
        include_str!("../../models/Skylake-Server.json"),
    ),
    (
        "Snowridge.json",
        include_str!("../../models/Snowridge.json"),
    ),
    ("Westmere.json", include_str!("../../models/Westmere.json")),
    ("athlon.json", include_str!("../../models/athlon.json")),
    ("core2duo.json", include_str!("../../models/core2duo.json")),
    ("coreduo.json", include_str!("../../models/coreduo.json")),
    ("kvm32.json", include_str!("../../models/kvm32.json")),
    ("kvm64.json", include_str!("../../models/kvm64.json")),
    ("n270.json", include_str!("../../models/n270.json")),
    ("pentium.json", include_str!("../../models/pentium.json")),
    ("pentium2.json", include_str!("../../models/pentium2.json")),
    ("pentium3.json", include_str!("../../models/pentium3.json")),
    ("phenom.json", include_str!("../../models/phenom.json")),
    ("qemu32.json", include_str!("../../models/qemu32.json")),
    ("qemu64.json", include_str!("../../models/qemu64.json")),
];

/// QEMU feature properties that are not CPUID bits: bits of the IA32_ARCH_CAPABILITIES,
/// IA32_CORE_CAPABILITIES and IA32_PERF_CAPABILITIES MSRs, and (prefix `vmx-`) the VMX
/// capability MSRs. Model files may list them; they are kept in
/// [`CpuModel::msr_features`] and change no CPUID value.
pub const MSR_FEATURES: &[&str] = &[
    "rdctl-no",
    "ibrs-all",
    "rsba",
    "skip-l1dfl-vmentry",
    "ssb-no",
    "mds-no",
    "pschange-mc-no",
    "tsx-ctrl",
    "taa-no",
    "split-lock-detect",
    "full-width-write",
];

/// True for a QEMU property name that is an MSR feature rather than a CPUID bit.
pub fn is_msr_feature(name: &str) -> bool {
    MSR_FEATURES.contains(&name) || name.starts_with("vmx-")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FamilyFile {
    name: String,
    vendor: Vendor,
    family: u32,
    model: u32,
    stepping: u32,
    level: String,
    xlevel: String,
    model_id: String,
    cache: CacheModel,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    features: Vec<String>,
    #[serde(default)]
    versions: Vec<VersionFile>,
}

/// Changes of one version against the version before it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionFile {
    version: u32,
    #[serde(default)]
    family: Option<u32>,
    #[serde(default)]
    model: Option<u32>,
    #[serde(default)]
    stepping: Option<u32>,
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    xlevel: Option<String>,
    #[serde(default)]
    model_id: Option<String>,
    #[serde(default)]
    vendor: Option<Vendor>,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
}

fn parse_hex(file: &'static str, s: &str) -> Result<u32, ModelDataError> {
    s.strip_prefix("0x")
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| ModelDataError::BadLevel {
            file,
            value: s.to_string(),
        })
}

/// A feature list being edited: CPUID features and MSR features, each in file order.
#[derive(Clone, Default)]
struct FeatureSet {
    cpuid: Vec<&'static Feature>,
    msr: Vec<String>,
}

impl FeatureSet {
    fn edit(&mut self, file: &'static str, name: &str, on: bool) -> Result<(), ModelDataError> {
        if is_msr_feature(name) {
            self.msr.retain(|n| n != name);
            if on {
                self.msr.push(name.to_string());
            }
            return Ok(());
        }
        let f = features::by_name(name).ok_or_else(|| ModelDataError::UnknownFeature {
            file,
            feature: name.to_string(),
        })?;
        self.cpuid.retain(|x| x.name != f.name);
        if on {
            self.cpuid.push(f);
        }
        Ok(())
    }
}

fn check_ranges(file: &'static str, m: &CpuModel) -> Result<(), ModelDataError> {
    let out_of_range = |field| Err(ModelDataError::OutOfRange { file, field });
    if m.family > 0xff + 0xf {
        return out_of_range("family");
    }
    if m.model > 0xff {
        return out_of_range("model");
    }
    if m.stepping > 0xf {
        return out_of_range("stepping");
    }
    if m.model_id.len() > 48 {
        return out_of_range("model_id");
    }
    Ok(())
}

fn describe(model_id: &str, note: Option<&str>) -> String {
    match note {
        Some(n) => format!("{model_id} [{n}]"),
        None => model_id.to_string(),
    }
}

fn alias(target: &CpuModel, name: &str, description: String) -> CpuModel {
    CpuModel {
        name: name.to_string(),
        alias_of: Some(target.name.clone()),
        description,
        ..target.clone()
    }
}

/// Parse one family file into its models: every version, the plain name and the aliases.
pub(super) fn parse_family(
    file: &'static str,
    text: &str,
) -> Result<Vec<CpuModel>, ModelDataError> {
    let f: FamilyFile =
        serde_json::from_str(text).map_err(|source| ModelDataError::Json { file, source })?;
    let mut set = FeatureSet::default();
    for name in &f.features {
        set.edit(file, name, true)?;
    }
    let mut current = CpuModel {
        name: format!("{}-v1", f.name),
        alias_of: None,
        version: Some(1),
        vendor: Some(f.vendor),
        family: f.family,
        model: f.model,
        stepping: f.stepping,
        model_id: f.model_id.clone(),
        level: parse_hex(file, &f.level)?,
        xlevel: parse_hex(file, &f.xlevel)?,
        description: describe(&f.model_id, f.note.as_deref()),
        features: set.cpuid.clone(),
        msr_features: set.msr.clone(),
        cache: f.cache,
        kind: ModelKind::Named,
    };
    check_ranges(file, &current)?;
    let mut out = vec![alias(
        &current,
        &f.name,
        "(alias configured by machine type)".to_string(),
    )];
    let mut aliases = f.aliases.clone();
    let mut versions = f.versions.iter().peekable();
    loop {
        for a in &aliases {
            out.push(alias(&current, a, format!("(alias of {})", current.name)));
        }
        out.push(current.clone());
        let Some(v) = versions.next() else { break };
        for name in &v.add {
            set.edit(file, name, true)?;
        }
        for name in &v.remove {
            set.edit(file, name, false)?;
        }
        current.name = format!("{}-v{}", f.name, v.version);
        current.version = Some(v.version);
        current.vendor = v.vendor.or(current.vendor);
        current.family = v.family.unwrap_or(current.family);
        current.model = v.model.unwrap_or(current.model);
        current.stepping = v.stepping.unwrap_or(current.stepping);
        if let Some(l) = &v.level {
            current.level = parse_hex(file, l)?;
        }
        if let Some(l) = &v.xlevel {
            current.xlevel = parse_hex(file, l)?;
        }
        if let Some(id) = &v.model_id {
            current.model_id = id.clone();
        }
        current.description = describe(&current.model_id, v.note.as_deref());
        current.features = set.cpuid.clone();
        current.msr_features = set.msr.clone();
        check_ranges(file, &current)?;
        aliases = v.aliases.clone();
    }
    Ok(out)
}

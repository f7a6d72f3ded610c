//! Resolve a [`ModelSpec`] against the host: the CPUID table KVM supports
//! (`KVM_GET_SUPPORTED_CPUID`, passed in as a [`CpuidTable`]) becomes the base
//! table of the guest.
//!
//! For a named model, starting from the supported table:
//! 1. Every catalogued feature bit is cleared unless the model (after the
//!    spec's `+/-` changes) enables it *and* the host supports it. Bits outside
//!    the catalogue keep the host's value.
//! 2. A requested feature the host lacks is dropped with a warning in QEMU's
//!    words (`host doesn't support requested feature: CPUID.07H:EBX.hle
//!    [bit 4]`), or, with `enforce`, the resolve fails listing all of them.
//! 3. Family/model/stepping (leaf 1 EAX, mirrored to 0x8000_0001 EAX on AMD),
//!    the brand string (0x8000_0002..=0x8000_0004) and the level limits
//!    (leaf 0 and 0x8000_0000 EAX) come from the model. Levels are raised to
//!    cover every enabled feature's leaf (as QEMU's automatic level does),
//!    capped at what the host supports; entries above the limits are removed.
//! 4. XSAVE state components whose feature is off are removed from leaf 0xD
//!    (XCR0 mask in 0xD.0 EAX, their 0xD.N subleaves, the size in 0xD.0 ECX).
//!
//! The vendor string stays the host's: KVM needs the guest vendor to match the
//! host for instruction emulation (QEMU does the same under KVM). A model
//! defined for the other vendor gets a warning.
//!
//! QEMU's KVM defaults apply to named models: `hypervisor` and `x2apic` are
//! turned on when the host supports them (silently otherwise), and `acpi`,
//! `monitor` and `svm` are turned off unless the spec asks for them.
//!
//! `host` and `max` return the supported table unchanged apart from the
//! spec's feature changes. Cache and topology leaves are left for the
//! per-vCPU normaliser.
//!
//! ```
//! use cpuid_model::{check, features, spec, CpuidEntry, CpuidKey, CpuidRegs, CpuidTable};
//!
//! // A tiny "supported" table: an AMD host with SSE2 and AVX only.
//! let mut host = CpuidTable::new();
//! let vendor = CpuidRegs {
//!     eax: 0xd,
//!     ebx: u32::from_le_bytes(*b"Auth"),
//!     edx: u32::from_le_bytes(*b"enti"),
//!     ecx: u32::from_le_bytes(*b"cAMD"),
//! };
//! host.insert(CpuidKey::leaf(0), CpuidEntry { regs: vendor, indexed: false });
//! host.insert(CpuidKey::leaf(1), CpuidEntry::default());
//! for name in ["sse2", "avx"] {
//!     features::by_name(name).unwrap().set(&mut host, true);
//! }
//!
//! let spec = spec::parse("qemu64,+avx,+avx2").unwrap();
//! let r = check::resolve(&spec, &host).unwrap();
//! assert!(features::by_name("avx").unwrap().is_set(&r.table));
//! assert!(r.warnings.iter().any(|w| w.to_string()
//!     == "host doesn't support requested feature: CPUID.07H:EBX.avx2 [bit 5]"));
//!
//! // With enforce, the same request fails and names every missing feature.
//! let err = check::resolve(&spec::parse("qemu64,+avx2,enforce").unwrap(), &host);
//! assert!(err.is_err());
//! ```

use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;

use crate::features::{self, Feature};
use crate::model::{CpuModel, Vendor};
use crate::spec::{Ambiguity, ModelSpec};
use crate::table::{CpuidEntry, CpuidKey, CpuidRegs, CpuidTable};

/// Features QEMU turns on for every named model under KVM (when supported).
pub const KVM_DEFAULT_ON: &[&str] = &["hypervisor", "x2apic"];
/// Features QEMU turns off for every named model under KVM unless asked for.
pub const KVM_DEFAULT_OFF: &[&str] = &["acpi", "monitor", "svm"];

/// Leaf 1 EDX bits that AMD repeats in 0x8000_0001 EDX (fpu..apic, mtrr..pse36,
/// mmx, fxsr).
const AMD_EDX_ALIASES: u32 = 0x0183_f3ff;

/// XSAVE state components (XCR0 bit) and the feature that enables each.
const XSAVE_COMPONENTS: &[(u32, &str)] = &[
    (2, "avx"),
    (3, "mpx"),
    (4, "mpx"),
    (5, "avx512f"),
    (6, "avx512f"),
    (7, "avx512f"),
    (9, "pku"),
    (17, "amx_tile"),
    (18, "amx_tile"),
];

/// A non-fatal finding of [`resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelWarning {
    /// A requested feature the host lacks; it was dropped.
    FeatureUnavailable(&'static Feature),
    /// The model was defined for another vendor than the host's.
    VendorMismatch {
        /// Model name.
        model: String,
        /// Vendor the model was defined for.
        model_vendor: Vendor,
        /// The host's vendor string (kept for the guest).
        host_vendor: String,
    },
    /// A feature given in both the `+/-` and the `=on|off` form.
    AmbiguousSpec(Ambiguity),
}

impl fmt::Display for ModelWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelWarning::FeatureUnavailable(feat) => write!(
                f,
                "host doesn't support requested feature: {}",
                describe(feat)
            ),
            ModelWarning::VendorMismatch {
                model,
                model_vendor,
                host_vendor,
            } => write!(
                f,
                "CPU model '{model}' is defined for {model_vendor}; \
                 the guest keeps the host vendor {host_vendor}"
            ),
            ModelWarning::AmbiguousSpec(a) => a.fmt(f),
        }
    }
}

fn describe(f: &Feature) -> String {
    format!("{}.{} [bit {}]", f.location(), f.name, f.bit)
}

/// Why [`resolve`] failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CheckError {
    /// The supported table has no leaf 0, so there is no vendor.
    #[error("host CPUID table has no leaf 0 (vendor)")]
    NoVendor,
    /// `enforce` was given and the host lacks requested features.
    #[error(
        "CPU model '{model}' with enforce: host doesn't support requested features: {}",
        .features.iter().map(|f| describe(f)).collect::<Vec<_>>().join(", ")
    )]
    MissingFeatures {
        /// Model name.
        model: String,
        /// Every requested feature the host lacks, in catalogue order.
        features: Vec<&'static Feature>,
    },
}

/// The guest base table and what had to give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The resolved model.
    pub model: &'static CpuModel,
    /// The guest's base CPUID table (before per-vCPU normalisation).
    pub table: CpuidTable,
    /// Findings, in order: vendor, ambiguous spec items, dropped features.
    pub warnings: Vec<ModelWarning>,
}

/// The features a named model needs from the host under QEMU's KVM defaults
/// (its list without [`KVM_DEFAULT_OFF`]). Empty for `host` / `max`.
pub fn required_features(model: &CpuModel) -> Vec<&'static Feature> {
    model
        .features
        .iter()
        .copied()
        .filter(|f| !KVM_DEFAULT_OFF.contains(&f.name))
        .collect()
}

/// The model's required features that `supported` lacks, in model order.
pub fn missing_features(model: &CpuModel, supported: &CpuidTable) -> Vec<&'static Feature> {
    required_features(model)
        .into_iter()
        .filter(|f| !f.is_set(supported))
        .collect()
}

/// Resolve `spec` against the host's supported table. See the module docs.
pub fn resolve(spec: &ModelSpec, supported: &CpuidTable) -> Result<Resolved, CheckError> {
    let host_vendor_bytes = supported.vendor().ok_or(CheckError::NoVendor)?;
    let host_vendor = Vendor::from_bytes(&host_vendor_bytes);
    let model = spec.model;
    let mut warnings = Vec::new();

    if let (Some(mv), false) = (model.vendor, model.vendor == host_vendor) {
        warnings.push(ModelWarning::VendorMismatch {
            model: model.name.clone(),
            model_vendor: mv,
            host_vendor: String::from_utf8_lossy(&host_vendor_bytes).into_owned(),
        });
    }
    warnings.extend(
        spec.ambiguities()
            .into_iter()
            .map(ModelWarning::AmbiguousSpec),
    );

    // Explicit: the model's list and the spec's "on" items; a missing one is
    // reported. Soft: KVM defaults, silently skipped when unsupported.
    let mut explicit: BTreeMap<&str, &'static Feature> = BTreeMap::new();
    let mut soft: BTreeMap<&str, &'static Feature> = BTreeMap::new();
    if !model.is_passthrough() {
        explicit.extend(required_features(model).into_iter().map(|f| (f.name, f)));
        soft.extend(
            KVM_DEFAULT_ON
                .iter()
                .filter_map(|n| features::by_name(n))
                .map(|f| (f.name, f)),
        );
    }
    let requested = spec.requested();
    for (name, (f, on)) in &requested {
        soft.remove(name);
        if *on {
            explicit.insert(name, f);
        } else {
            explicit.remove(name);
        }
    }

    let mut missing: Vec<&'static Feature> = features::all()
        .iter()
        .filter(|f| explicit.contains_key(f.name) && !f.is_set(supported))
        .collect();
    if spec.enforce && !missing.is_empty() {
        return Err(CheckError::MissingFeatures {
            model: model.name.clone(),
            features: missing,
        });
    }
    if spec.check {
        warnings.extend(missing.drain(..).map(ModelWarning::FeatureUnavailable));
    }

    let mut table = supported.clone();
    if model.is_passthrough() {
        for (f, on) in requested.values() {
            f.set(&mut table, *on && f.is_set(supported));
        }
    } else {
        for f in features::all() {
            let on = explicit.contains_key(f.name) || soft.contains_key(f.name);
            f.set(&mut table, on && f.is_set(supported));
        }
        if host_vendor.is_some_and(Vendor::is_amd_like) {
            mirror_amd_edx_aliases(&mut table, supported);
        }
        apply_identity(&mut table, model, host_vendor);
        apply_levels(&mut table, model, supported);
    }
    fix_xsave_components(&mut table);

    Ok(Resolved {
        model,
        table,
        warnings,
    })
}

fn mirror_amd_edx_aliases(table: &mut CpuidTable, supported: &CpuidTable) {
    let leaf1 = table.regs(CpuidKey::leaf(1)).map_or(0, |r| r.edx);
    let host = supported
        .regs(CpuidKey::leaf(0x8000_0001))
        .map_or(0, |r| r.edx);
    if let Some(e) = table.get_mut(CpuidKey::leaf(0x8000_0001)) {
        e.regs.edx = (e.regs.edx & !AMD_EDX_ALIASES) | (leaf1 & host & AMD_EDX_ALIASES);
    }
}

/// Leaf 1 EAX signature: stepping `[3:0]`, model `[7:4] + [19:16]`, family `[11:8]`
/// (0xF plus extended family `[27:20]` above 15).
pub fn encode_signature(family: u32, model: u32, stepping: u32) -> u32 {
    let (fam, ext_fam) = if family > 0xf {
        (0xf, (family - 0xf) & 0xff)
    } else {
        (family, 0)
    };
    (stepping & 0xf)
        | ((model & 0xf) << 4)
        | (fam << 8)
        | (((model >> 4) & 0xf) << 16)
        | (ext_fam << 20)
}

fn apply_identity(table: &mut CpuidTable, model: &CpuModel, vendor: Option<Vendor>) {
    let sig = encode_signature(model.family, model.model, model.stepping);
    if let Some(e) = table.get_mut(CpuidKey::leaf(1)) {
        e.regs.eax = sig;
    }
    if vendor.is_some_and(Vendor::is_amd_like) {
        if let Some(e) = table.get_mut(CpuidKey::leaf(0x8000_0001)) {
            e.regs.eax = sig;
        }
    }
    let mut brand = [0u8; 48];
    let id = model.model_id.as_bytes();
    let n = id.len().min(48);
    brand[..n].copy_from_slice(&id[..n]);
    for (i, chunk) in brand.chunks_exact(16).enumerate() {
        let word =
            |j: usize| u32::from_le_bytes([chunk[j], chunk[j + 1], chunk[j + 2], chunk[j + 3]]);
        let regs = CpuidRegs {
            eax: word(0),
            ebx: word(4),
            ecx: word(8),
            edx: word(12),
        };
        // i < 3, so the addition cannot overflow.
        let key = CpuidKey::leaf(0x8000_0002 + i as u32);
        table.insert(
            key,
            CpuidEntry {
                regs,
                indexed: false,
            },
        );
    }
}

fn apply_levels(table: &mut CpuidTable, model: &CpuModel, supported: &CpuidTable) {
    let host_level = supported.regs(CpuidKey::leaf(0)).map_or(0, |r| r.eax);
    let host_xlevel = supported
        .regs(CpuidKey::leaf(0x8000_0000))
        .map_or(0, |r| r.eax);
    let enabled = features::present_in(table);
    let need_level = enabled
        .iter()
        .map(|f| f.leaf)
        .filter(|l| *l < 0x4000_0000)
        .fold(model.level, u32::max);
    let need_xlevel = enabled
        .iter()
        .map(|f| f.leaf)
        .filter(|l| *l >= 0x8000_0000)
        .fold(model.xlevel.max(0x8000_0004), u32::max);
    let level = need_level.min(host_level);
    let xlevel = need_xlevel.min(host_xlevel);
    if let Some(e) = table.get_mut(CpuidKey::leaf(0)) {
        e.regs.eax = level;
    }
    if let Some(e) = table.get_mut(CpuidKey::leaf(0x8000_0000)) {
        e.regs.eax = xlevel;
    }
    table.retain(|k, _| match k.leaf {
        l if l < 0x4000_0000 => l <= level,
        l if (0x8000_0000..0x9000_0000).contains(&l) => xlevel >= 0x8000_0000 && l <= xlevel,
        _ => true,
    });
}

fn fix_xsave_components(table: &mut CpuidTable) {
    let xsave_on = features::by_name("xsave").is_some_and(|f| f.is_set(table));
    if !xsave_on {
        table.retain(|k, _| k.leaf != 0xd || k.subleaf < 2);
        for sub in 0..2 {
            if let Some(e) = table.get_mut(CpuidKey::subleaf(0xd, sub)) {
                e.regs = CpuidRegs::default();
            }
        }
        return;
    }
    let Some(host_xcr0) = table.regs(CpuidKey::subleaf(0xd, 0)).map(|r| r.eax) else {
        return;
    };
    let mut xcr0 = host_xcr0;
    for (bit, name) in XSAVE_COMPONENTS {
        let on = features::by_name(name).is_some_and(|f| f.is_set(table));
        if !on && xcr0 & (1 << bit) != 0 {
            xcr0 &= !(1 << bit);
            table.remove(CpuidKey::subleaf(0xd, *bit));
        }
    }
    if xcr0 == host_xcr0 {
        return;
    }
    // Largest end offset of the enabled user components (legacy area and
    // header are 576 bytes).
    let size = (2..32)
        .filter(|b| xcr0 & (1 << b) != 0)
        .filter_map(|b| table.regs(CpuidKey::subleaf(0xd, b)))
        .map(|r| r.ebx.saturating_add(r.eax))
        .fold(576, u32::max);
    if let Some(e) = table.get_mut(CpuidKey::subleaf(0xd, 0)) {
        e.regs.eax = xcr0;
        e.regs.ecx = size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_real_parts() {
        // Haswell 6/60/4 -> 0x000306c4; EPYC-Rome 23/49/0 -> 0x00830f10;
        // Zen 4 host in the fixture: family 0x19 model 0x11 stepping 1.
        assert_eq!(encode_signature(6, 60, 4), 0x0003_06c4);
        assert_eq!(encode_signature(23, 49, 0), 0x0083_0f10);
        assert_eq!(encode_signature(25, 0x11, 1), 0x00a1_0f11);
        assert_eq!(encode_signature(15, 107, 1), 0x0006_0fb1);
    }
}

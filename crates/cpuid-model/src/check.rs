//! Resolve a [`ModelSpec`] against the host: the CPUID table KVM supports
//! (`KVM_GET_SUPPORTED_CPUID`, passed in as a [`CpuidTable`]) decides which of the
//! model's features the guest gets; everything else comes from the model.
//!
//! For a named model:
//! 1. The features asked for are the model's list, QEMU's KVM defaults (`hypervisor`,
//!    `x2apic` and the paravirtual `kvmclock`, `kvm-nopiodelay`, `kvm-asyncpf`,
//!    `kvm-steal-time`, `kvm-pv-eoi`, `kvmclock-stable-bit` on when the host has them;
//!    `acpi`, `monitor` and `svm` off unless the spec asks for them) and the spec's `+/-`
//!    changes. With `kvm=off` the paravirtual features are not asked for at all.
//! 2. A requested feature the host lacks is dropped with a warning in QEMU's words
//!    (`host doesn't support requested feature: CPUID.07H:EBX.hle [bit 4]`), or, with
//!    `enforce`, the resolve fails listing all of them.
//! 3. The table is built from the model alone: the model's vendor,
//!    family/model/stepping, brand string, levels (raised to cover every requested
//!    feature, as QEMU's automatic level), caches (leaf 2, leaf 4, 0x8000_0005/6,
//!    0x8000_001D), XSAVE leaf 0xD for the enabled components only, physical address
//!    bits (40, `phys-bits=N`, or the host's with `host-phys-bits=on`) and zeros for every
//!    leaf the model does not describe. Only the hypervisor leaves (0x4000_00xx) are
//!    the host's, with leaf 0x4000_0001 EAX holding just the paravirtual features asked
//!    for, so two hosts that both have the model's features give the same table.
//!
//! `host` and `max` return the supported table unchanged apart from the spec's feature
//! changes (and leaf 0xD trimmed to the enabled components), so every paravirtual feature
//! KVM offers, `kvm-pv-ipi` included, unless the spec turns it off
//! (`host,-kvm-pv-ipi,-kvm-pv-unhalt,-kvm-pv-sched-yield`). Topology fields are left
//! for the per-vCPU normaliser.
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
use crate::model::CpuModel;
use crate::spec::{Ambiguity, ModelSpec};
use crate::table::{CpuidKey, CpuidRegs, CpuidTable};
use crate::{props, synth};

/// Features QEMU turns on for every named model under KVM (when supported): QEMU 7.2's
/// `kvm_default_props`, `x2apic` and the paravirtual features every KVM since Linux 3.x
/// offers. The other paravirtual features (`kvm-pv-ipi`, `kvm-pv-unhalt`,
/// `kvm-pv-sched-yield`, ...) stay off unless asked for; `host` and `max` take all KVM has.
pub const KVM_DEFAULT_ON: &[&str] = &[
    "hypervisor",
    "x2apic",
    "kvmclock",
    "kvm_nopiodelay",
    "kvm_asyncpf",
    "kvm_steal_time",
    "kvm_pv_eoi",
    "kvmclock_stable_bit",
];
/// Features QEMU turns off for every named model under KVM unless asked for.
pub const KVM_DEFAULT_OFF: &[&str] = &["acpi", "monitor", "svm"];

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
    /// Findings, in order: ambiguous spec items, dropped features.
    pub warnings: Vec<ModelWarning>,
}

/// The features a named model needs from the host under QEMU's KVM defaults: its list
/// without [`KVM_DEFAULT_OFF`] and, as SVM is off, without the SVM leaf's features
/// (0x8000_000A EDX: `npt`, `nrip-save`, ...), which a guest without SVM never reads.
/// Empty for `host` / `max`.
pub fn required_features(model: &CpuModel) -> Vec<&'static Feature> {
    model
        .features
        .iter()
        .copied()
        .filter(|f| !KVM_DEFAULT_OFF.contains(&f.name) && !is_svm_leaf(f))
        .collect()
}

/// True for the SVM feature leaf's bits (0x8000_000A EDX).
fn is_svm_leaf(f: &Feature) -> bool {
    f.leaf == SVM_LEAF
}

/// The SVM feature leaf.
const SVM_LEAF: u32 = 0x8000_000a;

/// The model's required features that `supported` lacks, in model order.
pub fn missing_features(model: &CpuModel, supported: &CpuidTable) -> Vec<&'static Feature> {
    required_features(model)
        .into_iter()
        .filter(|f| !f.is_set(supported))
        .collect()
}

/// Resolve `spec` against the host's supported table. See the module docs.
pub fn resolve(spec: &ModelSpec, supported: &CpuidTable) -> Result<Resolved, CheckError> {
    let host_vendor = supported.vendor().ok_or(CheckError::NoVendor)?;
    let model = spec.model;
    let mut warnings: Vec<ModelWarning> = spec
        .ambiguities()
        .into_iter()
        .map(ModelWarning::AmbiguousSpec)
        .collect();

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
    let mut requested = spec.requested();
    if !spec.kvm {
        // Without the hypervisor leaves there is nothing to ask for (QEMU clears the
        // word without a warning).
        requested.retain(|_, (f, _)| !f.is_kvm_paravirt());
        soft.retain(|_, f| !f.is_kvm_paravirt());
    }
    for (name, (f, on)) in &requested {
        soft.remove(name);
        if *on {
            explicit.insert(name, f);
        } else {
            explicit.remove(name);
        }
    }
    // With SVM asked for, the model's SVM leaf features come with it.
    if !model.is_passthrough() && explicit.contains_key("svm") {
        for f in model.features.iter().filter(|f| is_svm_leaf(f)) {
            if requested.get(f.name).is_none_or(|(_, on)| *on) {
                explicit.insert(f.name, f);
            }
        }
    }

    let asked = in_catalogue_order(explicit.values().copied());
    let mut missing: Vec<&'static Feature> = asked
        .iter()
        .copied()
        .filter(|f| !f.is_set(supported))
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

    let mut table = if model.is_passthrough() {
        let mut table = supported.clone();
        for (f, on) in requested.values() {
            f.set(&mut table, *on && f.is_set(supported));
        }
        props::patch_passthrough(&mut table, spec);
        fix_xsave_components(&mut table);
        table
    } else {
        let enabled = in_catalogue_order(
            explicit
                .values()
                .chain(soft.values())
                .copied()
                .filter(|f| f.is_set(supported)),
        );
        let named = props::named_model(spec);
        let input = synth::ModelInput {
            model: &named,
            vendor: props::named_vendor(&named, host_vendor),
            requested: &asked,
            enabled: &enabled,
            phys_bits: phys_bits(spec, supported),
            l3_cache: spec.l3_cache,
            explicit: (spec.levels.level, spec.levels.xlevel),
        };
        synth::build(&input, supported)
    };
    if !spec.kvm {
        props::hide_kvm(&mut table);
    }

    Ok(Resolved {
        model,
        table,
        warnings,
    })
}

/// `features` in catalogue order, each once. Every `&'static Feature` is an element of the
/// one catalogue array, so address order is catalogue order: this sorts a few dozen
/// references instead of testing every catalogue entry against a name map.
fn in_catalogue_order(features: impl Iterator<Item = &'static Feature>) -> Vec<&'static Feature> {
    let mut v: Vec<&'static Feature> = features.collect();
    v.sort_by_key(|f| std::ptr::from_ref::<Feature>(f));
    v.dedup_by(|a, b| std::ptr::eq(*a, *b));
    v
}

/// The guest's physical address width: `phys-bits`, or with `host-phys-bits=on` the
/// host's (0x8000_0008 `EAX[7:0]`, capped by `host-phys-bits-limit`), else 40.
pub fn phys_bits(spec: &ModelSpec, supported: &CpuidTable) -> u32 {
    let host = supported
        .regs(CpuidKey::leaf(0x8000_0008))
        .map(|r| r.eax & 0xff)
        .filter(|b| *b > 0);
    match (spec.phys_bits.host, host) {
        (true, Some(h)) => spec.phys_bits.host_limit.map_or(h, |l| h.min(l)),
        _ => spec.phys_bits.bits.unwrap_or(synth::DEFAULT_PHYS_BITS),
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

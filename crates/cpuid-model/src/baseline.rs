//! Fleet baseline: the CPU spec every host of a fleet can run, for live
//! migration between them.
//!
//! Given the supported CPUID tables of several hosts (e.g. read from
//! `cpuid -r` dumps), [`baseline`] picks the named model whose required
//! features (see [`check::required_features`]) every host supports, and adds
//! as `+feat` the catalogued features every host has beyond that model.
//!
//! Choice of model:
//! 1. Only named models runnable on every host are candidates.
//! 2. When all hosts have the same vendor, models defined for that vendor are
//!    preferred; models of the other vendor are used only when none of the
//!    vendor's own models runs everywhere (the vendor string stays the host's
//!    anyway, see [`check`]).
//! 3. Among those, the model with the most required features wins ("largest");
//!    on a tie, the one later in [`model::all`] (the newer one); model data is
//!    ordered oldest first.
//!
//!
//! So an AMD fleet that cannot run `EPYC` gets `qemu64,+...` (AMD family 15)
//! rather than an Intel model: an Intel family-6 signature under the AMD vendor
//! string would look like an old K7 to the guest.
//!
//! Extra features leave out bits that resolution, the normaliser or the guest
//! OS decide, and bits that block migration:
//! - the KVM defaults ([`check::KVM_DEFAULT_ON`], [`check::KVM_DEFAULT_OFF`]);
//! - KVM's paravirtual features ([`Feature::is_kvm_paravirt`]): they belong to the
//!   accelerator, not to the CPU model, and are asked for by hand (`+kvm-pv-ipi`);
//! - `osxsave`, `ospke` (mirror guest CR4 bits);
//! - `ht`, `cmp_legacy` (topology bits, set per vCPU by the normaliser);
//! - `invtsc` (QEMU refuses to migrate a guest that has it);
//! - bits KVM never virtualizes ([`Feature::is_host_only`]), which show up
//!   when the inputs are raw `cpuid -r` dumps rather than supported tables.

use std::fmt;

use thiserror::Error;

use crate::check;
use crate::features::{self, Feature};
use crate::model::{self, CpuModel, Vendor};
use crate::spec::ModelSpec;
use crate::table::CpuidTable;

/// Features never offered as baseline extras besides the KVM defaults: guest
/// CR4 mirrors, topology bits, and migration blockers.
const NOT_EXTRAS: &[&str] = &["osxsave", "ospke", "ht", "cmp_legacy", "invtsc"];

/// The result of [`baseline`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Baseline {
    /// The chosen model.
    pub model: &'static CpuModel,
    /// Features all hosts support beyond the model, in catalogue order.
    pub extra: Vec<&'static Feature>,
    /// `model` plus `+extra`, ready to resolve.
    pub spec: ModelSpec,
}

/// Prints the spec string, e.g. `Skylake-Server,+avx512_vnni`.
impl fmt::Display for Baseline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.spec.fmt(f)
    }
}

/// Why no baseline could be computed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BaselineError {
    /// The host list was empty.
    #[error("no host CPUID tables given")]
    NoHosts,
    /// A host table has no leaf 0.
    #[error("host {host} CPUID table has no leaf 0 (vendor)")]
    NoVendor {
        /// Index of the host in the input.
        host: usize,
    },
    /// No named model runs on every host.
    #[error("no CPU model is supported by all {hosts} hosts")]
    NoRunnableModel {
        /// Number of hosts.
        hosts: usize,
    },
}

/// Compute the fleet baseline. See the module docs for the rules.
pub fn baseline(hosts: &[CpuidTable]) -> Result<Baseline, BaselineError> {
    if hosts.is_empty() {
        return Err(BaselineError::NoHosts);
    }
    let mut vendors = Vec::with_capacity(hosts.len());
    for (i, h) in hosts.iter().enumerate() {
        let v = h.vendor().ok_or(BaselineError::NoVendor { host: i })?;
        vendors.push(Vendor::from_bytes(&v));
    }
    let common_vendor = match vendors.first() {
        Some(Some(v)) if vendors.iter().all(|x| *x == Some(*v)) => Some(*v),
        _ => None,
    };

    let runnable: Vec<(usize, &'static CpuModel)> = model::all()
        .iter()
        .enumerate()
        // Versioned names only (aliases repeat them), and not `base`.
        .filter(|(_, m)| !m.is_passthrough() && m.alias_of.is_none() && m.vendor.is_some())
        .filter(|(_, m)| {
            hosts
                .iter()
                .all(|h| check::missing_features(m, h).is_empty())
        })
        .collect();
    let own_vendor: Vec<(usize, &'static CpuModel)> = runnable
        .iter()
        .copied()
        .filter(|(_, m)| common_vendor.is_some() && m.vendor == common_vendor)
        .collect();
    let pool = if own_vendor.is_empty() {
        &runnable
    } else {
        &own_vendor
    };
    let (_, chosen) = pool
        .iter()
        .copied()
        .max_by_key(|(i, m)| (check::required_features(m).len(), *i))
        .ok_or(BaselineError::NoRunnableModel { hosts: hosts.len() })?;

    let extra: Vec<&'static Feature> = features::all()
        .iter()
        .filter(|f| hosts.iter().all(|h| f.is_set(h)))
        .filter(|f| !chosen.has(f))
        .filter(|f| {
            !check::KVM_DEFAULT_ON.contains(&f.name)
                && !check::KVM_DEFAULT_OFF.contains(&f.name)
                && !NOT_EXTRAS.contains(&f.name)
                && !f.is_host_only()
                && !f.is_kvm_paravirt()
        })
        .collect();
    let mut spec = ModelSpec::new(chosen);
    spec.plus = extra.clone();
    Ok(Baseline {
        model: chosen,
        extra,
        spec,
    })
}

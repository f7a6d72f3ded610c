//! The spec's QEMU properties that are not feature flags, applied as QEMU 7.2 applies
//! them: identity (`vendor`, `family`, `model`, `stepping`, `model-id`), levels
//! (`level`, `xlevel`, `min-level`, `min-xlevel`), `kvm` and `migratable`.
//!
//! A named model takes identity and level floors through a copy of the model
//! ([`named_model`]) that [`crate::synth`] builds from, so every leaf derived from them
//! (signature in 0x1 and 0x8000_0001, vendor words, brand leaves, the vendor's cache
//! leaves) follows. `host` and `max` take them as patches of the host's table
//! ([`patch_passthrough`]). [`hide_kvm`] applies to both.

use crate::features::{self, Feature};
use crate::model::{CpuModel, Vendor};
use crate::spec::ModelSpec;
use crate::table::{CpuidKey, CpuidTable};

/// Extended leaves (`xlevel` range); 0xC000_0000 and up (Centaur) are not among them.
const EXTENDED_LEAVES: std::ops::Range<u32> = 0x8000_0000..0xc000_0000;
/// Leaf 1 / 0x8000_0001 EAX bits of the family (`[11:8]`, extended `[27:20]`).
const FAMILY_BITS: u32 = 0x0ff0_0f00;
/// Leaf 1 / 0x8000_0001 EAX bits of the model (`[7:4]`, extended `[19:16]`).
const MODEL_BITS: u32 = 0x000f_00f0;
/// Leaf 1 / 0x8000_0001 EAX bits of the stepping.
const STEPPING_BITS: u32 = 0xf;
/// Features QEMU 7.2 marks as blocking migration (`unmigratable_flags`), left out of
/// `host` and `max` unless `migratable=off` or asked for by name.
pub const UNMIGRATABLE: &[&str] = &["invtsc"];
/// Features QEMU 7.2 has no name for, so its migratable `host` and `max` (which keep
/// named bits only) leave them off; treated as [`UNMIGRATABLE`]. `kvm-asyncpf-vmexit`
/// is QEMU 8.2's name for `KVM_FEATURE_ASYNC_PF_VMEXIT`.
pub const QEMU_7_2_UNNAMED: &[&str] = &["kvm_asyncpf_vmexit"];

/// The model a named spec builds from: the model with the spec's identity and
/// `min-level` / `min-xlevel` in place of its own.
pub(crate) fn named_model(spec: &ModelSpec) -> CpuModel {
    let mut m = spec.model.clone();
    let id = &spec.identity;
    m.vendor = id.vendor.or(m.vendor);
    m.family = id.family.unwrap_or(m.family);
    m.model = id.model.unwrap_or(m.model);
    m.stepping = id.stepping.unwrap_or(m.stepping);
    if let Some(brand) = &id.model_id {
        m.model_id.clone_from(brand);
    }
    m.level = spec.levels.min_level.unwrap_or(m.level);
    m.xlevel = spec.levels.min_xlevel.unwrap_or(m.xlevel);
    m
}

/// `kvm=off`: no hypervisor leaves, so no KVM signature and no paravirtual features
/// (as QEMU without Hyper-V enlightenments). The leaf 1 `hypervisor` bit is kept.
pub(crate) fn hide_kvm(t: &mut CpuidTable) {
    t.retain(|k, _| !features::KVM_LEAVES.contains(&k.leaf));
}

/// `host` / `max`: the spec's properties as patches of the host's table.
pub(crate) fn patch_passthrough(t: &mut CpuidTable, spec: &ModelSpec) {
    if spec.migratable {
        let requested = spec.requested();
        for name in UNMIGRATABLE.iter().chain(QEMU_7_2_UNNAMED) {
            let asked = requested.get(name).is_some_and(|(_, on)| *on);
            if let (false, Some(f)) = (asked, features::by_name(name)) {
                f.set(t, false);
            }
        }
    }
    patch_identity(t, spec);
    patch_levels(t, spec);
}

fn patch_identity(t: &mut CpuidTable, spec: &ModelSpec) {
    let id = &spec.identity;
    if let Some(v) = id.vendor {
        let b = v.as_str().as_bytes();
        let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        for leaf in [0, 0x8000_0000] {
            if let Some(e) = t.get_mut(CpuidKey::leaf(leaf)) {
                (e.regs.ebx, e.regs.edx, e.regs.ecx) = (w(0), w(4), w(8));
            }
        }
    }
    if id.vendor == Some(Vendor::Amd) {
        // QEMU (pc-7.2 `vendor_cpuid_only`) gives an AMD guest no leaf 2 or 4 caches.
        if let Some(e) = t.get_mut(CpuidKey::leaf(2)) {
            e.regs = Default::default();
        }
        if t.get(CpuidKey::subleaf(4, 0)).is_some() {
            t.retain(|k, _| k.leaf != 4 || k.subleaf == 0);
            if let Some(e) = t.get_mut(CpuidKey::subleaf(4, 0)) {
                e.regs = Default::default();
            }
        }
    }
    let mut fields = 0;
    let mut value = 0;
    if let Some(f) = id.family {
        fields |= FAMILY_BITS;
        value |= crate::check::encode_signature(f, 0, 0);
    }
    if let Some(m) = id.model {
        fields |= MODEL_BITS;
        value |= crate::check::encode_signature(0, m, 0);
    }
    if let Some(s) = id.stepping {
        fields |= STEPPING_BITS;
        value |= s & STEPPING_BITS;
    }
    let old = t.regs(CpuidKey::leaf(1)).map(|r| r.eax);
    for leaf in [1, 0x8000_0001] {
        if let Some(e) = t.get_mut(CpuidKey::leaf(leaf)) {
            // 0x8000_0001 EAX carries the signature on AMD; Intel leaves it 0.
            if leaf == 1 || Some(e.regs.eax) == old {
                e.regs.eax = (e.regs.eax & !fields) | value;
            }
        }
    }
    if let Some(brand) = &id.model_id {
        let mut bytes = [0u8; 48];
        // The parser refuses longer ones; a spec built in code is cut to the 48 bytes.
        let n = brand.len().min(48);
        bytes[..n].copy_from_slice(&brand.as_bytes()[..n]);
        for (leaf, chunk) in (0x8000_0002..).zip(bytes.chunks_exact(16)) {
            if let Some(e) = t.get_mut(CpuidKey::leaf(leaf)) {
                let w = |j: usize| {
                    u32::from_le_bytes([chunk[j], chunk[j + 1], chunk[j + 2], chunk[j + 3]])
                };
                (e.regs.eax, e.regs.ebx, e.regs.ecx, e.regs.edx) = (w(0), w(4), w(8), w(12));
            }
        }
    }
}

/// The host's levels are the floors; `min-level` / `min-xlevel` replace them (raised
/// to the leaves of the features the table has, as QEMU's automatic level), and
/// `level` / `xlevel` replace the result. Leaves above the levels are removed.
fn patch_levels(t: &mut CpuidTable, spec: &ModelSpec) {
    let l = &spec.levels;
    let highest = |range: std::ops::Range<u32>, floor: u32| {
        features::all()
            .iter()
            .filter(|f| range.contains(&f.leaf) && f.is_set(t))
            .map(|f: &Feature| f.leaf)
            .fold(floor, u32::max)
    };
    let level = l
        .level
        .or_else(|| l.min_level.map(|m| highest(0..0x4000_0000, m)));
    let xlevel = l
        .xlevel
        .or_else(|| l.min_xlevel.map(|m| highest(EXTENDED_LEAVES, m)));
    clamp_levels(t, level, xlevel);
}

/// Set leaf 0 / 0x8000_0000 EAX and drop the leaves above them (`None`: unchanged).
fn clamp_levels(t: &mut CpuidTable, level: Option<u32>, xlevel: Option<u32>) {
    if let Some(level) = level {
        if let Some(e) = t.get_mut(CpuidKey::leaf(0)) {
            e.regs.eax = level;
        }
        t.retain(|k, _| k.leaf >= 0x4000_0000 || k.leaf <= level);
    }
    if let Some(xlevel) = xlevel {
        if let Some(e) = t.get_mut(CpuidKey::leaf(0x8000_0000)) {
            e.regs.eax = xlevel;
        }
        let ext_on = xlevel >= 0x8000_0000;
        t.retain(|k, _| !EXTENDED_LEAVES.contains(&k.leaf) || (ext_on && k.leaf <= xlevel));
    }
}

/// The vendor a named model's guest sees: `vendor=`, else the model's, else (`base`)
/// the host's.
pub(crate) fn named_vendor(model: &CpuModel, host: [u8; 12]) -> [u8; 12] {
    model.vendor.map_or(host, |v: Vendor| {
        let mut b = [0u8; 12];
        b.copy_from_slice(v.as_str().as_bytes());
        b
    })
}

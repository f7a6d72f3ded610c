//! The CPUID table of a named model, built from the model alone: vendor, levels,
//! signature, brand string, caches, XSAVE layout and address sizes come from the model
//! and the spec's options, never from the host. The host only decides which of the
//! model's features survive ([`crate::check`] drops or refuses the others) and supplies
//! the hypervisor leaves (0x4000_0000 and up), which belong to the VMM's accelerator;
//! their paravirtual feature word (0x4000_0001 EAX) holds only the enabled ones.
//!
//! What each leaf holds follows QEMU 7.2's `cpu_x86_cpuid` as its TCG guests read it
//! (the reference, host-independent); the topology fields are left for
//! [`crate::normalize`]. Leaves the model does not describe (0x3, 0x8 to 0xA, 0xC, 0x10
//! to 0x1F except 0xB, ...) are present as zeros when in range, so nothing of the host
//! shows through them.

use crate::cache::{self, CacheInfo, CacheLevels};
use crate::features::{self, Feature};
use crate::model::{CpuModel, Vendor};
use crate::table::{CpuidEntry, CpuidKey, CpuidRegs, CpuidTable};

/// KVM's paravirtual feature leaf; its EAX is QEMU's `FEAT_KVM` word.
const KVM_FEATURES_LEAF: u32 = 0x4000_0001;

/// Physical address bits QEMU gives named models unless told otherwise.
pub const DEFAULT_PHYS_BITS: u32 = 40;

/// Leaf 1 EDX bits that AMD repeats in 0x8000_0001 EDX (fpu..apic, mtrr..pse36, mmx, fxsr).
const AMD_EDX_ALIASES: u32 = 0x0183_f3ff;
/// Leaf 5 ECX: MONITOR/MWAIT extensions and interrupt break-event, as QEMU sets them.
const MWAIT_ECX: u32 = 0x3;
/// Leaf 1 EBX[15:8]: CLFLUSH line size in 8-byte units (64 bytes).
const CLFLUSH_64: u32 = 8 << 8;

/// One XSAVE state component: XCR0 bit, the feature enabling it, size, standard-format
/// offset, and ECX (bit 1: 64-byte aligned in the compacted format; bit 2: XFD).
struct XsaveArea {
    bit: u32,
    feature: &'static str,
    size: u32,
    offset: u32,
    ecx: u32,
}

/// The user state components QEMU 7.2's models can enable, with the architectural
/// standard-format layout (Intel SDM vol. 1, 13.4; the same on AMD parts).
const XSAVE_AREAS: &[XsaveArea] = &[
    XsaveArea {
        bit: 2,
        feature: "avx",
        size: 0x100,
        offset: 0x240,
        ecx: 0,
    },
    XsaveArea {
        bit: 3,
        feature: "mpx",
        size: 0x40,
        offset: 0x3c0,
        ecx: 0,
    },
    XsaveArea {
        bit: 4,
        feature: "mpx",
        size: 0x40,
        offset: 0x400,
        ecx: 0,
    },
    XsaveArea {
        bit: 5,
        feature: "avx512f",
        size: 0x40,
        offset: 0x440,
        ecx: 0,
    },
    XsaveArea {
        bit: 6,
        feature: "avx512f",
        size: 0x200,
        offset: 0x480,
        ecx: 0,
    },
    XsaveArea {
        bit: 7,
        feature: "avx512f",
        size: 0x400,
        offset: 0x680,
        ecx: 0,
    },
    XsaveArea {
        bit: 9,
        feature: "pku",
        size: 0x8,
        offset: 0xa80,
        ecx: 0,
    },
    XsaveArea {
        bit: 17,
        feature: "amx_tile",
        size: 0x40,
        offset: 0xac0,
        ecx: 0x2,
    },
    XsaveArea {
        bit: 18,
        feature: "amx_tile",
        size: 0x2000,
        offset: 0xb00,
        ecx: 0x6,
    },
];

/// Legacy area plus XSAVE header: the size with only x87 and SSE state.
const XSAVE_LEGACY_SIZE: u32 = 0x240;

/// What the table is built from.
pub(crate) struct ModelInput<'a> {
    /// The model.
    pub model: &'a CpuModel,
    /// The 12-byte vendor string the guest sees.
    pub vendor: [u8; 12],
    /// Features asked for (the model's and the spec's), before the host check:
    /// they set the levels, as QEMU's automatic level does.
    pub requested: &'a [&'static Feature],
    /// Features the guest gets (requested and supported by the host).
    pub enabled: &'a [&'static Feature],
    /// Physical address bits.
    pub phys_bits: u32,
    /// Whether the L3 cache is described (QEMU `l3-cache`, on by default).
    pub l3_cache: bool,
    /// Explicit `level=` / `xlevel=`, replacing the automatic levels.
    pub explicit: (Option<u32>, Option<u32>),
}

fn on(list: &[&'static Feature], name: &str) -> bool {
    list.iter().any(|f| f.name == name)
}

/// The levels: explicit `level=` / `xlevel=` when given, else QEMU 7.2's automatic ones.
fn levels(input: &ModelInput) -> (u32, u32) {
    let (basic, ext) = automatic_levels(input);
    (
        input.explicit.0.unwrap_or(basic),
        input.explicit.1.unwrap_or(ext),
    )
}

/// Levels QEMU 7.2 raises automatically: the model's minimum, raised to every requested
/// feature's leaf (and to 0x8000_000A for SVM).
fn automatic_levels(input: &ModelInput) -> (u32, u32) {
    let basic = input
        .requested
        .iter()
        .map(|f| f.leaf)
        .filter(|l| *l < 0x4000_0000)
        .fold(input.model.level, u32::max);
    let mut ext = input
        .requested
        .iter()
        .map(|f| f.leaf)
        .filter(|l| *l >= 0x8000_0000)
        .fold(input.model.xlevel, u32::max);
    if on(input.requested, "svm") {
        ext = ext.max(0x8000_000a);
    }
    (basic, ext)
}

fn put(t: &mut CpuidTable, leaf: u32, sub: u32, r: [u32; 4], indexed: bool) {
    let regs = CpuidRegs {
        eax: r[0],
        ebx: r[1],
        ecx: r[2],
        edx: r[3],
    };
    t.insert(CpuidKey::subleaf(leaf, sub), CpuidEntry { regs, indexed });
}

fn vendor_words(v: &[u8; 12]) -> [u32; 3] {
    let w = |i: usize| u32::from_le_bytes([v[i], v[i + 1], v[i + 2], v[i + 3]]);
    [w(0), w(4), w(8)]
}

/// Build the model's base table (before per-vCPU normalisation). `host` supplies the
/// hypervisor leaves only.
pub(crate) fn build(input: &ModelInput, host: &CpuidTable) -> CpuidTable {
    let model = input.model;
    let (level, xlevel) = levels(input);
    let vendor = Vendor::from_bytes(&input.vendor);
    let caches = model.cache.info();
    let sig = crate::check::encode_signature(model.family, model.model, model.stepping);
    let [vb, vd, vc] = vendor_words(&input.vendor);
    let mut t = CpuidTable::new();

    for leaf in 0..=level.min(0xff) {
        put(&mut t, leaf, 0, [0; 4], crate::dump::is_indexed_leaf(leaf));
    }
    put(&mut t, 0, 0, [level, vb, vc, vd], false);
    if level >= 1 {
        put(&mut t, 1, 0, [sig, CLFLUSH_64, 0, 0], false);
    }
    if level >= 2 && vendor != Some(Vendor::Amd) {
        put(
            &mut t,
            2,
            0,
            cache::leaf2(&caches.cpuid2, input.l3_cache),
            false,
        );
    }
    if level >= 4 {
        let view = (vendor != Some(Vendor::Amd)).then_some(&caches.cpuid4);
        deterministic_caches(&mut t, 4, view, input.l3_cache);
    }
    if level >= 5 {
        put(&mut t, 5, 0, [0, 0, MWAIT_ECX, 0], false);
    }
    if level >= 7 {
        let subleaves = u32::from(
            input
                .requested
                .iter()
                .any(|f| f.key() == CpuidKey::subleaf(7, 1)),
        );
        put(&mut t, 7, 0, [subleaves, 0, 0, 0], true);
        if subleaves > 0 {
            put(&mut t, 7, 1, [0; 4], true);
        }
    }
    if level >= 0xd {
        xsave_leaf(&mut t, input.enabled);
    }
    for (k, e) in host.iter() {
        if features::KVM_LEAVES.contains(&k.leaf) {
            t.insert(*k, *e);
        }
    }
    // The paravirtual features are the model's choice (QEMU's KVM defaults and the
    // spec), set below from `enabled`, not everything the host's KVM offers.
    if let Some(e) = t.get_mut(CpuidKey::leaf(KVM_FEATURES_LEAF)) {
        e.regs.eax = 0;
    }
    if xlevel >= 0x8000_0000 {
        extended_leaves(&mut t, input, xlevel, sig, caches);
    }
    for f in input.enabled {
        f.set(&mut t, true);
    }
    // QEMU answers the SVM leaf only with SVM on, and leaf 0xD only with XSAVE on.
    if !on(input.enabled, "svm") {
        t.remove_leaf(0x8000_000a);
        if xlevel >= 0x8000_000a {
            put(&mut t, 0x8000_000a, 0, [0; 4], false);
        }
    }
    if level >= 0xd && !on(input.enabled, "xsave") {
        xsave_leaf(&mut t, &[]);
    }
    if vendor == Some(Vendor::Amd) {
        let leaf1_edx = t.regs(CpuidKey::leaf(1)).map_or(0, |r| r.edx);
        if let Some(e) = t.get_mut(CpuidKey::leaf(0x8000_0001)) {
            e.regs.edx |= leaf1_edx & AMD_EDX_ALIASES;
        }
    }
    // In range, QEMU fills 0x8000_001D whatever the vendor (EPYC with vendor=GenuineIntel).
    if xlevel >= 0x8000_001d {
        deterministic_caches(&mut t, 0x8000_001d, Some(&caches.amd), true);
    }
    t
}

/// Leaf 0x4 or 0x8000_001D: one subleaf per cache and the terminating null subleaf; a
/// single null subleaf without a view.
fn deterministic_caches(t: &mut CpuidTable, leaf: u32, view: Option<&CacheLevels>, l3: bool) {
    t.remove_leaf(leaf);
    let caches = view.map(|v| v.in_order(l3)).unwrap_or_default();
    for (i, c) in caches.iter().enumerate() {
        put(t, leaf, i as u32, cache::deterministic(c), true);
    }
    put(t, leaf, caches.len() as u32, [0; 4], true);
}

fn extended_leaves(
    t: &mut CpuidTable,
    input: &ModelInput,
    xlevel: u32,
    sig: u32,
    caches: &CacheInfo,
) {
    let [vb, vd, vc] = vendor_words(&input.vendor);
    for leaf in 0x8000_0000..=xlevel.min(0x8000_00ff) {
        put(t, leaf, 0, [0; 4], crate::dump::is_indexed_leaf(leaf));
    }
    put(t, 0x8000_0000, 0, [xlevel, vb, vc, vd], false);
    if xlevel >= 0x8000_0001 {
        put(t, 0x8000_0001, 0, [sig, 0, 0, 0], false);
    }
    let mut brand = [0u8; 48];
    let id = input.model.model_id.as_bytes();
    let n = id.len().min(48);
    brand[..n].copy_from_slice(&id[..n]);
    for (i, chunk) in brand.chunks_exact(16).enumerate() {
        let w = |j: usize| u32::from_le_bytes([chunk[j], chunk[j + 1], chunk[j + 2], chunk[j + 3]]);
        // i < 3: the brand leaves are 0x8000_0002..=0x8000_0004.
        let leaf = 0x8000_0002 + i as u32;
        if leaf <= xlevel {
            put(t, leaf, 0, [w(0), w(4), w(8), w(12)], false);
        }
    }
    let amd = &caches.amd;
    if xlevel >= 0x8000_0005 {
        let l1 = [
            cache::AMD_L1_TLB,
            cache::AMD_L1_TLB,
            cache::amd_l1(&amd.l1d),
            cache::amd_l1(&amd.l1i),
        ];
        put(t, 0x8000_0005, 0, l1, false);
    }
    if xlevel >= 0x8000_0006 {
        let l3 = if input.l3_cache {
            cache::amd_l3_edx(&amd.l3)
        } else {
            0
        };
        put(
            t,
            0x8000_0006,
            0,
            [0, cache::AMD_L2_TLB_4K, cache::amd_l2_ecx(&amd.l2), l3],
            false,
        );
    }
    if xlevel >= 0x8000_0008 {
        let eax = if on(input.enabled, "lm") {
            let virt = if on(input.enabled, "la57") { 57 } else { 48 };
            input.phys_bits | virt << 8
        } else if on(input.enabled, "pse36") {
            36
        } else {
            32
        };
        put(t, 0x8000_0008, 0, [eax, 0, 0, 0], false);
    }
    if xlevel >= 0x8000_000a && on(input.enabled, "svm") {
        put(t, 0x8000_000a, 0, [1, 0x10, 0, 0], false);
    }
}

/// Leaf 0xD: the enabled components only, with their sizes. Without XSAVE, all zeros.
fn xsave_leaf(t: &mut CpuidTable, enabled: &[&'static Feature]) {
    t.remove_leaf(0xd);
    put(t, 0xd, 0, [0; 4], true);
    put(t, 0xd, 1, [0; 4], true);
    if !on(enabled, "xsave") {
        return;
    }
    let areas: Vec<&XsaveArea> = XSAVE_AREAS
        .iter()
        .filter(|a| on(enabled, a.feature))
        .collect();
    let xcr0 = areas.iter().fold(0x3, |m, a| m | 1 << a.bit);
    let standard = areas
        .iter()
        .map(|a| a.offset + a.size)
        .fold(XSAVE_LEGACY_SIZE, u32::max);
    let compacted = areas.iter().fold(XSAVE_LEGACY_SIZE, |size, a| {
        let start = if a.ecx & 0x2 != 0 {
            size.next_multiple_of(64)
        } else {
            size
        };
        start + a.size
    });
    put(t, 0xd, 0, [xcr0, XSAVE_LEGACY_SIZE, standard, 0], true);
    put(t, 0xd, 1, [0, compacted, 0, 0], true);
    for a in areas {
        put(t, 0xd, a.bit, [a.size, a.offset, a.ecx, 0], true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features;

    fn feats(names: &[&str]) -> Vec<&'static Feature> {
        names
            .iter()
            .map(|n| features::by_name(n).unwrap())
            .collect()
    }

    #[test]
    fn xsave_sizes_match_qemus_skylake_server_guest() {
        // Skylake-Server-v4 under QEMU 7.2 TCG: 0xD.0 = 0x2e7/0x240/0xa88, 0xD.1 EBX 0x988.
        let mut t = CpuidTable::new();
        xsave_leaf(&mut t, &feats(&["xsave", "avx", "avx512f", "pku"]));
        let r0 = t.regs(CpuidKey::subleaf(0xd, 0)).unwrap();
        assert_eq!((r0.eax, r0.ebx, r0.ecx), (0x2e7, 0x240, 0xa88));
        assert_eq!(t.regs(CpuidKey::subleaf(0xd, 1)).unwrap().ebx, 0x988);
        assert!(t.regs(CpuidKey::subleaf(0xd, 3)).is_none());
        let r9 = t.regs(CpuidKey::subleaf(0xd, 9)).unwrap();
        assert_eq!((r9.eax, r9.ebx), (8, 0xa80));
    }
}

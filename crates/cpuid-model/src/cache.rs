//! The caches a named CPU model describes, and their CPUID encodings: leaf 0x2
//! (descriptor bytes), leaf 0x4 and AMD 0x8000_001D (deterministic parameters), AMD
//! 0x8000_0005 (L1) and 0x8000_0006 (L2, L3).
//!
//! The geometry is QEMU 7.2's, read from its TCG guests (`tests/qemu-guest`): models
//! without cache data of their own use QEMU's "legacy" caches, which show a different
//! geometry in each leaf family (leaf 2 and leaf 4 do not agree, and the AMD leaves
//! describe a third cache set); the EPYC models (and Dhyana) have one cache set that
//! every leaf describes. The sharing fields (which logical CPUs share a cache) belong to
//! the topology and are written by [`crate::normalize`].
//!
//! ```
//! use cpuid_model::cache::CacheModel;
//!
//! let rome = CacheModel::EpycRome.info();
//! assert_eq!(rome.amd.l3.size_kib, 16 * 1024);
//! // AMD 0x8000_0006 EDX: 16 MiB in 512 KiB units, 16-way, one line per tag, 64-byte lines.
//! assert_eq!(cpuid_model::cache::amd_l3_edx(&rome.amd.l3), 0x0080_8140);
//! ```

use serde::Deserialize;

/// Leaf 0x4 / 0x8000_001D cache type field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheType {
    /// Data cache (1).
    Data = 1,
    /// Instruction cache (2).
    Instruction = 2,
    /// Unified cache (3).
    Unified = 3,
}

/// One cache, as CPUID describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cache {
    /// Level, 1 to 3.
    pub level: u32,
    /// Data, instruction or unified.
    pub kind: CacheType,
    /// Size in KiB.
    pub size_kib: u32,
    /// Line size in bytes.
    pub line: u32,
    /// Ways of associativity.
    pub ways: u32,
    /// Sets.
    pub sets: u32,
    /// Physical line partitions.
    pub partitions: u32,
    /// Lines per tag (AMD leaves).
    pub lines_per_tag: u32,
    /// Self-initializing (leaf 0x4 `EAX[8]`).
    pub self_init: bool,
    /// WBINVD/INVD do not act on lower-level caches of other threads (`EDX[0]`).
    pub no_invd_sharing: bool,
    /// Inclusive of lower levels (`EDX[1]`).
    pub inclusive: bool,
    /// Complex (hashed) indexing (`EDX[2]`).
    pub complex_indexing: bool,
}

/// The four caches of one view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLevels {
    /// L1 data.
    pub l1d: Cache,
    /// L1 instruction.
    pub l1i: Cache,
    /// L2 unified.
    pub l2: Cache,
    /// L3 unified.
    pub l3: Cache,
}

impl CacheLevels {
    /// The caches in leaf 0x4 order (L1D, L1I, L2, L3), without L3 when `l3` is false.
    pub fn in_order(&self, l3: bool) -> Vec<&Cache> {
        let mut v = vec![&self.l1d, &self.l1i, &self.l2];
        if l3 {
            v.push(&self.l3);
        }
        v
    }
}

/// What each leaf family describes for one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheInfo {
    /// Leaf 0x2 descriptors.
    pub cpuid2: CacheLevels,
    /// Leaf 0x4.
    pub cpuid4: CacheLevels,
    /// AMD leaves 0x8000_0005, 0x8000_0006 and 0x8000_001D.
    pub amd: CacheLevels,
}

/// The cache data a model uses (the `cache` field of a model file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum CacheModel {
    /// QEMU's legacy caches, for every model without cache data of its own.
    #[serde(rename = "legacy")]
    Legacy,
    /// EPYC (Zen) and Dhyana.
    #[serde(rename = "epyc")]
    Epyc,
    /// EPYC-Rome (Zen 2).
    #[serde(rename = "epyc-rome")]
    EpycRome,
    /// EPYC-Milan (Zen 3).
    #[serde(rename = "epyc-milan")]
    EpycMilan,
}

const fn cache(level: u32, kind: CacheType, size_kib: u32, ways: u32) -> Cache {
    let line = 64;
    Cache {
        level,
        kind,
        size_kib,
        line,
        ways,
        sets: size_kib * 1024 / (ways * line),
        partitions: 1,
        lines_per_tag: 1,
        self_init: true,
        no_invd_sharing: level < 3,
        inclusive: level == 3,
        complex_indexing: level == 3,
    }
}

const fn not_self_init(mut c: Cache) -> Cache {
    c.self_init = false;
    c.no_invd_sharing = false;
    c
}

use CacheType::{Data, Instruction, Unified};

const LEGACY: CacheInfo = CacheInfo {
    cpuid2: CacheLevels {
        l1d: cache(1, Data, 32, 8),
        l1i: cache(1, Instruction, 32, 8),
        l2: cache(2, Unified, 2048, 8),
        l3: cache(3, Unified, 16 * 1024, 16),
    },
    cpuid4: CacheLevels {
        l1d: cache(1, Data, 32, 8),
        l1i: cache(1, Instruction, 32, 8),
        l2: cache(2, Unified, 4096, 16),
        l3: cache(3, Unified, 16 * 1024, 16),
    },
    amd: CacheLevels {
        l1d: cache(1, Data, 64, 2),
        l1i: cache(1, Instruction, 64, 2),
        l2: cache(2, Unified, 512, 16),
        l3: cache(3, Unified, 16 * 1024, 16),
    },
};

const fn zen(l1i_kib: u32, l1i_ways: u32, l3_mib: u32) -> CacheInfo {
    let levels = CacheLevels {
        l1d: cache(1, Data, 32, 8),
        l1i: cache(1, Instruction, l1i_kib, l1i_ways),
        l2: not_self_init(cache(2, Unified, 512, 8)),
        l3: cache(3, Unified, l3_mib * 1024, 16),
    };
    CacheInfo {
        cpuid2: levels,
        cpuid4: levels,
        amd: levels,
    }
}

const EPYC: CacheInfo = zen(64, 4, 8);
const EPYC_ROME: CacheInfo = zen(32, 8, 16);
const EPYC_MILAN: CacheInfo = zen(32, 8, 32);

impl CacheModel {
    /// The caches of this model.
    pub const fn info(self) -> &'static CacheInfo {
        match self {
            CacheModel::Legacy => &LEGACY,
            CacheModel::Epyc => &EPYC,
            CacheModel::EpycRome => &EPYC_ROME,
            CacheModel::EpycMilan => &EPYC_MILAN,
        }
    }
}

/// Leaf 0x4 / 0x8000_001D registers of one cache, sharing fields zero.
pub fn deterministic(c: &Cache) -> [u32; 4] {
    let eax = c.kind as u32 | c.level << 5 | u32::from(c.self_init) << 8;
    let ebx = (c.line - 1) | (c.partitions - 1) << 12 | (c.ways - 1) << 22;
    let ecx = c.sets - 1;
    let edx = u32::from(c.no_invd_sharing)
        | u32::from(c.inclusive) << 1
        | u32::from(c.complex_indexing) << 2;
    [eax, ebx, ecx, edx]
}

/// Leaf 0x2 descriptor bytes: (byte, level, type, KiB, ways, line), from the SDM's
/// table, without the sectored entries ("2 lines per sector") so that every geometry
/// has one byte (QEMU picks the unsectored one too: 512 KiB 8-way is 0x80, not 0x7B).
const DESCRIPTORS: &[(u8, u32, CacheType, u32, u32, u32)] = &[
    (0x06, 1, Instruction, 8, 4, 32),
    (0x08, 1, Instruction, 16, 4, 32),
    (0x09, 1, Instruction, 32, 4, 64),
    (0x0a, 1, Data, 8, 2, 32),
    (0x0c, 1, Data, 16, 4, 32),
    (0x0d, 1, Data, 16, 4, 64),
    (0x0e, 1, Data, 24, 6, 64),
    (0x1d, 2, Unified, 128, 2, 64),
    (0x21, 2, Unified, 256, 8, 64),
    (0x24, 2, Unified, 1024, 16, 64),
    (0x2c, 1, Data, 32, 8, 64),
    (0x30, 1, Instruction, 32, 8, 64),
    (0x41, 2, Unified, 128, 4, 32),
    (0x42, 2, Unified, 256, 4, 32),
    (0x43, 2, Unified, 512, 4, 32),
    (0x44, 2, Unified, 1024, 4, 32),
    (0x45, 2, Unified, 2048, 4, 32),
    (0x46, 3, Unified, 4096, 4, 64),
    (0x47, 3, Unified, 8192, 8, 64),
    (0x48, 2, Unified, 3072, 12, 64),
    (0x4a, 3, Unified, 6144, 12, 64),
    (0x4b, 3, Unified, 8192, 16, 64),
    (0x4c, 3, Unified, 12288, 12, 64),
    (0x4d, 3, Unified, 16384, 16, 64),
    (0x4e, 2, Unified, 6144, 24, 64),
    (0x60, 1, Data, 16, 8, 64),
    (0x66, 1, Data, 8, 4, 64),
    (0x67, 1, Data, 16, 4, 64),
    (0x68, 1, Data, 32, 4, 64),
    (0x78, 2, Unified, 1024, 4, 64),
    (0x7d, 2, Unified, 2048, 8, 64),
    (0x7f, 2, Unified, 512, 2, 64),
    (0x80, 2, Unified, 512, 8, 64),
    (0x82, 2, Unified, 256, 8, 32),
    (0x83, 2, Unified, 512, 8, 32),
    (0x84, 2, Unified, 1024, 8, 32),
    (0x85, 2, Unified, 2048, 8, 32),
    (0x86, 2, Unified, 512, 4, 64),
    (0x87, 2, Unified, 1024, 8, 64),
    (0xd0, 3, Unified, 512, 4, 64),
    (0xd1, 3, Unified, 1024, 4, 64),
    (0xd2, 3, Unified, 2048, 4, 64),
    (0xd6, 3, Unified, 1024, 8, 64),
    (0xd7, 3, Unified, 2048, 8, 64),
    (0xd8, 3, Unified, 4096, 8, 64),
    (0xdc, 3, Unified, 1536, 12, 64),
    (0xdd, 3, Unified, 3072, 12, 64),
    (0xde, 3, Unified, 6144, 12, 64),
    (0xe2, 3, Unified, 2048, 16, 64),
    (0xe3, 3, Unified, 4096, 16, 64),
    (0xe4, 3, Unified, 8192, 16, 64),
    (0xea, 3, Unified, 12288, 24, 64),
    (0xeb, 3, Unified, 18432, 24, 64),
    (0xec, 3, Unified, 24576, 24, 64),
];

/// "No descriptor: read leaf 0x4" (0xFF), for caches the table lacks.
pub const NO_DESCRIPTOR: u8 = 0xff;

/// The leaf 0x2 descriptor of a cache, or [`NO_DESCRIPTOR`].
pub fn descriptor(c: &Cache) -> u8 {
    DESCRIPTORS
        .iter()
        .find(|d| (d.1, d.2, d.3, d.4, d.5) == (c.level, c.kind, c.size_kib, c.ways, c.line))
        .map_or(NO_DESCRIPTOR, |d| d.0)
}

/// Leaf 0x2 registers: one iteration (`AL = 1`), L3 in ECX (0 without it), L1D, L1I
/// and L2 in EDX.
pub fn leaf2(v: &CacheLevels, l3: bool) -> [u32; 4] {
    let ecx = if l3 { u32::from(descriptor(&v.l3)) } else { 0 };
    let edx = u32::from(descriptor(&v.l1d)) << 16
        | u32::from(descriptor(&v.l1i)) << 8
        | u32::from(descriptor(&v.l2));
    [1, 0, ecx, edx]
}

/// AMD's 4-bit associativity code of 0x8000_0006 (ways -> code).
fn amd_assoc(ways: u32) -> u32 {
    match ways {
        0..=2 | 4 => ways,
        8 => 6,
        16 => 8,
        32 => 0xa,
        48 => 0xb,
        64 => 0xc,
        96 => 0xd,
        128 => 0xe,
        _ => 0xf,
    }
}

/// 0x8000_0005 ECX/EDX of an L1 cache: KiB, ways, lines per tag, line size.
pub fn amd_l1(c: &Cache) -> u32 {
    c.size_kib << 24 | (c.ways & 0xff) << 16 | c.lines_per_tag << 8 | c.line
}

/// 0x8000_0006 ECX of an L2 cache.
pub fn amd_l2_ecx(c: &Cache) -> u32 {
    c.size_kib << 16 | amd_assoc(c.ways) << 12 | c.lines_per_tag << 8 | c.line
}

/// 0x8000_0006 EDX of an L3 cache (size in 512 KiB units).
pub fn amd_l3_edx(c: &Cache) -> u32 {
    (c.size_kib / 512) << 18 | amd_assoc(c.ways) << 12 | c.lines_per_tag << 8 | c.line
}

/// 0x8000_0005 EAX/EBX and 0x8000_0006 EAX/EBX: QEMU's fixed TLB descriptions.
pub const AMD_L1_TLB: u32 = 0x01ff_01ff;
/// 0x8000_0006 EBX: L2 TLB for 4 KiB pages.
pub const AMD_L2_TLB_4K: u32 = 0x4200_4200;

#[cfg(test)]
mod tests {
    use super::*;

    // Expected words are what QEMU 7.2's TCG guests read (tests/qemu-guest).
    #[test]
    fn legacy_caches_encode_as_qemu_shows_them() {
        let l = CacheModel::Legacy.info();
        assert_eq!(leaf2(&l.cpuid2, true), [1, 0, 0x4d, 0x002c_307d]);
        assert_eq!(
            deterministic(&l.cpuid4.l2),
            [0x143, 0x03c0_003f, 0xfff, 0x1]
        );
        assert_eq!(
            deterministic(&l.cpuid4.l3),
            [0x163, 0x03c0_003f, 0x3fff, 0x6]
        );
        assert_eq!(amd_l1(&l.amd.l1d), 0x4002_0140);
        assert_eq!(amd_l2_ecx(&l.amd.l2), 0x0200_8140);
        assert_eq!(amd_l3_edx(&l.amd.l3), 0x0080_8140);
    }

    #[test]
    fn epyc_caches_encode_as_qemu_shows_them() {
        let e = CacheModel::Epyc.info();
        assert_eq!(leaf2(&e.cpuid2, true), [1, 0, 0x4b, 0x002c_ff80]);
        assert_eq!(deterministic(&e.amd.l1i), [0x122, 0x00c0_003f, 0xff, 1]);
        assert_eq!(deterministic(&e.amd.l2), [0x43, 0x01c0_003f, 0x3ff, 0]);
        assert_eq!(amd_l1(&e.amd.l1i), 0x4004_0140);
        assert_eq!(amd_l2_ecx(&e.amd.l2), 0x0200_6140);
        let m = CacheModel::EpycMilan.info();
        assert_eq!(deterministic(&m.amd.l3), [0x163, 0x03c0_003f, 0x7fff, 6]);
        assert_eq!(amd_l3_edx(&m.amd.l3), 0x0100_8140);
    }
}

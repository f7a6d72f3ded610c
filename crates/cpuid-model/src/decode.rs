//! Decode one vCPU's topology from its own CPUID view, the way Linux does.
//!
//! The result is what `/proc/cpuinfo` is built from: `physical id` (package id),
//! `core id`, `siblings` (logical CPUs per package) and `cpu cores`. The decoder only
//! reads the table, so it works on tables normalised here and on tables decoded from what
//! a guest reported.
//!
//! Sources, first match wins (Linux 6.9+ `arch/x86/kernel/cpu/topology_*.c` order):
//! 1. leaf 0x1F, then 0xB (both vendors), when their subleaf 0 reports processors;
//! 2. AMD with TOPOEXT: 0x8000_001E (extended APIC id, threads per core, node) and
//!    0x8000_0008 ECX (ApicIdSize, NC);
//! 3. AMD without TOPOEXT: leaf 0x1 APIC id and 0x8000_0008;
//! 4. leaf 0x1 EBX (initial APIC id, addressable ids per package when HTT) and, on Intel,
//!    leaf 0x4 `EAX[31:26]` for the cores.
//!
//! Ids follow Linux: the core id is the APIC id's bits between the SMT shift and the
//! package shift (so it counts the die and module bits too and may have holes), the die id
//! is the bits between the die shift and the package shift.

use crate::normalize::{amd::TOPOEXT, Vendor};
use crate::{CpuidKey, CpuidTable};

/// Errors decoding a topology from a CPUID table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Leaf 0 is missing.
    #[error("cannot decode the topology: the table has no leaf 0")]
    MissingLeaf0,
    /// No leaf gives an APIC id.
    #[error(
        "cannot decode the topology: the table has none of leaves 0x1F, 0xB, 0x8000001E or 0x1"
    )]
    NoApicIdLeaf,
    /// An extended topology leaf has shifts that go down or a zero count.
    #[error("cannot decode the topology from leaf {leaf:#x}: {problem}")]
    BadExtendedLeaf {
        /// 0xB or 0x1F.
        leaf: u32,
        /// What is wrong.
        problem: &'static str,
    },
    /// The SMT shift is above the package shift.
    #[error(
        "cannot decode the topology: SMT shift {smt_shift} is above package shift {package_shift}"
    )]
    BadShifts {
        /// Shift of the core id.
        smt_shift: u32,
        /// Shift of the package id.
        package_shift: u32,
    },
}

/// Which leaves the view was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopologySource {
    /// Leaf 0x1F (V2 extended topology).
    Leaf1F,
    /// Leaf 0xB (extended topology).
    Leaf0B,
    /// AMD leaves 0x8000_001E and 0x8000_0008.
    AmdTopoext,
    /// AMD leaf 0x8000_0008 with the leaf 0x1 APIC id.
    AmdLegacy,
    /// Leaf 0x1 (and leaf 0x4 on Intel).
    Leaf1,
}

/// One vCPU's place in the topology as the guest sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TopologyView {
    /// Vendor, when leaf 0 names a known one.
    pub vendor: Option<Vendor>,
    /// Leaves the view comes from.
    pub source: TopologySource,
    /// (x2)APIC id.
    pub apic_id: u32,
    /// Shift of the core id (bits of the thread id).
    pub smt_shift: u32,
    /// Shift of the die id (equal to `package_shift` without a die level).
    pub die_shift: u32,
    /// Shift of the package id.
    pub package_shift: u32,
    /// Package (`physical id`).
    pub package_id: u32,
    /// Die within the package.
    pub die_id: u32,
    /// Core within the package (`core id`).
    pub core_id: u32,
    /// Thread within the core.
    pub thread_id: u32,
    /// Threads per core.
    pub threads_per_core: u32,
    /// Logical CPUs per package (`siblings`).
    pub logical_per_package: u32,
    /// Cores per package (`cpu cores`).
    pub cores_per_package: u32,
    /// Dies per package.
    pub dies_per_package: u32,
}

/// `ceil(log2(n))`, 0 for 0 and 1 (Linux `get_count_order`).
fn count_order(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}

fn low_mask(bits: u32) -> u32 {
    1u32.checked_shl(bits).map_or(u32::MAX, |v| v - 1)
}

/// Counts and shifts before the ids are derived.
struct Raw {
    source: TopologySource,
    apic_id: u32,
    smt_shift: u32,
    die_shift: Option<u32>,
    package_shift: u32,
    threads_per_core: u32,
    logical_per_package: u32,
    dies_per_package: u32,
    /// Die id when it does not come from APIC id bits (AMD node id).
    die_id: Option<u32>,
}

/// Decode the topology of the vCPU whose CPUID view `t` is.
pub fn topology_view(t: &CpuidTable) -> Result<TopologyView, DecodeError> {
    let leaf0 = t.regs(CpuidKey::leaf(0)).ok_or(DecodeError::MissingLeaf0)?;
    let vendor = Vendor::of(t);
    let max_basic = leaf0.eax;
    let mut raw = None;
    for leaf in [0x1f, 0xb] {
        if raw.is_none() && max_basic >= leaf {
            raw = extended_leaf(t, leaf)?;
        }
    }
    if raw.is_none() && vendor == Some(Vendor::Amd) {
        raw = amd_leaves(t);
    }
    let mut raw = match raw {
        Some(r) => r,
        None => leaf1(t, vendor).ok_or(DecodeError::NoApicIdLeaf)?,
    };
    // AMD has no die level in 0xB: Linux takes the die (node) from 0x8000_001E.
    if vendor == Some(Vendor::Amd) && raw.die_shift.is_none() && raw.die_id.is_none() {
        if let Some(node) = amd_leaves(t).filter(|r| r.source == TopologySource::AmdTopoext) {
            raw.die_id = node.die_id;
            raw.dies_per_package = node.dies_per_package;
        }
    }
    if raw.smt_shift > raw.package_shift {
        return Err(DecodeError::BadShifts {
            smt_shift: raw.smt_shift,
            package_shift: raw.package_shift,
        });
    }
    let pkg_local = raw.apic_id & low_mask(raw.package_shift);
    let die_shift = raw.die_shift.unwrap_or(raw.package_shift);
    let threads = raw.threads_per_core.max(1);
    Ok(TopologyView {
        vendor,
        source: raw.source,
        apic_id: raw.apic_id,
        smt_shift: raw.smt_shift,
        die_shift,
        package_shift: raw.package_shift,
        package_id: raw.apic_id.checked_shr(raw.package_shift).unwrap_or(0),
        die_id: raw
            .die_id
            .unwrap_or_else(|| pkg_local.checked_shr(die_shift).unwrap_or(0)),
        core_id: pkg_local >> raw.smt_shift,
        thread_id: raw.apic_id & low_mask(raw.smt_shift),
        threads_per_core: raw.threads_per_core,
        logical_per_package: raw.logical_per_package,
        cores_per_package: raw.logical_per_package / threads,
        dies_per_package: raw.dies_per_package,
    })
}

/// Leaf 0xB or 0x1F; `None` when subleaf 0 reports no processors.
fn extended_leaf(t: &CpuidTable, leaf: u32) -> Result<Option<Raw>, DecodeError> {
    let bad = |problem| DecodeError::BadExtendedLeaf { leaf, problem };
    let mut smt = None;
    let mut last: Option<(u32, u32)> = None; // (shift, logical) of the previous level
    let mut die = None; // (shift below the die, logical per die)
    let mut apic_id = 0;
    for sub in 0..16 {
        let Some(r) = t.regs(CpuidKey::subleaf(leaf, sub)) else {
            break;
        };
        let kind = (r.ecx >> 8) & 0xff;
        let logical = r.ebx & 0xffff;
        if kind == 0 || logical == 0 {
            break;
        }
        let shift = r.eax & 0x1f;
        if sub == 0 {
            apic_id = r.edx;
        }
        if let Some((prev, _)) = last {
            if shift < prev {
                return Err(bad("a level's shift is below the previous level's"));
            }
        }
        match kind {
            1 => smt = Some((shift, logical)),
            5 => die = last,
            _ => {}
        }
        last = Some((shift, logical));
    }
    let Some((package_shift, logical_per_package)) = last else {
        return Ok(None);
    };
    let (smt_shift, threads) = smt.unwrap_or((0, 1));
    let (die_shift, dies) = match die {
        Some((s, per_die)) => (Some(s), (logical_per_package / per_die).max(1)),
        None => (None, 1),
    };
    Ok(Some(Raw {
        source: if leaf == 0x1f {
            TopologySource::Leaf1F
        } else {
            TopologySource::Leaf0B
        },
        apic_id,
        smt_shift,
        die_shift,
        package_shift,
        threads_per_core: threads,
        logical_per_package,
        dies_per_package: dies,
        die_id: None,
    }))
}

/// AMD 0x8000_0008 (+ 0x8000_001E with TOPOEXT).
fn amd_leaves(t: &CpuidTable) -> Option<Raw> {
    let max_ext = crate::normalize::max_extended_leaf(t);
    if max_ext < 0x8000_0008 {
        return None;
    }
    let ecx = t.regs(CpuidKey::leaf(0x8000_0008))?.ecx;
    let logical = (ecx & 0xff) + 1;
    let size = (ecx >> 12) & 0xf;
    let package_shift = if size == 0 {
        count_order(logical)
    } else {
        size
    };
    let topoext = t
        .regs(CpuidKey::leaf(0x8000_0001))
        .is_some_and(|r| r.ecx & TOPOEXT != 0);
    let ext = t.regs(CpuidKey::leaf(0x8000_001e));
    match ext {
        Some(e) if topoext && max_ext >= 0x8000_001e => {
            let threads = ((e.ebx >> 8) & 0xff) + 1;
            let nodes = ((e.ecx >> 8) & 0x7) + 1;
            Some(Raw {
                source: TopologySource::AmdTopoext,
                apic_id: e.eax,
                smt_shift: count_order(threads),
                die_shift: None,
                package_shift,
                threads_per_core: threads,
                logical_per_package: logical,
                dies_per_package: nodes,
                die_id: Some((e.ecx & 0xff) % nodes),
            })
        }
        _ => {
            let apic_id = t.regs(CpuidKey::leaf(1))?.ebx >> 24;
            Some(Raw {
                source: TopologySource::AmdLegacy,
                apic_id,
                smt_shift: 0,
                die_shift: None,
                package_shift,
                threads_per_core: 1,
                logical_per_package: logical,
                dies_per_package: 1,
                die_id: None,
            })
        }
    }
}

/// Leaf 0x1 (and Intel leaf 0x4).
fn leaf1(t: &CpuidTable, vendor: Option<Vendor>) -> Option<Raw> {
    let r = t.regs(CpuidKey::leaf(1))?;
    let apic_id = r.ebx >> 24;
    let htt = r.edx & (1 << 28) != 0;
    let logical = if htt {
        ((r.ebx >> 16) & 0xff).max(1)
    } else {
        1
    };
    let package_shift = count_order(logical);
    let cores = match (vendor, t.regs(CpuidKey::subleaf(4, 0))) {
        (Some(Vendor::Intel), Some(c)) if c.eax & 0x1f != 0 => ((c.eax >> 26) & 0x3f) + 1,
        _ => logical,
    };
    let threads = (logical / cores).max(1);
    Some(Raw {
        source: TopologySource::Leaf1,
        apic_id,
        smt_shift: count_order(threads),
        die_shift: None,
        package_shift,
        threads_per_core: threads,
        logical_per_package: logical,
        dies_per_package: 1,
        die_id: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CpuidEntry, CpuidRegs};

    fn table(rows: &[(u32, u32, [u32; 4])]) -> CpuidTable {
        rows.iter()
            .map(|&(leaf, sub, [eax, ebx, ecx, edx])| {
                (
                    CpuidKey::subleaf(leaf, sub),
                    CpuidEntry {
                        regs: CpuidRegs { eax, ebx, ecx, edx },
                        indexed: sub != 0,
                    },
                )
            })
            .collect()
    }

    const INTEL: [u32; 4] = [0x1f, 0x756e_6547, 0x6c65_746e, 0x4965_6e69];

    #[test]
    fn leaf_1f_with_dies() {
        // 2 threads, 3 cores (2 bits), 2 dies: apic 0b1_1_10_1 = package 1? no: package
        // shift 4, so apic 0x1d = package 1, die 1, core 2, thread 1.
        let t = table(&[
            (0, 0, INTEL),
            (0x1f, 0, [1, 2, 0x100, 0x1d]),
            (0x1f, 1, [3, 6, 0x201, 0x1d]),
            (0x1f, 2, [4, 12, 0x502, 0x1d]),
            (0x1f, 3, [0, 0, 3, 0x1d]),
        ]);
        let v = topology_view(&t).unwrap();
        assert_eq!(v.source, TopologySource::Leaf1F);
        assert_eq!(
            (v.package_id, v.die_id, v.core_id, v.thread_id),
            (1, 1, 0b110, 1)
        );
        assert_eq!((v.threads_per_core, v.logical_per_package), (2, 12));
        assert_eq!((v.cores_per_package, v.dies_per_package), (6, 2));
        assert_eq!((v.smt_shift, v.die_shift, v.package_shift), (1, 3, 4));
    }

    #[test]
    fn leaf1_fallback() {
        let mut leaf0 = INTEL;
        leaf0[0] = 1;
        // apic 5, 4 addressable ids, HTT; leaf 4 not in range: all logical are cores.
        let t = table(&[(0, 0, leaf0), (1, 0, [0, 0x0504_0800, 0, 1 << 28])]);
        let v = topology_view(&t).unwrap();
        assert_eq!(v.source, TopologySource::Leaf1);
        assert_eq!((v.package_id, v.core_id, v.thread_id), (1, 1, 0));
    }

    #[test]
    fn amd_topoext() {
        let amd = [0xd, 0x6874_7541, 0x444d_4163, 0x6974_6e65];
        let t = table(&[
            (0, 0, amd),
            (1, 0, [0, 0x0508_0800, 0, 1 << 28]),
            (0x8000_0000, 0, [0x8000_001e, 0, 0, 0]),
            (0x8000_0001, 0, [0, 0, TOPOEXT, 0]),
            (0x8000_0008, 0, [0, 0, 0x3005, 0]),
            (0x8000_001e, 0, [0x0d, 0x0106, 0x0101, 0]),
        ]);
        let v = topology_view(&t).unwrap();
        assert_eq!(v.source, TopologySource::AmdTopoext);
        assert_eq!(
            (v.package_id, v.core_id, v.thread_id, v.die_id),
            (1, 2, 1, 1)
        );
        assert_eq!((v.threads_per_core, v.logical_per_package), (2, 6));
        assert_eq!(v.dies_per_package, 2);
    }

    #[test]
    fn errors() {
        assert_eq!(
            topology_view(&CpuidTable::new()).unwrap_err().to_string(),
            "cannot decode the topology: the table has no leaf 0"
        );
        let t = table(&[
            (0, 0, INTEL),
            (0xb, 0, [4, 2, 0x100, 0]),
            (0xb, 1, [2, 4, 0x201, 0]),
        ]);
        assert_eq!(
            topology_view(&t).unwrap_err().to_string(),
            "cannot decode the topology from leaf 0xb: a level's shift is below the previous level's"
        );
        let t = table(&[(0, 0, INTEL)]);
        assert_eq!(topology_view(&t).unwrap_err(), DecodeError::NoApicIdLeaf);
    }
}

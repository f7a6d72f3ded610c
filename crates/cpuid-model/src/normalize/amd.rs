//! AMD-only topology leaves: 0x8000_0001 ECX (CmpLegacy), 0x8000_0008 ECX (ApicIdSize,
//! NC), 0x8000_001D (cache sharing), 0x8000_001E (extended APIC id, core and node ids)
//! and 0x8000_0026 (extended CPU topology, hidden).
//!
//! The node fields of 0x8000_001E ECX come from the dies (`socket * D + die`, `D - 1`
//! nodes per processor) unless the normalizer was given the vCPUs' NUMA nodes
//! ([`super::Normalizer::with_numa_nodes`]); [`node_id`] reads the node id back from a
//! vCPU's table.

use cpu_topology::TopologyPosition;

use super::{intel::sharing_ids, max_extended_leaf, patch_leaf, NormalizeError, Shape, Vendor};
use crate::{CpuidEntry, CpuidKey, CpuidRegs, CpuidTable};

/// Leaf of the extended APIC id, core id and node id.
pub(crate) const LEAF_EXT_APIC_ID: u32 = 0x8000_001e;
/// 0x8000_0001 `ECX[1]`: CmpLegacy.
pub const CMP_LEGACY: u32 = 1 << 1;
/// 0x8000_0001 `ECX[22]`: TOPOEXT (leaves 0x8000_001D and 0x8000_001E).
pub const TOPOEXT: u32 = 1 << 22;

/// 0x8000_001E `ECX[10:0]`: nodes per processor (`[10:8]`) and node id (`[7:0]`).
const NODE_FIELDS: u32 = 0x7ff;
/// Largest node id `ECX[7:0]` holds.
pub const MAX_NODE_ID: u32 = 0xff;

/// Leaf 0x8000_001D: the sharing field of every valid cache subleaf. Run for both
/// vendors: a `vendor=` override can leave either vendor's cache leaf in a table.
pub(crate) fn cache_sharing(t: &mut CpuidTable, s: &Shape) {
    for (key, e) in t.iter_mut() {
        if key.leaf != 0x8000_001d || e.regs.eax & 0x1f == 0 {
            continue;
        }
        let level = (e.regs.eax >> 5) & 0x7;
        let sharing = Shape::minus_one_clamped(sharing_ids(s, level), 12);
        e.regs.eax = (e.regs.eax & !(0xfff << 14)) | sharing << 14;
    }
}

/// Apply the AMD leaves to the template. With `numa_nodes` the node fields of
/// 0x8000_001E are per vCPU and the dies do not limit them.
pub(crate) fn apply(t: &mut CpuidTable, s: &Shape, numa_nodes: bool) -> Result<(), NormalizeError> {
    let topo = &s.topo;
    let per_pkg = topo.threads_per_socket();
    let max_ext = max_extended_leaf(t);

    // CmpLegacy says "the package has more than one logical processor". TOPOEXT is kept
    // as the base (host support and CPU model) says: it is never invented here.
    if let Some(e) = t.get_mut(CpuidKey::leaf(0x8000_0001)) {
        if per_pkg > 1 {
            e.regs.ecx |= CMP_LEGACY;
        } else {
            e.regs.ecx &= !CMP_LEGACY;
        }
    }

    if max_ext >= 0x8000_0008 {
        let shift = s.layout.socket_shift();
        if shift > 0xf {
            return Err(NormalizeError::AmdApicIdSizeTooWide { shift });
        }
        let nc = Shape::minus_one_clamped(per_pkg, 8);
        patch_leaf(t, CpuidKey::leaf(0x8000_0008), |r| {
            r.ecx = (r.ecx & !0xf0ff) | shift << 12 | nc;
        });
    }

    cache_sharing(t, s);

    if max_ext >= LEAF_EXT_APIC_ID {
        // EBX[7:0] (core id) is 8 bits: with more than 256 cores per socket it carries the
        // low 8 bits of the core index, as on QEMU. Guests take core ids from leaf 0xB,
        // which is always present and exact (DESIGN.md).
        let (dies, sockets) = (topo.dies(), topo.sockets());
        if !numa_nodes && (dies > 8 || u64::from(dies) * u64::from(sockets) > 256) {
            return Err(NormalizeError::AmdTooManyNodes { dies, sockets });
        }
        // Without NUMA nodes every vCPU has the same nodes-per-processor; with them it
        // depends on the vCPU's socket and is written per vCPU.
        let per_processor = if numa_nodes { 0 } else { (dies - 1) << 8 };
        let threads = Shape::minus_one_clamped(topo.threads(), 8);
        patch_leaf(t, CpuidKey::leaf(LEAF_EXT_APIC_ID), |r| {
            r.eax = 0;
            r.ebx = (r.ebx & !0xffff) | threads << 8;
            r.ecx = (r.ecx & !NODE_FIELDS) | per_processor;
        });
    }

    // Leaf 0x8000_0026 would describe the host's CCX/CCD/socket levels. Until it is
    // computed from the topology it is answered with zeros, which Linux reads as "absent"
    // and falls back to 0xB / 0x8000_001E.
    if t.iter().any(|(k, _)| k.leaf == 0x8000_0026) {
        t.remove_leaf(0x8000_0026);
        t.insert(
            CpuidKey::subleaf(0x8000_0026, 0),
            CpuidEntry {
                regs: CpuidRegs::default(),
                indexed: true,
            },
        );
    }
    Ok(())
}

/// Where a vCPU's 0x8000_001E node fields come from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum NodeSource {
    /// One node per die: node id `socket * D + die`; nodes per processor stays as the
    /// template has it (`D - 1`).
    Dies,
    /// A NUMA node: its id (at most [`MAX_NODE_ID`]) and the number of NUMA nodes with
    /// CPUs in the vCPU's socket, minus one (clamped to 3 bits).
    Numa { node: u32, per_processor: u32 },
}

/// Per-vCPU fields of 0x8000_001E: extended APIC id, core id within the socket (dense,
/// dies and modules included) and the node fields.
pub(crate) fn per_vcpu(
    t: &mut CpuidTable,
    s: &Shape,
    p: TopologyPosition,
    apic: u32,
    node: NodeSource,
) {
    let topo = &s.topo;
    let core = (p.die * topo.modules() + p.module) * topo.cores() + p.core;
    if let Some(e) = t.get_mut(CpuidKey::leaf(LEAF_EXT_APIC_ID)) {
        e.regs.eax = apic;
        e.regs.ebx = (e.regs.ebx & !0xff) | (core & 0xff);
        e.regs.ecx = match node {
            NodeSource::Dies => {
                let node = p.socket * topo.dies() + p.die;
                (e.regs.ecx & !0xff) | (node & 0xff)
            }
            NodeSource::Numa {
                node,
                per_processor,
            } => (e.regs.ecx & !NODE_FIELDS) | (per_processor & 0x7) << 8 | (node & 0xff),
        };
    }
}

/// The node id a guest reads from its CPUID: 0x8000_001E `ECX[7:0]`, when the table is
/// AMD's (or Hygon's), sets TOPOEXT (0x8000_0001 `ECX[22]`) and has the leaf in range, the
/// same conditions under which Linux reads the leaf. `None` otherwise (Intel has no CPUID
/// node id).
///
/// ```
/// use cpu_topology::{CpuTopology, VcpuIndex};
/// use cpuid_model::normalize::{amd, Normalizer};
/// use cpuid_model::{CpuidEntry, CpuidKey, CpuidRegs, CpuidTable};
///
/// let mut base = CpuidTable::new();
/// let mut put = |leaf, regs| base.insert(CpuidKey::leaf(leaf), CpuidEntry { regs, indexed: false });
/// // "AuthenticAMD", extended leaves up to 0x8000_001E, TOPOEXT set.
/// put(0, CpuidRegs { eax: 0xd, ebx: 0x6874_7541, ecx: 0x444d_4163, edx: 0x6974_6e65 });
/// put(0x8000_0000, CpuidRegs { eax: 0x8000_001e, ..Default::default() });
/// put(0x8000_0001, CpuidRegs { ecx: amd::TOPOEXT, ..Default::default() });
/// put(0x8000_001e, CpuidRegs::default());
/// let topo = CpuTopology::new(2, 1, 1, 2, 1, 4).unwrap();
/// // vCPUs 0 and 3 on node 0, 1 and 2 on node 1.
/// let n = Normalizer::with_numa_nodes(&base, &topo, &[0, 1, 1, 0]).unwrap();
/// assert_eq!(amd::node_id(&n.for_vcpu(VcpuIndex(2)).unwrap()), Some(1));
/// ```
pub fn node_id(t: &CpuidTable) -> Option<u32> {
    if Vendor::of(t) != Some(Vendor::Amd) || max_extended_leaf(t) < LEAF_EXT_APIC_ID {
        return None;
    }
    let topoext = t
        .regs(CpuidKey::leaf(0x8000_0001))
        .is_some_and(|r| r.ecx & TOPOEXT != 0);
    if !topoext {
        return None;
    }
    t.regs(CpuidKey::leaf(LEAF_EXT_APIC_ID))
        .map(|r| r.ecx & MAX_NODE_ID)
}

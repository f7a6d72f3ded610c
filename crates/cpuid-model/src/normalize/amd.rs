//! AMD-only topology leaves: 0x8000_0001 ECX (CmpLegacy), 0x8000_0008 ECX (ApicIdSize,
//! NC), 0x8000_001D (cache sharing), 0x8000_001E (extended APIC id, core and node ids)
//! and 0x8000_0026 (extended CPU topology, hidden).

use cpu_topology::TopologyPosition;

use super::{intel::sharing_ids, max_extended_leaf, patch_leaf, NormalizeError, Shape};
use crate::{CpuidEntry, CpuidKey, CpuidRegs, CpuidTable};

/// Leaf of the extended APIC id, core id and node id.
pub(crate) const LEAF_EXT_APIC_ID: u32 = 0x8000_001e;
/// 0x8000_0001 `ECX[1]`: CmpLegacy.
pub const CMP_LEGACY: u32 = 1 << 1;
/// 0x8000_0001 `ECX[22]`: TOPOEXT (leaves 0x8000_001D and 0x8000_001E).
pub const TOPOEXT: u32 = 1 << 22;

/// Apply the AMD leaves to the template.
pub(crate) fn apply(t: &mut CpuidTable, s: &Shape) -> Result<(), NormalizeError> {
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

    for (key, e) in t.iter_mut() {
        if key.leaf != 0x8000_001d || e.regs.eax & 0x1f == 0 {
            continue;
        }
        let level = (e.regs.eax >> 5) & 0x7;
        let sharing = Shape::minus_one_clamped(sharing_ids(s, level), 12);
        e.regs.eax = (e.regs.eax & !(0xfff << 14)) | sharing << 14;
    }

    if max_ext >= LEAF_EXT_APIC_ID {
        // EBX[7:0] (core id) is 8 bits: with more than 256 cores per socket it carries the
        // low 8 bits of the core index, as on QEMU. Guests take core ids from leaf 0xB,
        // which is always present and exact (DESIGN.md).
        let (dies, sockets) = (topo.dies(), topo.sockets());
        if dies > 8 || u64::from(dies) * u64::from(sockets) > 256 {
            return Err(NormalizeError::AmdTooManyNodes { dies, sockets });
        }
        let threads = Shape::minus_one_clamped(topo.threads(), 8);
        patch_leaf(t, CpuidKey::leaf(LEAF_EXT_APIC_ID), |r| {
            r.eax = 0;
            r.ebx = (r.ebx & !0xffff) | threads << 8;
            r.ecx = (r.ecx & !0x7ff) | (dies - 1) << 8;
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

/// Per-vCPU fields of 0x8000_001E: extended APIC id, core id within the socket (dense,
/// dies and modules included) and node id (the die, numbered across sockets).
pub(crate) fn per_vcpu(t: &mut CpuidTable, s: &Shape, p: TopologyPosition, apic: u32) {
    let topo = &s.topo;
    let core = (p.die * topo.modules() + p.module) * topo.cores() + p.core;
    let node = p.socket * topo.dies() + p.die;
    if let Some(e) = t.get_mut(CpuidKey::leaf(LEAF_EXT_APIC_ID)) {
        e.regs.eax = apic;
        e.regs.ebx = (e.regs.ebx & !0xff) | (core & 0xff);
        e.regs.ecx = (e.regs.ecx & !0xff) | (node & 0xff);
    }
}

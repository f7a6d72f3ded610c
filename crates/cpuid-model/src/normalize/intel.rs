//! Intel-only topology leaves: deterministic cache parameters (0x4) and V2 extended
//! topology (0x1F).

use super::{cover_basic_leaf, v2_levels, write_ext_topology, Shape};
use crate::CpuidTable;

/// Leaf 0x4 `EAX[31:26]`: addressable core ids in the package, minus one.
const CORES_MASK: u32 = 0x3f << 26;
/// Leaf 0x4 `EAX[25:14]`: addressable logical ids sharing this cache, minus one.
const SHARING_MASK: u32 = 0xfff << 14;

/// Apply the Intel leaves to the template.
pub(crate) fn apply(t: &mut CpuidTable, s: &Shape) {
    deterministic_caches(t, s);
    let topo = &s.topo;
    if topo.dies() > 1 || topo.modules() > 1 {
        write_ext_topology(t, 0x1f, &v2_levels(s));
        cover_basic_leaf(t, 0x1f);
    }
}

/// Addressable logical ids sharing a cache of `level`: L1 and L2 per core, L3 per die,
/// anything beyond per package. Powers of two, as software divides APIC ids by them.
pub(crate) fn sharing_ids(s: &Shape, level: u32) -> u32 {
    let l = &s.layout;
    let shift = match level {
        0..=2 => l.core_shift(),
        3 => l.die_shift(),
        _ => l.socket_shift(),
    };
    Shape::ids_below(shift)
}

/// Leaf 0x4: rewrite the sharing and core-count fields of every valid cache subleaf;
/// keep the cache geometry (type, level, ways, sets, line size) of the base table. Run for
/// both vendors: a `vendor=` override can leave either vendor's cache leaf in a table.
pub(crate) fn deterministic_caches(t: &mut CpuidTable, s: &Shape) {
    let l = &s.layout;
    let cores = Shape::ids_below(l.socket_shift() - l.core_shift());
    let cores_field = Shape::minus_one_clamped(cores, 6) << 26;
    for (key, e) in t.iter_mut() {
        if key.leaf != 4 {
            continue;
        }
        let eax = e.regs.eax;
        if eax & 0x1f == 0 {
            continue;
        }
        let level = (eax >> 5) & 0x7;
        let sharing = Shape::minus_one_clamped(sharing_ids(s, level), 12) << 14;
        e.regs.eax = (eax & !(CORES_MASK | SHARING_MASK)) | cores_field | sharing;
    }
}

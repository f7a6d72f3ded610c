//! Per-vCPU CPUID: the topology leaves of one vCPU, computed from a base table (the
//! host's supported CPUID after the CPU model is applied), a [`CpuTopology`] and the
//! vCPU's [`VcpuIndex`] (and, for AMD's node id, optionally the vCPU's NUMA node).
//!
//! A [`Normalizer`] is built once per (base table, topology): it fixes every field that
//! is the same on all vCPUs (counts, shifts, cache sharing) in a template. Then
//! [`Normalizer::for_vcpu`] copies the template and writes the few per-vCPU fields (APIC
//! ids, core and node ids), so tables for a thousand vCPUs cost a few milliseconds.
//!
//! Only the topology fields listed in the crate's DESIGN.md are written; every other bit of
//! the base table is kept as it is. The vendor (from the base table's leaf 0) selects the
//! vendor leaves: [`intel`] owns leaf 0x4 and 0x1F, [`amd`] owns 0x8000_0001 ECX,
//! 0x8000_0008 ECX, 0x8000_001D, 0x8000_001E and 0x8000_0026. Leaves 0x1 and 0xB are
//! common and live here. The cache leaves (0x4 and 0x8000_001D) are rewritten for either
//! vendor when present, since a `vendor=` override can leave the other vendor's there.

pub mod amd;
pub mod intel;

use std::collections::BTreeSet;

use cpu_topology::{ApicIdLayout, CpuTopology, TopologyError, VcpuIndex};

use crate::{CpuidEntry, CpuidKey, CpuidRegs, CpuidTable};

/// CPU vendor, from the 12-byte string of CPUID leaf 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vendor {
    /// `GenuineIntel`.
    Intel,
    /// `AuthenticAMD` (and Hygon's `HygonGenuine`, which follows AMD's leaves).
    Amd,
}

impl Vendor {
    /// Vendor of a 12-byte leaf-0 string, if known.
    pub fn from_bytes(v: &[u8; 12]) -> Option<Self> {
        match v {
            b"GenuineIntel" => Some(Self::Intel),
            b"AuthenticAMD" | b"HygonGenuine" => Some(Self::Amd),
            _ => None,
        }
    }

    /// Vendor of a table, if its leaf 0 is present and names a known vendor.
    pub fn of(table: &CpuidTable) -> Option<Self> {
        table.vendor().as_ref().and_then(Self::from_bytes)
    }
}

/// Errors computing per-vCPU CPUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    /// The base table lacks leaf 0, so neither the vendor nor the leaf ranges are known.
    #[error(
        "cannot normalize CPUID: the base table has no leaf 0 (vendor and highest basic leaf)"
    )]
    MissingLeaf0,
    /// The vendor string is neither Intel's nor AMD's.
    #[error("cannot normalize CPUID for vendor {vendor:?}: only GenuineIntel, AuthenticAMD and HygonGenuine are known")]
    UnsupportedVendor {
        /// The vendor string, lossily decoded.
        vendor: String,
    },
    /// The topology's APIC ids do not fit in 32 bits.
    #[error(
        "cannot normalize CPUID: the APIC ids of this topology need {bits} bits, more than 32"
    )]
    ApicIdTooWide {
        /// Bits needed by the widest APIC id.
        bits: u32,
    },
    /// The vCPU index is not a slot of the topology.
    #[error("cannot compute CPUID for vCPU {index}")]
    Vcpu {
        /// The index asked for.
        index: u32,
        /// Why the topology refused it.
        #[source]
        source: TopologyError,
    },
    /// AMD leaf 0x8000_0008 `ECX[15:12]` (ApicIdSize) is 4 bits wide.
    #[error(
        "cannot encode AMD leaf 0x80000008: ApicIdSize is 4 bits, the package shift is {shift}"
    )]
    AmdApicIdSizeTooWide {
        /// Bits of the APIC id below the package id.
        shift: u32,
    },
    /// AMD leaf 0x8000_001E ECX (nodes per package, node id) cannot hold the dies.
    #[error("cannot encode AMD leaf 0x8000001e: {dies} dies per socket and {sockets} sockets exceed 8 nodes per package or 256 node ids")]
    AmdTooManyNodes {
        /// Dies per socket.
        dies: u32,
        /// Sockets.
        sockets: u32,
    },
    /// The NUMA node list does not have one entry per vCPU slot.
    #[error("cannot normalize CPUID: {given} NUMA node entries given for {slots} vCPU slots (one per slot up to maxcpus)")]
    NumaNodeCount {
        /// Entries given.
        given: usize,
        /// The topology's `maxcpus`.
        slots: u32,
    },
    /// A NUMA node id does not fit AMD leaf 0x8000_001E `ECX[7:0]`.
    #[error("cannot encode AMD leaf 0x8000001e: vCPU {vcpu} is on NUMA node {node}, the node id field holds 0 to 255")]
    AmdNodeIdTooLarge {
        /// The vCPU slot.
        vcpu: u32,
        /// Its NUMA node.
        node: u32,
    },
}

/// Facts shared by every vCPU of one topology, computed once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub(crate) topo: CpuTopology,
    pub(crate) layout: ApicIdLayout,
}

impl Shape {
    /// Addressable ids (a power of two) below a shift.
    pub(crate) fn ids_below(shift: u32) -> u32 {
        1u32.checked_shl(shift).unwrap_or(u32::MAX)
    }

    /// `count - 1`, clamped to a field of `bits` bits.
    pub(crate) fn minus_one_clamped(count: u32, bits: u32) -> u32 {
        count.saturating_sub(1).min((1 << bits) - 1)
    }
}

/// `ceil(log2(count))`: bits of a level's id.
fn width(count: u32) -> u32 {
    if count <= 1 {
        0
    } else {
        32 - (count - 1).leading_zeros()
    }
}

/// Leaf 0x1 `EBX[31:24]` (initial APIC id) is owned by the per-vCPU pass.
const LEAF1_APIC_ID_MASK: u32 = 0xff00_0000;
/// Leaf 0x1 `EBX[23:16]`: addressable logical processor ids per package.
const LEAF1_LOGICAL_MASK: u32 = 0x00ff_0000;
/// Leaf 0x1 `EDX[28]`: HTT, more than one logical processor per package.
const LEAF1_HTT: u32 = 1 << 28;

/// Extended-topology level types (leaf 0xB/0x1F `ECX[15:8]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LevelType {
    Smt = 1,
    Core = 2,
    Module = 3,
    Die = 5,
}

/// One level of leaf 0xB or 0x1F: its type, the shift to the next level's id, and the
/// number of logical processors in one domain of the next level.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Level {
    pub(crate) kind: LevelType,
    pub(crate) shift: u32,
    pub(crate) logical: u32,
}

/// Write an extended topology leaf (0xB or 0x1F) from its levels, followed by the invalid
/// level that ends the enumeration. EDX (the x2APIC id) is left 0 for the per-vCPU pass.
pub(crate) fn write_ext_topology(t: &mut CpuidTable, leaf: u32, levels: &[Level]) {
    t.remove_leaf(leaf);
    for (i, l) in levels.iter().enumerate() {
        let i = i as u32;
        let regs = CpuidRegs {
            eax: l.shift & 0x1f,
            ebx: l.logical & 0xffff,
            ecx: (l.kind as u32) << 8 | (i & 0xff),
            edx: 0,
        };
        t.insert(
            CpuidKey::subleaf(leaf, i),
            CpuidEntry {
                regs,
                indexed: true,
            },
        );
    }
    let n = levels.len() as u32;
    let end = CpuidRegs {
        ecx: n & 0xff,
        ..CpuidRegs::default()
    };
    t.insert(
        CpuidKey::subleaf(leaf, n),
        CpuidEntry {
            regs: end,
            indexed: true,
        },
    );
}

/// Raise leaf 0 EAX (highest basic leaf) so that `leaf` is in range.
pub(crate) fn cover_basic_leaf(t: &mut CpuidTable, leaf: u32) {
    if let Some(e) = t.get_mut(CpuidKey::leaf(0)) {
        if e.regs.eax < leaf {
            e.regs.eax = leaf;
        }
    }
}

/// Highest extended leaf (0x8000_0000 EAX), or 0 when absent.
pub(crate) fn max_extended_leaf(t: &CpuidTable) -> u32 {
    t.regs(CpuidKey::leaf(0x8000_0000))
        .map(|r| r.eax)
        .filter(|&m| m >= 0x8000_0000)
        .unwrap_or(0)
}

/// Apply `f` to a leaf's registers, inserting a zero non-indexed entry when absent.
pub(crate) fn patch_leaf(t: &mut CpuidTable, key: CpuidKey, f: impl FnOnce(&mut CpuidRegs)) {
    match t.get_mut(key) {
        Some(e) => f(&mut e.regs),
        None => {
            let mut regs = CpuidRegs::default();
            f(&mut regs);
            t.insert(
                key,
                CpuidEntry {
                    regs,
                    indexed: key.subleaf != 0,
                },
            );
        }
    }
}

/// Per-vCPU CPUID from one base table and one topology.
///
/// ```
/// use cpu_topology::{CpuTopology, VcpuIndex};
/// use cpuid_model::normalize::Normalizer;
/// use cpuid_model::{CpuidEntry, CpuidKey, CpuidRegs, CpuidTable};
///
/// let mut base = CpuidTable::new();
/// // Leaf 0: highest basic leaf 0xb, "GenuineIntel".
/// let regs = CpuidRegs { eax: 0xb, ebx: 0x756e_6547, ecx: 0x6c65_746e, edx: 0x4965_6e69 };
/// base.insert(CpuidKey::leaf(0), CpuidEntry { regs, indexed: false });
/// let topo = CpuTopology::new(2, 1, 1, 3, 2, 12).unwrap();
/// let n = Normalizer::new(&base, &topo).unwrap();
/// let t = n.for_vcpu(VcpuIndex(7)).unwrap();
/// // vCPU 7 = socket 1, core 0, thread 1: APIC id 1 << 3 | 1.
/// assert_eq!(t.regs(CpuidKey::subleaf(0xb, 0)).unwrap().edx, 9);
/// ```
#[derive(Debug, Clone)]
pub struct Normalizer {
    template: CpuidTable,
    shape: Shape,
    vendor: Vendor,
    /// Extended topology leaves present in the template (0xB, 0x1F) and their level count.
    ext_leaves: Vec<(u32, u32)>,
    has_leaf1: bool,
    has_8000_001e: bool,
    /// The vCPUs' NUMA nodes, when given.
    numa: Option<NumaNodes>,
}

/// The NUMA node of every vCPU slot, and per socket the number of nodes with CPUs in it
/// minus one (AMD's nodes-per-processor field, clamped to 3 bits).
#[derive(Debug, Clone)]
struct NumaNodes {
    node_of: Vec<u32>,
    per_processor: Vec<u32>,
}

impl NumaNodes {
    fn new(topo: &CpuTopology, node_of: &[u32]) -> Result<Self, NormalizeError> {
        if node_of.len() != topo.max_cpus() as usize {
            return Err(NormalizeError::NumaNodeCount {
                given: node_of.len(),
                slots: topo.max_cpus(),
            });
        }
        let mut in_socket = vec![BTreeSet::new(); topo.sockets() as usize];
        for (i, &node) in node_of.iter().enumerate() {
            let index = VcpuIndex(i as u32);
            let pos = topo
                .position(index)
                .map_err(|source| NormalizeError::Vcpu {
                    index: index.0,
                    source,
                })?;
            if let Some(set) = in_socket.get_mut(pos.socket as usize) {
                set.insert(node);
            }
        }
        let per_processor = in_socket
            .iter()
            .map(|nodes| Shape::minus_one_clamped(nodes.len() as u32, 3))
            .collect();
        Ok(Self {
            node_of: node_of.to_vec(),
            per_processor,
        })
    }
}

impl Normalizer {
    /// Prepare the per-vCPU computation: checks the base table and the topology and fixes
    /// every vCPU-independent field. AMD node ids follow the dies (one node per die).
    pub fn new(base: &CpuidTable, topo: &CpuTopology) -> Result<Self, NormalizeError> {
        Self::build(base, topo, None)
    }

    /// Like [`Normalizer::new`], for a guest with NUMA nodes: `node_of[i]` is the NUMA node
    /// of vCPU slot `i`, one entry per slot up to `maxcpus` (hot-pluggable slots included).
    ///
    /// On AMD, leaf 0x8000_001E `ECX` then carries the vCPU's NUMA node as its node id
    /// (`[7:0]`) and, as nodes per processor (`[10:8]`), the number of NUMA nodes with
    /// CPUs in the vCPU's socket minus one (clamped to 7), so a guest that reads the leaf
    /// (Linux's AMD topology code) sees the nodes its ACPI SRAT describes. A node id above
    /// 255 is refused ([`NormalizeError::AmdNodeIdTooLarge`]); the die limit of
    /// [`NormalizeError::AmdTooManyNodes`] does not apply. Intel CPUID has no node id:
    /// Intel tables are the same as with [`Normalizer::new`].
    pub fn with_numa_nodes(
        base: &CpuidTable,
        topo: &CpuTopology,
        node_of: &[u32],
    ) -> Result<Self, NormalizeError> {
        Self::build(base, topo, Some(node_of))
    }

    fn build(
        base: &CpuidTable,
        topo: &CpuTopology,
        node_of: Option<&[u32]>,
    ) -> Result<Self, NormalizeError> {
        let vendor_bytes = base.vendor().ok_or(NormalizeError::MissingLeaf0)?;
        let vendor =
            Vendor::from_bytes(&vendor_bytes).ok_or_else(|| NormalizeError::UnsupportedVendor {
                vendor: String::from_utf8_lossy(&vendor_bytes).into_owned(),
            })?;
        let layout = topo.apic_layout();
        let bits = layout.socket_shift() + width(topo.sockets());
        if bits > 32 {
            return Err(NormalizeError::ApicIdTooWide { bits });
        }
        let shape = Shape {
            topo: *topo,
            layout,
        };

        let numa = node_of.map(|n| NumaNodes::new(topo, n)).transpose()?;
        if let (Vendor::Amd, Some(numa)) = (vendor, &numa) {
            let too_large = numa
                .node_of
                .iter()
                .enumerate()
                .find(|(_, &node)| node > amd::MAX_NODE_ID);
            if let Some((vcpu, &node)) = too_large {
                return Err(NormalizeError::AmdNodeIdTooLarge {
                    vcpu: vcpu as u32,
                    node,
                });
            }
        }

        let mut t = base.clone();
        common_leaves(&mut t, &shape);
        match vendor {
            Vendor::Intel => {
                intel::apply(&mut t, &shape);
                amd::cache_sharing(&mut t, &shape);
            }
            Vendor::Amd => {
                amd::apply(&mut t, &shape, numa.is_some())?;
                intel::deterministic_caches(&mut t, &shape);
            }
        }
        let ext_leaves = [0xb, 0x1f]
            .into_iter()
            .filter_map(|leaf| {
                let n = t.iter().filter(|(k, _)| k.leaf == leaf).count() as u32;
                (n > 0).then_some((leaf, n))
            })
            .collect();
        Ok(Self {
            has_leaf1: t.get(CpuidKey::leaf(1)).is_some(),
            has_8000_001e: t.get(CpuidKey::leaf(amd::LEAF_EXT_APIC_ID)).is_some(),
            template: t,
            shape,
            vendor,
            ext_leaves,
            numa,
        })
    }

    /// The NUMA node of a vCPU slot, when the normalizer was built with
    /// [`Normalizer::with_numa_nodes`].
    pub fn numa_node(&self, index: VcpuIndex) -> Option<u32> {
        self.numa
            .as_ref()
            .and_then(|n| n.node_of.get(index.0 as usize).copied())
    }

    /// Vendor of the base table.
    pub fn vendor(&self) -> Vendor {
        self.vendor
    }

    /// The table shared by all vCPUs, before the per-vCPU fields are written.
    pub fn template(&self) -> &CpuidTable {
        &self.template
    }

    /// CPUID of one vCPU slot (present or hot-pluggable).
    pub fn for_vcpu(&self, index: VcpuIndex) -> Result<CpuidTable, NormalizeError> {
        let vcpu_err = |source| NormalizeError::Vcpu {
            index: index.0,
            source,
        };
        let pos = self.shape.topo.position(index).map_err(vcpu_err)?;
        let apic = self.shape.layout.apic_id_of(pos).0;
        let mut t = self.template.clone();
        if self.has_leaf1 {
            if let Some(e) = t.get_mut(CpuidKey::leaf(1)) {
                e.regs.ebx = (e.regs.ebx & !LEAF1_APIC_ID_MASK) | (apic & 0xff) << 24;
            }
        }
        for &(leaf, n) in &self.ext_leaves {
            for sub in 0..n {
                if let Some(e) = t.get_mut(CpuidKey::subleaf(leaf, sub)) {
                    e.regs.edx = apic;
                }
            }
        }
        if self.vendor == Vendor::Amd && self.has_8000_001e {
            let node = match &self.numa {
                None => amd::NodeSource::Dies,
                Some(numa) => amd::NodeSource::Numa {
                    node: numa.node_of.get(index.0 as usize).copied().unwrap_or(0),
                    per_processor: numa
                        .per_processor
                        .get(pos.socket as usize)
                        .copied()
                        .unwrap_or(0),
                },
            };
            amd::per_vcpu(&mut t, &self.shape, pos, apic, node);
        }
        Ok(t)
    }
}

/// Leaves 0x1 and 0xB (both vendors), plus leaf 0 coverage.
fn common_leaves(t: &mut CpuidTable, s: &Shape) {
    let per_pkg = s.topo.threads_per_socket();
    if let Some(e) = t.get_mut(CpuidKey::leaf(1)) {
        let addressable = Shape::ids_below(s.layout.socket_shift()).min(0xff);
        e.regs.ebx = (e.regs.ebx & !LEAF1_LOGICAL_MASK) | addressable << 16;
        if per_pkg > 1 {
            e.regs.edx |= LEAF1_HTT;
        } else {
            e.regs.edx &= !LEAF1_HTT;
        }
    }
    let l = &s.layout;
    let levels = [
        Level {
            kind: LevelType::Smt,
            shift: l.core_shift(),
            logical: s.topo.threads(),
        },
        Level {
            kind: LevelType::Core,
            shift: l.socket_shift(),
            logical: per_pkg,
        },
    ];
    write_ext_topology(t, 0xb, &levels);
    cover_basic_leaf(t, 0xb);
    // A leaf 0x1F copied from the host would describe the host's dies: rewrite it too.
    if t.iter().any(|(k, _)| k.leaf == 0x1f) {
        write_ext_topology(t, 0x1f, &v2_levels(s));
    }
}

/// Levels of leaf 0x1F: SMT and core always, module and die when the topology has them.
pub(crate) fn v2_levels(s: &Shape) -> Vec<Level> {
    let (l, topo) = (&s.layout, &s.topo);
    let mut levels = vec![Level {
        kind: LevelType::Smt,
        shift: l.core_shift(),
        logical: topo.threads(),
    }];
    let per_module = topo.threads() * topo.cores();
    if topo.modules() > 1 {
        levels.push(Level {
            kind: LevelType::Core,
            shift: l.module_shift(),
            logical: per_module,
        });
        levels.push(Level {
            kind: LevelType::Module,
            shift: l.die_shift(),
            logical: topo.threads_per_die(),
        });
    } else {
        levels.push(Level {
            kind: LevelType::Core,
            shift: l.die_shift(),
            logical: topo.threads_per_die(),
        });
    }
    if topo.dies() > 1 {
        levels.push(Level {
            kind: LevelType::Die,
            shift: l.socket_shift(),
            logical: topo.threads_per_socket(),
        });
    } else if let Some(last) = levels.last_mut() {
        // Without a die level the last level reaches the package.
        last.shift = l.socket_shift();
        last.logical = topo.threads_per_socket();
    }
    levels
}

#[cfg(test)]
mod tests;

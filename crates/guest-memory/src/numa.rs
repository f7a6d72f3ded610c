//! Guest NUMA configuration: QEMU's `-numa` grammar, libvirt's `<cell>` as a config-file
//! form, and the checks that turn both into a [`NumaTopology`].
//!
//! Two steps, as in QEMU:
//!
//! 1. [`parse_numa`] reads one `-numa` argument into a [`NumaOption`]:
//!    - `node[,nodeid=N][,cpus=A[-B]]...[,mem=SIZE | ,memdev=ID]` (`cpus` may repeat; a
//!      `mem` size without suffix is MiB);
//!    - `dist,src=A,dst=B,val=V`.
//! 2. [`NumaConfig::resolve`] checks all options together against the machine
//!    ([`NumaMachine`]: RAM size, `maxcpus`, CPUs per socket, the memory backends) and
//!    yields per-node CPUs, sizes and the full distance matrix.
//!
//! Rules taken from QEMU (`hw/core/numa.c`, `hw/core/machine.c`), with QEMU's wording
//! where QEMU has a message: a missing `nodeid` is the number of nodes declared so far;
//! node ids are below [`MAX_NODES`] and dense (`numa: Node ID missing: 1`); `mem=` and
//! `memdev=` cannot be mixed across nodes; node sizes add up to `-m` exactly; a CPU belongs
//! to at most one node; distances are 10 (local, and only local) to 255; one direction of a
//! pair is enough (the other gets the same value) unless some pair is asymmetric, in which
//! case every direction must be given.
//!
//! CPUs no node names: when *no* node names any CPU, QEMU's default x86 mapping applies
//! (node = socket % nodes). When some CPUs are named and others are not, QEMU puts the rest
//! on node 0 with a deprecation warning; here the caller chooses with [`UnassignedCpus`]:
//! [`UnassignedCpus::Reject`] (an error) or [`UnassignedCpus::NodeZero`] (QEMU's behaviour,
//! reported as a [`NumaWarning`], never silently).
//!
//! This module is pure: no host access.

use cpu_topology::VcpuIndex;
use thiserror::Error;

use crate::backend::MemoryBackendConfig;
use crate::layout::{LayoutError, MemoryLayout, NodeId};
use crate::size::SizeError;

/// Number of guest NUMA nodes QEMU supports (`MAX_NODES`): node ids are `0..128`.
pub const MAX_NODES: u32 = 128;

/// Distance of a node to itself (ACPI SLIT): always 10.
pub const LOCAL_DISTANCE: u8 = 10;

/// Distance between two nodes when no `-numa dist` is given at all: 20.
pub const DEFAULT_REMOTE_DISTANCE: u8 = 20;

/// Where a node's memory comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeMemory {
    /// Neither `mem=` nor `memdev=`: a memory-less node (size 0).
    None,
    /// Legacy `mem=SIZE`: anonymous RAM of that many bytes.
    Size(u64),
    /// `memdev=ID`: the memory backend object with that id.
    Memdev(String),
}

/// One `-numa node` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumaNodeOption {
    /// `nodeid=`, or `None` for "the number of nodes declared before this one".
    pub nodeid: Option<u32>,
    /// `cpus=` ranges, inclusive, in the order given.
    pub cpus: Vec<(u32, u32)>,
    /// `mem=` or `memdev=`.
    pub memory: NodeMemory,
}

/// One `-numa dist` option: the distance from `src` to `dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumaDistOption {
    /// Source node id.
    pub src: u32,
    /// Destination node id.
    pub dst: u32,
    /// Distance, 10 for a node to itself, 10..=255 otherwise.
    pub val: u8,
}

/// One parsed `-numa` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NumaOption {
    /// `-numa node,...`
    Node(NumaNodeOption),
    /// `-numa dist,...`
    Dist(NumaDistOption),
}

/// Why a `-numa` argument or a NUMA configuration was refused. One line each; where QEMU
/// has a message for the same mistake, the text is QEMU's.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NumaError {
    /// An empty `-numa` argument.
    #[error("-numa needs a type: node or dist")]
    MissingType,
    /// A type other than `node` and `dist`.
    #[error("-numa type '{0}' is not supported (expected node or dist)")]
    UnknownType(String),
    /// A parameter the type does not know.
    #[error("-numa {kind}: invalid parameter '{key}'")]
    UnknownParameter {
        /// `node` or `dist`.
        kind: &'static str,
        /// The parameter name.
        key: String,
    },
    /// A parameter without `=value`, or with an empty value.
    #[error("-numa {kind}: parameter '{key}' has no value")]
    MissingValue {
        /// `node` or `dist`.
        kind: &'static str,
        /// The parameter name.
        key: String,
    },
    /// A parameter that may appear once appears again.
    #[error("-numa {kind}: parameter '{key}' is given more than once")]
    Duplicate {
        /// `node` or `dist`.
        kind: &'static str,
        /// The parameter name.
        key: String,
    },
    /// A required parameter is absent.
    #[error("-numa {kind}: parameter '{key}' is missing")]
    Missing {
        /// `node` or `dist`.
        kind: &'static str,
        /// The parameter name.
        key: &'static str,
    },
    /// A value that is not a number in range.
    #[error("-numa {kind}: parameter '{key}' expects an integer from 0 to {max}, got '{value}'")]
    BadNumber {
        /// `node` or `dist`.
        kind: &'static str,
        /// The parameter name.
        key: &'static str,
        /// The text given.
        value: String,
        /// Largest value the parameter takes.
        max: u64,
    },
    /// `cpus=` that is not `N` or `A-B` with `A <= B`.
    #[error("-numa node: parameter 'cpus' expects a CPU index or a range A-B, got '{0}'")]
    BadCpus(String),
    /// `mem=` that is not a size.
    #[error("-numa node: parameter 'mem' is not a size: {0}")]
    BadSize(#[source] SizeError),
    /// `mem=` and `memdev=` in one node, or in different nodes.
    #[error("numa configuration should use either mem= or memdev=,mixing both is not allowed")]
    MemAndMemdev,
    /// No `-numa node` at all.
    #[error("NUMA configuration has no nodes")]
    NoNodes,
    /// A node id of [`MAX_NODES`] or more.
    #[error("Max number of NUMA nodes reached: {0}")]
    TooManyNodes(u32),
    /// Two nodes with the same id.
    #[error("Duplicate NUMA nodeid: {0}")]
    DuplicateNode(u32),
    /// Node ids with a gap.
    #[error("numa: Node ID missing: {0}")]
    NodeMissing(u32),
    /// A CPU index at or above `maxcpus`.
    #[error("CPU index ({cpu}) should be smaller than maxcpus ({max_cpus})")]
    CpuOutOfRange {
        /// The CPU index.
        cpu: u32,
        /// The machine's `maxcpus`.
        max_cpus: u32,
    },
    /// A CPU named by two nodes.
    #[error("CPU {cpu} is already assigned to node-id: {node}")]
    CpuInTwoNodes {
        /// The CPU index.
        cpu: u32,
        /// The node that named it first.
        node: u32,
    },
    /// CPUs no node names, with [`UnassignedCpus::Reject`].
    #[error(
        "CPU(s) not present in any NUMA nodes: {0} (every CPU up to maxcpus must be in a node)"
    )]
    UnassignedCpus(String),
    /// `memdev=` naming no backend object.
    #[error("memdev={0} names no memory backend (define it with --object memory-backend-ram,id={0},size=...)")]
    UnknownMemdev(String),
    /// One backend used by two nodes.
    #[error("memory backend '{memdev}' is used by node {first} and node {second}")]
    MemdevReused {
        /// The backend id.
        memdev: String,
        /// The first node using it.
        first: u32,
        /// The second node using it.
        second: u32,
    },
    /// A node size that is not a multiple of 4 KiB.
    #[error("memory size {size:#x} of NUMA node {node} is not a multiple of 4 KiB")]
    UnalignedNode {
        /// The node id.
        node: u32,
        /// Its size.
        size: u64,
    },
    /// Node sizes that do not add up to the RAM size.
    #[error("total memory for NUMA nodes ({total:#x}) should equal RAM size ({ram:#x})")]
    TotalMismatch {
        /// Sum of the node sizes.
        total: u64,
        /// `-m`.
        ram: u64,
    },
    /// `dist` with `src` or `dst` of [`MAX_NODES`] or more.
    #[error("Parameter '{0}' expects an integer between 0 and 127")]
    DistNodeRange(&'static str),
    /// `dist` naming an undeclared node.
    #[error("Source/Destination NUMA node is missing. Please use '-numa node' option to declare it first.")]
    DistNodeMissing,
    /// A distance below 10.
    #[error("NUMA distance ({0}) is invalid, it shouldn't be less than 10.")]
    DistanceTooSmall(u8),
    /// A node's distance to itself other than 10.
    #[error("Local distance of node {0} should be 10.")]
    LocalDistance(u32),
    /// A pair with no distance in either direction.
    #[error("The distance between node {0} and {1} is missing, at least one distance value between each nodes should be provided.")]
    DistanceMissing(u32, u32),
    /// An asymmetric table with a direction missing.
    #[error("At least one asymmetrical pair of distances is given, please provide distances for both directions of all node pairs.")]
    AsymmetricIncomplete,
    /// A libvirt cell with a bad `cpus` list or `unit`.
    #[error("NUMA cell {id}: {reason}")]
    BadCell {
        /// The cell id.
        id: u32,
        /// What is wrong.
        reason: String,
    },
    /// A libvirt domain XML document that does not parse or has a malformed `<cell>`.
    #[error("libvirt XML: {0}")]
    LibvirtXml(String),
    /// The per-node layout was refused.
    #[error("NUMA memory layout failed: {0}")]
    Layout(#[source] LayoutError),
}

/// What [`NumaConfig::resolve`] does with CPUs no node names, when some CPUs are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnassignedCpus {
    /// Refuse the configuration with [`NumaError::UnassignedCpus`].
    #[default]
    Reject,
    /// QEMU's (deprecated) behaviour: put them on node 0 and report
    /// [`NumaWarning::CpusOnNodeZero`].
    NodeZero,
}

/// Something accepted that QEMU warns about; the caller decides how to show it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NumaWarning {
    /// `mem=` was used.
    #[error("Parameter -numa node,mem is deprecated, use -numa node,memdev instead")]
    LegacyMem,
    /// Some CPUs were named by no node and went to node 0.
    #[error("CPU(s) not present in any NUMA nodes: {0}; they were put on node 0 (partial NUMA mappings are deprecated)")]
    CpusOnNodeZero(String),
}

/// The machine a NUMA configuration is checked against.
#[derive(Debug, Clone, Copy)]
pub struct NumaMachine<'a> {
    /// Guest RAM (`-m`) in bytes.
    pub ram_size: u64,
    /// `maxcpus`: CPU indices are `0..max_cpus`.
    pub max_cpus: u32,
    /// Logical CPUs per socket, for QEMU's default mapping (node = socket % nodes).
    pub cpus_per_socket: u32,
    /// The memory backend objects (`--object memory-backend-*`) `memdev=` may name.
    pub backends: &'a [MemoryBackendConfig],
    /// What to do with CPUs no node names.
    pub unassigned: UnassignedCpus,
}

/// All `-numa` options of a command line (or config file), in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NumaConfig {
    /// The options in the order given; order matters for default node ids.
    pub options: Vec<NumaOption>,
}

/// One node of a resolved configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumaNode {
    /// The node id (`0..nodes`, dense).
    pub id: NodeId,
    /// Its vCPUs, ascending.
    pub cpus: Vec<VcpuIndex>,
    /// Its RAM in bytes (0 for a memory-less node).
    pub size: u64,
    /// The backend id for `memdev=`, `None` for `mem=` or no memory.
    pub memdev: Option<String>,
}

/// What an ACPI SRAT says about one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAffinity {
    /// The node (SRAT proximity domain).
    pub node: NodeId,
    /// Guest-physical RAM ranges as `(start, size)`, ascending.
    pub memory: Vec<(u64, u64)>,
    /// The node's vCPUs, ascending.
    pub cpus: Vec<VcpuIndex>,
}

/// A checked NUMA configuration: nodes in id order and the full distance matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumaTopology {
    nodes: Vec<NumaNode>,
    distances: Vec<Vec<u8>>,
    warnings: Vec<NumaWarning>,
}

impl NumaTopology {
    /// The nodes in id order (ids are `0..len`).
    pub fn nodes(&self) -> &[NumaNode] {
        &self.nodes
    }

    /// Distance from `src` to `dst` (the ACPI SLIT entry), `None` for an unknown node.
    pub fn distance(&self, src: NodeId, dst: NodeId) -> Option<u8> {
        self.distances
            .get(src.0 as usize)
            .and_then(|row| row.get(dst.0 as usize))
            .copied()
    }

    /// The full distance matrix, row = source node.
    pub fn distances(&self) -> &[Vec<u8>] {
        &self.distances
    }

    /// What QEMU would have warned about.
    pub fn warnings(&self) -> &[NumaWarning] {
        &self.warnings
    }

    /// Each `memdev=` node with its backend, the input of
    /// [`GuestRam::with_backends`](crate::ram::GuestRam::with_backends). Nodes with `mem=`
    /// or without memory are not listed (they get anonymous RAM).
    pub fn node_backends<'a>(
        &self,
        backends: &'a [MemoryBackendConfig],
    ) -> Vec<(NodeId, &'a MemoryBackendConfig)> {
        self.nodes
            .iter()
            .filter_map(|n| {
                let id = n.memdev.as_deref()?;
                backends.iter().find(|b| b.id == id).map(|b| (n.id, b))
            })
            .collect()
    }

    /// Per node: its guest-physical RAM ranges in `layout` (one, two when split by the
    /// hole, none for a memory-less node) and its CPUs: the input of an ACPI SRAT (memory
    /// and processor affinity entries).
    pub fn srat_input(&self, layout: &MemoryLayout) -> Vec<NodeAffinity> {
        self.nodes
            .iter()
            .map(|n| NodeAffinity {
                node: n.id,
                memory: layout
                    .node_regions(n.id)
                    .map(|r| (r.gpa.0, r.size))
                    .collect(),
                cpus: n.cpus.clone(),
            })
            .collect()
    }

    /// The node of a vCPU.
    pub fn node_of_cpu(&self, cpu: VcpuIndex) -> Option<NodeId> {
        self.nodes
            .iter()
            .find(|n| n.cpus.binary_search(&cpu).is_ok())
            .map(|n| n.id)
    }

    /// The x86-64 layout with each node's RAM in id order (see
    /// [`MemoryLayout::x86_64_numa`]).
    pub fn layout(&self) -> Result<MemoryLayout, NumaError> {
        let sizes: Vec<(NodeId, u64)> = self.nodes.iter().map(|n| (n.id, n.size)).collect();
        MemoryLayout::x86_64_numa(&sizes).map_err(NumaError::Layout)
    }

    /// HMP `info numa` text, as QEMU prints it (`node 0 cpus: 0 1`, `node 0 size: 512 MB`).
    pub fn info_numa(&self) -> String {
        let mut out = format!("{} nodes\n", self.nodes.len());
        for node in &self.nodes {
            let cpus: Vec<String> = node.cpus.iter().map(|c| c.0.to_string()).collect();
            out.push_str(&format!("node {} cpus: {}\n", node.id.0, cpus.join(" ")));
            out.push_str(&format!(
                "node {} size: {} MB\n",
                node.id.0,
                node.size >> 20
            ));
            out.push_str(&format!("node {} plugged: 0 MB\n", node.id.0));
        }
        out
    }
}

/// Parses a size the way `mem=` does (plain number = MiB); exposed for the fuzzer.
pub fn parse_node_mem(value: &str) -> Result<u64, NumaError> {
    crate::size::parse_scaled(value, 1 << 20).map_err(NumaError::BadSize)
}

mod cell;
#[cfg(feature = "libvirt-xml")]
mod libvirt;
mod parse;
mod resolve;
#[cfg(test)]
mod tests;

pub use cell::{NumaCell, NumaSibling};
#[cfg(feature = "libvirt-xml")]
pub use libvirt::cells_from_libvirt_xml;
pub use parse::parse_numa;

//! [`NumaConfig::resolve`]: the checks that turn `-numa` options into a [`NumaTopology`].

use std::collections::BTreeMap;

use cpu_topology::VcpuIndex;

use super::parse::parse_numa;
use super::{
    NodeMemory, NumaConfig, NumaError, NumaMachine, NumaNode, NumaOption, NumaTopology,
    NumaWarning, UnassignedCpus, DEFAULT_REMOTE_DISTANCE, LOCAL_DISTANCE, MAX_NODES,
};
use crate::layout::{NodeId, PAGE_SIZE};

/// Collects CPU indices as `0-3, 8` text.
fn cpu_list_text(cpus: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(", ")
}

impl NumaConfig {
    /// Parses every argument with [`parse_numa`].
    pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Self, NumaError> {
        let options = args.into_iter().map(parse_numa).collect::<Result<_, _>>()?;
        Ok(Self { options })
    }

    /// Whether there are no options (the guest then has no NUMA description).
    pub fn is_empty(&self) -> bool {
        self.options.is_empty()
    }

    /// Checks the options against `machine` and completes them (default node ids, CPU
    /// mapping, symmetric distances).
    pub fn resolve(&self, machine: &NumaMachine<'_>) -> Result<NumaTopology, NumaError> {
        let mut warnings = Vec::new();
        // Pass 1: nodes, in order (QEMU's default nodeid is the count so far).
        let mut nodes: BTreeMap<u32, (Vec<u32>, u64, Option<String>)> = BTreeMap::new();
        let mut owner: BTreeMap<u32, u32> = BTreeMap::new();
        let mut memdev_user: BTreeMap<&str, u32> = BTreeMap::new();
        let (mut any_mem, mut any_memdev) = (false, false);
        for option in &self.options {
            let NumaOption::Node(node) = option else {
                continue;
            };
            let id = node.nodeid.unwrap_or(nodes.len() as u32);
            if id >= MAX_NODES {
                return Err(NumaError::TooManyNodes(id));
            }
            if nodes.contains_key(&id) {
                return Err(NumaError::DuplicateNode(id));
            }
            let mut cpus = Vec::new();
            for &(lo, hi) in &node.cpus {
                if hi >= machine.max_cpus {
                    let cpu = if lo >= machine.max_cpus {
                        lo
                    } else {
                        machine.max_cpus
                    };
                    return Err(NumaError::CpuOutOfRange {
                        cpu,
                        max_cpus: machine.max_cpus,
                    });
                }
                for cpu in lo..=hi {
                    match owner.get(&cpu) {
                        Some(&other) if other != id => {
                            return Err(NumaError::CpuInTwoNodes { cpu, node: other })
                        }
                        _ => {
                            owner.insert(cpu, id);
                            cpus.push(cpu);
                        }
                    }
                }
            }
            let (size, memdev) = match &node.memory {
                NodeMemory::None => (0, None),
                NodeMemory::Size(bytes) => {
                    if any_memdev {
                        return Err(NumaError::MemAndMemdev);
                    }
                    if !any_mem {
                        warnings.push(NumaWarning::LegacyMem);
                    }
                    any_mem = true;
                    (*bytes, None)
                }
                NodeMemory::Memdev(name) => {
                    if any_mem {
                        return Err(NumaError::MemAndMemdev);
                    }
                    any_memdev = true;
                    let backend = machine
                        .backends
                        .iter()
                        .find(|b| b.id == *name)
                        .ok_or_else(|| NumaError::UnknownMemdev(name.clone()))?;
                    if let Some(&first) = memdev_user.get(name.as_str()) {
                        return Err(NumaError::MemdevReused {
                            memdev: name.clone(),
                            first,
                            second: id,
                        });
                    }
                    memdev_user.insert(name, id);
                    (backend.size, Some(name.clone()))
                }
            };
            if size % PAGE_SIZE != 0 {
                return Err(NumaError::UnalignedNode { node: id, size });
            }
            nodes.insert(id, (cpus, size, memdev));
        }
        if nodes.is_empty() {
            return Err(NumaError::NoNodes);
        }
        let count = nodes.len() as u32;
        // Dense ids; report the largest gap first, like QEMU.
        if let Some(&max) = nodes.keys().next_back() {
            if let Some(gap) = (0..max).rev().find(|i| !nodes.contains_key(i)) {
                return Err(NumaError::NodeMissing(gap));
            }
        }
        let total: u64 = nodes.values().map(|n| n.1).fold(0, u64::saturating_add);
        if total != machine.ram_size {
            return Err(NumaError::TotalMismatch {
                total,
                ram: machine.ram_size,
            });
        }
        // CPUs no node named.
        let unassigned: Vec<u32> = (0..machine.max_cpus)
            .filter(|c| !owner.contains_key(c))
            .collect();
        if owner.is_empty() {
            let per_socket = machine.cpus_per_socket.max(1);
            for cpu in unassigned {
                let node = (cpu / per_socket) % count;
                if let Some(n) = nodes.get_mut(&node) {
                    n.0.push(cpu);
                }
            }
        } else if !unassigned.is_empty() {
            let text = cpu_list_text(&unassigned);
            match machine.unassigned {
                UnassignedCpus::Reject => return Err(NumaError::UnassignedCpus(text)),
                UnassignedCpus::NodeZero => {
                    if let Some(n) = nodes.get_mut(&0) {
                        n.0.extend(unassigned);
                    }
                    warnings.push(NumaWarning::CpusOnNodeZero(text));
                }
            }
        }
        let distances = self.distances(count)?;
        let nodes = nodes
            .into_iter()
            .map(|(id, (mut cpus, size, memdev))| {
                cpus.sort_unstable();
                cpus.dedup();
                NumaNode {
                    id: NodeId(id),
                    cpus: cpus.into_iter().map(VcpuIndex).collect(),
                    size,
                    memdev,
                }
            })
            .collect();
        Ok(NumaTopology {
            nodes,
            distances,
            warnings,
        })
    }

    /// The complete distance matrix for `count` dense nodes.
    // Matrix code reads best with both indices spelled out (table[src][dst] vs [dst][src]).
    #[allow(clippy::needless_range_loop)]
    fn distances(&self, count: u32) -> Result<Vec<Vec<u8>>, NumaError> {
        let n = count as usize;
        let mut table = vec![vec![0u8; n]; n];
        let mut any = false;
        for option in &self.options {
            let NumaOption::Dist(d) = option else {
                continue;
            };
            if d.src >= MAX_NODES || d.dst >= MAX_NODES {
                return Err(NumaError::DistNodeRange(if d.src >= MAX_NODES {
                    "src"
                } else {
                    "dst"
                }));
            }
            if d.src >= count || d.dst >= count {
                return Err(NumaError::DistNodeMissing);
            }
            if d.val < LOCAL_DISTANCE {
                return Err(NumaError::DistanceTooSmall(d.val));
            }
            if d.src == d.dst && d.val != LOCAL_DISTANCE {
                return Err(NumaError::LocalDistance(d.src));
            }
            table[d.src as usize][d.dst as usize] = d.val;
            any = true;
        }
        if !any {
            for (i, row) in table.iter_mut().enumerate() {
                for (j, cell) in row.iter_mut().enumerate() {
                    *cell = if i == j {
                        LOCAL_DISTANCE
                    } else {
                        DEFAULT_REMOTE_DISTANCE
                    };
                }
            }
            return Ok(table);
        }
        let mut asymmetric = false;
        for src in 0..n {
            for dst in src..n {
                let (ab, ba) = (table[src][dst], table[dst][src]);
                if ab == 0 && ba == 0 && src != dst {
                    return Err(NumaError::DistanceMissing(src as u32, dst as u32));
                }
                asymmetric |= ab != 0 && ba != 0 && ab != ba;
            }
        }
        if asymmetric && (0..n).any(|s| (0..n).any(|d| s != d && table[s][d] == 0)) {
            return Err(NumaError::AsymmetricIncomplete);
        }
        for src in 0..n {
            for dst in 0..n {
                if table[src][dst] == 0 {
                    table[src][dst] = if src == dst {
                        LOCAL_DISTANCE
                    } else {
                        table[dst][src]
                    };
                }
            }
        }
        Ok(table)
    }
}

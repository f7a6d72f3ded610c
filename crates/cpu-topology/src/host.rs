//! Host CPU inventory read from sysfs, with an injectable root directory.
//!
//! [`HostCpuInventory::read`] reads `/sys` of the running host;
//! [`HostCpuInventory::read_from`] reads a tree under another root (tests use fixture trees
//! under `tests/fixtures/`). [`HostCpuInventory::uniform`] builds a synthetic host without
//! any file, for property tests of placement policies.
//!
//! Files read, relative to the root:
//!
//! | file | meaning | when missing |
//! |---|---|---|
//! | `sys/devices/system/cpu/online` | online CPUs | error |
//! | `sys/devices/system/cpu/{possible,present}` | possible / present CPUs | the online set |
//! | `sys/devices/system/cpu/isolated` | `isolcpus=` CPUs | empty |
//! | `sys/devices/system/cpu/nohz_full` | `nohz_full=` CPUs (`(null)` = none) | empty |
//! | `sys/devices/system/cpu/cpuN/topology/physical_package_id`, `die_id`, `core_id`, `thread_siblings_list` | position of each online CPU | package 0, no die, core = N, siblings = {N} |
//! | `sys/devices/system/node/nodeN/cpulist` | CPUs of NUMA node N | no NUMA information |

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::cpuset::{CpuSetError, HostCpuId, HostCpuSet, LIMIT_CEILING};

/// Why the inventory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A required file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A cpu-list file did not parse.
    #[error("cannot parse the CPU list in {}", path.display())]
    ParseList {
        /// The file.
        path: PathBuf,
        /// The grammar error.
        #[source]
        source: CpuSetError,
    },
    /// A file that should hold one integer held something else.
    #[error("{} holds `{text}`, expected an integer", path.display())]
    ParseNumber {
        /// The file.
        path: PathBuf,
        /// Its (trimmed) content.
        text: String,
    },
}

/// Position of one online host CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCpuInfo {
    /// The CPU.
    pub id: HostCpuId,
    /// `physical_package_id` (socket).
    pub package: u32,
    /// `die_id`, on kernels and machines that report it.
    pub die: Option<u32>,
    /// `core_id` (unique within the package and die, not across packages).
    pub core: u32,
    /// `thread_siblings_list`: the CPUs sharing this CPU's core, itself included.
    pub thread_siblings: HostCpuSet,
    /// NUMA node holding the CPU, when the host reports nodes.
    pub node: Option<u32>,
}

/// What the host kernel says about its CPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCpuInventory {
    online: HostCpuSet,
    possible: HostCpuSet,
    present: HostCpuSet,
    isolated: HostCpuSet,
    nohz_full: HostCpuSet,
    cpus: BTreeMap<HostCpuId, HostCpuInfo>,
    nodes: BTreeMap<u32, HostCpuSet>,
}

fn read_text(path: &Path) -> Result<Option<String>, HostError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(HostError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Reads a cpu-list file. An empty file or `(null)` is the empty set; a missing file is
/// `None`.
fn read_list(path: &Path) -> Result<Option<HostCpuSet>, HostError> {
    let Some(text) = read_text(path)? else {
        return Ok(None);
    };
    let text = text.trim();
    if text.is_empty() || text == "(null)" {
        return Ok(Some(HostCpuSet::new()));
    }
    HostCpuSet::parse_cpu_list(text, LIMIT_CEILING)
        .map(Some)
        .map_err(|source| HostError::ParseList {
            path: path.to_path_buf(),
            source,
        })
}

/// Reads a file holding one integer; negative values (the kernel's "unknown", -1) and
/// missing files are `None`.
fn read_number(path: &Path) -> Result<Option<u32>, HostError> {
    let Some(text) = read_text(path)? else {
        return Ok(None);
    };
    let text = text.trim();
    match text.parse::<i64>() {
        Ok(v) => Ok(u32::try_from(v).ok()),
        Err(_) => Err(HostError::ParseNumber {
            path: path.to_path_buf(),
            text: text.to_string(),
        }),
    }
}

impl HostCpuInventory {
    /// Reads the running host's `/sys`.
    pub fn read() -> Result<Self, HostError> {
        Self::read_from(Path::new("/"))
    }

    /// Reads `sys/devices/system/...` under `root`.
    pub fn read_from(root: &Path) -> Result<Self, HostError> {
        let cpu_dir = root.join("sys/devices/system/cpu");
        let online_path = cpu_dir.join("online");
        let online = read_list(&online_path)?.ok_or_else(|| HostError::Read {
            path: online_path.clone(),
            source: io::Error::from(io::ErrorKind::NotFound),
        })?;
        let possible = read_list(&cpu_dir.join("possible"))?.unwrap_or_else(|| online.clone());
        let present = read_list(&cpu_dir.join("present"))?.unwrap_or_else(|| online.clone());
        let isolated = read_list(&cpu_dir.join("isolated"))?.unwrap_or_default();
        let nohz_full = read_list(&cpu_dir.join("nohz_full"))?.unwrap_or_default();

        let mut nodes = BTreeMap::new();
        let node_dir = root.join("sys/devices/system/node");
        if let Ok(entries) = fs::read_dir(&node_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(id) = name
                    .to_str()
                    .and_then(|n| n.strip_prefix("node"))
                    .and_then(|n| n.parse::<u32>().ok())
                else {
                    continue;
                };
                if let Some(cpus) = read_list(&entry.path().join("cpulist"))? {
                    nodes.insert(id, cpus);
                }
            }
        }

        let mut cpus = BTreeMap::new();
        for id in online.iter() {
            let topo = cpu_dir.join(format!("cpu{}/topology", id.0));
            let thread_siblings = read_list(&topo.join("thread_siblings_list"))?
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| HostCpuSet::single(id));
            let info = HostCpuInfo {
                id,
                package: read_number(&topo.join("physical_package_id"))?.unwrap_or(0),
                die: read_number(&topo.join("die_id"))?,
                core: read_number(&topo.join("core_id"))?.unwrap_or(id.0),
                thread_siblings,
                node: nodes
                    .iter()
                    .find(|(_, set)| set.contains(id))
                    .map(|(n, _)| *n),
            };
            cpus.insert(id, info);
        }
        Ok(HostCpuInventory {
            online,
            possible,
            present,
            isolated,
            nohz_full,
            cpus,
            nodes,
        })
    }

    /// A synthetic host, all CPUs online: `packages` sockets of `cores` cores of `threads`
    /// threads, one NUMA node per package, numbered as Linux usually numbers x86 CPUs (first
    /// threads of every core, then second threads): CPU = thread * (packages * cores) +
    /// package * cores + core.
    pub fn uniform(packages: u32, cores: u32, threads: u32) -> Self {
        let per_thread = packages * cores;
        let total = per_thread * threads;
        let mut cpus = BTreeMap::new();
        let mut nodes: BTreeMap<u32, HostCpuSet> = BTreeMap::new();
        for t in 0..threads {
            for p in 0..packages {
                for c in 0..cores {
                    let id = HostCpuId(t * per_thread + p * cores + c);
                    let siblings = (0..threads)
                        .map(|s| HostCpuId(s * per_thread + p * cores + c))
                        .collect();
                    nodes.entry(p).or_default().insert(id);
                    cpus.insert(
                        id,
                        HostCpuInfo {
                            id,
                            package: p,
                            die: Some(0),
                            core: c,
                            thread_siblings: siblings,
                            node: Some(p),
                        },
                    );
                }
            }
        }
        let all = HostCpuSet::first_n(total);
        HostCpuInventory {
            online: all.clone(),
            possible: all.clone(),
            present: all,
            isolated: HostCpuSet::new(),
            nohz_full: HostCpuSet::new(),
            cpus,
            nodes,
        }
    }

    /// Takes `cpus` offline (builder for synthetic hosts): they stay possible and present.
    pub fn with_offline(mut self, cpus: &HostCpuSet) -> Self {
        self.online = self.online.difference(cpus);
        for id in cpus.iter() {
            self.cpus.remove(&id);
        }
        for info in self.cpus.values_mut() {
            info.thread_siblings = info.thread_siblings.difference(cpus);
        }
        self
    }

    /// Sets the isolated CPUs (builder for synthetic hosts).
    pub fn with_isolated(mut self, cpus: HostCpuSet) -> Self {
        self.isolated = cpus;
        self
    }

    /// Online CPUs.
    pub fn online(&self) -> &HostCpuSet {
        &self.online
    }

    /// Possible CPUs (every id the kernel could ever bring online).
    pub fn possible(&self) -> &HostCpuSet {
        &self.possible
    }

    /// Present CPUs.
    pub fn present(&self) -> &HostCpuSet {
        &self.present
    }

    /// CPUs isolated from the scheduler (`isolcpus=`).
    pub fn isolated(&self) -> &HostCpuSet {
        &self.isolated
    }

    /// CPUs in `nohz_full=` mode.
    pub fn nohz_full(&self) -> &HostCpuSet {
        &self.nohz_full
    }

    /// Number of CPU ids this host has: one more than the highest possible CPU. Use it as the
    /// `limit` of the [`HostCpuSet`] parsers and as the width of affinity strings.
    pub fn cpu_id_limit(&self) -> u32 {
        self.possible
            .last()
            .max(self.online.last())
            .map_or(0, |c| c.0 + 1)
    }

    /// Whether `cpu` is online.
    pub fn is_online(&self, cpu: HostCpuId) -> bool {
        self.online.contains(cpu)
    }

    /// Position of an online CPU.
    pub fn cpu(&self, cpu: HostCpuId) -> Option<&HostCpuInfo> {
        self.cpus.get(&cpu)
    }

    /// Every online CPU's position, in CPU order.
    pub fn cpus(&self) -> impl Iterator<Item = &HostCpuInfo> {
        self.cpus.values()
    }

    /// Thread siblings of an online CPU (itself included); empty for an offline CPU.
    pub fn siblings(&self, cpu: HostCpuId) -> HostCpuSet {
        self.cpus
            .get(&cpu)
            .map(|i| i.thread_siblings.clone())
            .unwrap_or_default()
    }

    /// NUMA node ids, ascending.
    pub fn nodes(&self) -> impl Iterator<Item = u32> + '_ {
        self.nodes.keys().copied()
    }

    /// CPUs of a NUMA node (as listed by the node, online or not).
    pub fn node_cpus(&self, node: u32) -> Option<&HostCpuSet> {
        self.nodes.get(&node)
    }

    /// NUMA node of a CPU.
    pub fn node_of(&self, cpu: HostCpuId) -> Option<u32> {
        self.cpus.get(&cpu).and_then(|i| i.node)
    }

    /// Physical cores: each a set of online thread siblings, ordered by lowest CPU.
    pub fn cores(&self) -> Vec<HostCpuSet> {
        let mut by_key: BTreeMap<(u32, Option<u32>, u32), HostCpuSet> = BTreeMap::new();
        for info in self.cpus.values() {
            by_key
                .entry((info.package, info.die, info.core))
                .or_default()
                .insert(info.id);
        }
        let mut cores: Vec<HostCpuSet> = by_key.into_values().collect();
        cores.sort_by_key(|c| c.first());
        cores
    }

    /// Packages (sockets) with their online CPUs.
    pub fn packages(&self) -> BTreeMap<u32, HostCpuSet> {
        let mut out: BTreeMap<u32, HostCpuSet> = BTreeMap::new();
        for info in self.cpus.values() {
            out.entry(info.package).or_default().insert(info.id);
        }
        out
    }
}

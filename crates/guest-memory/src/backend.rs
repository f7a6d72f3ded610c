//! Memory backend objects: QEMU's `-object memory-backend-*` grammar as typed config.
//!
//! ```text
//! memory-backend-ram|memory-backend-memfd|memory-backend-file,id=ID,size=SIZE
//!     [,mem-path=PATH]          file only, required there: a file, or a directory in
//!                               which an unlinked temporary file is created
//!     [,hugetlb=on|off]         memfd only: MFD_HUGETLB
//!     [,hugetlbsize=SIZE]       memfd only, needs hugetlb=on; default: the host's default
//!     [,prealloc=on|off]        allocate every page before the guest runs
//!     [,share=on|off]           MAP_SHARED; default on for memfd, off otherwise
//!     [,host-nodes=A[-B]]...    host NUMA nodes (repeatable)
//!     [,policy=default|preferred|bind|interleave]
//! ```
//!
//! Booleans take `on/off`, `yes/no`, `true/false` as QEMU does. `size` is a byte count
//! with optional suffix (`512M`). QEMU's own checks are kept with QEMU's wording: `host-nodes`
//! must be empty for `policy=default` and given for any other policy; node numbers are
//! below 128. Whether the host has those nodes is a separate check,
//! [`MemoryBackendConfig::check_host_nodes`], which takes the host's online nodes as data.
//!
//! This module is pure: no host access.

use std::path::PathBuf;

use thiserror::Error;

use crate::numa::MAX_NODES;
use crate::size::{parse_size, SizeError};

/// Which kind of host memory backs guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// `memory-backend-ram`: anonymous memory.
    Ram,
    /// `memory-backend-memfd`: an anonymous file from `memfd_create`.
    Memfd,
    /// `memory-backend-file`: a file (or a temporary file in a directory) at `mem-path`.
    File,
}

impl BackendKind {
    /// The QOM type name (`memory-backend-ram`, ...).
    pub fn type_name(self) -> &'static str {
        match self {
            Self::Ram => "memory-backend-ram",
            Self::Memfd => "memory-backend-memfd",
            Self::File => "memory-backend-file",
        }
    }
}

/// Host NUMA memory policy (`set_mempolicy(2)` modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostMemPolicy {
    /// The thread's default policy; no `host-nodes`.
    #[default]
    Default,
    /// Prefer the first of `host-nodes`, fall back to others.
    Preferred,
    /// Only `host-nodes`; allocation fails rather than going elsewhere.
    Bind,
    /// Round-robin pages over `host-nodes`.
    Interleave,
}

impl HostMemPolicy {
    /// The name used in `policy=`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Preferred => "preferred",
            Self::Bind => "bind",
            Self::Interleave => "interleave",
        }
    }
}

/// One parsed `memory-backend-*` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryBackendConfig {
    /// Which backend.
    pub kind: BackendKind,
    /// `id=`, what `-numa node,memdev=` names.
    pub id: String,
    /// `size=` in bytes (non-zero).
    pub size: u64,
    /// `mem-path=` (file backend only).
    pub mem_path: Option<PathBuf>,
    /// `hugetlb=on` (memfd backend only).
    pub hugetlb: bool,
    /// `hugetlbsize=`: huge page size in bytes; `None` = the host's default.
    pub hugetlbsize: Option<u64>,
    /// `prealloc=on`.
    pub prealloc: bool,
    /// `share=on` (`MAP_SHARED`).
    pub share: bool,
    /// `host-nodes=`, ascending, without duplicates.
    pub host_nodes: Vec<u32>,
    /// `policy=`.
    pub policy: HostMemPolicy,
}

/// Why a memory backend object was refused. One line each; QEMU's wording where QEMU has a
/// message for the same mistake.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BackendConfigError {
    /// A type other than the three backends.
    #[error("Parameter 'qom-type' does not accept value '{0}' (expected memory-backend-ram, memory-backend-memfd or memory-backend-file)")]
    UnknownType(String),
    /// A parameter the backend does not take.
    #[error("{kind}: invalid parameter '{key}'")]
    UnknownParameter {
        /// The QOM type.
        kind: &'static str,
        /// The parameter.
        key: String,
    },
    /// `key` without a value.
    #[error("{kind}: parameter '{key}' has no value")]
    MissingValue {
        /// The QOM type.
        kind: &'static str,
        /// The parameter.
        key: String,
    },
    /// A parameter given twice (only `host-nodes` may repeat).
    #[error("{kind}: parameter '{key}' is given more than once")]
    Duplicate {
        /// The QOM type.
        kind: &'static str,
        /// The parameter.
        key: String,
    },
    /// A required parameter is absent.
    #[error("{kind}: Parameter '{key}' is missing")]
    Missing {
        /// The QOM type.
        kind: &'static str,
        /// The parameter.
        key: &'static str,
    },
    /// An `id` that is not an identifier.
    #[error("Parameter 'id' expects an identifier (letters, digits, '-', '.', '_', starting with a letter), got '{0}'")]
    BadId(String),
    /// A boolean that is not on/off.
    #[error("Parameter '{key}' expects 'on' or 'off', got '{value}'")]
    BadBool {
        /// The parameter.
        key: &'static str,
        /// The text given.
        value: String,
    },
    /// A size that does not parse.
    #[error("Parameter '{key}' is not a size: {source}")]
    BadSize {
        /// The parameter.
        key: &'static str,
        /// Why.
        #[source]
        source: SizeError,
    },
    /// `size=0`.
    #[error("can't create backend with size 0")]
    ZeroSize,
    /// A huge page size that is not a power of two of at least 4 KiB.
    #[error("hugetlbsize {0:#x} is not a power of two of at least 4 KiB")]
    BadHugePageSize(u64),
    /// `hugetlbsize` without `hugetlb=on`.
    #[error("hugetlbsize needs hugetlb=on")]
    HugePageSizeWithoutHugetlb,
    /// A `policy=` value nobody knows.
    #[error("Parameter 'policy' does not accept value '{0}'")]
    BadPolicy(String),
    /// A `host-nodes` item that is not `N` or `A-B`.
    #[error("Parameter 'host-nodes' expects a node number or a range A-B, got '{0}'")]
    BadNodeList(String),
    /// A host node of [`MAX_NODES`] or more.
    #[error("Invalid host-nodes value: {0}")]
    HostNodeTooLarge(u64),
    /// `host-nodes` with `policy=default`.
    #[error("host-nodes must be empty for policy default, or you should explicitly specify a policy other than default")]
    NodesWithDefaultPolicy,
    /// A non-default policy without `host-nodes`.
    #[error("host-nodes must be set for policy {0}")]
    PolicyWithoutNodes(&'static str),
    /// Host nodes that are not online on this host.
    #[error("memory backend '{id}': host-nodes {missing} do not exist on this host (online nodes: {online})")]
    HostNodesMissing {
        /// The backend id.
        id: String,
        /// The nodes asked for but not online.
        missing: String,
        /// The host's online nodes.
        online: String,
    },
}

fn parse_bool(key: &'static str, value: &str) -> Result<bool, BackendConfigError> {
    match value {
        "on" | "yes" | "true" | "y" => Ok(true),
        "off" | "no" | "false" | "n" => Ok(false),
        _ => Err(BackendConfigError::BadBool {
            key,
            value: value.to_string(),
        }),
    }
}

fn is_identifier(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// Parses `N` or `A-B` of node numbers below [`MAX_NODES`] into `out`.
fn node_range(value: &str, out: &mut Vec<u32>) -> Result<(), BackendConfigError> {
    let bad = || BackendConfigError::BadNodeList(value.to_string());
    let one = |t: &str| -> Result<u64, BackendConfigError> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u64 = t.parse().map_err(|_| bad())?;
        if n >= u64::from(MAX_NODES) {
            return Err(BackendConfigError::HostNodeTooLarge(n));
        }
        Ok(n)
    };
    let (lo, hi) = match value.split_once('-') {
        Some((a, b)) => (one(a)?, one(b)?),
        None => {
            let n = one(value)?;
            (n, n)
        }
    };
    if lo > hi {
        return Err(bad());
    }
    out.extend((lo..=hi).map(|n| n as u32));
    Ok(())
}

/// Formats node numbers as `0-1,3`.
pub fn format_node_list(nodes: &[u32]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < nodes.len() {
        let start = nodes[i];
        while i + 1 < nodes.len() && nodes[i + 1] == nodes[i] + 1 {
            i += 1;
        }
        parts.push(if nodes[i] == start {
            start.to_string()
        } else {
            format!("{start}-{}", nodes[i])
        });
        i += 1;
    }
    parts.join(",")
}

/// Parses a kernel node list such as `/sys/devices/system/node/online` (`0`, `0-3,6`).
pub fn parse_node_list(text: &str) -> Result<Vec<u32>, BackendConfigError> {
    let mut nodes = Vec::new();
    for item in text.trim().split(',').filter(|s| !s.is_empty()) {
        node_range(item, &mut nodes)?;
    }
    nodes.sort_unstable();
    nodes.dedup();
    Ok(nodes)
}

/// Reads one `-object memory-backend-*,...` argument (without `-object`).
///
/// ```
/// use guest_memory::backend::{parse_memory_backend, BackendKind, HostMemPolicy};
/// let b = parse_memory_backend(
///     "memory-backend-memfd,id=m0,size=1G,host-nodes=0,policy=bind,prealloc=on",
/// ).unwrap();
/// assert_eq!((b.kind, b.size, b.share), (BackendKind::Memfd, 1 << 30, true));
/// assert_eq!((b.host_nodes, b.policy), (vec![0], HostMemPolicy::Bind));
/// ```
pub fn parse_memory_backend(s: &str) -> Result<MemoryBackendConfig, BackendConfigError> {
    let mut items = s.split(',');
    let first = items.next().unwrap_or_default();
    let type_name = first.strip_prefix("qom-type=").unwrap_or(first);
    let kind = match type_name {
        "memory-backend-ram" => BackendKind::Ram,
        "memory-backend-memfd" => BackendKind::Memfd,
        "memory-backend-file" => BackendKind::File,
        other => return Err(BackendConfigError::UnknownType(other.to_string())),
    };
    let name = kind.type_name();
    let mut seen: Vec<&str> = Vec::new();
    let mut id = None;
    let mut size = None;
    let mut config = MemoryBackendConfig {
        kind,
        id: String::new(),
        size: 0,
        mem_path: None,
        hugetlb: false,
        hugetlbsize: None,
        prealloc: false,
        share: kind == BackendKind::Memfd,
        host_nodes: Vec::new(),
        policy: HostMemPolicy::Default,
    };
    for item in items {
        let Some((key, value)) = item.split_once('=').filter(|(_, v)| !v.is_empty()) else {
            let key = item.split_once('=').map_or(item, |(k, _)| k);
            return Err(BackendConfigError::MissingValue {
                kind: name,
                key: key.to_string(),
            });
        };
        if key != "host-nodes" {
            if seen.contains(&key) {
                return Err(BackendConfigError::Duplicate {
                    kind: name,
                    key: key.to_string(),
                });
            }
            seen.push(key);
        }
        let size_of = |key: &'static str| {
            parse_size(value).map_err(|source| BackendConfigError::BadSize { key, source })
        };
        match (key, kind) {
            ("id", _) => id = Some(value),
            ("size", _) => size = Some(size_of("size")?),
            ("mem-path", BackendKind::File) => config.mem_path = Some(PathBuf::from(value)),
            ("hugetlb", BackendKind::Memfd) => config.hugetlb = parse_bool("hugetlb", value)?,
            ("hugetlbsize", BackendKind::Memfd) => {
                let bytes = size_of("hugetlbsize")?;
                if !bytes.is_power_of_two() || bytes < 4096 {
                    return Err(BackendConfigError::BadHugePageSize(bytes));
                }
                config.hugetlbsize = Some(bytes);
            }
            ("prealloc", _) => config.prealloc = parse_bool("prealloc", value)?,
            ("share", _) => config.share = parse_bool("share", value)?,
            ("host-nodes", _) => node_range(value, &mut config.host_nodes)?,
            ("policy", _) => {
                config.policy = match value {
                    "default" => HostMemPolicy::Default,
                    "preferred" => HostMemPolicy::Preferred,
                    "bind" => HostMemPolicy::Bind,
                    "interleave" => HostMemPolicy::Interleave,
                    other => return Err(BackendConfigError::BadPolicy(other.to_string())),
                }
            }
            _ => {
                return Err(BackendConfigError::UnknownParameter {
                    kind: name,
                    key: key.to_string(),
                })
            }
        }
    }
    let id = id.ok_or(BackendConfigError::Missing {
        kind: name,
        key: "id",
    })?;
    if !is_identifier(id) {
        return Err(BackendConfigError::BadId(id.to_string()));
    }
    config.id = id.to_string();
    config.size = size.ok_or(BackendConfigError::Missing {
        kind: name,
        key: "size",
    })?;
    if config.size == 0 {
        return Err(BackendConfigError::ZeroSize);
    }
    if kind == BackendKind::File && config.mem_path.is_none() {
        return Err(BackendConfigError::Missing {
            kind: name,
            key: "mem-path",
        });
    }
    if config.hugetlbsize.is_some() && !config.hugetlb {
        return Err(BackendConfigError::HugePageSizeWithoutHugetlb);
    }
    config.host_nodes.sort_unstable();
    config.host_nodes.dedup();
    match (config.policy, config.host_nodes.is_empty()) {
        (HostMemPolicy::Default, false) => return Err(BackendConfigError::NodesWithDefaultPolicy),
        (policy, true) if policy != HostMemPolicy::Default => {
            return Err(BackendConfigError::PolicyWithoutNodes(policy.name()))
        }
        _ => {}
    }
    Ok(config)
}

impl MemoryBackendConfig {
    /// Checks that every `host-nodes` entry is one of the host's `online` nodes (as read
    /// from `/sys/devices/system/node/online` with [`parse_node_list`]).
    pub fn check_host_nodes(&self, online: &[u32]) -> Result<(), BackendConfigError> {
        let missing: Vec<u32> = self
            .host_nodes
            .iter()
            .copied()
            .filter(|n| !online.contains(n))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(BackendConfigError::HostNodesMissing {
            id: self.id.clone(),
            missing: format_node_list(&missing),
            online: format_node_list(online),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in "\\PC*") {
            let _ = parse_memory_backend(&s);
            if let Ok(b) = parse_memory_backend(&format!("memory-backend-memfd,id=m,{s}")) {
                prop_assert!(b.size > 0);
                prop_assert!(b.host_nodes.windows(2).all(|w| w[0] < w[1]));
            }
            let _ = parse_node_list(&s);
        }
    }

    #[test]
    fn valid_rows() {
        let b = parse_memory_backend("memory-backend-ram,id=m0,size=512M").unwrap();
        assert_eq!(
            b,
            MemoryBackendConfig {
                kind: BackendKind::Ram,
                id: "m0".into(),
                size: 512 << 20,
                mem_path: None,
                hugetlb: false,
                hugetlbsize: None,
                prealloc: false,
                share: false,
                host_nodes: vec![],
                policy: HostMemPolicy::Default,
            }
        );
        let b = parse_memory_backend(
            "memory-backend-memfd,id=a.b_c-1,size=2G,hugetlb=on,hugetlbsize=2M,share=off,prealloc=yes",
        )
        .unwrap();
        assert_eq!(b.hugetlbsize, Some(2 << 20));
        assert!(b.hugetlb && !b.share && b.prealloc);
        let b = parse_memory_backend(
            "qom-type=memory-backend-file,id=f,size=4096,mem-path=/tmp,share=on,host-nodes=2,host-nodes=0-1,policy=interleave",
        )
        .unwrap();
        assert_eq!(b.mem_path, Some(PathBuf::from("/tmp")));
        assert_eq!(b.host_nodes, [0, 1, 2]);
        assert_eq!(b.policy, HostMemPolicy::Interleave);
        assert!(b.share);
        let b =
            parse_memory_backend("memory-backend-ram,id=m,size=1G,policy=preferred,host-nodes=0")
                .unwrap();
        assert_eq!(b.policy, HostMemPolicy::Preferred);
    }

    #[test]
    fn invalid_rows() {
        let rows: &[(&str, &str)] = &[
            ("memory-backend-foo,id=m0,size=1G", "Parameter 'qom-type' does not accept value 'memory-backend-foo' (expected memory-backend-ram, memory-backend-memfd or memory-backend-file)"),
            ("", "Parameter 'qom-type' does not accept value '' (expected memory-backend-ram, memory-backend-memfd or memory-backend-file)"),
            ("memory-backend-ram,id=m0", "memory-backend-ram: Parameter 'size' is missing"),
            ("memory-backend-ram,size=1G", "memory-backend-ram: Parameter 'id' is missing"),
            ("memory-backend-ram,id=0m,size=1G", "Parameter 'id' expects an identifier (letters, digits, '-', '.', '_', starting with a letter), got '0m'"),
            ("memory-backend-ram,id=m0,size=0", "can't create backend with size 0"),
            ("memory-backend-ram,id=m0,size=1Q", "Parameter 'size' is not a size: memory size '1Q' has unknown suffix 'Q' (expected B, K, M, G, T, P or E)"),
            ("memory-backend-ram,id=m0,size=1G,mem-path=/tmp", "memory-backend-ram: invalid parameter 'mem-path'"),
            ("memory-backend-ram,id=m0,size=1G,hugetlb=on", "memory-backend-ram: invalid parameter 'hugetlb'"),
            ("memory-backend-file,id=m0,size=1G", "memory-backend-file: Parameter 'mem-path' is missing"),
            ("memory-backend-ram,id=m0,size=1G,size=2G", "memory-backend-ram: parameter 'size' is given more than once"),
            ("memory-backend-ram,id=m0,size=1G,prealloc=maybe", "Parameter 'prealloc' expects 'on' or 'off', got 'maybe'"),
            ("memory-backend-ram,id=m0,size=1G,share", "memory-backend-ram: parameter 'share' has no value"),
            ("memory-backend-ram,id=m0,size=1G,share=", "memory-backend-ram: parameter 'share' has no value"),
            ("memory-backend-memfd,id=m0,size=1G,hugetlbsize=2M", "hugetlbsize needs hugetlb=on"),
            ("memory-backend-memfd,id=m0,size=1G,hugetlb=on,hugetlbsize=3M", "hugetlbsize 0x300000 is not a power of two of at least 4 KiB"),
            ("memory-backend-ram,id=m0,size=1G,host-nodes=0", "host-nodes must be empty for policy default, or you should explicitly specify a policy other than default"),
            ("memory-backend-ram,id=m0,size=1G,policy=bind", "host-nodes must be set for policy bind"),
            ("memory-backend-ram,id=m0,size=1G,policy=foo,host-nodes=0", "Parameter 'policy' does not accept value 'foo'"),
            ("memory-backend-ram,id=m0,size=1G,policy=bind,host-nodes=200", "Invalid host-nodes value: 200"),
            ("memory-backend-ram,id=m0,size=1G,policy=bind,host-nodes=1-0", "Parameter 'host-nodes' expects a node number or a range A-B, got '1-0'"),
            ("memory-backend-ram,id=m0,size=1G,policy=bind,host-nodes=x", "Parameter 'host-nodes' expects a node number or a range A-B, got 'x'"),
        ];
        for (input, want) in rows {
            let err = parse_memory_backend(input).expect_err(input);
            assert_eq!(err.to_string(), *want, "input {input:?}");
        }
    }

    #[test]
    fn host_nodes_are_checked_against_the_online_list() {
        let online = parse_node_list("0\n").unwrap();
        assert_eq!(online, [0]);
        let ok = parse_memory_backend("memory-backend-ram,id=m0,size=1G,policy=bind,host-nodes=0")
            .unwrap();
        assert_eq!(ok.check_host_nodes(&online), Ok(()));
        let bad = parse_memory_backend(
            "memory-backend-ram,id=m1,size=1G,policy=bind,host-nodes=0-2,host-nodes=5",
        )
        .unwrap();
        assert_eq!(
            bad.check_host_nodes(&online).unwrap_err().to_string(),
            "memory backend 'm1': host-nodes 1-2,5 do not exist on this host (online nodes: 0)"
        );
        assert_eq!(parse_node_list("0-3,6").unwrap(), [0, 1, 2, 3, 6]);
        assert_eq!(format_node_list(&[0, 1, 2, 3, 6]), "0-3,6");
    }
}

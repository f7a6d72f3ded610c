//! Guest RAM backed by memory backend objects: anonymous, memfd (optionally hugetlb),
//! files (hugetlbfs or not), shared or private, preallocated, bound to host NUMA nodes.
//!
//! [`GuestRam::with_backends`] maps a (NUMA) [`MemoryLayout`]: the regions of a node with a
//! backend are mapped from that backend, one host object per node, so a node split across
//! the MMIO hole is two mappings of one memfd or file at consecutive offsets. Regions
//! without a backend get the anonymous private `MAP_NORESERVE` mapping of
//! [`GuestRam::new`].
//!
//! Per backend, in this order: create the host object (memfd, file or nothing); check the
//! huge pages it needs are free (never falling back to small pages); map each region;
//! `mbind` it to `host-nodes` with the policy; preallocate (`MADV_POPULATE_WRITE`).

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use thiserror::Error;
use vm_memory::mmap::{MmapRegionBuilder, MmapRegionError};
use vm_memory::{
    FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
    GuestRegionCollectionError, GuestRegionMmap,
};

use crate::backend::{
    format_node_list, parse_node_list, BackendConfigError, BackendKind, HostMemPolicy,
    MemoryBackendConfig,
};
use crate::host_sys;
use crate::layout::{MemoryLayout, NodeId, RamRegion};
use crate::ram::GuestRam;
use crate::size::format_size;

/// Where the host's NUMA and huge page facts are read from (`/sys` on a real host).
pub const SYSFS_NODE_ONLINE: &str = "/sys/devices/system/node/online";

/// Why backed guest RAM could not be created.
#[derive(Debug, Error)]
pub enum BackingError {
    /// The backend's size differs from the RAM it must back.
    #[error("memory backend '{id}' has size {} but backs {} of guest RAM", format_size(*backend), format_size(*ram))]
    SizeMismatch {
        /// The backend id.
        id: String,
        /// Its `size=`.
        backend: u64,
        /// The RAM of its regions.
        ram: u64,
    },
    /// A region larger than the host address space.
    #[error("RAM region at {gpa:#x} of size {size:#x} does not fit in the host address space")]
    RegionTooLarge {
        /// Region start.
        gpa: u64,
        /// Region size.
        size: u64,
    },
    /// `memfd_create` failed.
    #[error("memory backend '{id}': memfd_create failed")]
    Memfd {
        /// The backend id.
        id: String,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// The `mem-path` file could not be opened or created.
    #[error("memory backend '{id}': cannot open mem-path {}", path.display())]
    OpenFile {
        /// The backend id.
        id: String,
        /// The path.
        path: PathBuf,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// Sizing the backing file failed.
    #[error("memory backend '{id}': cannot size the backing file to {}", format_size(*size))]
    Resize {
        /// The backend id.
        id: String,
        /// The size asked for.
        size: u64,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// `fstatfs` of the backing file failed.
    #[error("memory backend '{id}': fstatfs of the backing file failed")]
    Statfs {
        /// The backend id.
        id: String,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// A size that is not a multiple of the huge page size.
    #[error("memory backend '{id}': size {} is not a multiple of its huge page size {}", format_size(*size), format_size(*page_size))]
    UnalignedHugePages {
        /// The backend id.
        id: String,
        /// The size.
        size: u64,
        /// The huge page size.
        page_size: u64,
    },
    /// The host has no huge pages of that size at all.
    #[error("memory backend '{id}': the host has no {} kB huge pages ({} is missing)", page_size / 1024, hugepages_dir(*page_size).display())]
    HugePageSizeUnsupported {
        /// The backend id.
        id: String,
        /// The huge page size.
        page_size: u64,
    },
    /// Not enough free huge pages (or mmap said ENOMEM).
    #[error("memory backend '{id}' needs {needed} huge pages of {} kB ({}) but the host has {free} free; reserve them with `echo {reserve} > {}/nr_hugepages`", page_size / 1024, format_size(needed * page_size), hugepages_dir(*page_size).display())]
    HugePagesUnavailable {
        /// The backend id.
        id: String,
        /// Pages needed.
        needed: u64,
        /// Pages free.
        free: u64,
        /// The total to write to `nr_hugepages`.
        reserve: u64,
        /// The huge page size.
        page_size: u64,
    },
    /// Reading a host fact from sysfs or procfs failed.
    #[error("reading {} failed", path.display())]
    HostInfo {
        /// The file.
        path: PathBuf,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// `host-nodes` not online on this host (or a malformed online list).
    #[error(transparent)]
    HostNodes(#[from] BackendConfigError),
    /// mmap failed.
    #[error("memory backend '{id}': mapping {} at guest-physical {gpa:#x} failed", format_size(*size))]
    Map {
        /// The backend id (`anonymous` for regions without one).
        id: String,
        /// Region start.
        gpa: u64,
        /// Region size.
        size: u64,
        /// vm-memory's error with the errno.
        #[source]
        source: MmapRegionError,
    },
    /// mbind failed.
    #[error(
        "memory backend '{id}': cannot bind memory to host NUMA nodes {nodes} (policy {policy})"
    )]
    Mbind {
        /// The backend id.
        id: String,
        /// The policy name.
        policy: &'static str,
        /// The nodes.
        nodes: String,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// Preallocation failed.
    #[error("memory backend '{id}': preallocating {} failed", format_size(*size))]
    Prealloc {
        /// The backend id.
        id: String,
        /// Bytes to preallocate.
        size: u64,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// vm-memory refused the region collection (an internal inconsistency).
    #[error("building the guest memory map failed")]
    Collection(#[source] GuestRegionCollectionError),
}

/// The sysfs directory of one huge page size: `/sys/kernel/mm/hugepages/hugepages-2048kB`.
pub fn hugepages_dir(page_size: u64) -> PathBuf {
    PathBuf::from(format!(
        "/sys/kernel/mm/hugepages/hugepages-{}kB",
        page_size / 1024
    ))
}

/// Pure check: `size` bytes of `page_size` huge pages with `free` of `nr` pages free.
pub fn check_huge_pages(
    id: &str,
    size: u64,
    page_size: u64,
    free: u64,
    nr: u64,
) -> Result<(), BackingError> {
    let needed = size.div_ceil(page_size);
    if needed <= free {
        return Ok(());
    }
    Err(BackingError::HugePagesUnavailable {
        id: id.to_string(),
        needed,
        free,
        reserve: nr.saturating_add(needed - free),
        page_size,
    })
}

fn read_u64(path: &Path) -> Result<u64, BackingError> {
    let text = std::fs::read_to_string(path).map_err(|source| BackingError::HostInfo {
        path: path.to_path_buf(),
        source,
    })?;
    text.trim().parse().map_err(|_| BackingError::HostInfo {
        path: path.to_path_buf(),
        source: io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a number: {text:?}"),
        ),
    })
}

/// The host's default huge page size (`Hugepagesize:` of `/proc/meminfo`), 2 MiB if absent.
pub fn default_huge_page_size() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("Hugepagesize:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(2 << 20, |kb| kb * 1024)
}

/// Checks the host has `size` bytes of free `page_size` huge pages (sysfs).
fn host_huge_pages(id: &str, size: u64, page_size: u64) -> Result<(), BackingError> {
    let dir = hugepages_dir(page_size);
    if !dir.exists() {
        return Err(BackingError::HugePageSizeUnsupported {
            id: id.to_string(),
            page_size,
        });
    }
    let free = read_u64(&dir.join("free_hugepages"))?;
    let nr = read_u64(&dir.join("nr_hugepages"))?;
    check_huge_pages(id, size, page_size, free, nr)
}

/// The host's online NUMA nodes (`/sys/devices/system/node/online`); `[0]` on a kernel
/// without NUMA support (no such file).
pub fn host_online_nodes() -> Result<Vec<u32>, BackingError> {
    match std::fs::read_to_string(SYSFS_NODE_ONLINE) {
        Ok(text) => Ok(parse_node_list(&text)?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(vec![0]),
        Err(source) => Err(BackingError::HostInfo {
            path: SYSFS_NODE_ONLINE.into(),
            source,
        }),
    }
}

/// The host object behind one backend.
struct HostObject {
    file: Option<File>,
    /// Huge page size when the memory is hugetlb.
    huge: Option<u64>,
}

static TEMP_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Opens `mem-path`: a directory gets an unlinked temporary file, anything else is opened
/// (or created) as the backing file itself.
fn open_mem_path(id: &str, path: &Path) -> Result<File, BackingError> {
    let open_err = |source| BackingError::OpenFile {
        id: id.to_string(),
        path: path.to_path_buf(),
        source,
    };
    if path.is_dir() {
        loop {
            let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = path.join(format!("guest-memory-{id}-{}-{n}", std::process::id()));
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&name)
            {
                Ok(file) => {
                    // The mapping keeps the memory; the name is not needed (as QEMU does).
                    std::fs::remove_file(&name).map_err(open_err)?;
                    return Ok(file);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(open_err(e)),
            }
        }
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(open_err)
}

fn check_alignment(id: &str, size: u64, page_size: u64) -> Result<(), BackingError> {
    if size % page_size == 0 {
        return Ok(());
    }
    Err(BackingError::UnalignedHugePages {
        id: id.to_string(),
        size,
        page_size,
    })
}

fn create_host_object(b: &MemoryBackendConfig) -> Result<HostObject, BackingError> {
    let id = b.id.as_str();
    let (file, huge) = match b.kind {
        BackendKind::Ram => {
            return Ok(HostObject {
                file: None,
                huge: None,
            })
        }
        BackendKind::Memfd => {
            let huge = b
                .hugetlb
                .then(|| b.hugetlbsize.unwrap_or_else(default_huge_page_size));
            let mut flags = libc::MFD_CLOEXEC;
            if let Some(page) = huge {
                // Checked before creating anything: never fall back to small pages.
                check_alignment(id, b.size, page)?;
                host_huge_pages(id, b.size, page)?;
                flags |= libc::MFD_HUGETLB | (page.trailing_zeros() << libc::MFD_HUGE_SHIFT);
            }
            let name = CString::new(format!("guest-memory:{id}")).unwrap_or_default();
            let file =
                host_sys::memfd_create(&name, flags).map_err(|source| BackingError::Memfd {
                    id: id.to_string(),
                    source,
                })?;
            (file, huge)
        }
        BackendKind::File => {
            let path = b.mem_path.as_deref().unwrap_or(Path::new("."));
            let file = open_mem_path(id, path)?;
            let (f_type, bsize) =
                host_sys::fstatfs(&file).map_err(|source| BackingError::Statfs {
                    id: id.to_string(),
                    source,
                })?;
            let huge = host_sys::is_hugetlbfs(f_type).then_some(bsize);
            if let Some(page) = huge {
                check_alignment(id, b.size, page)?;
                host_huge_pages(id, b.size, page)?;
            }
            (file, huge)
        }
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len < b.size {
        file.set_len(b.size)
            .map_err(|source| BackingError::Resize {
                id: id.to_string(),
                size: b.size,
                source,
            })?;
    }
    Ok(HostObject {
        file: Some(file),
        huge,
    })
}

fn map_region(
    id: &str,
    region: &RamRegion,
    object: Option<(&HostObject, u64)>,
    share: bool,
) -> Result<GuestRegionMmap, BackingError> {
    let size = usize::try_from(region.size).map_err(|_| BackingError::RegionTooLarge {
        gpa: region.gpa.0,
        size: region.size,
    })?;
    let mut flags = if share {
        libc::MAP_SHARED
    } else {
        libc::MAP_PRIVATE
    };
    let mut builder =
        MmapRegionBuilder::new(size).with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE);
    let huge = object.and_then(|(o, _)| o.huge);
    match object.and_then(|(o, offset)| o.file.as_ref().map(|f| (f, offset))) {
        Some((file, offset)) => {
            let clone = file.try_clone().map_err(|source| BackingError::Map {
                id: id.to_string(),
                gpa: region.gpa.0,
                size: region.size,
                source: MmapRegionError::Mmap(source),
            })?;
            builder = builder.with_file_offset(FileOffset::new(clone, offset));
        }
        None => flags |= libc::MAP_ANONYMOUS,
    }
    // Huge pages are reserved at mmap time (so a shortage is ENOMEM now, not SIGBUS later):
    // no MAP_NORESERVE for them.
    if huge.is_none() {
        flags |= libc::MAP_NORESERVE;
    }
    builder = builder
        .with_mmap_flags(flags)
        .with_hugetlbfs(huge.is_some());
    let mapping = builder.build().map_err(|source| {
        let map_error = |source| BackingError::Map {
            id: id.to_string(),
            gpa: region.gpa.0,
            size: region.size,
            source,
        };
        match (&source, huge) {
            // The pages went between the check and the mmap: report the shortage as it is
            // now. If sysfs still shows enough free pages (a cgroup limit, say), keep ENOMEM.
            (MmapRegionError::Mmap(e), Some(page)) if e.raw_os_error() == Some(libc::ENOMEM) => {
                match host_huge_pages(id, region.size, page) {
                    Err(shortage @ BackingError::HugePagesUnavailable { .. }) => shortage,
                    _ => map_error(source),
                }
            }
            _ => map_error(source),
        }
    })?;
    GuestRegionMmap::new(mapping, region.gpa).ok_or(BackingError::RegionTooLarge {
        gpa: region.gpa.0,
        size: region.size,
    })
}

fn policy_mode(policy: HostMemPolicy) -> i32 {
    match policy {
        HostMemPolicy::Default => libc::MPOL_DEFAULT,
        HostMemPolicy::Preferred => libc::MPOL_PREFERRED,
        HostMemPolicy::Bind => libc::MPOL_BIND,
        HostMemPolicy::Interleave => libc::MPOL_INTERLEAVE,
    }
}

/// Binds and preallocates one mapped region as its backend asks.
fn bind_and_prealloc(
    b: &MemoryBackendConfig,
    region: &GuestRegionMmap,
) -> Result<(), BackingError> {
    let addr = region.as_ptr() as usize;
    let len = region.size();
    if b.policy != HostMemPolicy::Default {
        let flags = if b.prealloc {
            host_sys::MPOL_MF_STRICT | host_sys::MPOL_MF_MOVE
        } else {
            0
        };
        host_sys::mbind(addr, len, policy_mode(b.policy), &b.host_nodes, flags).map_err(
            |source| BackingError::Mbind {
                id: b.id.clone(),
                policy: b.policy.name(),
                nodes: format_node_list(&b.host_nodes),
                source,
            },
        )?;
    }
    if b.prealloc {
        host_sys::populate_write(addr, len).map_err(|source| BackingError::Prealloc {
            id: b.id.clone(),
            size: len as u64,
            source,
        })?;
    }
    Ok(())
}

impl GuestRam {
    /// Maps `layout` with one memory backend per NUMA node (`backends`: node id and its
    /// backend). Regions of other nodes, and regions without a node, are anonymous private
    /// memory as in [`GuestRam::new`].
    ///
    /// Each backend's size must equal the RAM of its node. `host-nodes` are checked against
    /// the host's online nodes before anything is mapped.
    pub fn with_backends(
        layout: &MemoryLayout,
        backends: &[(NodeId, &MemoryBackendConfig)],
    ) -> Result<Self, BackingError> {
        let online = host_online_nodes()?;
        for (_, b) in backends {
            b.check_host_nodes(&online)?;
        }
        let mut regions: Vec<GuestRegionMmap> = Vec::with_capacity(layout.regions().len());
        // Regions without a backend.
        for region in layout.regions() {
            let has_backend = region
                .node
                .is_some_and(|n| backends.iter().any(|(bn, _)| *bn == n));
            if !has_backend {
                regions.push(map_region("anonymous", region, None, false)?);
            }
        }
        for (node, b) in backends {
            let node_regions: Vec<&RamRegion> = layout.node_regions(*node).collect();
            let ram: u64 = node_regions.iter().map(|r| r.size).sum();
            if ram != b.size {
                return Err(BackingError::SizeMismatch {
                    id: b.id.clone(),
                    backend: b.size,
                    ram,
                });
            }
            let object = create_host_object(b)?;
            let mut offset = 0;
            for region in node_regions {
                let mapped = map_region(&b.id, region, Some((&object, offset)), b.share)?;
                bind_and_prealloc(b, &mapped)?;
                regions.push(mapped);
                offset += region.size;
            }
        }
        regions.sort_by_key(|r| r.start_addr().0);
        let memory = GuestMemoryMmap::from_regions(regions).map_err(BackingError::Collection)?;
        Ok(Self::from_parts(layout.clone(), memory))
    }

    /// Maps all of `layout` from one backend (QEMU's `-machine memory-backend=ID`): the
    /// regions take consecutive offsets of the backend, whose size must equal the RAM size.
    pub fn with_backend(
        layout: &MemoryLayout,
        backend: &MemoryBackendConfig,
    ) -> Result<Self, BackingError> {
        let plain: Vec<RamRegion> = layout
            .regions()
            .iter()
            .map(|r| RamRegion {
                node: Some(NodeId(0)),
                ..*r
            })
            .collect();
        let single = MemoryLayout::new(plain, layout.reserved().to_vec()).map_err(|_| {
            BackingError::SizeMismatch {
                id: backend.id.clone(),
                backend: backend.size,
                ram: layout.ram_size(),
            }
        })?;
        let ram = Self::with_backends(&single, &[(NodeId(0), backend)])?;
        Ok(Self::from_parts(layout.clone(), ram.memory().clone()))
    }
}

/// The guest-physical start of the region holding `gpa` and the backing file's offset of
/// `gpa`, if that RAM is file- or memfd-backed.
pub fn backing_file_of(ram: &GuestRam, gpa: GuestAddress) -> Option<(&File, u64)> {
    let region = ram.memory().find_region(gpa)?;
    let fo = region.file_offset()?;
    Some((fo.file(), fo.start() + (gpa.0 - region.start_addr().0)))
}

#[cfg(test)]
mod tests;

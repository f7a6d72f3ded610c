//! The kernel calls behind memory backends that vm-memory does not make: `memfd_create`,
//! `fstatfs`, `mbind` and `madvise(MADV_POPULATE_WRITE)`. The mappings themselves are made
//! by vm-memory's `MmapRegion`. Every `unsafe` block of the backends lives here.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};

use crate::numa::MAX_NODES;

/// `MPOL_MF_STRICT`: fail if pages already present violate the policy.
pub const MPOL_MF_STRICT: u32 = 1;
/// `MPOL_MF_MOVE`: move pages already present to conform to the policy.
pub const MPOL_MF_MOVE: u32 = 2;

/// `memfd_create(name, flags)`, returning the file.
pub fn memfd_create(name: &CStr, flags: u32) -> io::Result<File> {
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call; the
    // kernel reads it and returns a new file descriptor or -1, nothing else is touched.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by memfd_create, is open and owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// `fstatfs(file)`: the file system's magic number (`f_type`) and block size (`f_bsize`,
/// the huge page size on hugetlbfs).
pub fn fstatfs(file: &File) -> io::Result<(u64, u64)> {
    // SAFETY: statfs is plain old data; all-zero is a valid value.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: the descriptor is open (borrowed from `file`) and `buf` is a valid, writable
    // statfs the kernel fills.
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), &mut buf) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((buf.f_type as u64, buf.f_bsize as u64))
}

/// Whether a `fstatfs` magic number is hugetlbfs's.
pub fn is_hugetlbfs(f_type: u64) -> bool {
    f_type == libc::HUGETLBFS_MAGIC as u64
}

/// `mbind(addr, len, mode, nodes, MAX_NODES + 1, flags)` through the raw syscall.
///
/// `addr..addr + len` must be a mapping this process owns (mbind only changes its NUMA
/// policy; an unmapped range fails with `EFAULT`). `nodes` are below [`MAX_NODES`].
pub fn mbind(addr: usize, len: usize, mode: i32, nodes: &[u32], flags: u32) -> io::Result<()> {
    let mut mask = [0u64; (MAX_NODES as usize).div_ceil(64)];
    for &node in nodes.iter().filter(|&&n| n < MAX_NODES) {
        mask[node as usize / 64] |= 1 << (node % 64);
    }
    let mask_ptr = if nodes.is_empty() {
        std::ptr::null()
    } else {
        mask.as_ptr()
    };
    // The kernel reads maxnode - 1 bits (a long-standing off-by-one that QEMU and numactl
    // also account for): MAX_NODES + 1 makes it read exactly the two words of `mask`.
    let maxnode = if nodes.is_empty() {
        0
    } else {
        u64::from(MAX_NODES) + 1
    };
    // SAFETY: mbind only reads `mask` (valid for MAX_NODES bits, or null with maxnode 0)
    // and changes the memory policy of the range; it never writes to our memory, and an
    // address range that is not mapped is reported as EFAULT.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mbind,
            addr as libc::c_ulong,
            len as libc::c_ulong,
            mode as libc::c_ulong,
            mask_ptr,
            maxnode as libc::c_ulong,
            flags as libc::c_ulong,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `madvise(addr, len, MADV_POPULATE_WRITE)`: allocates (write-faults) every page of the
/// range, reporting `ENOMEM`/`EFAULT` instead of the process being killed later.
pub fn populate_write(addr: usize, len: usize) -> io::Result<()> {
    // SAFETY: MADV_POPULATE_WRITE only faults the pages of the range in as if written
    // (without changing their contents); it does not change the mapping, and a range that
    // is not mapped is reported as ENOMEM.
    let rc = unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_POPULATE_WRITE) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How many pages of `[addr, addr + len)` are resident (`mincore`), for tests that check
/// that untouched guest RAM costs nothing. Exact for the range, unlike smaps, whose entry
/// may be a VMA merged with neighbouring anonymous mappings.
#[cfg(test)]
pub fn resident_pages(addr: usize, len: usize) -> io::Result<usize> {
    let page = 4096;
    let mut vec = vec![0u8; len.div_ceil(page)];
    // SAFETY: mincore writes one byte per page of the range into `vec`, which has exactly
    // that many bytes; it does not touch the mapping, and an unmapped range is ENOMEM.
    let rc = unsafe { libc::mincore(addr as *mut libc::c_void, len, vec.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(vec.iter().filter(|&&b| b & 1 == 1).count())
}

//! The only module of this crate that calls the kernel through `libc`: thread ids, CPU
//! affinity, `flock` and the clock-tick rate. Everything else is safe code on top.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use cpu_topology::cpuset::{HostCpuId, HostCpuSet, LIMIT_CEILING};

/// Bits in one word of the kernel's affinity mask (`unsigned long`).
const WORD_BITS: u32 = libc::c_ulong::BITS;

/// The calling thread's kernel thread id.
pub fn gettid() -> i32 {
    // SAFETY: gettid takes no argument, cannot fail and touches no memory.
    unsafe { libc::gettid() }
}

/// `sched_setaffinity(tid, cpus)`. `cpus` must not be empty (the kernel refuses it with EINVAL).
pub fn set_affinity(tid: i32, cpus: &HostCpuSet) -> io::Result<()> {
    let bits = cpus.last().map_or(1, |c| c.0 + 1);
    let mut mask = vec![0 as libc::c_ulong; bits.div_ceil(WORD_BITS) as usize];
    for HostCpuId(cpu) in cpus.iter() {
        mask[(cpu / WORD_BITS) as usize] |= 1 << (cpu % WORD_BITS);
    }
    let size = std::mem::size_of_val(mask.as_slice());
    // SAFETY: `mask` is a live buffer of exactly `size` bytes, laid out as the kernel's
    // array of unsigned longs; the kernel only reads it. A cpu_set_t pointer is what the
    // prototype wants, but the kernel takes any length, so a shorter or longer buffer is fine.
    let rc = unsafe { libc::sched_setaffinity(tid, size, mask.as_ptr().cast::<libc::cpu_set_t>()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `sched_getaffinity(tid)`. Grows the buffer while the kernel says it is too small.
pub fn get_affinity(tid: i32) -> io::Result<HostCpuSet> {
    let mut bits: u32 = 8192;
    loop {
        let mut mask = vec![0 as libc::c_ulong; (bits / WORD_BITS) as usize];
        let size = std::mem::size_of_val(mask.as_slice());
        // SAFETY: `mask` is a live, writable buffer of `size` bytes; the kernel writes at most
        // `size` bytes into it.
        let rc = unsafe {
            libc::sched_getaffinity(tid, size, mask.as_mut_ptr().cast::<libc::cpu_set_t>())
        };
        if rc == 0 {
            let mut set = HostCpuSet::new();
            for (w, word) in mask.iter().enumerate() {
                for b in 0..WORD_BITS {
                    if word & (1 << b) != 0 {
                        set.insert(HostCpuId(w as u32 * WORD_BITS + b));
                    }
                }
            }
            return Ok(set);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EINVAL) && bits < LIMIT_CEILING {
            bits *= 2;
            continue;
        }
        return Err(err);
    }
}

/// Takes an exclusive `flock` on `file`, waiting for it. The lock is released when the file
/// is closed.
pub fn lock_exclusive(file: &File) -> io::Result<()> {
    if std::env::var_os("NOLOCK").is_some() {
        return Ok(());
    }
    loop {
        // SAFETY: the descriptor belongs to `file`, which outlives the call; flock touches no
        // memory of ours.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of `/proc/.../stat` times.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf reads a constant of the C library; it touches no memory of ours.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

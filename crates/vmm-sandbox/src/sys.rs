//! Every unsafe block of the crate: the SIGSYS reporter, user and group look-up, the
//! set*id calls and the capability syscalls. Each function is a thin, checked wrapper.

use std::cell::Cell;
use std::ffi::CString;
use std::fmt::Write as _;
use std::io;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

use crate::filter::ThreadKind;

/// The reporter's exit status.
static EXIT_CODE: AtomicI32 = AtomicI32::new(1);
/// The reporter's message prefix (the program name).
static PREFIX: OnceLock<&'static str> = OnceLock::new();

thread_local! {
    /// The calling thread's kind and name, saved when its filter is installed, for the
    /// SIGSYS report (a signal handler must not allocate, so both are plain bytes).
    static THREAD: Cell<(u8, [u8; 16])> = const { Cell::new((0, [0; 16])) };
}

/// Set the prefix of the SIGSYS report (default `vmm-sandbox`). First call wins.
pub fn set_report_prefix(prefix: &'static str) {
    let _ = PREFIX.set(prefix);
}

/// Save `kind` and `name` for the calling thread's SIGSYS report.
pub(crate) fn remember_thread(kind: ThreadKind, name: Option<&str>) {
    let mut bytes = [0u8; 16];
    let name = name.unwrap_or_default().as_bytes();
    let n = name.len().min(15);
    bytes[..n].copy_from_slice(&name[..n]);
    let code = ThreadKind::ALL.iter().position(|k| *k == kind).unwrap_or(0) as u8 + 1;
    THREAD.with(|t| t.set((code, bytes)));
}

/// The calling thread's id.
pub(crate) fn gettid() -> i32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// Register the process-wide SIGSYS handler that reports a trapped syscall and exits.
pub(crate) fn install_sigsys_reporter(exit_code: i32) -> io::Result<()> {
    EXIT_CODE.store(exit_code, Ordering::Relaxed);
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_sigsys as *const () as usize;
    action.sa_flags = libc::SA_SIGINFO;
    // SAFETY: `action.sa_mask` is a valid sigset_t owned by this frame.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: `action` is fully initialised and the handler has the SA_SIGINFO signature;
    // the old action is not needed (null).
    let rc = unsafe { libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `siginfo_t` as the kernel fills it for SIGSYS (`_sigsys` of the union), x86-64 layout.
#[repr(C)]
struct SigsysInfo {
    signo: i32,
    errno: i32,
    code: i32,
    _pad: i32,
    call_addr: usize,
    syscall: i32,
    arch: u32,
}

/// A fixed buffer that formats without allocating.
struct StackBuf {
    bytes: [u8; 320],
    len: usize,
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = self.bytes.len() - self.len;
        let n = s.len().min(room);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// The name of syscall `nr`, or `"unknown"`.
pub(crate) fn syscall_name(nr: i64) -> &'static str {
    use crate::syscall_names::{NAMES, NUMBERS};
    NUMBERS
        .binary_search_by_key(&nr, |n| i64::from(*n))
        .ok()
        .and_then(|i| NAMES.split(' ').nth(i))
        .unwrap_or("unknown")
}

/// The SIGSYS handler: one `write` of the report to stderr, then `exit_group`. Only
/// async-signal-safe work: formatting into a stack buffer, a thread-local read of plain
/// bytes, and two syscalls every filter allows (`write`, `exit_group`; `gettid` too).
extern "C" fn on_sigsys(
    _signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo_t for SIGSYS, laid out as `SigsysInfo`.
    let nr = i64::from(unsafe { (*info.cast::<SigsysInfo>()).syscall });
    // SAFETY: with SA_SIGINFO the third argument is the interrupted context; RSI holds the
    // syscall's second argument (an ioctl's request) at the trapped syscall.
    let arg1 = unsafe {
        (*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs[libc::REG_RSI as usize] as u64
    };
    let (kind, name) = THREAD.try_with(Cell::get).unwrap_or((0, [0; 16]));
    let kind = match kind {
        0 => "inherited",
        k => ThreadKind::ALL[usize::from(k - 1)].name(),
    };
    let name_len = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    let name = std::str::from_utf8(&name[..name_len]).unwrap_or("?");
    let mut msg = StackBuf {
        bytes: [0; 320],
        len: 0,
    };
    let _ = write!(
        msg,
        "{}: seccomp: forbidden syscall {} ({}",
        PREFIX.get().copied().unwrap_or("vmm-sandbox"),
        nr,
        syscall_name(nr)
    );
    if nr == libc::SYS_ioctl {
        let _ = write!(msg, ", request {arg1:#x}");
    }
    let _ = writeln!(
        msg,
        ") on thread {} '{}' ({} filter); ending the process (--seccomp log would log and allow it)",
        gettid(),
        name,
        kind
    );
    // SAFETY: writes `len` initialised bytes of the stack buffer to fd 2; exit_group never
    // returns. Both are async-signal-safe.
    unsafe {
        libc::write(2, msg.bytes.as_ptr().cast(), msg.len);
        libc::_exit(EXIT_CODE.load(Ordering::Relaxed));
    }
}

/// `getpwnam_r`: the uid and primary gid of `name`, `None` if there is no such user.
pub(crate) fn user_by_name(name: &str) -> io::Result<Option<(u32, u32)>> {
    let cname = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: a zeroed passwd is a valid out-parameter (pointers null, ids 0).
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer refers to a live local of the right type and `buf.len()` is
    // the buffer's size; the strings getpwnam_r stores point into `buf`, which is unused.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok((!result.is_null()).then_some((pwd.pw_uid, pwd.pw_gid)))
}

/// `getgrnam_r`: the gid of group `name`, `None` if there is no such group.
pub(crate) fn group_by_name(name: &str) -> io::Result<Option<u32>> {
    let cname = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: a zeroed group is a valid out-parameter.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in `user_by_name`.
    let rc = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok((!result.is_null()).then_some(grp.gr_gid))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `setgroups(groups)` (glibc applies it to every thread of the process).
pub(crate) fn set_groups(groups: &[u32]) -> io::Result<()> {
    // SAFETY: the pointer and length describe a live slice of gid_t.
    check(unsafe { libc::setgroups(groups.len(), groups.as_ptr()) })
}

/// `setgid` (every thread, through glibc).
pub(crate) fn set_gid(gid: u32) -> io::Result<()> {
    // SAFETY: plain integer argument.
    check(unsafe { libc::setgid(gid) })
}

/// `setuid` (every thread, through glibc).
pub(crate) fn set_uid(uid: u32) -> io::Result<()> {
    // SAFETY: plain integer argument.
    check(unsafe { libc::setuid(uid) })
}

/// `getresuid` and `getresgid`: ((ruid, euid, suid), (rgid, egid, sgid)).
pub(crate) fn res_ids() -> ((u32, u32, u32), (u32, u32, u32)) {
    let (mut r, mut e, mut s) = (0, 0, 0);
    let (mut gr, mut ge, mut gs) = (0, 0, 0);
    // SAFETY: the out-parameters are live locals; these calls cannot fail with valid pointers.
    unsafe {
        libc::getresuid(&mut r, &mut e, &mut s);
        libc::getresgid(&mut gr, &mut ge, &mut gs);
    }
    ((r, e, s), (gr, ge, gs))
}

/// Remove capability `cap` from the calling thread's bounding set (`PR_CAPBSET_DROP`).
pub(crate) fn bounding_drop(cap: u32) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    check(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) })
}

/// Clear the calling thread's ambient capabilities.
pub(crate) fn ambient_clear() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    check(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    })
}

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAP_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Empty the calling thread's effective, permitted and inheritable sets (`capset`).
pub(crate) fn capset_empty() -> io::Result<()> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: header and the two data words are live, correctly laid out v3 structures.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    check(rc as libc::c_int)
}

/// The calling thread's (effective, permitted) capability sets as 64-bit masks.
pub(crate) fn capget() -> io::Result<(u64, u64)> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: as in `capset_empty`; the kernel writes two CapData words.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    check(rc as libc::c_int)?;
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok((
        join(data[0].effective, data[1].effective),
        join(data[0].permitted, data[1].permitted),
    ))
}

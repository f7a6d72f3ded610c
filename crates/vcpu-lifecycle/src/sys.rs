//! The only module with `unsafe`: the kick signal handler, the thread-local pointer to the
//! vCPU's own `kvm_run`, signal masks, `gettid`, `sched_getcpu`, KVM_RUN itself and
//! reading the exit out of `kvm_run`.
//!
//! Kick protocol (see DESIGN.md): the controller enqueues a command, then sends the kick
//! signal to the vCPU thread. The handler sets `kvm_run.immediate_exit = 1` through a
//! thread-local pointer that only the vCPU thread itself ever set, so a kick that lands
//! anywhere between "drain the command queue" and "enter KVM_RUN" makes the next KVM_RUN
//! return EINTR at once, and a kick during KVM_RUN makes it return EINTR because a signal
//! is pending.

use std::cell::Cell;
use std::io;
use std::marker::PhantomData;
use std::ptr;

use std::os::fd::AsRawFd;

use kvm_bindings::{
    kvm_run, KVM_EXIT_FAIL_ENTRY, KVM_EXIT_HLT, KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_INTR,
    KVM_EXIT_IO, KVM_EXIT_IO_OUT, KVM_EXIT_MMIO, KVM_EXIT_SHUTDOWN,
};
use kvm_ioctls::VcpuFd;
use libc::{c_int, c_void, siginfo_t};
use vmm_sys_util::errno;
use vmm_sys_util::signal::{register_signal_handler, SIGRTMAX, SIGRTMIN};

thread_local! {
    /// The `kvm_run` of the vCPU owned by this thread, or null. Const-initialised and
    /// without a destructor, so reading it from a signal handler is a plain TLS load.
    static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(ptr::null_mut()) };
}

/// Kick signal handler: async-signal-safe, it only stores one byte.
extern "C" fn handle_kick(_num: c_int, _info: *mut siginfo_t, _ctx: *mut c_void) {
    let run = KVM_RUN.try_with(Cell::get).unwrap_or(ptr::null_mut());
    if !run.is_null() {
        // SAFETY: `run` was stored by `KickableVcpu::new` on this very thread and points at
        // the kvm_run mapping of the VcpuFd that the KickableVcpu owns; `KickableVcpu::drop`
        // nulls it before the fd (and its mapping) is dropped, and the KickableVcpu cannot
        // leave this thread (it is !Send). A volatile byte store is all the handler does.
        unsafe { ptr::write_volatile(ptr::addr_of_mut!((*run).immediate_exit), 1) };
    }
}

/// Checks that `signum` is a real-time signal and installs the kick handler for it
/// (process-wide; installing it again is harmless). The handler is installed without
/// `SA_RESTART`, so KVM_RUN returns EINTR.
pub(crate) fn install_kick_handler(signum: c_int) -> errno::Result<()> {
    if signum < SIGRTMIN() || signum > SIGRTMAX() {
        return Err(errno::Error::new(libc::EINVAL));
    }
    register_signal_handler(signum, handle_kick)
}

/// Unblocks `signum` for the calling thread: a vCPU thread inherits its creator's signal
/// mask, and a blocked kick signal would never interrupt KVM_RUN.
pub(crate) fn unblock_signal(signum: c_int) -> io::Result<()> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it below before any use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t; both calls only write to it.
    let r = unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signum)
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `set` is initialised; a null old-set pointer is allowed.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Kernel thread id of the calling thread (what `ps -L`, `top -H` and /proc/self/task show).
pub(crate) fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}

/// Host CPU the calling thread runs on, or `u32::MAX` if unknown (glibc reads it from rseq
/// or the vDSO). Called at state changes only, never per exit.
#[inline]
pub(crate) fn current_cpu() -> u32 {
    // SAFETY: sched_getcpu has no preconditions; a negative result means failure.
    let cpu = unsafe { libc::sched_getcpu() };
    u32::try_from(cpu).unwrap_or(u32::MAX)
}

vmm_sys_util::ioctl_io_nr!(KVM_RUN_IOCTL, kvm_bindings::KVMIO, 0x80);

/// The exit KVM_RUN returned, as far as the run loop tells exits apart.
#[derive(Debug)]
pub(crate) enum RunExit<'a> {
    /// `out` to a port; the data the guest wrote.
    IoOut(u16, &'a [u8]),
    /// `in` from a port; the buffer KVM hands to the guest on the next KVM_RUN.
    IoIn(u16, &'a mut [u8]),
    /// MMIO read outside RAM; the buffer KVM hands to the guest.
    MmioRead(u64, &'a mut [u8]),
    /// MMIO write outside RAM; the data.
    MmioWrite(u64, &'a [u8]),
    /// `hlt` with no in-kernel local APIC.
    Hlt,
    /// A signal interrupted the guest (KVM_EXIT_INTR).
    Intr,
    /// KVM_EXIT_SHUTDOWN (triple fault).
    Shutdown,
    /// KVM_EXIT_INTERNAL_ERROR (details in `kvm_run.internal`).
    InternalError,
    /// KVM_EXIT_FAIL_ENTRY.
    FailEntry {
        /// `hardware_entry_failure_reason`.
        hardware_reason: u64,
        /// Host CPU of the failed entry.
        host_cpu: u32,
    },
    /// Any other exit reason (read it with `exit_reason`).
    Other,
}

/// A vCPU fd bound to the current thread as the target of kicks.
///
/// Owning the fd guarantees that the `kvm_run` mapping the thread-local pointer refers to
/// lives exactly as long as the registration; the fd is never handed out mutably, so it
/// cannot be swapped out from under the pointer.
pub(crate) struct KickableVcpu {
    fd: VcpuFd,
    run: *mut kvm_run,
    /// The registration is per thread: never move this to another thread.
    _not_send: PhantomData<*mut ()>,
}

impl KickableVcpu {
    /// Registers `fd`'s `kvm_run` as the kick target of the calling thread.
    pub(crate) fn new(mut fd: VcpuFd) -> Self {
        let run: *mut kvm_run = fd.get_kvm_run();
        KVM_RUN.with(|c| c.set(run));
        KickableVcpu {
            fd,
            run,
            _not_send: PhantomData,
        }
    }

    /// The vCPU fd, for ioctls other than KVM_RUN.
    pub(crate) fn fd(&self) -> &VcpuFd {
        &self.fd
    }

    /// KVM_RUN, and the exit it returned, read from `kvm_run`.
    ///
    /// This decodes `kvm_run` itself instead of calling `VcpuFd::run`: that returns a
    /// 30-variant enum through memory, and whether the compiler inlines it depends on how
    /// many handler types the program instantiates the run loop with. Measured in the
    /// reference VMM under callgrind: `VcpuFd::run` out of line cost 42 instructions per
    /// exit, and replacing it with this decode took the whole exit from 123 to 94
    /// (docs/PERFORMANCE.md).
    #[inline(always)]
    pub(crate) fn run(&mut self) -> Result<RunExit<'_>, errno::Error> {
        // SAFETY: KVM_RUN on a vCPU fd this struct owns; the ioctl takes no argument.
        let ret = unsafe { libc::ioctl(self.fd.as_raw_fd(), KVM_RUN_IOCTL(), 0) };
        if ret != 0 {
            return Err(errno::Error::last());
        }
        // SAFETY: `self.run` points at the kvm_run mapping of `self.fd` (see `new`), which
        // KVM has just filled for the exit it reports; `&mut self` keeps this the only
        // reference into the mapping while the returned exit borrows it.
        let run = unsafe { &mut *self.run };
        Ok(match run.exit_reason {
            KVM_EXIT_IO => {
                // SAFETY: exit_reason says the kernel filled the `io` union member.
                let io = unsafe { run.__bindgen_anon_1.io };
                let len = usize::from(io.size) * io.count as usize;
                // SAFETY: KVM puts the port data at `data_offset` bytes from the start of
                // the kvm_run mapping (the PIO page) and `size * count` bytes fit in it.
                let data = unsafe {
                    std::slice::from_raw_parts_mut(
                        self.run.cast::<u8>().add(io.data_offset as usize),
                        len,
                    )
                };
                if u32::from(io.direction) == KVM_EXIT_IO_OUT {
                    RunExit::IoOut(io.port, data)
                } else {
                    RunExit::IoIn(io.port, data)
                }
            }
            KVM_EXIT_MMIO => {
                // SAFETY: exit_reason says the kernel filled the `mmio` union member; the
                // reference points into the mapping, borrowed through `run`.
                let mmio = unsafe { &mut run.__bindgen_anon_1.mmio };
                let len = (mmio.len as usize).min(mmio.data.len());
                let data = &mut mmio.data[..len];
                if mmio.is_write != 0 {
                    RunExit::MmioWrite(mmio.phys_addr, data)
                } else {
                    RunExit::MmioRead(mmio.phys_addr, data)
                }
            }
            KVM_EXIT_HLT => RunExit::Hlt,
            KVM_EXIT_INTR => RunExit::Intr,
            KVM_EXIT_SHUTDOWN => RunExit::Shutdown,
            KVM_EXIT_INTERNAL_ERROR => RunExit::InternalError,
            KVM_EXIT_FAIL_ENTRY => {
                // SAFETY: exit_reason says the kernel filled the `fail_entry` union member.
                let fail = unsafe { run.__bindgen_anon_1.fail_entry };
                RunExit::FailEntry {
                    hardware_reason: fail.hardware_entry_failure_reason,
                    host_cpu: fail.cpu,
                }
            }
            _ => RunExit::Other,
        })
    }

    /// Sets `kvm_run.immediate_exit`. Uses the same volatile store as the signal handler.
    #[inline]
    pub(crate) fn set_immediate_exit(&mut self, value: u8) {
        // SAFETY: `self.run` points into the kvm_run mapping owned by `self.fd`, which lives
        // as long as `self`.
        unsafe { ptr::write_volatile(ptr::addr_of_mut!((*self.run).immediate_exit), value) };
    }

    /// `kvm_run.exit_reason` of the last exit.
    pub(crate) fn exit_reason(&self) -> u32 {
        // SAFETY: as in `set_immediate_exit`; exit_reason is a plain u32 field.
        unsafe { ptr::read_volatile(ptr::addr_of!((*self.run).exit_reason)) }
    }

    /// `kvm_run.internal.{suberror, data[..ndata]}` after KVM_EXIT_INTERNAL_ERROR, or `None`
    /// if the last exit was something else.
    pub(crate) fn internal_error(&self) -> Option<(u32, Vec<u64>)> {
        if self.exit_reason() != KVM_EXIT_INTERNAL_ERROR {
            return None;
        }
        // SAFETY: exit_reason says the kernel filled the `internal` union member; the
        // pointer is valid as in `set_immediate_exit`. The struct is plain data, copied out.
        let internal =
            unsafe { ptr::read_volatile(ptr::addr_of!((*self.run).__bindgen_anon_1.internal)) };
        let n = (internal.ndata as usize).min(internal.data.len());
        Some((internal.suberror, internal.data[..n].to_vec()))
    }
}

/// KVM_SET_XSAVE with a buffer that KVM_GET_XSAVE filled on the same vCPU.
pub(crate) fn set_xsave(fd: &VcpuFd, xsave: &kvm_bindings::kvm_xsave) -> Result<(), errno::Error> {
    // SAFETY: `set_xsave` is unsafe because since Linux 5.17 KVM_SET_XSAVE may read past the
    // 4096-byte `kvm_xsave` when the process enabled dynamic XSTATE features (AMX) with
    // arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM). This crate never does, and the buffer is the
    // one KVM_GET_XSAVE returned for this vCPU, so the kernel reads only its 4096 bytes.
    unsafe { fd.set_xsave(xsave) }
}

impl KickableVcpu {
    /// Unregisters the kick target and gives the vCPU fd back (for a caller that parks it:
    /// KVM cannot destroy a vCPU, so a re-plugged vCPU must reuse its fd).
    pub(crate) fn into_fd(self) -> VcpuFd {
        let _ = KVM_RUN.try_with(|c| c.set(ptr::null_mut()));
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped, so `fd` is moved out exactly once; the other
        // fields are a raw pointer into the fd's own mapping and a marker, which need no
        // drop. The kick registration was cleared above, as Drop would have done.
        unsafe { ptr::read(&this.fd) }
    }
}

impl Drop for KickableVcpu {
    fn drop(&mut self) {
        // Unregister before `self.fd` (and the kvm_run mapping) is dropped.
        let _ = KVM_RUN.try_with(|c| c.set(ptr::null_mut()));
    }
}

impl std::fmt::Debug for KickableVcpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KickableVcpu").finish_non_exhaustive()
    }
}

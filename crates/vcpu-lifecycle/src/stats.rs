//! Per-vCPU exit counters: written by the vCPU thread, read from any thread, no locks.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use insn_fallback::InsnClass;

/// Why KVM_RUN returned, as counted by [`ExitCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitKind {
    IoIn,
    IoOut,
    MmioRead,
    MmioWrite,
    Hlt,
    Interrupted,
    Retried,
    Shutdown,
    InternalError,
    FailEntry,
    Other,
}

/// Live counters of one vCPU. Only the vCPU thread increments them (relaxed atomics: each
/// counter is exact, a snapshot is not atomic across counters).
#[derive(Debug, Default)]
pub(crate) struct ExitCounters {
    io_in: AtomicU64,
    io_out: AtomicU64,
    mmio_read: AtomicU64,
    mmio_write: AtomicU64,
    hlt: AtomicU64,
    interrupted: AtomicU64,
    retried: AtomicU64,
    shutdown: AtomicU64,
    internal_error: AtomicU64,
    fail_entry: AtomicU64,
    other: AtomicU64,
    /// Instructions completed in user space, by [`InsnClass::index`].
    emulated: [AtomicU64; InsnClass::COUNT],
    /// Of those, how many raised an exception in the guest.
    emulated_exceptions: AtomicU64,
    /// KVM_EXIT_DEBUG of the syscall completion (not counted by [`ExitKind`]).
    debug: AtomicU64,
    syscalls_completed: AtomicU64,
    page_faults_stepped: AtomicU64,
}

/// Adds one to a counter only this thread writes.
#[inline]
fn bump(counter: &AtomicU64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
}

impl ExitCounters {
    /// Counts one return of KVM_RUN. Hot path: the vCPU thread is the only writer, so a
    /// relaxed load and store (no locked read-modify-write) keep every counter exact.
    #[inline]
    pub(crate) fn count(&self, kind: ExitKind) {
        let counter = match kind {
            ExitKind::IoIn => &self.io_in,
            ExitKind::IoOut => &self.io_out,
            ExitKind::MmioRead => &self.mmio_read,
            ExitKind::MmioWrite => &self.mmio_write,
            ExitKind::Hlt => &self.hlt,
            ExitKind::Interrupted => &self.interrupted,
            ExitKind::Retried => &self.retried,
            ExitKind::Shutdown => &self.shutdown,
            ExitKind::InternalError => &self.internal_error,
            ExitKind::FailEntry => &self.fail_entry,
            ExitKind::Other => &self.other,
        };
        bump(counter);
    }

    /// Counts one instruction completed in user space (cold path).
    pub(crate) fn count_emulated(&self, class: InsnClass, raised_exception: bool) {
        bump(&self.emulated[class.index()]);
        if raised_exception {
            bump(&self.emulated_exceptions);
        }
    }

    /// Counts one KVM_EXIT_DEBUG of the syscall completion (cold path).
    pub(crate) fn count_debug(&self) {
        bump(&self.debug);
    }

    /// Counts one SYSCALL completed in user space (cold path).
    pub(crate) fn count_syscall_completed(&self) {
        bump(&self.syscalls_completed);
    }

    /// Counts one guest page fault stepped over by the syscall completion (cold path).
    pub(crate) fn count_page_fault_stepped(&self) {
        bump(&self.page_faults_stepped);
    }

    /// Reads every counter once.
    pub(crate) fn snapshot(&self) -> ExitStats {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ExitStats {
            io_in: r(&self.io_in),
            io_out: r(&self.io_out),
            mmio_read: r(&self.mmio_read),
            mmio_write: r(&self.mmio_write),
            hlt: r(&self.hlt),
            interrupted: r(&self.interrupted),
            retried: r(&self.retried),
            shutdown: r(&self.shutdown),
            internal_error: r(&self.internal_error),
            fail_entry: r(&self.fail_entry),
            other: r(&self.other),
            emulated: EmulatedCounts {
                by_class: std::array::from_fn(|i| r(&self.emulated[i])),
                exceptions: r(&self.emulated_exceptions),
            },
            debug: r(&self.debug),
            syscall: SyscallCounts {
                completed: r(&self.syscalls_completed),
                page_faults_stepped: r(&self.page_faults_stepped),
            },
        }
    }
}

/// Instructions that KVM failed to emulate and the vCPU thread completed in user space
/// (see [`crate::EmulationFallback`]), per instruction class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmulatedCounts {
    by_class: [u64; InsnClass::COUNT],
    /// How many of them raised an exception in the guest (#BP from INT3 included).
    pub exceptions: u64,
}

impl EmulatedCounts {
    /// Completions of `class`.
    pub fn get(&self, class: InsnClass) -> u64 {
        self.by_class[class.index()]
    }

    /// All completions.
    pub fn total(&self) -> u64 {
        self.by_class.iter().sum()
    }

    /// Every class with its count, in [`InsnClass::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (InsnClass, u64)> + '_ {
        InsnClass::ALL.iter().map(|c| (*c, self.get(*c)))
    }

    /// Adds another vCPU's counts (for a VM-wide sum).
    pub fn add(&mut self, other: &EmulatedCounts) {
        for (a, b) in self.by_class.iter_mut().zip(other.by_class) {
            *a += b;
        }
        self.exceptions += other.exceptions;
    }
}

/// `int3=2 clac=120 popcnt=7` (the classes seen, in [`InsnClass::ALL`] order), or `none`.
impl fmt::Display for EmulatedCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (class, n) in self.iter().filter(|(_, n)| *n > 0) {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{class}={n}")?;
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// A snapshot of one vCPU's exit counters (returns of KVM_RUN by reason).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitStats {
    /// KVM_EXIT_IO, direction in.
    pub io_in: u64,
    /// KVM_EXIT_IO, direction out.
    pub io_out: u64,
    /// KVM_EXIT_MMIO reads.
    pub mmio_read: u64,
    /// KVM_EXIT_MMIO writes.
    pub mmio_write: u64,
    /// KVM_EXIT_HLT (only without an in-kernel irqchip).
    pub hlt: u64,
    /// KVM_RUN interrupted: EINTR (a kick or another signal, immediate_exit) or KVM_EXIT_INTR.
    pub interrupted: u64,
    /// KVM_RUN returned EAGAIN and was retried (an AP right after INIT).
    pub retried: u64,
    /// KVM_EXIT_SHUTDOWN (triple fault).
    pub shutdown: u64,
    /// KVM_EXIT_INTERNAL_ERROR.
    pub internal_error: u64,
    /// KVM_EXIT_FAIL_ENTRY.
    pub fail_entry: u64,
    /// Any other exit, and KVM_RUN errors.
    pub other: u64,
    /// KVM_EXIT_INTERNAL_ERROR exits (counted in `internal_error` too) whose instruction
    /// was completed in user space, per instruction.
    pub emulated: EmulatedCounts,
    /// KVM_EXIT_DEBUG: the breakpoint and single steps of the syscall completion.
    pub debug: u64,
    /// What the syscall completion did (see [`crate::SyscallCompletion`]).
    pub syscall: SyscallCounts,
}

/// The work of the syscall completion on one vCPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyscallCounts {
    /// SYSCALLs that KVM left at CPL3 and the vCPU thread completed.
    pub completed: u64,
    /// Other guest page faults that hit the breakpoint and were single-stepped over.
    pub page_faults_stepped: u64,
}

impl SyscallCounts {
    /// Adds another vCPU's counts (for a VM-wide sum).
    pub fn add(&mut self, other: &SyscallCounts) {
        self.completed += other.completed;
        self.page_faults_stepped += other.page_faults_stepped;
    }
}

/// `completed=1367 page-faults-stepped=5120`.
impl fmt::Display for SyscallCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "completed={} page-faults-stepped={}",
            self.completed, self.page_faults_stepped
        )
    }
}

impl ExitStats {
    /// Sum of all counters: how many times KVM_RUN returned.
    pub fn total(&self) -> u64 {
        self.io_in
            + self.io_out
            + self.mmio_read
            + self.mmio_write
            + self.hlt
            + self.interrupted
            + self.retried
            + self.shutdown
            + self.internal_error
            + self.fail_entry
            + self.other
            + self.debug
    }

    /// Exits that went to the [`crate::ExitHandler`] (port and MMIO, both directions).
    pub fn handled(&self) -> u64 {
        self.io_in + self.io_out + self.mmio_read + self.mmio_write
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_own_counter() {
        let kinds = [
            ExitKind::IoIn,
            ExitKind::IoOut,
            ExitKind::MmioRead,
            ExitKind::MmioWrite,
            ExitKind::Hlt,
            ExitKind::Interrupted,
            ExitKind::Retried,
            ExitKind::Shutdown,
            ExitKind::InternalError,
            ExitKind::FailEntry,
            ExitKind::Other,
        ];
        let c = ExitCounters::default();
        for (i, k) in kinds.iter().enumerate() {
            for _ in 0..=i {
                c.count(*k);
            }
        }
        let s = c.snapshot();
        let got = [
            s.io_in,
            s.io_out,
            s.mmio_read,
            s.mmio_write,
            s.hlt,
            s.interrupted,
            s.retried,
            s.shutdown,
            s.internal_error,
            s.fail_entry,
            s.other,
        ];
        assert_eq!(got, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
        assert_eq!(s.total(), 66);
        assert_eq!(s.handled(), 10);
        assert_eq!(s.emulated, EmulatedCounts::default());
        assert_eq!(s.emulated.to_string(), "none");
    }

    #[test]
    fn emulated_instructions_count_per_class() {
        let c = ExitCounters::default();
        c.count_emulated(InsnClass::Clac, false);
        c.count_emulated(InsnClass::Clac, false);
        c.count_emulated(InsnClass::Int3, true);
        c.count_emulated(InsnClass::Popcnt, false);
        let s = c.snapshot().emulated;
        assert_eq!(s.get(InsnClass::Clac), 2);
        assert_eq!(s.get(InsnClass::Stac), 0);
        assert_eq!((s.total(), s.exceptions), (4, 1));
        assert_eq!(s.to_string(), "int3=1 popcnt=1 clac=2");
        let mut sum = s;
        sum.add(&s);
        assert_eq!((sum.get(InsnClass::Clac), sum.exceptions), (4, 2));
    }

    #[test]
    fn syscall_completion_counts_and_debug_exits() {
        let c = ExitCounters::default();
        c.count_debug();
        c.count_debug();
        c.count_debug();
        c.count_syscall_completed();
        c.count_page_fault_stepped();
        let s = c.snapshot();
        assert_eq!(s.debug, 3);
        assert_eq!(s.total(), 3, "debug exits are returns of KVM_RUN");
        assert_eq!(
            s.syscall,
            SyscallCounts {
                completed: 1,
                page_faults_stepped: 1
            }
        );
        assert_eq!(s.syscall.to_string(), "completed=1 page-faults-stepped=1");
        let mut sum = s.syscall;
        sum.add(&s.syscall);
        assert_eq!((sum.completed, sum.page_faults_stepped), (2, 2));
    }
}

//! [`VcpuObserver`]: what other threads may read of a vCPU (state, thread id, statistics,
//! the host CPU it last ran on).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use cpu_topology::VcpuIndex;

use crate::fallback::FallbackDeclined;
use crate::handle::HostTid;
use crate::state::VcpuState;
use crate::stats::ExitStats;
use crate::vcpu::Shared;

/// Read-only view of one vCPU for other threads: state, thread id, statistics.
#[derive(Debug, Clone)]
pub struct VcpuObserver {
    pub(crate) index: VcpuIndex,
    pub(crate) tid: HostTid,
    pub(crate) shared: Arc<Shared>,
}

impl VcpuObserver {
    /// The vCPU index.
    pub fn index(&self) -> VcpuIndex {
        self.index
    }

    /// The host thread id of the vCPU thread.
    pub fn thread_id(&self) -> HostTid {
        self.tid
    }

    /// The current state.
    pub fn state(&self) -> VcpuState {
        self.shared.state()
    }

    /// A snapshot of the exit counters.
    pub fn stats(&self) -> ExitStats {
        self.shared.counters.snapshot()
    }

    /// Why the emulation fallback did not complete the instruction a
    /// [`StopReason::InternalError`](crate::StopReason::InternalError) stopped at (not on its
    /// list, with the instruction's bytes; or a failed ioctl). `None` when it did not decline
    /// anything (fallback off, other stop reasons).
    pub fn emulation_declined(&self) -> Option<FallbackDeclined> {
        self.shared.declined()
    }

    /// The host CPU the vCPU thread last ran on: read from the kernel while the thread
    /// runs the guest (`/proc/self/task/<tid>/stat`, field `processor`, so it is current
    /// even for a guest that never exits), else the CPU the thread recorded at its last
    /// state change (it has waited since). `None` if neither is known.
    pub fn last_host_cpu(&self) -> Option<u32> {
        last_cpu(self.tid, &self.shared)
    }
}

/// See [`VcpuObserver::last_host_cpu`].
fn last_cpu(tid: HostTid, shared: &Shared) -> Option<u32> {
    let recorded = match shared.last_cpu.load(Ordering::Relaxed) {
        u32::MAX => None,
        cpu => Some(cpu),
    };
    // A thread in the guest moves without telling anyone: ask the kernel. A thread that
    // waits (paused, halted) recorded its CPU when it started waiting; one that has not
    // recorded any yet is asked too. Stopped is published just before the thread ends;
    // after that the tid may be reused.
    let state = shared.state();
    let ask = state == VcpuState::Running || (recorded.is_none() && state != VcpuState::Stopped);
    ask.then(|| thread_cpu(tid)).flatten().or(recorded)
}

/// Field 39 (`processor`, the CPU the thread last ran on) of `/proc/self/task/<tid>/stat`.
fn thread_cpu(tid: HostTid) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{}/stat", tid.0)).ok()?;
    parse_stat_processor(&stat)
}

/// The `processor` field of a `stat` line. The command name (field 2) is in parentheses
/// and may itself contain spaces and parentheses, so fields are counted after the last `)`.
fn parse_stat_processor(stat: &str) -> Option<u32> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is the first one after the name, so field 39 is the 37th.
    after_comm.split_ascii_whitespace().nth(36)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys;

    #[test]
    fn stat_processor_field_is_counted_after_the_command_name() {
        // A real /proc/self/task/<tid>/stat line of a thread named "vcpu 1) x" on CPU 7.
        let fields_3_to_52 = (3..=52)
            .map(|f| {
                if f == 39 {
                    "7".to_string()
                } else {
                    f.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        let line = format!("1234 (vcpu 1) x) {fields_3_to_52}\n");
        assert_eq!(parse_stat_processor(&line), Some(7));
        assert_eq!(parse_stat_processor("1234 (vcpu 1) S 1 2 3"), None);
        assert_eq!(parse_stat_processor("no parenthesis"), None);
    }

    #[test]
    fn own_thread_cpu_is_readable() {
        let cpu = thread_cpu(HostTid(sys::gettid())).expect("processor field of this thread");
        // CPU_SETSIZE: no Linux CPU number reaches it.
        assert!(cpu < 1024, "cpu {cpu}");
        assert_eq!(thread_cpu(HostTid(-1)), None);
    }

    #[test]
    fn a_waiting_vcpu_reports_its_recorded_cpu_and_a_running_one_the_kernels() {
        // No host has CPU 999, so the recorded value is told apart from /proc's.
        let shared = Shared::new();
        let me = HostTid(sys::gettid());
        let set = |s: VcpuState| shared.state.store(s.as_u8(), Ordering::Relaxed);
        // Created, nothing recorded yet: the kernel's.
        assert_eq!(last_cpu(me, &shared), thread_cpu(me));
        shared.last_cpu.store(999, Ordering::Relaxed);
        for waiting in [VcpuState::Halted, VcpuState::Paused, VcpuState::Stopped] {
            set(waiting);
            assert_eq!(last_cpu(me, &shared), Some(999), "{waiting:?}");
        }
        set(VcpuState::Running);
        assert!(last_cpu(me, &shared).is_some_and(|cpu| cpu < 999));
        // A running thread the kernel no longer knows: what it recorded.
        assert_eq!(last_cpu(HostTid(-1), &shared), Some(999));
    }
}

//! Applying a plan to threads, and reading back what they really got (`vcpuinfo`).
//!
//! A vCPU thread pins itself with [`apply_to_current_thread`] before its first `KVM_RUN`; a
//! live re-pin from another thread goes through [`pin_thread`] with the vCPU's [`Tid`].
#![forbid(unsafe_code)]

use std::fmt;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use cpu_topology::cpuset::{CpuSetError, HostCpuId, HostCpuSet, LIMIT_CEILING};
use cpu_topology::VcpuIndex;

use crate::plan::PlacementPlan;
use crate::sys;

/// A kernel thread id (what `gettid()` returns, `ps -L` shows and QMP calls `thread-id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tid(pub i32);

impl Tid {
    /// The calling thread's id.
    pub fn current() -> Tid {
        Tid(sys::gettid())
    }
}

impl fmt::Display for Tid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why applying or reading a thread's placement failed.
#[derive(Debug, thiserror::Error)]
pub enum ThreadError {
    /// An empty set cannot be applied.
    #[error("refusing to pin thread {tid} to an empty CPU set")]
    EmptySet {
        /// The thread.
        tid: Tid,
    },
    /// `sched_setaffinity` failed.
    #[error("sched_setaffinity(thread {tid}, CPUs {cpus}) failed")]
    SetAffinity {
        /// The thread.
        tid: Tid,
        /// The CPUs asked for.
        cpus: HostCpuSet,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `sched_getaffinity` failed.
    #[error("sched_getaffinity(thread {tid}) failed")]
    GetAffinity {
        /// The thread.
        tid: Tid,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A `/proc` file could not be read.
    #[error("cannot read {}", path.display())]
    ReadProc {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A `/proc` file did not have the expected shape.
    #[error("unexpected content in {}: {what}", path.display())]
    ParseProc {
        /// The file.
        path: PathBuf,
        /// What was missing or wrong.
        what: String,
    },
    /// `Cpus_allowed_list` did not parse.
    #[error("bad Cpus_allowed_list in {}", path.display())]
    ParseAffinity {
        /// The file.
        path: PathBuf,
        /// The grammar error.
        #[source]
        source: CpuSetError,
    },
}

/// Sets the affinity of thread `tid` (any thread of any process the caller may control).
pub fn pin_thread(tid: Tid, cpus: &HostCpuSet) -> Result<(), ThreadError> {
    if cpus.is_empty() {
        return Err(ThreadError::EmptySet { tid });
    }
    sys::set_affinity(tid.0, cpus).map_err(|source| ThreadError::SetAffinity {
        tid,
        cpus: cpus.clone(),
        source,
    })
}

/// Pins the calling thread; returns its id.
pub fn pin_current_thread(cpus: &HostCpuSet) -> Result<Tid, ThreadError> {
    let tid = Tid::current();
    pin_thread(tid, cpus)?;
    Ok(tid)
}

/// The affinity of thread `tid`, from `sched_getaffinity`.
pub fn thread_affinity(tid: Tid) -> Result<HostCpuSet, ThreadError> {
    sys::get_affinity(tid.0).map_err(|source| ThreadError::GetAffinity { tid, source })
}

/// The vCPU-thread hook: pins the calling thread as `plan` says for `vcpu`. Returns the thread
/// id, and whether it was pinned (an unpinned vCPU keeps its inherited affinity). A vCPU the
/// plan does not have is left alone.
pub fn apply_to_current_thread(
    plan: &PlacementPlan,
    vcpu: VcpuIndex,
) -> Result<(Tid, bool), ThreadError> {
    let tid = Tid::current();
    match plan.vcpu(vcpu) {
        Some(p) if p.is_pinned() => {
            pin_thread(tid, &p.cpus)?;
            Ok((tid, true))
        }
        _ => Ok((tid, false)),
    }
}

/// Pins the calling (emulator) thread as the plan's emulator placement says; returns whether
/// it was pinned. Threads inherit the affinity of the thread that creates them, so call this
/// after the vCPU threads exist (an unpinned vCPU would otherwise inherit the emulator's CPUs).
pub fn apply_emulator_to_current_thread(plan: &PlacementPlan) -> Result<bool, ThreadError> {
    let emulator = plan.emulator();
    if !emulator.is_pinned() {
        return Ok(false);
    }
    pin_current_thread(&emulator.cpus)?;
    Ok(true)
}

/// Fields of `/proc/<pid>/task/<tid>/stat` this crate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskStat {
    /// Field 3: `R`, `S`, `D`, `Z`, ...
    pub state: char,
    /// Field 14: user time, in clock ticks.
    pub utime: u64,
    /// Field 15: system time, in clock ticks.
    pub stime: u64,
    /// Field 22: start time after boot, in clock ticks.
    pub start_time: u64,
    /// Field 39: CPU the task last ran on.
    pub processor: u32,
}

impl TaskStat {
    /// Parses a `stat` line. The command name (field 2) may hold spaces and parentheses, so
    /// the fields are counted from its last `)`.
    pub fn parse(line: &str) -> Option<TaskStat> {
        let rest = &line[line.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // fields[0] is field 3.
        let field = |n: usize| fields.get(n - 3).copied();
        Some(TaskStat {
            state: field(3)?.chars().next()?,
            utime: field(14)?.parse().ok()?,
            stime: field(15)?.parse().ok()?,
            start_time: field(22)?.parse().ok()?,
            processor: field(39)?.parse().ok()?,
        })
    }

    /// Reads `/proc/<pid>/stat`; `Ok(None)` when the process does not exist.
    pub fn of_process(pid: u32) -> Result<Option<TaskStat>, ThreadError> {
        let path = PathBuf::from(format!("/proc/{pid}/stat"));
        match fs::read_to_string(&path) {
            Ok(text) => TaskStat::parse(&text)
                .map(Some)
                .ok_or(ThreadError::ParseProc {
                    path,
                    what: "fewer than 39 fields".to_string(),
                }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ThreadError::ReadProc { path, source }),
        }
    }
}

fn read_proc(path: PathBuf) -> Result<(PathBuf, String), ThreadError> {
    match fs::read_to_string(&path) {
        Ok(text) => Ok((path, text)),
        Err(source) => Err(ThreadError::ReadProc { path, source }),
    }
}

/// What `virsh vcpuinfo` shows for one vCPU, read from `/proc/self/task/<tid>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcpuInfo {
    /// The vCPU.
    pub vcpu: VcpuIndex,
    /// Its thread.
    pub tid: Tid,
    /// Host CPU it last ran on.
    pub cpu_now: HostCpuId,
    /// User plus system time.
    pub cpu_time: Duration,
    /// `Cpus_allowed_list`.
    pub affinity: HostCpuSet,
}

impl VcpuInfo {
    /// Reads the vCPU thread `tid` of this process.
    pub fn read(vcpu: VcpuIndex, tid: Tid) -> Result<VcpuInfo, ThreadError> {
        let dir = PathBuf::from(format!("/proc/self/task/{}", tid.0));
        let (path, stat) = read_proc(dir.join("stat"))?;
        let stat = TaskStat::parse(&stat).ok_or(ThreadError::ParseProc {
            path,
            what: "fewer than 39 fields".to_string(),
        })?;
        let (path, status) = read_proc(dir.join("status"))?;
        let affinity = parse_cpus_allowed_list(&status).map_err(|e| match e {
            Some(source) => ThreadError::ParseAffinity {
                path: path.clone(),
                source,
            },
            None => ThreadError::ParseProc {
                path: path.clone(),
                what: "no Cpus_allowed_list line".to_string(),
            },
        })?;
        let ticks = sys::clock_ticks_per_second();
        let total = stat.utime + stat.stime;
        Ok(VcpuInfo {
            vcpu,
            tid,
            cpu_now: HostCpuId(stat.processor),
            cpu_time: Duration::from_secs(total / ticks)
                + Duration::from_nanos((total % ticks) * 1_000_000_000 / ticks),
            affinity,
        })
    }

    /// `virsh vcpuinfo` text for this vCPU: `state` is the vCPU's run state as the VMM knows
    /// it (`running`, `paused`, ...); the affinity string has one column per host CPU id
    /// (`host_cpus`, e.g. `HostCpuInventory::cpu_id_limit`).
    pub fn to_libvirt_string(&self, state: &str, host_cpus: u32) -> String {
        format!(
            "{:<15} {}\n{:<15} {}\n{:<15} {}\n{:<15} {:.1}s\n{:<15} {}\n",
            "VCPU:",
            self.vcpu.0,
            "CPU:",
            self.cpu_now.0,
            "State:",
            state,
            "CPU time:",
            self.cpu_time.as_secs_f64(),
            "CPU Affinity:",
            self.affinity.to_affinity_string(host_cpus)
        )
    }
}

/// Finds `Cpus_allowed_list:` in a `status` file. `Err(None)` when the line is missing.
pub fn parse_cpus_allowed_list(status: &str) -> Result<HostCpuSet, Option<CpuSetError>> {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .ok_or(None)?;
    HostCpuSet::parse_cpu_list(line, LIMIT_CEILING).map_err(Some)
}

//! The per-thread-kind filters: JSON data in `filters/`, compiled to BPF by build.rs,
//! installed on the calling thread.
//!
//! build.rs compiles every combination the VMM can ask for (each kind, the `on` and `log`
//! mismatch actions, with and without the panic-backtrace rules), so a VMM starts without
//! parsing JSON or running seccompiler's compiler, and a broken filter file fails the
//! build. The unit tests below check the JSON itself: a comment on every rule, and that
//! the main thread allows everything the threads it spawns need.

use seccompiler::sock_filter;

use crate::mode::SeccompMode;
use crate::sys;

mod compiled {
    include!(concat!(env!("OUT_DIR"), "/filters.rs"));
}

/// The kinds of thread a VMM has; each has its own filter file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThreadKind {
    /// The main thread: set-up, the event loop, the monitor, hot-plug. vCPU and helper
    /// threads it spawns after its filter is installed inherit that filter, so
    /// `filters/main.json` allows everything the other two allow.
    Main,
    /// A vCPU thread: `KVM_RUN` and its exit path.
    Vcpu,
    /// Any other thread (a blocking stdin reader, a timer).
    Helper,
}

impl ThreadKind {
    /// Every kind, in filter-file order.
    pub const ALL: [ThreadKind; 3] = [ThreadKind::Main, ThreadKind::Vcpu, ThreadKind::Helper];

    /// The kind's name: its filter file is `filters/<name>.json`, whose one key is the name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Main => "main",
            Self::Vcpu => "vcpu",
            Self::Helper => "helper",
        }
    }

    /// The filter's JSON text, as kept in the repository (and compiled by build.rs).
    pub fn filter_json(self) -> &'static str {
        match self {
            Self::Main => include_str!("../filters/main.json"),
            Self::Vcpu => include_str!("../filters/vcpu.json"),
            Self::Helper => include_str!("../filters/helper.json"),
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Errors from installing a filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The kernel refused the filter (or `PR_SET_NO_NEW_PRIVS`).
    #[error("seccomp filter '{kind}': installing it on thread {tid} failed")]
    Install {
        /// The thread kind.
        kind: &'static str,
        /// The calling thread.
        tid: i32,
        /// seccompiler's error (it carries the errno).
        #[source]
        source: seccompiler::Error,
    },
    /// The SIGSYS reporter could not be registered.
    #[error("registering the SIGSYS handler for seccomp reports failed")]
    SigsysHandler(#[source] std::io::Error),
}

/// The filters of one mode. `Copy`: hand one to every thread that installs its own filter.
#[derive(Debug, Clone, Copy)]
pub struct Sandbox {
    mode: SeccompMode,
    /// With the panic-backtrace rules (`filters/backtrace.json`).
    backtraces: bool,
}

impl Sandbox {
    /// The filters for `mode`. When std prints panic backtraces (`RUST_BACKTRACE` set and
    /// not `0`), the syscalls that takes (`filters/backtrace.json`: reading the
    /// executable's debug information) are allowed by every filter, so a vCPU thread's
    /// panic still reports instead of tripping the filter. In [`SeccompMode::On`] this also
    /// registers the process-wide SIGSYS reporter (see [`set_report_prefix`]): a forbidden
    /// syscall prints `<prefix>: seccomp: ...` naming the syscall and the thread, then the
    /// process exits with [`Sandbox::VIOLATION_EXIT_CODE`].
    ///
    /// [`set_report_prefix`]: crate::set_report_prefix
    pub fn new(mode: SeccompMode) -> Result<Self, SeccompError> {
        if mode == SeccompMode::On {
            sys::install_sigsys_reporter(Self::VIOLATION_EXIT_CODE)
                .map_err(SeccompError::SigsysHandler)?;
        }
        Ok(Self {
            mode,
            backtraces: backtraces_wanted(),
        })
    }

    /// Exit status after a forbidden syscall in [`SeccompMode::On`]: 1, "the VM failed"
    /// in vmm-reference's table.
    pub const VIOLATION_EXIT_CODE: i32 = 1;

    /// The mode these filters are for.
    pub fn mode(&self) -> SeccompMode {
        self.mode
    }

    /// The BPF program of a kind (`None` in [`SeccompMode::Off`]).
    pub fn program(&self, kind: ThreadKind) -> Option<&'static [sock_filter]> {
        program(kind, self.mode, self.backtraces)
    }

    /// Install `kind`'s filter on the calling thread, after setting `PR_SET_NO_NEW_PRIVS`
    /// on it. Threads the caller spawns afterwards inherit the filter. Nothing happens in
    /// [`SeccompMode::Off`]. Call it before the thread does its real work: for a vCPU thread,
    /// first thing in the thread, before the first `KVM_RUN`.
    pub fn apply(&self, kind: ThreadKind) -> Result<(), SeccompError> {
        let Some(program) = self.program(kind) else {
            return Ok(());
        };
        sys::remember_thread(kind, std::thread::current().name());
        seccompiler::apply_filter(program).map_err(|source| SeccompError::Install {
            kind: kind.name(),
            tid: sys::gettid(),
            source,
        })
    }
}

/// Whether std prints backtraces in this process: `RUST_BACKTRACE` set and not `0`.
fn backtraces_wanted() -> bool {
    std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0")
}

/// The program build.rs compiled for `kind` with `mode`'s mismatch action.
fn program(
    kind: ThreadKind,
    mode: SeccompMode,
    backtraces: bool,
) -> Option<&'static [sock_filter]> {
    let action = match mode {
        SeccompMode::Off => return None,
        SeccompMode::On => 0,
        SeccompMode::Log => 1,
    };
    Some(compiled::PROGRAMS[kind.index()][action][usize::from(backtraces)])
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use serde_json::Value;

    use super::*;

    /// Syscall name -> the set of `ioctl`-style first-argument values it is limited to
    /// (`None`: any arguments).
    fn rules(kind: ThreadKind) -> BTreeMap<String, Option<BTreeSet<u64>>> {
        let doc: Value = serde_json::from_str(kind.filter_json()).unwrap();
        let mut out: BTreeMap<String, Option<BTreeSet<u64>>> = BTreeMap::new();
        for rule in doc[kind.name()]["filter"].as_array().unwrap() {
            let name = rule["syscall"].as_str().unwrap().to_owned();
            match rule.get("args") {
                None => {
                    out.insert(name, None);
                }
                Some(args) => {
                    let val = args[0]["val"].as_u64().unwrap();
                    if let Some(set) = out.entry(name).or_insert_with(|| Some(BTreeSet::new())) {
                        set.insert(val);
                    }
                }
            }
        }
        out
    }

    #[test]
    fn every_kind_has_a_program_in_every_mode() {
        for mode in [SeccompMode::On, SeccompMode::Log] {
            for kind in ThreadKind::ALL {
                let plain = program(kind, mode, false).unwrap();
                assert!(plain.len() > 10, "{} in {mode}", kind.name());
                let with_backtraces = program(kind, mode, true).unwrap();
                assert!(
                    with_backtraces.len() > plain.len(),
                    "{} in {mode}",
                    kind.name()
                );
            }
        }
        // The two modes differ only in what a mismatch does: `on` traps, `log` logs.
        let on = program(ThreadKind::Vcpu, SeccompMode::On, false).unwrap();
        let log = program(ThreadKind::Vcpu, SeccompMode::Log, false).unwrap();
        assert_eq!(on.len(), log.len());
        let returns = |p: &[sock_filter]| -> Vec<u32> {
            // BPF_RET | BPF_K: the action a path ends in.
            p.iter().filter(|i| i.code == 0x06).map(|i| i.k).collect()
        };
        assert!(returns(on).contains(&libc::SECCOMP_RET_TRAP));
        assert!(!returns(on).contains(&libc::SECCOMP_RET_LOG));
        assert!(returns(log).contains(&libc::SECCOMP_RET_LOG));
        assert!(!returns(log).contains(&libc::SECCOMP_RET_TRAP));
    }

    #[test]
    fn every_rule_says_who_needs_it() {
        for kind in ThreadKind::ALL {
            let doc: Value = serde_json::from_str(kind.filter_json()).unwrap();
            for rule in doc[kind.name()]["filter"].as_array().unwrap() {
                let comment = rule["comment"].as_str().unwrap_or_default();
                assert!(comment.len() > 10, "{}: {rule}", kind.name());
            }
            assert_eq!(doc[kind.name()]["mismatch_action"], "trap");
        }
    }

    #[test]
    fn main_allows_everything_its_children_need() {
        let main = rules(ThreadKind::Main);
        for kind in [ThreadKind::Vcpu, ThreadKind::Helper] {
            for (name, args) in rules(kind) {
                match (main.get(&name), args) {
                    (None, _) => panic!("{} needs {name}, main does not allow it", kind.name()),
                    (Some(None), _) => {}
                    (Some(Some(_)), None) => panic!("main limits {name}, {} does not", kind.name()),
                    (Some(Some(m)), Some(a)) => {
                        assert!(
                            a.is_subset(m),
                            "{}: {name} {:?}",
                            kind.name(),
                            a.difference(m)
                        )
                    }
                }
            }
        }
    }

    #[test]
    fn off_compiles_nothing() {
        let sandbox = Sandbox::new(SeccompMode::Off).unwrap();
        assert!(sandbox.program(ThreadKind::Vcpu).is_none());
        sandbox.apply(ThreadKind::Vcpu).unwrap();
        assert_eq!(crate::thread_status().unwrap().seccomp, 0);
    }

    /// A classic-BPF interpreter for what seccompiler and build.rs emit, over a
    /// `seccomp_data` (nr, arch, instruction pointer, six arguments).
    fn run_bpf(program: &[sock_filter], data: &[u8; 64]) -> u32 {
        let word = |k: u32| {
            let k = k as usize;
            u32::from_le_bytes(data[k..k + 4].try_into().unwrap())
        };
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let insn = &program[pc];
            pc += 1;
            let jump = |taken: bool| usize::from(if taken { insn.jt } else { insn.jf });
            match insn.code {
                0x20 => a = word(insn.k),
                0x54 => a &= insn.k,
                0x05 => pc += insn.k as usize,
                0x15 => pc += jump(a == insn.k),
                0x25 => pc += jump(a > insn.k),
                0x35 => pc += jump(a >= insn.k),
                0x45 => pc += jump(a & insn.k != 0),
                0x06 => return insn.k,
                code => panic!("BPF opcode {code:#x} at {}", pc - 1),
            }
        }
    }

    #[test]
    fn bucketed_filters_give_every_syscall_the_linear_verdict() {
        const X86_64: u32 = 0xc000_003e;
        const I386: u32 = 0x4000_0003;
        for (kind, bucketed) in compiled::PROGRAMS.iter().enumerate() {
            for (action, bucketed) in bucketed.iter().enumerate() {
                for (bt, bucketed) in bucketed.iter().enumerate() {
                    let linear = compiled::LINEAR[kind][action][bt];
                    // build/peephole.rs more than halves seccompiler's chains.
                    assert!(
                        2 * bucketed.len() < linear.len(),
                        "{} vs {}",
                        bucketed.len(),
                        linear.len()
                    );
                    // Every constant the rules compare with, in every argument slot.
                    let mut values: Vec<u32> = linear.iter().map(|i| i.k).collect();
                    values.sort_unstable();
                    values.dedup();
                    let mut numbers: Vec<u32> = (0..480).collect();
                    numbers.extend([0x4000_0000, 0x4000_0001, u32::MAX]);
                    let mut checked = 0;
                    for nr in numbers {
                        for arch in [X86_64, I386] {
                            let mut data = [0u8; 64];
                            data[..4].copy_from_slice(&nr.to_le_bytes());
                            data[4..8].copy_from_slice(&arch.to_le_bytes());
                            let want = run_bpf(linear, &data);
                            assert_eq!(run_bpf(bucketed, &data), want, "nr {nr}");
                            // Arguments matter only where the linear filter looks at them.
                            let with_args = |v: u32, slot: usize| {
                                let mut d = data;
                                d[16 + 8 * slot..20 + 8 * slot].copy_from_slice(&v.to_le_bytes());
                                d
                            };
                            if arch != X86_64 || nr >= 480 {
                                continue;
                            }
                            for &v in &values {
                                for slot in 0..3 {
                                    let d = with_args(v, slot);
                                    let want = run_bpf(linear, &d);
                                    assert_eq!(
                                        run_bpf(bucketed, &d),
                                        want,
                                        "nr {nr} arg{slot}={v:#x}"
                                    );
                                    checked += 1;
                                }
                            }
                        }
                    }
                    assert!(checked > 0);
                }
            }
        }
    }
}

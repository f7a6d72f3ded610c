//! The per-thread-kind filters: JSON data in `filters/`, compiled at run time for the
//! chosen [`SeccompMode`], installed on the calling thread.
//!
//! Why run time and not build.rs: the mode (`on` traps, `log` logs) is the filters'
//! mismatch action, chosen on the command line, and compiling the three small filters
//! costs well under a millisecond at start-up. A unit test compiles every filter in every
//! mode, so a broken JSON file fails `cargo test`, not a user's VM.

use std::sync::Arc;

use seccompiler::{BpfProgram, TargetArch};
use serde_json::Value;

use crate::mode::SeccompMode;
use crate::sys;

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

    /// The filter's JSON text, as kept in the repository.
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

/// Errors from compiling or installing a filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// A filter file is not valid JSON or lacks its key (a build of this crate is broken).
    #[error("seccomp filter '{kind}': invalid filter file")]
    FilterFile {
        /// The thread kind.
        kind: &'static str,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A filter file has no `mismatch_action` to set (a build of this crate is broken).
    #[error("seccomp filter '{kind}': the filter file has no '{kind}' object")]
    MissingFilter {
        /// The thread kind.
        kind: &'static str,
    },
    /// seccompiler rejected a filter.
    #[error("seccomp filter '{kind}': compiling failed")]
    Compile {
        /// The thread kind.
        kind: &'static str,
        /// seccompiler's error.
        #[source]
        source: seccompiler::Error,
    },
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

/// The compiled filters of one mode. Cheap to clone: hand a clone to every thread that
/// installs its own filter.
#[derive(Debug, Clone)]
pub struct Sandbox {
    mode: SeccompMode,
    /// Indexed by [`ThreadKind`]; empty in [`SeccompMode::Off`].
    programs: Arc<Vec<BpfProgram>>,
}

impl Sandbox {
    /// Compile every thread kind's filter for `mode`. When std prints panic backtraces
    /// (`RUST_BACKTRACE` set and not `0`), the syscalls that takes (`filters/backtrace.json`:
    /// reading the executable's debug information) are added to every filter, so a vCPU
    /// thread's panic still reports instead of tripping the filter. In [`SeccompMode::On`] this also
    /// registers the process-wide SIGSYS reporter (see [`set_report_prefix`]): a forbidden
    /// syscall prints `<prefix>: seccomp: ...` naming the syscall and the thread, then the
    /// process exits with [`Sandbox::VIOLATION_EXIT_CODE`].
    ///
    /// [`set_report_prefix`]: crate::set_report_prefix
    pub fn new(mode: SeccompMode) -> Result<Self, SeccompError> {
        let mut programs = Vec::new();
        if mode != SeccompMode::Off {
            for kind in ThreadKind::ALL {
                programs.push(compile(kind, mode, backtraces_wanted())?);
            }
        }
        if mode == SeccompMode::On {
            sys::install_sigsys_reporter(Self::VIOLATION_EXIT_CODE)
                .map_err(SeccompError::SigsysHandler)?;
        }
        Ok(Self {
            mode,
            programs: Arc::new(programs),
        })
    }

    /// Exit status after a forbidden syscall in [`SeccompMode::On`]: 1, "the VM failed"
    /// in vmm-reference's table.
    pub const VIOLATION_EXIT_CODE: i32 = 1;

    /// The mode these filters were compiled for.
    pub fn mode(&self) -> SeccompMode {
        self.mode
    }

    /// The compiled BPF program of a kind (`None` in [`SeccompMode::Off`]).
    pub fn program(&self, kind: ThreadKind) -> Option<&BpfProgram> {
        self.programs.get(kind.index())
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

/// What std needs to print a panic's backtrace (`RUST_BACKTRACE=1`): reading the
/// executable's debug information. Added to every filter only when backtraces are on.
const BACKTRACE_JSON: &str = include_str!("../filters/backtrace.json");

/// Whether std prints backtraces in this process: `RUST_BACKTRACE` set and not `0`.
fn backtraces_wanted() -> bool {
    std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0")
}

/// Compile one kind's filter with the mode's mismatch action, plus the backtrace rules
/// when `backtraces`.
fn compile(
    kind: ThreadKind,
    mode: SeccompMode,
    backtraces: bool,
) -> Result<BpfProgram, SeccompError> {
    let name = kind.name();
    let file_err = |source| SeccompError::FilterFile { kind: name, source };
    let mut doc: Value = serde_json::from_str(kind.filter_json()).map_err(file_err)?;
    let action = match mode {
        SeccompMode::Log => "log",
        SeccompMode::On | SeccompMode::Off => "trap",
    };
    let filter = doc
        .get_mut(name)
        .and_then(Value::as_object_mut)
        .ok_or(SeccompError::MissingFilter { kind: name })?;
    filter.insert("mismatch_action".into(), Value::from(action));
    if backtraces {
        let extra: Value = serde_json::from_str(BACKTRACE_JSON).map_err(file_err)?;
        let rules = filter
            .get_mut("filter")
            .and_then(Value::as_array_mut)
            .ok_or(SeccompError::MissingFilter { kind: name })?;
        let unconditional = |rules: &[Value], syscall: &Value| {
            rules
                .iter()
                .any(|r| r["syscall"] == *syscall && r.get("args").is_none())
        };
        for rule in extra["backtrace"]["filter"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if !unconditional(rules, &rule["syscall"]) {
                rules.push(rule.clone());
            }
        }
    }
    let json = serde_json::to_vec(&doc).map_err(file_err)?;
    let mut map = seccompiler::compile_from_json(json.as_slice(), TargetArch::x86_64)
        .map_err(|source| SeccompError::Compile { kind: name, source })?;
    map.remove(name)
        .ok_or(SeccompError::MissingFilter { kind: name })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

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
    fn every_filter_compiles_in_every_mode() {
        for mode in [SeccompMode::On, SeccompMode::Log] {
            for kind in ThreadKind::ALL {
                let program = compile(kind, mode, false).unwrap();
                assert!(program.len() > 10, "{} in {mode}", kind.name());
                let with_backtraces = compile(kind, mode, true).unwrap();
                assert!(
                    with_backtraces.len() > program.len(),
                    "{} in {mode}",
                    kind.name()
                );
            }
        }
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
}

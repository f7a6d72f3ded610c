//! Least privilege for a KVM VMM: per-thread seccomp filters, `--runas` and a capability
//! drop.
//!
//! * **Seccomp.** One filter per thread kind ([`ThreadKind`]: main/event loop, vCPU,
//!   helper), kept as data in `filters/<kind>.json` in rust-vmm seccompiler's JSON format,
//!   every rule with a `comment` saying who needs the syscall. build.rs compiles
//!   them to BPF; [`Sandbox::new`] picks them for a [`SeccompMode`] (`--seccomp
//!   on|log|off`, or QEMU's `-sandbox on|off`); [`Sandbox::apply`] installs one on the calling thread with `NoNewPrivs` set. In `on`
//!   mode a forbidden syscall ends the process with a one-line report naming the syscall,
//!   its number, the thread and (for `ioctl`) the request; in `log` mode the kernel logs
//!   it and lets it through.
//! * **Privileges.** [`RunAs`] parses `--runas USER[:GROUP]`, [`RunAs::resolve`] looks it
//!   up, [`drop_privileges`] switches to it and empties every capability set, and checks
//!   that both stuck.
//! * **Checks.** [`thread_status`] / [`task_status`] read `Seccomp`, `NoNewPrivs` and
//!   `CapEff` from `/proc`, as a user would.
//!
//! ```no_run
//! use vmm_sandbox::{drop_privileges, parse_runas, Sandbox, SeccompMode, ThreadKind};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Set-up done: /dev/kvm open, VM created, sockets bound.
//! let runas = parse_runas("nobody")?.resolve()?;
//! drop_privileges(Some(&runas))?;
//! let sandbox = Sandbox::new(SeccompMode::On)?;
//! let vcpu_sandbox = sandbox; // Sandbox is Copy
//! let vcpu = std::thread::Builder::new().name("vcpu 0".into()).spawn(move || {
//!     vcpu_sandbox.apply(ThreadKind::Vcpu).expect("vcpu filter");
//!     // ... KVM_RUN loop ...
//! })?;
//! sandbox.apply(ThreadKind::Main)?;
//! // ... event loop ...
//! vcpu.join().ok();
//! # Ok(())
//! # }
//! ```

/// Compiles the README example as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

mod filter;
mod mode;
mod privilege;
mod status;
mod sys;
mod syscall_names;

pub use filter::{Sandbox, SeccompError, ThreadKind};
pub use mode::{parse_sandbox, parse_seccomp, ModeError, SeccompMode};
pub use privilege::{drop_privileges, parse_runas, Credentials, PrivilegeError, RunAs};
pub use status::{task_status, thread_status, ThreadSandboxStatus};
pub use sys::set_report_prefix;

/// The name of x86-64 syscall `nr` (`"unknown"` for a number the table lacks).
pub fn syscall_name(nr: i64) -> &'static str {
    sys::syscall_name(nr)
}

#[cfg(test)]
mod tests {
    #[test]
    fn syscall_names_by_number() {
        assert_eq!(super::syscall_name(0), "read");
        assert_eq!(super::syscall_name(16), "ioctl");
        assert_eq!(super::syscall_name(110), "getppid");
        assert_eq!(super::syscall_name(435), "clone3");
        assert_eq!(super::syscall_name(100_000), "unknown");
        assert_eq!(super::syscall_name(-1), "unknown");
        assert_eq!(super::syscall_name(450), "set_mempolicy_home_node");
    }

    #[test]
    fn every_syscall_number_has_one_name() {
        let names = crate::syscall_names::NAMES.split(' ');
        assert_eq!(names.clone().count(), crate::syscall_names::NUMBERS.len());
        assert!(names.clone().all(|n| !n.is_empty()));
    }
}

//! The reference VMM: composes the workspace crates into one VM that runs the embedded
//! probe guest on every vCPU (and reports what each vCPU saw) or boots a kernel.
//!
//! `main.rs` only parses the command line; everything else is here, so tests drive a
//! [`Vmm`] in-process exactly as the binary does:
//!
//! ```no_run
//! use cpu_topology::smp::parse_smp;
//! use vmm_reference::{Vmm, VmmConfig};
//!
//! let config = VmmConfig::new(parse_smp("8,sockets=2,cores=2,threads=2").unwrap());
//! let ended = Vmm::new(config).and_then(|mut vmm| vmm.run()).unwrap();
//! let summary = ended.summary().expect("the probe reports");
//! assert_eq!(summary.vcpus.len(), 8);
//! print!("{summary}");
//! ```

pub mod advisor;
pub mod cli;
mod config;
mod error;
pub mod guest_setup;
pub mod linux;
pub mod logger;
pub mod machine;
pub mod placement;
pub use cpuid_model::plan as planner;
pub use vcpu_lifecycle::host as host_check;
pub mod probe;
pub mod run;
mod signals;
pub mod tools;
pub mod vm;

#[doc(hidden)]
pub mod testing;

pub use config::{KernelConfig, Payload, ProbeConfig, SecurityConfig, VmmConfig};
pub use cpuid_model::report::{Summary, VcpuView, WorkloadView};
pub use error::VmmError;
pub use vm::{Ended, GuestExit, Vmm};

/// The CPU model when `--cpu` is not given, as in QEMU.
pub const DEFAULT_CPU_MODEL: &str = "qemu64";

/// An error and its causes on one line: `outer: cause: root cause`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

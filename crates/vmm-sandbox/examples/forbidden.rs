//! Install the vCPU filter on a thread named `vcpu 0`, show the thread's sandbox state,
//! then make a syscall the filter forbids (`getppid`).
//!
//! ```text
//! cargo run -p vmm-sandbox --example forbidden -- on    # ends with a report, exit 1
//! cargo run -p vmm-sandbox --example forbidden -- log   # logged by the kernel, allowed
//! cargo run -p vmm-sandbox --example forbidden -- off   # no filter
//! ```

use vmm_sandbox::{parse_seccomp, set_report_prefix, Sandbox, ThreadKind};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mode = parse_seccomp(&std::env::args().nth(1).unwrap_or_else(|| "on".into()))?;
    set_report_prefix("forbidden");
    let sandbox = Sandbox::new(mode)?;
    let vcpu = std::thread::Builder::new().name("vcpu 0".into()).spawn(
        move || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            sandbox.apply(ThreadKind::Vcpu)?;
            println!("vcpu 0: filter installed ({mode})");
            // SAFETY: getppid has no arguments.
            let parent = unsafe { libc::getppid() };
            println!("getppid() = {parent}: the {mode} mode let it through");
            Ok(())
        },
    )?;
    vcpu.join()
        .map_err(|_| "the vcpu thread panicked")?
        .map_err(|e| e.to_string())?;
    Ok(())
}

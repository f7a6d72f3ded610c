//! The subcommands that do not run a VM of the user's (`host-check`, `cpuid-plan`,
//! `cpuid-baseline`, `overcommit-advice`, `--cpu help`), and the binary's output rules:
//! results on stdout, one error line on stderr, status 2 for bad input and 1 otherwise.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::{AdviceArgs, CpuArg, PlanArgs};
use crate::{advisor, error_chain, host_check, planner};

/// What a subcommand returns: `Err` carries the failure's exit code, already reported.
pub type ToolResult = Result<ExitCode, ExitCode>;

/// Write to stdout; a closed pipe (`| head`) is not an error worth a panic.
pub fn emit(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// One line on stderr; status 2 for bad input, 1 for anything else.
pub fn fail(e: &dyn std::error::Error, bad_input: bool) -> ExitCode {
    eprintln!("vmm-reference: {}", error_chain(e));
    ExitCode::from(if bad_input { 2 } else { 1 })
}

/// One line on stderr, status 2.
pub fn bad_input(msg: &str) -> ExitCode {
    eprintln!("vmm-reference: {msg}");
    ExitCode::from(2)
}

/// `domxml-to-native FILE`: the command line equivalent to a libvirt domain.
pub fn domxml_to_native(file: &Path) -> ToolResult {
    let command = crate::cli::domain::native_command(file).map_err(|msg| bad_input(&msg))?;
    emit(&format!("{}\n", command.to_shell("vmm-reference")));
    Ok(ExitCode::SUCCESS)
}

/// `host-check`: can this host run KVM guests (status 1 when it cannot).
pub fn host_check() -> ToolResult {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let report = host_check::check(Path::new("/dev/kvm"), &cpuinfo);
    emit(&report.render());
    if report.usable {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(ExitCode::from(1))
    }
}

/// `--cpu help`: the CPU models and flags.
pub fn cpu_help() -> ToolResult {
    emit(&cpuid_model::model::help_text());
    Ok(ExitCode::SUCCESS)
}

/// `cpuid-baseline`: the largest model every host of the fleet can run.
pub fn cpuid_baseline(dumps: &[PathBuf]) -> ToolResult {
    let (b, warnings) = planner::fleet_baseline(dumps).map_err(|e| fail(&e, e.is_bad_input()))?;
    for w in warnings {
        log::warn!("{w}");
    }
    emit(&format!("{b}\n"));
    Ok(ExitCode::SUCCESS)
}

/// `cpuid-plan`: what every vCPU would see on another host, from its `cpuid -r` dump.
pub fn cpuid_plan(args: Box<PlanArgs>) -> ToolResult {
    let spec = match args.cpu {
        CpuArg::Help => return cpu_help(),
        CpuArg::Spec(spec) => spec,
    };
    let plan = planner::read_host_dump(&args.host_dump)
        .and_then(|host| planner::plan(&host, &spec, &args.smp))
        .and_then(|plan| {
            for w in &plan.warnings {
                log::warn!("{w}");
            }
            planner::write_plan(
                &plan.tables,
                args.dump_cpuid.as_deref(),
                args.dump_cpuid_hwloc.as_deref(),
            )?;
            Ok(plan)
        })
        .map_err(|e| fail(&e, e.is_bad_input()))?;
    emit(&plan.summary.to_string());
    Ok(ExitCode::SUCCESS)
}

/// `overcommit-advice`: explain, then measure, how a guest this wide runs on these CPUs.
pub fn overcommit_advice(args: AdviceArgs) -> ToolResult {
    let host = cpu_topology::HostCpuInventory::read().map_err(|e| fail(&e, false))?;
    let allowed = args
        .cpuset
        .as_ref()
        .map_or_else(|| host.online().clone(), |c| c.resolve(host.online()));
    if allowed.is_empty() {
        return Err(bad_input(&format!(
            "--cpuset names no online host CPU (online: {})",
            host.online()
        )));
    }
    let policy = vcpu_placement::OvercommitPolicy {
        shared_ratio: args.overcommit_ratio,
        ..Default::default()
    };
    let vcpus = args.smp.cpus();
    emit(&advisor::explain(&host, &allowed, vcpus, &policy));
    if args.no_measure {
        return Ok(ExitCode::SUCCESS);
    }
    let widths = advisor::widths(vcpus, allowed.len() as u32);
    let window = std::time::Duration::from_millis(args.window_ms);
    let rows = advisor::measure(&widths, args.cpuset.as_ref(), window, args.barrier_work)
        .map_err(|e| fail(&e, e.is_bad_input()))?;
    emit(&format!(
        "\nmeasured on host CPUs {allowed} ({} ms per width):\n",
        args.window_ms
    ));
    emit(&advisor::table(&rows, allowed.len() as u32));
    Ok(ExitCode::SUCCESS)
}

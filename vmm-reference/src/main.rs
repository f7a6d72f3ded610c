//! `vmm-reference`: parse the command line, then run a tool or a VM.
//!
//! Exit codes (docs/ARCHITECTURE.md): 0 the VM or tool finished (probe done, guest reset
//! or power off, `quit`, a termination signal); 1 the VM failed (guest fault, KVM error,
//! timeout); 2 bad input (options, grammar, limits).

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;
use vmm_reference::cli::{domain, normalize_args, Cli, Command, CpuArg};
use vmm_reference::run::{self, Outcome};
use vmm_reference::{tools, Ended, Vmm, VmmConfig, VmmError};

fn main() -> ExitCode {
    vmm_reference::logger::init();
    let args = match domain::expand(normalize_args(std::env::args())) {
        Ok(args) => args,
        Err(msg) => return tools::bad_input(&msg),
    };
    let mut cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return clap_exit(&e),
    };
    cli.run.linux.absorb_numa_cells();
    vmm_sandbox::set_report_prefix("vmm-reference");
    let code = match cli.command {
        Some(Command::HostCheck) => tools::host_check(),
        Some(Command::CpuidPlan(args)) => tools::cpuid_plan(args),
        Some(Command::OvercommitAdvice(args)) => tools::overcommit_advice(args),
        Some(Command::CpuidBaseline { dumps }) => tools::cpuid_baseline(&dumps),
        Some(Command::DomxmlToNative { file }) => tools::domxml_to_native(&file),
        None => match cli.run.cpu.clone() {
            CpuArg::Help => tools::cpu_help(),
            CpuArg::Spec(spec) => {
                let plan_only = cli.run.placement.placement_plan;
                let options = run::RunOptions {
                    qmp: cli.run.qmp.clone(),
                    start_paused: cli.run.qemu.start_paused,
                };
                match VmmConfig::from_args(cli.run, spec) {
                    Err(msg) => Err(tools::bad_input(&msg)),
                    Ok(config) if plan_only => placement_plan(config),
                    Ok(config) => run_vm(config, &options),
                }
            }
        },
    };
    code.unwrap_or_else(|code| code)
}

/// Run the VM and print how it ended.
fn run_vm(config: VmmConfig, options: &run::RunOptions) -> Result<ExitCode, ExitCode> {
    match run::run(config, options) {
        Ok(Outcome::Vm(Ended::ProbeDone(summary))) => tools::emit(&summary.to_string()),
        Ok(Outcome::Vm(Ended::Guest(exit))) => {
            eprintln!("vmm-reference: {}", run::guest_exit_message(exit));
            return Ok(ExitCode::from(run::guest_exit_status(exit)));
        }
        Ok(Outcome::Quit) => {}
        Ok(Outcome::Signal(s)) => eprintln!(
            "vmm-reference: terminating on signal {} from pid {}",
            s.signal, s.pid
        ),
        Err(e) => return Err(fail_vm(&e)),
    }
    Ok(ExitCode::SUCCESS)
}

/// One report of a VM that failed: the error, then the instruction bytes and the last
/// console lines when the guest stopped it.
fn fail_vm(e: &VmmError) -> ExitCode {
    let code = tools::fail(e, e.is_bad_input());
    if let Some(bytes) = e.code() {
        let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
        eprintln!("vmm-reference: instruction bytes at RIP: {}", hex.join(" "));
    }
    if !e.console().is_empty() {
        eprintln!("vmm-reference: last console lines:");
        for line in e.console() {
            eprintln!("    {line}");
        }
    }
    code
}

/// `--placement-plan`: build the VM (admission included), print the plan, and exit
/// without starting the guest.
fn placement_plan(config: VmmConfig) -> Result<ExitCode, ExitCode> {
    let vmm = Vmm::new(config).map_err(|e| tools::fail(&e, e.is_bad_input()))?;
    let plan = vmm.placement_plan();
    vmm.exit();
    tools::emit(&plan);
    Ok(ExitCode::SUCCESS)
}

/// Help and version go to stdout with status 0; every other clap error becomes one line
/// on stderr with status 2.
fn clap_exit(e: &clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        _ => {
            // clap's message is the paragraph before "Usage:"; some name the argument on
            // the following lines ("required arguments were not provided:\n  --kernel").
            let rendered = e.render().to_string();
            let paragraph = rendered.split("\n\n").next().unwrap_or("invalid arguments");
            let msg = paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
            let msg = msg.strip_prefix("error: ").unwrap_or(&msg);
            eprintln!("vmm-reference: {msg} (see --help)");
            ExitCode::from(2)
        }
    }
}

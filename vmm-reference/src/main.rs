//! `vmm-reference`: parse the command line, build a [`vmm_reference::Vmm`], run it.
//!
//! Exit codes: 0 success, 1 the VM failed (guest fault, KVM error, timeout),
//! 2 bad input (options, grammar, limits).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::Parser;
use vcpu_lifecycle::VcpuEvent;
use vmm_reference::cli::{normalize_args, AdviceArgs, Cli, Command, CpuArg, PlanArgs};
use vmm_reference::linux::machine::LinuxMachine;
use vmm_reference::linux::{GuestExit, LinuxConfig, LinuxVm};
use vmm_reference::machine::Machine;
use vmm_reference::monitor::{EventSink, Monitor, MonitorBackend, QmpOption, QmpServer};
use vmm_reference::{advisor, error_chain, host_check, planner, Vmm, VmmConfig};

fn main() -> ExitCode {
    let mut cli = match Cli::try_parse_from(normalize_args(std::env::args())) {
        Ok(cli) => cli,
        Err(e) => return clap_exit(&e),
    };
    cli.run.linux.absorb_numa_cells();
    vmm_reference::logger::init();
    match cli.command {
        Some(Command::HostCheck) => {
            let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
            let report = host_check::check(Path::new("/dev/kvm"), &cpuinfo);
            emit(&report.render());
            if report.usable {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Some(Command::CpuidPlan(args)) => cpuid_plan(args),
        Some(Command::OvercommitAdvice(args)) => overcommit_advice(args),
        Some(Command::CpuidBaseline { dumps }) => match planner::fleet_baseline(&dumps) {
            Ok((b, warnings)) => {
                for w in warnings {
                    log::warn!("{w}");
                }
                emit(&format!("{b}\n"));
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e, e.is_bad_input()),
        },
        None => match cli.run.cpu.clone() {
            CpuArg::Help => cpu_help(),
            CpuArg::Spec(spec) if cli.run.linux.kernel.is_some() => {
                if let Some(option) = probe_only_option(&cli.run) {
                    eprintln!("vmm-reference: {option} is not supported with --kernel");
                    return ExitCode::from(2);
                }
                let plan_only = cli.run.placement.placement_plan;
                let qmp = cli.run.qmp.clone();
                match (LinuxConfig::from_args(cli.run, spec), qmp) {
                    (Some(config), _) if plan_only => linux_placement_plan(config),
                    (Some(config), Some(qmp)) => run_linux_with_monitor(config, &qmp),
                    (Some(config), None) => run_linux(config),
                    (None, _) => {
                        eprintln!("vmm-reference: --kernel is missing");
                        ExitCode::from(2)
                    }
                }
            }
            CpuArg::Spec(spec) => {
                let plan_only = cli.run.placement.placement_plan;
                match cli.run.qmp.clone() {
                    Some(qmp) if !plan_only => {
                        run_with_monitor(VmmConfig::from_args(cli.run, spec), &qmp)
                    }
                    _ => run(VmmConfig::from_args(cli.run, spec), plan_only),
                }
            }
        },
    }
}

fn run(config: VmmConfig, plan_only: bool) -> ExitCode {
    let result = Vmm::new(config).and_then(|mut vmm| {
        if plan_only {
            let plan = vmm.placement_plan();
            vmm.exit();
            return Ok(plan);
        }
        let summary = vmm.run().map(|s| s.to_string());
        vmm.exit();
        summary
    });
    match result {
        Ok(outcome) => {
            emit(&outcome);
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e, e.is_bad_input()),
    }
}

/// Boot a Linux kernel: exit 0 when the guest reboots (i8042 or ACPI reset) or powers off
/// (ACPI S5), 1 with one report (vCPU, reason, RIP, the instruction bytes after an internal
/// error, the last console lines) when it stops otherwise or times out.
fn run_linux(config: LinuxConfig) -> ExitCode {
    let result = LinuxVm::new(config).and_then(|mut vm| {
        let exit = vm.run();
        vm.exit();
        exit
    });
    match result {
        Ok(GuestExit::Reboot) => {
            eprintln!("vmm-reference: guest reboot");
            ExitCode::SUCCESS
        }
        Ok(GuestExit::PowerOff) => {
            eprintln!("vmm-reference: guest power off");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let code = fail(&e, e.is_bad_input());
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
    }
}

/// `--placement-plan` with `--kernel`: build the VM (admission included), print the plan,
/// and exit without starting the guest.
fn linux_placement_plan(config: LinuxConfig) -> ExitCode {
    match LinuxVm::new(config) {
        Ok(vm) => {
            let plan = vm.placement_plan();
            vm.exit();
            emit(&plan);
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e, e.is_bad_input()),
    }
}

/// Boot a Linux kernel with a monitor and serve QMP until a client sends `quit` or the
/// guest ends the VM: a reboot or an ACPI power off emits `SHUTDOWN` and exits 0, as QEMU
/// does without `-no-shutdown`. A guest fault stops the vCPUs and keeps the process up
/// for inspection. CPUs the guest ejected after `device_del` are removed here, in the
/// main loop, which emits their `DEVICE_DELETED`.
fn run_linux_with_monitor(config: LinuxConfig, qmp: &QmpOption) -> ExitCode {
    let mut vm = match LinuxVm::new(config) {
        Ok(vm) => vm,
        Err(e) => return fail(&e, e.is_bad_input()),
    };
    let lifecycle = vm.take_events();
    let (quit_tx, quit_rx) = std::sync::mpsc::channel();
    let sink = EventSink::new();
    let machine = LinuxMachine::new(vm, quit_tx, sink.clone());
    let (server, machine) = match serve_then_start(
        machine,
        sink,
        qmp,
        |m| m.start().map_err(|e| fail(&e, e.is_bad_input())),
        LinuxMachine::into_exit,
    ) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let guest_exit = loop {
        if quit_rx.try_recv().is_ok() {
            break None;
        }
        let event = lifecycle.recv_timeout(Duration::from_millis(50));
        // Before a stop: a guest that ejects a CPU and then resets reports the eject first.
        machine.poll_ejected();
        if let Ok(VcpuEvent::StopVm(stop)) = event {
            if let Some(exit) = machine.guest_stopped(&stop) {
                break Some(exit);
            }
        }
    };
    match guest_exit {
        // SHUTDOWN is out (events are written synchronously): close every connection.
        Some(exit) => {
            server.shutdown();
            eprintln!(
                "vmm-reference: {}",
                match exit {
                    GuestExit::Reboot => "guest reboot",
                    GuestExit::PowerOff => "guest power off",
                }
            );
        }
        None => server.join(),
    }
    machine.into_exit();
    ExitCode::SUCCESS
}

fn overcommit_advice(args: AdviceArgs) -> ExitCode {
    let host = match cpu_topology::HostCpuInventory::read() {
        Ok(h) => h,
        Err(e) => return fail(&e, false),
    };
    let allowed = args
        .cpuset
        .as_ref()
        .map_or_else(|| host.online().clone(), |c| c.resolve(host.online()));
    if allowed.is_empty() {
        eprintln!(
            "vmm-reference: --cpuset names no online host CPU (online: {})",
            host.online()
        );
        return ExitCode::from(2);
    }
    let policy = vcpu_placement::OvercommitPolicy {
        shared_ratio: args.overcommit_ratio,
        ..Default::default()
    };
    let vcpus = args.smp.cpus();
    emit(&advisor::explain(&host, &allowed, vcpus, &policy));
    if args.no_measure {
        return ExitCode::SUCCESS;
    }
    let widths = advisor::widths(vcpus, allowed.len() as u32);
    let window = std::time::Duration::from_millis(args.window_ms);
    match advisor::measure(&widths, args.cpuset.as_ref(), window, args.barrier_work) {
        Ok(rows) => {
            emit(&format!(
                "\nmeasured on host CPUs {allowed} ({} ms per width):\n",
                args.window_ms
            ));
            emit(&advisor::table(&rows, allowed.len() as u32));
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e, e.is_bad_input()),
    }
}

/// With a monitor: start the VM, serve QMP, and stay up until a client sends `quit`.
/// Guest faults stop the vCPUs and are reported to clients; the process stays for
/// inspection, as QEMU does with `-no-shutdown`.
fn run_with_monitor(config: VmmConfig, qmp: &QmpOption) -> ExitCode {
    let mut vmm = match Vmm::new(config) {
        Ok(vmm) => vmm,
        Err(e) => return fail(&e, e.is_bad_input()),
    };
    let lifecycle = vmm.take_events();
    let (quit_tx, quit_rx) = std::sync::mpsc::channel();
    let sink = EventSink::new();
    let machine = Machine::new(vmm, quit_tx, sink.clone());
    let (server, machine) = match serve_then_start(
        machine,
        sink,
        qmp,
        |m| m.start().map_err(|e| fail(&e, e.is_bad_input())),
        Machine::into_exit,
    ) {
        Ok(started) => started,
        Err(code) => return code,
    };
    loop {
        if quit_rx.try_recv().is_ok() {
            break;
        }
        if let Ok(VcpuEvent::StopVm(stop)) = lifecycle.recv_timeout(Duration::from_millis(50)) {
            machine.guest_stopped(&stop);
        }
    }
    server.join();
    machine.into_exit();
    ExitCode::SUCCESS
}

/// Serve QMP for `machine` on `qmp.path`, wait for the first client when asked
/// (`wait=on`), then start the guest. On failure the VM is ended with `exit` (which wants
/// the only reference, so the caller hands `machine` over) and the exit code returned.
fn serve_then_start<M: MonitorBackend + 'static>(
    machine: Arc<M>,
    sink: EventSink,
    qmp: &QmpOption,
    start: impl FnOnce(&M) -> Result<(), ExitCode>,
    exit: impl FnOnce(Arc<M>),
) -> Result<(QmpServer, Arc<M>), ExitCode> {
    let server = match QmpServer::start(&qmp.path, Monitor::new(machine.clone(), sink)) {
        Ok(server) => server,
        Err(e) => {
            exit(machine);
            return Err(fail(&e, true));
        }
    };
    if qmp.wait {
        while !server.wait_for_client(Duration::from_secs(60)) {}
    }
    if let Err(code) = start(&machine) {
        server.shutdown();
        exit(machine);
        return Err(code);
    }
    Ok((server, machine))
}

/// The first option given that only the probe guest has (a Linux VM, `--kernel`, has no
/// probe to steer or CPUID report to dump): refused rather than silently ignored.
fn probe_only_option(run: &vmm_reference::cli::RunArgs) -> Option<&'static str> {
    [
        (run.probe != probe_guest::ProbeMode::Report, "--probe"),
        (run.dump_cpuid.is_some(), "--dump-cpuid"),
        (run.dump_cpuid_hwloc.is_some(), "--dump-cpuid-hwloc"),
    ]
    .into_iter()
    .find_map(|(given, name)| given.then_some(name))
}

fn cpu_help() -> ExitCode {
    emit(&cpuid_model::model::help_text());
    ExitCode::SUCCESS
}

fn cpuid_plan(args: PlanArgs) -> ExitCode {
    let spec = match args.cpu {
        CpuArg::Help => return cpu_help(),
        CpuArg::Spec(spec) => spec,
    };
    let result = planner::read_host_dump(&args.host_dump)
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
        });
    match result {
        Ok(plan) => {
            emit(&plan.summary.to_string());
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e, e.is_bad_input()),
    }
}

/// Write to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn emit(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// One line on stderr; status 2 for bad input, 1 for anything else.
fn fail(e: &dyn std::error::Error, bad_input: bool) -> ExitCode {
    eprintln!("vmm-reference: {}", error_chain(e));
    ExitCode::from(if bad_input { 2 } else { 1 })
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

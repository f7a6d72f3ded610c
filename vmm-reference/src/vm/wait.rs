//! Running a VM to its end without a monitor, and what it reports at the end.
//!
//! The same rule serves [`Vmm::run`] (a library caller blocking on the event channel) and
//! the binary's event loop (woken by [`Vmm::event_fd`]): [`Vmm::on_event`] takes one
//! lifecycle event and says whether the VM has ended. The probe ends when every boot vCPU
//! is done (its summary is the result); a kernel ends when the guest resets or powers off;
//! a fault ends either with a report (vCPU, reason, RIP, the instruction bytes, the last
//! console lines).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::time::Instant;

use cpuid_model::decode;
use cpuid_model::normalize::amd;
use cpuid_model::{dump, hwloc, CpuidEntry, CpuidKey, CpuidRegs, CpuidTable};
use probe_guest::{ProbeMode, ProbeReport};
use vcpu_lifecycle::{StopReason, VcpuEvent, VmStop};

use super::payload::GuestExit;
use super::Vmm;
use crate::error::VmmError;
use cpuid_model::report::{Summary, VcpuView, WorkloadView};

/// Console lines kept in a guest-stop report.
const REPORT_LINES: usize = 10;

/// How a VM run ended without an error.
#[derive(Debug)]
pub enum Ended {
    /// The probe finished on every vCPU: what each saw.
    ProbeDone(Box<Summary>),
    /// The guest ended the VM itself.
    Guest(GuestExit),
}

impl Ended {
    /// The probe's summary, when the probe ended the run.
    pub fn summary(self) -> Option<Summary> {
        match self {
            Ended::ProbeDone(s) => Some(*s),
            Ended::Guest(_) => None,
        }
    }
}

impl Vmm {
    /// Start every vCPU, wait until the guest is done, and stop every vCPU. A guest fault
    /// or the timeout stops the VM and returns the reason.
    pub fn run(&mut self) -> Result<Ended, VmmError> {
        self.start()?;
        let deadline = self.config.timeout.map(|t| Instant::now() + t);
        let result = loop {
            let wait = deadline.map_or(std::time::Duration::from_secs(3600), |d| {
                d.saturating_duration_since(Instant::now())
            });
            match self.next_event(wait) {
                Some(event) => {
                    if let Some(ended) = self.on_event(event) {
                        break ended;
                    }
                }
                None if deadline.is_some_and(|d| Instant::now() >= d) => {
                    break Err(self.timeout_error())
                }
                None => {}
            }
        };
        let stopped = self.stop();
        let ended = result?;
        stopped?;
        Ok(ended)
    }

    /// One lifecycle event of a VM without a monitor: `Some` when the VM has ended.
    pub fn on_event(&mut self, event: VcpuEvent) -> Option<Result<Ended, VmmError>> {
        match event {
            VcpuEvent::Halted { vcpu } => {
                self.pending.remove(&vcpu);
                if self.pending.is_empty() && self.guest.probe().is_some() {
                    return Some(self.summarize().map(|s| Ended::ProbeDone(Box::new(s))));
                }
                None
            }
            VcpuEvent::StopVm(stop) => Some(match self.guest_exit(&stop) {
                Some(exit) => Ok(Ended::Guest(exit)),
                None => Err(self.fault(stop)),
            }),
        }
    }

    /// How the guest ended the VM, when `stop` is its own doing (a reset or an ACPI power
    /// off through a device) rather than a fault.
    pub fn guest_exit(&self, stop: &VmStop) -> Option<GuestExit> {
        match stop.reason {
            StopReason::Requested(_) => self.bus.guest_exit(),
            _ => None,
        }
    }

    /// The report of a guest fault: the stop, the instruction bytes, the console tail.
    pub fn fault(&self, stop: VmStop) -> VmmError {
        self.bus.flush_console();
        VmmError::GuestStopped {
            code: self.code_at_fault(&stop),
            stop,
            console: self.bus.console_tail(REPORT_LINES),
        }
    }

    /// The report of a guest that did not finish within `--timeout`.
    pub fn timeout_error(&self) -> VmmError {
        self.bus.flush_console();
        let pending = if self.guest.probe().is_some() {
            let list: Vec<String> = self.pending.iter().map(ToString::to_string).collect();
            format!("; vCPUs still running: {}", list.join(","))
        } else {
            String::new()
        };
        VmmError::Timeout {
            seconds: self.config.timeout.map_or(0, |t| t.as_secs()),
            pending,
            console: self.bus.console_tail(REPORT_LINES),
        }
    }

    /// The bytes of the instruction an internal error stopped at: from its guest-physical
    /// address up to 15 bytes, not past the end of its page (the next page of the guest's
    /// virtual address space may be anywhere in RAM).
    pub fn code_at_fault(&self, stop: &VmStop) -> Option<Vec<u8>> {
        let StopReason::InternalError {
            code_gpa: Some(gpa),
            ..
        } = stop.reason
        else {
            return None;
        };
        const MAX_INSTRUCTION: u64 = 15;
        const PAGE: u64 = 4096;
        let len = MAX_INSTRUCTION.min(PAGE - gpa % PAGE);
        self.read_phys(gpa, len as usize).ok()
    }

    /// What every vCPU of the probe saw (or, for a workload, how far it got), and the
    /// dumps `--dump-cpuid` and `--dump-cpuid-hwloc` ask for.
    pub fn summarize(&self) -> Result<Summary, VmmError> {
        let (Some(config), Some(doorbell)) = (self.guest.probe(), self.bus.probe()) else {
            return Err(VmmError::Unsupported(
                "only the probe guest reports a summary".into(),
            ));
        };
        let mut summary = Summary {
            numa_nodes: self.numa.as_ref().map(|n| n.nodes().len()),
            ..Summary::default()
        };
        if config.mode != ProbeMode::Report {
            for h in self.vcpus.iter() {
                summary.workload.push(WorkloadView {
                    index: h.index().0,
                    progress: doorbell.probe().progress(doorbell.memory(), h.index())?,
                    exits: h.stats().total(),
                    host_tid: h.thread_id().0,
                    host_cpu: h.last_host_cpu(),
                });
            }
            return Ok(summary);
        }
        let mut seen = Vec::new();
        for h in self.vcpus.iter() {
            let index = h.index();
            let report = doorbell
                .take_report(index)
                .ok_or(VmmError::MissingReport(index))?;
            let table = report_table(&report);
            let view = decode::topology_view(&table).map_err(|source| VmmError::Decode {
                vcpu: index,
                source,
            })?;
            let mut row =
                VcpuView::from_decoded(index.0, &view, Some(h.thread_id().0), h.last_host_cpu());
            row.node = amd::node_id(&table);
            summary.vcpus.push(row);
            seen.push((index.0, table));
        }
        write_dumps(config, &seen)?;
        Ok(summary)
    }
}

fn write_dumps(
    config: &crate::config::ProbeConfig,
    seen: &[(u32, CpuidTable)],
) -> Result<(), VmmError> {
    if let Some(path) = &config.dump_cpuid {
        let cpus: Vec<(u32, &CpuidTable)> = seen.iter().map(|(i, t)| (*i, t)).collect();
        let io = |source| VmmError::Dump {
            path: path.clone(),
            source,
        };
        let mut w = BufWriter::new(File::create(path).map_err(io)?);
        dump::write_raw(&mut w, &cpus)
            .and_then(|()| w.flush())
            .map_err(io)?;
    }
    if let Some(dir) = &config.dump_cpuid_hwloc {
        let tables: Vec<&CpuidTable> = seen.iter().map(|(_, t)| t).collect();
        hwloc::write_dir(dir, &tables)?;
    }
    Ok(())
}

/// The CPUID view a probe report describes, as a table.
fn report_table(report: &ProbeReport) -> CpuidTable {
    let mut table: CpuidTable = report
        .entries
        .iter()
        .map(|e| {
            let regs = CpuidRegs {
                eax: e.eax,
                ebx: e.ebx,
                ecx: e.ecx,
                edx: e.edx,
            };
            (
                CpuidKey::subleaf(e.leaf, e.subleaf),
                CpuidEntry {
                    regs,
                    indexed: false,
                },
            )
        })
        .collect();
    dump::mark_indexed(&mut table);
    table
}

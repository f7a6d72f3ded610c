//! The running machine behind the monitor: a [`Vmm`], whatever its guest, with the run
//! state the monitor crate keeps (`RunControl`), answering the monitor's calls.
//!
//! Differences between guests are the VM's, not the backend's: `device_del` of a probe
//! vCPU completes at once, a Linux guest is asked to eject the CPU first
//! ([`Machine::poll_ejected`] then emits `DEVICE_DELETED`); `system_powerdown` presses the
//! ACPI power button a Linux VM has and the probe VM has not (QEMU's error then).

use std::sync::{Arc, Mutex, MutexGuard};

use cpu_topology::VcpuIndex;
use guest_memory::NumaTopology;
use vcpu_lifecycle::{StopReason, VcpuState, VmStop};
use vmm_sys_util::eventfd::EventFd;

use crate::vm::{GuestExit, Unplugged};
use crate::{error_chain, Vmm, VmmError};
use vmm_monitor::control::{
    cpu_props, default_device_id, plug_position, qom_path, GuestFault, RunControl,
};
use vmm_monitor::libvirt_domain::config::{CpuFeature, FeaturePolicy};
use vmm_monitor::libvirt_domain::DomainConfig;
use vmm_monitor::{
    BackendError, CpuInfo, CpuPlugRequest, CpuSlot, EmulatedInsns, EventSink, MachineInfo,
    MonitorBackend, NumaNode, Registers, RunState, Unplug, VcpuAffinity,
};

/// A failed VMM call as a backend error: the user's fault is shown as is, anything else
/// names the operation and keeps the cause.
pub fn backend_failure(
    operation: &'static str,
    e: &(dyn std::error::Error + 'static),
    bad_input: bool,
) -> BackendError {
    if bad_input {
        BackendError::Rejected(error_chain(e))
    } else {
        BackendError::Failed {
            operation,
            source: error_chain(e).into(),
        }
    }
}

/// A VM driven by a monitor, whatever its guest.
#[derive(Debug)]
pub struct Machine {
    vmm: Mutex<Vmm>,
    control: RunControl,
}

/// Console lines logged with a guest fault.
const FAULT_CONSOLE_LINES: usize = 10;

/// The NUMA node of vCPU `index`: from `--numa`, or node 0 without it.
pub fn node_of(numa: Option<&NumaTopology>, index: VcpuIndex) -> Option<u32> {
    match numa {
        Some(numa) => numa.node_of_cpu(index).map(|n| n.0),
        None => Some(0),
    }
}

/// `info numa` of a VM: each `--numa` node with its present CPUs (QEMU lists the CPUs
/// present in a node, not its empty slots) and its RAM; without `--numa`, one node holding
/// every present CPU and all `memory` bytes.
pub fn numa_nodes(
    numa: Option<&NumaTopology>,
    present: &[VcpuIndex],
    memory: u64,
) -> Vec<NumaNode> {
    match numa {
        Some(numa) => numa
            .nodes()
            .iter()
            .map(|n| NumaNode {
                id: n.id.0,
                cpus: n
                    .cpus
                    .iter()
                    .copied()
                    .filter(|c| present.contains(c))
                    .collect(),
                size_mib: n.size >> 20,
            })
            .collect(),
        None => vec![NumaNode {
            id: 0,
            cpus: present.to_vec(),
            size_mib: memory >> 20,
        }],
    }
}

impl Machine {
    /// Wrap a built (not yet started) VM; `quit` is written when a client asks to quit.
    pub fn new(vmm: Vmm, quit: EventFd, events: EventSink) -> Arc<Self> {
        Arc::new(Self {
            vmm: Mutex::new(vmm),
            control: RunControl::new(quit, events),
        })
    }

    /// The VM, locked.
    pub fn vmm(&self) -> MutexGuard<'_, Vmm> {
        self.vmm.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start every vCPU.
    pub fn start(&self) -> Result<(), VmmError> {
        self.vmm().start()?;
        self.control.set(RunState::Running);
        Ok(())
    }

    /// A vCPU stopped the VM: stop every vCPU. When the guest ended the VM itself (reset,
    /// ACPI power off) emit `SHUTDOWN` and return how, for the caller to exit, as QEMU
    /// does without `-no-shutdown`; for a fault, tell clients and keep the VM for
    /// inspection (`None`), as QEMU does with `-no-shutdown`.
    pub fn guest_stopped(&self, stop: &VmStop) -> Option<GuestExit> {
        let mut vmm = self.vmm();
        let exit = vmm.guest_exit(stop);
        if let Err(e) = vmm.stop() {
            log::error!("stopping the vCPUs: {}", error_chain(&e));
        }
        match exit {
            Some(GuestExit::Reboot) => self.control.guest_shutdown("guest-reset"),
            Some(GuestExit::PowerOff | GuestExit::DebugExit(_)) => {
                self.control.guest_shutdown("guest-shutdown")
            }
            None => {
                log::error!("guest stopped: {stop}");
                for line in vmm.bus().console_tail(FAULT_CONSOLE_LINES) {
                    log::error!("console: {line}");
                }
                self.control.guest_fault(match stop.reason {
                    StopReason::TripleFault { .. } => GuestFault::TripleFault,
                    _ => GuestFault::Internal,
                });
            }
        }
        exit
    }

    /// Remove the vCPUs the guest ejected since the last call and emit `DEVICE_DELETED`
    /// for each, as QEMU does once the guest has released the CPU.
    pub fn poll_ejected(&self) {
        let removed = self.vmm().finish_ejected();
        for cpu in removed {
            let mut data = serde_json::json!({"path": qom_path(cpu.index, cpu.id.as_deref())});
            if let Some(id) = cpu.id {
                data["device"] = serde_json::Value::String(id);
            }
            self.control.events().emit("DEVICE_DELETED", data);
        }
    }

    /// Stop and join the vCPU threads for process exit.
    pub fn into_exit(self: Arc<Self>) {
        match Arc::try_unwrap(self) {
            Ok(m) => m.vmm.into_inner().unwrap_or_else(|p| p.into_inner()).exit(),
            // A client still holds the machine: stop the vCPUs; the rest goes with the
            // process.
            Err(shared) => {
                let _ = shared.vmm().stop();
            }
        }
    }

    fn cpu_info(&self, vmm: &Vmm, index: VcpuIndex) -> Option<CpuInfo> {
        Some(CpuInfo {
            index,
            qom_path: qom_path(index, vmm.plugged_id(index)),
            thread_id: i64::from(vmm.vcpu_thread_id(index)?),
            props: cpu_props(vmm.position(index).ok()?, node_of(vmm.numa(), index)),
            halted: vmm.vcpu_state(index) == Some(VcpuState::Halted),
        })
    }
}

/// A failed VM call as the monitor's error: a vCPU that does not exist is QEMU's own
/// error; the user's fault is shown as is; anything else names the operation.
fn failed(operation: &'static str, e: VmmError) -> BackendError {
    match e {
        VmmError::NoSuchVcpu(index) => BackendError::NoSuchCpu { index },
        VmmError::Unsupported(_) => BackendError::NotSupported { operation },
        e => backend_failure(operation, &e, e.is_bad_input()),
    }
}

impl MonitorBackend for Machine {
    fn status(&self) -> RunState {
        self.control.status()
    }

    fn stop(&self) -> Result<(), BackendError> {
        self.control
            .stop(|| self.vmm().pause().map_err(|e| failed("stop", e)))
    }

    fn cont(&self) -> Result<(), BackendError> {
        self.control.cont(
            || self.vmm().start().map_err(|e| failed("cont", e)),
            || self.vmm().resume().map_err(|e| failed("cont", e)),
        )
    }

    fn powerdown(&self) -> Result<(), BackendError> {
        self.vmm()
            .press_power_button()
            .map_err(|e| failed("system_powerdown", e))
    }

    fn quit(&self) {
        self.control.quit();
    }

    fn cpu_model(&self) -> String {
        self.vmm().cpu_model().to_string()
    }

    fn cpus(&self) -> Vec<CpuInfo> {
        let vmm = self.vmm();
        vmm.present_vcpus()
            .into_iter()
            .filter_map(|i| self.cpu_info(&vmm, i))
            .collect()
    }

    fn hotpluggable_cpus(&self) -> Vec<CpuSlot> {
        let vmm = self.vmm();
        vmm.topology()
            .slots()
            .filter_map(|index| {
                let qom_path = vmm
                    .vcpu_thread_id(index)
                    .map(|_| qom_path(index, vmm.plugged_id(index)));
                Some(CpuSlot {
                    index,
                    props: cpu_props(vmm.position(index).ok()?, node_of(vmm.numa(), index)),
                    qom_path,
                })
            })
            .collect()
    }

    fn add_cpu(&self, request: &CpuPlugRequest) -> Result<CpuInfo, BackendError> {
        let position = plug_position(&request.props);
        let paused = self.status() == RunState::Paused;
        let mut vmm = self.vmm();
        let id = request
            .id
            .clone()
            .unwrap_or_else(|| default_device_id(&vmm.topology(), position));
        let index = vmm
            .add_vcpu(position, &id)
            .map_err(|e| failed("device_add", e))?;
        if paused {
            // A vCPU plugged into a stopped VM waits with the others.
            vmm.pause().map_err(|e| failed("device_add", e))?;
        }
        self.cpu_info(&vmm, index)
            .ok_or(BackendError::NoSuchCpu { index })
    }

    fn del_cpu(&self, id: &str) -> Result<Unplug, BackendError> {
        match self.vmm().remove_vcpu(id) {
            Ok(Some(Unplugged::Done(index))) => Ok(Unplug::Completed {
                qom_path: qom_path(index, Some(id)),
            }),
            Ok(Some(Unplugged::Requested(_))) => Ok(Unplug::Pending),
            Ok(None) => Err(BackendError::DeviceNotFound { id: id.to_string() }),
            Err(e) => Err(failed("device_del", e)),
        }
    }

    fn registers(&self, cpu: VcpuIndex) -> Result<Registers, BackendError> {
        let r = self
            .vmm()
            .registers(cpu)
            .map_err(|e| failed("info registers", e))?;
        Ok(Registers::from_kvm(&r.regs, &r.sregs, r.halted))
    }

    fn gva2gpa(&self, cpu: VcpuIndex, gva: u64) -> Result<Option<u64>, BackendError> {
        self.vmm()
            .gva_to_gpa(cpu, gva)
            .map_err(|e| failed("gva2gpa", e))
    }

    fn read_phys(&self, gpa: u64, len: usize) -> Result<Vec<u8>, BackendError> {
        self.vmm().read_phys(gpa, len).map_err(|e| failed("xp", e))
    }

    fn numa(&self) -> Vec<NumaNode> {
        let vmm = self.vmm();
        numa_nodes(vmm.numa(), &vmm.present_vcpus(), vmm.memory_size())
    }

    fn vcpupin(&self, cpu: VcpuIndex, cpuset: &str) -> Result<(), BackendError> {
        self.vmm()
            .vcpupin(cpu, cpuset)
            .map_err(|e| failed("vcpupin", e))
    }

    fn emulated(&self) -> Vec<EmulatedInsns> {
        let vmm = self.vmm();
        vmm.vcpus()
            .iter()
            .map(|h| EmulatedInsns {
                cpu: h.index(),
                counts: emulated_counts(&h.stats()),
            })
            .collect()
    }

    fn vcpuinfo(&self) -> Result<String, BackendError> {
        self.vmm().vcpuinfo().map_err(|e| failed("vcpuinfo", e))
    }

    fn name(&self) -> Option<String> {
        self.vmm().config().name.clone()
    }

    fn uuid(&self) -> String {
        let uuid = self.vmm().config().uuid.clone();
        uuid.unwrap_or_else(|| vmm_monitor::NIL_UUID.to_owned())
    }

    fn machine(&self) -> Result<MachineInfo, BackendError> {
        let vmm = self.vmm();
        let topo = vmm.topology();
        Ok(MachineInfo {
            memory: vmm.memory_size(),
            boot_cpus: topo.cpus(),
            max_cpus: topo.max_cpus(),
            kvm_max_vcpus: vmm.kvm_max_vcpus(),
            host_cpus: vmm.host_cpus().to_cpu_list(),
        })
    }

    fn host_cpuid(&self) -> Result<cpuid_model::CpuidTable, BackendError> {
        Ok(self.vmm().host_cpuid().clone())
    }

    fn vcpu_affinities(&self) -> Result<Vec<VcpuAffinity>, BackendError> {
        let rows = self
            .vmm()
            .vcpu_affinities()
            .map_err(|e| failed("vcpupin", e))?;
        Ok(rows
            .into_iter()
            .map(|(index, cpus)| VcpuAffinity {
                index,
                cpus: cpus.to_cpu_list(),
            })
            .collect())
    }

    fn complete_domain(&self, d: &mut DomainConfig) {
        let vmm = self.vmm();
        if let crate::Payload::Kernel(k) = &vmm.config().payload {
            let path = |p: &std::path::Path| p.display().to_string();
            d.os.kernel = Some(path(&k.kernel));
            d.os.initrd = k.initrd.as_deref().map(path);
            d.os.cmdline = k.cmdline.clone();
            (d.features.acpi, d.features.apic) = (true, true);
        }
        let Some(cpu) = d.cpu.as_mut() else { return };
        for (f, on) in vmm.config().cpu.requested().into_values() {
            let policy = if on {
                FeaturePolicy::Require
            } else {
                FeaturePolicy::Disable
            };
            let name = f.qemu_name.to_owned();
            cpu.features.push(CpuFeature { policy, name });
        }
        let matrix = vmm.numa().map(|n| n.distances()).unwrap_or_default();
        for cell in &mut cpu.numa {
            let row = matrix
                .get(cell.id as usize)
                .map(Vec::as_slice)
                .unwrap_or_default();
            cell.distances = (0u32..).zip(row.iter().copied()).collect();
        }
    }

    fn emulatorpin(&self, cpuset: Option<&str>) -> Result<String, BackendError> {
        let cpus = self
            .vmm()
            .emulatorpin(cpuset)
            .map_err(|e| failed("emulatorpin", e))?;
        Ok(cpus.to_cpu_list())
    }
}

/// What one vCPU completed in user space, for `info emulated`: the instruction classes,
/// then the syscall completion's `syscall` (SYSCALLs completed) and `pf-stepped` (page
/// faults stepped over), each only when not zero.
fn emulated_counts(stats: &vcpu_lifecycle::ExitStats) -> Vec<(String, u64)> {
    let classes = stats
        .emulated
        .iter()
        .map(|(class, n)| (class.to_string(), n));
    let syscall = [
        ("syscall".to_string(), stats.syscall.completed),
        ("pf-stepped".to_string(), stats.syscall.page_faults_stepped),
    ];
    classes.chain(syscall).filter(|(_, n)| *n > 0).collect()
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn info_emulated_lists_the_syscall_completion_when_it_did_something() {
        let mut stats = vcpu_lifecycle::ExitStats::default();
        assert_eq!(emulated_counts(&stats), Vec::new());
        stats.syscall.completed = 1367;
        assert_eq!(emulated_counts(&stats), vec![("syscall".to_string(), 1367)]);
        stats.syscall.page_faults_stepped = 5;
        assert_eq!(
            emulated_counts(&stats),
            vec![("syscall".to_string(), 1367), ("pf-stepped".to_string(), 5)]
        );
    }

    #[test]
    fn backend_failures_keep_the_cause() {
        let e = std::io::Error::other("no such file");
        assert_eq!(backend_failure("xp", &e, true).to_string(), "no such file");
        let failed = backend_failure("xp", &e, false);
        assert_eq!(failed.to_string(), "xp failed");
        assert_eq!(error_chain(&failed), "xp failed: no such file");
    }
}

//! The monitor backend of a Linux VM: [`LinuxMachine`] shares a [`LinuxVm`] between the
//! main thread and the monitor's client threads and answers the monitor's calls.
//!
//! The VM stays the VM; this type only adds the run state, the quit signal and the events
//! (shared with the probe VM's [`crate::machine::Machine`] through
//! [`RunControl`]). Differences from the probe VM:
//!
//! - `device_del` only asks the guest to release the CPU ([`Unplug::Pending`]); the main
//!   loop's [`LinuxMachine::poll_ejected`] emits `DEVICE_DELETED` once the guest ejected
//!   it, as QEMU does;
//! - a guest reboot or power off ends the VM ([`LinuxMachine::guest_stopped`] returns how,
//!   after `SHUTDOWN`), as QEMU without `-no-shutdown`; a guest fault keeps it up for
//!   inspection;
//! - `info numa` and the `node-id` of each CPU come from `--numa` (one node holding every
//!   CPU and all RAM without it);
//! - `system_powerdown` presses the ACPI power button.

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};

use cpu_topology::VcpuIndex;
use vcpu_lifecycle::{VcpuState, VmStop};

use super::{ControlError, GuestExit, LinuxError, LinuxVm};
use crate::error_chain;
use crate::hotplug::InspectError;
use crate::machine::{
    backend_failure, cpu_props, default_device_id, node_of, numa_nodes, plug_position, qom_path,
    registers, RunControl,
};
use crate::monitor::{
    BackendError, CpuInfo, CpuPlugRequest, CpuSlot, EventSink, MonitorBackend, NumaNode, Registers,
    RunState, Unplug,
};

/// Console lines logged with a guest fault.
const FAULT_CONSOLE_LINES: usize = 10;

/// A Linux VM driven by a monitor.
#[derive(Debug)]
pub struct LinuxMachine {
    vm: Mutex<LinuxVm>,
    control: RunControl,
}

fn vm_failed(operation: &'static str, e: LinuxError) -> BackendError {
    backend_failure(operation, &e, e.is_bad_input())
}

fn control_failed(operation: &'static str, e: ControlError) -> BackendError {
    match e {
        ControlError::NoSuchVcpu(index)
        | ControlError::Inspect(InspectError::NoSuchVcpu(index)) => {
            BackendError::NoSuchCpu { index }
        }
        e => backend_failure(operation, &e, e.is_bad_input()),
    }
}

fn cpu_info(vm: &LinuxVm, index: VcpuIndex) -> Option<CpuInfo> {
    let handle = vm.vcpus().get(index)?;
    Some(CpuInfo {
        index,
        qom_path: qom_path(index, vm.plugged_id(index)),
        thread_id: i64::from(handle.thread_id().0),
        props: cpu_props(
            vm.topology().position(index).ok()?,
            node_of(vm.numa(), index),
        ),
        halted: handle.state() == VcpuState::Halted,
    })
}

impl LinuxMachine {
    /// Wrap a built (not yet started) VM; `quit` is signalled when a client asks to quit.
    pub fn new(vm: LinuxVm, quit: Sender<()>, events: EventSink) -> Arc<Self> {
        Arc::new(Self {
            vm: Mutex::new(vm),
            control: RunControl::new(quit, events),
        })
    }

    /// The VM, locked.
    pub fn vm(&self) -> MutexGuard<'_, LinuxVm> {
        self.vm.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start every vCPU.
    pub fn start(&self) -> Result<(), LinuxError> {
        self.vm().start()?;
        self.control.set(RunState::Running);
        Ok(())
    }

    /// A vCPU stopped the VM: stop every vCPU. When the guest ended the VM itself (reset,
    /// ACPI power off) emit `SHUTDOWN` and return how, for the caller to exit; for a fault,
    /// tell clients and keep the VM for inspection (`None`).
    pub fn guest_stopped(&self, stop: &VmStop) -> Option<GuestExit> {
        let mut vm = self.vm();
        let exit = vm.guest_exit(stop);
        if let Err(e) = vm.stop() {
            log::error!("stopping the vCPUs: {}", error_chain(&e));
        }
        match exit {
            Some(GuestExit::Reboot) => self.control.guest_shutdown("guest-reset"),
            Some(GuestExit::PowerOff) => self.control.guest_shutdown("guest-shutdown"),
            None => {
                log::error!("guest stopped: {stop}");
                for line in vm.bus().console_tail(FAULT_CONSOLE_LINES) {
                    log::error!("console: {line}");
                }
                self.control.guest_fault(stop);
            }
        }
        exit
    }

    /// Remove the vCPUs the guest ejected since the last call and emit `DEVICE_DELETED`
    /// for each. Call from the main loop.
    pub fn poll_ejected(&self) {
        let removed = self.vm().finish_ejected();
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
            Ok(m) => m.vm.into_inner().unwrap_or_else(|p| p.into_inner()).exit(),
            // A client thread still holds the machine: stop the vCPUs; the rest goes with
            // the process.
            Err(shared) => {
                let _ = shared.vm().stop();
            }
        }
    }
}

impl MonitorBackend for LinuxMachine {
    fn status(&self) -> RunState {
        self.control.status()
    }

    fn stop(&self) -> Result<(), BackendError> {
        self.control
            .stop(|| self.vm().pause().map_err(|e| vm_failed("stop", e)))
    }

    fn cont(&self) -> Result<(), BackendError> {
        self.control
            .cont(|| self.vm().resume().map_err(|e| vm_failed("cont", e)))
    }

    fn powerdown(&self) -> Result<(), BackendError> {
        self.vm()
            .press_power_button()
            .map_err(|e| control_failed("system_powerdown", e))
    }

    fn quit(&self) {
        self.control.quit();
    }

    fn cpu_model(&self) -> String {
        self.vm().cpu_model().to_string()
    }

    fn cpus(&self) -> Vec<CpuInfo> {
        let vm = self.vm();
        vm.present_vcpus()
            .into_iter()
            .filter_map(|i| cpu_info(&vm, i))
            .collect()
    }

    fn hotpluggable_cpus(&self) -> Vec<CpuSlot> {
        let vm = self.vm();
        let topo = vm.topology();
        topo.slots()
            .filter_map(|index| {
                Some(CpuSlot {
                    index,
                    props: cpu_props(topo.position(index).ok()?, node_of(vm.numa(), index)),
                    qom_path: vm
                        .vcpus()
                        .get(index)
                        .map(|_| qom_path(index, vm.plugged_id(index))),
                })
            })
            .collect()
    }

    fn add_cpu(&self, request: &CpuPlugRequest) -> Result<CpuInfo, BackendError> {
        let position = plug_position(&request.props);
        let paused = self.status() == RunState::Paused;
        let mut vm = self.vm();
        let id = request
            .id
            .clone()
            .unwrap_or_else(|| default_device_id(&vm.topology(), position));
        let index = vm
            .add_vcpu(position, &id)
            .map_err(|e| control_failed("device_add", e))?;
        if paused {
            // A vCPU plugged into a stopped VM waits with the others.
            vm.pause().map_err(|e| vm_failed("device_add", e))?;
        }
        cpu_info(&vm, index).ok_or(BackendError::NoSuchCpu { index })
    }

    fn del_cpu(&self, id: &str) -> Result<Unplug, BackendError> {
        match self.vm().request_unplug(id) {
            Ok(Some(_)) => Ok(Unplug::Pending),
            Ok(None) => Err(BackendError::DeviceNotFound { id: id.to_string() }),
            Err(e) => Err(control_failed("device_del", e)),
        }
    }

    fn registers(&self, cpu: VcpuIndex) -> Result<Registers, BackendError> {
        let r = self
            .vm()
            .registers(cpu)
            .map_err(|e| control_failed("info registers", e))?;
        Ok(registers(&r))
    }

    fn gva2gpa(&self, cpu: VcpuIndex, gva: u64) -> Result<Option<u64>, BackendError> {
        self.vm()
            .gva_to_gpa(cpu, gva)
            .map_err(|e| control_failed("gva2gpa", e))
    }

    fn read_phys(&self, gpa: u64, len: usize) -> Result<Vec<u8>, BackendError> {
        self.vm()
            .read_phys(gpa, len)
            .map_err(|e| control_failed("xp", e))
    }

    fn numa(&self) -> Vec<NumaNode> {
        let vm = self.vm();
        numa_nodes(vm.numa(), &vm.present_vcpus(), vm.memory_size())
    }

    fn vcpupin(&self, cpu: VcpuIndex, cpuset: &str) -> Result<(), BackendError> {
        self.vm()
            .vcpupin(cpu, cpuset)
            .map_err(|e| control_failed("vcpupin", e))
    }

    fn vcpuinfo(&self) -> Result<String, BackendError> {
        self.vm()
            .vcpuinfo()
            .map_err(|e| control_failed("vcpuinfo", e))
    }
}

#[cfg(test)]
mod tests {
    use guest_memory::{NumaConfig, NumaMachine, NumaTopology, UnassignedCpus};

    use super::*;
    use crate::hotplug::HotplugError;
    use crate::monitor::hmp::format_numa;

    fn two_nodes() -> NumaTopology {
        NumaConfig::parse([
            "node,nodeid=0,cpus=0-3,mem=128M",
            "node,nodeid=1,cpus=4-7,mem=384M",
        ])
        .unwrap()
        .resolve(&NumaMachine {
            ram_size: 512 << 20,
            max_cpus: 8,
            cpus_per_socket: 4,
            backends: &[],
            unassigned: UnassignedCpus::Reject,
        })
        .unwrap()
    }

    #[test]
    fn info_numa_lists_present_cpus_per_node() {
        let numa = two_nodes();
        let present = [0, 1, 4, 6].map(VcpuIndex);
        assert_eq!(
            format_numa(&numa_nodes(Some(&numa), &present, 512 << 20)),
            "2 nodes\n\
             node 0 cpus: 0 1\nnode 0 size: 128 MB\nnode 0 plugged: 0 MB\n\
             node 1 cpus: 4 6\nnode 1 size: 384 MB\nnode 1 plugged: 0 MB\n"
        );
    }

    #[test]
    fn info_numa_without_numa_is_one_node_with_everything() {
        let present = [0, 1, 2].map(VcpuIndex);
        assert_eq!(
            format_numa(&numa_nodes(None, &present, 256 << 20)),
            "1 nodes\nnode 0 cpus: 0 1 2\nnode 0 size: 256 MB\nnode 0 plugged: 0 MB\n"
        );
    }

    #[test]
    fn control_errors_that_are_the_clients_fault() {
        let refused = control_failed(
            "device_add",
            ControlError::Plug(HotplugError::Exists {
                index: 1,
                apic_id: 1,
            }),
        );
        assert_eq!(refused.to_string(), "CPU[1] with APIC ID 1 exists");
        assert!(matches!(refused, BackendError::Rejected(_)));
        let missing = control_failed(
            "info registers",
            ControlError::Inspect(InspectError::NoSuchVcpu(VcpuIndex(7))),
        );
        assert_eq!(missing.to_string(), "CPU 7 does not exist");
        let no_button = control_failed(
            "system_powerdown",
            ControlError::PowerButton(crate::linux::bus::BusError::NoPowerButton),
        );
        assert_eq!(
            no_button.to_string(),
            "system_powerdown: the VM has no ACPI power button"
        );
        let irq = control_failed(
            "device_add",
            ControlError::Slot(x86_boot::acpi::HotplugError::NotPresent { uid: 3 }),
        );
        assert_eq!(irq.to_string(), "CPU hot-plug: CPU slot 3 is empty");
    }
}

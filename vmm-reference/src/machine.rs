//! The running machine behind the monitor: a [`Vmm`] shared between the main thread and
//! the monitor's client threads, its run state, and the quit signal.

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};

use cpu_topology::{TopologyPosition, VcpuIndex};
use vcpu_lifecycle::{StopReason, VcpuState, VmStop};

use crate::monitor::{
    BackendError, CpuInfo, CpuPlugRequest, CpuProps, CpuSlot, DescriptorTable, EventSink,
    MonitorBackend, NumaNode, Registers, RunState, Segment, Unplug,
};
use crate::{error_chain, Vmm, VmmError};

/// A VM driven by a monitor.
#[derive(Debug)]
pub struct Machine {
    vmm: Mutex<Vmm>,
    state: Mutex<RunState>,
    quit: Mutex<Sender<()>>,
    events: EventSink,
}

fn failed(operation: &'static str, e: VmmError) -> BackendError {
    if e.is_bad_input() {
        BackendError::Rejected(error_chain(&e))
    } else {
        BackendError::Failed {
            operation,
            source: error_chain(&e).into(),
        }
    }
}

fn props(p: TopologyPosition) -> CpuProps {
    CpuProps {
        socket_id: p.socket,
        die_id: p.die,
        module_id: None,
        core_id: p.core,
        thread_id: p.thread,
        node_id: Some(0),
    }
}

fn segment(s: &kvm_bindings::kvm_segment) -> Segment {
    let flags = u32::from(s.type_)
        | u32::from(s.s) << 4
        | u32::from(s.dpl) << 5
        | u32::from(s.present) << 7
        | u32::from(s.avl) << 12
        | u32::from(s.l) << 13
        | u32::from(s.db) << 14
        | u32::from(s.g) << 15;
    Segment {
        selector: s.selector,
        base: s.base,
        limit: s.limit,
        flags,
    }
}

impl Machine {
    /// Wrap a built (not yet started) VM; `quit` is signalled when a client asks to quit.
    pub fn new(vmm: Vmm, quit: Sender<()>, events: EventSink) -> Arc<Self> {
        Arc::new(Self {
            vmm: Mutex::new(vmm),
            state: Mutex::new(RunState::Prelaunch),
            quit: Mutex::new(quit),
            events,
        })
    }

    /// The VM, locked.
    pub fn vmm(&self) -> MutexGuard<'_, Vmm> {
        self.vmm.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_state(&self, s: RunState) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }

    /// Start every vCPU.
    pub fn start(&self) -> Result<(), VmmError> {
        self.vmm().start()?;
        self.set_state(RunState::Running);
        Ok(())
    }

    /// The guest stopped the VM: stop every vCPU and tell monitor clients, as QEMU does
    /// with `-no-shutdown` (the process stays up for inspection until `quit`).
    pub fn guest_stopped(&self, stop: &VmStop) {
        log::error!("guest stopped: {stop}");
        if let Err(e) = self.vmm().stop() {
            log::error!(
                "stopping the vCPUs after a guest fault: {}",
                error_chain(&e)
            );
        }
        match stop.reason {
            StopReason::TripleFault { .. } => {
                self.set_state(RunState::Shutdown);
                self.events.emit(
                    "SHUTDOWN",
                    serde_json::json!({"guest": true, "reason": "guest-reset"}),
                );
            }
            _ => {
                self.set_state(RunState::InternalError);
                self.events.emit("STOP", serde_json::json!({}));
            }
        }
    }

    /// Stop and join the vCPU threads for process exit.
    pub fn into_exit(self: Arc<Self>) {
        match Arc::try_unwrap(self) {
            Ok(m) => m.vmm.into_inner().unwrap_or_else(|p| p.into_inner()).exit(),
            // A client thread still holds the machine: stop the vCPUs; the rest goes with
            // the process.
            Err(shared) => {
                let _ = shared.vmm().stop();
            }
        }
    }

    fn cpu_info(&self, vmm: &Vmm, index: VcpuIndex) -> Option<CpuInfo> {
        let qom_path = match vmm.plugged_id(index) {
            Some(id) => format!("/machine/peripheral/{id}"),
            None => format!("/machine/unattached/device[{}]", index.0),
        };
        Some(CpuInfo {
            index,
            qom_path,
            thread_id: i64::from(vmm.vcpu_thread_id(index)?),
            props: props(vmm.position(index).ok()?),
            halted: vmm.vcpu_state(index) == Some(VcpuState::Halted),
        })
    }
}

impl MonitorBackend for Machine {
    fn status(&self) -> RunState {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stop(&self) -> Result<(), BackendError> {
        if matches!(self.status(), RunState::Running) {
            self.vmm().pause().map_err(|e| failed("stop", e))?;
            self.set_state(RunState::Paused);
        }
        Ok(())
    }

    fn cont(&self) -> Result<(), BackendError> {
        match self.status() {
            RunState::Paused => {
                self.vmm().resume().map_err(|e| failed("cont", e))?;
                self.set_state(RunState::Running);
                Ok(())
            }
            RunState::Shutdown | RunState::InternalError => Err(BackendError::Rejected(
                "the guest stopped the VM; it cannot be resumed (quit, and start it again)"
                    .to_string(),
            )),
            RunState::Running | RunState::Prelaunch => Ok(()),
        }
    }

    fn quit(&self) {
        let _ = self.quit.lock().unwrap_or_else(|p| p.into_inner()).send(());
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
                    .and_then(|_| self.cpu_info(&vmm, index))
                    .map(|c| c.qom_path);
                Some(CpuSlot {
                    index,
                    props: props(vmm.position(index).ok()?),
                    qom_path,
                })
            })
            .collect()
    }

    fn add_cpu(&self, request: &CpuPlugRequest) -> Result<CpuInfo, BackendError> {
        let p = &request.props;
        let position = TopologyPosition {
            socket: p.socket_id,
            die: p.die_id,
            module: p.module_id.unwrap_or(0),
            core: p.core_id,
            thread: p.thread_id,
        };
        let mut vmm = self.vmm();
        let id = request.id.clone().unwrap_or_else(|| {
            let index = vmm.topology().index_of(position).map_or(u32::MAX, |i| i.0);
            format!("cpu{index}")
        });
        let index = vmm
            .add_vcpu(position, &id)
            .map_err(|e| failed("device_add", e))?;
        if self.status() == RunState::Paused {
            // A vCPU plugged into a stopped VM waits with the others.
            vmm.pause().map_err(|e| failed("device_add", e))?;
        }
        self.cpu_info(&vmm, index)
            .ok_or(BackendError::NoSuchCpu { index })
    }

    fn del_cpu(&self, id: &str) -> Result<Unplug, BackendError> {
        let mut vmm = self.vmm();
        let index = vmm
            .present_vcpus()
            .into_iter()
            .find(|&i| vmm.plugged_id(i) == Some(id))
            .ok_or_else(|| BackendError::DeviceNotFound { id: id.to_string() })?;
        vmm.remove_vcpu(index)
            .map_err(|e| failed("device_del", e))?;
        Ok(Unplug::Completed {
            qom_path: format!("/machine/peripheral/{id}"),
        })
    }

    fn registers(&self, cpu: VcpuIndex) -> Result<Registers, BackendError> {
        let r = self.vmm().registers(cpu).map_err(|e| match e {
            VmmError::NoSuchVcpu(index) => BackendError::NoSuchCpu { index },
            e => failed("info registers", e),
        })?;
        let (g, s) = (r.regs, r.sregs);
        Ok(Registers {
            rax: g.rax,
            rbx: g.rbx,
            rcx: g.rcx,
            rdx: g.rdx,
            rsi: g.rsi,
            rdi: g.rdi,
            rbp: g.rbp,
            rsp: g.rsp,
            r8: g.r8,
            r9: g.r9,
            r10: g.r10,
            r11: g.r11,
            r12: g.r12,
            r13: g.r13,
            r14: g.r14,
            r15: g.r15,
            rip: g.rip,
            rflags: g.rflags,
            es: segment(&s.es),
            cs: segment(&s.cs),
            ss: segment(&s.ss),
            ds: segment(&s.ds),
            fs: segment(&s.fs),
            gs: segment(&s.gs),
            ldt: segment(&s.ldt),
            tr: segment(&s.tr),
            gdt: DescriptorTable {
                base: s.gdt.base,
                limit: s.gdt.limit,
            },
            idt: DescriptorTable {
                base: s.idt.base,
                limit: s.idt.limit,
            },
            cr0: s.cr0,
            cr2: s.cr2,
            cr3: s.cr3,
            cr4: s.cr4,
            efer: s.efer,
            halted: r.halted,
        })
    }

    fn gva2gpa(&self, cpu: VcpuIndex, gva: u64) -> Result<Option<u64>, BackendError> {
        self.vmm().gva_to_gpa(cpu, gva).map_err(|e| match e {
            VmmError::NoSuchVcpu(index) => BackendError::NoSuchCpu { index },
            e => failed("gva2gpa", e),
        })
    }

    fn read_phys(&self, gpa: u64, len: usize) -> Result<Vec<u8>, BackendError> {
        self.vmm().read_phys(gpa, len).map_err(|e| failed("xp", e))
    }

    fn numa(&self) -> Vec<NumaNode> {
        // One node until NUMA configuration arrives: every present vCPU, all of RAM.
        let vmm = self.vmm();
        vec![NumaNode {
            id: 0,
            cpus: vmm.present_vcpus(),
            size_mib: vmm.memory_size() >> 20,
        }]
    }

    fn vcpupin(&self, cpu: VcpuIndex, cpuset: &str) -> Result<(), BackendError> {
        self.vmm().vcpupin(cpu, cpuset).map_err(|e| match e {
            VmmError::NoSuchVcpu(index) => BackendError::NoSuchCpu { index },
            e => failed("vcpupin", e),
        })
    }

    fn vcpuinfo(&self) -> Result<String, BackendError> {
        self.vmm().vcpuinfo().map_err(|e| failed("vcpuinfo", e))
    }
}

//! An in-memory [`MonitorBackend`] for tests, demos and client development: a VM of
//! `sockets x cores x threads` slots with plausible answers and no KVM.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use cpu_topology::VcpuIndex;

use crate::backend::{
    BackendError, CpuInfo, CpuPlugRequest, CpuProps, CpuSlot, MachineInfo, MonitorBackend,
    NumaNode, Registers, RunState, Unplug, VcpuAffinity,
};

/// Guest memory the fake pretends to have.
pub const FAKE_MEMORY: u64 = 16 << 20;

#[derive(Debug)]
struct State {
    status: RunState,
    /// Present CPUs by index, with the `device_add` id of hot-plugged ones.
    present: BTreeMap<u32, (CpuInfo, Option<String>)>,
    anon: u32,
    quit: bool,
    pins: Vec<(VcpuIndex, String)>,
    emulator: String,
    power_button_presses: u32,
}

/// A scripted backend: `sockets x cores x threads` possible CPUs, the first `present`
/// plugged at boot, thread ids `1000 + index`, identity-mapped guest memory below
/// [`FAKE_MEMORY`] whose byte at `a` is `a as u8`.
#[derive(Debug)]
pub struct FakeBackend {
    sockets: u32,
    cores: u32,
    threads: u32,
    numa_nodes: u32,
    reset_supported: bool,
    power_button: bool,
    boot_cpus: u32,
    name: Option<String>,
    host_cpuid: Option<cpuid_model::CpuidTable>,
    state: Mutex<State>,
}

impl FakeBackend {
    /// A running VM with `present` of `sockets * cores * threads` CPUs plugged.
    pub fn new(sockets: u32, cores: u32, threads: u32, present: u32) -> Self {
        let fake = FakeBackend {
            sockets,
            cores,
            threads,
            numa_nodes: 0,
            reset_supported: false,
            power_button: false,
            boot_cpus: present.min(sockets * cores * threads),
            name: None,
            host_cpuid: None,
            state: Mutex::new(State {
                status: RunState::Running,
                present: BTreeMap::new(),
                anon: 0,
                quit: false,
                pins: Vec::new(),
                emulator: "0-1".into(),
                power_button_presses: 0,
            }),
        };
        {
            let mut s = fake.lock();
            for i in 0..present.min(sockets * cores * threads) {
                let info = fake.cpu(i, format!("/machine/unattached/device[{i}]"));
                s.present.insert(i, (info, None));
            }
        }
        fake
    }

    /// Splits CPUs evenly over `nodes` NUMA nodes (by socket).
    pub fn with_numa(mut self, nodes: u32) -> Self {
        self.numa_nodes = nodes;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        for (i, (info, _)) in state.present.iter_mut() {
            info.props = self.props(*i);
        }
        drop(state);
        self
    }

    /// Makes `system_reset` succeed.
    pub fn with_reset(mut self) -> Self {
        self.reset_supported = true;
        self
    }

    /// Gives the VM an ACPI power button, so `system_powerdown` succeeds.
    pub fn with_power_button(mut self) -> Self {
        self.power_button = true;
        self
    }

    /// Names the VM (`query-name`).
    pub fn with_name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// The CPUID the CPU model queries judge models against.
    pub fn with_host_cpuid(mut self, table: cpuid_model::CpuidTable) -> Self {
        self.host_cpuid = Some(table);
        self
    }

    /// How often `system_powerdown` pressed the power button.
    pub fn power_button_presses(&self) -> u32 {
        self.lock().power_button_presses
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn props(&self, i: u32) -> CpuProps {
        let per_socket = self.cores * self.threads;
        let socket = i / per_socket;
        CpuProps {
            socket_id: socket,
            die_id: 0,
            module_id: None,
            core_id: (i % per_socket) / self.threads,
            thread_id: i % self.threads,
            node_id: (self.numa_nodes > 0).then(|| socket * self.numa_nodes / self.sockets),
        }
    }

    fn cpu(&self, i: u32, qom_path: String) -> CpuInfo {
        CpuInfo {
            index: VcpuIndex(i),
            qom_path,
            thread_id: 1000 + i64::from(i),
            props: self.props(i),
            halted: i % 2 == 1,
        }
    }

    /// Whether `quit` reached the backend.
    pub fn quit_called(&self) -> bool {
        self.lock().quit
    }

    /// `vcpupin` calls received.
    pub fn pins(&self) -> Vec<(VcpuIndex, String)> {
        self.lock().pins.clone()
    }

    fn check_range(name: &str, v: u32, count: u32) -> Result<(), BackendError> {
        if v >= count {
            return Err(BackendError::Rejected(format!(
                "Invalid CPU {name}: {v} must be in range 0:{}",
                count - 1
            )));
        }
        Ok(())
    }
}

impl MonitorBackend for FakeBackend {
    fn status(&self) -> RunState {
        self.lock().status
    }

    fn stop(&self) -> Result<(), BackendError> {
        let mut s = self.lock();
        if s.status == RunState::Running {
            s.status = RunState::Paused;
        }
        Ok(())
    }

    fn cont(&self) -> Result<(), BackendError> {
        let mut s = self.lock();
        if s.status == RunState::Shutdown {
            return Err(BackendError::Rejected(
                "Resetting the Virtual Machine is required".into(),
            ));
        }
        s.status = RunState::Running;
        Ok(())
    }

    fn reset(&self) -> Result<(), BackendError> {
        if self.reset_supported {
            Ok(())
        } else {
            Err(BackendError::NotSupported {
                operation: "system_reset",
            })
        }
    }

    fn powerdown(&self) -> Result<(), BackendError> {
        if !self.power_button {
            return Err(BackendError::NotSupported {
                operation: "system_powerdown",
            });
        }
        self.lock().power_button_presses += 1;
        Ok(())
    }

    fn quit(&self) {
        let mut s = self.lock();
        s.quit = true;
        s.status = RunState::Shutdown;
    }

    fn cpu_model(&self) -> String {
        "qemu64".into()
    }

    fn cpus(&self) -> Vec<CpuInfo> {
        self.lock()
            .present
            .values()
            .map(|(c, _)| c.clone())
            .collect()
    }

    fn hotpluggable_cpus(&self) -> Vec<CpuSlot> {
        let s = self.lock();
        (0..self.sockets * self.cores * self.threads)
            .map(|i| CpuSlot {
                index: VcpuIndex(i),
                props: self.props(i),
                qom_path: s.present.get(&i).map(|(c, _)| c.qom_path.clone()),
            })
            .collect()
    }

    fn add_cpu(&self, request: &CpuPlugRequest) -> Result<CpuInfo, BackendError> {
        let p = request.props;
        Self::check_range("socket-id", p.socket_id, self.sockets)?;
        Self::check_range("die-id", p.die_id, 1)?;
        Self::check_range("core-id", p.core_id, self.cores)?;
        Self::check_range("thread-id", p.thread_id, self.threads)?;
        let i = (p.socket_id * self.cores + p.core_id) * self.threads + p.thread_id;
        let mut s = self.lock();
        if s.present.contains_key(&i) {
            return Err(BackendError::Rejected(format!(
                "CPU[{i}] with APIC ID {i} exists"
            )));
        }
        if let Some(id) = &request.id {
            if s.present.values().any(|(_, d)| d.as_deref() == Some(id)) {
                return Err(BackendError::Rejected(format!(
                    "Duplicate device ID '{id}'"
                )));
            }
        }
        let path = match &request.id {
            Some(id) => format!("/machine/peripheral/{id}"),
            None => {
                s.anon += 1;
                format!("/machine/peripheral-anon/device[{}]", s.anon - 1)
            }
        };
        let info = self.cpu(i, path);
        s.present.insert(i, (info.clone(), request.id.clone()));
        Ok(info)
    }

    fn del_cpu(&self, id: &str) -> Result<Unplug, BackendError> {
        let mut s = self.lock();
        let found = s
            .present
            .iter()
            .find(|(_, (_, d))| d.as_deref() == Some(id))
            .map(|(i, _)| *i);
        match found.and_then(|i| s.present.remove(&i)) {
            Some((info, _)) => Ok(Unplug::Completed {
                qom_path: info.qom_path,
            }),
            None => Err(BackendError::DeviceNotFound { id: id.to_owned() }),
        }
    }

    fn registers(&self, cpu: VcpuIndex) -> Result<Registers, BackendError> {
        let s = self.lock();
        let (info, _) = s
            .present
            .get(&cpu.0)
            .ok_or(BackendError::NoSuchCpu { index: cpu })?;
        Ok(Registers {
            rip: 0x10_0000 + u64::from(cpu.0),
            rflags: 0x2,
            cr0: 0x8000_0011,
            efer: 0x500,
            halted: info.halted,
            ..Registers::default()
        })
    }

    fn gva2gpa(&self, cpu: VcpuIndex, gva: u64) -> Result<Option<u64>, BackendError> {
        if !self.lock().present.contains_key(&cpu.0) {
            return Err(BackendError::NoSuchCpu { index: cpu });
        }
        Ok((gva < FAKE_MEMORY).then_some(gva))
    }

    fn read_phys(&self, gpa: u64, len: usize) -> Result<Vec<u8>, BackendError> {
        let end = gpa.checked_add(len as u64).filter(|&e| e <= FAKE_MEMORY);
        if end.is_none() {
            return Err(BackendError::Rejected(format!(
                "cannot access guest memory at {gpa:#x}"
            )));
        }
        Ok((0..len as u64).map(|i| (gpa + i) as u8).collect())
    }

    fn numa(&self) -> Vec<NumaNode> {
        (0..self.numa_nodes)
            .map(|n| NumaNode {
                id: n,
                cpus: self
                    .cpus()
                    .iter()
                    .filter(|c| c.props.node_id == Some(n))
                    .map(|c| c.index)
                    .collect(),
                size_mib: 128,
            })
            .collect()
    }

    fn vcpupin(&self, cpu: VcpuIndex, cpuset: &str) -> Result<(), BackendError> {
        let mut s = self.lock();
        if !s.present.contains_key(&cpu.0) {
            return Err(BackendError::NoSuchCpu { index: cpu });
        }
        s.pins.push((cpu, cpuset.to_owned()));
        Ok(())
    }

    fn name(&self) -> Option<String> {
        self.name.clone()
    }

    fn machine(&self) -> Result<MachineInfo, BackendError> {
        Ok(MachineInfo {
            memory: FAKE_MEMORY,
            boot_cpus: self.boot_cpus,
            max_cpus: self.sockets * self.cores * self.threads,
            kvm_max_vcpus: 1024,
            host_cpus: "0-1".into(),
        })
    }

    fn host_cpuid(&self) -> Result<cpuid_model::CpuidTable, BackendError> {
        self.host_cpuid.clone().ok_or(BackendError::NotSupported {
            operation: "CPU model queries",
        })
    }

    /// Slots pinned by `vcpupin` show their last set, the others `0-1`.
    fn vcpu_affinities(&self) -> Result<Vec<VcpuAffinity>, BackendError> {
        let s = self.lock();
        Ok((0..self.sockets * self.cores * self.threads)
            .map(|i| VcpuAffinity {
                index: VcpuIndex(i),
                cpus: s
                    .pins
                    .iter()
                    .rev()
                    .find(|(c, _)| c.0 == i)
                    .map_or_else(|| "0-1".to_owned(), |(_, set)| set.clone()),
            })
            .collect())
    }

    fn emulatorpin(&self, cpuset: Option<&str>) -> Result<String, BackendError> {
        let mut s = self.lock();
        if let Some(set) = cpuset {
            s.emulator = set.to_owned();
        }
        Ok(s.emulator.clone())
    }

    fn vcpuinfo(&self) -> Result<String, BackendError> {
        let mut out = String::new();
        for c in self.cpus() {
            out.push_str(&format!(
                "VCPU:           {}\nCPU:            {}\nState:          running\n\
                 CPU time:       0.0s\nCPU Affinity:   yy\n\n",
                c.index,
                c.index.0 % 2
            ));
        }
        Ok(out)
    }
}

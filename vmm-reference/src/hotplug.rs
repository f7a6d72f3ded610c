//! CPU hot-plug and inspection on a running [`Vmm`]: what the monitor's `device_add`,
//! `device_del`, `info registers`, `gva2gpa` and `xp` need.

use std::time::Duration;

use cpu_topology::{TopologyPosition, VcpuIndex};
use guest_memory::{gva_to_gpa, WalkError};
use kvm_bindings::{kvm_regs, kvm_sregs};
use vcpu_lifecycle::VcpuState;
use vm_memory::{Bytes, GuestAddress};

use crate::vmm::{configure_vcpu, Vmm, VmmError};

/// How long a single vCPU may take to answer a command from the monitor.
const VCPU_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a hot-plug request was refused: QEMU's wording where QEMU has one.
#[derive(Debug, thiserror::Error)]
pub enum HotplugError {
    /// The position is outside the topology.
    #[error("Invalid CPU [socket: {}, die: {}, core: {}, thread: {}]: maxcpus is {max_cpus} ({topology})", .position.socket, .position.die, .position.core, .position.thread)]
    OutOfRange {
        /// What was asked for.
        position: TopologyPosition,
        /// Slots.
        max_cpus: u32,
        /// The topology, `-smp` style.
        topology: String,
    },
    /// The slot already holds a vCPU.
    #[error("CPU[{index}] with APIC ID {apic_id} exists")]
    Exists {
        /// Slot index.
        index: u32,
        /// Its APIC id.
        apic_id: u32,
    },
    /// A `device_add` id is already in use.
    #[error("Duplicate device ID '{0}'")]
    DuplicateId(String),
    /// Boot vCPUs (from `-smp`) are not unpluggable.
    #[error("vCPU {0} was not hot-plugged and cannot be unplugged")]
    NotPluggable(VcpuIndex),
}

/// Registers of one vCPU, read on its own thread.
#[derive(Debug, Clone, Copy)]
pub struct VcpuRegisters {
    /// General-purpose registers.
    pub regs: kvm_regs,
    /// Segment and control registers.
    pub sregs: kvm_sregs,
    /// The vCPU had finished its guest work (Halted).
    pub halted: bool,
}

impl Vmm {
    /// The vCPUs present now (boot and hot-plugged), in index order.
    pub fn present_vcpus(&self) -> Vec<VcpuIndex> {
        self.vcpus.iter().map(|h| h.index()).collect()
    }

    /// Position of a slot in the topology.
    pub fn position(&self, vcpu: VcpuIndex) -> Result<TopologyPosition, VmmError> {
        Ok(self.config.topology.position(vcpu)?)
    }

    /// The `device_add` id of a hot-plugged vCPU.
    pub fn plugged_id(&self, vcpu: VcpuIndex) -> Option<&str> {
        self.plugged.get(&vcpu).map(String::as_str)
    }

    /// Hot-plug the vCPU at `position`: create (or re-use) its KVM vCPU with the slot's
    /// APIC id and CPUID, start its thread with its placement applied, and run the probe
    /// on it. `id` is the monitor's device id.
    pub fn add_vcpu(
        &mut self,
        position: TopologyPosition,
        id: &str,
    ) -> Result<VcpuIndex, VmmError> {
        let topo = self.config.topology;
        let index = topo
            .index_of(position)
            .map_err(|_| HotplugError::OutOfRange {
                position,
                max_cpus: topo.max_cpus(),
                topology: cpu_topology::smp::to_smp_string(&topo),
            })?;
        let apic_id = topo.apic_layout().apic_id(index)?.0;
        if self.vcpus.get(index).is_some() {
            return Err(HotplugError::Exists {
                index: index.0,
                apic_id,
            }
            .into());
        }
        if self.plugged.values().any(|v| v == id) {
            return Err(HotplugError::DuplicateId(id.to_string()).into());
        }
        let (fd, table) = match self.parked.remove(&index) {
            Some(fd) => (fd, None),
            None => {
                let fd = self.vm.create_vcpu(u64::from(apic_id)).map_err(|source| {
                    VmmError::VcpuIoctl {
                        vcpu: index,
                        op: "KVM_CREATE_VCPU",
                        source,
                    }
                })?;
                (fd, Some(self.normalizer.for_vcpu(index)?))
            }
        };
        configure_vcpu(&fd, index, table.as_ref(), self.bus.probe())?;
        let mut handle = self.ctx.spawn(index, fd, Some(self.placement.hook()))?;
        handle.start(VCPU_TIMEOUT)?;
        self.vcpus.insert(handle);
        self.plugged.insert(index, id.to_string());
        Ok(index)
    }

    /// Unplug the hot-plugged vCPU with monitor id `id`: stop its thread and park its KVM
    /// vCPU for a later re-plug. Returns its index.
    pub fn remove_vcpu(&mut self, index: VcpuIndex) -> Result<(), VmmError> {
        if !self.plugged.contains_key(&index) {
            return Err(HotplugError::NotPluggable(index).into());
        }
        let handle = self
            .vcpus
            .remove(index)
            .ok_or(VmmError::NoSuchVcpu(index))?;
        let fd = handle.stop_and_take_fd(VCPU_TIMEOUT)?;
        self.parked.insert(index, fd);
        self.plugged.remove(&index);
        Ok(())
    }

    /// Read a vCPU's registers on its thread. A running vCPU is paused for the read and
    /// resumed afterwards, as QEMU synchronises state for `info registers`.
    pub fn registers(&mut self, vcpu: VcpuIndex) -> Result<VcpuRegisters, VmmError> {
        let handle = self.vcpus.get_mut(vcpu).ok_or(VmmError::NoSuchVcpu(vcpu))?;
        let state = handle.state();
        if state == VcpuState::Running {
            handle.pause(VCPU_TIMEOUT)?;
        }
        let read = handle.with_fd(VCPU_TIMEOUT, |fd| {
            Ok::<_, kvm_ioctls::Error>((fd.get_regs()?, fd.get_sregs()?))
        });
        if state == VcpuState::Running {
            handle.resume(VCPU_TIMEOUT)?;
        }
        let (regs, sregs) = read?.map_err(|source| VmmError::VcpuIoctl {
            vcpu,
            op: "KVM_GET_REGS",
            source,
        })?;
        Ok(VcpuRegisters {
            regs,
            sregs,
            halted: state == VcpuState::Halted,
        })
    }

    /// Translate a guest virtual address through the vCPU's page tables (CR3), as the
    /// guest's MMU would; `None` when it is not mapped.
    pub fn gva_to_gpa(&mut self, vcpu: VcpuIndex, gva: u64) -> Result<Option<u64>, VmmError> {
        let cr3 = self.registers(vcpu)?.sregs.cr3;
        match gva_to_gpa(self.bus.memory(), cr3, gva) {
            Ok(t) => Ok(Some(t.gpa.0)),
            Err(WalkError::NotPresent { .. } | WalkError::NonCanonical { .. }) => Ok(None),
            Err(e) => Err(VmmError::Walk(e)),
        }
    }

    /// Read guest-physical memory.
    pub fn read_phys(&self, gpa: u64, len: usize) -> Result<Vec<u8>, VmmError> {
        let mut buf = vec![0u8; len];
        self.bus
            .memory()
            .read_slice(&mut buf, GuestAddress(gpa))
            .map_err(|source| VmmError::ReadMemory { gpa, len, source })?;
        Ok(buf)
    }

    /// State of a vCPU, if present.
    pub fn vcpu_state(&self, vcpu: VcpuIndex) -> Option<VcpuState> {
        self.vcpus.get(vcpu).map(|h| h.state())
    }

    /// Host thread id of a vCPU, if present.
    pub fn vcpu_thread_id(&self, vcpu: VcpuIndex) -> Option<i32> {
        self.vcpus.get(vcpu).map(|h| h.thread_id().0)
    }

    /// The CPUID report a vCPU's probe delivered (taken once).
    pub fn take_report(&self, vcpu: VcpuIndex) -> Option<probe_guest::ProbeReport> {
        self.bus.take_report(vcpu)
    }

    /// The topology of the VM.
    pub fn topology(&self) -> cpu_topology::CpuTopology {
        self.config.topology
    }

    /// Guest RAM in bytes.
    pub fn memory_size(&self) -> u64 {
        self.config.memory
    }

    /// The CPU model name (`--cpu`).
    pub fn cpu_model(&self) -> &str {
        &self.config.cpu.model.name
    }
}

//! Operations on a built [`LinuxVm`] that a monitor asks for: CPU hot-plug through the
//! ACPI hot-plug block, registers and guest memory, re-pinning, and the power button.
//!
//! Hot-plug follows the ACPI protocol the guest drives ([`x86_boot::acpi`]'s register
//! block, the Generic Event Device's interrupt):
//!
//! 1. `device_add` ([`LinuxVm::add_vcpu`]): admit the extra vCPU on the host, create its
//!    KVM vCPU with the slot's APIC id and CPUID (or reuse the parked one), start its
//!    thread (with its pin) in KVM's wait-for-INIT state, then mark the slot and raise
//!    the GED interrupt; the guest rescans the slots and starts the CPU with INIT/SIPI.
//! 2. `device_del` ([`LinuxVm::request_unplug`]): mark the slot "remove pending" and raise
//!    the GED interrupt; the guest offlines the CPU and ejects the slot (`_EJ0`), or never
//!    does if it refuses.
//! 3. The main loop calls [`LinuxVm::finish_ejected`]: each ejected vCPU's thread stops,
//!    its fd is parked (KVM cannot destroy a vCPU) and the host ledger forgets it.

use cpu_topology::{TopologyPosition, VcpuIndex};
use kvm_bindings::{kvm_mp_state, KVM_MP_STATE_UNINITIALIZED};

use super::bus::BusError;
use super::vm::create_vcpu;
use super::{LinuxError, LinuxVm};
use crate::hotplug::{
    check_plug, read_guest, read_registers, translate, HotplugError, InspectError, VcpuRegisters,
    VCPU_TIMEOUT,
};
use crate::placement::PlacementSetupError;

/// Why a monitor operation on a Linux VM failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The hot-plug request does not fit the topology or the vCPUs present.
    #[error("{0}")]
    Plug(#[from] HotplugError),
    /// The ACPI hot-plug block refused the slot or could not raise its interrupt.
    #[error("CPU hot-plug")]
    Slot(#[from] x86_boot::acpi::HotplugError),
    /// Reading a vCPU or guest memory failed.
    #[error(transparent)]
    Inspect(#[from] InspectError),
    /// The hot-plugged vCPU could not be created (KVM_CREATE_VCPU, its CPUID).
    #[error("create the vCPU")]
    Create(#[source] LinuxError),
    /// A KVM ioctl on a re-plugged vCPU failed.
    #[error("vCPU {vcpu}: {op} failed")]
    VcpuIoctl {
        /// Which vCPU.
        vcpu: VcpuIndex,
        /// The ioctl.
        op: &'static str,
        /// The errno.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// A vCPU thread did not start or answer.
    #[error("vCPU thread")]
    Vcpu(#[from] vcpu_lifecycle::VcpuError),
    /// Placement refused the change (over-commit admission, a pin to an offline CPU).
    #[error("{0}")]
    Placement(#[from] PlacementSetupError),
    /// A cpuset did not parse.
    #[error("cpuset")]
    CpuSet(#[from] cpu_topology::CpuSetError),
    /// The power button could not be pressed.
    #[error("system_powerdown")]
    PowerButton(#[from] BusError),
    /// No vCPU with this index is present.
    #[error("vCPU {0} does not exist")]
    NoSuchVcpu(VcpuIndex),
}

impl ControlError {
    /// True when the request is at fault rather than the VMM (shown to the client as is).
    pub fn is_bad_input(&self) -> bool {
        match self {
            ControlError::Plug(_)
            | ControlError::CpuSet(_)
            | ControlError::NoSuchVcpu(_)
            | ControlError::Inspect(InspectError::NoSuchVcpu(_))
            | ControlError::PowerButton(BusError::NoPowerButton) => true,
            ControlError::Slot(e) => !matches!(e, x86_boot::acpi::HotplugError::Interrupt { .. }),
            ControlError::Placement(e) => e.is_bad_input(),
            _ => false,
        }
    }
}

/// A vCPU whose slot the guest ejected and whose thread has now stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EjectedCpu {
    /// Its index.
    pub index: VcpuIndex,
    /// The `device_add` id it was plugged with; `None` for a boot vCPU the guest ejected.
    pub id: Option<String>,
}

impl LinuxVm {
    /// The vCPUs present now (boot and hot-plugged), in index order.
    pub fn present_vcpus(&self) -> Vec<VcpuIndex> {
        self.vcpus.iter().map(|h| h.index()).collect()
    }

    /// The `device_add` id of a hot-plugged vCPU.
    pub fn plugged_id(&self, vcpu: VcpuIndex) -> Option<&str> {
        self.plugged.get(&vcpu).map(String::as_str)
    }

    /// The hot-plugged vCPU plugged with `id`.
    pub fn plugged_index(&self, id: &str) -> Option<VcpuIndex> {
        self.plugged
            .iter()
            .find_map(|(&index, v)| (v == id).then_some(index))
    }

    /// Hot-plug a vCPU at `position` (see the module docs); `id` is the monitor's device
    /// id. The vCPU's thread runs (blocked in KVM until the guest starts the CPU).
    pub fn add_vcpu(
        &mut self,
        position: TopologyPosition,
        id: &str,
    ) -> Result<VcpuIndex, ControlError> {
        let (index, apic_id) = check_plug(
            &self.topology,
            position,
            |i| self.vcpus.get(i).is_some(),
            self.plugged_index(id).is_some(),
            id,
        )?;
        // Admission first: a host that refuses the extra vCPU refuses the plug.
        let mut present = self.present_vcpus();
        present.push(index);
        self.placement.set_present(present)?;
        if let Err(e) = self.start_vcpu(index, apic_id) {
            let _ = self.placement.set_present(self.present_vcpus());
            return Err(e);
        }
        if let Err(e) = self.bus.plug_cpu(index.0) {
            self.park(index);
            let _ = self.placement.set_present(self.present_vcpus());
            return Err(e.into());
        }
        self.plugged.insert(index, id.to_string());
        Ok(index)
    }

    /// Create (or reuse) the vCPU of slot `index` and start its thread in the state KVM
    /// gives a new AP: waiting for INIT/SIPI from the guest.
    fn start_vcpu(&mut self, index: VcpuIndex, apic_id: u32) -> Result<(), ControlError> {
        let ioctl = |op| {
            move |source| ControlError::VcpuIoctl {
                vcpu: index,
                op,
                source,
            }
        };
        let fd = match self.parked.remove(&index) {
            // Its CPUID is set (KVM refuses to change it after the first KVM_RUN); only
            // its run state needs resetting from wherever the guest left it.
            Some(fd) => {
                fd.set_mp_state(kvm_mp_state {
                    mp_state: KVM_MP_STATE_UNINITIALIZED,
                })
                .map_err(ioctl("KVM_SET_MP_STATE"))?;
                fd
            }
            None => create_vcpu(&self.vm, &self.normalizer, index, apic_id)
                .map_err(ControlError::Create)?,
        };
        let mut handle = self.ctx.spawn(index, fd, Some(self.placement.hook()))?;
        if let Err(e) = handle.start(VCPU_TIMEOUT) {
            if let Ok(fd) = handle.stop_and_take_fd(VCPU_TIMEOUT) {
                self.parked.insert(index, fd);
            }
            return Err(e.into());
        }
        self.vcpus.insert(handle);
        Ok(())
    }

    /// Stop vCPU `index`'s thread and park its fd for a later plug.
    fn park(&mut self, index: VcpuIndex) {
        let Some(handle) = self.vcpus.remove(index) else {
            return;
        };
        match handle.stop_and_take_fd(VCPU_TIMEOUT) {
            Ok(fd) => {
                self.parked.insert(index, fd);
            }
            Err(e) => log::warn!(
                "vCPU {index}: its thread did not stop cleanly ({}); the slot cannot be \
                 plugged again",
                crate::error_chain(&e)
            ),
        }
    }

    /// Ask the guest to release the vCPU hot-plugged with `id` (see the module docs). The
    /// vCPU keeps running until the guest ejects it; [`LinuxVm::finish_ejected`] then
    /// removes it.
    pub fn request_unplug(&mut self, id: &str) -> Result<Option<VcpuIndex>, ControlError> {
        let Some(index) = self.plugged_index(id) else {
            return Ok(None);
        };
        self.bus.request_cpu_unplug(index.0)?;
        Ok(Some(index))
    }

    /// Remove every vCPU whose slot the guest ejected since the last call: stop its
    /// thread, park its fd, and update the host ledger. Call from the main loop.
    pub fn finish_ejected(&mut self) -> Vec<EjectedCpu> {
        let ejected = self.bus.take_ejected();
        if ejected.is_empty() {
            return Vec::new();
        }
        let mut removed = Vec::new();
        for uid in ejected {
            let index = VcpuIndex(uid);
            if self.vcpus.get(index).is_none() {
                continue;
            }
            self.park(index);
            removed.push(EjectedCpu {
                index,
                id: self.plugged.remove(&index),
            });
        }
        if let Err(e) = self.placement.set_present(self.present_vcpus()) {
            log::warn!(
                "host ledger not updated after a CPU unplug: {}",
                crate::error_chain(&e)
            );
        }
        removed
    }

    /// Read a vCPU's registers on its thread (a running vCPU is paused for the read).
    pub fn registers(&mut self, vcpu: VcpuIndex) -> Result<VcpuRegisters, ControlError> {
        Ok(read_registers(&mut self.vcpus, vcpu)?)
    }

    /// Translate a guest virtual address through the vCPU's page tables (CR3); `None`
    /// when it is not mapped.
    pub fn gva_to_gpa(&mut self, vcpu: VcpuIndex, gva: u64) -> Result<Option<u64>, ControlError> {
        let cr3 = self.registers(vcpu)?.sregs.cr3;
        Ok(translate(self.ram.memory(), cr3, gva)?)
    }

    /// Read guest-physical memory.
    pub fn read_phys(&self, gpa: u64, len: usize) -> Result<Vec<u8>, ControlError> {
        Ok(read_guest(self.ram.memory(), gpa, len)?)
    }

    /// Re-pin a running vCPU to `cpuset` (libvirt syntax, `r` for all host CPUs), as
    /// `virsh vcpupin` does, after re-admitting the VM on the host.
    pub fn vcpupin(&mut self, vcpu: VcpuIndex, cpuset: &str) -> Result<(), ControlError> {
        let cpus = self.placement.parse_cpuset(cpuset)?;
        let tid = self
            .vcpus
            .get(vcpu)
            .ok_or(ControlError::NoSuchVcpu(vcpu))?
            .thread_id()
            .0;
        Ok(self.placement.repin(vcpu, tid, cpus)?)
    }

    /// `virsh vcpuinfo` text for every vCPU, read from /proc.
    pub fn vcpuinfo(&self) -> Result<String, ControlError> {
        Ok(self.placement.vcpuinfo_all(&self.vcpus)?)
    }

    /// Press the ACPI power button (QMP `system_powerdown`): the guest shuts down in an
    /// orderly way and powers off through ACPI S5.
    pub fn press_power_button(&self) -> Result<(), ControlError> {
        Ok(self.bus.press_power_button()?)
    }
}

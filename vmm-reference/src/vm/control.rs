//! What a monitor asks of a running VM: CPU hot-plug, registers, guest memory, re-pin,
//! the power button.
//!
//! Hot-plug, whatever the guest:
//!
//! 1. `device_add` ([`Vmm::add_vcpu`]): check the slot, admit the extra vCPU on the host,
//!    create its KVM vCPU with the slot's APIC id and CPUID (or take the parked one: an
//!    ACPI guest's are made at start), give it the entry state, start its thread with its
//!    pin. The probe runs on it at once; a kernel learns of it through the ACPI hot-plug
//!    block (GED interrupt) and starts it with INIT/SIPI.
//! 2. `device_del` ([`Vmm::remove_vcpu`]): the probe's vCPU is stopped and parked at
//!    once; a kernel is asked to release the CPU, which it does by ejecting the slot, or
//!    never, if it refuses.
//! 3. [`Vmm::finish_ejected`] (the event loop calls it): each ejected vCPU's thread stops,
//!    its fd is parked (KVM cannot destroy a vCPU) and the host ledger forgets it.

use std::time::Duration;

use cpu_topology::{CpuTopology, HostCpuSet, TopologyPosition, VcpuIndex};
use guest_memory::{gva_to_gpa, WalkError};
use kvm_bindings::{kvm_regs, kvm_sregs};
use vcpu_lifecycle::VcpuState;
use vm_memory::{Bytes, GuestAddress};

use super::Vmm;
use crate::error::{vcpu_op, VmmError};

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

/// A vCPU whose slot the guest ejected and whose thread has now stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EjectedCpu {
    /// Its index.
    pub index: VcpuIndex,
    /// The `device_add` id it was plugged with; `None` for a boot vCPU the guest ejected.
    pub id: Option<String>,
}

/// What a `device_del` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unplugged {
    /// The vCPU is gone.
    Done(VcpuIndex),
    /// The guest was asked to release the CPU; [`Vmm::finish_ejected`] reports it.
    Requested(VcpuIndex),
}

/// Check a hot-plug request against the topology and the vCPUs present: the slot at
/// `position` must exist and be empty, and `id` must not name another plugged vCPU.
/// Returns the slot's index and APIC id.
pub fn check_plug(
    topo: &CpuTopology,
    position: TopologyPosition,
    occupied: impl Fn(VcpuIndex) -> bool,
    id_taken: bool,
    id: &str,
) -> Result<(VcpuIndex, u32), HotplugError> {
    let out_of_range = || HotplugError::OutOfRange {
        position,
        max_cpus: topo.max_cpus(),
        topology: cpu_topology::smp::to_smp_string(topo),
    };
    let index = topo.index_of(position).map_err(|_| out_of_range())?;
    let apic_id = topo
        .apic_layout()
        .apic_id(index)
        .map_err(|_| out_of_range())?
        .0;
    if occupied(index) {
        return Err(HotplugError::Exists {
            index: index.0,
            apic_id,
        });
    }
    if id_taken {
        return Err(HotplugError::DuplicateId(id.to_string()));
    }
    Ok((index, apic_id))
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

    /// The hot-plugged vCPU plugged with `id`.
    pub fn plugged_index(&self, id: &str) -> Option<VcpuIndex> {
        self.plugged
            .iter()
            .find_map(|(&index, v)| (v == id).then_some(index))
    }

    /// State of a vCPU, if present.
    pub fn vcpu_state(&self, vcpu: VcpuIndex) -> Option<VcpuState> {
        self.vcpus.get(vcpu).map(|h| h.state())
    }

    /// Host thread id of a vCPU, if present.
    pub fn vcpu_thread_id(&self, vcpu: VcpuIndex) -> Option<i32> {
        self.vcpus.get(vcpu).map(|h| h.thread_id().0)
    }

    /// Hot-plug the vCPU at `position` (see the module docs); `id` is the monitor's
    /// device id.
    pub fn add_vcpu(
        &mut self,
        position: TopologyPosition,
        id: &str,
    ) -> Result<VcpuIndex, VmmError> {
        let (index, apic_id) = check_plug(
            &self.config.topology,
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
        if self.guest.unplug_needs_guest() {
            let told = match self.bus.devices() {
                Some(devices) => devices.plug_cpu(index.0).map_err(VmmError::from),
                None => Err(VmmError::Unsupported(
                    "the VM has no CPU hot-plug block".into(),
                )),
            };
            if let Err(e) = told {
                self.park(index);
                let _ = self.placement.set_present(self.present_vcpus());
                return Err(e);
            }
        }
        self.plugged.insert(index, id.to_string());
        Ok(index)
    }

    /// Create (or reuse) the vCPU of slot `index`, give it the payload's entry state and
    /// start its thread.
    fn start_vcpu(&mut self, index: VcpuIndex, apic_id: u32) -> Result<(), VmmError> {
        let (fd, reused) = match self.parked.remove(&index) {
            // Its CPUID is set (KVM refuses to change it after the first KVM_RUN).
            Some(fd) => (fd, true),
            None => {
                let table = self.normalizer.for_vcpu(index)?;
                (super::create_vcpu(&self.vm, index, apic_id, &table)?, false)
            }
        };
        self.guest
            .configure_plugged_vcpu(&fd, index, &self.bus, reused)?;
        let mut handle = self.ctx.spawn(index, fd, Some(self.vcpu_hook()))?;
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

    /// Unplug the vCPU hot-plugged with `id` (see the module docs); `None` when no vCPU
    /// was plugged with that id.
    pub fn remove_vcpu(&mut self, id: &str) -> Result<Option<Unplugged>, VmmError> {
        let Some(index) = self.plugged_index(id) else {
            return Ok(None);
        };
        if self.guest.unplug_needs_guest() {
            let devices = self
                .bus
                .devices()
                .ok_or_else(|| VmmError::Unsupported("the VM has no CPU hot-plug block".into()))?;
            devices.request_cpu_unplug(index.0)?;
            return Ok(Some(Unplugged::Requested(index)));
        }
        self.park(index);
        self.plugged.remove(&index);
        self.update_ledger();
        Ok(Some(Unplugged::Done(index)))
    }

    /// Remove every vCPU whose slot the guest ejected since the last call: stop its
    /// thread, park its fd, and update the host ledger.
    pub fn finish_ejected(&mut self) -> Vec<EjectedCpu> {
        let ejected = self
            .bus
            .devices()
            .map(|d| d.take_ejected())
            .unwrap_or_default();
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
        if !removed.is_empty() {
            self.update_ledger();
        }
        removed
    }

    fn update_ledger(&mut self) {
        if let Err(e) = self.placement.set_present(self.present_vcpus()) {
            log::warn!(
                "host ledger not updated after a CPU unplug: {}",
                crate::error_chain(&e)
            );
        }
    }

    /// Read a vCPU's registers on its thread. A running vCPU is paused for the read and
    /// resumed afterwards, as QEMU synchronises state for `info registers`.
    pub fn registers(&mut self, vcpu: VcpuIndex) -> Result<VcpuRegisters, VmmError> {
        let handle = self.vcpus.get_mut(vcpu).ok_or(VmmError::NoSuchVcpu(vcpu))?;
        let state = handle.state();
        if state == VcpuState::Running {
            handle.pause(VCPU_TIMEOUT)?;
        }
        let read = handle.with_fd(VCPU_TIMEOUT, move |fd| {
            let regs = fd.get_regs().map_err(vcpu_op(vcpu, "KVM_GET_REGS"))?;
            let sregs = fd.get_sregs().map_err(vcpu_op(vcpu, "KVM_GET_SREGS"))?;
            Ok::<_, VmmError>((regs, sregs))
        });
        if state == VcpuState::Running {
            handle.resume(VCPU_TIMEOUT)?;
        }
        let (regs, sregs) = read??;
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
        match gva_to_gpa(self.ram.memory(), cr3, gva) {
            Ok(t) => Ok(Some(t.gpa.0)),
            Err(WalkError::NotPresent { .. } | WalkError::NonCanonical { .. }) => Ok(None),
            Err(e) => Err(VmmError::Walk(e)),
        }
    }

    /// Read guest-physical memory.
    pub fn read_phys(&self, gpa: u64, len: usize) -> Result<Vec<u8>, VmmError> {
        let mut buf = vec![0u8; len];
        self.ram
            .memory()
            .read_slice(&mut buf, GuestAddress(gpa))
            .map_err(|source| VmmError::ReadMemory { gpa, len, source })?;
        Ok(buf)
    }

    /// The probe's progress counter of a vCPU (spin iterations, barrier rounds, exits),
    /// read from guest memory without stopping the vCPU.
    pub fn progress(&self, vcpu: VcpuIndex) -> Result<u64, VmmError> {
        let doorbell = self
            .bus
            .probe()
            .ok_or_else(|| VmmError::Unsupported("only the probe guest counts progress".into()))?;
        Ok(doorbell.probe().progress(doorbell.memory(), vcpu)?)
    }

    /// The CPUID report a vCPU's probe delivered (taken once).
    pub fn take_report(&self, vcpu: VcpuIndex) -> Option<probe_guest::ProbeReport> {
        self.bus.probe()?.take_report(vcpu)
    }

    /// Re-pin a running vCPU to `cpuset` (libvirt syntax, `r` for all host CPUs), as
    /// `virsh vcpupin` does, after re-admitting the VM on the host.
    pub fn vcpupin(&mut self, vcpu: VcpuIndex, cpuset: &str) -> Result<(), VmmError> {
        let cpus = self.placement.parse_cpuset(cpuset)?;
        let tid = self
            .vcpu_thread_id(vcpu)
            .ok_or(VmmError::NoSuchVcpu(vcpu))?;
        Ok(self.placement.repin(vcpu, tid, cpus)?)
    }

    /// Every slot's host CPUs, as `virsh vcpupin` without a set shows them.
    pub fn vcpu_affinities(&self) -> Result<Vec<(VcpuIndex, HostCpuSet)>, VmmError> {
        let slots = self.config.topology.max_cpus();
        Ok(self.placement.affinities(&self.vcpus, slots)?)
    }

    /// `virsh emulatorpin`: re-pin the VMM's own threads to `cpuset` (libvirt syntax)
    /// when given; the emulator's host CPUs.
    pub fn emulatorpin(&self, cpuset: Option<&str>) -> Result<HostCpuSet, VmmError> {
        let cpus = cpuset.map(|s| self.placement.parse_cpuset(s)).transpose()?;
        Ok(self.placement.emulatorpin(&self.vcpus, cpus)?)
    }

    /// The host's online CPUs: a pin to all of them is no pin.
    pub fn host_cpus(&self) -> &HostCpuSet {
        self.placement.host_cpus()
    }

    /// `virsh vcpuinfo` text for every vCPU, read from /proc.
    pub fn vcpuinfo(&self) -> Result<String, VmmError> {
        Ok(self.placement.vcpuinfo_all(&self.vcpus)?)
    }

    /// Press the ACPI power button (QMP `system_powerdown`): the guest shuts down in an
    /// orderly way and powers off through ACPI S5.
    pub fn press_power_button(&self) -> Result<(), VmmError> {
        let devices = self
            .bus
            .devices()
            .ok_or_else(|| VmmError::Unsupported("the VM has no ACPI power button".into()))?;
        Ok(devices.press_power_button()?)
    }
}

#[cfg(test)]
mod tests {
    use cpu_topology::smp::parse_smp;

    use super::*;

    fn at(socket: u32, core: u32) -> TopologyPosition {
        TopologyPosition {
            socket,
            core,
            ..TopologyPosition::default()
        }
    }

    #[test]
    fn check_plug_rows() {
        // Slots 0..6, APIC ids with a hole per socket (3 cores use 2 bits).
        let topo = parse_smp("2,maxcpus=6,sockets=2,cores=3").unwrap();
        let occupied = |i: VcpuIndex| i.0 < 2;
        // (position, id already taken, index and APIC id or the error).
        type Row = (TopologyPosition, bool, Result<(u32, u32), &'static str>);
        let rows: &[Row] = &[
            (at(0, 2), false, Ok((2, 2))),
            (at(1, 0), false, Ok((3, 4))),
            (at(1, 2), false, Ok((5, 6))),
            (at(0, 1), false, Err("CPU[1] with APIC ID 1 exists")),
            (at(1, 1), true, Err("Duplicate device ID 'cpu9'")),
            (
                at(2, 0),
                false,
                Err("Invalid CPU [socket: 2, die: 0, core: 0, thread: 0]: maxcpus is 6 (cpus=2,maxcpus=6,sockets=2,dies=1,modules=1,cores=3,threads=1)"),
            ),
            (
                at(0, 3),
                false,
                Err("Invalid CPU [socket: 0, die: 0, core: 3, thread: 0]: maxcpus is 6 (cpus=2,maxcpus=6,sockets=2,dies=1,modules=1,cores=3,threads=1)"),
            ),
        ];
        for (position, id_taken, want) in rows {
            let got = check_plug(&topo, *position, occupied, *id_taken, "cpu9")
                .map(|(i, apic)| (i.0, apic))
                .map_err(|e| e.to_string());
            assert_eq!(got, want.map_err(str::to_string), "{position:?}");
        }
    }
}

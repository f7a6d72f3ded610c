//! CPU hot-plug and inspection on a running [`Vmm`]: what the monitor's `device_add`,
//! `device_del`, `info registers`, `gva2gpa` and `xp` need.
//!
//! The checks and reads that do not depend on the guest ([`check_plug`],
//! [`read_registers`], [`translate`], [`read_guest`]) are shared with the Linux VM
//! ([`crate::linux::LinuxVm`]).

use std::time::Duration;

use cpu_topology::{CpuTopology, TopologyPosition, VcpuIndex};
use guest_memory::{gva_to_gpa, WalkError};
use kvm_bindings::{kvm_regs, kvm_sregs};
use vcpu_lifecycle::{VcpuError, VcpuSet, VcpuState};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::vmm::{configure_vcpu, Vmm, VmmError};

/// How long a single vCPU may take to answer a command from the monitor.
pub(crate) const VCPU_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Why reading a vCPU's state or guest memory failed.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// No vCPU with this index is present.
    #[error("vCPU {0} does not exist")]
    NoSuchVcpu(VcpuIndex),
    /// The vCPU thread did not answer (pause, fd access, resume).
    #[error("vCPU thread")]
    Vcpu(#[from] VcpuError),
    /// A register ioctl failed on the vCPU thread.
    #[error("vCPU {vcpu}: {op} failed")]
    Ioctl {
        /// Which vCPU.
        vcpu: VcpuIndex,
        /// The ioctl.
        op: &'static str,
        /// The errno.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// A page-table walk hit guest memory it could not read.
    #[error("page-table walk")]
    Walk(#[source] WalkError),
    /// Guest memory could not be read.
    #[error("read {len} bytes of guest memory at {gpa:#x}")]
    ReadMemory {
        /// Where.
        gpa: u64,
        /// How much.
        len: usize,
        /// Why.
        #[source]
        source: vm_memory::GuestMemoryError,
    },
}

impl From<InspectError> for VmmError {
    fn from(e: InspectError) -> Self {
        match e {
            InspectError::NoSuchVcpu(i) => VmmError::NoSuchVcpu(i),
            InspectError::Vcpu(e) => VmmError::Vcpu(e),
            InspectError::Ioctl { vcpu, op, source } => VmmError::VcpuIoctl { vcpu, op, source },
            InspectError::Walk(e) => VmmError::Walk(e),
            InspectError::ReadMemory { gpa, len, source } => {
                VmmError::ReadMemory { gpa, len, source }
            }
        }
    }
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

/// Read a vCPU's registers on its thread. A running vCPU is paused for the read and
/// resumed afterwards, as QEMU synchronises state for `info registers`.
pub fn read_registers(vcpus: &mut VcpuSet, vcpu: VcpuIndex) -> Result<VcpuRegisters, InspectError> {
    let handle = vcpus.get_mut(vcpu).ok_or(InspectError::NoSuchVcpu(vcpu))?;
    let state = handle.state();
    if state == VcpuState::Running {
        handle.pause(VCPU_TIMEOUT)?;
    }
    let read = handle.with_fd(VCPU_TIMEOUT, |fd| {
        let regs = fd.get_regs().map_err(|e| ("KVM_GET_REGS", e))?;
        let sregs = fd.get_sregs().map_err(|e| ("KVM_GET_SREGS", e))?;
        Ok::<_, (&'static str, kvm_ioctls::Error)>((regs, sregs))
    });
    if state == VcpuState::Running {
        handle.resume(VCPU_TIMEOUT)?;
    }
    let (regs, sregs) = read?.map_err(|(op, source)| InspectError::Ioctl { vcpu, op, source })?;
    Ok(VcpuRegisters {
        regs,
        sregs,
        halted: state == VcpuState::Halted,
    })
}

/// Translate a guest virtual address through the page tables at `cr3`, as the guest's
/// MMU would; `None` when it is not mapped.
pub fn translate(mem: &GuestMemoryMmap, cr3: u64, gva: u64) -> Result<Option<u64>, InspectError> {
    match gva_to_gpa(mem, cr3, gva) {
        Ok(t) => Ok(Some(t.gpa.0)),
        Err(WalkError::NotPresent { .. } | WalkError::NonCanonical { .. }) => Ok(None),
        Err(e) => Err(InspectError::Walk(e)),
    }
}

/// Read `len` bytes of guest-physical memory at `gpa`.
pub fn read_guest(mem: &GuestMemoryMmap, gpa: u64, len: usize) -> Result<Vec<u8>, InspectError> {
    let mut buf = vec![0u8; len];
    mem.read_slice(&mut buf, GuestAddress(gpa))
        .map_err(|source| InspectError::ReadMemory { gpa, len, source })?;
    Ok(buf)
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
        let (index, apic_id) = check_plug(
            &topo,
            position,
            |i| self.vcpus.get(i).is_some(),
            self.plugged.values().any(|v| v == id),
            id,
        )?;
        // Admission first: a host that refuses the extra vCPU refuses the plug.
        let mut present = self.present_vcpus();
        present.push(index);
        self.placement.set_present(present)?;
        let plugged = self.plug_admitted(index, apic_id);
        if plugged.is_err() {
            let _ = self.placement.set_present(self.present_vcpus());
        }
        plugged?;
        self.plugged.insert(index, id.to_string());
        Ok(index)
    }

    fn plug_admitted(&mut self, index: VcpuIndex, apic_id: u32) -> Result<(), VmmError> {
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
        Ok(())
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
        if let Err(e) = self.placement.set_present(self.present_vcpus()) {
            log::warn!(
                "host ledger not updated after unplugging vCPU {index}: {}",
                crate::error_chain(&e)
            );
        }
        Ok(())
    }

    /// Read a vCPU's registers on its thread. A running vCPU is paused for the read and
    /// resumed afterwards, as QEMU synchronises state for `info registers`.
    pub fn registers(&mut self, vcpu: VcpuIndex) -> Result<VcpuRegisters, VmmError> {
        Ok(read_registers(&mut self.vcpus, vcpu)?)
    }

    /// Translate a guest virtual address through the vCPU's page tables (CR3), as the
    /// guest's MMU would; `None` when it is not mapped.
    pub fn gva_to_gpa(&mut self, vcpu: VcpuIndex, gva: u64) -> Result<Option<u64>, VmmError> {
        let cr3 = self.registers(vcpu)?.sregs.cr3;
        Ok(translate(self.bus.memory(), cr3, gva)?)
    }

    /// Read guest-physical memory.
    pub fn read_phys(&self, gpa: u64, len: usize) -> Result<Vec<u8>, VmmError> {
        Ok(read_guest(self.bus.memory(), gpa, len)?)
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

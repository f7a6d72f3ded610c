//! The VM's devices: the one exit handler its vCPU threads call, chosen by the payload.
//!
//! Each payload's handler is a concrete type, and the vCPU threads are spawned with a
//! [`VcpuContext`] of that type, so the compiler folds the handler into the vCPU run
//! loop: the probe doorbell (one port write per message of the exits workload) costs no
//! more than a VMM that had only the probe. A kernel's platform devices route by address
//! (COM1, i8042, ACPI, CPU hot-plug); anything unrouted reads as all ones and swallows
//! writes, as an empty ISA bus does.

use std::sync::Arc;

use cpu_topology::VcpuIndex;
use kvm_ioctls::VcpuFd;
use vcpu_lifecycle::{
    EmulationFallback, EventSender, PreRunHook, SyscallCompletion, VcpuContext, VcpuError,
    VcpuHandle,
};

use super::payload::GuestExit;
use crate::probe::ProbeDoorbell;
use x86_devices::{Platform, VmExit};

/// The devices of one VM.
#[derive(Debug, Clone)]
pub enum VmBus {
    /// The probe's doorbell, and nothing else.
    Probe(Arc<ProbeDoorbell>),
    /// A kernel's platform devices.
    Platform(Arc<Platform>),
}

impl VmBus {
    /// The probe doorbell, when the VM runs the probe.
    pub fn probe(&self) -> Option<&ProbeDoorbell> {
        match self {
            VmBus::Probe(d) => Some(d),
            VmBus::Platform(_) => None,
        }
    }

    /// The platform devices, when the VM runs a kernel.
    pub fn devices(&self) -> Option<&Platform> {
        match self {
            VmBus::Platform(p) => Some(p),
            VmBus::Probe(_) => None,
        }
    }

    /// How the guest ended the VM, once a vCPU stopped it through a device.
    pub fn guest_exit(&self) -> Option<GuestExit> {
        match self.devices()?.vm_exit()? {
            VmExit::Reboot(_) => Some(GuestExit::Reboot),
            VmExit::PowerOff => Some(GuestExit::PowerOff),
            VmExit::DebugExit(value) => Some(GuestExit::DebugExit(*value)),
            VmExit::Stop(_) => None,
        }
    }

    /// The last `n` console lines (none without a console).
    pub fn console_tail(&self, n: usize) -> Vec<String> {
        self.devices()
            .map(|p| p.com1().console_tail(n))
            .unwrap_or_default()
    }

    /// Flush buffered console output.
    pub fn flush_console(&self) {
        if let Some(p) = self.devices() {
            p.com1().flush_output();
        }
    }

    /// The spawner of vCPU threads whose exits go to these devices.
    pub(super) fn spawner(
        &self,
        events: EventSender,
        memory: &vm_memory::GuestMemoryMmap,
        fallback: EmulationFallback,
        syscall: SyscallCompletion,
    ) -> Result<Spawner, VcpuError> {
        // The emulation fallback reads instructions and operands through guest memory, the
        // syscall completion the guest's IDT and exception frames.
        Ok(match self {
            VmBus::Probe(d) => Spawner::Probe(
                VcpuContext::new(Arc::clone(d), events)?
                    .with_guest_memory(memory.clone())
                    .with_emulation_fallback(fallback)
                    .with_syscall_completion(syscall),
            ),
            VmBus::Platform(p) => Spawner::Platform(
                VcpuContext::new(Arc::clone(p), events)?
                    .with_guest_memory(memory.clone())
                    .with_emulation_fallback(fallback)
                    .with_syscall_completion(syscall),
            ),
        })
    }
}

/// Spawns vCPU threads (boot and hot-plugged) with the VM's concrete exit handler.
#[derive(Debug)]
pub(super) enum Spawner {
    Probe(VcpuContext<ProbeDoorbell>),
    Platform(VcpuContext<Platform>),
}

impl Spawner {
    /// Start `vcpu N` for a configured fd; it sets up while we go on (`spawn_unsettled`).
    pub(super) fn spawn(
        &self,
        index: VcpuIndex,
        fd: VcpuFd,
        hook: Option<PreRunHook>,
    ) -> Result<VcpuHandle, VcpuError> {
        match self {
            Spawner::Probe(ctx) => ctx.spawn_unsettled(index, fd, hook),
            Spawner::Platform(ctx) => ctx.spawn_unsettled(index, fd, hook),
        }
    }
}

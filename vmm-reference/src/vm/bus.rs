//! The VM's one exit handler: every port-I/O and MMIO exit of every vCPU comes here and
//! goes to the device that owns the address.
//!
//! The probe doorbell is checked first and inline (the probe's exits workload makes one
//! port write per message, and the handler type is concrete, so the compiler folds the
//! doorbell into the vCPU run loop); the platform devices of a kernel payload come next.
//! Anything else reads as all ones and swallows writes, as an empty ISA bus does.

use std::sync::Arc;

use cpu_topology::VcpuIndex;
use vcpu_lifecycle::{ExitAction, ExitHandler};

use super::payload::GuestExit;
use crate::linux::bus::LinuxBus;
use crate::probe::ProbeDoorbell;

/// The devices of one VM.
#[derive(Debug)]
pub struct VmBus {
    doorbell: Option<ProbeDoorbell>,
    platform: Option<Arc<LinuxBus>>,
}

impl VmBus {
    /// The probe's bus: the doorbell and nothing else.
    pub(crate) fn with_doorbell(doorbell: ProbeDoorbell) -> Self {
        Self {
            doorbell: Some(doorbell),
            platform: None,
        }
    }

    /// A kernel's bus: the platform devices.
    pub(crate) fn with_platform(platform: Arc<LinuxBus>) -> Self {
        Self {
            doorbell: None,
            platform: Some(platform),
        }
    }

    /// The probe doorbell, when the VM runs the probe.
    pub fn probe(&self) -> Option<&ProbeDoorbell> {
        self.doorbell.as_ref()
    }

    /// The platform devices, when the VM runs a kernel.
    pub fn devices(&self) -> Option<&LinuxBus> {
        self.platform.as_deref()
    }

    /// How the guest ended the VM, once a vCPU stopped it through a device.
    pub fn guest_exit(&self) -> Option<GuestExit> {
        self.platform.as_ref().and_then(|p| p.guest_exit())
    }

    /// The last `n` console lines (none without a console).
    pub fn console_tail(&self, n: usize) -> Vec<String> {
        self.platform
            .as_ref()
            .map(|p| p.console_tail(n))
            .unwrap_or_default()
    }

    /// Flush buffered console output.
    pub fn flush_console(&self) {
        if let Some(p) = &self.platform {
            p.flush_console();
        }
    }
}

impl ExitHandler for VmBus {
    #[inline]
    fn io_in(&self, vcpu: VcpuIndex, port: u16, data: &mut [u8]) -> ExitAction {
        match &self.platform {
            Some(p) => p.io_in(vcpu, port, data),
            None => {
                data.fill(0xff);
                ExitAction::Continue
            }
        }
    }

    #[inline]
    fn io_out(&self, vcpu: VcpuIndex, port: u16, data: &[u8]) -> ExitAction {
        if let Some(doorbell) = &self.doorbell {
            return doorbell.io_out(vcpu, port, data);
        }
        match &self.platform {
            Some(p) => p.io_out(vcpu, port, data),
            None => ExitAction::Continue,
        }
    }

    fn mmio_read(&self, vcpu: VcpuIndex, addr: u64, data: &mut [u8]) -> ExitAction {
        match &self.platform {
            Some(p) => p.mmio_read(vcpu, addr, data),
            None => {
                data.fill(0xff);
                ExitAction::Continue
            }
        }
    }

    fn mmio_write(&self, vcpu: VcpuIndex, addr: u64, data: &[u8]) -> ExitAction {
        match &self.platform {
            Some(p) => p.mmio_write(vcpu, addr, data),
            None => ExitAction::Continue,
        }
    }
}

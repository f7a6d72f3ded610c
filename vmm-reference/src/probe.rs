//! The probe guest's side of the VM: its doorbell device (one port write per message,
//! the data in guest memory), and what the VM reports when every vCPU is done (the
//! cpu-info.sh summary, the per-vCPU table, `cpuid -r` and hwloc dumps).

use std::sync::Mutex;

use cpu_topology::VcpuIndex;
use probe_guest::{Doorbell, ProbeGuest, ProbeReport};
use vcpu_lifecycle::{ExitAction, ExitHandler};
use vm_memory::GuestMemoryMmap;

/// What one vCPU slot of the probe has delivered.
#[derive(Debug, Default)]
struct Slot {
    report: Mutex<Option<ProbeReport>>,
}

/// The probe's doorbell, the probe VM's only device (every other port reads as all ones
/// and swallows writes): Report copies a vCPU's CPUID view out of guest memory, Done
/// halts the vCPU, Ping (the exits workload) is answered with nothing to do.
#[derive(Debug)]
pub struct ProbeDoorbell {
    probe: ProbeGuest,
    mem: GuestMemoryMmap,
    slots: Vec<Slot>,
}

impl ProbeDoorbell {
    /// A bus for `max_cpus` vCPU slots reading reports from `mem`.
    pub fn new(probe: ProbeGuest, mem: GuestMemoryMmap, max_cpus: u32) -> Self {
        let slots = (0..max_cpus).map(|_| Slot::default()).collect();
        Self { probe, mem, slots }
    }

    /// The probe guest this bus serves.
    pub fn probe(&self) -> &ProbeGuest {
        &self.probe
    }

    /// Guest memory the probe writes to.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// Take the CPUID report of a vCPU, if it delivered one.
    pub fn take_report(&self, vcpu: VcpuIndex) -> Option<ProbeReport> {
        let slot = self.slots.get(vcpu.0 as usize)?;
        slot.report.lock().ok()?.take()
    }

    /// A Report doorbell: copy the report out of guest memory into the vCPU's slot. Once
    /// per vCPU, so kept out of line: `io_out` stays a leaf function for the Ping path.
    #[cold]
    #[inline(never)]
    fn take_delivery(&self, vcpu: VcpuIndex) -> ExitAction {
        let Some(slot) = self.slots.get(vcpu.0 as usize) else {
            return ExitAction::StopVm(
                format!("probe doorbell from vCPU {vcpu}, which has no slot").into(),
            );
        };
        match self.probe.read_report(&self.mem, vcpu) {
            Ok(report) => {
                if let Ok(mut r) = slot.report.lock() {
                    *r = Some(report);
                }
                ExitAction::Continue
            }
            Err(e) => ExitAction::StopVm(format!("malformed probe report: {e}").into()),
        }
    }
}

impl ExitHandler for ProbeDoorbell {
    fn io_in(&self, _vcpu: VcpuIndex, _port: u16, data: &mut [u8]) -> ExitAction {
        data.fill(0xff);
        ExitAction::Continue
    }

    fn io_out(&self, vcpu: VcpuIndex, port: u16, data: &[u8]) -> ExitAction {
        // Ping (the per-exit message of the exits workload) needs no state: it is answered
        // without touching the vCPU's slot.
        match Doorbell::from_port_write(port, data) {
            None | Some(Doorbell::Ping) => ExitAction::Continue,
            Some(Doorbell::Report) => self.take_delivery(vcpu),
            // The lifecycle turns Halt into a Halted event: that is how the run learns
            // the vCPU is done, and it never enters this vCPU again.
            Some(Doorbell::Done) => ExitAction::Halt,
        }
    }

    fn mmio_read(&self, _vcpu: VcpuIndex, _addr: u64, data: &mut [u8]) -> ExitAction {
        data.fill(0xff);
        ExitAction::Continue
    }

    fn mmio_write(&self, _vcpu: VcpuIndex, _addr: u64, _data: &[u8]) -> ExitAction {
        ExitAction::Continue
    }
}

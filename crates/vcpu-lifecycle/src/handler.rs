//! The exit-handler trait: where port and MMIO exits go.

use cpu_topology::VcpuIndex;

/// What the vCPU does after an exit was handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitAction {
    /// Re-enter the guest.
    Continue,
    /// This vCPU's guest is finished: stop entering the guest, move to
    /// [`crate::VcpuState::Halted`], report [`crate::VcpuEvent::Halted`], keep answering
    /// commands.
    Halt,
    /// Stop the whole VM: this vCPU moves to [`crate::VcpuState::Stopped`] and reports
    /// [`crate::VcpuEvent::StopVm`] with this reason; the VMM then stops the other vCPUs.
    /// Build one with `ExitAction::StopVm("reason".into())`.
    StopVm(StopRequest),
}

/// The reason an exit handler gives for stopping the VM.
///
/// The text sits behind one thin pointer so that an [`ExitAction`] is two machine words:
/// handlers return it in registers on every exit, and only the rare stop pays for the
/// allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopRequest(Box<Reason>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Reason(String);

impl StopRequest {
    /// A stop with this reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Self(Box::new(Reason(reason.into())))
    }

    /// The reason.
    pub fn reason(&self) -> &str {
        &self.0 .0
    }

    /// The reason, owned.
    pub fn into_reason(self) -> String {
        self.0 .0
    }
}

impl From<String> for StopRequest {
    fn from(reason: String) -> Self {
        Self::new(reason)
    }
}

impl From<&str> for StopRequest {
    fn from(reason: &str) -> Self {
        Self::new(reason)
    }
}

impl std::fmt::Display for StopRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// Receives the port-I/O and MMIO exits of every vCPU of a VM (typically the VMM's bus,
/// which owns the address routing; the run loop never knows device addresses).
///
/// One handler is shared by all vCPU threads, so it is `Send + Sync` and its methods take
/// `&self`. They run on the vCPU thread between two KVM_RUN calls: keep them short and do
/// not block, or the vCPU stops answering commands (a blocked handler shows up as a
/// [`crate::VcpuError::Timeout`], never as a hang of the caller). A kick that lands while
/// the handler is in a blocking system call makes that call fail with EINTR (the kick
/// signal is installed without `SA_RESTART`): retry on `ErrorKind::Interrupted`.
///
/// For reads (`io_in`, `mmio_read`) fill `data`; KVM hands it to the guest on the next
/// KVM_RUN. `data.len()` is the access size (for `rep ins`/`outs`, size times count).
pub trait ExitHandler: Send + Sync {
    /// The guest read from I/O port `port` (`in`).
    fn io_in(&self, vcpu: VcpuIndex, port: u16, data: &mut [u8]) -> ExitAction;
    /// The guest wrote `data` to I/O port `port` (`out`).
    fn io_out(&self, vcpu: VcpuIndex, port: u16, data: &[u8]) -> ExitAction;
    /// The guest read from guest-physical address `addr` that no memory slot backs.
    fn mmio_read(&self, vcpu: VcpuIndex, addr: u64, data: &mut [u8]) -> ExitAction;
    /// The guest wrote `data` to guest-physical address `addr` that no memory slot backs.
    fn mmio_write(&self, vcpu: VcpuIndex, addr: u64, data: &[u8]) -> ExitAction;
}

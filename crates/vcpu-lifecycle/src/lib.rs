//! vCPU threads for KVM: state machine, commands, kick, exit dispatch, per-vCPU statistics.
//!
//! One host thread per vCPU, named `vcpu N`. The caller creates and configures each
//! [`kvm_ioctls::VcpuFd`] (CPUID, registers, MP state: this crate knows none of that) and
//! hands it to [`VcpuContext::spawn`]; an optional [`PreRunHook`] runs on the new thread
//! first (e.g. to pin it). The thread then waits in [`VcpuState::Created`] until it is
//! started, so a VM can create all its vCPUs and start them together with
//! [`VcpuSet::start_all`].
//!
//! * **Control** is command/reply ([`VcpuCommand`]: start, pause, resume, stop, and
//!   [`VcpuHandle::with_fd`] to run a closure with the fd on the vCPU thread while the guest
//!   is not running), each reply awaited with a timeout. A vCPU that does not answer gives [`VcpuError::Timeout`]
//!   naming the vCPU and the command; nothing waits forever. Illegal commands give
//!   [`VcpuError::InvalidTransition`]; the table is in DESIGN.md and [`transition`].
//! * **Kick**: every command is queued first, then the thread gets a real-time signal whose
//!   handler sets `kvm_run.immediate_exit`, so a vCPU busy in the guest or blocked in
//!   KVM_RUN (HLT with the in-kernel irqchip) notices at once, without lost wakeups.
//! * **Pause completes I/O**: after a port or MMIO exit, a pause re-enters KVM_RUN once with
//!   `immediate_exit = 1` so KVM finishes the instruction before the vCPU reports `Paused`.
//! * **Exits** go to one shared [`ExitHandler`] (the VMM's bus), which answers with an
//!   [`ExitAction`]. Guest faults (triple fault, internal error, failed entry), unexpected
//!   exits and KVM_RUN errors stop the VM with a [`StopReason`] naming the vCPU and RIP.
//! * **Emulation fallback**: a KVM_EXIT_INTERNAL_ERROR of the in-kernel emulator (software
//!   and nested KVM backends cannot run INT3, CLAC, POPCNT, XGETBV, ... at CPL0) is
//!   completed on the vCPU thread by the `insn-fallback` crate: exact semantics, the
//!   guest's CPUID and privilege rules, exceptions injected with KVM_SET_VCPU_EVENTS. On
//!   by default ([`VcpuContext::with_emulation_fallback`]); give it the guest's RAM with
//!   [`VcpuContext::with_guest_memory`]. Anything outside its list still stops the VM.
//!   Completions are counted per instruction in [`ExitStats::emulated`].
//! * **Syscall completion** (off by default, [`VcpuContext::with_syscall_completion`]): a
//!   software KVM backend may leave a 64-bit `syscall` from CPL3 at CPL3, so the fetch at
//!   LSTAR page-faults and Linux kills init. With it on, the vCPU thread puts a hardware
//!   breakpoint (KVM_SET_GUEST_DEBUG) on the guest's #PF handler, recognises such a fault
//!   from its exception frame (`insn_fallback::syscall`) and loads the state SYSCALL should
//!   have produced; other page faults are single-stepped. Counted in [`ExitStats::syscall`].
//! * **Events** ([`VcpuEvent`]: halted, stop the VM) arrive on an mpsc channel created by
//!   [`event_channel`], optionally with an `EventFd` written per event for epoll loops.
//! * **Observability**: per-vCPU [`ExitStats`] (lock-free counters), host thread id
//!   ([`HostTid`]) known right after spawn, and the host CPU the thread last ran on.
//! * **Host check**: [`host::check`] says whether this user can run VMs here (/dev/kvm,
//!   API version, the capabilities relied on), as virt-host-validate does.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use cpu_topology::VcpuIndex;
//! use vcpu_lifecycle::*;
//!
//! struct Bus;
//! impl ExitHandler for Bus {
//!     fn io_in(&self, _: VcpuIndex, _: u16, data: &mut [u8]) -> ExitAction {
//!         data.fill(0xff);
//!         ExitAction::Continue
//!     }
//!     fn io_out(&self, _: VcpuIndex, port: u16, _: &[u8]) -> ExitAction {
//!         if port == 0xf4 { ExitAction::Halt } else { ExitAction::Continue }
//!     }
//!     fn mmio_read(&self, _: VcpuIndex, _: u64, data: &mut [u8]) -> ExitAction {
//!         data.fill(0);
//!         ExitAction::Continue
//!     }
//!     fn mmio_write(&self, _: VcpuIndex, _: u64, _: &[u8]) -> ExitAction {
//!         ExitAction::Continue
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let kvm = kvm_ioctls::Kvm::new()?;
//! let vm = kvm.create_vm()?;
//! // ... memory slots, guest code, then per vCPU: create_vcpu, set_cpuid2, set_sregs, set_regs
//! let (events, event_rx) = event_channel(None);
//! let ctx = VcpuContext::new(Arc::new(Bus), events)?;
//! let mut set = VcpuSet::new();
//! for i in 0..2u32 {
//!     let fd = vm.create_vcpu(u64::from(i))?;
//!     set.insert(ctx.spawn(VcpuIndex(i), fd, None)?);
//! }
//! set.start_all(Duration::from_secs(1))?;
//! match event_rx.recv()? {
//!     VcpuEvent::StopVm(stop) => eprintln!("{stop}"),
//!     VcpuEvent::Halted { vcpu } => eprintln!("vCPU {vcpu} finished"),
//! }
//! set.stop_all(Duration::from_secs(1))?;
//! # Ok(())
//! # }
//! ```

mod event;
mod fallback;
mod handle;
mod handler;
pub mod host;
mod observer;
mod set;
mod state;
mod stats;
mod sys;
mod syscall_completion;
mod vcpu;

pub use event::{event_channel, EventSender, Rip, StopReason, VcpuEvent, VmStop};
pub use fallback::{EmulationFallback, FallbackDeclined, ParseEmulationFallbackError};
pub use handle::{
    HookError, HostTid, PreRunHook, VcpuContext, VcpuError, VcpuHandle, DEFAULT_SPAWN_TIMEOUT,
    DROP_TIMEOUT,
};
pub use handler::{ExitAction, ExitHandler, StopRequest};
pub use insn_fallback::InsnClass;
pub use observer::VcpuObserver;
pub use set::{VcpuSet, VcpuSetError};
pub use state::{transition, VcpuCommand, VcpuState};
pub use stats::{EmulatedCounts, ExitStats, SyscallCounts};
pub use syscall_completion::{ParseSyscallCompletionError, SyscallCompletion};

#[cfg(test)]
mod tests {
    use super::*;
    use cpu_topology::VcpuIndex;
    use std::sync::Arc;

    struct Nop;
    impl ExitHandler for Nop {
        fn io_in(&self, _: VcpuIndex, _: u16, _: &mut [u8]) -> ExitAction {
            ExitAction::Continue
        }
        fn io_out(&self, _: VcpuIndex, _: u16, _: &[u8]) -> ExitAction {
            ExitAction::Continue
        }
        fn mmio_read(&self, _: VcpuIndex, _: u64, _: &mut [u8]) -> ExitAction {
            ExitAction::Continue
        }
        fn mmio_write(&self, _: VcpuIndex, _: u64, _: &[u8]) -> ExitAction {
            ExitAction::Continue
        }
    }

    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn types_cross_threads_as_documented() {
        send::<VcpuHandle>();
        send::<VcpuSet>();
        send_sync::<VcpuContext>();
        send_sync::<VcpuObserver>();
        send_sync::<EventSender>();
        send::<VcpuError>();
        // The handler trait is object-safe and shareable.
        send_sync::<Arc<dyn ExitHandler>>();
    }

    #[test]
    fn kick_signal_must_be_real_time() {
        let (events, _rx) = event_channel(None);
        let err = VcpuContext::with_kick_signal(Arc::new(Nop), events, libc::SIGUSR1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "installing the vCPU kick handler for signal 10 failed"
        );
        let (events, _rx) = event_channel(None);
        let ctx = VcpuContext::new(Arc::new(Nop), events).unwrap();
        assert_eq!(ctx.kick_signal(), vmm_sys_util::signal::SIGRTMIN());
    }
}

//! `Vmm`: one VM, built from a [`VmmConfig`] whatever guest it runs.
//!
//! Build order (each step needs the previous ones): the NUMA check, the memory layout,
//! the serial backend of a kernel payload (a socket server with `wait` blocks here), KVM
//! limits, placement admission, the VM, guest RAM and its slots (before the irqchip: slot
//! changes are slower once KVM maps its APIC access page), the irqchip the payload asks
//! for, the CPUID pipeline, the payload (probe image, or kernel and boot tables) and its
//! bus, then one configured vCPU thread per present vCPU (after the irqchip, so each gets
//! an in-kernel local APIC). Each vCPU thread applies its pin before its first KVM_RUN;
//! the calling thread takes the emulator pin once every vCPU thread exists.
//!
//! - `payload`: what differs between guests (irqchip, image, vCPU entry state, devices);
//! - `bus`: the VM's one exit handler;
//! - `control`: hot-plug, registers, guest memory, re-pin (what a monitor asks for);
//! - `wait`: running to the end without a monitor, and the end-of-run reports.

mod bus;
mod control;
mod payload;
mod wait;

use std::collections::BTreeMap;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

use cpu_topology::{CpuTopology, VcpuIndex};
use cpuid_model::normalize::Normalizer;
use cpuid_model::CpuidTable;
use guest_memory::{GuestRam, MemoryLayout, MemorySlots, NumaTopology};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vcpu_lifecycle::{event_channel, VcpuEvent, VcpuSet};
use vmm_sys_util::eventfd::EventFd;

use bus::Spawner;
pub use bus::VmBus;
pub use control::{EjectedCpu, HotplugError, Unplugged, VcpuRegisters};
pub use payload::GuestExit;
pub use wait::Ended;

use crate::error::{kvm_op, vcpu_op, VmmError};
use crate::guest_setup::{
    check_kvm_limits, guest_cpuid, map_guest_ram, resolve_numa, supported_cpuid,
};
use crate::placement::VmPlacement;
use crate::VmmConfig;
use payload::Guest;

/// How long the vCPUs may take to answer a start, pause, resume or stop.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// A VM. Fields drop in order: vCPU threads first, then the ledger entry, parked vCPU
/// fds, and memory.
#[derive(Debug)]
pub struct Vmm {
    vcpus: VcpuSet,
    events: Receiver<VcpuEvent>,
    /// Written on every lifecycle event: what an event loop waits on.
    event_fd: EventFd,
    bus: VmBus,
    guest: Guest,
    config: VmmConfig,
    placement: VmPlacement,
    numa: Option<NumaTopology>,
    /// Spawns vCPU threads (boot and hot-plugged) with the VM's exit handler.
    ctx: Spawner,
    /// Per-vCPU CPUID for any slot, hot-pluggable ones included.
    normalizer: Normalizer,
    /// The CPUID each boot vCPU was given, in index order.
    cpuid: Vec<CpuidTable>,
    /// Hot-plugged vCPUs by `device_add` id.
    plugged: BTreeMap<VcpuIndex, String>,
    /// vCPU fds of unplugged slots: KVM cannot destroy a vCPU, so a re-plug reuses it.
    parked: BTreeMap<VcpuIndex, VcpuFd>,
    /// What this host's KVM supports (KVM_GET_SUPPORTED_CPUID), for the CPU model queries.
    host_cpuid: CpuidTable,
    /// KVM_CAP_MAX_VCPUS.
    kvm_max_vcpus: u32,
    /// The seccomp filters of every thread kind.
    sandbox: vmm_sandbox::Sandbox,
    /// Boot vCPUs that have not finished their guest work (the probe's end of run).
    pending: std::collections::BTreeSet<VcpuIndex>,
    _slots: MemorySlots,
    ram: GuestRam,
    vm: Arc<VmFd>,
}

impl Vmm {
    /// Build the VM, load its guest and create every vCPU thread (not yet running).
    pub fn new(config: VmmConfig) -> Result<Self, VmmError> {
        let topo = config.topology;
        let numa = resolve_numa(&config.numa, &config.objects, &topo, config.memory)?;
        let layout = match &numa {
            Some(n) => n.layout()?,
            None => MemoryLayout::x86_64(config.memory)?,
        };
        let prepared = payload::prepare(&config.payload)?;

        let kvm = Kvm::new().map_err(VmmError::OpenKvm)?;
        check_kvm_limits(&kvm, &topo)?;
        let placement =
            VmPlacement::for_kvm(&config.placement, &topo, config.name.as_deref(), &kvm)?;
        let vm = Arc::new(kvm.create_vm().map_err(kvm_op("KVM_CREATE_VM"))?);
        prepared.before_memory(&vm)?;
        let ram = map_guest_ram::<VmmError>(&layout, numa.as_ref(), &config.objects)?;
        // Slots before the irqchip: with the irqchip in place KVM also maps its APIC
        // access page, and every later slot change costs milliseconds (measured).
        let slots = ram.register(Arc::clone(&vm))?;
        prepared.create_irqchip(&vm)?;

        let host_cpuid = supported_cpuid(&kvm)?;
        let normalizer = guest_cpuid(&host_cpuid, &config.cpu, &topo, numa.as_ref())?;
        let cpuid = topo
            .present()
            .map(|i| normalizer.for_vcpu(i))
            .collect::<Result<Vec<_>, _>>()?;
        let (guest, bus) = prepared.load(&vm, &ram, &layout, &topo, numa.as_ref(), &cpuid)?;

        let io = |what| move |source| VmmError::EventLoop { what, source };
        let event_fd =
            EventFd::new(libc::EFD_NONBLOCK).map_err(io("create the lifecycle eventfd"))?;
        let notify = event_fd
            .try_clone()
            .map_err(io("clone the lifecycle eventfd"))?;
        let (events_tx, events) = event_channel(Some(notify));
        let ctx = bus.spawner(
            events_tx,
            ram.memory(),
            config.emulation_fallback,
            config.syscall_completion,
        )?;
        let sandbox = vmm_sandbox::Sandbox::new(config.security.seccomp)?;
        // The last moment with one thread: every thread from here on is unprivileged.
        if config.security.drop_privileges {
            vmm_sandbox::drop_privileges(config.security.runas.as_ref())?;
        }
        let apic = topo.apic_layout();
        let mut vcpus = VcpuSet::new();
        for (index, table) in topo.present().zip(&cpuid) {
            let fd = create_vcpu(&vm, index, apic.apic_id(index)?.0, table)?;
            guest.configure_boot_vcpu(&fd, index, &bus)?;
            let hook = vcpu_hook(&placement, &sandbox, &config.security);
            vcpus.insert(ctx.spawn(index, fd, Some(hook))?);
        }
        // An ACPI guest's hot-pluggable slots get their vCPUs now, parked (no thread):
        // this host's KVM never wakes a vCPU created later with INIT/SIPI (docs/LINUX.md).
        let mut parked = BTreeMap::new();
        let unplugged = topo.slots().skip(topo.present().count());
        for index in unplugged.filter(|_| guest.unplug_needs_guest()) {
            let table = normalizer.for_vcpu(index)?;
            parked.insert(
                index,
                create_vcpu(&vm, index, apic.apic_id(index)?.0, &table)?,
            );
        }
        // After the vCPU threads exist: they inherit the creating thread's affinity.
        placement.pin_emulator()?;
        Ok(Self {
            pending: topo.present().collect(),
            host_cpuid,
            kvm_max_vcpus: u32::try_from(kvm.get_max_vcpus()).unwrap_or(u32::MAX),
            sandbox,
            vcpus,
            events,
            event_fd,
            bus,
            guest,
            config,
            placement,
            numa,
            ctx,
            normalizer,
            cpuid,
            plugged: BTreeMap::new(),
            parked,
            _slots: slots,
            ram,
            vm,
        })
    }

    /// The configuration the VM was built from.
    pub fn config(&self) -> &VmmConfig {
        &self.config
    }

    /// The topology of the VM.
    pub fn topology(&self) -> CpuTopology {
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

    /// The resolved `--numa` configuration (nodes, CPUs, sizes, distances), if any.
    pub fn numa(&self) -> Option<&NumaTopology> {
        self.numa.as_ref()
    }

    /// What this host's KVM can give a guest (KVM_GET_SUPPORTED_CPUID, read at build).
    pub fn host_cpuid(&self) -> &CpuidTable {
        &self.host_cpuid
    }

    /// How many vCPUs KVM allows per VM (KVM_CAP_MAX_VCPUS).
    pub fn kvm_max_vcpus(&self) -> u32 {
        self.kvm_max_vcpus
    }

    /// The CPUID table each boot vCPU was given, in index order.
    pub fn cpuid_tables(&self) -> &[CpuidTable] {
        &self.cpuid
    }

    /// The vCPU threads (thread ids, states, exit statistics).
    pub fn vcpus(&self) -> &VcpuSet {
        &self.vcpus
    }

    /// The VM's exit handler (its devices).
    pub fn bus(&self) -> &VmBus {
        &self.bus
    }

    /// The eventfd written on every lifecycle event; read them with [`Vmm::try_event`].
    pub fn event_fd(&self) -> &EventFd {
        &self.event_fd
    }

    /// The kernel a kernel payload loaded (entry point, format).
    pub fn kernel(&self) -> Option<&crate::linux::loader::LoadedKernel> {
        self.guest.kernel()
    }

    /// COM1's input (stdin or a socket) for the event loop; `None` without one or once taken.
    pub fn take_serial_input(&mut self) -> Option<x86_devices::serial::SerialSubscriber> {
        self.guest.take_serial_input()
    }

    /// The boot tables a Linux payload wrote.
    pub fn boot_tables(&self) -> Option<&crate::linux::boot::BootTables> {
        self.guest.boot_tables()
    }

    /// The seccomp filters (the event loop installs the main thread's).
    pub fn sandbox(&self) -> &vmm_sandbox::Sandbox {
        &self.sandbox
    }

    /// What a new vCPU thread runs before its first KVM_RUN: its pin, then its filter.
    fn vcpu_hook(&self) -> vcpu_lifecycle::PreRunHook {
        vcpu_hook(&self.placement, &self.sandbox, &self.config.security)
    }

    /// The placement plan, as `--placement-plan` prints it.
    pub fn placement_plan(&self) -> String {
        self.placement.plan_text()
    }

    /// Start every vCPU (they were created stopped so they start together).
    pub fn start(&mut self) -> Result<(), VmmError> {
        Ok(self.vcpus.start_all(CONTROL_TIMEOUT)?)
    }

    /// Wait until every vCPU thread is set up (placed, filtered); [`Vmm::start`] does too.
    pub fn settle(&mut self) -> Result<(), VmmError> {
        Ok(self.vcpus.settle_all()?)
    }

    /// Pause every vCPU; pending I/O completes first.
    pub fn pause(&mut self) -> Result<(), VmmError> {
        Ok(self.vcpus.pause_all(CONTROL_TIMEOUT)?)
    }

    /// Resume every paused vCPU.
    pub fn resume(&mut self) -> Result<(), VmmError> {
        Ok(self.vcpus.resume_all(CONTROL_TIMEOUT)?)
    }

    /// Stop every vCPU and end its thread (the guest cannot continue after this).
    pub fn stop(&mut self) -> Result<(), VmmError> {
        self.bus.flush_console();
        Ok(self.vcpus.stop_all(CONTROL_TIMEOUT)?)
    }

    /// The next lifecycle event, if one arrives within `timeout`.
    pub fn next_event(&self, timeout: Duration) -> Option<VcpuEvent> {
        self.events.recv_timeout(timeout).ok()
    }

    /// A lifecycle event already there (after the event fd fired), without waiting.
    pub fn try_event(&self) -> Option<VcpuEvent> {
        // The counter only wakes the loop; the channel holds the events.
        let _ = self.event_fd.read();
        self.events.try_recv().ok()
    }

    /// End the VM for process exit: stop and join the vCPU threads, release the ledger
    /// entry; guest RAM, its KVM slots and the guest (a Multiboot guest holds its resume
    /// ROM's slot) go with the process (deleting each slot costs milliseconds, measured).
    pub fn exit(self) {
        let Vmm {
            vcpus,
            bus,
            placement,
            parked,
            _slots,
            ram,
            vm,
            guest,
            ..
        } = self;
        drop(vcpus);
        bus.flush_console();
        drop(placement);
        std::mem::forget((parked, _slots, ram, vm, guest));
    }
}

/// What a vCPU thread runs before its first KVM_RUN: its pin, then its seccomp filter.
fn vcpu_hook(
    placement: &VmPlacement,
    sandbox: &vmm_sandbox::Sandbox,
    security: &crate::SecurityConfig,
) -> vcpu_lifecycle::PreRunHook {
    let pin = placement.hook();
    let sandbox = *sandbox;
    let selftest = security.selftest_forbidden_syscall;
    Box::new(move |vcpu, fd| {
        pin(vcpu, fd)?;
        sandbox.apply(vmm_sandbox::ThreadKind::Vcpu)?;
        if selftest {
            // getppid is in no filter: `on` ends the process naming it, `log` logs it.
            log::warn!("vCPU {vcpu}: seccomp self-test, calling getppid");
            let _ = std::os::unix::process::parent_id();
        }
        Ok(())
    })
}

/// Create the KVM vCPU of slot `index` (boot or hot-plugged): its vCPU id is its APIC id,
/// its CPUID `table`.
fn create_vcpu(
    vm: &VmFd,
    index: VcpuIndex,
    apic_id: u32,
    table: &CpuidTable,
) -> Result<VcpuFd, VmmError> {
    let fd = vm
        .create_vcpu(u64::from(apic_id))
        .map_err(vcpu_op(index, "KVM_CREATE_VCPU"))?;
    fd.set_cpuid2(&cpuid_model::kvm::to_kvm(table)?)
        .map_err(vcpu_op(index, "KVM_SET_CPUID2"))?;
    Ok(fd)
}

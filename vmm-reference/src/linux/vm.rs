//! `LinuxVm`: build a VM for a Linux kernel and run it.
//!
//! Build order (each step needs the previous ones): KVM limits and the NUMA check, VM, TSS
//! and identity-map pages, guest RAM and its slots (before the irqchip: slot changes are
//! slower once KVM maps its APIC access page), in-kernel irqchip and PIT, kernel, initrd
//! and boot tables, the bus and its irqfds (COM1, the GED lines), CPUID, then the vCPUs (after the irqchip, so each gets
//! an in-kernel local APIC). Placement is admitted on the host before the VM is created;
//! each vCPU thread applies its pin before its first KVM_RUN, and the calling thread takes
//! the emulator pin once every vCPU thread exists (threads inherit their creator's
//! affinity).
//!
//! Monitor operations on a built VM (hot-plug, registers, memory, re-pin) are in
//! `control.rs`.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpu_topology::{CpuTopology, VcpuIndex};
use cpuid_model::normalize::Normalizer;
use guest_memory::{GuestRam, MemoryLayout, MemorySlots, NumaTopology};
use kvm_bindings::{kvm_fpu, kvm_pit_config, kvm_regs, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vcpu_lifecycle::{event_channel, StopReason, VcpuContext, VcpuEvent, VcpuSet, VmStop};
use x86_boot::layout::BOOT_STACK_POINTER;
use x86_boot::long_mode::long_mode_sregs;

use super::boot::{self, BootInput, BootTables};
use super::bus::{BusConfig, LinuxBus};
use super::loader::{self, LoadedKernel};
use super::serial::SerialBackend;
use super::{GuestExit, LinuxConfig, LinuxError};
use crate::guest_setup::{check_kvm_limits, guest_cpuid, map_guest_ram};
use crate::placement::VmPlacement;

/// How long a vCPU may take to answer a start or stop command.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);
/// KVM_SET_TSS_ADDR: three pages in the 32-bit MMIO hole, below the identity-map page
/// (Firecracker's addresses).
const TSS_ADDR: usize = 0xfffb_d000;
/// KVM_SET_IDENTITY_MAP_ADDR: one page in the MMIO hole.
const IDENTITY_MAP_ADDR: u64 = 0xfffb_c000;
/// Console lines kept in a guest-stop report.
const REPORT_LINES: usize = 10;

fn kvm_op(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> LinuxError {
    move |source| LinuxError::Kvm { op, source }
}

fn vcpu_op(vcpu: VcpuIndex, op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> LinuxError {
    move |source| LinuxError::VcpuIoctl { vcpu, op, source }
}

/// A VM booting a Linux kernel. Fields drop in order: vCPU threads first, then the
/// ledger entry, parked vCPU fds, and memory.
#[derive(Debug)]
pub struct LinuxVm {
    pub(super) vcpus: VcpuSet,
    events: Receiver<VcpuEvent>,
    pub(super) bus: Arc<LinuxBus>,
    timeout: Option<Duration>,
    kernel: LoadedKernel,
    tables: BootTables,
    numa: Option<NumaTopology>,
    pub(super) topology: CpuTopology,
    pub(super) memory_size: u64,
    pub(super) cpu_model: String,
    pub(super) placement: VmPlacement,
    /// Spawns vCPU threads (boot and hot-plugged) with the VM's exit handler.
    pub(super) ctx: VcpuContext,
    /// Per-vCPU CPUID for any slot, hot-pluggable ones included.
    pub(super) normalizer: Normalizer,
    /// Hot-plugged vCPUs by `device_add` id.
    pub(super) plugged: BTreeMap<VcpuIndex, String>,
    /// vCPU fds of unplugged slots: KVM cannot destroy a vCPU, so a re-plug reuses it.
    pub(super) parked: BTreeMap<VcpuIndex, VcpuFd>,
    _slots: MemorySlots,
    pub(super) ram: GuestRam,
    pub(super) vm: Arc<VmFd>,
}

/// `--numa` for this VM, by the rules every VM shares ([`crate::guest_setup::resolve_numa`]).
fn resolve_numa(config: &LinuxConfig) -> Result<Option<NumaTopology>, LinuxError> {
    Ok(crate::guest_setup::resolve_numa(
        &config.numa,
        &config.objects,
        &config.topology,
        config.memory,
    )?)
}

impl LinuxVm {
    /// Build the VM, load the kernel and create every vCPU thread (not yet running).
    pub fn new(config: LinuxConfig) -> Result<Self, LinuxError> {
        let topo = config.topology;
        let numa = resolve_numa(&config)?;
        let cmdline = config.cmdline.as_str();
        boot::cmdline_bytes(cmdline)?;
        let layout = match &numa {
            Some(n) => n.layout()?,
            None => MemoryLayout::x86_64(config.memory)?,
        };
        // A socket server with `wait` blocks here until its first client connects.
        let serial = SerialBackend::open(&config.serial)?;

        let kvm = Kvm::new().map_err(LinuxError::OpenKvm)?;
        check_kvm_limits(&kvm, &topo)?;
        let placement =
            VmPlacement::for_kvm(&config.placement, &topo, config.name.as_deref(), &kvm)?;
        let vm = Arc::new(kvm.create_vm().map_err(kvm_op("KVM_CREATE_VM"))?);
        vm.set_tss_address(TSS_ADDR)
            .map_err(kvm_op("KVM_SET_TSS_ADDR"))?;
        vm.set_identity_map_address(IDENTITY_MAP_ADDR)
            .map_err(kvm_op("KVM_SET_IDENTITY_MAP_ADDR"))?;

        let ram = map_guest_ram::<LinuxError>(&layout, numa.as_ref(), &config.objects)?;
        let slots = ram.register(Arc::clone(&vm))?;
        vm.create_irq_chip().map_err(kvm_op("KVM_CREATE_IRQCHIP"))?;
        vm.create_pit2(kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        })
        .map_err(kvm_op("KVM_CREATE_PIT2"))?;

        let mem = ram.memory();
        let kernel = loader::load_kernel(mem, &config.kernel)?;
        let initrd = match &config.initrd {
            Some(path) => {
                let size = loader::initrd_size(path)?;
                let addr = boot::initrd_address(&layout, kernel.end, size)?;
                loader::load_initrd(mem, path, addr)?;
                Some((addr, size))
            }
            None => None,
        };
        let cpus = boot::cpu_entries(&topo, numa.as_ref())?;
        let tables = boot::write_boot_tables(
            mem,
            BootInput {
                layout: &layout,
                cpus: cpus.clone(),
                numa: numa.as_ref(),
                cmdline,
                initrd,
                setup_header: kernel.setup_header.clone(),
            },
        )?;

        let bus = Arc::new(LinuxBus::new(
            serial.sink,
            BusConfig {
                hotplug: tables.hotplug.map(|h| (h, cpus.as_slice())),
                power: tables.power,
            },
        )?);
        bus.register_irqfds(&vm).map_err(kvm_op("KVM_IRQFD"))?;
        serial.input.start(&bus);

        let normalizer = guest_cpuid(&kvm, &config.cpu, &topo, numa.as_ref())?;

        let (events_tx, events) = event_channel(None);
        // emul branch (boot experiment): the emulation fallback reads guest memory.
        let ctx = VcpuContext::new(Arc::clone(&bus) as _, events_tx)?
            .with_guest_memory(ram.memory().clone());
        let apic = topo.apic_layout();
        let mut vcpus = VcpuSet::new();
        for index in topo.present() {
            let fd = create_vcpu(&vm, &normalizer, index, apic.apic_id(index)?.0)?;
            if index.0 == 0 {
                setup_bsp(&fd, &kernel, &tables)?;
            }
            // The APs keep KVM's initial state: waiting for INIT/SIPI from the guest.
            vcpus.insert(ctx.spawn(index, fd, Some(placement.hook()))?);
        }
        // After the vCPU threads exist: they inherit the creating thread's affinity.
        placement.pin_emulator()?;
        Ok(Self {
            vcpus,
            events,
            bus,
            timeout: config.timeout,
            kernel,
            tables,
            numa,
            topology: topo,
            memory_size: config.memory,
            cpu_model: config.cpu.model.name.clone(),
            placement,
            ctx,
            normalizer,
            plugged: BTreeMap::new(),
            parked: BTreeMap::new(),
            _slots: slots,
            ram,
            vm,
        })
    }

    /// The loaded kernel.
    pub fn kernel(&self) -> &LoadedKernel {
        &self.kernel
    }

    /// The boot tables written for the guest.
    pub fn boot_tables(&self) -> &BootTables {
        &self.tables
    }

    /// The NUMA configuration the guest was given.
    pub fn numa(&self) -> Option<&NumaTopology> {
        self.numa.as_ref()
    }

    /// The I/O bus (console output, reboot flag).
    pub fn bus(&self) -> &LinuxBus {
        &self.bus
    }

    /// The placement plan, as `--placement-plan` prints it.
    pub fn placement_plan(&self) -> String {
        self.placement.plan_text()
    }

    /// The vCPU threads (thread ids, states, exit statistics).
    pub fn vcpus(&self) -> &VcpuSet {
        &self.vcpus
    }

    /// The topology of the VM.
    pub fn topology(&self) -> CpuTopology {
        self.topology
    }

    /// Guest RAM in bytes.
    pub fn memory_size(&self) -> u64 {
        self.memory_size
    }

    /// The CPU model name (`--cpu`).
    pub fn cpu_model(&self) -> &str {
        &self.cpu_model
    }

    /// Take the lifecycle event channel, for a caller that waits on it without holding
    /// the VM (the monitor's main loop). [`LinuxVm::run`] sees no events after.
    pub fn take_events(&mut self) -> Receiver<VcpuEvent> {
        std::mem::replace(&mut self.events, std::sync::mpsc::channel().1)
    }

    /// How the guest ended the VM, when `stop` is its own doing (a reset or an ACPI power
    /// off through the bus) rather than a fault.
    pub fn guest_exit(&self, stop: &VmStop) -> Option<GuestExit> {
        match stop.reason {
            StopReason::Requested(_) => self.bus.guest_exit(),
            _ => None,
        }
    }

    /// The bytes of the instruction an internal error stopped at: from its guest-physical
    /// address up to 15 bytes, not past the end of its page (the next page of the guest's
    /// virtual address space may be anywhere in RAM).
    pub fn code_at_fault(&self, stop: &VmStop) -> Option<Vec<u8>> {
        let StopReason::InternalError {
            code_gpa: Some(gpa),
            ..
        } = stop.reason
        else {
            return None;
        };
        const MAX_INSTRUCTION: u64 = 15;
        const PAGE: u64 = 4096;
        let len = MAX_INSTRUCTION.min(PAGE - gpa % PAGE);
        self.read_phys(gpa, len as usize).ok()
    }

    /// Start every vCPU (they were created stopped so they start together).
    pub fn start(&mut self) -> Result<(), LinuxError> {
        Ok(self.vcpus.start_all(CONTROL_TIMEOUT)?)
    }

    /// Pause every vCPU; pending I/O completes first.
    pub fn pause(&mut self) -> Result<(), LinuxError> {
        Ok(self.vcpus.pause_all(CONTROL_TIMEOUT)?)
    }

    /// Resume every paused vCPU.
    pub fn resume(&mut self) -> Result<(), LinuxError> {
        Ok(self.vcpus.resume_all(CONTROL_TIMEOUT)?)
    }

    /// Stop every vCPU and end its thread (the guest cannot continue after this).
    pub fn stop(&mut self) -> Result<(), LinuxError> {
        self.bus.flush_console();
        Ok(self.vcpus.stop_all(CONTROL_TIMEOUT)?)
    }

    /// Start the vCPUs and wait until the guest reboots, stops, or time runs out. Every
    /// vCPU is stopped before this returns.
    pub fn run(&mut self) -> Result<GuestExit, LinuxError> {
        self.vcpus.start_all(CONTROL_TIMEOUT)?;
        let result = self.wait();
        self.bus.flush_console();
        let stopped = self.vcpus.stop_all(CONTROL_TIMEOUT);
        let exit = result?;
        stopped?;
        Ok(exit)
    }

    fn wait(&self) -> Result<GuestExit, LinuxError> {
        let deadline = self.timeout.map(|t| Instant::now() + t);
        let started = Instant::now();
        loop {
            // emul branch (boot experiment): per-vCPU exit and emulation counts every 60 s.
            let slice = std::time::Duration::from_secs(60);
            let until = deadline.map_or(Instant::now() + slice, |d| d.min(Instant::now() + slice));
            let event = self
                .events
                .recv_timeout(until.saturating_duration_since(Instant::now()));
            if matches!(event, Err(RecvTimeoutError::Timeout))
                && deadline.is_none_or(|d| Instant::now() < d)
            {
                for v in self.vcpus.iter() {
                    let s = v.stats();
                    eprintln!(
                        "[{:>5} s] vCPU {}: exits {} (io {} mmio {} intr {} internal {}), emulated: {}",
                        started.elapsed().as_secs(),
                        v.index(),
                        s.total(),
                        s.io_in + s.io_out,
                        s.mmio_read + s.mmio_write,
                        s.interrupted,
                        s.internal_error,
                        s.emulated
                    );
                }
                continue;
            }
            match event {
                // The bus never halts a vCPU; a halted one simply stays out of the guest.
                Ok(VcpuEvent::Halted { .. }) => {}
                Ok(VcpuEvent::StopVm(stop)) => {
                    if let Some(exit) = self.guest_exit(&stop) {
                        return Ok(exit);
                    }
                    self.bus.flush_console();
                    return Err(LinuxError::GuestStopped {
                        code: self.code_at_fault(&stop),
                        stop,
                        console: self.bus.console_tail(REPORT_LINES),
                    });
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    self.bus.flush_console();
                    return Err(LinuxError::Timeout {
                        seconds: self.timeout.map_or(0, |t| t.as_secs()),
                        console: self.bus.console_tail(REPORT_LINES),
                    });
                }
            }
        }
    }

    /// End the VM for process exit: stop and join the vCPU threads, release the ledger
    /// entry, and leave guest RAM and its KVM slots to the kernel, which frees them with
    /// the process.
    pub fn exit(self) {
        let LinuxVm {
            vcpus,
            bus,
            placement,
            parked,
            _slots,
            ram,
            vm,
            ..
        } = self;
        drop(vcpus);
        bus.flush_console();
        drop(placement);
        std::mem::forget((parked, _slots, ram, vm));
    }
}

/// Create the KVM vCPU of slot `index` (boot or hot-plugged): its vCPU id is its APIC id,
/// its CPUID the model normalised for its place in the topology.
pub(super) fn create_vcpu(
    vm: &VmFd,
    normalizer: &Normalizer,
    index: VcpuIndex,
    apic_id: u32,
) -> Result<VcpuFd, LinuxError> {
    let fd = vm
        .create_vcpu(u64::from(apic_id))
        .map_err(vcpu_op(index, "KVM_CREATE_VCPU"))?;
    let table = normalizer.for_vcpu(index)?;
    fd.set_cpuid2(&cpuid_model::kvm::to_kvm(&table)?)
        .map_err(vcpu_op(index, "KVM_SET_CPUID2"))?;
    Ok(fd)
}

/// The BSP enters the kernel in 64-bit mode: RIP at the entry, RSI at the zero page,
/// interrupts off, a boot stack, the identity map and flat GDT of the boot tables.
fn setup_bsp(fd: &VcpuFd, kernel: &LoadedKernel, tables: &BootTables) -> Result<(), LinuxError> {
    let index = VcpuIndex(0);
    let base = fd.get_sregs().map_err(vcpu_op(index, "KVM_GET_SREGS"))?;
    fd.set_sregs(&long_mode_sregs(&base, &tables.long_mode))
        .map_err(vcpu_op(index, "KVM_SET_SREGS"))?;
    fd.set_regs(&kvm_regs {
        rip: kernel.entry.0,
        rsi: tables.zero_page.0,
        rsp: BOOT_STACK_POINTER,
        rbp: BOOT_STACK_POINTER,
        rflags: 0x2,
        ..Default::default()
    })
    .map_err(vcpu_op(index, "KVM_SET_REGS"))?;
    fd.set_fpu(&kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    })
    .map_err(vcpu_op(index, "KVM_SET_FPU"))?;
    Ok(())
}

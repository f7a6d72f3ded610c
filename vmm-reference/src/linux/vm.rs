//! `LinuxVm`: build a VM for a Linux kernel and run it.
//!
//! Build order (each step needs the previous ones): KVM limits and the NUMA check, VM, TSS
//! and identity-map pages, guest RAM and its slots (before the irqchip: slot changes are
//! slower once KVM maps its APIC access page), in-kernel irqchip and PIT, kernel, initrd
//! and boot tables, COM1's irqfd, CPUID, then the vCPUs (after the irqchip, so each gets
//! an in-kernel local APIC).

use std::fs::File;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpu_topology::VcpuIndex;
use guest_memory::{
    GuestRam, MemoryLayout, MemorySlots, NumaMachine, NumaTopology, UnassignedCpus,
};
use kvm_bindings::{kvm_fpu, kvm_pit_config, kvm_regs, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vcpu_lifecycle::{event_channel, StopReason, VcpuContext, VcpuEvent, VcpuSet};
use vmm_sys_util::eventfd::EventFd;
use x86_boot::layout::BOOT_STACK_POINTER;
use x86_boot::long_mode::long_mode_sregs;

use super::boot::{self, BootInput, BootTables};
use super::bus::{ConsoleSink, IrqTrigger, LinuxBus, WriteDebug, COM1_IRQ, REBOOT_REASON};
use super::loader::{self, LoadedKernel};
use super::{GuestExit, LinuxConfig, LinuxError, SerialOutput};
use crate::guest_setup::{check_kvm_limits, guest_cpuid};

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

/// A VM booting a Linux kernel. Fields drop in order: vCPU threads first, then memory.
#[derive(Debug)]
pub struct LinuxVm {
    vcpus: VcpuSet,
    events: Receiver<VcpuEvent>,
    bus: Arc<LinuxBus>,
    timeout: Option<Duration>,
    kernel: LoadedKernel,
    tables: BootTables,
    numa: Option<NumaTopology>,
    _ctx: VcpuContext,
    _slots: MemorySlots,
    _ram: GuestRam,
    _vm: Arc<VmFd>,
}

fn resolve_numa(config: &LinuxConfig) -> Result<Option<NumaTopology>, LinuxError> {
    if config.numa.is_empty() {
        return Ok(None);
    }
    let topo = &config.topology;
    let numa = config.numa.resolve(&NumaMachine {
        ram_size: config.memory,
        max_cpus: topo.max_cpus(),
        cpus_per_socket: topo.threads_per_socket(),
        backends: &config.objects,
        unassigned: UnassignedCpus::Reject,
    })?;
    for w in numa.warnings() {
        log::warn!("--numa: {w}");
    }
    Ok(Some(numa))
}

fn console_sink(serial: &SerialOutput) -> Result<ConsoleSink, LinuxError> {
    let out: Option<Box<dyn WriteDebug>> = match serial {
        SerialOutput::Stdout => Some(Box::new(std::io::stdout())),
        SerialOutput::File(path) => Some(Box::new(File::create(path).map_err(|source| {
            LinuxError::SerialFile {
                path: path.clone(),
                source,
            }
        })?)),
        SerialOutput::Null => None,
    };
    Ok(ConsoleSink::new(out))
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
        let sink = console_sink(&config.serial)?;

        let kvm = Kvm::new().map_err(LinuxError::OpenKvm)?;
        check_kvm_limits(&kvm, &topo)?;
        let vm = Arc::new(kvm.create_vm().map_err(kvm_op("KVM_CREATE_VM"))?);
        vm.set_tss_address(TSS_ADDR)
            .map_err(kvm_op("KVM_SET_TSS_ADDR"))?;
        vm.set_identity_map_address(IDENTITY_MAP_ADDR)
            .map_err(kvm_op("KVM_SET_IDENTITY_MAP_ADDR"))?;

        let backends = numa
            .as_ref()
            .map(|n| n.node_backends(&config.objects))
            .unwrap_or_default();
        let ram = if backends.is_empty() {
            GuestRam::new(&layout)?
        } else {
            GuestRam::with_backends(&layout, &backends)?
        };
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

        let irq = EventFd::new(libc::EFD_NONBLOCK).map_err(LinuxError::EventFd)?;
        vm.register_irqfd(&irq, COM1_IRQ)
            .map_err(kvm_op("KVM_IRQFD"))?;
        let bus = Arc::new(LinuxBus::new(
            IrqTrigger(irq),
            sink,
            tables.hotplug.map(|h| (h, cpus.as_slice())),
        ));

        let normalizer = guest_cpuid(&kvm, &config.cpu, &topo)?;

        let (events_tx, events) = event_channel(None);
        let ctx = VcpuContext::new(Arc::clone(&bus) as _, events_tx)?;
        let apic = topo.apic_layout();
        let mut vcpus = VcpuSet::new();
        for index in topo.present() {
            let id = apic.apic_id(index)?;
            let fd = vm
                .create_vcpu(u64::from(id.0))
                .map_err(vcpu_op(index, "KVM_CREATE_VCPU"))?;
            let table = normalizer.for_vcpu(index)?;
            fd.set_cpuid2(&cpuid_model::kvm::to_kvm(&table)?)
                .map_err(vcpu_op(index, "KVM_SET_CPUID2"))?;
            if index.0 == 0 {
                setup_bsp(&fd, &kernel, &tables)?;
            }
            // The APs keep KVM's initial state: waiting for INIT/SIPI from the guest.
            vcpus.insert(ctx.spawn(index, fd, None)?);
        }
        Ok(Self {
            vcpus,
            events,
            bus,
            timeout: config.timeout,
            kernel,
            tables,
            numa,
            _ctx: ctx,
            _slots: slots,
            _ram: ram,
            _vm: vm,
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
        loop {
            let event = match deadline {
                Some(d) => self
                    .events
                    .recv_timeout(d.saturating_duration_since(Instant::now())),
                None => self
                    .events
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
            };
            match event {
                // The bus never halts a vCPU; a halted one simply stays out of the guest.
                Ok(VcpuEvent::Halted { .. }) => {}
                Ok(VcpuEvent::StopVm(stop)) => {
                    if self.bus.reboot_requested()
                        && stop.reason == StopReason::Requested(REBOOT_REASON.to_string())
                    {
                        return Ok(GuestExit::Reboot);
                    }
                    self.bus.flush_console();
                    return Err(LinuxError::GuestStopped {
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

    /// End the VM for process exit: stop and join the vCPU threads and leave guest RAM
    /// and its KVM slots to the kernel, which frees them with the process.
    pub fn exit(self) {
        let LinuxVm {
            vcpus,
            _slots,
            _ram,
            _vm,
            ..
        } = self;
        drop(vcpus);
        std::mem::forget((_slots, _ram, _vm));
    }
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

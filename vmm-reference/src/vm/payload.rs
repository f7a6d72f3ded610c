//! What differs between the guests a VM runs: the interrupt controller, the image in
//! guest memory, the entry state of each vCPU, and the devices on the bus.
//!
//! | | probe | Linux kernel |
//! |---|---|---|
//! | irqchip | split (local APICs in KVM) where offered | full in-kernel (PIC, IOAPIC) + PIT |
//! | image | probe code, GDT, page tables, CPUID queries | vmlinux/bzImage, initrd, zero page, MP, ACPI |
//! | boot vCPUs | every vCPU in long mode, runnable | BSP in long mode at the kernel entry; APs wait for INIT/SIPI |
//! | hot-plugged vCPU | runs the probe at once | waits for INIT/SIPI; the guest learns of it through ACPI |
//! | devices | the probe doorbell | COM1, i8042 reset, ACPI power registers, CPU hot-plug block |
//!
//! A Multiboot kernel (kvm-unit-tests) is loaded like Linux but enters in 32-bit protected
//! mode (`x86_boot::multiboot`) with the state a PC BIOS leaves (8259s initialised, BSP
//! LAPIC in virtual-wire mode, ACPI tables with a full FADT, FACS and PM1 blocks, a CMOS
//! RTC, an S3 resume ROM at the reset vector), and always has QEMU's test devices:
//! fw_cfg, isa-debug-exit at 0xf4 and pc-testdev (a Linux kernel has them with
//! `-device isa-debug-exit` or `-device pc-testdev`). With `-machine
//! q35,kernel-irqchip=split` it gets the split irqchip instead (no 8259s, no PIT) and
//! the PCI part of `x86_devices::q35`: user-space I/O APIC, PCI bus, `-device edu`,
//! `-device intel-iommu`, interrupts delivered with KVM_SIGNAL_MSI.

use cpu_topology::{CpuTopology, VcpuIndex};
use cpuid_model::{dump, CpuidTable};
use guest_memory::{GuestRam, MemoryLayout, MemorySlots, NumaTopology, RamRegion, SlotId};
use kvm_bindings::{
    kvm_enable_cap, kvm_fpu, kvm_irqchip, kvm_mp_state, kvm_pit_config, kvm_regs,
    KVM_CAP_SPLIT_IRQCHIP, KVM_MP_STATE_RUNNABLE, KVM_MP_STATE_UNINITIALIZED,
    KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Cap, VcpuFd, VmFd};
use probe_guest::{ProbeGuest, ProbeLayout};
use x86_boot::acpi::{write_acpi_with_pm1, AcpiConfig, AcpiLayout, AcpiTables, Pm1Config};
use x86_boot::bios::{write_resume_rom, BiosInterruptState, Pic, RESUME_ROM_ADDR, RESUME_ROM_SIZE};
use x86_boot::layout::BOOT_STACK_POINTER;
use x86_boot::long_mode::long_mode_sregs;

use super::bus::VmBus;
use crate::cli::DeviceOption;
use crate::config::{KernelConfig, Payload, ProbeConfig};
use crate::error::{kvm_op, vcpu_op, VmmError};
use crate::linux::boot::{self, BootInput, BootTables};
use crate::linux::loader::{self, LoadedKernel};
use crate::probe::ProbeDoorbell;
use x86_boot::multiboot::{
    load_multiboot as load_multiboot_image, MultibootConfig, MultibootModule,
};
use x86_boot::multiboot_info::MultibootEntryState;
use x86_devices::acpi_pm1::KvmInitOnWake;
use x86_devices::pc_testdev::KvmIrqLines;
use x86_devices::serial::{SerialBackend, SerialSubscriber};
use x86_devices::{
    FwCfgBuilder, KvmMsi, PcPower, Platform, PlatformConfig, Q35Config, TestDevices,
};

/// KVM_SET_TSS_ADDR: three pages in the 32-bit MMIO hole, below the identity-map page
/// (Firecracker's addresses).
const TSS_ADDR: usize = 0xfffb_d000;
/// KVM_SET_IDENTITY_MAP_ADDR: one page in the MMIO hole.
const IDENTITY_MAP_ADDR: u64 = 0xfffb_c000;
/// IOAPIC pins reserved in KVM's GSI routing for a user-space IOAPIC (split irqchip).
const IOAPIC_PINS: u64 = 24;

/// How a guest ended the VM by itself, without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestExit {
    /// The guest reset itself: through the keyboard controller (`reboot=k`, the default
    /// command line's reboot and panic path) or the ACPI reset register (`reboot=acpi`).
    Reboot,
    /// The guest powered itself off through ACPI (S5: `poweroff`, `halt -p`, or an
    /// orderly shutdown after the power button).
    PowerOff,
    /// The guest wrote this value to isa-debug-exit: the process exits with
    /// `(value << 1) | 1`, as QEMU's.
    DebugExit(u32),
}

/// A payload checked and opened before KVM is touched.
pub(super) enum Prepared<'a> {
    Probe(&'a ProbeConfig),
    Kernel(&'a KernelConfig, SerialBackend, KernelKind),
}

/// What a kernel file is.
pub(super) enum KernelKind {
    /// A Linux vmlinux or bzImage (64-bit boot protocol).
    Linux,
    /// A Multiboot (v1) kernel, read whole (test kernels such as kvm-unit-tests are small).
    Multiboot(Vec<u8>),
}

/// Bytes in which a Multiboot header must start.
const MULTIBOOT_SEARCH: usize = 8192;

/// Whether the kernel at `path` is a Multiboot kernel: its header is in the first 8 KiB.
fn kernel_kind(path: &std::path::Path) -> Result<KernelKind, VmmError> {
    use std::io::Read;
    let read = |source| loader::LoaderError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut head = Vec::with_capacity(MULTIBOOT_SEARCH);
    std::fs::File::open(path)
        .and_then(|f| f.take(MULTIBOOT_SEARCH as u64).read_to_end(&mut head))
        .map_err(read)?;
    if x86_boot::multiboot::find_header(&head).is_err() {
        return Ok(KernelKind::Linux);
    }
    Ok(KernelKind::Multiboot(std::fs::read(path).map_err(read)?))
}

/// Check what can be checked without KVM and open the serial backend (a socket server
/// with `wait` blocks until its first client connects).
pub(super) fn prepare(payload: &Payload) -> Result<Prepared<'_>, VmmError> {
    Ok(match payload {
        Payload::Probe(p) => Prepared::Probe(p),
        Payload::Kernel(k) => {
            boot::cmdline_bytes(k.linux_cmdline())?;
            loader::detect_file_format(&k.kernel)?;
            if let Some(initrd) = &k.initrd {
                loader::initrd_size(initrd)?;
            }
            if let x86_devices::serial::SerialOutput::Socket(s) = &k.serial {
                if s.wait {
                    eprintln!("vmm-reference: waiting for connection on {}", s.address);
                }
            }
            let kind = kernel_kind(&k.kernel)?;
            Prepared::Kernel(k, SerialBackend::open(&k.serial)?, kind)
        }
    })
}

impl Prepared<'_> {
    /// VM-wide setup a payload needs before guest RAM exists.
    pub(super) fn before_memory(&self, vm: &VmFd) -> Result<(), VmmError> {
        if let Prepared::Kernel(..) = self {
            vm.set_tss_address(TSS_ADDR)
                .map_err(kvm_op("KVM_SET_TSS_ADDR"))?;
            vm.set_identity_map_address(IDENTITY_MAP_ADDR)
                .map_err(kvm_op("KVM_SET_IDENTITY_MAP_ADDR"))?;
        }
        Ok(())
    }

    /// The interrupt controller. The probe uses neither PIC nor IOAPIC: it gets the split
    /// irqchip where KVM offers it (Linux 4.4+), local APICs only, since the full
    /// in-kernel irqchip costs about 10 ms more to tear down (the kernel waits for SRCU
    /// grace periods while it unregisters the PIC and IOAPIC; docs/PERFORMANCE.md). A
    /// kernel gets the full in-kernel irqchip and PIT: its devices raise interrupts
    /// through irqfds.
    pub(super) fn create_irqchip(&self, vm: &VmFd) -> Result<(), VmmError> {
        let split = || {
            let mut cap = kvm_enable_cap {
                cap: KVM_CAP_SPLIT_IRQCHIP,
                ..Default::default()
            };
            cap.args[0] = IOAPIC_PINS;
            vm.enable_cap(&cap)
                .map_err(kvm_op("KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)"))
        };
        match self {
            Prepared::Probe(_) if vm.check_extension(Cap::SplitIrqchip) => split(),
            Prepared::Probe(_) => vm.create_irq_chip().map_err(kvm_op("KVM_CREATE_IRQCHIP")),
            Prepared::Kernel(k, _, KernelKind::Multiboot(_)) if k.q35 => split(),
            Prepared::Kernel(k, ..) if k.q35 => Err(VmmError::Unsupported(
                "-machine q35 is offered for Multiboot test kernels only".into(),
            )),
            Prepared::Kernel(k, ..) => {
                vm.create_irq_chip().map_err(kvm_op("KVM_CREATE_IRQCHIP"))?;
                if !k.pit {
                    return Ok(());
                }
                vm.create_pit2(kvm_pit_config {
                    flags: KVM_PIT_SPEAKER_DUMMY,
                    ..Default::default()
                })
                .map_err(kvm_op("KVM_CREATE_PIT2"))
            }
        }
    }

    /// Write the guest's image into RAM and build its bus.
    pub(super) fn load(
        self,
        vm: &std::sync::Arc<VmFd>,
        ram: &GuestRam,
        layout: &MemoryLayout,
        topo: &CpuTopology,
        numa: Option<&NumaTopology>,
        cpuid: &[CpuidTable],
    ) -> Result<(Guest, VmBus), VmmError> {
        match self {
            Prepared::Probe(config) => {
                let probe = ProbeGuest::new(
                    config.mode,
                    ProbeLayout::new(topo.max_cpus(), layout.ram_from_zero())?,
                );
                let queries: Vec<(u32, u32)> = cpuid
                    .first()
                    .map(|t| {
                        dump::cpuid_r_queries(t)
                            .into_iter()
                            .map(|k| (k.leaf, k.subleaf))
                            .collect()
                    })
                    .unwrap_or_default();
                probe.load(ram.memory(), &queries, topo.cpus())?;
                let doorbell = ProbeDoorbell::new(probe, ram.memory().clone(), topo.max_cpus());
                Ok((
                    Guest::Probe(config.clone()),
                    VmBus::Probe(std::sync::Arc::new(doorbell)),
                ))
            }
            Prepared::Kernel(config, serial, KernelKind::Multiboot(image)) => {
                load_multiboot(vm, ram, layout, topo, config, serial, &image)
            }
            Prepared::Kernel(config, serial, KernelKind::Linux) => {
                let mem = ram.memory();
                let kernel = loader::load_kernel(mem, &config.kernel)?;
                let initrd = match &config.initrd {
                    Some(path) => {
                        let size = loader::initrd_size(path)?;
                        let addr = boot::initrd_address(layout, kernel.end, size)?;
                        loader::load_initrd(mem, path, addr)?;
                        Some((addr, size))
                    }
                    None => None,
                };
                let cpus = boot::cpu_entries(topo, numa)?;
                let tables = boot::write_boot_tables(
                    mem,
                    BootInput {
                        layout,
                        cpus: cpus.clone(),
                        numa,
                        cmdline: config.linux_cmdline(),
                        initrd,
                        setup_header: kernel.setup_header.clone(),
                    },
                )?;
                let test_devices = (!config.devices.is_empty())
                    .then(|| test_devices(vm, topo, layout))
                    .transpose()?;
                let platform = std::sync::Arc::new(Platform::new(PlatformConfig {
                    console: serial.sink,
                    power: tables.power,
                    hotplug: tables.hotplug.map(|h| (h, cpus.as_slice())),
                    test_devices,
                    pc_power: None,
                    q35: None,
                })?);
                platform.register_irqfds(vm).map_err(kvm_op("KVM_IRQFD"))?;
                let input = serial.input.subscriber(platform.com1().clone());
                let guest = Guest::Kernel {
                    kernel,
                    tables,
                    input,
                };
                Ok((guest, VmBus::Platform(platform)))
            }
        }
    }
}

/// The guest a built VM runs.
#[derive(Debug)]
pub(super) enum Guest {
    /// The probe on every vCPU.
    Probe(ProbeConfig),
    /// A loaded Multiboot kernel and its BSP's 32-bit entry state.
    Multiboot {
        entry: MultibootEntryState,
        /// COM1's input, until the event loop takes it.
        input: Option<SerialSubscriber>,
        /// The S3 resume ROM and its memory slot, mapped while the VM lives.
        _resume_rom: (GuestRam, MemorySlots),
    },
    /// A loaded Linux kernel and the tables it boots with.
    Kernel {
        kernel: LoadedKernel,
        tables: BootTables,
        /// COM1's input, until the event loop takes it.
        input: Option<SerialSubscriber>,
    },
}

impl Guest {
    pub(super) fn probe(&self) -> Option<&ProbeConfig> {
        match self {
            Guest::Probe(p) => Some(p),
            Guest::Kernel { .. } | Guest::Multiboot { .. } => None,
        }
    }

    /// COM1's input source, for the event loop (once).
    pub(super) fn take_serial_input(&mut self) -> Option<SerialSubscriber> {
        match self {
            Guest::Kernel { input, .. } | Guest::Multiboot { input, .. } => input.take(),
            Guest::Probe(_) => None,
        }
    }

    pub(super) fn kernel(&self) -> Option<&LoadedKernel> {
        match self {
            Guest::Kernel { kernel, .. } => Some(kernel),
            Guest::Probe(_) | Guest::Multiboot { .. } => None,
        }
    }

    pub(super) fn boot_tables(&self) -> Option<&BootTables> {
        match self {
            Guest::Kernel { tables, .. } => Some(tables),
            Guest::Probe(_) | Guest::Multiboot { .. } => None,
        }
    }

    /// Whether an unplug waits for the guest to release the CPU (ACPI eject) rather
    /// than taking the vCPU away at once.
    pub(super) fn unplug_needs_guest(&self) -> bool {
        matches!(self, Guest::Kernel { .. })
    }

    /// The entry state of a boot vCPU.
    pub(super) fn configure_boot_vcpu(
        &self,
        fd: &VcpuFd,
        index: VcpuIndex,
        bus: &VmBus,
    ) -> Result<(), VmmError> {
        match self {
            Guest::Probe(_) => probe_entry(fd, index, bus),
            Guest::Multiboot { entry, .. } if index.0 == 0 => multiboot_bsp(fd, entry),
            Guest::Multiboot { .. } => Ok(()),
            Guest::Kernel { kernel, tables, .. } if index.0 == 0 => linux_bsp(fd, kernel, tables),
            // The APs keep KVM's initial state: waiting for INIT/SIPI from the guest.
            Guest::Kernel { .. } => Ok(()),
        }
    }

    /// The entry state of a hot-plugged vCPU (`reused`: a parked fd from an earlier
    /// plug of the same slot, which keeps its CPUID).
    pub(super) fn configure_plugged_vcpu(
        &self,
        fd: &VcpuFd,
        index: VcpuIndex,
        bus: &VmBus,
        reused: bool,
    ) -> Result<(), VmmError> {
        match self {
            Guest::Probe(_) => probe_entry(fd, index, bus),
            Guest::Multiboot { .. } => Err(VmmError::Unsupported(
                "CPU hot-plug goes through ACPI, which a Multiboot kernel is not given".into(),
            )),
            // A new vCPU already waits for INIT/SIPI; a reused one is reset to that
            // state from wherever the guest left it.
            Guest::Kernel { .. } if reused => fd
                .set_mp_state(kvm_mp_state {
                    mp_state: KVM_MP_STATE_UNINITIALIZED,
                })
                .map_err(vcpu_op(index, "KVM_SET_MP_STATE")),
            Guest::Kernel { .. } => Ok(()),
        }
    }
}

/// The BSP enters a Multiboot kernel in 32-bit protected mode, as the specification says:
/// EAX the magic, EBX the information structure, flat segments, paging off.
/// Its LAPIC is left as a BIOS leaves it (`x86_boot::bios`): enabled, LINT0 ExtINT.
fn multiboot_bsp(fd: &VcpuFd, entry: &MultibootEntryState) -> Result<(), VmmError> {
    let index = VcpuIndex(0);
    let mut lapic = fd.get_lapic().map_err(vcpu_op(index, "KVM_GET_LAPIC"))?;
    BiosInterruptState::default().bsp_lapic(&mut lapic);
    fd.set_lapic(&lapic)
        .map_err(vcpu_op(index, "KVM_SET_LAPIC"))?;
    let base = fd.get_sregs().map_err(vcpu_op(index, "KVM_GET_SREGS"))?;
    fd.set_sregs(&entry.sregs(&base))
        .map_err(vcpu_op(index, "KVM_SET_SREGS"))?;
    fd.set_regs(&entry.regs())
        .map_err(vcpu_op(index, "KVM_SET_REGS"))
}

/// QEMU's devices for test kernels: fw_cfg (CPU counts, RAM size), isa-debug-exit at
/// 0xf4 and pc-testdev, whose interrupt lines drive the in-kernel irqchip.
fn test_devices(
    vm: &std::sync::Arc<VmFd>,
    topo: &CpuTopology,
    layout: &MemoryLayout,
) -> Result<TestDevices, VmmError> {
    let ram: u64 = layout.regions().iter().map(|r| r.size).sum();
    let count = |n: u32| u16::try_from(n).unwrap_or(u16::MAX);
    Ok(TestDevices {
        fw_cfg: FwCfgBuilder::new(count(topo.cpus()), count(topo.max_cpus()), ram).build(),
        testdev_hooks: std::sync::Arc::new(KvmIrqLines(std::sync::Arc::clone(vm))),
    })
}

/// Load a Multiboot kernel (`--initrd` is module 0, `--append` its command line) with
/// COM1, the test devices, and what a PC BIOS provides: initialised 8259s, ACPI
/// tables with a FACS and PM1 blocks (S3 through the resume ROM, S5), the CMOS RTC.
/// No CPU hot-plug.
fn load_multiboot(
    vm: &std::sync::Arc<VmFd>,
    ram: &GuestRam,
    layout: &MemoryLayout,
    topo: &CpuTopology,
    config: &KernelConfig,
    serial: SerialBackend,
    image: &[u8],
) -> Result<(Guest, VmBus), VmmError> {
    let e820 = boot::e820_map(layout).map_err(boot::BootError::from)?;
    let initrd = match &config.initrd {
        Some(path) => Some(
            std::fs::read(path).map_err(|source| loader::LoaderError::Read {
                path: path.clone(),
                source,
            })?,
        ),
        None => None,
    };
    let initrd_name = config
        .initrd
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let modules: Vec<MultibootModule<'_>> = initrd
        .as_deref()
        .map(|data| MultibootModule {
            data,
            cmdline: &initrd_name,
        })
        .into_iter()
        .collect();
    // QEMU's Multiboot command line is the kernel's path, then `-append`: guests (the
    // suite's argv) read the first word as their program name.
    let append = config.cmdline.as_deref().unwrap_or_default();
    let cmdline = format!("{} {append}", config.kernel.display());
    let mb = MultibootConfig {
        mmio_hole: guest_memory::layout::MMIO_HOLE_START..guest_memory::layout::MMIO_HOLE_END,
        cmdline: cmdline.trim_end(),
        modules: &modules,
        loader_name: "vmm-reference",
        ..MultibootConfig::new(&e820)
    };
    let load = load_multiboot_image(image, &mb)?;
    load.write_to(ram.memory())?;
    if !config.q35 {
        bios_pics(vm)?;
    }
    let cpus = boot::cpu_entries(topo, None).map_err(boot::BootError::from)?;
    let pm1 = Pm1Config::default();
    let acpi = AcpiConfig {
        hotplug: None,
        power: None,
        ..boot::acpi_config(cpus, layout, None)
    };
    let tables = write_acpi_with_pm1(ram.memory(), &acpi, &pm1, &AcpiLayout::default())
        .map_err(boot::BootError::from)?;
    let resume_rom = map_resume_rom(vm, ram, &tables)?;
    let apic = topo.apic_layout();
    let apic_ids = topo
        .present()
        .map(|i| apic.apic_id(i).map(|id| id.0))
        .collect::<Result<Vec<_>, _>>()
        .map_err(boot::BootError::from)?;
    let q35 = config.q35.then(|| Q35Config {
        iommu: config.devices.contains(&DeviceOption::IntelIommu),
        edu: config.devices.contains(&DeviceOption::Edu),
        memory: std::sync::Arc::new(ram.memory().clone()),
        sink: std::sync::Arc::new(KvmMsi(std::sync::Arc::clone(vm))),
    });
    let platform = std::sync::Arc::new(Platform::new(PlatformConfig {
        q35,
        console: serial.sink,
        power: None,
        hotplug: None,
        test_devices: Some(test_devices(vm, topo, layout)?),
        pc_power: Some(PcPower {
            pm1,
            sleep: std::sync::Arc::new(KvmInitOnWake {
                vm: std::sync::Arc::clone(vm),
                apic_ids,
            }),
        }),
    })?);
    platform.register_irqfds(vm).map_err(kvm_op("KVM_IRQFD"))?;
    let input = serial.input.subscriber(platform.com1().clone());
    let guest = Guest::Multiboot {
        entry: load.entry,
        input,
        _resume_rom: resume_rom,
    };
    Ok((guest, VmBus::Platform(platform)))
}

/// Map the 4 KiB S3 resume ROM at the reset vector (`x86_boot::bios`), reading the
/// waking vector from the FACS of `tables`, in the memory slot after guest RAM's.
fn map_resume_rom(
    vm: &std::sync::Arc<VmFd>,
    ram: &GuestRam,
    tables: &AcpiTables,
) -> Result<(GuestRam, MemorySlots), VmmError> {
    let facs = tables
        .table(b"FACS")
        .ok_or_else(|| VmmError::Unsupported("the ACPI tables have no FACS".into()))?;
    let layout = MemoryLayout::new(
        vec![RamRegion {
            gpa: vm_memory::GuestAddress(RESUME_ROM_ADDR),
            size: RESUME_ROM_SIZE as u64,
            node: None,
        }],
        Vec::new(),
    )?;
    let rom = GuestRam::new(&layout)?;
    write_resume_rom(rom.memory(), facs.addr.0)?;
    let first = SlotId(ram.layout().regions().len() as u32);
    let slots = rom.register_at(std::sync::Arc::clone(vm), first)?;
    Ok((rom, slots))
}

/// Initialise the 8259 pair as a BIOS does before a boot loader runs
/// (`x86_boot::bios`: vectors 0x08 and 0x70).
fn bios_pics(vm: &VmFd) -> Result<(), VmmError> {
    let state = BiosInterruptState::default();
    for pic in [Pic::Master, Pic::Slave] {
        let mut chip = kvm_irqchip {
            chip_id: pic.kvm_chip_id(),
            ..Default::default()
        };
        chip.chip.pic = state.pic(pic);
        vm.set_irqchip(&chip).map_err(kvm_op("KVM_SET_IRQCHIP"))?;
    }
    Ok(())
}

/// The probe starts every vCPU directly in long mode (APs would otherwise wait for
/// INIT/SIPI with the in-kernel irqchip).
fn probe_entry(fd: &VcpuFd, index: VcpuIndex, bus: &VmBus) -> Result<(), VmmError> {
    let probe = bus
        .probe()
        .map(ProbeDoorbell::probe)
        .ok_or_else(|| VmmError::Unsupported("the probe VM has no probe doorbell".into()))?;
    let base = fd.get_sregs().map_err(vcpu_op(index, "KVM_GET_SREGS"))?;
    fd.set_sregs(&probe.vcpu_sregs(&base))
        .map_err(vcpu_op(index, "KVM_SET_SREGS"))?;
    fd.set_regs(&probe.vcpu_regs(index)?)
        .map_err(vcpu_op(index, "KVM_SET_REGS"))?;
    fd.set_mp_state(kvm_mp_state {
        mp_state: KVM_MP_STATE_RUNNABLE,
    })
    .map_err(vcpu_op(index, "KVM_SET_MP_STATE"))
}

/// The BSP enters the kernel in 64-bit mode: RIP at the entry, RSI at the zero page,
/// interrupts off, a boot stack, the identity map and flat GDT of the boot tables.
fn linux_bsp(fd: &VcpuFd, kernel: &LoadedKernel, tables: &BootTables) -> Result<(), VmmError> {
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
    .map_err(vcpu_op(index, "KVM_SET_FPU"))
}

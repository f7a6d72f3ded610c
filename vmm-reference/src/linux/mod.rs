//! A Linux guest: `--kernel` builds a [`LinuxVm`] instead of the probe [`crate::Vmm`].
//!
//! The VM has guest RAM (per NUMA node with `--numa`), the full in-kernel irqchip (PIC,
//! IOAPIC, local APICs) and PIT, COM1 on IRQ 4, the i8042 reset line, the ACPI power
//! registers (S5 power off, reset) and power button, and the CPU hot-plug register block
//! when `maxcpus` exceeds `cpus`. The BSP starts in 64-bit mode at the kernel's entry with
//! `RSI` pointing at the zero page (the Linux 64-bit boot protocol); the APs wait in KVM's
//! INIT-received state until Linux starts them with INIT/SIPI.
//!
//! - [`boot`]: command line, e820, MP table, ACPI (FADT, MADT, DSDT, SRAT, SLIT), zero
//!   page;
//! - [`loader`]: vmlinux (ELF) or bzImage, initrd;
//! - [`bus`]: the port-I/O devices (the VM's [`vcpu_lifecycle::ExitHandler`]) and their
//!   interrupts;
//! - [`serial`]: COM1's backends (`--serial`: stdio, file, null, Unix or TCP socket);
//! - [`LinuxVm`]: builds the VM and runs it until the guest reboots, stops, or time runs
//!   out; also hot-plugs and unplugs vCPUs through the ACPI hot-plug block, reads
//!   registers and guest memory, and re-pins vCPUs (the operations a monitor needs);
//! - [`machine`]: [`machine::LinuxMachine`], the QMP monitor's backend for a Linux VM.

pub mod boot;
pub mod bus;
mod control;
pub mod loader;
pub mod machine;
pub mod serial;
mod vm;

use std::path::PathBuf;
use std::time::Duration;

use cpu_topology::CpuTopology;
use cpuid_model::spec::ModelSpec;
use guest_memory::{MemoryBackendConfig, NumaConfig};
use vcpu_lifecycle::VmStop;

pub use control::{ControlError, EjectedCpu};
pub use serial::{parse_serial, SerialOutput};
pub use vm::LinuxVm;

/// Everything a [`LinuxVm`] is built from.
#[derive(Debug, Clone)]
pub struct LinuxConfig {
    /// vCPU topology (`--smp`).
    pub topology: CpuTopology,
    /// Guest RAM in bytes (`-m`).
    pub memory: u64,
    /// CPU model (`--cpu`).
    pub cpu: ModelSpec,
    /// The kernel image (`--kernel`).
    pub kernel: PathBuf,
    /// The initrd (`--initrd`).
    pub initrd: Option<PathBuf>,
    /// The kernel command line (`--append`).
    pub cmdline: String,
    /// `--numa` options (empty: no NUMA description).
    pub numa: NumaConfig,
    /// `--object memory-backend-*` objects that `--numa node,memdev=` may name.
    pub objects: Vec<MemoryBackendConfig>,
    /// Where COM1's output goes (`--serial`).
    pub serial: SerialOutput,
    /// Give up after this long.
    pub timeout: Option<Duration>,
    /// VM name (`--name`), for the host ledger and messages.
    pub name: Option<String>,
    /// Where the vCPU and emulator threads run, and over-commit admission.
    pub placement: crate::placement::PlacementOptions,
}

impl LinuxConfig {
    /// A config booting `kernel` on `topology` with every other value at its default.
    pub fn new(topology: CpuTopology, kernel: PathBuf) -> Self {
        Self {
            topology,
            memory: guest_memory::DEFAULT_MEM_SIZE,
            cpu: ModelSpec::new(
                cpuid_model::model::find(crate::DEFAULT_CPU_MODEL)
                    .expect("the default model exists"),
            ),
            kernel,
            initrd: None,
            cmdline: boot::DEFAULT_CMDLINE.to_string(),
            numa: NumaConfig::default(),
            objects: Vec::new(),
            serial: SerialOutput::Stdout,
            timeout: Some(Duration::from_secs(300)),
            name: None,
            placement: Default::default(),
        }
    }
}

impl LinuxConfig {
    /// Build from parsed command-line options (`--kernel` given). `cpu` must not be the
    /// `help` request.
    pub fn from_args(args: crate::cli::RunArgs, cpu: ModelSpec) -> Option<Self> {
        let linux = args.linux;
        Some(Self {
            topology: args.smp,
            memory: args.memory,
            cpu,
            kernel: linux.kernel?,
            initrd: linux.initrd,
            cmdline: linux.append,
            numa: NumaConfig {
                options: linux.numa,
            },
            objects: linux.object,
            serial: linux.serial,
            timeout: (args.timeout > 0).then(|| Duration::from_secs(args.timeout)),
            name: args.name,
            placement: args.placement.into_options(),
        })
    }
}

/// How a Linux guest ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestExit {
    /// The guest reset itself: through the keyboard controller (`reboot=k`, the default
    /// command line's reboot and panic path) or the ACPI reset register (`reboot=acpi`).
    Reboot,
    /// The guest powered itself off through ACPI (S5: `poweroff`, `halt -p`, or an
    /// orderly shutdown after the power button).
    PowerOff,
}

/// Why a Linux VM could not be built or did not end cleanly.
#[derive(Debug, thiserror::Error)]
pub enum LinuxError {
    /// /dev/kvm could not be opened.
    #[error("cannot open /dev/kvm (see `vmm-reference host-check`)")]
    OpenKvm(#[source] kvm_ioctls::Error),
    /// The topology does not fit this host's KVM.
    #[error(transparent)]
    Limits(#[from] crate::guest_setup::KvmLimitError),
    /// A VM-wide KVM ioctl failed.
    #[error("{op} failed")]
    Kvm {
        /// The ioctl.
        op: &'static str,
        /// The errno.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// A per-vCPU KVM ioctl failed.
    #[error("vCPU {vcpu}: {op} failed")]
    VcpuIoctl {
        /// Which vCPU.
        vcpu: cpu_topology::VcpuIndex,
        /// The ioctl.
        op: &'static str,
        /// The errno.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// `--numa` does not fit the machine.
    #[error("--numa")]
    Numa(#[from] guest_memory::NumaError),
    /// `-m` does not give a usable layout.
    #[error("-m")]
    Layout(#[from] guest_memory::LayoutError),
    /// Guest RAM could not be mapped.
    #[error("guest RAM")]
    Memory(#[from] guest_memory::MemoryError),
    /// Guest RAM could not be mapped from its backends.
    #[error("memory backends")]
    Backing(#[from] guest_memory::BackingError),
    /// Guest RAM could not be registered with KVM.
    #[error("KVM memory slots")]
    Slots(#[from] guest_memory::SlotError),
    /// The kernel or initrd could not be loaded.
    #[error("{0}")]
    Loader(#[from] loader::LoaderError),
    /// The boot tables could not be built.
    #[error("boot tables")]
    Boot(#[from] boot::BootError),
    /// A topology computation failed.
    #[error("topology")]
    Topology(#[from] cpu_topology::TopologyError),
    /// The guest CPUID could not be computed (`--cpu` with `enforce`, ...).
    #[error(transparent)]
    Cpuid(#[from] crate::guest_setup::GuestCpuidError),
    /// Per-vCPU CPUID could not be computed.
    #[error("CPUID")]
    Normalize(#[from] cpuid_model::normalize::NormalizeError),
    /// A CPUID table does not fit KVM.
    #[error("KVM_SET_CPUID2")]
    KvmCpuid(#[from] cpuid_model::kvm::KvmCpuidError),
    /// The serial backend could not be opened (`--serial`).
    #[error(transparent)]
    Serial(#[from] serial::SerialError),
    /// The I/O bus could not be built (an interrupt eventfd).
    #[error("I/O bus")]
    Bus(#[from] bus::BusError),
    /// Placement or over-commit admission failed.
    #[error("{0}")]
    Placement(#[from] crate::placement::PlacementSetupError),
    /// A vCPU thread failed.
    #[error("vCPU thread")]
    Vcpu(#[from] vcpu_lifecycle::VcpuError),
    /// A command to all vCPUs failed.
    #[error("vCPUs")]
    VcpuSet(#[from] vcpu_lifecycle::VcpuSetError),
    /// The guest stopped the VM (emulation failure, triple fault, ...).
    #[error("guest stopped: {stop}")]
    GuestStopped {
        /// Which vCPU and why.
        stop: VmStop,
        /// The bytes at the faulting instruction (after an internal error whose RIP maps
        /// to guest RAM), up to the 15 an x86 instruction can take.
        code: Option<Vec<u8>>,
        /// The last console lines.
        console: Vec<String>,
    },
    /// The guest did not finish in time.
    #[error("the guest did not stop within {seconds} s (raise --timeout, 0 waits forever)")]
    Timeout {
        /// The limit.
        seconds: u64,
        /// The last console lines.
        console: Vec<String>,
    },
}

impl LinuxError {
    /// True when the user's input is at fault (the binary exits with status 2).
    pub fn is_bad_input(&self) -> bool {
        match self {
            LinuxError::Limits(_)
            | LinuxError::Numa(_)
            | LinuxError::Layout(_)
            | LinuxError::Cpuid(crate::guest_setup::GuestCpuidError::Model(_))
            | LinuxError::Loader(_) => true,
            LinuxError::Serial(e) => e.is_bad_input(),
            LinuxError::Boot(e) => e.is_bad_input(),
            LinuxError::Placement(e) => e.is_bad_input(),
            _ => false,
        }
    }

    /// The bytes at the faulting instruction, for a guest stop after an internal error.
    pub fn code(&self) -> Option<&[u8]> {
        match self {
            LinuxError::GuestStopped { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// The last console lines, for a guest stop or a timeout.
    pub fn console(&self) -> &[String] {
        match self {
            LinuxError::GuestStopped { console, .. } | LinuxError::Timeout { console, .. } => {
                console
            }
            _ => &[],
        }
    }
}

//! `VmmError`: why a VM could not be built, did not run to its end, or refused a request.

use std::path::PathBuf;

use cpu_topology::{TopologyError, VcpuIndex};
use cpuid_model::decode::DecodeError;
use vcpu_lifecycle::VmStop;

use crate::guest_setup::{GuestCpuidError, KvmLimitError};
use crate::placement::PlacementSetupError;
use crate::vm::HotplugError;

/// Why a VM could not be built, did not run to its end, or refused a request.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// /dev/kvm could not be opened.
    #[error("cannot open /dev/kvm (see `vmm-reference host-check`)")]
    OpenKvm(#[source] kvm_ioctls::Error),
    /// The topology does not fit this host's KVM.
    #[error(transparent)]
    Limits(#[from] KvmLimitError),
    /// A VM-wide KVM ioctl failed.
    #[error("{op} failed")]
    Kvm {
        /// The ioctl, e.g. `KVM_CREATE_VM`.
        op: &'static str,
        /// The errno.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// A per-vCPU KVM ioctl failed.
    #[error("vCPU {vcpu}: {op} failed")]
    VcpuIoctl {
        /// Which vCPU.
        vcpu: VcpuIndex,
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
    /// Guest RAM could not be mapped from its `--object` backends.
    #[error("memory backends")]
    Backing(#[from] guest_memory::BackingError),
    /// Guest RAM could not be registered with KVM.
    #[error("KVM memory slots")]
    Slots(#[from] guest_memory::SlotError),
    /// The guest CPUID could not be computed (`--cpu` with `enforce`, ...).
    #[error(transparent)]
    Cpuid(#[from] GuestCpuidError),
    /// Per-vCPU CPUID could not be computed.
    #[error("CPUID")]
    Normalize(#[from] cpuid_model::normalize::NormalizeError),
    /// A CPUID table does not fit KVM.
    #[error("KVM_SET_CPUID2")]
    KvmCpuid(#[from] cpuid_model::kvm::KvmCpuidError),
    /// The probe guest does not fit or could not be loaded.
    #[error("probe guest")]
    Probe(#[from] probe_guest::ProbeError),
    /// The kernel or initrd could not be loaded.
    #[error("{0}")]
    Loader(#[from] crate::linux::loader::LoaderError),
    /// The Multiboot kernel could not be loaded.
    #[error("--kernel")]
    Multiboot(#[from] x86_boot::multiboot::MultibootError),
    /// The boot tables could not be built.
    #[error("boot tables")]
    Boot(#[from] crate::linux::boot::BootError),
    /// The BIOS state of a Multiboot kernel (the S3 resume ROM) could not be set up.
    #[error("set up the BIOS state")]
    Bios(#[from] x86_boot::bios::BiosError),
    /// The serial backend could not be opened (`--serial`).
    #[error(transparent)]
    Serial(#[from] x86_devices::serial::SerialError),
    /// The platform devices could not be built.
    #[error("platform devices")]
    Platform(#[from] x86_devices::PlatformError),
    /// The ACPI power button could not be pressed.
    #[error("system_powerdown")]
    PowerButton(#[from] x86_devices::acpi_pm::PowerButtonError),
    /// A vCPU thread failed or did not answer.
    #[error("vCPU thread")]
    Vcpu(#[from] vcpu_lifecycle::VcpuError),
    /// A command to all vCPUs failed.
    #[error("vCPUs")]
    VcpuSet(#[from] vcpu_lifecycle::VcpuSetError),
    /// The guest stopped the VM (triple fault, emulation failure, ...).
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
    #[error(
        "the guest did not finish within {seconds} s{pending} (raise --timeout, 0 waits forever)"
    )]
    Timeout {
        /// The limit.
        seconds: u64,
        /// `; vCPUs still running: 1,2` for the probe, empty otherwise.
        pending: String,
        /// The last console lines.
        console: Vec<String>,
    },
    /// A vCPU finished without its CPUID report.
    #[error("vCPU {0} finished without reporting its CPUID view")]
    MissingReport(VcpuIndex),
    /// A reported CPUID view does not describe a topology.
    #[error("decode the CPUID view of vCPU {vcpu}")]
    Decode {
        /// Which vCPU.
        vcpu: VcpuIndex,
        /// Why.
        #[source]
        source: DecodeError,
    },
    /// A topology computation failed.
    #[error("topology")]
    Topology(#[from] TopologyError),
    /// A dump could not be written.
    #[error("write {}", path.display())]
    Dump {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The hwloc directory could not be written.
    #[error("--dump-cpuid-hwloc")]
    Hwloc(#[from] cpuid_model::hwloc::HwlocError),
    /// Placement or over-commit admission failed.
    #[error("{0}")]
    Placement(#[from] PlacementSetupError),
    /// A monitor or library call named a vCPU the VM does not have.
    #[error("vCPU {0} does not exist")]
    NoSuchVcpu(VcpuIndex),
    /// A cpuset did not parse.
    #[error("cpuset")]
    CpuSet(#[from] cpu_topology::CpuSetError),
    /// A hot-plug request was refused.
    #[error("{0}")]
    Hotplug(#[from] HotplugError),
    /// The ACPI hot-plug block refused the slot or could not raise its interrupt.
    #[error("CPU hot-plug")]
    Slot(#[from] x86_boot::acpi::HotplugError),
    /// The request needs a device this VM's guest does not have.
    #[error("{0}")]
    Unsupported(String),
    /// A page-table walk hit guest memory it could not read.
    #[error("page-table walk")]
    Walk(#[source] guest_memory::WalkError),
    /// Guest memory could not be read.
    #[error("read {len} bytes of guest memory at {gpa:#x}")]
    ReadMemory {
        /// Where.
        gpa: u64,
        /// How much.
        len: usize,
        /// Why.
        #[source]
        source: vm_memory::GuestMemoryError,
    },
    /// The QMP monitor could not be set up (its socket).
    #[error(transparent)]
    Monitor(vmm_monitor::ServerError),
    /// The seccomp filters could not be compiled or installed.
    #[error("seccomp")]
    Seccomp(#[from] vmm_sandbox::SeccompError),
    /// Privileges could not be dropped (`--runas`, capabilities).
    #[error("dropping privileges")]
    Privileges(#[from] vmm_sandbox::PrivilegeError),
    /// The event loop or one of its event sources failed.
    #[error("event loop: {what}")]
    EventLoop {
        /// What failed.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl VmmError {
    /// True when the user's input is at fault (the binary exits with status 2).
    pub fn is_bad_input(&self) -> bool {
        use probe_guest::ProbeError;
        match self {
            VmmError::Limits(_)
            | VmmError::Cpuid(GuestCpuidError::Model(_))
            | VmmError::Layout(_)
            | VmmError::Numa(_)
            | VmmError::Loader(_)
            | VmmError::Multiboot(_)
            | VmmError::Probe(ProbeError::RamTooSmall { .. } | ProbeError::TooManyVcpus { .. })
            | VmmError::NoSuchVcpu(_)
            | VmmError::CpuSet(_)
            | VmmError::Hotplug(_)
            | VmmError::Monitor(_)
            | VmmError::Unsupported(_) => true,
            VmmError::Slot(e) => !matches!(e, x86_boot::acpi::HotplugError::Interrupt { .. }),
            VmmError::Serial(e) => e.is_bad_input(),
            VmmError::Boot(e) => e.is_bad_input(),
            VmmError::Placement(e) => e.is_bad_input(),
            _ => false,
        }
    }

    /// The bytes at the faulting instruction, for a guest stop after an internal error.
    pub fn code(&self) -> Option<&[u8]> {
        match self {
            VmmError::GuestStopped { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// The last console lines, for a guest stop or a timeout.
    pub fn console(&self) -> &[String] {
        match self {
            VmmError::GuestStopped { console, .. } | VmmError::Timeout { console, .. } => console,
            _ => &[],
        }
    }
}

/// Map a failed VM-wide ioctl to [`VmmError::Kvm`].
pub(crate) fn kvm_op(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmmError {
    move |source| VmmError::Kvm { op, source }
}

/// Map a failed per-vCPU ioctl to [`VmmError::VcpuIoctl`].
pub(crate) fn vcpu_op(
    vcpu: VcpuIndex,
    op: &'static str,
) -> impl FnOnce(kvm_ioctls::Error) -> VmmError {
    move |source| VmmError::VcpuIoctl { vcpu, op, source }
}

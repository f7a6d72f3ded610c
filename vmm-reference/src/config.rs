//! `VmmConfig`: what a VM needs, already parsed and typed, and the guest it runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cpu_topology::CpuTopology;
use cpuid_model::spec::ModelSpec;
use guest_memory::{MemoryBackendConfig, NumaConfig};
use probe_guest::ProbeMode;
use vmm_sandbox::{Credentials, SeccompMode};

use crate::cli::{DeviceOption, RunArgs};
use crate::linux::SerialOutput;
use crate::placement::PlacementOptions;

/// Everything a [`crate::Vmm`] is built from.
#[derive(Debug, Clone)]
pub struct VmmConfig {
    /// vCPU topology (`--smp`).
    pub topology: CpuTopology,
    /// Guest RAM in bytes (`-m`).
    pub memory: u64,
    /// CPU model (`--cpu`).
    pub cpu: ModelSpec,
    /// `--numa` options (empty: no NUMA description).
    pub numa: NumaConfig,
    /// `--object memory-backend-*` objects that `--numa node,memdev=` may name.
    pub objects: Vec<MemoryBackendConfig>,
    /// Give up on a guest that has not finished after this long (not with a monitor).
    pub timeout: Option<Duration>,
    /// VM name (`--name`), for the host ledger and messages.
    pub name: Option<String>,
    /// VM UUID (`--uuid`), lower-case 8-4-4-4-12 hex; QMP `query-uuid` reports the
    /// all-zero UUID without one, as QEMU does.
    pub uuid: Option<String>,
    /// Where the vCPU and emulator threads run, and over-commit admission.
    pub placement: PlacementOptions,
    /// What the VM runs.
    pub payload: Payload,
    /// Seccomp filters and privileges.
    pub security: SecurityConfig,
    /// Complete in user space the instructions KVM's emulator fails on
    /// (`--emulation-fallback`, on by default; it costs nothing until KVM fails).
    pub emulation_fallback: vcpu_lifecycle::EmulationFallback,
    /// Complete the SYSCALLs a software KVM backend leaves at CPL3
    /// (`--syscall-completion`, off by default; it owns guest debugging when on).
    pub syscall_completion: vcpu_lifecycle::SyscallCompletion,
}

/// How the VMM confines itself once the VM is set up.
#[derive(Debug, Clone, Default)]
pub struct SecurityConfig {
    /// Seccomp filters per thread kind (`--seccomp`; `off` for library callers).
    pub seccomp: SeccompMode,
    /// Give up capabilities (and, with `runas`, root) before the first vCPU thread
    /// exists: /dev/kvm, guest RAM, the serial socket and the ledger are set up by then.
    pub drop_privileges: bool,
    /// The user and group to run as (`--runas`).
    pub runas: Option<Credentials>,
    /// Test only: every vCPU thread makes a syscall its filter forbids (getppid) before
    /// its first KVM_RUN.
    pub selftest_forbidden_syscall: bool,
}

/// The guest a VM runs.
#[derive(Debug, Clone)]
pub enum Payload {
    /// The embedded probe guest, on every vCPU.
    Probe(ProbeConfig),
    /// A kernel from a file: Linux (vmlinux or bzImage) or a Multiboot kernel.
    Kernel(KernelConfig),
}

/// Options of the probe guest.
#[derive(Debug, Clone, Default)]
pub struct ProbeConfig {
    /// What the probe does on every vCPU.
    pub mode: ProbeMode,
    /// Write every vCPU's CPUID view in `cpuid -r` format here.
    pub dump_cpuid: Option<PathBuf>,
    /// Write every vCPU's CPUID view as a hwloc-gather-cpuid directory here.
    pub dump_cpuid_hwloc: Option<PathBuf>,
}

/// Options of a kernel payload.
#[derive(Debug, Clone)]
pub struct KernelConfig {
    /// The kernel image (`--kernel`).
    pub kernel: PathBuf,
    /// The initrd (`--initrd`), or Multiboot module 0.
    pub initrd: Option<PathBuf>,
    /// The kernel command line (`--append`); `None`: the default of the kernel's kind
    /// ([`KernelConfig::linux_cmdline`] for Linux, empty for Multiboot).
    pub cmdline: Option<String>,
    /// Where COM1's output goes (`--serial`).
    pub serial: SerialOutput,
    /// Extra devices (`-device isa-debug-exit`, `-device pc-testdev`).
    pub devices: Vec<DeviceOption>,
    /// KVM's in-kernel 8254 PIT (`-machine pit=off` leaves it out).
    pub pit: bool,
    /// `-machine q35,kernel-irqchip=split`: split irqchip, user-space I/O APIC, PCI bus
    /// (Multiboot kernels only).
    pub q35: bool,
}

impl KernelConfig {
    /// The command line a Linux kernel gets: `--append`, or console on COM1 and reboot
    /// through the keyboard controller.
    pub fn linux_cmdline(&self) -> &str {
        self.cmdline
            .as_deref()
            .unwrap_or(crate::linux::boot::DEFAULT_CMDLINE)
    }

    /// `kernel` with the default command line, no initrd, COM1 on stdout.
    pub fn new(kernel: PathBuf) -> Self {
        Self {
            kernel,
            initrd: None,
            cmdline: None,
            serial: SerialOutput::Stdout,
            devices: Vec::new(),
            pit: true,
            q35: false,
        }
    }
}

impl VmmConfig {
    /// A config for `topology` running the probe, every other value at its default.
    pub fn new(topology: CpuTopology) -> Self {
        Self {
            topology,
            memory: guest_memory::DEFAULT_MEM_SIZE,
            cpu: ModelSpec::new(
                cpuid_model::model::find(crate::DEFAULT_CPU_MODEL)
                    .expect("the default model exists"),
            ),
            numa: NumaConfig::default(),
            objects: Vec::new(),
            timeout: Some(Duration::from_secs(300)),
            name: None,
            uuid: None,
            // Over-commit admission warns, as the command line's default (`--overcommit warn`).
            placement: PlacementOptions {
                overcommit: vcpu_placement::OvercommitPolicy {
                    warn_only: true,
                    ..Default::default()
                },
                ..PlacementOptions::default()
            },
            payload: Payload::Probe(ProbeConfig::default()),
            security: SecurityConfig {
                seccomp: SeccompMode::Off,
                ..SecurityConfig::default()
            },
            emulation_fallback: vcpu_lifecycle::EmulationFallback::On,
            syscall_completion: vcpu_lifecycle::SyscallCompletion::Off,
        }
    }

    /// A config for `topology` booting `kernel`, every other value at its default.
    pub fn kernel(topology: CpuTopology, kernel: PathBuf) -> Self {
        Self {
            payload: Payload::Kernel(KernelConfig::new(kernel)),
            ..Self::new(topology)
        }
    }

    /// The probe's options, when the VM runs the probe.
    pub fn probe_mut(&mut self) -> Option<&mut ProbeConfig> {
        match &mut self.payload {
            Payload::Probe(p) => Some(p),
            Payload::Kernel(_) => None,
        }
    }

    /// The kernel's options, when the VM boots a kernel.
    pub fn kernel_mut(&mut self) -> Option<&mut KernelConfig> {
        match &mut self.payload {
            Payload::Kernel(k) => Some(k),
            Payload::Probe(_) => None,
        }
    }

    /// Build from parsed command-line options. `cpu` must not be the `help` request.
    /// A probe-only option with `--kernel` is refused by name.
    pub fn from_args(args: RunArgs, cpu: ModelSpec) -> Result<Self, String> {
        if let Some(refused) = args.qemu.refused(args.qmp.is_some()) {
            return Err(refused);
        }
        let linux = args.linux;
        let payload = match linux.kernel {
            Some(kernel) => {
                let probe_only = [
                    (args.probe != ProbeMode::Report, "--probe"),
                    (args.dump_cpuid.is_some(), "--dump-cpuid"),
                    (args.dump_cpuid_hwloc.is_some(), "--dump-cpuid-hwloc"),
                ];
                if let Some((_, name)) = probe_only.iter().find(|(given, _)| *given) {
                    return Err(format!("{name} is not supported with --kernel"));
                }
                let q35 = args.qemu.machine.as_ref().is_some_and(|m| m.q35);
                if !q35 && args.qemu.device.iter().any(DeviceOption::needs_q35) {
                    return Err(
                        "-device edu and intel-iommu need -machine q35,kernel-irqchip=split".into(),
                    );
                }
                Payload::Kernel(KernelConfig {
                    kernel,
                    initrd: linux.initrd,
                    cmdline: linux.append,
                    serial: linux.serial,
                    devices: args.qemu.device,
                    pit: args.qemu.machine.as_ref().is_none_or(|m| m.pit),
                    q35,
                })
            }
            None if !args.qemu.device.is_empty() => {
                return Err("-device is for kernel payloads (--kernel)".into())
            }
            None => Payload::Probe(ProbeConfig {
                mode: args.probe,
                dump_cpuid: args.dump_cpuid,
                dump_cpuid_hwloc: args.dump_cpuid_hwloc,
            }),
        };
        let memory = args
            .memory
            .or_else(|| numa_total(&linux.numa, &linux.object))
            .unwrap_or(guest_memory::DEFAULT_MEM_SIZE);
        let config = Self {
            topology: args.smp,
            memory,
            cpu,
            numa: NumaConfig {
                options: linux.numa,
            },
            objects: linux.object,
            timeout: (args.timeout > 0).then(|| Duration::from_secs(args.timeout)),
            name: args.name,
            uuid: args.uuid,
            placement: args.placement.into_options(),
            payload,
            security: SecurityConfig {
                seccomp: args.security.sandbox.unwrap_or(args.security.seccomp),
                drop_privileges: true,
                runas: args
                    .security
                    .runas
                    .map(|r| r.resolve())
                    .transpose()
                    .map_err(|e| e.to_string())?,
                selftest_forbidden_syscall: args.security.seccomp_selftest,
            },
            emulation_fallback: args.emulation_fallback,
            syscall_completion: args.syscall_completion,
        };
        config.check_output_paths()?;
        Ok(config)
    }

    /// Check the files the run will write before anything runs: a missing directory or
    /// a file that cannot be written is bad input now, not a failure after the guest ran.
    pub fn check_output_paths(&self) -> Result<(), String> {
        match &self.payload {
            Payload::Probe(p) => {
                if let Some(path) = &p.dump_cpuid {
                    check_writable_file("--dump-cpuid", path)?;
                }
                if let Some(dir) = &p.dump_cpuid_hwloc {
                    check_creatable_dir("--dump-cpuid-hwloc", dir)?;
                }
            }
            Payload::Kernel(k) => match &k.serial {
                SerialOutput::File(path) => check_writable_file("--serial file:", path)?,
                SerialOutput::Socket(x86_devices::serial::SocketServer {
                    address: x86_devices::serial::SocketAddress::Unix(path),
                    ..
                }) => {
                    let dir = parent_dir(path);
                    if !dir.is_dir() {
                        return Err(format!(
                            "--serial unix: {}: the directory {} does not exist",
                            path.display(),
                            dir.display()
                        ));
                    }
                }
                _ => {}
            },
        }
        Ok(())
    }
}

/// The RAM the NUMA nodes describe (`mem=` sizes and `memdev=` backends), when any node
/// has memory: what `-m` means when it is not given.
fn numa_total(
    options: &[guest_memory::numa::NumaOption],
    objects: &[MemoryBackendConfig],
) -> Option<u64> {
    use guest_memory::numa::{NodeMemory, NumaOption};
    let total: u64 = options
        .iter()
        .filter_map(|o| match o {
            NumaOption::Node(n) => Some(&n.memory),
            NumaOption::Dist(_) => None,
        })
        .map(|m| match m {
            NodeMemory::Size(size) => *size,
            NodeMemory::Memdev(id) => objects.iter().find(|o| &o.id == id).map_or(0, |o| o.size),
            NodeMemory::None => 0,
        })
        .sum();
    (total > 0).then_some(total)
}

/// The directory `path` would be created in (`.` for a bare name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `path` can be created or overwritten: its directory exists, and the file, if there,
/// opens for writing (it is not truncated here).
fn check_writable_file(option: &str, path: &Path) -> Result<(), String> {
    let dir = parent_dir(path);
    if !dir.is_dir() {
        return Err(format!(
            "{option} {}: the directory {} does not exist",
            path.display(),
            dir.display()
        ));
    }
    if path.is_dir() {
        return Err(format!("{option} {}: is a directory", path.display()));
    }
    let opened = if path.exists() {
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
    } else {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .and_then(|_| std::fs::remove_file(path))
    };
    opened.map_err(|e| format!("{option} {}: cannot write: {e}", path.display()))
}

/// `dir` exists as a directory or can be created in an existing one.
fn check_creatable_dir(option: &str, dir: &Path) -> Result<(), String> {
    if dir.is_dir() {
        return Ok(());
    }
    if dir.exists() {
        return Err(format!("{option} {}: not a directory", dir.display()));
    }
    let parent = parent_dir(dir);
    if !parent.is_dir() {
        return Err(format!(
            "{option} {}: the directory {} does not exist",
            dir.display(),
            parent.display()
        ));
    }
    Ok(())
}

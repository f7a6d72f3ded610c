//! Command line: QEMU's spellings (`-smp`, `-m`, `-cpu`) as well as `--long` options.
//!
//! Parsing turns text into typed values with the workspace crates' own grammars, so a
//! malformed value is reported here, in one line, before anything touches KVM.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use cpu_topology::CpuTopology;
use cpuid_model::spec::ModelSpec;
use probe_guest::ProbeMode;
use vcpu_placement::{CpuSpec, OvercommitPolicy, PlacementConfig, PlacementPolicy, VcpuPin};

mod compat;
pub mod domain;

pub use compat::{normalize_args, parse_device, DeviceOption, QemuArgs};

use crate::placement::PlacementOptions;
use vmm_monitor::{parse_qmp_option, QmpOption};

/// The reference VMM: runs the embedded probe guest on every vCPU and reports what each saw.
#[derive(Debug, Parser)]
#[command(name = "vmm-reference", version, about, long_about = None)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// A tool instead of running a VM.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of a VM run.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Tools that do not start a VM.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check that this host can run KVM guests, like virt-host-validate.
    HostCheck,
    /// Compute what every vCPU would see on another host, from its `cpuid -r` dump (no KVM).
    CpuidPlan(Box<PlanArgs>),
    /// Explain whether a guest this wide suits these host CPUs, and measure it with the
    /// probe's CPL3 workloads (independent spin, barrier rounds) at 1..N vCPUs.
    OvercommitAdvice(AdviceArgs),
    /// Print the command line equivalent to a libvirt domain definition (as `virsh
    /// domxml-to-native` does for QEMU), then its warnings.
    DomxmlToNative {
        /// The domain XML.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print the largest CPU model every host can run, from their `cpuid -r` dumps (no KVM).
    CpuidBaseline {
        /// `cpuid -r` dumps, one per host (the first CPU section of each is used).
        #[arg(value_name = "FILE", required = true)]
        dumps: Vec<PathBuf>,
    },
}

/// Options of `overcommit-advice`.
#[derive(Debug, Args)]
pub struct AdviceArgs {
    /// The planned guest's vCPUs (QEMU -smp syntax; the present count is used).
    #[arg(long, value_name = "SMP", value_parser = parse_smp, help = SMP_HELP)]
    pub smp: CpuTopology,
    /// The host CPUs the guest may use (libvirt syntax); default: all online CPUs.
    #[arg(long, value_name = "CPUSET", value_parser = parse_cpu_spec)]
    pub cpuset: Option<CpuSpec>,
    /// vCPUs per shared host CPU the policy allows.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub overcommit_ratio: u32,
    /// Only explain; do not run the measuring guests.
    #[arg(long)]
    pub no_measure: bool,
    /// Measuring window per guest width, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub window_ms: u64,
    /// Empty-loop iterations each vCPU does between two barriers.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub barrier_work: u64,
}

/// Options of `cpuid-plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The host's CPUID as `cpuid -r` prints it (the first CPU section is used).
    #[arg(long, value_name = "FILE")]
    pub host_dump: PathBuf,
    /// vCPU topology (`--smp`).
    #[arg(long, value_name = "SMP", default_value = "1", value_parser = parse_smp, help = SMP_HELP)]
    pub smp: CpuTopology,
    /// CPU model (`--cpu`).
    #[arg(long, value_name = "MODEL", default_value = crate::DEFAULT_CPU_MODEL, value_parser = parse_cpu, help = CPU_HELP)]
    pub cpu: CpuArg,
    /// Write every vCPU's planned CPUID in the raw format of `cpuid -r`.
    #[arg(long, value_name = "PATH")]
    pub dump_cpuid: Option<PathBuf>,
    /// Write every vCPU's planned CPUID as a hwloc-gather-cpuid directory.
    #[arg(long, value_name = "DIR")]
    pub dump_cpuid_hwloc: Option<PathBuf>,
}

const SMP_HELP: &str = "vCPU topology, QEMU syntax: [cpus=]N[,maxcpus=M][,sockets=S][,dies=D][,modules=M][,cores=C][,threads=T]; \
                        or Cloud Hypervisor's boot=N[,max=M][,topology=T:C:D:P]";
const CPU_HELP: &str =
    "CPU model, QEMU syntax: MODEL[,+FEAT][,-FEAT][,FEAT=on|off][,enforce]; `--cpu help` lists models and features";

/// Options of a VM run.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// vCPU topology (`--smp`).
    #[arg(
        long,
        value_name = "SMP",
        default_value = "1",
        value_parser = parse_smp,
        help = SMP_HELP
    )]
    pub smp: CpuTopology,

    /// CPU model (`--cpu`).
    #[arg(
        long,
        value_name = "MODEL",
        default_value = crate::DEFAULT_CPU_MODEL,
        value_parser = parse_cpu,
        help = CPU_HELP
    )]
    pub cpu: CpuArg,

    /// Guest RAM, QEMU syntax: a number of MiB, or with a K/M/G/T suffix. Default: the NUMA
    /// nodes' total with --numa or --numa-cells (as libvirt sizes a domain), else 128M.
    #[arg(short = 'm', long = "memory", value_name = "SIZE", value_parser = parse_size)]
    pub memory: Option<u64>,

    /// What the embedded probe guest does on every vCPU (`--probe`).
    #[arg(
        long,
        value_name = "MODE",
        default_value = "report",
        value_parser = parse_probe_mode,
        help = "What the probe guest does on every vCPU: report (its CPUID view, the default), \
                spin=N (CPL3 loop, 0 = forever), barrier=ROUNDS[:WORK] (CPL3 barrier rounds), \
                exits=N (N port-I/O exits from CPL3), triple-fault, bad-fetch"
    )]
    pub probe: ProbeMode,

    /// Write what each vCPU saw in the raw format of `cpuid -r` (decode with `cpuid -f FILE`).
    #[arg(long, value_name = "PATH")]
    pub dump_cpuid: Option<PathBuf>,

    /// Write what each vCPU saw as a hwloc-gather-cpuid directory
    /// (`HWLOC_CPUID_PATH=DIR HWLOC_COMPONENTS=x86,stop lstopo`).
    #[arg(long, value_name = "DIR")]
    pub dump_cpuid_hwloc: Option<PathBuf>,

    /// Stop the VM with an error if the guest has not finished after this many seconds (0: never).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub timeout: u64,

    /// Open a QMP monitor: unix:PATH,server,wait=off (QEMU's spelling) or a plain PATH.
    /// With a monitor the VM stays up after the guest finishes, until `quit`.
    #[arg(long, value_name = "SPEC", value_parser = parse_qmp)]
    pub qmp: Option<QmpOption>,

    /// A libvirt domain definition as the VM's configuration (`<vcpu>`, `<cputune>`,
    /// `<cpu>`, `<numa>`, `<memory>`, `<os>`, the serial console...); options given here
    /// override the file's. Elements the VMM does not act on are named in one warning.
    #[arg(long, value_name = "FILE")]
    pub domain: Option<PathBuf>,

    /// VM name, shown in the host ledger and messages (QEMU's -name).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// VM UUID, 8-4-4-4-12 hex digits (QEMU's -uuid); QMP query-uuid reports it.
    #[arg(long, value_name = "UUID", value_parser = parse_uuid)]
    pub uuid: Option<String>,

    /// Placement and over-commit options.
    #[command(flatten)]
    pub placement: PlacementArgs,

    /// Linux guest options (`--kernel` boots a kernel instead of the probe guest).
    #[command(flatten)]
    pub linux: LinuxArgs,

    /// Complete in user space the instructions a software KVM backend cannot emulate (int3,
    /// popcnt, clac/stac, SSE moves...): on or off.
    #[arg(long, value_name = "on|off", default_value = "on")]
    pub emulation_fallback: vcpu_lifecycle::EmulationFallback,

    /// Complete the 64-bit SYSCALLs a software KVM backend leaves at CPL3 (from a hardware
    /// breakpoint on the guest's #PF handler): on or off. Linux user space needs it on such
    /// a host (this project's); it takes over guest debugging (KVM_SET_GUEST_DEBUG) and
    /// costs two exits per guest page fault.
    #[arg(long, value_name = "on|off", default_value = "off")]
    pub syscall_completion: vcpu_lifecycle::SyscallCompletion,

    /// QEMU's everyday switches.
    #[command(flatten)]
    pub qemu: QemuArgs,

    /// Seccomp and privileges.
    #[command(flatten)]
    pub security: SecurityArgs,
}

/// How the VMM confines itself (docs/SECURITY.md).
#[derive(Debug, Args)]
pub struct SecurityArgs {
    /// Seccomp filters on every thread: on (a forbidden syscall ends the VMM, naming it),
    /// log (the kernel logs it and it is allowed), off.
    #[arg(long, value_name = "MODE", default_value = "on", value_parser = parse_seccomp)]
    pub seccomp: vmm_sandbox::SeccompMode,
    /// QEMU's spelling of --seccomp: on|off, optionally with obsolete=, elevateprivileges=,
    /// spawn= and resourcecontrol= (accepted; the filters deny all of these).
    #[arg(long, value_name = "on|off", value_parser = parse_sandbox, conflicts_with = "seccomp")]
    pub sandbox: Option<vmm_sandbox::SeccompMode>,
    /// Run as USER or USER:GROUP once /dev/kvm is open and the sockets are bound (QEMU's -runas);
    /// give the ledger a directory that user can write (--ledger-dir).
    #[arg(long, value_name = "USER[:GROUP]", value_parser = parse_runas)]
    pub runas: Option<vmm_sandbox::RunAs>,
    /// Test only: each vCPU thread makes a forbidden syscall before it first enters the guest.
    #[arg(long, hide = true)]
    pub seccomp_selftest: bool,
}

/// A UUID as QEMU takes it: 32 hex digits in groups of 8-4-4-4-12; kept lower-case.
fn parse_uuid(s: &str) -> Result<String, String> {
    let groups: Vec<&str> = s.split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let hex = groups
        .iter()
        .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()));
    if lens != [8, 4, 4, 4, 12] || !hex {
        return Err(format!(
            "'{s}' is not a UUID (8-4-4-4-12 hex digits, e.g. 6d3b8c2a-1f4e-4b7a-9c1d-2e5f8a9b0c3d)"
        ));
    }
    Ok(s.to_ascii_lowercase())
}

fn parse_seccomp(s: &str) -> Result<vmm_sandbox::SeccompMode, String> {
    vmm_sandbox::parse_seccomp(s).map_err(|e| e.to_string())
}

fn parse_sandbox(s: &str) -> Result<vmm_sandbox::SeccompMode, String> {
    vmm_sandbox::parse_sandbox(s).map_err(|e| e.to_string())
}

fn parse_runas(s: &str) -> Result<vmm_sandbox::RunAs, String> {
    vmm_sandbox::parse_runas(s).map_err(|e| e.to_string())
}

/// Options of a Linux guest (docs/LINUX.md) and the NUMA options both VMs take.
#[derive(Debug, Args)]
pub struct LinuxArgs {
    /// Boot this Linux kernel (uncompressed vmlinux ELF, or bzImage) instead of the probe.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Initial ramdisk for the kernel.
    #[arg(long, value_name = "PATH", requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line. Default for Linux: console=ttyS0 earlyprintk=serial,ttyS0
    /// reboot=k panic=-1; for a Multiboot kernel: empty.
    #[arg(long, value_name = "CMDLINE", requires = "kernel")]
    pub append: Option<String>,
    /// NUMA node or distance, QEMU syntax (repeatable): node[,nodeid=N][,cpus=A[-B]][,mem=SIZE|,memdev=ID]
    /// or dist,src=A,dst=B,val=V. For the probe and for --kernel: per-node RAM, and AMD
    /// CPUID node ids (leaf 0x8000001e) from the nodes.
    #[arg(long, value_name = "SPEC", value_parser = parse_numa)]
    pub numa: Vec<guest_memory::numa::NumaOption>,
    /// NUMA cells from a file instead of --numa: a libvirt domain XML (its `<cpu><numa><cell
    /// id= cpus= memory= unit=>` elements and their `<distances>`) or a JSON list of cells
    /// (`[{"id": 0, "cpus": "0-3", "memory": 524288}]`, memory in KiB unless "unit" says).
    #[arg(long, value_name = "PATH", conflicts_with = "numa", value_parser = parse_numa_cells)]
    pub numa_cells: Option<NumaCellsFile>,
    /// Memory backend object, QEMU syntax (repeatable): memory-backend-{ram,memfd,file},id=ID,size=SIZE[,...];
    /// a --numa node uses it with memdev=ID (probe and --kernel).
    #[arg(long, value_name = "SPEC", value_parser = parse_object)]
    pub object: Vec<guest_memory::MemoryBackendConfig>,
    /// COM1's backend: stdio (default; stdin feeds COM1), file:PATH, null,
    /// unix:PATH,server[,wait=off] or tcp:HOST:PORT,server[,wait=off].
    #[arg(long, value_name = "BACKEND", requires = "kernel", default_value = "stdio", value_parser = crate::linux::parse_serial)]
    pub serial: crate::linux::SerialOutput,
}

fn parse_numa(s: &str) -> Result<guest_memory::numa::NumaOption, String> {
    guest_memory::parse_numa(s).map_err(|e| e.to_string())
}

/// The `-numa` options a `--numa-cells` file describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumaCellsFile(pub Vec<guest_memory::numa::NumaOption>);

impl LinuxArgs {
    /// Fold `--numa-cells` into `numa` (the two exclude each other).
    pub fn absorb_numa_cells(&mut self) {
        if let Some(NumaCellsFile(options)) = self.numa_cells.take() {
            self.numa = options;
        }
    }
}

/// Read a `--numa-cells` file: libvirt domain XML when it starts with `<`, JSON otherwise.
fn parse_numa_cells(path: &str) -> Result<NumaCellsFile, String> {
    use guest_memory::numa::{cells_from_libvirt_xml, NumaCell};
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let cells = if text.trim_start().starts_with('<') {
        cells_from_libvirt_xml(&text).map_err(|e| format!("{path}: {e}"))?
    } else {
        serde_json::from_str::<Vec<NumaCell>>(&text)
            .map_err(|e| format!("{path}: not a JSON list of NUMA cells: {e}"))?
    };
    guest_memory::NumaConfig::from_cells(&cells)
        .map(|c| NumaCellsFile(c.options))
        .map_err(|e| format!("{path}: {e}"))
}

fn parse_object(s: &str) -> Result<guest_memory::MemoryBackendConfig, String> {
    guest_memory::parse_memory_backend(s).map_err(|e| e.to_string())
}

/// Where vCPU threads run (libvirt's vcpupin/cpuset/emulatorpin) and over-commit admission.
#[derive(Debug, Args)]
pub struct PlacementArgs {
    /// Pin vCPUs to host CPUs: VCPU:CPUSET, e.g. 0:2 or 0-3:4-7,^5 (repeatable; overrides --cpuset).
    #[arg(long = "vcpupin", value_name = "VCPU:CPUSET", value_parser = parse_vcpupin)]
    pub vcpupin: Vec<VcpuPin>,
    /// Host CPUs for every vCPU of the VM, libvirt syntax (1-4,^3,6) or r for all.
    #[arg(long, value_name = "CPUSET", value_parser = parse_cpu_spec)]
    pub cpuset: Option<CpuSpec>,
    /// Host CPUs for the VMM's own (non-vCPU) threads.
    #[arg(long, value_name = "CPUSET", value_parser = parse_cpu_spec)]
    pub emulatorpin: Option<CpuSpec>,
    /// Policy for vCPUs without a pin: unpinned, dedicated (one host CPU each), or shared:CPUSET.
    #[arg(long, value_name = "POLICY", default_value = "unpinned", value_parser = parse_policy)]
    pub placement: PlacementPolicy,
    /// Print the placement plan and exit without starting the VM.
    #[arg(long)]
    pub placement_plan: bool,
    /// Over-commit admission: warn (admit with a warning, as QEMU) or strict (refuse).
    #[arg(long, value_name = "MODE", default_value = "warn", value_parser = ["warn", "strict"])]
    pub overcommit: String,
    /// vCPUs per shared host CPU that admission allows, counting every VM on the host.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub overcommit_ratio: u32,
    /// Allow more than 10 vCPUs per physical core.
    #[arg(long)]
    pub force_overcommit: bool,
    /// Directory of the host-wide placement ledger (default /run/kvm-cpu-virt/placement).
    #[arg(long, value_name = "DIR")]
    pub ledger_dir: Option<PathBuf>,
}

impl PlacementArgs {
    /// The library's options.
    pub fn into_options(self) -> PlacementOptions {
        let strict = self.overcommit == "strict";
        PlacementOptions {
            config: PlacementConfig {
                policy: self.placement,
                cpuset: self.cpuset,
                vcpu_pins: self.vcpupin,
                emulator_pin: self.emulatorpin,
            },
            overcommit: OvercommitPolicy {
                shared_ratio: self.overcommit_ratio,
                force: self.force_overcommit,
                strict,
                warn_only: !strict,
                ..OvercommitPolicy::default()
            },
            ledger_dir: self.ledger_dir,
        }
    }
}

fn parse_qmp(s: &str) -> Result<QmpOption, String> {
    parse_qmp_option(s).map_err(|e| e.to_string())
}

fn parse_vcpupin(s: &str) -> Result<VcpuPin, String> {
    VcpuPin::parse(s).map_err(|e| e.to_string())
}

fn parse_cpu_spec(s: &str) -> Result<CpuSpec, String> {
    CpuSpec::parse(s).map_err(|e| e.to_string())
}

fn parse_policy(s: &str) -> Result<PlacementPolicy, String> {
    PlacementPolicy::parse(s).map_err(|e| e.to_string())
}

/// `--cpu`: a model spec, or the request for the list.
#[derive(Debug, Clone)]
pub enum CpuArg {
    /// `--cpu help`.
    Help,
    /// A parsed model spec.
    Spec(ModelSpec),
}

fn parse_cpu(s: &str) -> Result<CpuArg, String> {
    if s == "help" || s == "?" {
        return Ok(CpuArg::Help);
    }
    cpuid_model::spec::parse(s)
        .map(CpuArg::Spec)
        .map_err(|e| e.to_string())
}

fn parse_smp(s: &str) -> Result<CpuTopology, String> {
    cpu_topology::smp::parse_smp(s).map_err(|e| e.to_string())
}

fn parse_size(s: &str) -> Result<u64, String> {
    guest_memory::parse_mem_size(s).map_err(|e| e.to_string())
}

/// Parse `--probe`.
pub fn parse_probe_mode(s: &str) -> Result<ProbeMode, String> {
    let count = |v: &str, what: &str| {
        v.parse::<u64>()
            .map_err(|_| format!("{what} must be a whole number, got '{v}'"))
    };
    match s.split_once('=') {
        None => match s {
            "report" => Ok(ProbeMode::Report),
            "triple-fault" => Ok(ProbeMode::TripleFault),
            "bad-fetch" => Ok(ProbeMode::BadFetch),
            "spin" => Ok(ProbeMode::Spin { iterations: 0 }),
            _ => Err(format!(
                "unknown probe mode '{s}' (expected report, spin=N, barrier=ROUNDS[:WORK], exits=N, triple-fault, bad-fetch)"
            )),
        },
        Some(("spin", n)) => Ok(ProbeMode::Spin { iterations: count(n, "spin iterations")? }),
        Some(("exits", n)) => Ok(ProbeMode::Exits { count: count(n, "exits")? }),
        Some(("barrier", v)) => {
            let (rounds, work) = v.split_once(':').unwrap_or((v, "1000"));
            let rounds = count(rounds, "barrier rounds")?;
            if rounds == 0 {
                return Err("barrier rounds must be at least 1".to_string());
            }
            Ok(ProbeMode::Barrier { rounds, work: count(work, "barrier work")? })
        }
        Some((k, _)) => Err(format!("probe mode '{k}' takes no value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    /// A libvirt domain's cells and the `-numa` options a QEMU user would type for them
    /// give the same configuration.
    #[test]
    fn numa_cells_from_libvirt_xml_equal_the_numa_options() {
        let dir = tempfile::tempdir().unwrap();
        let xml = dir.path().join("domain.xml");
        std::fs::write(
            &xml,
            "<domain><cpu><numa>\
             <cell id='0' cpus='0-1' memory='64' unit='MiB'><distances>\
             <sibling id='0' value='10'/><sibling id='1' value='21'/></distances></cell>\
             <cell id='1' cpus='2-3' memory='65536'/>\
             </numa></cpu></domain>",
        )
        .unwrap();
        let mut from_file = Cli::try_parse_from(v(&[
            "vmm",
            "--numa-cells",
            xml.to_str().unwrap(),
            "--kernel",
            "k",
        ]))
        .unwrap();
        from_file.run.linux.absorb_numa_cells();
        let from_options = Cli::try_parse_from(v(&[
            "vmm",
            "--kernel",
            "k",
            "--numa",
            "node,nodeid=0,cpus=0-1,mem=64M",
            "--numa",
            "node,nodeid=1,cpus=2-3,mem=64M",
            "--numa",
            "dist,src=0,dst=0,val=10",
            "--numa",
            "dist,src=0,dst=1,val=21",
        ]))
        .unwrap();
        assert_eq!(from_file.run.linux.numa, from_options.run.linux.numa);
    }

    #[test]
    fn probe_modes() {
        let rows: &[(&str, Result<ProbeMode, &str>)] = &[
            ("report", Ok(ProbeMode::Report)),
            ("spin=10", Ok(ProbeMode::Spin { iterations: 10 })),
            ("spin", Ok(ProbeMode::Spin { iterations: 0 })),
            (
                "barrier=5",
                Ok(ProbeMode::Barrier {
                    rounds: 5,
                    work: 1000,
                }),
            ),
            ("barrier=5:7", Ok(ProbeMode::Barrier { rounds: 5, work: 7 })),
            ("triple-fault", Ok(ProbeMode::TripleFault)),
            ("exits=3", Ok(ProbeMode::Exits { count: 3 })),
            ("barrier=0", Err("barrier rounds must be at least 1")),
            (
                "spin=x",
                Err("spin iterations must be a whole number, got 'x'"),
            ),
            ("report=1", Err("probe mode 'report' takes no value")),
        ];
        for (input, want) in rows {
            assert_eq!(
                parse_probe_mode(input),
                (*want).map_err(str::to_string),
                "{input}"
            );
        }
        assert!(parse_probe_mode("dance")
            .unwrap_err()
            .starts_with("unknown probe mode 'dance'"));
    }

    #[test]
    fn uuid_rows() {
        assert_eq!(
            parse_uuid("6D3B8C2A-1F4E-4B7A-9C1D-2E5F8A9B0C3D").unwrap(),
            "6d3b8c2a-1f4e-4b7a-9c1d-2e5f8a9b0c3d"
        );
        for bad in [
            "",
            "6d3b8c2a1f4e4b7a9c1d2e5f8a9b0c3d",
            "6d3b8c2a-1f4e-4b7a-9c1d-2e5f8a9b0c3g",
        ] {
            assert!(
                parse_uuid(bad).unwrap_err().contains("is not a UUID"),
                "{bad}"
            );
        }
    }
}

//! `VmmConfig`: what a VM run needs, already parsed and typed.

use std::path::PathBuf;
use std::time::Duration;

use cpu_topology::CpuTopology;
use cpuid_model::spec::ModelSpec;
use guest_memory::{MemoryBackendConfig, NumaConfig};
use probe_guest::ProbeMode;

use crate::cli::RunArgs;
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
    /// `--numa` options (empty: no NUMA description). Resolved by the same rules as for a
    /// Linux guest ([`crate::guest_setup::resolve_numa`]).
    pub numa: NumaConfig,
    /// `--object memory-backend-*` objects that `--numa node,memdev=` may name.
    pub objects: Vec<MemoryBackendConfig>,
    /// What the probe guest does.
    pub probe: ProbeMode,
    /// Write every vCPU's CPUID view in `cpuid -r` format here.
    pub dump_cpuid: Option<PathBuf>,
    /// Write every vCPU's CPUID view as a hwloc-gather-cpuid directory here.
    pub dump_cpuid_hwloc: Option<PathBuf>,
    /// Give up on a guest that has not finished after this long.
    pub timeout: Option<Duration>,
    /// VM name (`--name`), for the host ledger and messages.
    pub name: Option<String>,
    /// Where the vCPU and emulator threads run, and over-commit admission.
    pub placement: PlacementOptions,
}

impl VmmConfig {
    /// A config for `topology` with every other value at its default.
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
            probe: ProbeMode::Report,
            dump_cpuid: None,
            dump_cpuid_hwloc: None,
            timeout: Some(Duration::from_secs(300)),
            name: None,
            placement: PlacementOptions::default(),
        }
    }
}

impl VmmConfig {
    /// Build from parsed command-line options. `cpu` must not be the `help` request.
    pub fn from_args(args: RunArgs, cpu: ModelSpec) -> Self {
        Self {
            topology: args.smp,
            memory: args.memory,
            cpu,
            numa: NumaConfig {
                options: args.linux.numa,
            },
            objects: args.linux.object,
            probe: args.probe,
            dump_cpuid: args.dump_cpuid,
            dump_cpuid_hwloc: args.dump_cpuid_hwloc,
            timeout: (args.timeout > 0).then(|| Duration::from_secs(args.timeout)),
            name: args.name,
            placement: args.placement.into_options(),
        }
    }
}

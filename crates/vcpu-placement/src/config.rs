//! What the user asks for: `--vcpupin`, `--cpuset`, `--emulatorpin` and a policy.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use cpu_topology::cpuset::{CpuSetError, HostCpuSet, MAX_HOST_CPUS};
use cpu_topology::VcpuIndex;

/// Largest vCPU index a `--vcpupin` may name before the VM's size is known (KVM's
/// `KVM_CAP_MAX_VCPU_ID` on current kernels).
pub const MAX_VCPU_INDEX: u32 = 4096;

/// A user-written set of host CPUs: a libvirt cpuset, or `r` for every online host CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuSpec {
    /// `r`: every online host CPU (as `virsh vcpupin` takes it).
    All,
    /// Explicit CPUs.
    Cpus(HostCpuSet),
}

impl CpuSpec {
    /// Parses a libvirt cpuset (`1-4,^3,6`) or `r`.
    pub fn parse(text: &str) -> Result<Self, CpuSetError> {
        if text.trim() == "r" {
            return Ok(CpuSpec::All);
        }
        HostCpuSet::parse_libvirt(text, MAX_HOST_CPUS).map(CpuSpec::Cpus)
    }

    /// The CPUs this spec names, given the host's online CPUs.
    pub fn resolve(&self, online: &HostCpuSet) -> HostCpuSet {
        match self {
            CpuSpec::All => online.clone(),
            CpuSpec::Cpus(set) => set.clone(),
        }
    }
}

impl fmt::Display for CpuSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpuSpec::All => f.write_str("r"),
            CpuSpec::Cpus(set) => write!(f, "{set}"),
        }
    }
}

impl FromStr for CpuSpec {
    type Err = CpuSetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CpuSpec::parse(s)
    }
}

/// Why a `--vcpupin` argument was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No `:` between the vCPU part and the CPU part.
    #[error("--vcpupin `{text}` is not VCPU:CPUSET (for example `0:2` or `0-3:4-7`)")]
    MissingColon {
        /// The argument.
        text: String,
    },
    /// The vCPU part did not parse.
    #[error("--vcpupin `{text}`: bad vCPU list")]
    Vcpus {
        /// The argument.
        text: String,
        /// The grammar error.
        #[source]
        source: CpuSetError,
    },
    /// The host CPU part did not parse.
    #[error("--vcpupin `{text}`: bad host CPU set")]
    Cpus {
        /// The argument.
        text: String,
        /// The grammar error.
        #[source]
        source: CpuSetError,
    },
    /// A `Shared` policy pool did not parse.
    #[error("bad shared pool `{text}`")]
    Pool {
        /// The argument.
        text: String,
        /// The grammar error.
        #[source]
        source: CpuSetError,
    },
}

/// One `--vcpupin VCPUS:CPUSET`: the vCPUs (`0`, `0-3`, `0,2`) and the host CPUs they may run
/// on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcpuPin {
    /// The vCPUs this pin applies to.
    pub vcpus: BTreeSet<VcpuIndex>,
    /// Where they may run.
    pub cpus: CpuSpec,
}

impl VcpuPin {
    /// Parses `VCPUS:CPUSET`. VCPUS uses the libvirt grammar (`0-3,^2`); CPUSET the libvirt
    /// grammar or `r`.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let (vcpus, cpus) = text
            .split_once(':')
            .ok_or_else(|| ConfigError::MissingColon {
                text: text.to_string(),
            })?;
        let vcpus = HostCpuSet::parse_libvirt(vcpus, MAX_VCPU_INDEX)
            .map_err(|source| ConfigError::Vcpus {
                text: text.to_string(),
                source,
            })?
            .iter()
            .map(|c| VcpuIndex(c.0))
            .collect();
        let cpus = CpuSpec::parse(cpus).map_err(|source| ConfigError::Cpus {
            text: text.to_string(),
            source,
        })?;
        Ok(VcpuPin { vcpus, cpus })
    }
}

impl FromStr for VcpuPin {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VcpuPin::parse(s)
    }
}

/// How vCPUs without an explicit pin are placed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PlacementPolicy {
    /// No pinning: the threads keep the affinity they inherit (or float over `--cpuset`).
    #[default]
    Unpinned,
    /// Every vCPU floats over a pool of host CPUs shared with other VMs.
    Shared {
        /// The pool.
        pool: HostCpuSet,
    },
    /// One host CPU per vCPU, not shared with another vCPU of this VM; prefers isolated CPUs
    /// and avoids SMT siblings of cores already used while it can.
    Dedicated,
}

impl PlacementPolicy {
    /// Parses `unpinned`, `dedicated` or `shared:CPUSET` (libvirt grammar).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        match text.trim() {
            "unpinned" => Ok(PlacementPolicy::Unpinned),
            "dedicated" => Ok(PlacementPolicy::Dedicated),
            other => {
                let pool = other.strip_prefix("shared:").unwrap_or(other);
                HostCpuSet::parse_libvirt(pool, MAX_HOST_CPUS)
                    .map(|pool| PlacementPolicy::Shared { pool })
                    .map_err(|source| ConfigError::Pool {
                        text: text.to_string(),
                        source,
                    })
            }
        }
    }

    /// Short name: `unpinned`, `shared` or `dedicated`.
    pub fn name(&self) -> &'static str {
        match self {
            PlacementPolicy::Unpinned => "unpinned",
            PlacementPolicy::Shared { .. } => "shared",
            PlacementPolicy::Dedicated => "dedicated",
        }
    }
}

/// Everything the user said about placement for one VM.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlacementConfig {
    /// Policy for vCPUs without a `--vcpupin`.
    pub policy: PlacementPolicy,
    /// `--cpuset`: the host CPUs the whole VM may use; `--vcpupin` overrides it per vCPU.
    pub cpuset: Option<CpuSpec>,
    /// `--vcpupin`s, in order; a later pin of the same vCPU replaces an earlier one.
    pub vcpu_pins: Vec<VcpuPin>,
    /// `--emulatorpin`: host CPUs for the VMM's non-vCPU threads.
    pub emulator_pin: Option<CpuSpec>,
}

//! Cloud Hypervisor's `--cpus boot=N[,max=M][,topology=T:C:D:P]` form.

use std::fmt;

use super::{parse_number, SmpError, SmpLevels};
use crate::topology::CpuTopology;

/// Cloud Hypervisor's `topology=threads_per_core:cores_per_die:dies_per_package:packages`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChTopology {
    /// Threads per core.
    pub threads_per_core: u32,
    /// Cores per die.
    pub cores_per_die: u32,
    /// Dies per package.
    pub dies_per_package: u32,
    /// Packages (sockets).
    pub packages: u32,
}

impl ChTopology {
    /// Product of the four parts.
    pub fn product(&self) -> u64 {
        u64::from(self.threads_per_core)
            * u64::from(self.cores_per_die)
            * u64::from(self.dies_per_package)
            * u64::from(self.packages)
    }

    pub(super) fn parse(value: &str) -> Result<Self, SmpError> {
        let invalid = || SmpError::InvalidChTopology {
            value: value.to_owned(),
        };
        let mut parts = value.split(':');
        let mut next = |key: &'static str| -> Result<u32, SmpError> {
            let part = parts.next().ok_or_else(invalid)?;
            parse_number(key, part)
        };
        let t = Self {
            threads_per_core: next("threads_per_core")?,
            cores_per_die: next("cores_per_die")?,
            dies_per_package: next("dies_per_package")?,
            packages: next("packages")?,
        };
        if parts.next().is_some() {
            return Err(invalid());
        }
        Ok(t)
    }
}

impl fmt::Display for ChTopology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.threads_per_core, self.cores_per_die, self.dies_per_package, self.packages
        )
    }
}

/// Cloud Hypervisor's `--cpus boot=N[,max=M][,topology=T:C:D:P]` (the topology part of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChCpusConfig {
    /// vCPUs present at boot.
    pub boot: u32,
    /// vCPU slots; defaults to `boot`.
    pub max: Option<u32>,
    /// Shape of the slots; without it the guest sees one package of `max` cores.
    pub topology: Option<ChTopology>,
}

impl ChCpusConfig {
    /// Check the values and build the topology, with Cloud Hypervisor's rules: every
    /// value > 0, `max >= boot`, and the topology's product equals `max` exactly (nothing
    /// is computed). Without a topology the guest gets one socket of `max` single-threaded
    /// cores. Cloud Hypervisor has no module level: modules is 1. As for QEMU's form, the
    /// packed APIC ids must fit in 32 bits.
    pub fn resolve(&self) -> Result<CpuTopology, SmpError> {
        let mut values = vec![("boot", self.boot)];
        values.extend(self.max.map(|m| ("max", m)));
        if let Some(t) = &self.topology {
            values.extend([
                ("threads_per_core", t.threads_per_core),
                ("cores_per_die", t.cores_per_die),
                ("dies_per_package", t.dies_per_package),
                ("packages", t.packages),
            ]);
        }
        if let Some(&(param, _)) = values.iter().find(|(_, v)| *v == 0) {
            return Err(SmpError::ZeroValue { param });
        }
        let max = self.max.unwrap_or(self.boot);
        if max < self.boot {
            return Err(SmpError::ChMaxBelowBoot {
                boot: self.boot,
                max,
            });
        }
        let topology = self.topology.unwrap_or(ChTopology {
            threads_per_core: 1,
            cores_per_die: max,
            dies_per_package: 1,
            packages: 1,
        });
        let product = topology.product();
        if product != u64::from(max) {
            return Err(SmpError::ChTopologyMismatch {
                topology,
                product,
                max,
            });
        }
        SmpLevels {
            sockets: topology.packages,
            dies: topology.dies_per_package,
            modules: 1,
            cores: topology.cores_per_die,
            threads: topology.threads_per_core,
        }
        .build(self.boot)
    }
}

impl fmt::Display for ChCpusConfig {
    /// `boot=N[,max=M][,topology=T:C:D:P]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "boot={}", self.boot)?;
        if let Some(max) = self.max {
            write!(f, ",max={max}")?;
        }
        if let Some(t) = &self.topology {
            write!(f, ",topology={t}")?;
        }
        Ok(())
    }
}

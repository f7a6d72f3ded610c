//! From a [`PlacementConfig`] and a [`HostCpuInventory`] to a [`PlacementPlan`]: where every
//! vCPU thread and the emulator threads may run, and why.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use cpu_topology::cpuset::{HostCpuId, HostCpuSet};
use cpu_topology::host::HostCpuInventory;
use cpu_topology::VcpuIndex;
use serde::{Deserialize, Serialize};

use crate::config::{PlacementConfig, PlacementPolicy};

/// Why a plan could not be made. Every message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// The VM has no vCPU.
    #[error("a VM needs at least one vCPU to place")]
    NoVcpus,
    /// A `--vcpupin` for a vCPU the VM does not have.
    #[error("--vcpupin names vCPU {vcpu}, but the VM has {vcpus} vCPUs (0-{last})", last = vcpus - 1)]
    NoSuchVcpu {
        /// The vCPU named.
        vcpu: VcpuIndex,
        /// The VM's vCPU count.
        vcpus: u32,
    },
    /// Host CPUs that are not possible on this host.
    #[error("{what} names host CPUs {cpus} that this host does not have (possible: {possible})")]
    NoSuchHostCpu {
        /// Which option (`--cpuset`, `--vcpupin for vCPU 0`, ...).
        what: String,
        /// The CPUs the host does not have.
        cpus: HostCpuSet,
        /// The host's possible CPUs.
        possible: HostCpuSet,
    },
    /// Host CPUs that exist but are offline.
    #[error("{what} names offline host CPUs {cpus} (online: {online})")]
    OfflineCpu {
        /// Which option.
        what: String,
        /// The offline CPUs.
        cpus: HostCpuSet,
        /// The host's online CPUs.
        online: HostCpuSet,
    },
    /// The shared pool and `--cpuset` have no CPU in common.
    #[error("the shared pool {pool} and --cpuset {cpuset} have no host CPU in common")]
    EmptyPool {
        /// The pool.
        pool: HostCpuSet,
        /// The VM-wide set.
        cpuset: HostCpuSet,
    },
    /// Not enough distinct host CPUs for the dedicated policy.
    #[error(
        "dedicated placement needs {needed} host CPUs for {needed} unpinned vCPUs, \
         but only {available} are free ({free_text}); add CPUs to --cpuset or use a shared policy",
        free_text = none_if_empty(free)
    )]
    DedicatedUnsatisfiable {
        /// Host CPUs needed (one per vCPU without an explicit pin).
        needed: usize,
        /// Free host CPUs.
        available: usize,
        /// Which CPUs are free (may be empty).
        free: HostCpuSet,
    },
}

fn none_if_empty(set: &HostCpuSet) -> String {
    if set.is_empty() {
        "none".to_string()
    } else {
        set.to_cpu_list()
    }
}

/// Why a vCPU (or the emulator) got its CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlacementReason {
    /// An explicit `--vcpupin`.
    VcpuPin,
    /// The VM-wide `--cpuset`.
    Cpuset,
    /// The shared pool of the `Shared` policy.
    SharedPool,
    /// Chosen by the `Dedicated` policy.
    Dedicated {
        /// The CPU is isolated (`isolcpus=`).
        isolated: bool,
        /// The CPU's SMT sibling already serves another vCPU of this VM.
        shares_core: bool,
    },
    /// Not pinned: the thread keeps the affinity it inherits.
    Unpinned,
    /// An explicit `--emulatorpin`.
    EmulatorPin,
    /// Dedicated policy: the CPUs no vCPU uses.
    EmulatorSpare,
    /// Dedicated policy with no spare CPU: the emulator shares the vCPUs' CPUs.
    EmulatorWithVcpus,
}

impl fmt::Display for PlacementReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlacementReason::VcpuPin => f.write_str("--vcpupin"),
            PlacementReason::Cpuset => f.write_str("--cpuset"),
            PlacementReason::SharedPool => f.write_str("shared pool"),
            PlacementReason::Dedicated {
                isolated,
                shares_core,
            } => {
                f.write_str("dedicated")?;
                if *isolated {
                    f.write_str(", isolated")?;
                }
                f.write_str(if *shares_core {
                    ", SMT sibling of another vCPU"
                } else {
                    ", own core"
                })
            }
            PlacementReason::Unpinned => f.write_str("unpinned (inherited affinity)"),
            PlacementReason::EmulatorPin => f.write_str("--emulatorpin"),
            PlacementReason::EmulatorSpare => f.write_str("CPUs no vCPU uses"),
            PlacementReason::EmulatorWithVcpus => f.write_str("no spare CPU: shares the vCPUs'"),
        }
    }
}

/// Where one thread (or group of threads) may run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Allowed host CPUs.
    pub cpus: HostCpuSet,
    /// Why.
    pub reason: PlacementReason,
}

impl Placement {
    /// Whether applying the plan sets this thread's affinity. An unpinned thread keeps what it
    /// inherited, so a VMM started under `taskset` stays inside that mask.
    pub fn is_pinned(&self) -> bool {
        self.reason != PlacementReason::Unpinned
    }
}

/// Something legal but probably not what the user wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlacementWarning {
    /// Pinned vCPUs run on non-isolated CPUs although the host isolates CPUs.
    OutsideIsolated {
        /// The vCPUs.
        vcpus: Vec<VcpuIndex>,
        /// The non-isolated CPUs they use.
        cpus: HostCpuSet,
        /// The host's isolated CPUs.
        isolated: HostCpuSet,
    },
    /// Under the dedicated policy, explicit pins put several vCPUs on one host CPU.
    SharedUnderDedicated {
        /// The host CPU.
        cpu: HostCpuId,
        /// The vCPUs sharing it.
        vcpus: Vec<VcpuIndex>,
    },
    /// Under the dedicated policy, no CPU is left for the emulator threads.
    EmulatorSharesVcpuCpus {
        /// The CPUs the emulator shares with vCPUs.
        cpus: HostCpuSet,
    },
}

/// Formats vCPU indices compactly (`0-3,6`).
pub fn format_vcpus(vcpus: &[VcpuIndex]) -> String {
    vcpus
        .iter()
        .map(|v| HostCpuId(v.0))
        .collect::<HostCpuSet>()
        .to_cpu_list()
}

/// `vCPU 0` or `vCPUs 0-3`.
fn vcpu_noun(vcpus: &[VcpuIndex]) -> String {
    let s = if vcpus.len() == 1 { "" } else { "s" };
    format!("vCPU{s} {}", format_vcpus(vcpus))
}

impl fmt::Display for PlacementWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlacementWarning::OutsideIsolated {
                vcpus,
                cpus,
                isolated,
            } => write!(
                f,
                "{} {} on host CPUs {cpus} outside the isolated CPUs {isolated}",
                vcpu_noun(vcpus),
                if vcpus.len() == 1 { "runs" } else { "run" }
            ),
            PlacementWarning::SharedUnderDedicated { cpu, vcpus } => write!(
                f,
                "host CPU {cpu} is shared by vCPUs {} under the dedicated policy",
                format_vcpus(vcpus)
            ),
            PlacementWarning::EmulatorSharesVcpuCpus { cpus } => write!(
                f,
                "no host CPU is left for the emulator threads: they share {cpus} with dedicated vCPUs"
            ),
        }
    }
}

/// Per-vCPU host CPU sets plus the emulator's, with the reasons and warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementPlan {
    policy: &'static str,
    vcpus: Vec<Placement>,
    emulator: Placement,
    warnings: Vec<PlacementWarning>,
}

/// Checks that every CPU of `set` exists and is online.
fn validate(what: &str, set: &HostCpuSet, host: &HostCpuInventory) -> Result<(), PlacementError> {
    let known = host.possible().union(host.online());
    let missing = set.difference(&known);
    if !missing.is_empty() {
        return Err(PlacementError::NoSuchHostCpu {
            what: what.to_string(),
            cpus: missing,
            possible: host.possible().clone(),
        });
    }
    let offline = set.difference(host.online());
    if !offline.is_empty() {
        return Err(PlacementError::OfflineCpu {
            what: what.to_string(),
            cpus: offline,
            online: host.online().clone(),
        });
    }
    Ok(())
}

/// Dedicated choice order: isolated CPUs first (when the host has any among `free`); within
/// each class one CPU per core not yet touched, cores in (node, first CPU) order, then the
/// remaining SMT siblings in CPU order.
fn dedicated_order(
    host: &HostCpuInventory,
    free: &HostCpuSet,
    touched: &HostCpuSet,
) -> Vec<(HostCpuId, PlacementReason)> {
    let mut cores = host.cores();
    cores.sort_by_key(|c| (c.first().and_then(|cpu| host.node_of(cpu)), c.first()));
    let core_of = |cpu: HostCpuId| -> HostCpuSet {
        cores
            .iter()
            .find(|c| c.contains(cpu))
            .cloned()
            .unwrap_or_else(|| HostCpuSet::single(cpu))
    };
    let isolated = host.isolated().intersection(free);
    let classes = if isolated.is_empty() {
        vec![free.clone()]
    } else {
        vec![isolated.clone(), free.difference(&isolated)]
    };
    let mut used = touched.clone();
    let mut order = Vec::new();
    let pick = |cpu: HostCpuId, used: &mut HostCpuSet, order: &mut Vec<_>| {
        let shares_core = core_of(cpu).intersects(used);
        used.insert(cpu);
        order.push((
            cpu,
            PlacementReason::Dedicated {
                isolated: host.isolated().contains(cpu),
                shares_core,
            },
        ));
    };
    for class in classes {
        let mut taken = HostCpuSet::new();
        for core in &cores {
            if core.intersects(&used) {
                continue;
            }
            if let Some(cpu) = core.intersection(&class).first() {
                pick(cpu, &mut used, &mut order);
                taken.insert(cpu);
            }
        }
        for cpu in class.difference(&taken).iter() {
            pick(cpu, &mut used, &mut order);
        }
    }
    order
}

impl PlacementPlan {
    /// Computes the plan for a VM of `vcpus` vCPUs on `host`.
    pub fn compute(
        config: &PlacementConfig,
        host: &HostCpuInventory,
        vcpus: u32,
    ) -> Result<Self, PlacementError> {
        if vcpus == 0 {
            return Err(PlacementError::NoVcpus);
        }
        let online = host.online();
        let cpuset = match &config.cpuset {
            Some(spec) => {
                let set = spec.resolve(online);
                validate("--cpuset", &set, host)?;
                Some(set)
            }
            None => None,
        };
        let allowed = cpuset.clone().unwrap_or_else(|| online.clone());

        let mut slots: Vec<Option<Placement>> = vec![None; vcpus as usize];
        for pin in &config.vcpu_pins {
            let set = pin.cpus.resolve(online);
            let what = format!(
                "--vcpupin for {}",
                vcpu_noun(&pin.vcpus.iter().copied().collect::<Vec<_>>())
            );
            validate(&what, &set, host)?;
            for &vcpu in &pin.vcpus {
                let slot = slots
                    .get_mut(vcpu.0 as usize)
                    .ok_or(PlacementError::NoSuchVcpu { vcpu, vcpus })?;
                *slot = Some(Placement {
                    cpus: set.clone(),
                    reason: PlacementReason::VcpuPin,
                });
            }
        }
        let pinned_cpus = slots
            .iter()
            .flatten()
            .fold(HostCpuSet::new(), |acc, p| acc.union(&p.cpus));
        let unassigned = slots.iter().filter(|s| s.is_none()).count();

        let emulator_default;
        match &config.policy {
            PlacementPolicy::Unpinned => {
                let fill = match &cpuset {
                    Some(set) => Placement {
                        cpus: set.clone(),
                        reason: PlacementReason::Cpuset,
                    },
                    None => Placement {
                        cpus: online.clone(),
                        reason: PlacementReason::Unpinned,
                    },
                };
                emulator_default = fill.clone();
                slots
                    .iter_mut()
                    .filter(|s| s.is_none())
                    .for_each(|s| *s = Some(fill.clone()));
            }
            PlacementPolicy::Shared { pool } => {
                validate("the shared pool", pool, host)?;
                let eff = match &cpuset {
                    Some(set) => pool.intersection(set),
                    None => pool.clone(),
                };
                if eff.is_empty() {
                    return Err(PlacementError::EmptyPool {
                        pool: pool.clone(),
                        cpuset: allowed.clone(),
                    });
                }
                let fill = Placement {
                    cpus: eff,
                    reason: PlacementReason::SharedPool,
                };
                emulator_default = fill.clone();
                slots
                    .iter_mut()
                    .filter(|s| s.is_none())
                    .for_each(|s| *s = Some(fill.clone()));
            }
            PlacementPolicy::Dedicated => {
                let free = allowed.difference(&pinned_cpus);
                if free.len() < unassigned {
                    return Err(PlacementError::DedicatedUnsatisfiable {
                        needed: unassigned,
                        available: free.len(),
                        free,
                    });
                }
                let mut order = dedicated_order(host, &free, &pinned_cpus).into_iter();
                for slot in slots.iter_mut().filter(|s| s.is_none()) {
                    if let Some((cpu, reason)) = order.next() {
                        *slot = Some(Placement {
                            cpus: HostCpuSet::single(cpu),
                            reason,
                        });
                    }
                }
                let used = slots
                    .iter()
                    .flatten()
                    .fold(HostCpuSet::new(), |acc, p| acc.union(&p.cpus));
                let spare = allowed.difference(&used);
                let quiet = spare.difference(host.isolated());
                emulator_default = if !quiet.is_empty() {
                    Placement {
                        cpus: quiet,
                        reason: PlacementReason::EmulatorSpare,
                    }
                } else if !spare.is_empty() {
                    Placement {
                        cpus: spare,
                        reason: PlacementReason::EmulatorSpare,
                    }
                } else {
                    Placement {
                        cpus: allowed.clone(),
                        reason: PlacementReason::EmulatorWithVcpus,
                    }
                };
            }
        }
        // Every slot is filled above; a None here would be a bug, so fall back to unpinned.
        let vcpu_placements: Vec<Placement> = slots
            .into_iter()
            .map(|s| {
                s.unwrap_or(Placement {
                    cpus: online.clone(),
                    reason: PlacementReason::Unpinned,
                })
            })
            .collect();

        let emulator = match &config.emulator_pin {
            Some(spec) => {
                let set = spec.resolve(online);
                validate("--emulatorpin", &set, host)?;
                Placement {
                    cpus: set,
                    reason: PlacementReason::EmulatorPin,
                }
            }
            None => emulator_default,
        };

        let warnings = Self::collect_warnings(&config.policy, host, &vcpu_placements, &emulator);
        Ok(PlacementPlan {
            policy: config.policy.name(),
            vcpus: vcpu_placements,
            emulator,
            warnings,
        })
    }

    fn collect_warnings(
        policy: &PlacementPolicy,
        host: &HostCpuInventory,
        vcpus: &[Placement],
        emulator: &Placement,
    ) -> Vec<PlacementWarning> {
        let mut warnings = Vec::new();
        let isolated = host.isolated();
        if !isolated.is_empty() {
            let mut outside_vcpus = Vec::new();
            let mut outside_cpus = HostCpuSet::new();
            for (i, p) in vcpus.iter().enumerate() {
                let outside = p.cpus.difference(isolated);
                if p.is_pinned() && !outside.is_empty() {
                    outside_vcpus.push(VcpuIndex(i as u32));
                    outside_cpus = outside_cpus.union(&outside);
                }
            }
            if !outside_vcpus.is_empty() {
                warnings.push(PlacementWarning::OutsideIsolated {
                    vcpus: outside_vcpus,
                    cpus: outside_cpus,
                    isolated: isolated.clone(),
                });
            }
        }
        if *policy == PlacementPolicy::Dedicated {
            let mut users: BTreeMap<HostCpuId, BTreeSet<VcpuIndex>> = BTreeMap::new();
            for (i, p) in vcpus.iter().enumerate() {
                for cpu in p.cpus.iter() {
                    users.entry(cpu).or_default().insert(VcpuIndex(i as u32));
                }
            }
            for (cpu, who) in users {
                if who.len() > 1 {
                    warnings.push(PlacementWarning::SharedUnderDedicated {
                        cpu,
                        vcpus: who.into_iter().collect(),
                    });
                }
            }
            if emulator.reason == PlacementReason::EmulatorWithVcpus {
                warnings.push(PlacementWarning::EmulatorSharesVcpuCpus {
                    cpus: emulator.cpus.clone(),
                });
            }
        }
        warnings
    }

    /// The policy's short name.
    pub fn policy(&self) -> &'static str {
        self.policy
    }

    /// Number of vCPUs placed.
    pub fn vcpu_count(&self) -> u32 {
        self.vcpus.len() as u32
    }

    /// Placement of one vCPU.
    pub fn vcpu(&self, vcpu: VcpuIndex) -> Option<&Placement> {
        self.vcpus.get(vcpu.0 as usize)
    }

    /// Every vCPU's placement, index = vCPU.
    pub fn vcpus(&self) -> &[Placement] {
        &self.vcpus
    }

    /// Placement of the emulator (non-vCPU) threads.
    pub fn emulator(&self) -> &Placement {
        &self.emulator
    }

    /// Warnings, in a stable order.
    pub fn warnings(&self) -> &[PlacementWarning] {
        &self.warnings
    }

    /// Every host CPU some vCPU may use.
    pub fn vcpu_cpus(&self) -> HostCpuSet {
        self.vcpus
            .iter()
            .fold(HostCpuSet::new(), |acc, p| acc.union(&p.cpus))
    }

    /// Replaces one vCPU's placement (a live re-pin), validated against `host`.
    pub fn repin(
        &mut self,
        vcpu: VcpuIndex,
        cpus: HostCpuSet,
        host: &HostCpuInventory,
    ) -> Result<(), PlacementError> {
        let vcpus = self.vcpu_count();
        validate(&format!("vcpupin for vCPU {vcpu}"), &cpus, host)?;
        let slot = self
            .vcpus
            .get_mut(vcpu.0 as usize)
            .ok_or(PlacementError::NoSuchVcpu { vcpu, vcpus })?;
        *slot = Placement {
            cpus,
            reason: PlacementReason::VcpuPin,
        };
        Ok(())
    }
}

/// A table: one row per vCPU plus `emulator`, then one `warning:` line per warning.
impl fmt::Display for PlacementPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rows: Vec<(String, String, String)> = self
            .vcpus
            .iter()
            .enumerate()
            .map(|(i, p)| (i.to_string(), p.cpus.to_cpu_list(), p.reason.to_string()))
            .collect();
        rows.push((
            "emulator".to_string(),
            self.emulator.cpus.to_cpu_list(),
            self.emulator.reason.to_string(),
        ));
        let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(4);
        let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(9);
        writeln!(f, "placement policy: {}", self.policy)?;
        writeln!(f, "{:<w0$}  {:<w1$}  why", "vCPU", "host CPUs")?;
        for (a, b, c) in rows {
            writeln!(f, "{a:<w0$}  {b:<w1$}  {c}")?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}

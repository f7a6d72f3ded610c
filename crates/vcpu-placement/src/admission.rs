//! Over-commit admission: may one more VM start on this host?
//!
//! Counting rule: a vCPU allowed on `k` host CPUs adds `1/k` of a vCPU to each of them (it can
//! run on only one at a time, and the scheduler spreads it). Loads are fixed-point in units
//! of `1/LOAD_SCALE` vCPU, each share rounded up, so the admitted load is never below the
//! exact one and an admitted host is never above its limit in exact arithmetic.
//!
//! Limits: a host CPU that carries a dedicated vCPU (of any VM) takes at most 1 vCPU in total;
//! any other CPU takes at most [`OvercommitPolicy::shared_ratio`]; a physical core takes at
//! most [`OvercommitPolicy::core_cap`] unless `force`. Only the CPUs the new VM touches are
//! checked: an overload that is already there is not the new VM's fault.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt;

use cpu_topology::cpuset::{HostCpuId, HostCpuSet};
use cpu_topology::host::HostCpuInventory;
use serde::{Deserialize, Serialize};

use crate::plan::{PlacementPlan, PlacementReason};

/// Fixed-point unit of load: one vCPU is `LOAD_SCALE`. It is divisible by 1..=16, so the
/// shares of vCPUs floating over up to 16 CPUs are exact.
pub const LOAD_SCALE: u64 = 720_720;

/// Load on a host CPU or core, in vCPUs (fixed-point, see [`LOAD_SCALE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Load(pub u64);

impl Load {
    /// The share one vCPU floating over `k` CPUs puts on each (rounded up).
    pub fn share(k: usize) -> Load {
        let k = k.max(1) as u64;
        Load(LOAD_SCALE.div_ceil(k))
    }

    /// `n` whole vCPUs.
    pub fn vcpus(n: u32) -> Load {
        Load(u64::from(n) * LOAD_SCALE)
    }
}

impl fmt::Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Two decimals, rounded up so a load just above a limit never prints as the limit.
        let hundredths = (self.0 * 100).div_ceil(LOAD_SCALE);
        write!(f, "{}.{:02}", hundredths / 100, hundredths % 100)
    }
}

/// One vCPU as the admission check sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VcpuLoad {
    /// Where it may run.
    pub cpus: HostCpuSet,
    /// Whether it was placed as dedicated (its CPUs then take no other vCPU).
    pub dedicated: bool,
}

/// One VM's vCPUs as the admission check sees them (what the ledger stores).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmLoad {
    /// VM name, for messages.
    pub name: String,
    /// One entry per vCPU.
    pub vcpus: Vec<VcpuLoad>,
}

impl VmLoad {
    /// The load of a plan. Under the dedicated policy, explicitly pinned vCPUs count as
    /// dedicated too.
    pub fn from_plan(name: &str, plan: &PlacementPlan) -> Self {
        let dedicated_policy = plan.policy() == "dedicated";
        VmLoad {
            name: name.to_string(),
            vcpus: plan
                .vcpus()
                .iter()
                .map(|p| VcpuLoad {
                    cpus: p.cpus.clone(),
                    dedicated: matches!(p.reason, PlacementReason::Dedicated { .. })
                        || (dedicated_policy && p.reason == PlacementReason::VcpuPin),
                })
                .collect(),
        }
    }

    /// Every CPU some vCPU may use.
    pub fn cpus(&self) -> HostCpuSet {
        self.vcpus
            .iter()
            .fold(HostCpuSet::new(), |acc, v| acc.union(&v.cpus))
    }
}

/// Over-commit limits. Values from KVM (`KVM_CAP_NR_VCPUS`, `KVM_CAP_MAX_VCPUS`) come in as
/// data, so the check stays pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvercommitPolicy {
    /// vCPUs per host CPU for non-dedicated CPUs (default 5).
    pub shared_ratio: u32,
    /// vCPUs per physical core (default 10); enforced unless `force`.
    pub core_cap: u32,
    /// Allow a ratio above the core cap, and skip the core check.
    pub force: bool,
    /// Refuse (instead of warn) a VM with more vCPUs than host CPUs in its allowed set.
    pub strict: bool,
    /// Admit a VM that pushes host CPUs or cores past their limits, with a warning naming
    /// them, instead of refusing it (QEMU and libvirt never refuse; a VMM may default to
    /// this and let management stacks ask for refusal).
    pub warn_only: bool,
    /// `KVM_CAP_NR_VCPUS`: more vCPUs than this is warned about.
    pub kvm_nr_vcpus: Option<u32>,
    /// `KVM_CAP_MAX_VCPUS`: more vCPUs than this is refused.
    pub kvm_max_vcpus: Option<u32>,
}

impl Default for OvercommitPolicy {
    fn default() -> Self {
        OvercommitPolicy {
            shared_ratio: 5,
            core_cap: 10,
            force: false,
            strict: false,
            warn_only: false,
            kvm_nr_vcpus: None,
            kvm_max_vcpus: None,
        }
    }
}

/// A host CPU (or core) above its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overload {
    /// The CPUs (one CPU, or the threads of one core).
    pub cpus: HostCpuSet,
    /// The load it would carry with the new VM.
    pub load: Load,
    /// Its limit in vCPUs.
    pub limit: u32,
}

fn format_overloads(list: &[Overload]) -> String {
    const SHOWN: usize = 8;
    let mut parts: Vec<String> = list
        .iter()
        .take(SHOWN)
        .map(|o| {
            format!(
                "{} would carry {} vCPUs (limit {})",
                o.cpus, o.load, o.limit
            )
        })
        .collect();
    if list.len() > SHOWN {
        parts.push(format!("and {} more", list.len() - SHOWN));
    }
    parts.join(", ")
}

/// Why a VM was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    /// More vCPUs than KVM can create.
    #[error(
        "Number of SMP cpus requested ({vcpus}) exceeds the maximum cpus supported by KVM ({max})"
    )]
    AboveKvmMax {
        /// Requested vCPUs.
        vcpus: u32,
        /// `KVM_CAP_MAX_VCPUS`.
        max: u32,
    },
    /// Strict mode: more vCPUs than host CPUs in the VM's allowed set.
    #[error("{vcpus} vCPUs on {count} host CPUs ({cpus}) is not allowed in strict mode", count = cpus.len())]
    MoreVcpusThanCpus {
        /// Requested vCPUs.
        vcpus: u32,
        /// The VM's allowed host CPUs.
        cpus: HostCpuSet,
    },
    /// The configured ratio is above the per-core cap.
    #[error("over-commit ratio {ratio}:1 is above the cap of {cap} vCPUs per core; force it to allow this")]
    RatioAboveCap {
        /// Configured ratio.
        ratio: u32,
        /// Core cap.
        cap: u32,
    },
    /// Host CPUs over their limit, counting every live VM.
    #[error("VM `{vm}` refused: host CPUs {}", format_overloads(.cpus))]
    CpusOverloaded {
        /// The new VM.
        vm: String,
        /// The CPUs over their limit.
        cpus: Vec<Overload>,
    },
    /// Physical cores over the per-core cap.
    #[error("VM `{vm}` refused: cores {}", format_overloads(.cores))]
    CoresOverloaded {
        /// The new VM.
        vm: String,
        /// The cores (as sets of their threads) over the cap.
        cores: Vec<Overload>,
    },
}

/// Admitted, but worth telling the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdmissionWarning {
    /// Host CPUs or cores past their limits, admitted because the policy only warns.
    Overloaded {
        /// The new VM.
        vm: String,
        /// `host CPUs` or `cores`.
        what: &'static str,
        /// Which, with their load and limit.
        list: Vec<Overload>,
    },
    /// More vCPUs than KVM recommends.
    AboveKvmRecommended {
        /// Requested vCPUs.
        vcpus: u32,
        /// `KVM_CAP_NR_VCPUS`.
        recommended: u32,
    },
    /// More vCPUs than host CPUs in the VM's allowed set.
    MoreVcpusThanCpus {
        /// Requested vCPUs.
        vcpus: u32,
        /// The VM's allowed host CPUs.
        cpus: HostCpuSet,
    },
}

impl fmt::Display for AdmissionWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdmissionWarning::Overloaded { vm, what, list } => write!(
                f,
                "VM `{vm}` over-commits {what} {} (admitted: the over-commit policy warns; `strict` refuses)",
                format_overloads(list)
            ),
            AdmissionWarning::AboveKvmRecommended { vcpus, recommended } => write!(
                f,
                "Number of SMP cpus requested ({vcpus}) exceeds the recommended cpus supported by KVM ({recommended})"
            ),
            AdmissionWarning::MoreVcpusThanCpus { vcpus, cpus } => write!(
                f,
                "{vcpus} vCPUs on {} host CPUs ({cpus}) is not recommended",
                cpus.len()
            ),
        }
    }
}

/// Per-CPU load and whether a dedicated vCPU sits there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostLoad {
    cpus: BTreeMap<HostCpuId, (Load, bool)>,
}

impl HostLoad {
    /// Sums the loads of `vms`.
    pub fn of<'a>(vms: impl IntoIterator<Item = &'a VmLoad>) -> Self {
        let mut load = HostLoad::default();
        for vm in vms {
            load.add(vm);
        }
        load
    }

    /// Adds one VM.
    pub fn add(&mut self, vm: &VmLoad) {
        for v in &vm.vcpus {
            let share = Load::share(v.cpus.len());
            for cpu in v.cpus.iter() {
                let e = self.cpus.entry(cpu).or_default();
                e.0 .0 += share.0;
                e.1 |= v.dedicated;
            }
        }
    }

    /// Load on one CPU.
    pub fn load(&self, cpu: HostCpuId) -> Load {
        self.cpus.get(&cpu).map(|e| e.0).unwrap_or_default()
    }

    /// Whether a dedicated vCPU sits on `cpu`.
    pub fn has_dedicated(&self, cpu: HostCpuId) -> bool {
        self.cpus.get(&cpu).is_some_and(|e| e.1)
    }

    /// The limit of `cpu` under `policy`: 1 with a dedicated vCPU, else the shared ratio.
    pub fn limit(&self, cpu: HostCpuId, policy: &OvercommitPolicy) -> u32 {
        if self.has_dedicated(cpu) {
            1
        } else {
            policy.shared_ratio
        }
    }
}

/// Checks one VM against the policy alone, then against the host with every live VM.
/// Returns the warnings of an admitted VM.
pub fn admit(
    policy: &OvercommitPolicy,
    host: &HostCpuInventory,
    live: &[VmLoad],
    new: &VmLoad,
) -> Result<Vec<AdmissionWarning>, AdmissionError> {
    let mut warnings = Vec::new();
    let vcpus = new.vcpus.len() as u32;
    if let Some(max) = policy.kvm_max_vcpus {
        if vcpus > max {
            return Err(AdmissionError::AboveKvmMax { vcpus, max });
        }
    }
    if let Some(recommended) = policy.kvm_nr_vcpus {
        if vcpus > recommended {
            warnings.push(AdmissionWarning::AboveKvmRecommended { vcpus, recommended });
        }
    }
    if !policy.force && policy.shared_ratio > policy.core_cap {
        return Err(AdmissionError::RatioAboveCap {
            ratio: policy.shared_ratio,
            cap: policy.core_cap,
        });
    }
    let cpus = new.cpus();
    if vcpus as usize > cpus.len() {
        if policy.strict {
            return Err(AdmissionError::MoreVcpusThanCpus { vcpus, cpus });
        }
        warnings.push(AdmissionWarning::MoreVcpusThanCpus {
            vcpus,
            cpus: cpus.clone(),
        });
    }

    let mut load = HostLoad::of(live);
    load.add(new);
    let over: Vec<Overload> = cpus
        .iter()
        .filter_map(|cpu| {
            let limit = load.limit(cpu, policy);
            let l = load.load(cpu);
            (l > Load::vcpus(limit)).then(|| Overload {
                cpus: HostCpuSet::single(cpu),
                load: l,
                limit,
            })
        })
        .collect();
    if !over.is_empty() {
        if !policy.warn_only {
            return Err(AdmissionError::CpusOverloaded {
                vm: new.name.clone(),
                cpus: over,
            });
        }
        warnings.push(AdmissionWarning::Overloaded {
            vm: new.name.clone(),
            what: "host CPUs",
            list: over,
        });
    }
    if !policy.force {
        let over: Vec<Overload> = host
            .cores()
            .into_iter()
            .filter(|core| core.intersects(&cpus))
            .filter_map(|core| {
                let l = Load(core.iter().map(|c| load.load(c).0).sum());
                (l > Load::vcpus(policy.core_cap)).then_some(Overload {
                    cpus: core,
                    load: l,
                    limit: policy.core_cap,
                })
            })
            .collect();
        if !over.is_empty() {
            if !policy.warn_only {
                return Err(AdmissionError::CoresOverloaded {
                    vm: new.name.clone(),
                    cores: over,
                });
            }
            warnings.push(AdmissionWarning::Overloaded {
                vm: new.name.clone(),
                what: "cores",
                list: over,
            });
        }
    }
    Ok(warnings)
}

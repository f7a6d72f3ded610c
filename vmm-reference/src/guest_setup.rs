//! Steps every VM of this VMM takes the same way, whatever its guest (the probe or Linux):
//! refusing topologies KVM cannot hold, resolving `--numa`/`--object`, and the guest
//! CPUID pipeline (what KVM supports -> the CPU model -> a per-vCPU normaliser, with the
//! vCPUs' NUMA nodes as AMD node ids).

use cpu_topology::{CpuTopology, VcpuIndex};
use cpuid_model::check::{self, CheckError};
use cpuid_model::normalize::{NormalizeError, Normalizer};
use cpuid_model::spec::ModelSpec;
use cpuid_model::CpuidTable;
use guest_memory::numa::NumaWarning;
use guest_memory::{
    BackingError, GuestRam, MemoryBackendConfig, MemoryError, MemoryLayout, NumaConfig, NumaError,
    NumaMachine, NumaTopology, UnassignedCpus,
};
use kvm_bindings::KVM_MAX_CPUID_ENTRIES;
use kvm_ioctls::Kvm;

/// A topology this host's KVM cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvmLimitError {
    /// More vCPU slots than KVM allows.
    #[error("--smp: maxcpus {max_cpus} exceeds this host's KVM limit of {limit} vCPUs per VM (KVM_CAP_MAX_VCPUS)")]
    TooManyVcpus {
        /// Slots asked for.
        max_cpus: u32,
        /// KVM_CAP_MAX_VCPUS.
        limit: usize,
    },
    /// The packed APIC ids reach KVM's vCPU id limit.
    #[error("--smp: the last vCPU's APIC id {apic_id} is not below KVM's vCPU id limit {limit} (KVM_CAP_MAX_VCPU_ID); APIC ids are sparse for non-power-of-two levels, try power-of-two cores/threads")]
    ApicIdTooLarge {
        /// Largest APIC id of the topology.
        apic_id: u32,
        /// KVM_CAP_MAX_VCPU_ID.
        limit: usize,
    },
}

/// Refuse topologies KVM cannot hold. (More vCPUs than KVM_CAP_NR_VCPUS is only a warning,
/// given by the over-commit admission.)
pub fn check_kvm_limits(kvm: &Kvm, topo: &CpuTopology) -> Result<(), KvmLimitError> {
    let limit = kvm.get_max_vcpus();
    if topo.max_cpus() as usize > limit {
        return Err(KvmLimitError::TooManyVcpus {
            max_cpus: topo.max_cpus(),
            limit,
        });
    }
    let apic_id = topo.apic_layout().max_apic_id().0;
    let limit = kvm.get_max_vcpu_id();
    if apic_id as usize >= limit {
        return Err(KvmLimitError::ApicIdTooLarge { apic_id, limit });
    }
    Ok(())
}

/// Check `--numa` options (and the `--object` backends they name) against the machine: the
/// same rules for every VM. Every CPU slot up to `maxcpus` must be in a node (when no node
/// names any CPU, QEMU's default socket mapping applies), node sizes must add up to
/// `ram_size`, distances complete the SLIT. `None` when no `--numa` was given. QEMU's
/// warnings (legacy `mem=`) are logged.
pub fn resolve_numa(
    numa: &NumaConfig,
    objects: &[MemoryBackendConfig],
    topo: &CpuTopology,
    ram_size: u64,
) -> Result<Option<NumaTopology>, NumaError> {
    if numa.is_empty() {
        return Ok(None);
    }
    let resolved = numa.resolve(&NumaMachine {
        ram_size,
        max_cpus: topo.max_cpus(),
        cpus_per_socket: topo.threads_per_socket(),
        backends: objects,
        unassigned: UnassignedCpus::Reject,
    })?;
    // `mem=` is deprecated in QEMU, not here: this VMM keeps it (a `--numa-cells` cell is
    // a `mem=` node), so only the other warnings are shown.
    for w in resolved.warnings() {
        if *w != NumaWarning::LegacyMem {
            log::warn!("--numa: {w}");
        }
    }
    Ok(Some(resolved))
}

/// The NUMA node of every vCPU slot of `topo`, in index order (the input of
/// [`Normalizer::with_numa_nodes`]). [`resolve_numa`] puts every slot in a node; a slot
/// in none would read node 0.
pub fn vcpu_nodes(numa: &NumaTopology, topo: &CpuTopology) -> Vec<u32> {
    (0..topo.max_cpus())
        .map(|i| numa.node_of_cpu(VcpuIndex(i)).map_or(0, |n| n.0))
        .collect()
}

/// Guest RAM for `layout`: the RAM of each NUMA node with a `memdev=` backend mapped from
/// that backend (and bound to its host nodes), anonymous private memory elsewhere.
pub fn map_guest_ram<E>(
    layout: &MemoryLayout,
    numa: Option<&NumaTopology>,
    objects: &[MemoryBackendConfig],
) -> Result<GuestRam, E>
where
    E: From<MemoryError> + From<BackingError>,
{
    let backends = numa.map(|n| n.node_backends(objects)).unwrap_or_default();
    if backends.is_empty() {
        Ok(GuestRam::new(layout)?)
    } else {
        Ok(GuestRam::with_backends(layout, &backends)?)
    }
}

/// Why the guest's CPUID could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum GuestCpuidError {
    /// KVM did not say what it supports.
    #[error("KVM_GET_SUPPORTED_CPUID failed")]
    Supported(#[source] kvm_ioctls::Error),
    /// The CPU model cannot run on this host (`enforce`) or is inconsistent (bad input).
    #[error("--cpu")]
    Model(#[from] CheckError),
    /// The topology does not fit the vendor's CPUID leaves.
    #[error("CPUID")]
    Normalize(#[from] NormalizeError),
}

/// What this host's KVM can give a guest (KVM_GET_SUPPORTED_CPUID).
pub fn supported_cpuid(kvm: &Kvm) -> Result<CpuidTable, GuestCpuidError> {
    let supported = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(GuestCpuidError::Supported)?;
    Ok(cpuid_model::kvm::from_kvm(&supported))
}

/// The per-vCPU CPUID of a guest: KVM's `supported` CPUID, the model `spec` applied (its
/// warnings logged, as QEMU prints them), normalised for `topo`. With `numa`, AMD leaf
/// 0x8000_001E carries each vCPU's NUMA node (the node the SRAT gives it).
pub fn guest_cpuid(
    supported: &CpuidTable,
    spec: &ModelSpec,
    topo: &CpuTopology,
    numa: Option<&NumaTopology>,
) -> Result<Normalizer, GuestCpuidError> {
    let resolved = check::resolve(spec, supported)?;
    for w in &resolved.warnings {
        log::warn!("{w}");
    }
    Ok(match numa {
        Some(numa) => Normalizer::with_numa_nodes(&resolved.table, topo, &vcpu_nodes(numa, topo))?,
        None => Normalizer::new(&resolved.table, topo)?,
    })
}

//! The typed form of a libvirt domain definition: what this crate carries.
//!
//! Sizes are in KiB, libvirt's own unit (every value libvirt reads is rounded up to a whole
//! KiB). CPU lists, for host CPUs and for vCPUs alike, are [`HostCpuSet`]s: one bitmap type
//! with libvirt's list syntax on both sides.

use cpu_topology::HostCpuSet;

/// A libvirt `<domain>` as far as this crate models it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DomainConfig {
    /// `<domain type=>`: `kvm` or `qemu` (other hypervisor types are refused).
    pub domain_type: String,
    /// `<name>`.
    pub name: String,
    /// `<uuid>`, canonical lowercase `8-4-4-4-12` form.
    pub uuid: Option<String>,
    /// `<memory>` in KiB, rounded up to 1 MiB as libvirt does for QEMU; with NUMA cells, their
    /// total (libvirt takes the cells' sum as the domain's memory).
    pub memory_kib: u64,
    /// `<currentMemory>` in KiB (the balloon target); never above `memory_kib`.
    pub current_memory_kib: u64,
    /// `<vcpu>`.
    pub vcpu: VcpuConfig,
    /// `<cputune>`.
    pub cputune: CpuTune,
    /// `<numatune>`.
    pub numatune: NumaTune,
    /// `<cpu>`, `None` when the element is absent (the hypervisor's default CPU).
    pub cpu: Option<CpuConfig>,
    /// `<os>`.
    pub os: OsConfig,
    /// `<features>`.
    pub features: Features,
    /// The first `<devices><serial>` (or `<console>` when there is no serial).
    pub serial: Option<SerialConfig>,
    /// What the document holds that this crate does not carry, as paths from `<domain>`
    /// (`devices/disk`, `cpu/numa/cell@discard`), each once, in document order.
    pub ignored: Vec<Ignored>,
}

/// One element or attribute that was read but is not carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    /// Path from `<domain>`: `devices/disk` for an element, `features/apic@eoi` for an
    /// attribute.
    pub path: String,
    /// How many times it appears.
    pub count: usize,
}

/// `<vcpu placement= cpuset= current=>COUNT</vcpu>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcpuConfig {
    /// The element's text: the largest number of vCPUs (QEMU's `maxcpus`). Default 1.
    pub count: u32,
    /// `current=`: vCPUs present at start; `None` means all of them.
    pub current: Option<u32>,
    /// `placement=`.
    pub placement: Option<Placement>,
    /// `cpuset=`: the host CPUs every vCPU without its own `<vcpupin>` may run on.
    pub cpuset: Option<HostCpuSet>,
}

impl Default for VcpuConfig {
    fn default() -> Self {
        Self {
            count: 1,
            current: None,
            placement: None,
            cpuset: None,
        }
    }
}

impl VcpuConfig {
    /// The vCPUs present at start.
    pub fn present(&self) -> u32 {
        self.current.unwrap_or(self.count)
    }
}

/// libvirt's `placement=`: fixed sets, or left to numad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// `static`.
    Static,
    /// `auto` (libvirt asks numad).
    Auto,
}

/// `<cputune>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpuTune {
    /// `<vcpupin vcpu= cpuset=>`, ascending by vCPU, one per vCPU.
    pub vcpupin: Vec<VcpuPinConfig>,
    /// `<emulatorpin cpuset=>`.
    pub emulatorpin: Option<HostCpuSet>,
    /// `<vcpusched vcpus= scheduler= priority=>`, in document order.
    pub vcpusched: Vec<VcpuSched>,
    /// `<shares>` (cgroup CPU weight).
    pub shares: Option<u64>,
    /// `<period>` in microseconds.
    pub period: Option<u64>,
    /// `<quota>` in microseconds, negative for none.
    pub quota: Option<i64>,
}

/// `<vcpupin vcpu='N' cpuset='SET'/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcpuPinConfig {
    /// The vCPU index.
    pub vcpu: u32,
    /// The host CPUs it may run on.
    pub cpuset: HostCpuSet,
}

/// `<vcpusched>`: a real-time or batch scheduler for some vCPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcpuSched {
    /// `vcpus=`: the vCPUs it applies to (all when absent).
    pub vcpus: Option<HostCpuSet>,
    /// `scheduler=`.
    pub scheduler: Scheduler,
    /// `priority=` (fifo and rr only).
    pub priority: Option<i32>,
}

/// libvirt's scheduler names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduler {
    /// `batch` (SCHED_BATCH).
    Batch,
    /// `idle` (SCHED_IDLE).
    Idle,
    /// `fifo` (SCHED_FIFO).
    Fifo,
    /// `rr` (SCHED_RR).
    Rr,
}

/// `<numatune>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NumaTune {
    /// `<memory mode= nodeset= placement=>`: the policy of all guest memory.
    pub memory: Option<NumaTuneMemory>,
    /// `<memnode cellid= mode= nodeset=>`: a policy for one guest cell, ascending by cell.
    pub memnodes: Vec<MemNode>,
}

/// `<numatune><memory>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumaTuneMemory {
    /// `mode=`, default strict.
    pub mode: MemoryMode,
    /// `nodeset=`: host NUMA nodes (none with `placement='auto'`).
    pub nodeset: Option<HostCpuSet>,
    /// `placement=`.
    pub placement: Option<Placement>,
}

/// `<numatune><memnode>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemNode {
    /// `cellid=`: the guest NUMA cell.
    pub cellid: u32,
    /// `mode=`, default strict.
    pub mode: MemoryMode,
    /// `nodeset=`: host NUMA nodes.
    pub nodeset: HostCpuSet,
}

/// libvirt's memory modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryMode {
    /// `strict`: only these nodes (MPOL_BIND).
    Strict,
    /// `preferred`: these first (MPOL_PREFERRED).
    Preferred,
    /// `interleave`: round-robin (MPOL_INTERLEAVE).
    Interleave,
    /// `restrictive`: cgroup cpuset.mems only, no policy on the memory.
    Restrictive,
}

/// `<cpu>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuConfig {
    /// `mode=`, default custom.
    pub mode: CpuMode,
    /// `match=` (custom mode).
    pub match_: Option<CpuMatch>,
    /// `check=`.
    pub check: Option<CpuCheck>,
    /// `migratable=` (host-passthrough and maximum).
    pub migratable: Option<bool>,
    /// `<model>`.
    pub model: Option<CpuModelConfig>,
    /// `<vendor>`: `Intel` or `AMD` as libvirt spells them.
    pub vendor: Option<String>,
    /// `<feature policy= name=>`, in document order, each name once.
    pub features: Vec<CpuFeature>,
    /// `<topology>`.
    pub topology: Option<CpuTopologyConfig>,
    /// `<numa><cell>`s by id (ids are `0..len`).
    pub numa: Vec<NumaCellConfig>,
}

/// libvirt's CPU modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuMode {
    /// `custom`: a named model plus features.
    Custom,
    /// `host-model`: the named model closest to the host, plus its extra features.
    HostModel,
    /// `host-passthrough`: the host's CPU.
    HostPassthrough,
    /// `maximum`: everything the hypervisor can offer.
    Maximum,
}

/// libvirt's `match=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuMatch {
    /// `minimum`.
    Minimum,
    /// `exact`.
    Exact,
    /// `strict`.
    Strict,
}

/// libvirt's `check=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuCheck {
    /// `none`: no check.
    None,
    /// `partial`: libvirt checks before starting.
    Partial,
    /// `full`: the hypervisor refuses a CPU that differs (QEMU `enforce`).
    Full,
}

/// `<model fallback=>NAME</model>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuModelConfig {
    /// The model name (`Westmere`, `Skylake-Client-IBRS`).
    pub name: String,
    /// `fallback=`: `None` when absent (libvirt's default is allow).
    pub fallback: Option<Fallback>,
}

/// `<model fallback=>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// `allow`: a close model the host can run is acceptable.
    Allow,
    /// `forbid`: the model exactly, or nothing.
    Forbid,
}

/// `<feature policy= name=/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuFeature {
    /// `policy=`, default require.
    pub policy: FeaturePolicy,
    /// `name=`, as libvirt spells it (`sse4.2`, `pdpe1gb`).
    pub name: String,
}

/// libvirt's feature policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeaturePolicy {
    /// `force`: on even when the host lacks it.
    Force,
    /// `require`: on; the guest does not start without it.
    Require,
    /// `optional`: on when the host has it.
    Optional,
    /// `disable`: off.
    Disable,
    /// `forbid`: off; the guest does not start on a host that has it.
    Forbid,
}

impl FeaturePolicy {
    /// Whether the policy turns the feature on in the guest.
    pub fn enables(self) -> bool {
        matches!(self, Self::Force | Self::Require)
    }

    /// Whether the policy turns the feature off in the guest.
    pub fn disables(self) -> bool {
        matches!(self, Self::Disable | Self::Forbid)
    }
}

/// `<topology sockets= dies= clusters= cores= threads=>`; absent levels are 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTopologyConfig {
    /// `sockets=`.
    pub sockets: u32,
    /// `dies=`.
    pub dies: u32,
    /// `clusters=`.
    pub clusters: u32,
    /// `cores=`.
    pub cores: u32,
    /// `threads=`.
    pub threads: u32,
}

impl CpuTopologyConfig {
    /// The number of vCPUs the topology holds, `None` on overflow.
    pub fn cpus(&self) -> Option<u32> {
        [self.dies, self.clusters, self.cores, self.threads]
            .into_iter()
            .try_fold(self.sockets, u32::checked_mul)
    }
}

/// `<numa><cell id= cpus= memory= unit= memAccess=>` with its `<distances>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumaCellConfig {
    /// `id=`, or the cell's position when absent (as libvirt numbers them).
    pub id: u32,
    /// `cpus=`: the cell's vCPUs (`None`: a memory-only cell).
    pub cpus: Option<HostCpuSet>,
    /// `memory=` in KiB, rounded up to 1 MiB as libvirt does for QEMU.
    pub memory_kib: u64,
    /// `memAccess=`.
    pub mem_access: Option<MemAccess>,
    /// `<sibling id= value=>`: distances from this cell, ascending by cell id.
    pub distances: Vec<(u32, u8)>,
}

/// `memAccess=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemAccess {
    /// `shared` (MAP_SHARED).
    Shared,
    /// `private`.
    Private,
}

/// `<os>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OsConfig {
    /// `<type machine=>` (`pc`, `q35`, `pc-q35-7.2`).
    pub machine: Option<String>,
    /// `<kernel>`.
    pub kernel: Option<String>,
    /// `<initrd>`.
    pub initrd: Option<String>,
    /// `<cmdline>`.
    pub cmdline: Option<String>,
}

/// `<features>`: the flags this VMM knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    /// `<acpi/>`.
    pub acpi: bool,
    /// `<apic/>`.
    pub apic: bool,
    /// `<pae/>`.
    pub pae: bool,
    /// `<kvm><hidden state=>`: hide the KVM signature from the guest.
    pub kvm_hidden: Option<bool>,
}

/// The serial console: `<serial type=>` with its `<source>` and `<target port=>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialConfig {
    /// Where the host end goes.
    pub backend: SerialBackend,
    /// `<target port=>`, default 0 (COM1).
    pub port: u32,
}

/// libvirt's character device types this crate models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialBackend {
    /// `pty`: a pseudo-terminal.
    Pty,
    /// `stdio`.
    Stdio,
    /// `null`.
    Null,
    /// `file` with `<source path=>`.
    File(String),
    /// `unix` with `<source mode= path=>`; `listen` is `mode='bind'`.
    Unix {
        /// Socket path.
        path: String,
        /// The VMM listens (`bind`) rather than connects.
        listen: bool,
    },
    /// `tcp` with `<source mode= host= service=>`.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
        /// The VMM listens (`bind`) rather than connects.
        listen: bool,
    },
}

impl DomainConfig {
    /// One warning line naming everything the document holds that is not carried, or
    /// `None` when everything was used.
    pub fn ignored_warning(&self) -> Option<String> {
        if self.ignored.is_empty() {
            return None;
        }
        let items: Vec<String> = self
            .ignored
            .iter()
            .map(|i| match i.count {
                1 => i.path.clone(),
                n => format!("{} (x{n})", i.path),
            })
            .collect();
        Some(format!(
            "domain '{}': not implemented, ignored: {}",
            self.name,
            items.join(", ")
        ))
    }

    /// The guest NUMA cells (empty without `<cpu><numa>`).
    pub fn numa_cells(&self) -> &[NumaCellConfig] {
        self.cpu.as_ref().map_or(&[], |c| &c.numa)
    }

    /// Replaces the pin of `vcpu` (a live `virsh vcpupin`), keeping the list sorted.
    pub fn set_vcpupin(&mut self, vcpu: u32, cpuset: HostCpuSet) {
        let pins = &mut self.cputune.vcpupin;
        match pins.binary_search_by_key(&vcpu, |p| p.vcpu) {
            Ok(i) => pins[i].cpuset = cpuset,
            Err(i) => pins.insert(i, VcpuPinConfig { vcpu, cpuset }),
        }
    }
}

//! `Vmm`: one VM built from a [`VmmConfig`], running the probe guest on every vCPU.
//!
//! Build order: the NUMA check (`--numa`, with the Linux VM's rules), KVM limits, VM,
//! guest RAM (per NUMA node, each from its `--object` backend with its host binding) and
//! its slots, in-kernel local APICs (split irqchip where available), CPUID (supported ->
//! CPU model -> per-vCPU topology, NUMA nodes as AMD node ids), the probe image, then one
//! configured vCPU thread per present vCPU. [`Vmm::run`] starts them together and waits,
//! on the lifecycle event channel, until every vCPU is done, the guest faults, or time
//! runs out.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpu_topology::{TopologyError, VcpuIndex};
use cpuid_model::decode::{self, DecodeError};
use cpuid_model::kvm::KvmCpuidError;
use cpuid_model::normalize::{amd, NormalizeError, Normalizer};
use cpuid_model::{dump, hwloc, CpuidEntry, CpuidKey, CpuidRegs, CpuidTable};
use guest_memory::{
    BackingError, GuestRam, LayoutError, MemoryError, MemoryLayout, MemorySlots, NumaError,
    NumaTopology, SlotError,
};
use kvm_bindings::{kvm_enable_cap, kvm_mp_state, KVM_CAP_SPLIT_IRQCHIP, KVM_MP_STATE_RUNNABLE};
use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};
use probe_guest::{ProbeError, ProbeGuest, ProbeLayout, ProbeMode, ProbeReport};
use vcpu_lifecycle::{
    event_channel, VcpuContext, VcpuError, VcpuEvent, VcpuSet, VcpuSetError, VmStop,
};

use crate::guest_setup::{
    check_kvm_limits, guest_cpuid, map_guest_ram, resolve_numa, GuestCpuidError, KvmLimitError,
};
use crate::placement::{PlacementSetupError, VmPlacement};
use crate::probe_bus::ProbeBus;
use crate::summary::{Summary, VcpuView, WorkloadView};
use crate::VmmConfig;

/// How long a vCPU may take to answer a start or stop command.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a VM could not be built or did not run to the end.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// /dev/kvm could not be opened.
    #[error("cannot open /dev/kvm (see `vmm-reference host-check`)")]
    OpenKvm(#[source] kvm_ioctls::Error),
    /// The topology does not fit this host's KVM.
    #[error(transparent)]
    Limits(#[from] KvmLimitError),
    /// A KVM ioctl failed.
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
    Numa(#[from] NumaError),
    /// `-m` does not give a usable layout.
    #[error("-m")]
    Layout(#[from] LayoutError),
    /// Guest RAM could not be mapped.
    #[error("guest RAM")]
    Memory(#[from] MemoryError),
    /// Guest RAM could not be mapped from its `--object` backends.
    #[error("memory backends")]
    Backing(#[from] BackingError),
    /// Guest RAM could not be registered with KVM.
    #[error("KVM memory slots")]
    Slots(#[from] SlotError),
    /// The guest CPUID could not be computed (`--cpu` with `enforce`, ...).
    #[error(transparent)]
    Cpuid(#[from] GuestCpuidError),
    /// Per-vCPU CPUID could not be computed.
    #[error("CPUID")]
    Normalize(#[from] NormalizeError),
    /// A CPUID table does not fit KVM.
    #[error("KVM_SET_CPUID2")]
    KvmCpuid(#[from] KvmCpuidError),
    /// The probe guest does not fit or could not be loaded.
    #[error("probe guest")]
    Probe(#[from] ProbeError),
    /// A vCPU thread failed.
    #[error("vCPU thread")]
    Vcpu(#[from] VcpuError),
    /// A command to all vCPUs failed.
    #[error("vCPUs")]
    VcpuSet(#[from] VcpuSetError),
    /// The guest stopped the VM (triple fault, emulation failure, ...).
    #[error("guest stopped: {0}")]
    GuestStopped(VmStop),
    /// The guest did not finish in time.
    #[error("the guest did not finish within {seconds} s; vCPUs still running: {pending} (raise --timeout, 0 waits forever)")]
    Timeout {
        /// The limit.
        seconds: u64,
        /// Indices of the vCPUs that had not finished.
        pending: String,
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
    Hwloc(#[from] hwloc::HwlocError),
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
    Hotplug(#[from] crate::hotplug::HotplugError),
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
}

impl VmmError {
    /// True when the user's input is at fault (the binary exits with status 2).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            VmmError::Limits(_)
                | VmmError::Cpuid(GuestCpuidError::Model(_))
                | VmmError::Layout(_)
                | VmmError::Numa(_)
                | VmmError::Probe(ProbeError::RamTooSmall { .. } | ProbeError::TooManyVcpus { .. })
                | VmmError::NoSuchVcpu(_)
                | VmmError::CpuSet(_)
                | VmmError::Hotplug(_)
        ) || matches!(self, VmmError::Placement(e) if e.is_bad_input())
    }
}

fn kvm_op(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmmError {
    move |source| VmmError::Kvm { op, source }
}

fn vcpu_op(vcpu: VcpuIndex, op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmmError {
    move |source| VmmError::VcpuIoctl { vcpu, op, source }
}

/// A VM running the probe guest. Fields drop in order: vCPU threads first, then memory.
#[derive(Debug)]
pub struct Vmm {
    pub(crate) vcpus: VcpuSet,
    pub(crate) events: Receiver<VcpuEvent>,
    pub(crate) bus: Arc<ProbeBus>,
    pub(crate) cpuid: Vec<CpuidTable>,
    pub(crate) config: VmmConfig,
    pub(crate) placement: VmPlacement,
    /// The resolved `--numa` configuration.
    numa: Option<NumaTopology>,
    /// Spawns vCPU threads (boot and hot-plugged) with the VM's exit handler.
    pub(crate) ctx: VcpuContext<ProbeBus>,
    /// Per-vCPU CPUID for any slot, hot-pluggable ones included.
    pub(crate) normalizer: Normalizer,
    /// Hot-plugged vCPUs by `device_add` id.
    pub(crate) plugged: std::collections::BTreeMap<VcpuIndex, String>,
    /// vCPU fds of unplugged slots: KVM cannot destroy a vCPU, so a re-plug reuses it.
    pub(crate) parked: std::collections::BTreeMap<VcpuIndex, VcpuFd>,
    _slots: MemorySlots,
    _ram: GuestRam,
    pub(crate) vm: Arc<VmFd>,
}

impl Vmm {
    /// Build the VM and its vCPU threads (created, not yet running).
    pub fn new(config: VmmConfig) -> Result<Self, VmmError> {
        let topo = config.topology;
        let numa = resolve_numa(&config.numa, &config.objects, &topo, config.memory)?;
        let layout = match &numa {
            Some(n) => n.layout()?,
            None => MemoryLayout::x86_64(config.memory)?,
        };
        let kvm = Kvm::new().map_err(VmmError::OpenKvm)?;
        check_kvm_limits(&kvm, &topo)?;
        let placement =
            VmPlacement::for_kvm(&config.placement, &topo, config.name.as_deref(), &kvm)?;

        let vm = Arc::new(kvm.create_vm().map_err(kvm_op("KVM_CREATE_VM"))?);
        let low_ram = ram_from_zero(&layout);
        let ram = map_guest_ram::<VmmError>(&layout, numa.as_ref(), &config.objects)?;
        // Slots before the irqchip: with the irqchip in place KVM also maps its APIC
        // access page, and every later slot change costs milliseconds (measured).
        let slots = ram.register(Arc::clone(&vm))?;
        create_irqchip(&vm)?;

        let normalizer = guest_cpuid(&kvm, &config.cpu, &topo, numa.as_ref())?;
        let cpuid = topo
            .present()
            .map(|i| normalizer.for_vcpu(i))
            .collect::<Result<Vec<_>, _>>()?;

        let probe = ProbeGuest::new(config.probe, ProbeLayout::new(topo.max_cpus(), low_ram)?);
        let queries: Vec<(u32, u32)> = match cpuid.first() {
            Some(t) => dump::cpuid_r_queries(t)
                .into_iter()
                .map(|k| (k.leaf, k.subleaf))
                .collect(),
            None => Vec::new(),
        };
        probe.load(ram.memory(), &queries, topo.cpus())?;

        let bus = Arc::new(ProbeBus::new(probe, ram.memory().clone(), topo.max_cpus()));
        let (events_tx, events) = event_channel(None);
        let ctx = VcpuContext::new(Arc::clone(&bus), events_tx)?;
        let apic = topo.apic_layout();
        let mut vcpus = VcpuSet::new();
        for (index, table) in topo.present().zip(&cpuid) {
            let id = apic.apic_id(index)?;
            let fd = vm
                .create_vcpu(u64::from(id.0))
                .map_err(vcpu_op(index, "KVM_CREATE_VCPU"))?;
            configure_vcpu(&fd, index, Some(table), &probe)?;
            vcpus.insert(ctx.spawn(index, fd, Some(placement.hook()))?);
        }
        // After the vCPU threads exist: they inherit the creating thread's affinity.
        placement.pin_emulator()?;
        Ok(Self {
            vcpus,
            events,
            bus,
            cpuid,
            config,
            placement,
            numa,
            ctx,
            normalizer,
            plugged: Default::default(),
            parked: Default::default(),
            _slots: slots,
            _ram: ram,
            vm,
        })
    }

    /// The resolved `--numa` configuration (nodes, CPUs, sizes, distances), if any.
    pub fn numa(&self) -> Option<&NumaTopology> {
        self.numa.as_ref()
    }

    /// The CPUID table each present vCPU was given, in index order.
    pub fn cpuid_tables(&self) -> &[CpuidTable] {
        &self.cpuid
    }

    /// The vCPU threads (thread ids, states, exit statistics).
    pub fn vcpus(&self) -> &VcpuSet {
        &self.vcpus
    }

    /// Start every vCPU (they were created stopped so they start together).
    pub fn start(&mut self) -> Result<(), VmmError> {
        Ok(self.vcpus.start_all(CONTROL_TIMEOUT)?)
    }

    /// Pause every vCPU; pending I/O completes first.
    pub fn pause(&mut self) -> Result<(), VmmError> {
        Ok(self.vcpus.pause_all(CONTROL_TIMEOUT)?)
    }

    /// Resume every paused vCPU.
    pub fn resume(&mut self) -> Result<(), VmmError> {
        Ok(self.vcpus.resume_all(CONTROL_TIMEOUT)?)
    }

    /// Stop every vCPU and end its thread.
    pub fn stop(&mut self) -> Result<(), VmmError> {
        Ok(self.vcpus.stop_all(CONTROL_TIMEOUT)?)
    }

    /// The probe's progress counter of a vCPU (spin iterations, barrier rounds, exits),
    /// read from guest memory without stopping the vCPU.
    pub fn progress(&self, vcpu: VcpuIndex) -> Result<u64, VmmError> {
        Ok(self.bus.probe().progress(self.bus.memory(), vcpu)?)
    }

    /// The placement plan, as `--placement-plan` prints it.
    pub fn placement_plan(&self) -> String {
        self.placement.plan_text()
    }

    /// Re-pin a running vCPU to `cpuset` (libvirt syntax, `r` for all host CPUs), as
    /// `virsh vcpupin` does, after re-admitting the VM on the host.
    pub fn vcpupin(&mut self, vcpu: VcpuIndex, cpuset: &str) -> Result<(), VmmError> {
        let cpus = self.placement.parse_cpuset(cpuset)?;
        let tid = self
            .vcpus
            .get(vcpu)
            .ok_or(VmmError::NoSuchVcpu(vcpu))?
            .thread_id()
            .0;
        Ok(self.placement.repin(vcpu, tid, cpus)?)
    }

    /// `virsh vcpuinfo` text for every vCPU, read from /proc.
    pub fn vcpuinfo(&self) -> Result<String, VmmError> {
        Ok(self.placement.vcpuinfo_all(&self.vcpus)?)
    }

    /// End the VM for process exit: stop and join the vCPU threads, release the ledger
    /// entry, and leave guest RAM and its KVM slots to the kernel, which frees them with
    /// the process (deleting each slot first costs milliseconds with the full in-kernel irqchip, measured).
    pub fn exit(self) {
        let Vmm {
            vcpus,
            placement,
            parked,
            _slots,
            _ram,
            vm,
            ..
        } = self;
        drop(vcpus);
        drop(placement);
        std::mem::forget((parked, _slots, _ram, vm));
    }

    /// Take the lifecycle event channel, for a caller that waits on it without holding the
    /// VM (the monitor's main loop). [`Vmm::run`] and [`Vmm::next_event`] see no events after.
    pub fn take_events(&mut self) -> Receiver<VcpuEvent> {
        std::mem::replace(&mut self.events, std::sync::mpsc::channel().1)
    }

    /// The next lifecycle event (a vCPU halted, or the guest stopped the VM), if one
    /// arrives within `timeout`.
    pub fn next_event(&self, timeout: Duration) -> Option<VcpuEvent> {
        self.events.recv_timeout(timeout).ok()
    }

    /// Start every vCPU, wait until all are done, and report what they saw.
    /// A guest fault or the timeout stops every vCPU and returns the reason.
    pub fn run(&mut self) -> Result<Summary, VmmError> {
        self.start()?;
        let result = self.wait_until_done().and_then(|()| self.summarize());
        let stopped = self.vcpus.stop_all(CONTROL_TIMEOUT);
        let summary = result?;
        stopped?;
        Ok(summary)
    }

    fn wait_until_done(&self) -> Result<(), VmmError> {
        let mut pending: BTreeSet<VcpuIndex> = self.config.topology.present().collect();
        let deadline = self.config.timeout.map(|t| Instant::now() + t);
        while !pending.is_empty() {
            let event = match deadline {
                Some(d) => self
                    .events
                    .recv_timeout(d.saturating_duration_since(Instant::now())),
                None => self
                    .events
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
            };
            match event {
                Ok(VcpuEvent::Halted { vcpu }) => {
                    pending.remove(&vcpu);
                }
                Ok(VcpuEvent::StopVm(stop)) => return Err(VmmError::GuestStopped(stop)),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    let pending = pending
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(",");
                    let seconds = self.config.timeout.map_or(0, |t| t.as_secs());
                    return Err(VmmError::Timeout { seconds, pending });
                }
            }
        }
        Ok(())
    }

    fn summarize(&self) -> Result<Summary, VmmError> {
        let mut summary = Summary {
            numa_nodes: self.numa.as_ref().map(|n| n.nodes().len()),
            ..Summary::default()
        };
        if self.config.probe != ProbeMode::Report {
            for h in self.vcpus.iter() {
                let progress = self.bus.probe().progress(self.bus.memory(), h.index())?;
                summary.workload.push(WorkloadView {
                    index: h.index().0,
                    progress,
                    exits: h.stats().total(),
                    host_tid: h.thread_id().0,
                    host_cpu: h.last_host_cpu(),
                });
            }
            return Ok(summary);
        }
        let mut seen = Vec::new();
        for h in self.vcpus.iter() {
            let index = h.index();
            let report = self
                .bus
                .take_report(index)
                .ok_or(VmmError::MissingReport(index))?;
            let table = report_table(&report);
            let view = decode::topology_view(&table).map_err(|source| VmmError::Decode {
                vcpu: index,
                source,
            })?;
            let mut row =
                VcpuView::from_decoded(index.0, &view, Some(h.thread_id().0), h.last_host_cpu());
            row.node = amd::node_id(&table);
            summary.vcpus.push(row);
            seen.push((index.0, table));
        }
        self.write_dumps(&seen)?;
        Ok(summary)
    }

    fn write_dumps(&self, seen: &[(u32, CpuidTable)]) -> Result<(), VmmError> {
        if let Some(path) = &self.config.dump_cpuid {
            let cpus: Vec<(u32, &CpuidTable)> = seen.iter().map(|(i, t)| (*i, t)).collect();
            let io = |source| VmmError::Dump {
                path: path.clone(),
                source,
            };
            let mut w = BufWriter::new(File::create(path).map_err(io)?);
            dump::write_raw(&mut w, &cpus)
                .and_then(|()| w.flush())
                .map_err(io)?;
        }
        if let Some(dir) = &self.config.dump_cpuid_hwloc {
            let tables: Vec<&CpuidTable> = seen.iter().map(|(_, t)| t).collect();
            hwloc::write_dir(dir, &tables)?;
        }
        Ok(())
    }
}

/// Bytes of RAM contiguous from guest-physical 0 (the probe lives there): with NUMA nodes
/// the low RAM is several adjacent regions.
fn ram_from_zero(layout: &MemoryLayout) -> u64 {
    let mut end = 0;
    for r in layout.regions() {
        if r.gpa.0 != end {
            break;
        }
        end = r.end();
    }
    end
}

/// IOAPIC pins reserved in KVM's GSI routing for a user-space IOAPIC (split irqchip).
const IOAPIC_PINS: u64 = 24;

/// The in-kernel local APICs every vCPU needs (INIT/SIPI, x2APIC, in-kernel HLT).
///
/// Split irqchip where KVM offers it (Linux 4.4+): the local APICs stay in the kernel while
/// the PIC and IOAPIC would live in user space. The probe guest uses neither, and the full
/// in-kernel irqchip costs about 10 ms more to tear down (the kernel waits for SRCU grace
/// periods while it unregisters the PIC and IOAPIC devices; measured in
/// docs/PERFORMANCE.md). Hosts without it get the full in-kernel irqchip.
fn create_irqchip(vm: &VmFd) -> Result<(), VmmError> {
    if vm.check_extension(Cap::SplitIrqchip) {
        let mut cap = kvm_enable_cap {
            cap: KVM_CAP_SPLIT_IRQCHIP,
            ..Default::default()
        };
        cap.args[0] = IOAPIC_PINS;
        vm.enable_cap(&cap)
            .map_err(kvm_op("KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)"))
    } else {
        vm.create_irq_chip().map_err(kvm_op("KVM_CREATE_IRQCHIP"))
    }
}

/// Give one vCPU its CPUID (`None` for a re-plugged vCPU, which keeps the CPUID it was
/// created with: KVM refuses KVM_SET_CPUID2 once a vCPU has run), long-mode registers and
/// a runnable MP state.
pub(crate) fn configure_vcpu(
    fd: &VcpuFd,
    index: VcpuIndex,
    table: Option<&CpuidTable>,
    probe: &ProbeGuest,
) -> Result<(), VmmError> {
    if let Some(table) = table {
        fd.set_cpuid2(&cpuid_model::kvm::to_kvm(table)?)
            .map_err(vcpu_op(index, "KVM_SET_CPUID2"))?;
    }
    let base = fd.get_sregs().map_err(vcpu_op(index, "KVM_GET_SREGS"))?;
    fd.set_sregs(&probe.vcpu_sregs(&base))
        .map_err(vcpu_op(index, "KVM_SET_SREGS"))?;
    fd.set_regs(&probe.vcpu_regs(index)?)
        .map_err(vcpu_op(index, "KVM_SET_REGS"))?;
    // APs wait for INIT/SIPI by default with the in-kernel irqchip; the probe starts every
    // vCPU directly in long mode.
    fd.set_mp_state(kvm_mp_state {
        mp_state: KVM_MP_STATE_RUNNABLE,
    })
    .map_err(vcpu_op(index, "KVM_SET_MP_STATE"))?;
    Ok(())
}

/// The CPUID view a probe report describes, as a table.
fn report_table(report: &ProbeReport) -> CpuidTable {
    let mut table: CpuidTable = report
        .entries
        .iter()
        .map(|e| {
            let regs = CpuidRegs {
                eax: e.eax,
                ebx: e.ebx,
                ecx: e.ecx,
                edx: e.edx,
            };
            (
                CpuidKey::subleaf(e.leaf, e.subleaf),
                CpuidEntry {
                    regs,
                    indexed: false,
                },
            )
        })
        .collect();
    dump::mark_indexed(&mut table);
    table
}

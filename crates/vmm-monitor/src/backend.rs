//! The contract between the monitor and the VMM it controls.
//!
//! The monitor never touches vCPU threads, KVM or guest memory itself: every command maps to
//! one call of [`MonitorBackend`]. The VMM implements the trait; tests implement it with a
//! fake. Types here are plain data, so a backend can be written without knowing JSON.

use cpu_topology::VcpuIndex;

/// The run state of the VM, as QMP `query-status` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Created but not started yet (`prelaunch`).
    Prelaunch,
    /// vCPUs are executing guest code (`running`).
    Running,
    /// Stopped by the monitor (`paused`).
    Paused,
    /// The guest shut down or `quit` was requested (`shutdown`).
    Shutdown,
    /// A vCPU failed in a way the VMM cannot recover from (`internal-error`).
    InternalError,
}

impl RunState {
    /// The QMP `RunState` string.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Prelaunch => "prelaunch",
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::Shutdown => "shutdown",
            RunState::InternalError => "internal-error",
        }
    }

    /// Whether guest code runs (QMP `running`).
    pub fn is_running(self) -> bool {
        self == RunState::Running
    }
}

/// Where a CPU sits in the topology: QMP `CpuInstanceProperties`.
///
/// `module_id` and `node_id` are optional because QEMU only reports them when the machine
/// has modules or NUMA nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuProps {
    /// `socket-id`.
    pub socket_id: u32,
    /// `die-id`.
    pub die_id: u32,
    /// `module-id`, when the topology has modules.
    pub module_id: Option<u32>,
    /// `core-id`.
    pub core_id: u32,
    /// `thread-id` (the SMT thread, not a host thread).
    pub thread_id: u32,
    /// `node-id`, when the VM has NUMA nodes.
    pub node_id: Option<u32>,
}

/// One present vCPU, as `query-cpus-fast` and `info cpus` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuInfo {
    /// `cpu-index`.
    pub index: VcpuIndex,
    /// QOM path, e.g. `/machine/unattached/device[0]` for boot CPUs or
    /// `/machine/peripheral/cpu5` for a CPU hot-plugged with `id=cpu5`.
    pub qom_path: String,
    /// Host thread id (TID) of the vCPU thread.
    pub thread_id: i64,
    /// Topology position.
    pub props: CpuProps,
    /// Whether the vCPU is halted (HLT) right now; shown by `info cpus`.
    pub halted: bool,
}

/// What one vCPU's emulation fallback completed in user space (instructions the host's KVM
/// could not emulate), for `info emulated`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmulatedInsns {
    /// The vCPU.
    pub cpu: VcpuIndex,
    /// Instruction name and count, only those completed at least once.
    pub counts: Vec<(String, u64)>,
}

/// One possible CPU slot, present or not: an entry of `query-hotpluggable-cpus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuSlot {
    /// vCPU index the slot gives a CPU plugged into it (not shown by QMP; used by the
    /// legacy HMP `cpu-add N`).
    pub index: VcpuIndex,
    /// Topology position of the slot.
    pub props: CpuProps,
    /// QOM path of the CPU in the slot, `None` when the slot is empty.
    pub qom_path: Option<String>,
}

/// A CPU to hot-plug: the properties of QMP `device_add` for a CPU driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuPlugRequest {
    /// `id` given by the client, if any; the QOM path is `/machine/peripheral/<id>`.
    pub id: Option<String>,
    /// Requested topology position (`node_id` is ignored: the slot decides it).
    pub props: CpuProps,
}

/// What happened on `device_del`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unplug {
    /// The CPU is gone; the monitor emits `DEVICE_DELETED` with this QOM path.
    Completed {
        /// QOM path the removed CPU had.
        qom_path: String,
    },
    /// Removal was requested from the guest; the backend emits `DEVICE_DELETED` itself
    /// (through its [`EventSink`](crate::EventSink)) when the guest lets the CPU go.
    Pending,
}

/// Whether KVM is used: QMP `query-kvm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvmState {
    /// KVM acceleration is in use.
    pub enabled: bool,
    /// KVM is available on the host.
    pub present: bool,
}

/// One segment register as the VMM sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Segment {
    /// Selector.
    pub selector: u16,
    /// Base address.
    pub base: u64,
    /// Limit.
    pub limit: u32,
    /// Access rights in the VMX/SVM "attributes" layout (type, S, DPL, P, AVL, L, D/B, G).
    pub flags: u32,
}

/// A descriptor table register (GDTR, IDTR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DescriptorTable {
    /// Base address.
    pub base: u64,
    /// Limit.
    pub limit: u16,
}

/// A snapshot of one vCPU's registers, for `info registers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[allow(missing_docs)] // register names speak for themselves
pub struct Registers {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub rsp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
    pub es: Segment,
    pub cs: Segment,
    pub ss: Segment,
    pub ds: Segment,
    pub fs: Segment,
    pub gs: Segment,
    pub ldt: Segment,
    pub tr: Segment,
    pub gdt: DescriptorTable,
    pub idt: DescriptorTable,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    /// Whether the vCPU is halted.
    pub halted: bool,
}

/// One guest NUMA node, for `info numa`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumaNode {
    /// Node id.
    pub id: u32,
    /// vCPU indices in the node.
    pub cpus: Vec<VcpuIndex>,
    /// Memory of the node in MiB.
    pub size_mib: u64,
}

/// The all-zero UUID QEMU reports when the VM was given none.
pub const NIL_UUID: &str = "00000000-0000-0000-0000-000000000000";

/// Sizes and limits of the machine: `query-machines`, `query-memory-size-summary`,
/// `vcpucount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineInfo {
    /// Guest RAM present at boot, in bytes.
    pub memory: u64,
    /// vCPUs present at boot (libvirt's "current config").
    pub boot_cpus: u32,
    /// CPU slots (`maxcpus`).
    pub max_cpus: u32,
    /// The most vCPUs KVM lets one VM have (`KVM_CAP_MAX_VCPUS`): `cpu-max`.
    pub kvm_max_vcpus: u32,
    /// The host CPUs a thread of the VM may use at all, as a CPU list (`0-7`): a pin to
    /// all of them is no pin.
    pub host_cpus: String,
}

/// One vCPU's host CPUs, for `vcpupin` without a CPU set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcpuAffinity {
    /// The vCPU.
    pub index: VcpuIndex,
    /// Its allowed host CPUs as a CPU list (`0-3,6`).
    pub cpus: String,
}

/// An error a backend call reports; the monitor turns it into a QMP error reply.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The VMM does not implement the operation (QMP `GenericError`).
    #[error("{operation} is not supported by this VMM")]
    NotSupported {
        /// What was asked, e.g. `system_reset`.
        operation: &'static str,
    },
    /// No device (CPU) with this id exists (QMP `DeviceNotFound`).
    #[error("Device '{id}' not found")]
    DeviceNotFound {
        /// The id the client gave.
        id: String,
    },
    /// No vCPU with this index exists.
    #[error("CPU {index} does not exist")]
    NoSuchCpu {
        /// The index the client gave.
        index: VcpuIndex,
    },
    /// The request was refused; the message is shown to the client as is (QMP
    /// `GenericError`), e.g. `CPU[5] with APIC ID 5 exists`.
    #[error("{0}")]
    Rejected(String),
    /// The operation failed in the VMM.
    #[error("{operation} failed")]
    Failed {
        /// What was attempted.
        operation: &'static str,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What the monitor asks of the VMM. Every method is called on the thread that runs the
/// monitor's event loop (or the caller of [`Monitor::handle`](crate::Monitor::handle)),
/// never from a vCPU thread, and must not block for long: the loop serves every client and
/// every other event source of the VMM (a wedged vCPU is reported, not waited on forever).
pub trait MonitorBackend: Send + Sync {
    /// Current run state.
    fn status(&self) -> RunState;
    /// Pause every vCPU (`stop`). Stopping a paused VM succeeds and does nothing.
    fn stop(&self) -> Result<(), BackendError>;
    /// Resume every vCPU (`cont`). Resuming a running VM succeeds and does nothing.
    fn cont(&self) -> Result<(), BackendError>;
    /// Reset the VM (`system_reset`). The default says it is not supported.
    fn reset(&self) -> Result<(), BackendError> {
        Err(BackendError::NotSupported {
            operation: "system_reset",
        })
    }
    /// Press the ACPI power button (`system_powerdown`): the guest shuts down in an
    /// orderly way. The default says it is not supported (a VM without ACPI).
    fn powerdown(&self) -> Result<(), BackendError> {
        Err(BackendError::NotSupported {
            operation: "system_powerdown",
        })
    }
    /// Ask the VMM to exit (`quit`). Called once the reply has been queued for the client,
    /// on the thread that runs the [`QmpServer`](crate::QmpServer)'s event loop; the server
    /// then closes every connection and its socket by itself. Record the request (a flag, an
    /// `EventFd` the embedder watches) and return: the event loop is busy until this returns.
    fn quit(&self);
    /// Whether KVM is used. The default is what this VMM always does: yes.
    fn kvm(&self) -> KvmState {
        KvmState {
            enabled: true,
            present: true,
        }
    }
    /// CPU model name without the `-x86_64-cpu` suffix, e.g. `qemu64`.
    fn cpu_model(&self) -> String;
    /// Present vCPUs ordered by index.
    fn cpus(&self) -> Vec<CpuInfo>;
    /// Every possible slot ordered by vCPU index.
    fn hotpluggable_cpus(&self) -> Vec<CpuSlot>;
    /// Hot-plug a vCPU into the slot at `request.props`; returns its new description.
    fn add_cpu(&self, request: &CpuPlugRequest) -> Result<CpuInfo, BackendError>;
    /// Hot-unplug the CPU that was plugged with `id`.
    fn del_cpu(&self, id: &str) -> Result<Unplug, BackendError>;
    /// Register snapshot of one vCPU.
    fn registers(&self, cpu: VcpuIndex) -> Result<Registers, BackendError>;
    /// Translate a guest-virtual address with `cpu`'s page tables; `None` when unmapped.
    fn gva2gpa(&self, cpu: VcpuIndex, gva: u64) -> Result<Option<u64>, BackendError>;
    /// Read `len` bytes of guest-physical memory at `gpa`.
    fn read_phys(&self, gpa: u64, len: usize) -> Result<Vec<u8>, BackendError>;
    /// Guest NUMA nodes; empty when the VM has none.
    fn numa(&self) -> Vec<NumaNode>;
    /// Pin one vCPU to the host CPUs in `cpuset` (libvirt cpuset grammar, e.g. `2-3,^3`).
    fn vcpupin(&self, cpu: VcpuIndex, cpuset: &str) -> Result<(), BackendError>;
    /// libvirt-style `vcpuinfo` text: VCPU, CPU, State, CPU time, CPU Affinity per vCPU.
    fn vcpuinfo(&self) -> Result<String, BackendError>;
    /// Per present vCPU, the instructions its emulation fallback completed in user space
    /// (`info emulated`); the default: a VMM without a fallback, nothing.
    fn emulated(&self) -> Vec<EmulatedInsns> {
        Vec::new()
    }
    /// The VM's name (`query-name`); the default: none.
    fn name(&self) -> Option<String> {
        None
    }
    /// The VM's UUID (`query-uuid`); the default is QEMU's without `-uuid`: [`NIL_UUID`].
    fn uuid(&self) -> String {
        NIL_UUID.to_owned()
    }
    /// Memory and CPU limits. The default says it is not supported.
    fn machine(&self) -> Result<MachineInfo, BackendError> {
        Err(BackendError::NotSupported {
            operation: "query-machines",
        })
    }
    /// The CPUID KVM supports on this host (`KVM_GET_SUPPORTED_CPUID`), against which
    /// `query-cpu-definitions` and `query-cpu-model-expansion` judge the CPU models. The
    /// default says it is not supported.
    fn host_cpuid(&self) -> Result<cpuid_model::CpuidTable, BackendError> {
        Err(BackendError::NotSupported {
            operation: "CPU model queries",
        })
    }
    /// Every slot's vCPU with its host CPUs (`vcpupin` without a set), by index: present
    /// vCPUs as their threads are pinned now, absent ones as they would be when plugged.
    /// The default says it is not supported.
    fn vcpu_affinities(&self) -> Result<Vec<VcpuAffinity>, BackendError> {
        Err(BackendError::NotSupported {
            operation: "vcpupin",
        })
    }
    /// Pins the emulator threads to `cpuset` (libvirt grammar) when given, and returns
    /// their host CPUs as a CPU list (`emulatorpin`). The default says it is not
    /// supported.
    fn emulatorpin(&self, cpuset: Option<&str>) -> Result<String, BackendError> {
        let _ = cpuset;
        Err(BackendError::NotSupported {
            operation: "emulatorpin",
        })
    }
    /// Adds to the live domain `dumpxml` prints what only the VMM knows (kernel, NUMA
    /// distances, CPU features); the monitor has filled in the rest (see
    /// [`domain`](crate::domain)). The default adds nothing.
    fn complete_domain(&self, domain: &mut libvirt_domain::DomainConfig) {
        let _ = domain;
    }
}

fn segment(s: &kvm_bindings::kvm_segment) -> Segment {
    let flags = u32::from(s.type_)
        | u32::from(s.s) << 4
        | u32::from(s.dpl) << 5
        | u32::from(s.present) << 7
        | u32::from(s.avl) << 12
        | u32::from(s.l) << 13
        | u32::from(s.db) << 14
        | u32::from(s.g) << 15;
    Segment {
        selector: s.selector,
        base: s.base,
        limit: s.limit,
        flags,
    }
}

impl Registers {
    /// The snapshot of a vCPU's KVM registers (`halted`: it finished its guest work).
    pub fn from_kvm(g: &kvm_bindings::kvm_regs, s: &kvm_bindings::kvm_sregs, halted: bool) -> Self {
        Registers {
            rax: g.rax,
            rbx: g.rbx,
            rcx: g.rcx,
            rdx: g.rdx,
            rsi: g.rsi,
            rdi: g.rdi,
            rbp: g.rbp,
            rsp: g.rsp,
            r8: g.r8,
            r9: g.r9,
            r10: g.r10,
            r11: g.r11,
            r12: g.r12,
            r13: g.r13,
            r14: g.r14,
            r15: g.r15,
            rip: g.rip,
            rflags: g.rflags,
            es: segment(&s.es),
            cs: segment(&s.cs),
            ss: segment(&s.ss),
            ds: segment(&s.ds),
            fs: segment(&s.fs),
            gs: segment(&s.gs),
            ldt: segment(&s.ldt),
            tr: segment(&s.tr),
            gdt: DescriptorTable {
                base: s.gdt.base,
                limit: s.gdt.limit,
            },
            idt: DescriptorTable {
                base: s.idt.base,
                limit: s.idt.limit,
            },
            cr0: s.cr0,
            cr2: s.cr2,
            cr3: s.cr3,
            cr4: s.cr4,
            efer: s.efer,
            halted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Snapshot {
        regs: kvm_bindings::kvm_regs,
        sregs: kvm_bindings::kvm_sregs,
    }

    #[test]
    fn registers_pack_segment_attributes_as_vmx_does() {
        let mut r = Snapshot::default();
        r.regs.rip = 0x100_0000;
        r.regs.rsi = 0x7000;
        r.sregs.cr3 = 0x9000;
        r.sregs.efer = 0x500;
        r.sregs.gdt.base = 0x500;
        r.sregs.gdt.limit = 0x1f;
        // A 64-bit ring-0 code segment: type 0xb, S, P, L, G.
        r.sregs.cs = kvm_bindings::kvm_segment {
            selector: 0x10,
            type_: 0xb,
            s: 1,
            present: 1,
            l: 1,
            g: 1,
            limit: 0xffff_ffff,
            ..Default::default()
        };
        let m = Registers::from_kvm(&r.regs, &r.sregs, true);
        assert_eq!(
            (m.rip, m.rsi, m.cr3, m.efer),
            (0x100_0000, 0x7000, 0x9000, 0x500)
        );
        assert_eq!(
            m.cs,
            Segment {
                selector: 0x10,
                base: 0,
                limit: 0xffff_ffff,
                flags: 0xa09b,
            }
        );
        assert_eq!(
            m.gdt,
            DescriptorTable {
                base: 0x500,
                limit: 0x1f
            }
        );
        assert!(m.halted);
    }
}

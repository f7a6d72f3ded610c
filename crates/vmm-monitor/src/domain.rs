//! `dumpxml`: the running VM as a libvirt domain, as `virsh dumpxml` prints a live domain.
//!
//! Everything the monitor can ask the backend goes in: name, UUID, memory, the vCPU
//! count with the live `current`, the topology (from the CPU slots), the CPU model, the
//! live `<vcpupin>` and `<emulatorpin>` (only where a thread is held to fewer CPUs than
//! the host offers: a pin to every CPU is no pin), and the NUMA cells. The backend adds
//! what only it knows (kernel, NUMA distances, CPU features) in
//! [`MonitorBackend::complete_domain`].

use cpu_topology::cpuset::LIMIT_CEILING;
use cpu_topology::HostCpuSet;
use libvirt_domain::config::{
    CpuConfig, CpuMode, CpuModelConfig, CpuTopologyConfig, NumaCellConfig, OsConfig, Placement,
    VcpuConfig,
};
use libvirt_domain::DomainConfig;

use crate::backend::{BackendError, MonitorBackend};

fn cpu_set(list: &str) -> Result<HostCpuSet, BackendError> {
    HostCpuSet::parse_cpu_list(list, LIMIT_CEILING).map_err(|e| BackendError::Failed {
        operation: "dumpxml",
        source: Box::new(e),
    })
}

/// The live domain of `b`'s VM.
pub fn live_domain(b: &dyn MonitorBackend) -> Result<DomainConfig, BackendError> {
    let m = b.machine()?;
    let slots = b.hotpluggable_cpus();
    let live = b.cpus().len() as u32;
    let host = cpu_set(&m.host_cpus)?;
    let mut d = DomainConfig {
        domain_type: "kvm".into(),
        name: b.name().unwrap_or_else(|| "vmm".into()),
        uuid: Some(b.uuid()),
        memory_kib: m.memory / 1024,
        current_memory_kib: m.memory / 1024,
        vcpu: VcpuConfig {
            count: m.max_cpus,
            current: (live != m.max_cpus).then_some(live),
            placement: Some(Placement::Static),
            cpuset: None,
        },
        os: OsConfig {
            machine: Some("pc".into()),
            ..OsConfig::default()
        },
        ..DomainConfig::default()
    };
    for pin in b.vcpu_affinities()? {
        let cpus = cpu_set(&pin.cpus)?;
        if cpus != host {
            d.set_vcpupin(pin.index.0, cpus);
        }
    }
    let emulator = cpu_set(&b.emulatorpin(None)?)?;
    d.cputune.emulatorpin = (emulator != host).then_some(emulator);

    let levels =
        |f: fn(&crate::CpuProps) -> u32| slots.iter().map(|s| f(&s.props) + 1).max().unwrap_or(1);
    let model = b.cpu_model();
    let (mode, model) = match model.as_str() {
        "host" => (CpuMode::HostPassthrough, None),
        "max" => (CpuMode::Maximum, None),
        _ => (
            CpuMode::Custom,
            Some(CpuModelConfig {
                name: model,
                fallback: None,
            }),
        ),
    };
    let nodes = b.numa();
    let mut numa = Vec::new();
    if nodes.len() > 1 {
        for n in &nodes {
            let mut cpus = HostCpuSet::new();
            for s in slots.iter().filter(|s| s.props.node_id == Some(n.id)) {
                cpus.insert(cpu_topology::HostCpuId(s.index.0));
            }
            numa.push(NumaCellConfig {
                id: n.id,
                cpus: (!cpus.is_empty()).then_some(cpus),
                memory_kib: n.size_mib * 1024,
                mem_access: None,
                distances: Vec::new(),
            });
        }
    }
    d.cpu = Some(CpuConfig {
        mode,
        match_: None,
        check: None,
        migratable: None,
        model,
        vendor: None,
        features: Vec::new(),
        topology: Some(CpuTopologyConfig {
            sockets: levels(|p| p.socket_id),
            dies: levels(|p| p.die_id),
            clusters: 1,
            cores: levels(|p| p.core_id),
            threads: levels(|p| p.thread_id),
        }),
        numa,
    });
    b.complete_domain(&mut d);
    Ok(d)
}

/// `dumpxml` text.
pub fn dumpxml(b: &dyn MonitorBackend) -> Result<String, BackendError> {
    Ok(libvirt_domain::to_xml(&live_domain(b)?))
}

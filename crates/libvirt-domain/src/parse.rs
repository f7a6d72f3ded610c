//! libvirt domain XML -> [`DomainConfig`]: the document level, memory, `<vcpu>`,
//! `<cputune>`, `<numatune>`, `<os>`, `<features>` and the serial console. `<cpu>` is in
//! [`crate::parse_cpu`].

use roxmltree::{Document, Node};

use crate::config::{
    CpuTune, DomainConfig, Features, MemNode, MemoryMode, NumaTune, NumaTuneMemory, OsConfig,
    Placement, Scheduler, SerialBackend, SerialConfig, VcpuConfig, VcpuPinConfig, VcpuSched,
};
use crate::error::DomainError;
use crate::reader::{parse_number, path, text, Reader};
use crate::units::{memory_kib, round_up_mib};

const PLACEMENTS: &[(&str, Placement)] =
    &[("static", Placement::Static), ("auto", Placement::Auto)];
const MEMORY_MODES: &[(&str, MemoryMode)] = &[
    ("strict", MemoryMode::Strict),
    ("preferred", MemoryMode::Preferred),
    ("interleave", MemoryMode::Interleave),
    ("restrictive", MemoryMode::Restrictive),
];
const SCHEDULERS: &[(&str, Scheduler)] = &[
    ("batch", Scheduler::Batch),
    ("idle", Scheduler::Idle),
    ("fifo", Scheduler::Fifo),
    ("rr", Scheduler::Rr),
];
const ON_OFF: &[(&str, bool)] = &[("on", true), ("off", false)];

/// Reads a libvirt domain definition (`virsh dumpxml` output or a hand-written file).
///
/// ```
/// let xml = "<domain type='kvm'><name>demo</name><memory unit='GiB'>1</memory>\
///            <vcpu current='2'>4</vcpu><devices><disk type='file'/></devices></domain>";
/// let d = libvirt_domain::parse_domain(xml).unwrap();
/// assert_eq!((d.name.as_str(), d.memory_kib, d.vcpu.count, d.vcpu.present()), ("demo", 1 << 20, 4, 2));
/// assert_eq!(d.ignored_warning().unwrap(), "domain 'demo': not implemented, ignored: devices/disk");
/// ```
pub fn parse_domain(xml: &str) -> Result<DomainConfig, DomainError> {
    let doc = Document::parse(xml).map_err(DomainError::Xml)?;
    let root = doc.root_element();
    if !root.has_tag_name("domain") {
        return Err(DomainError::NotADomain(root.tag_name().name().to_string()));
    }
    let mut r = Reader::default();
    r.take(root);
    let mut d = DomainConfig {
        domain_type: domain_type(&mut r, root)?,
        ..DomainConfig::default()
    };
    r.attr(root, "id"); // a running domain's id: runtime state, not configuration
    d.name = r
        .child(root, "name")
        .map(|n| text(n).to_string())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| missing("domain", "element <name>"))?;
    d.uuid = r.child(root, "uuid").map(uuid).transpose()?;
    d.vcpu = vcpu(&mut r, root)?;
    d.cpu = crate::parse_cpu::cpu(&mut r, root, d.vcpu.count)?;
    d.cputune = cputune(&mut r, root, d.vcpu.count)?;
    d.numatune = numatune(&mut r, root, d.numa_cells().len())?;
    memory(&mut r, root, &mut d)?;
    d.os = os(&mut r, root)?;
    d.features = features(&mut r, root)?;
    d.serial = serial(&mut r, root)?;
    d.ignored = r.ignored(root);
    Ok(d)
}

pub(crate) fn missing(element: &str, what: &str) -> DomainError {
    DomainError::Missing {
        element: element.to_string(),
        what: what.to_string(),
    }
}

pub(crate) fn inconsistent(element: &str, reason: String) -> DomainError {
    DomainError::Inconsistent {
        element: element.to_string(),
        reason,
    }
}

fn domain_type(r: &mut Reader, root: Node<'_, '_>) -> Result<String, DomainError> {
    let t = r
        .attr(root, "type")
        .ok_or_else(|| missing("domain", "attribute 'type'"))?;
    match t {
        "kvm" | "qemu" => Ok(t.to_string()),
        _ => Err(DomainError::Invalid {
            element: "domain".into(),
            attribute: "type".into(),
            value: t.into(),
            expected: "kvm or qemu",
        }),
    }
}

/// A UUID in libvirt's accepted form (32 hex digits, dashes anywhere), canonicalised.
fn uuid(node: Node<'_, '_>) -> Result<String, DomainError> {
    let raw = text(node);
    let hex: String = raw.chars().filter(|&c| c != '-').collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(DomainError::Invalid {
            element: "uuid".into(),
            attribute: "text".into(),
            value: raw.into(),
            expected: "32 hexadecimal digits (8-4-4-4-12)",
        });
    }
    let h = hex.to_ascii_lowercase();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// A memory element's size in KiB (`<memory unit='GiB'>2</memory>`).
pub(crate) fn size_kib(
    r: &mut Reader,
    node: Node<'_, '_>,
    value: &str,
    attribute: &str,
) -> Result<u64, DomainError> {
    let n: u64 = parse_number(node, attribute, value, "a non-negative integer")?;
    let unit = r.attr(node, "unit");
    memory_kib(&path(node), n, unit)
}

fn memory(r: &mut Reader, root: Node<'_, '_>, d: &mut DomainConfig) -> Result<(), DomainError> {
    let total = match r.child(root, "memory") {
        Some(m) => {
            r.attr(m, "dumpCore"); // core dumps are the host's business
            size_kib(r, m, text(m), "text")?
        }
        None => 0,
    };
    let cells: u64 = d
        .numa_cells()
        .iter()
        .map(|c| c.memory_kib)
        .fold(0, u64::saturating_add);
    // libvirt takes the cells' sum as the domain's memory when there are cells.
    d.memory_kib = if cells > 0 {
        cells
    } else {
        round_up_mib(total)
    };
    if d.memory_kib == 0 {
        return Err(missing(
            "memory",
            "a size (give <memory> or <cpu><numa> cells)",
        ));
    }
    let current = match r.child(root, "currentMemory") {
        Some(m) => size_kib(r, m, text(m), "text")?,
        None => 0,
    };
    // libvirt: an absent, zero or too large balloon target is the whole memory.
    d.current_memory_kib = if current == 0 || current > d.memory_kib {
        d.memory_kib
    } else {
        current
    };
    Ok(())
}

fn vcpu(r: &mut Reader, root: Node<'_, '_>) -> Result<VcpuConfig, DomainError> {
    let Some(node) = r.child(root, "vcpu") else {
        return Ok(VcpuConfig::default());
    };
    let count: u32 = parse_number(node, "text", text(node), "a vCPU count from 1")?;
    if count == 0 {
        return Err(inconsistent(
            "vcpu",
            "the vCPU count must be at least 1".into(),
        ));
    }
    let current: Option<u32> = r.number(node, "current", "a vCPU count")?;
    if let Some(c) = current {
        if c == 0 || c > count {
            return Err(inconsistent(
                "vcpu",
                format!("current='{c}' must be from 1 to the vCPU count {count}"),
            ));
        }
    }
    Ok(VcpuConfig {
        count,
        current,
        placement: r.choice(node, "placement", PLACEMENTS, "static or auto")?,
        cpuset: r.cpuset(node, "cpuset")?,
    })
}

/// Checks that every vCPU of `set` exists.
pub(crate) fn vcpus_exist(
    node: Node<'_, '_>,
    attribute: &'static str,
    set: &cpu_topology::HostCpuSet,
    count: u32,
) -> Result<(), DomainError> {
    match set.last() {
        Some(last) if last.0 >= count => Err(DomainError::NoSuchVcpu {
            element: path(node),
            attribute,
            vcpu: last.0,
            count,
        }),
        _ => Ok(()),
    }
}

fn cputune(r: &mut Reader, root: Node<'_, '_>, count: u32) -> Result<CpuTune, DomainError> {
    let mut tune = CpuTune::default();
    let Some(node) = r.child(root, "cputune") else {
        return Ok(tune);
    };
    for pin in r.children(node, "vcpupin") {
        let vcpu: u32 = r
            .number(pin, "vcpu", "a vCPU index")?
            .ok_or_else(|| missing("cputune/vcpupin", "attribute 'vcpu'"))?;
        if vcpu >= count {
            return Err(DomainError::NoSuchVcpu {
                element: "cputune/vcpupin".into(),
                attribute: "vcpu",
                vcpu,
                count,
            });
        }
        let cpuset = r
            .cpuset(pin, "cpuset")?
            .ok_or_else(|| missing("cputune/vcpupin", "attribute 'cpuset'"))?;
        if tune.vcpupin.iter().any(|p| p.vcpu == vcpu) {
            return Err(DomainError::Duplicate {
                element: "cputune/vcpupin".into(),
                what: format!("vcpu='{vcpu}'"),
            });
        }
        tune.vcpupin.push(VcpuPinConfig { vcpu, cpuset });
    }
    tune.vcpupin.sort_by_key(|p| p.vcpu);
    if let Some(pin) = r.child(node, "emulatorpin") {
        tune.emulatorpin = Some(
            r.cpuset(pin, "cpuset")?
                .ok_or_else(|| missing("cputune/emulatorpin", "attribute 'cpuset'"))?,
        );
    }
    for s in r.children(node, "vcpusched") {
        let vcpus = r.cpuset(s, "vcpus")?;
        if let Some(set) = &vcpus {
            vcpus_exist(s, "vcpus", set, count)?;
        }
        let scheduler = r
            .choice(s, "scheduler", SCHEDULERS, "batch, idle, fifo or rr")?
            .ok_or_else(|| missing("cputune/vcpusched", "attribute 'scheduler'"))?;
        let priority: Option<i32> = r.number(s, "priority", "an integer priority")?;
        if matches!(scheduler, Scheduler::Fifo | Scheduler::Rr) && priority.is_none() {
            return Err(missing("cputune/vcpusched", "attribute 'priority'"));
        }
        tune.vcpusched.push(VcpuSched {
            vcpus,
            scheduler,
            priority,
        });
    }
    tune.shares = element_number(r, node, "shares", "a non-negative integer")?;
    tune.period = element_number(r, node, "period", "a period in microseconds")?;
    tune.quota = element_number(r, node, "quota", "a quota in microseconds")?;
    Ok(tune)
}

/// The text of child `name` as a number.
fn element_number<T: std::str::FromStr>(
    r: &mut Reader,
    node: Node<'_, '_>,
    name: &str,
    expected: &'static str,
) -> Result<Option<T>, DomainError> {
    r.child(node, name)
        .map(|c| parse_number(c, "text", text(c), expected))
        .transpose()
}

/// `mode=` of `<numatune>`'s `<memory>` and `<memnode>`, default strict.
fn memory_mode(r: &mut Reader, node: Node<'_, '_>) -> Result<MemoryMode, DomainError> {
    let expected = "strict, preferred, interleave or restrictive";
    Ok(r.choice(node, "mode", MEMORY_MODES, expected)?
        .unwrap_or(MemoryMode::Strict))
}

fn numatune(r: &mut Reader, root: Node<'_, '_>, cells: usize) -> Result<NumaTune, DomainError> {
    let mut tune = NumaTune::default();
    let Some(node) = r.child(root, "numatune") else {
        return Ok(tune);
    };
    if let Some(m) = r.child(node, "memory") {
        let mode = memory_mode(r, m)?;
        let placement = r.choice(m, "placement", PLACEMENTS, "static or auto")?;
        let nodeset = r.cpuset(m, "nodeset")?;
        if nodeset.is_none() && placement != Some(Placement::Auto) {
            return Err(missing("numatune/memory", "attribute 'nodeset'"));
        }
        tune.memory = Some(NumaTuneMemory {
            mode,
            nodeset,
            placement,
        });
    }
    for n in r.children(node, "memnode") {
        let cellid: u32 = r
            .number(n, "cellid", "a guest NUMA cell id")?
            .ok_or_else(|| missing("numatune/memnode", "attribute 'cellid'"))?;
        if cellid as usize >= cells {
            return Err(inconsistent(
                "numatune/memnode",
                format!("cellid='{cellid}' names no <cpu><numa> cell (there are {cells})"),
            ));
        }
        if tune.memnodes.iter().any(|m| m.cellid == cellid) {
            return Err(DomainError::Duplicate {
                element: "numatune/memnode".into(),
                what: format!("cellid='{cellid}'"),
            });
        }
        let mode = memory_mode(r, n)?;
        let nodeset = r
            .cpuset(n, "nodeset")?
            .ok_or_else(|| missing("numatune/memnode", "attribute 'nodeset'"))?;
        tune.memnodes.push(MemNode {
            cellid,
            mode,
            nodeset,
        });
    }
    tune.memnodes.sort_by_key(|m| m.cellid);
    Ok(tune)
}

fn os(r: &mut Reader, root: Node<'_, '_>) -> Result<OsConfig, DomainError> {
    let mut os = OsConfig::default();
    let Some(node) = r.child(root, "os") else {
        return Ok(os);
    };
    if let Some(t) = r.child(node, "type") {
        if text(t) != "hvm" {
            return Err(DomainError::Invalid {
                element: "os/type".into(),
                attribute: "text".into(),
                value: text(t).into(),
                expected: "hvm",
            });
        }
        if let Some(arch) = r.attr(t, "arch") {
            if arch != "x86_64" {
                return Err(DomainError::Invalid {
                    element: "os/type".into(),
                    attribute: "arch".into(),
                    value: arch.into(),
                    expected: "x86_64",
                });
            }
        }
        os.machine = r.attr(t, "machine").map(str::to_string);
    }
    let mut file = |name: &str| r.child(node, name).map(|n| text(n).to_string());
    os.kernel = file("kernel");
    os.initrd = file("initrd");
    os.cmdline = file("cmdline");
    Ok(os)
}

fn features(r: &mut Reader, root: Node<'_, '_>) -> Result<Features, DomainError> {
    let mut f = Features::default();
    let Some(node) = r.child(root, "features") else {
        return Ok(f);
    };
    f.acpi = r.child(node, "acpi").is_some();
    f.apic = r.child(node, "apic").is_some();
    f.pae = r.child(node, "pae").is_some();
    if let Some(kvm) = r.child(node, "kvm") {
        if let Some(hidden) = r.child(kvm, "hidden") {
            f.kvm_hidden = r.choice(hidden, "state", ON_OFF, "on or off")?;
        }
    }
    Ok(f)
}

fn serial(r: &mut Reader, root: Node<'_, '_>) -> Result<Option<SerialConfig>, DomainError> {
    let Some(devices) = r.child(root, "devices") else {
        return Ok(None);
    };
    let serial = devices.children().find(|c| c.has_tag_name("serial"));
    let console = devices.children().find(|c| c.has_tag_name("console"));
    let Some(node) = serial.or(console) else {
        return Ok(None);
    };
    r.take(node);
    // A <console type='pty'><target type='serial'> next to a <serial> is the same device.
    if let (Some(_), Some(c)) = (serial, console) {
        let target = c.children().find(|t| t.has_tag_name("target"));
        if target.is_some_and(|t| t.attribute("type").is_none_or(|ty| ty == "serial")) {
            r.take(c);
            r.attr(c, "type");
            if let Some(t) = target {
                r.take(t);
                r.attr(t, "type");
                r.attr(t, "port");
            }
        }
    }
    let element = path(node);
    let kind = r
        .attr(node, "type")
        .ok_or_else(|| missing(&element, "attribute 'type'"))?;
    let source = r.child(node, "source");
    let mut source_attr = |name: &str| -> Result<String, DomainError> {
        source
            .and_then(|s| r.attr(s, name))
            .map(str::to_string)
            .ok_or_else(|| missing(&format!("{element}/source"), &format!("attribute '{name}'")))
    };
    let backend = match kind {
        "pty" => SerialBackend::Pty,
        "stdio" => SerialBackend::Stdio,
        "null" => SerialBackend::Null,
        "file" => SerialBackend::File(source_attr("path")?),
        "unix" => SerialBackend::Unix {
            path: source_attr("path")?,
            listen: source_attr("mode").is_ok_and(|m| m == "bind"),
        },
        "tcp" => {
            let host = source_attr("host")?;
            let service = source_attr("service")?;
            let port = service
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| DomainError::Invalid {
                    element: format!("{element}/source"),
                    attribute: "service".into(),
                    value: service.clone(),
                    expected: "a TCP port from 1 to 65535",
                })?;
            SerialBackend::Tcp {
                host,
                port,
                listen: source_attr("mode").is_ok_and(|m| m == "bind"),
            }
        }
        other => {
            return Err(DomainError::Invalid {
                element,
                attribute: "type".into(),
                value: other.into(),
                expected: "pty, stdio, null, file, unix or tcp",
            })
        }
    };
    let mut port = 0;
    if let Some(t) = r.child(node, "target") {
        r.attr(t, "type");
        port = r.number(t, "port", "a serial port number")?.unwrap_or(0);
    }
    Ok(Some(SerialConfig { backend, port }))
}

//! [`DomainConfig`] -> libvirt domain XML, as `virsh dumpxml` prints a domain. For a running
//! VM, set the live vCPU count (`vcpu.current`) and pins ([`DomainConfig::set_vcpupin`])
//! first. Sizes are written in KiB and CPU lists in their compact form, so reading the
//! output back gives the same configuration.

use std::fmt::Write;

use crate::config::{
    CpuCheck, CpuConfig, CpuMatch, CpuMode, DomainConfig, Fallback, FeaturePolicy, MemAccess,
    MemoryMode, Placement, Scheduler, SerialBackend, SerialConfig,
};

/// Escapes text for an attribute value or element content.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            // Literal whitespace in an attribute would be read back as a space.
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

fn placement(p: Placement) -> &'static str {
    match p {
        Placement::Static => "static",
        Placement::Auto => "auto",
    }
}

fn mode(m: MemoryMode) -> &'static str {
    match m {
        MemoryMode::Strict => "strict",
        MemoryMode::Preferred => "preferred",
        MemoryMode::Interleave => "interleave",
        MemoryMode::Restrictive => "restrictive",
    }
}

/// Writes `domain` as a libvirt `<domain>` document.
///
/// ```
/// let d = libvirt_domain::parse_domain(
///     "<domain type='kvm'><name>a</name><memory unit='MiB'>64</memory><vcpu>2</vcpu></domain>",
/// ).unwrap();
/// let xml = libvirt_domain::to_xml(&d);
/// assert!(xml.contains("<memory unit='KiB'>65536</memory>"));
/// assert_eq!(libvirt_domain::parse_domain(&xml).unwrap(), d);
/// ```
pub fn to_xml(d: &DomainConfig) -> String {
    let mut x = String::new();
    // Writing to a String cannot fail.
    let _ = write_domain(&mut x, d);
    x
}

fn write_domain(x: &mut String, d: &DomainConfig) -> std::fmt::Result {
    writeln!(x, "<domain type='{}'>", esc(&d.domain_type))?;
    writeln!(x, "  <name>{}</name>", esc(&d.name))?;
    if let Some(u) = &d.uuid {
        writeln!(x, "  <uuid>{u}</uuid>")?;
    }
    writeln!(x, "  <memory unit='KiB'>{}</memory>", d.memory_kib)?;
    writeln!(
        x,
        "  <currentMemory unit='KiB'>{}</currentMemory>",
        d.current_memory_kib
    )?;
    let v = &d.vcpu;
    write!(x, "  <vcpu")?;
    if let Some(p) = v.placement {
        write!(x, " placement='{}'", placement(p))?;
    }
    if let Some(s) = &v.cpuset {
        write!(x, " cpuset='{s}'")?;
    }
    if let Some(c) = v.current {
        write!(x, " current='{c}'")?;
    }
    writeln!(x, ">{}</vcpu>", v.count)?;
    write_cputune(x, d)?;
    write_numatune(x, d)?;
    write_os(x, d)?;
    write_features(x, d)?;
    if let Some(cpu) = &d.cpu {
        write_cpu(x, cpu)?;
    }
    if let Some(s) = &d.serial {
        writeln!(x, "  <devices>")?;
        write_serial(x, s)?;
        writeln!(x, "  </devices>")?;
    }
    writeln!(x, "</domain>")
}

fn write_cputune(x: &mut String, d: &DomainConfig) -> std::fmt::Result {
    let t = &d.cputune;
    if t == &Default::default() {
        return Ok(());
    }
    writeln!(x, "  <cputune>")?;
    for p in &t.vcpupin {
        writeln!(x, "    <vcpupin vcpu='{}' cpuset='{}'/>", p.vcpu, p.cpuset)?;
    }
    if let Some(s) = &t.emulatorpin {
        writeln!(x, "    <emulatorpin cpuset='{s}'/>")?;
    }
    for s in &t.vcpusched {
        write!(x, "    <vcpusched")?;
        if let Some(v) = &s.vcpus {
            write!(x, " vcpus='{v}'")?;
        }
        let name = match s.scheduler {
            Scheduler::Batch => "batch",
            Scheduler::Idle => "idle",
            Scheduler::Fifo => "fifo",
            Scheduler::Rr => "rr",
        };
        write!(x, " scheduler='{name}'")?;
        if let Some(p) = s.priority {
            write!(x, " priority='{p}'")?;
        }
        writeln!(x, "/>")?;
    }
    if let Some(v) = t.shares {
        writeln!(x, "    <shares>{v}</shares>")?;
    }
    if let Some(v) = t.period {
        writeln!(x, "    <period>{v}</period>")?;
    }
    if let Some(v) = t.quota {
        writeln!(x, "    <quota>{v}</quota>")?;
    }
    writeln!(x, "  </cputune>")
}

fn write_numatune(x: &mut String, d: &DomainConfig) -> std::fmt::Result {
    let t = &d.numatune;
    if t.memory.is_none() && t.memnodes.is_empty() {
        return Ok(());
    }
    writeln!(x, "  <numatune>")?;
    if let Some(m) = &t.memory {
        write!(x, "    <memory mode='{}'", mode(m.mode))?;
        if let Some(n) = &m.nodeset {
            write!(x, " nodeset='{n}'")?;
        }
        if let Some(p) = m.placement {
            write!(x, " placement='{}'", placement(p))?;
        }
        writeln!(x, "/>")?;
    }
    for m in &t.memnodes {
        writeln!(
            x,
            "    <memnode cellid='{}' mode='{}' nodeset='{}'/>",
            m.cellid,
            mode(m.mode),
            m.nodeset
        )?;
    }
    writeln!(x, "  </numatune>")
}

fn write_os(x: &mut String, d: &DomainConfig) -> std::fmt::Result {
    let os = &d.os;
    writeln!(x, "  <os>")?;
    match &os.machine {
        Some(m) => writeln!(x, "    <type arch='x86_64' machine='{}'>hvm</type>", esc(m))?,
        None => writeln!(x, "    <type arch='x86_64'>hvm</type>")?,
    }
    for (name, value) in [
        ("kernel", &os.kernel),
        ("initrd", &os.initrd),
        ("cmdline", &os.cmdline),
    ] {
        if let Some(v) = value {
            writeln!(x, "    <{name}>{}</{name}>", esc(v))?;
        }
    }
    writeln!(x, "  </os>")
}

fn write_features(x: &mut String, d: &DomainConfig) -> std::fmt::Result {
    let f = &d.features;
    if f == &Default::default() {
        return Ok(());
    }
    writeln!(x, "  <features>")?;
    for (on, name) in [(f.acpi, "acpi"), (f.apic, "apic"), (f.pae, "pae")] {
        if on {
            writeln!(x, "    <{name}/>")?;
        }
    }
    if let Some(h) = f.kvm_hidden {
        let state = if h { "on" } else { "off" };
        writeln!(x, "    <kvm>\n      <hidden state='{state}'/>\n    </kvm>")?;
    }
    writeln!(x, "  </features>")
}

fn write_cpu(x: &mut String, cpu: &CpuConfig) -> std::fmt::Result {
    let mode = match cpu.mode {
        CpuMode::Custom => "custom",
        CpuMode::HostModel => "host-model",
        CpuMode::HostPassthrough => "host-passthrough",
        CpuMode::Maximum => "maximum",
    };
    write!(x, "  <cpu mode='{mode}'")?;
    if let Some(m) = cpu.match_ {
        let m = match m {
            CpuMatch::Minimum => "minimum",
            CpuMatch::Exact => "exact",
            CpuMatch::Strict => "strict",
        };
        write!(x, " match='{m}'")?;
    }
    if let Some(c) = cpu.check {
        let c = match c {
            CpuCheck::None => "none",
            CpuCheck::Partial => "partial",
            CpuCheck::Full => "full",
        };
        write!(x, " check='{c}'")?;
    }
    if let Some(m) = cpu.migratable {
        write!(x, " migratable='{}'", if m { "on" } else { "off" })?;
    }
    writeln!(x, ">")?;
    if let Some(m) = &cpu.model {
        write!(x, "    <model")?;
        if let Some(f) = m.fallback {
            let f = match f {
                Fallback::Allow => "allow",
                Fallback::Forbid => "forbid",
            };
            write!(x, " fallback='{f}'")?;
        }
        writeln!(x, ">{}</model>", esc(&m.name))?;
    }
    if let Some(v) = &cpu.vendor {
        writeln!(x, "    <vendor>{}</vendor>", esc(v))?;
    }
    if let Some(t) = &cpu.topology {
        writeln!(
            x,
            "    <topology sockets='{}' dies='{}' clusters='{}' cores='{}' threads='{}'/>",
            t.sockets, t.dies, t.clusters, t.cores, t.threads
        )?;
    }
    for f in &cpu.features {
        let p = match f.policy {
            FeaturePolicy::Force => "force",
            FeaturePolicy::Require => "require",
            FeaturePolicy::Optional => "optional",
            FeaturePolicy::Disable => "disable",
            FeaturePolicy::Forbid => "forbid",
        };
        writeln!(x, "    <feature policy='{p}' name='{}'/>", esc(&f.name))?;
    }
    if !cpu.numa.is_empty() {
        writeln!(x, "    <numa>")?;
        for c in &cpu.numa {
            write!(x, "      <cell id='{}'", c.id)?;
            if let Some(s) = &c.cpus {
                write!(x, " cpus='{s}'")?;
            }
            write!(x, " memory='{}' unit='KiB'", c.memory_kib)?;
            if let Some(a) = c.mem_access {
                let a = match a {
                    MemAccess::Shared => "shared",
                    MemAccess::Private => "private",
                };
                write!(x, " memAccess='{a}'")?;
            }
            if c.distances.is_empty() {
                writeln!(x, "/>")?;
                continue;
            }
            writeln!(x, ">\n        <distances>")?;
            for (id, value) in &c.distances {
                writeln!(x, "          <sibling id='{id}' value='{value}'/>")?;
            }
            writeln!(x, "        </distances>\n      </cell>")?;
        }
        writeln!(x, "    </numa>")?;
    }
    writeln!(x, "  </cpu>")
}

fn write_serial(x: &mut String, s: &SerialConfig) -> std::fmt::Result {
    let mode = |listen: bool| if listen { "bind" } else { "connect" };
    let (kind, source) = match &s.backend {
        SerialBackend::Pty => ("pty", None),
        SerialBackend::Stdio => ("stdio", None),
        SerialBackend::Null => ("null", None),
        SerialBackend::File(p) => ("file", Some(format!("path='{}'", esc(p)))),
        SerialBackend::Unix { path, listen } => (
            "unix",
            Some(format!("mode='{}' path='{}'", mode(*listen), esc(path))),
        ),
        SerialBackend::Tcp { host, port, listen } => (
            "tcp",
            Some(format!(
                "mode='{}' host='{}' service='{port}'",
                mode(*listen),
                esc(host)
            )),
        ),
    };
    writeln!(x, "    <serial type='{kind}'>")?;
    if let Some(src) = source {
        writeln!(x, "      <source {src}/>")?;
    }
    writeln!(x, "      <target port='{}'/>", s.port)?;
    writeln!(x, "    </serial>")
}

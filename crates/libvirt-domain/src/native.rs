//! [`DomainConfig`] -> `vmm-reference`'s command line, as `virsh domxml-to-native qemu-argv`
//! does for QEMU. What has no option becomes a note, so nothing is dropped in silence.

use cpu_topology::HostCpuSet;

use crate::config::{
    CpuCheck, CpuConfig, CpuMode, DomainConfig, Fallback, FeaturePolicy, MemAccess, MemoryMode,
    NumaCellConfig, Placement, SerialBackend,
};

/// Choices for [`to_native`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NativeOptions {
    /// Put `vendor=`, `kvm=off` and `migratable=off` into `--cpu` (QEMU's property forms,
    /// which `cpuid_model::spec` takes). On by default; off turns them into notes, for a
    /// binary whose `--cpu` grammar predates them.
    pub cpu_properties: bool,
}

impl Default for NativeOptions {
    fn default() -> Self {
        Self {
            cpu_properties: true,
        }
    }
}

/// The command line of a domain: arguments after the program name, and notes on what
/// the arguments cannot express.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NativeCommand {
    /// Option and value as separate items: `["--smp", "4,sockets=2,cores=2,threads=1"]`.
    pub args: Vec<String>,
    /// One line per element or value the command line does not carry.
    pub notes: Vec<String>,
}

impl NativeCommand {
    /// The command as a shell line: `program` then the arguments, quoted where needed.
    pub fn to_shell(&self, program: &str) -> String {
        let mut line = program.to_string();
        for a in &self.args {
            line.push(' ');
            line.push_str(&shell_quote(a));
        }
        line
    }

    /// The file's arguments minus those `user` sets, then `user`'s: "options on the command
    /// line override the file". Options are compared by name whatever the dashes (`-smp`,
    /// `--smp`, `--smp=4`; `-m` is `--memory`); NUMA is one group: any of `--numa`,
    /// `--numa-cells` or `--object` from the user replaces all of the file's.
    ///
    /// ```
    /// let d = libvirt_domain::parse_domain(
    ///     "<domain type='kvm'><name>a</name><memory unit='MiB'>64</memory><vcpu>2</vcpu></domain>",
    /// ).unwrap();
    /// let cmd = libvirt_domain::to_native(&d, &Default::default());
    /// let user: Vec<String> = ["-smp", "4", "--memory=128M"].map(String::from).into();
    /// assert_eq!(cmd.overridden_by(&user).join(" "), "--name a -smp 4 --memory=128M");
    /// ```
    pub fn overridden_by(&self, user: &[String]) -> Vec<String> {
        let given: Vec<&str> = user.iter().filter_map(|a| option_group(a)).collect();
        let mut out: Vec<String> = self
            .args
            .chunks(2)
            .filter(|pair| option_group(&pair[0]).is_none_or(|g| !given.contains(&g)))
            .flatten()
            .cloned()
            .collect();
        out.extend(user.iter().cloned());
        out
    }

    fn push(&mut self, option: &str, value: impl Into<String>) {
        self.args.push(option.to_string());
        self.args.push(value.into());
    }
}

/// The override group of a command-line word, `None` for a value.
fn option_group(arg: &str) -> Option<&str> {
    let name = arg.strip_prefix('-')?;
    let name = name.strip_prefix('-').unwrap_or(name);
    let name = name.split('=').next().unwrap_or(name);
    Some(match name {
        "" => return None,
        "m" => "memory",
        "numa" | "numa-cells" | "object" => "numa",
        other => other,
    })
}

fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_=,.:/+^@%".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// libvirt's `<vendor>` names and the CPUID vendor strings `--cpu ...,vendor=` takes.
const LIBVIRT_VENDORS: &[(&str, &str)] = &[
    ("Intel", "GenuineIntel"),
    ("AMD", "AuthenticAMD"),
    ("Hygon", "HygonGenuine"),
];

/// libvirt feature names that QEMU (and `--cpu`) spell differently.
const FEATURE_RENAMES: &[(&str, &str)] = &[("pclmuldq", "pclmulqdq")];

/// The `vmm-reference` arguments equivalent to `domain`.
///
/// ```
/// let d = libvirt_domain::parse_domain(
///     "<domain type='kvm'><name>w</name><memory unit='MiB'>512</memory><vcpu>2</vcpu>\
///      <cpu mode='custom'><model fallback='forbid'>Westmere</model>\
///      <feature policy='disable' name='aes'/></cpu></domain>",
/// ).unwrap();
/// let cmd = libvirt_domain::to_native(&d, &Default::default());
/// assert_eq!(cmd.to_shell("vmm-reference"),
///     "vmm-reference --name w -m 512M --smp 2 --cpu Westmere,-aes,enforce");
/// ```
pub fn to_native(domain: &DomainConfig, options: &NativeOptions) -> NativeCommand {
    let mut cmd = NativeCommand::default();
    cmd.push("--name", domain.name.clone());
    if domain.uuid.is_some() {
        cmd.notes
            .push("<uuid>: no command-line option; not passed".into());
    }
    cmd.push("-m", format!("{}M", domain.memory_kib / 1024));
    if domain.current_memory_kib < domain.memory_kib {
        cmd.notes.push(format!(
            "<currentMemory> {} MiB: no balloon, the guest gets all {} MiB",
            domain.current_memory_kib / 1024,
            domain.memory_kib / 1024
        ));
    }
    cmd.push("--smp", smp(domain));
    if let Some(cpu) = &domain.cpu {
        cpu_option(&mut cmd, domain, cpu, options);
    } else if options.cpu_properties && domain.features.kvm_hidden == Some(true) {
        cmd.push("--cpu", "qemu64,kvm=off");
    }
    numa(&mut cmd, domain);
    placement(&mut cmd, domain);
    os_and_features(&mut cmd, domain, options);
    cmd
}

fn smp(d: &DomainConfig) -> String {
    let mut s = d.vcpu.present().to_string();
    if d.vcpu.present() < d.vcpu.count {
        s.push_str(&format!(",maxcpus={}", d.vcpu.count));
    }
    if let Some(t) = d.cpu.as_ref().and_then(|c| c.topology) {
        s.push_str(&format!(",sockets={}", t.sockets));
        if t.dies > 1 {
            s.push_str(&format!(",dies={}", t.dies));
        }
        if t.clusters > 1 {
            s.push_str(&format!(",clusters={}", t.clusters));
        }
        s.push_str(&format!(",cores={},threads={}", t.cores, t.threads));
    }
    s
}

fn cpu_option(cmd: &mut NativeCommand, d: &DomainConfig, cpu: &CpuConfig, o: &NativeOptions) {
    let mut spec = match cpu.mode {
        CpuMode::HostPassthrough => "host".to_string(),
        CpuMode::Maximum => "max".to_string(),
        CpuMode::HostModel => {
            cmd.notes.push(
                "<cpu mode='host-model'>: runs as host (this VMM computes no host-model expansion)"
                    .into(),
            );
            "host".to_string()
        }
        CpuMode::Custom => match &cpu.model {
            Some(m) => m.name.clone(),
            None if cpu.features.is_empty() => String::new(),
            None => "qemu64".to_string(),
        },
    };
    if spec.is_empty() {
        return; // <cpu> with only topology or cells: the default model
    }
    for f in &cpu.features {
        let name = FEATURE_RENAMES
            .iter()
            .find(|(l, _)| *l == f.name)
            .map_or(f.name.as_str(), |(_, q)| q);
        if f.policy.enables() {
            spec.push_str(&format!(",+{name}"));
        } else if f.policy.disables() {
            spec.push_str(&format!(",-{name}"));
        } else {
            cmd.notes.push(format!(
                "<cpu><feature policy='optional' name='{}'>: left as the model has it",
                f.name
            ));
        }
        if f.policy == FeaturePolicy::Forbid {
            cmd.notes.push(format!(
                "<cpu><feature policy='forbid' name='{}'>: turned off; the host is not checked for it",
                f.name
            ));
        }
    }
    let mut properties: Vec<(String, &str)> = Vec::new();
    if let Some(v) = &cpu.vendor {
        match LIBVIRT_VENDORS.iter().find(|(l, _)| l == v) {
            Some((_, id)) => properties.push((format!("vendor={id}"), "<cpu><vendor>")),
            None => cmd.notes.push(format!(
                "<cpu><vendor>{v}</vendor>: this VMM lays out CPUID for Intel, AMD and Hygon only; the model's vendor is kept"
            )),
        }
    }
    if d.features.kvm_hidden == Some(true) {
        properties.push(("kvm=off".into(), "<features><kvm><hidden state='on'>"));
    }
    if cpu.migratable == Some(false) {
        // QEMU has `migratable` on host and max only.
        if cpu.mode != CpuMode::Custom {
            properties.push(("migratable=off".into(), "<cpu migratable='off'>"));
        } else {
            cmd.notes.push(
                "<cpu migratable='off'>: applies to host-passthrough and maximum only; ignored for the custom model"
                    .into(),
            );
        }
    }
    for (p, element) in properties {
        if o.cpu_properties {
            spec.push(',');
            spec.push_str(&p);
        } else {
            cmd.notes.push(format!(
                "{element}: needs --cpu ...,{p}, which this build does not take"
            ));
        }
    }
    let forbid = cpu.model.as_ref().and_then(|m| m.fallback) == Some(Fallback::Forbid);
    if forbid || cpu.check == Some(CpuCheck::Full) {
        spec.push_str(",enforce");
    } else if cpu.check == Some(CpuCheck::None) {
        spec.push_str(",check=off");
    }
    cmd.push("--cpu", spec);
}

/// `host-nodes=` items for a node set: one per range.
fn host_nodes(set: &HostCpuSet) -> String {
    set.ranges()
        .into_iter()
        .map(|(a, b)| match a == b {
            true => format!(",host-nodes={a}"),
            false => format!(",host-nodes={a}-{b}"),
        })
        .collect()
}

/// The memory backend of one guest node: size, sharing and host policy.
fn backend(
    cmd: &mut NativeCommand,
    d: &DomainConfig,
    id: u32,
    kib: u64,
    access: Option<MemAccess>,
) {
    let mut object = format!("memory-backend-ram,id=ram-node{id},size={}M", kib / 1024);
    if access == Some(MemAccess::Shared) {
        object.push_str(",share=on");
    }
    let memnode = d.numatune.memnodes.iter().find(|m| m.cellid == id);
    let policy = match (memnode, &d.numatune.memory) {
        (Some(m), _) => Some((m.mode, Some(&m.nodeset))),
        (None, Some(m)) => Some((m.mode, m.nodeset.as_ref())),
        (None, None) => None,
    };
    match policy {
        Some((MemoryMode::Restrictive, _)) => cmd.notes.push(format!(
            "<numatune> mode='restrictive' for node {id}: no memory policy (it is a cgroup limit)"
        )),
        Some((mode, Some(nodes))) => {
            let name = match mode {
                MemoryMode::Preferred => "preferred",
                MemoryMode::Interleave => "interleave",
                _ => "bind",
            };
            object.push_str(&host_nodes(nodes));
            object.push_str(&format!(",policy={name}"));
        }
        Some((_, None)) => cmd
            .notes
            .push("<numatune><memory placement='auto'>: needs numad; memory is not bound".into()),
        None => {}
    }
    cmd.push("--object", object);
}

fn numa(cmd: &mut NativeCommand, d: &DomainConfig) {
    let cells = d.numa_cells();
    if cells.is_empty() {
        if d.numatune.memory.is_some() {
            cmd.notes.push(
                "<numatune> without <cpu><numa> cells: the guest sees one NUMA node with all memory"
                    .into(),
            );
            backend(cmd, d, 0, d.memory_kib, None);
            cmd.push("--numa", "node,nodeid=0,memdev=ram-node0");
        }
        return;
    }
    for cell in cells {
        backend(cmd, d, cell.id, cell.memory_kib, cell.mem_access);
        cmd.push("--numa", node_option(cell));
    }
    for cell in cells {
        for &(to, value) in &cell.distances {
            if to != cell.id {
                cmd.push(
                    "--numa",
                    format!("dist,src={},dst={to},val={value}", cell.id),
                );
            }
        }
    }
}

fn node_option(cell: &NumaCellConfig) -> String {
    let mut s = format!("node,nodeid={}", cell.id);
    for (a, b) in cell.cpus.iter().flat_map(|c| c.ranges()) {
        s.push_str(&match a == b {
            true => format!(",cpus={a}"),
            false => format!(",cpus={a}-{b}"),
        });
    }
    s.push_str(&format!(",memdev=ram-node{}", cell.id));
    s
}

fn placement(cmd: &mut NativeCommand, d: &DomainConfig) {
    if let Some(set) = &d.vcpu.cpuset {
        cmd.push("--cpuset", set.to_cpu_list());
    } else if d.vcpu.placement == Some(Placement::Auto) {
        cmd.notes
            .push("<vcpu placement='auto'>: needs numad; vCPUs are not pinned".into());
    }
    for pin in &d.cputune.vcpupin {
        cmd.push(
            "--vcpupin",
            format!("{}:{}", pin.vcpu, pin.cpuset.to_cpu_list()),
        );
    }
    if let Some(set) = &d.cputune.emulatorpin {
        cmd.push("--emulatorpin", set.to_cpu_list());
    }
    let t = &d.cputune;
    let unsupported = [
        (
            !t.vcpusched.is_empty(),
            "<vcpusched> (real-time vCPU scheduling)",
        ),
        (t.shares.is_some(), "<shares> (cgroup CPU weight)"),
        (t.period.is_some(), "<period> (cgroup CPU bandwidth)"),
        (t.quota.is_some(), "<quota> (cgroup CPU bandwidth)"),
    ];
    for (present, what) in unsupported {
        if present {
            cmd.notes.push(format!(
                "<cputune>{what}: not supported by this VMM; not applied"
            ));
        }
    }
}

fn os_and_features(cmd: &mut NativeCommand, d: &DomainConfig, o: &NativeOptions) {
    if let Some(machine) = &d.os.machine {
        cmd.notes.push(format!(
            "<os><type machine='{machine}'>: this VMM has one x86-64 machine"
        ));
    }
    match &d.os.kernel {
        Some(k) => {
            cmd.push("--kernel", k.clone());
            if let Some(i) = &d.os.initrd {
                cmd.push("--initrd", i.clone());
            }
            if let Some(c) = &d.os.cmdline {
                cmd.push("--append", c.clone());
            }
            if let Some(s) = &d.serial {
                serial(cmd, s);
            }
        }
        None => {
            if d.os.initrd.is_some() || d.os.cmdline.is_some() {
                cmd.notes
                    .push("<os><initrd>/<cmdline> without <kernel>: not passed".into());
            }
            if d.serial.is_some() {
                cmd.notes
                    .push("<serial>: only a --kernel guest has a serial port; not passed".into());
            }
        }
    }
    if !d.features.acpi {
        cmd.notes
            .push("no <features><acpi/>: this VMM always provides ACPI tables".into());
    }
    if !d.features.apic {
        cmd.notes
            .push("no <features><apic/>: this VMM always provides a local APIC".into());
    }
    if d.cpu.is_none() && d.features.kvm_hidden == Some(true) && !o.cpu_properties {
        cmd.notes.push(
            "<features><kvm><hidden state='on'>: needs --cpu ...,kvm=off, which this build does not take"
                .into(),
        );
    }
}

fn serial(cmd: &mut NativeCommand, s: &crate::config::SerialConfig) {
    if s.port != 0 {
        cmd.notes
            .push(format!("<serial><target port='{}'>: becomes COM1", s.port));
    }
    let spec = match &s.backend {
        SerialBackend::Pty => {
            cmd.notes
                .push("<serial type='pty'>: the console is this process's stdio".into());
            "stdio".to_string()
        }
        SerialBackend::Stdio => "stdio".into(),
        SerialBackend::Null => "null".into(),
        SerialBackend::File(p) => format!("file:{p}"),
        SerialBackend::Unix { path, listen } => {
            if !listen {
                cmd.notes.push(
                    "<serial type='unix'> mode='connect': this VMM listens on the socket".into(),
                );
            }
            format!("unix:{path},server,wait=off")
        }
        SerialBackend::Tcp { host, port, listen } => {
            if !listen {
                cmd.notes.push(
                    "<serial type='tcp'> mode='connect': this VMM listens on the port".into(),
                );
            }
            format!("tcp:{host}:{port},server,wait=off")
        }
    };
    cmd.push("--serial", spec);
}

//! The human monitor (HMP) commands reachable through `human-monitor-command`: a small
//! parser and QEMU-like text formatting, all pure except [`run`], which calls the backend.

use std::fmt::Write as _;

use cpu_topology::VcpuIndex;

use crate::backend::{CpuInfo, CpuPlugRequest, EmulatedInsns, NumaNode, Registers, Segment};
use crate::commands::{backend_error, Monitor};
use crate::events::QmpEvent;
use crate::virsh;

/// The virsh verbs, which take virsh's `--live` / `--current` flags.
const VIRSH_VERBS: &[&str] = &[
    "vcpuinfo",
    "vcpupin",
    "emulatorpin",
    "vcpucount",
    "setvcpus",
    "dumpxml",
];

/// Largest `xp` dump, in bytes.
pub const MAX_XP_BYTES: u64 = 64 * 1024;

/// One-line help per command, as `help` prints it.
pub const HELP: &[(&str, &str)] = &[
    ("cont", "resume emulation"),
    (
        "dumpxml",
        "show the running VM as libvirt domain XML (virsh dumpxml)",
    ),
    (
        "emulatorpin [CPUSET]",
        "show or set the emulator threads' host CPUs (virsh emulatorpin)",
    ),
    ("cpu-add N", "hot-plug the CPU with index N"),
    (
        "device_del ID",
        "remove the device (CPU) plugged with id ID",
    ),
    (
        "gva2gpa ADDR",
        "translate a guest virtual address of the current CPU",
    ),
    ("help", "show this help"),
    ("info cpus", "show the vCPUs and their host thread ids"),
    (
        "info emulated",
        "show the instructions each vCPU completed in user space (emulation fallback)",
    ),
    ("info kvm", "show KVM information"),
    ("info numa", "show NUMA information"),
    (
        "info registers [-a]",
        "show the current CPU's registers (-a: every CPU)",
    ),
    ("info status", "show the VM status (running|paused)"),
    ("quit", "quit the VMM"),
    (
        "setvcpus N",
        "plug or unplug vCPUs until N are present (virsh setvcpus --live)",
    ),
    ("stop", "stop emulation"),
    ("system_powerdown", "send the system power down event"),
    ("system_reset", "reset the system"),
    (
        "vcpuinfo",
        "show per-vCPU host CPU, state, time and affinity",
    ),
    ("vcpucount", "show the maximum and current vCPU counts"),
    (
        "vcpupin [VCPU CPUSET]",
        "show every vCPU's host CPUs, or pin a vCPU (e.g. 2-3,^3 or r for all)",
    ),
    (
        "xp /FMT ADDR",
        "dump guest physical memory (FMT: count, x|d|u|o|c, b|h|w|g)",
    ),
];

/// Result of one HMP command line.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HmpOutput {
    /// Text as the monitor would print it (lines end with `\n`).
    pub text: String,
    /// Events to broadcast after the reply.
    pub events_after: Vec<QmpEvent>,
    /// `quit` was accepted.
    pub quit: bool,
}

impl From<String> for HmpOutput {
    fn from(text: String) -> Self {
        HmpOutput {
            text,
            ..HmpOutput::default()
        }
    }
}

/// The CPU HMP commands act on when none is named: the boot CPU.
pub const DEFAULT_CPU: VcpuIndex = VcpuIndex(0);

/// Runs one HMP command line against the monitor's backend. `current` is the CPU that
/// `info cpus` marks and `info registers` and `gva2gpa` use (QMP's `cpu-index`).
pub fn run(monitor: &Monitor, line: &str, current: VcpuIndex) -> HmpOutput {
    match run_inner(monitor, line, current) {
        Ok(out) => out,
        Err(msg) => format!("Error: {msg}\n").into(),
    }
}

fn run_inner(monitor: &Monitor, line: &str, current: VcpuIndex) -> Result<HmpOutput, String> {
    let b = monitor.backend();
    let mut words: Vec<&str> = line.split_whitespace().collect();
    if words.first().is_some_and(|w| VIRSH_VERBS.contains(w)) {
        if words.contains(&"--config") {
            return Err("only live changes are supported (--live)".into());
        }
        // virsh's flags for "the running VM", which is all there is here.
        words.retain(|w| !matches!(*w, "--live" | "--current"));
    }
    let text = match words.as_slice() {
        [] => String::new(),
        ["help" | "?"] => format_help(),
        ["info", "cpus"] => format_info_cpus(&b.cpus(), current),
        ["info", "kvm"] => {
            let k = b.kvm();
            if k.present {
                format!(
                    "kvm support: {}\n",
                    if k.enabled { "enabled" } else { "disabled" }
                )
            } else {
                "kvm support: not compiled\n".to_owned()
            }
        }
        ["info", "emulated"] => format_emulated(&b.emulated()),
        ["info", "status"] => format_status(b.status().as_str()),
        ["info", "numa"] => format_numa(&b.numa()),
        ["info", "registers"] => {
            let r = b.registers(current).map_err(|e| backend_error(&e).desc)?;
            format_registers(&r)
        }
        ["info", "registers", "-a"] => {
            let mut out = String::new();
            for cpu in b.cpus() {
                let r = b.registers(cpu.index).map_err(|e| backend_error(&e).desc)?;
                let _ = write!(out, "\nCPU#{}\n{}", cpu.index, format_registers(&r));
            }
            out
        }
        ["stop"] => {
            monitor.stop().map_err(|e| e.desc)?;
            String::new()
        }
        ["cont" | "c"] => {
            monitor.cont().map_err(|e| e.desc)?;
            String::new()
        }
        ["system_powerdown"] => {
            monitor.powerdown().map_err(|e| e.desc)?;
            String::new()
        }
        ["system_reset"] => {
            b.reset().map_err(|e| backend_error(&e).desc)?;
            String::new()
        }
        ["quit" | "q"] => {
            return Ok(HmpOutput {
                quit: true,
                ..HmpOutput::default()
            })
        }
        ["cpu-add", n] => {
            let index = parse_u32(n)?;
            cpu_add(monitor, VcpuIndex(index))?;
            String::new()
        }
        ["device_del", id] => {
            let done = monitor.device_del(id).map_err(|e| e.desc)?;
            return Ok(HmpOutput {
                text: String::new(),
                events_after: done.events_after,
                quit: false,
            });
        }
        ["gva2gpa", addr] => {
            let gva = parse_address(addr)?;
            match b
                .gva2gpa(current, gva)
                .map_err(|e| backend_error(&e).desc)?
            {
                Some(gpa) => format!("gpa: {gpa:#x}\n"),
                None => "Unmapped\n".to_owned(),
            }
        }
        ["xp", fmt, addr] if fmt.starts_with('/') => xp(monitor, parse_xp_format(fmt)?, addr)?,
        ["xp", addr] => xp(monitor, XpFormat::default(), addr)?,
        ["vcpupin", vcpu, cpuset] => {
            let cpu = VcpuIndex(parse_u32(vcpu)?);
            b.vcpupin(cpu, cpuset).map_err(|e| backend_error(&e).desc)?;
            String::new()
        }
        ["vcpuinfo"] => b.vcpuinfo().map_err(|e| backend_error(&e).desc)?,
        ["vcpupin"] => {
            let rows = b.vcpu_affinities().map_err(|e| backend_error(&e).desc)?;
            virsh::format_vcpupin(&rows)
        }
        ["emulatorpin"] => {
            let cpus = b.emulatorpin(None).map_err(|e| backend_error(&e).desc)?;
            virsh::format_emulatorpin(&cpus)
        }
        ["emulatorpin", cpuset] => {
            b.emulatorpin(Some(cpuset))
                .map_err(|e| backend_error(&e).desc)?;
            String::new()
        }
        ["vcpucount"] => {
            let m = b.machine().map_err(|e| backend_error(&e).desc)?;
            let live = b.cpus().len() as u32;
            virsh::format_vcpucount(m.max_cpus, m.boot_cpus, live)
        }
        ["setvcpus", n] => {
            let events_after = virsh::setvcpus(monitor, parse_u32(n)?)?;
            return Ok(HmpOutput {
                text: String::new(),
                events_after,
                quit: false,
            });
        }
        ["dumpxml"] => crate::domain::dumpxml(b).map_err(|e| backend_error(&e).desc)?,
        ["info"] => HELP
            .iter()
            .filter(|(usage, _)| usage.starts_with("info "))
            .map(|(usage, what)| format!("{usage} -- {what}\n"))
            .collect(),
        ["info", "registers", ..] => {
            return Err("invalid arguments for 'info registers' (expected nothing or -a)".into())
        }
        [cmd, ..] if is_known(cmd) => return Err(format!("invalid arguments for '{cmd}'")),
        ["info", sub, ..] => format!("unknown command: 'info {sub}'\n"),
        [cmd, ..] => format!("unknown command: '{cmd}'\n"),
    };
    Ok(text.into())
}

fn is_known(cmd: &str) -> bool {
    HELP.iter()
        .any(|(usage, _)| usage.split(' ').next() == Some(cmd) && cmd != "info")
}

fn cpu_add(monitor: &Monitor, index: VcpuIndex) -> Result<(), String> {
    let b = monitor.backend();
    let slot = b
        .hotpluggable_cpus()
        .into_iter()
        .find(|s| s.index == index)
        .ok_or_else(|| format!("Invalid CPU index {index}"))?;
    if slot.qom_path.is_some() {
        return Err(format!("CPU {index} is already present"));
    }
    b.add_cpu(&CpuPlugRequest {
        id: None,
        props: slot.props,
    })
    .map_err(|e| backend_error(&e).desc)?;
    Ok(())
}

fn xp(monitor: &Monitor, fmt: XpFormat, addr: &str) -> Result<String, String> {
    let gpa = parse_address(addr)?;
    let len = u64::from(fmt.count) * u64::from(fmt.size);
    if len > MAX_XP_BYTES {
        return Err(format!("xp: at most {MAX_XP_BYTES} bytes per dump"));
    }
    let len = usize::try_from(len).map_err(|_| "xp: dump too large".to_owned())?;
    let bytes = monitor
        .backend()
        .read_phys(gpa, len)
        .map_err(|e| backend_error(&e).desc)?;
    Ok(format_memory(gpa, &bytes, fmt))
}

fn parse_u32(s: &str) -> Result<u32, String> {
    s.parse::<u32>()
        .map_err(|_| format!("'{s}' is not a valid number"))
}

/// Parses a monitor address: `0x` hex or decimal.
pub fn parse_address(s: &str) -> Result<u64, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse::<u64>(),
    };
    parsed.map_err(|_| format!("invalid address '{s}'"))
}

/// `help` text.
pub fn format_help() -> String {
    let mut out = String::new();
    for (usage, what) in HELP {
        let _ = writeln!(out, "{usage} -- {what}");
    }
    out
}

/// `info status` text.
pub fn format_status(status: &str) -> String {
    format!("VM status: {status}\n")
}

/// `info cpus`: `* CPU #0: thread_id=1234` for the current CPU, two spaces for the others,
/// ` (halted)` for halted ones.
pub fn format_info_cpus(cpus: &[CpuInfo], current: VcpuIndex) -> String {
    let mut out = String::new();
    for c in cpus {
        let mark = if c.index == current { '*' } else { ' ' };
        let halted = if c.halted { " (halted)" } else { "" };
        let _ = writeln!(
            out,
            "{mark} CPU #{}: thread_id={}{halted}",
            c.index, c.thread_id
        );
    }
    out
}

/// `info emulated`: one line per vCPU (`name=count ...` or `none`), then the VM's total.
pub fn format_emulated(cpus: &[EmulatedInsns]) -> String {
    let line = |counts: &[(String, u64)]| {
        if counts.is_empty() {
            return "none".to_owned();
        }
        let items: Vec<String> = counts.iter().map(|(n, c)| format!("{n}={c}")).collect();
        items.join(" ")
    };
    let mut total: Vec<(String, u64)> = Vec::new();
    let mut out = String::new();
    for cpu in cpus {
        let _ = writeln!(out, "CPU #{}: {}", cpu.cpu.0, line(&cpu.counts));
        for (name, n) in &cpu.counts {
            match total.iter_mut().find(|(t, _)| t == name) {
                Some((_, sum)) => *sum += n,
                None => total.push((name.clone(), *n)),
            }
        }
    }
    let _ = writeln!(out, "total: {}", line(&total));
    out
}

/// `info numa`: node count, then per node its CPUs, size and hot-plugged memory.
pub fn format_numa(nodes: &[NumaNode]) -> String {
    let mut out = format!("{} nodes\n", nodes.len());
    for n in nodes {
        let cpus: Vec<String> = n.cpus.iter().map(|c| c.to_string()).collect();
        let _ = writeln!(out, "node {} cpus: {}", n.id, cpus.join(" "));
        let _ = writeln!(out, "node {} size: {} MB", n.id, n.size_mib);
        let _ = writeln!(out, "node {} plugged: 0 MB", n.id);
    }
    out
}

fn flag_string(rflags: u64) -> String {
    [
        (11, 'O'),
        (10, 'D'),
        (7, 'S'),
        (6, 'Z'),
        (4, 'A'),
        (2, 'P'),
        (0, 'C'),
    ]
    .iter()
    .map(|&(bit, c)| if rflags & (1 << bit) != 0 { c } else { '-' })
    .collect()
}

fn segment_line(name: &str, s: &Segment) -> String {
    format!(
        "{name:<3}={:04x} {:016x} {:08x} {:08x}\n",
        s.selector, s.base, s.limit, s.flags
    )
}

/// `info registers` for one CPU, in the layout of QEMU's x86-64 dump.
pub fn format_registers(r: &Registers) -> String {
    let mut out = String::new();
    let rows = [
        [
            ("RAX", r.rax),
            ("RBX", r.rbx),
            ("RCX", r.rcx),
            ("RDX", r.rdx),
        ],
        [
            ("RSI", r.rsi),
            ("RDI", r.rdi),
            ("RBP", r.rbp),
            ("RSP", r.rsp),
        ],
        [("R8", r.r8), ("R9", r.r9), ("R10", r.r10), ("R11", r.r11)],
        [
            ("R12", r.r12),
            ("R13", r.r13),
            ("R14", r.r14),
            ("R15", r.r15),
        ],
    ];
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .map(|(n, v)| format!("{n:<3}={v:016x}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join(" "));
    }
    let _ = writeln!(
        out,
        "RIP={:016x} RFL={:08x} [{}] CPL={} HLT={}",
        r.rip,
        r.rflags,
        flag_string(r.rflags),
        r.cs.selector & 3,
        u8::from(r.halted)
    );
    for (name, seg) in [
        ("ES", &r.es),
        ("CS", &r.cs),
        ("SS", &r.ss),
        ("DS", &r.ds),
        ("FS", &r.fs),
        ("GS", &r.gs),
        ("LDT", &r.ldt),
        ("TR", &r.tr),
    ] {
        out.push_str(&segment_line(name, seg));
    }
    let _ = writeln!(out, "GDT=     {:016x} {:08x}", r.gdt.base, r.gdt.limit);
    let _ = writeln!(out, "IDT=     {:016x} {:08x}", r.idt.base, r.idt.limit);
    let _ = writeln!(
        out,
        "CR0={:08x} CR2={:016x} CR3={:016x} CR4={:08x}",
        r.cr0, r.cr2, r.cr3, r.cr4
    );
    let _ = writeln!(out, "EFER={:016x}", r.efer);
    out
}

/// The `/FMT` of `xp`: how many units, printed how, of which size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XpFormat {
    /// Number of units.
    pub count: u32,
    /// `x` hex, `d` signed, `u` unsigned, `o` octal, `c` character.
    pub format: char,
    /// Unit size in bytes: 1 (`b`), 2 (`h`), 4 (`w`), 8 (`g`).
    pub size: u8,
}

impl Default for XpFormat {
    /// QEMU's defaults: one 32-bit word in hex.
    fn default() -> Self {
        XpFormat {
            count: 1,
            format: 'x',
            size: 4,
        }
    }
}

/// Parses `/FMT` (`/10xg`, `/c`, `/4`, `/bx`).
pub fn parse_xp_format(s: &str) -> Result<XpFormat, String> {
    let body = s
        .strip_prefix('/')
        .ok_or_else(|| format!("format must start with '/': '{s}'"))?;
    let digits = body.chars().take_while(char::is_ascii_digit).count();
    let count = if digits == 0 {
        1
    } else {
        body[..digits]
            .parse::<u32>()
            .map_err(|_| format!("invalid count in format '{s}'"))?
    };
    let mut format = None;
    let mut size = None;
    for c in body[digits..].chars() {
        match c {
            'x' | 'd' | 'u' | 'o' | 'c' => format = Some(c),
            'b' => size = Some(1),
            'h' => size = Some(2),
            'w' => size = Some(4),
            'g' => size = Some(8),
            other => return Err(format!("invalid char in format: '{other}'")),
        }
    }
    let format = format.unwrap_or('x');
    let size = size.unwrap_or(if format == 'c' { 1 } else { 4 });
    Ok(XpFormat {
        count,
        format,
        size,
    })
}

fn char_cell(b: u8) -> String {
    match b {
        b'\'' => "'\\''".to_owned(),
        b'\\' => "'\\\\'".to_owned(),
        b'\n' => "'\\n'".to_owned(),
        b'\r' => "'\\r'".to_owned(),
        32..=126 => format!("'{}'", char::from(b)),
        _ => format!("'\\x{b:02x}'"),
    }
}

/// Formats memory read at `addr` like QEMU's `xp`: lines of 16 bytes (8 for byte units),
/// each starting with the 16-digit address. A short read prints what was read.
pub fn format_memory(addr: u64, bytes: &[u8], fmt: XpFormat) -> String {
    let size = usize::from(fmt.size.max(1));
    let bits = u32::from(fmt.size) * 8;
    let line = if size == 1 { 8 } else { 16 };
    let mut out = String::new();
    for (n, chunk) in bytes.chunks(line).enumerate() {
        let _ = write!(out, "{:016x}:", addr.wrapping_add((n * line) as u64));
        for unit in chunk.chunks_exact(size) {
            let mut le = [0u8; 8];
            le[..size].copy_from_slice(unit);
            let v = u64::from_le_bytes(le);
            out.push(' ');
            let cell = match fmt.format {
                'c' => char_cell(unit[0]),
                'o' => {
                    let w = (bits as usize).div_ceil(3);
                    let s = if v == 0 {
                        "0".to_owned()
                    } else {
                        format!("0{v:o}")
                    };
                    format!("{s:>w$}")
                }
                'u' => format!("{v:>w$}", w = (bits as usize * 10).div_ceil(33)),
                'd' => {
                    let shift = 64 - bits;
                    let signed = ((v << shift) as i64) >> shift;
                    format!("{signed:>w$}", w = (bits as usize * 10).div_ceil(33))
                }
                _ => format!("0x{v:0w$x}", w = size * 2),
            };
            out.push_str(&cell);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuProps;

    fn cpu(i: u32, tid: i64, halted: bool) -> CpuInfo {
        CpuInfo {
            index: VcpuIndex(i),
            qom_path: format!("/machine/unattached/device[{i}]"),
            thread_id: tid,
            props: CpuProps::default(),
            halted,
        }
    }

    #[test]
    fn info_cpus_marks_current_and_halted() {
        let text = format_info_cpus(
            &[cpu(0, 1234, false), cpu(1, 1235, true), cpu(2, 1236, false)],
            VcpuIndex(0),
        );
        assert_eq!(
            text,
            "* CPU #0: thread_id=1234\n  CPU #1: thread_id=1235 (halted)\n  CPU #2: thread_id=1236\n"
        );
    }

    #[test]
    fn info_emulated_lists_each_cpu_and_the_total() {
        let cpus = [
            EmulatedInsns {
                cpu: VcpuIndex(0),
                counts: vec![("int3".into(), 3), ("clac".into(), 40)],
            },
            EmulatedInsns {
                cpu: VcpuIndex(1),
                counts: vec![],
            },
            EmulatedInsns {
                cpu: VcpuIndex(2),
                counts: vec![("clac".into(), 2), ("popcnt".into(), 5)],
            },
        ];
        assert_eq!(
            format_emulated(&cpus),
            "CPU #0: int3=3 clac=40\nCPU #1: none\nCPU #2: clac=2 popcnt=5\n\
             total: int3=3 clac=42 popcnt=5\n"
        );
        assert_eq!(format_emulated(&[]), "total: none\n");
    }

    #[test]
    fn info_numa_format() {
        let nodes = [
            NumaNode {
                id: 0,
                cpus: vec![VcpuIndex(0), VcpuIndex(1)],
                size_mib: 128,
            },
            NumaNode {
                id: 1,
                cpus: vec![],
                size_mib: 256,
            },
        ];
        assert_eq!(
            format_numa(&nodes),
            "2 nodes\nnode 0 cpus: 0 1\nnode 0 size: 128 MB\nnode 0 plugged: 0 MB\n\
             node 1 cpus: \nnode 1 size: 256 MB\nnode 1 plugged: 0 MB\n"
        );
        assert_eq!(format_numa(&[]), "0 nodes\n");
    }

    #[test]
    fn xp_format_table() {
        let ok: &[(&str, (u32, char, u8))] = &[
            ("/", (1, 'x', 4)),
            ("/x", (1, 'x', 4)),
            ("/10xg", (10, 'x', 8)),
            ("/4", (4, 'x', 4)),
            ("/c", (1, 'c', 1)),
            ("/8cw", (8, 'c', 4)),
            ("/bx", (1, 'x', 1)),
            ("/2uh", (2, 'u', 2)),
            ("/3do", (3, 'o', 4)),
        ];
        for (input, (count, format, size)) in ok {
            assert_eq!(
                parse_xp_format(input).unwrap(),
                XpFormat {
                    count: *count,
                    format: *format,
                    size: *size
                },
                "{input}"
            );
        }
        let bad: &[(&str, &str)] = &[
            ("x", "format must start with '/': 'x'"),
            ("/4z", "invalid char in format: 'z'"),
            ("/i", "invalid char in format: 'i'"),
            ("/99999999999", "invalid count in format '/99999999999'"),
        ];
        for (input, err) in bad {
            assert_eq!(parse_xp_format(input).unwrap_err(), *err, "{input}");
        }
    }

    #[test]
    fn memory_dump_formats() {
        let bytes: Vec<u8> = (0u8..20).collect();
        assert_eq!(
            format_memory(0x100000, &bytes, parse_xp_format("/5xw").unwrap()),
            "0000000000100000: 0x03020100 0x07060504 0x0b0a0908 0x0f0e0d0c\n\
             0000000000100010: 0x13121110\n"
        );
        assert_eq!(
            format_memory(0, &[0xff, 0x7f], parse_xp_format("/2db").unwrap()),
            "0000000000000000:  -1 127\n"
        );
        assert_eq!(
            format_memory(0, &[0xff, 0xff], parse_xp_format("/1uh").unwrap()),
            "0000000000000000: 65535\n"
        );
        assert_eq!(
            format_memory(0, &[8, 0], parse_xp_format("/1oh").unwrap()),
            "0000000000000000:    010\n"
        );
        assert_eq!(
            format_memory(0x10, b"Hi\n'\0", parse_xp_format("/5c").unwrap()),
            "0000000000000010: 'H' 'i' '\\n' '\\'' '\\x00'\n"
        );
        assert_eq!(
            format_memory(
                0,
                &[1, 0, 0, 0, 0, 0, 0, 0],
                parse_xp_format("/1xg").unwrap()
            ),
            "0000000000000000: 0x0000000000000001\n"
        );
    }

    #[test]
    fn registers_layout() {
        let r = Registers {
            rax: 0x1234,
            r8: 8,
            rip: 0xfff0,
            rflags: 0x2 | 1 | (1 << 6),
            cs: Segment {
                selector: 0x10,
                base: 0,
                limit: 0xffff_ffff,
                flags: 0xa09b,
            },
            cr0: 0x8000_0011,
            efer: 0x500,
            halted: true,
            ..Registers::default()
        };
        let text = format_registers(&r);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "RAX=0000000000001234 RBX=0000000000000000 RCX=0000000000000000 RDX=0000000000000000"
        );
        assert!(lines[2].starts_with("R8 =0000000000000008 R9 =0000000000000000 R10="));
        assert_eq!(
            lines[4],
            "RIP=000000000000fff0 RFL=00000043 [---Z--C] CPL=0 HLT=1"
        );
        assert_eq!(lines[6], "CS =0010 0000000000000000 ffffffff 0000a09b");
        assert_eq!(lines[13], "GDT=     0000000000000000 00000000");
        assert_eq!(
            lines[15],
            "CR0=80000011 CR2=0000000000000000 CR3=0000000000000000 CR4=00000000"
        );
        assert_eq!(lines[16], "EFER=0000000000000500");
        assert_eq!(lines.len(), 17);
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_address("0x100000").unwrap(), 0x100000);
        assert_eq!(parse_address("4096").unwrap(), 4096);
        assert_eq!(parse_address("0xZZ").unwrap_err(), "invalid address '0xZZ'");
    }
}

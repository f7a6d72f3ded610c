//! QEMU's everyday switches, so a QEMU command line runs here or is refused by name:
//! single-dash long options, `-machine`/`-M`, `-accel`, `-enable-kvm`, `-nographic`,
//! `-display none`, `-S`, `-daemonize`, `-no-reboot`, `-nodefaults`, `-device`.

use clap::Args;

/// Long options QEMU users type with a single dash.
const QEMU_SINGLE_DASH: &[&str] = &[
    "smp",
    "cpu",
    "memory",
    "timeout",
    "probe",
    "name",
    "qmp",
    "kernel",
    "initrd",
    "append",
    "numa",
    "object",
    "serial",
    "machine",
    "accel",
    "enable-kvm",
    "nographic",
    "display",
    "daemonize",
    "no-reboot",
    "nodefaults",
    "device",
    "sandbox",
    "runas",
];

/// Rewrite QEMU-style single-dash long options (`-smp 4`, `-smp=4`) to `--smp`.
/// Everything after a bare `--` is left alone.
pub fn normalize_args<I: IntoIterator<Item = String>>(args: I) -> Vec<String> {
    let mut out = Vec::new();
    let mut passthrough = false;
    for a in args {
        if passthrough || a == "--" {
            passthrough = true;
            out.push(a);
            continue;
        }
        let rewritten = a
            .strip_prefix('-')
            .filter(|rest| !rest.starts_with('-'))
            .and_then(|rest| {
                let name = rest.split('=').next().unwrap_or(rest);
                QEMU_SINGLE_DASH.contains(&name).then(|| format!("-{a}"))
            });
        out.push(rewritten.unwrap_or(a));
    }
    out
}

/// QEMU switches that either change nothing here or are refused with the reason.
#[derive(Debug, Args, Default)]
pub struct QemuArgs {
    /// Machine type, QEMU syntax: pc, optionally with accel=kvm and pit=on|off (a PC with
    /// KVM's in-kernel irqchip; pit=off leaves out the 8254 timer of kernel payloads), or
    /// q35,kernel-irqchip=split for Multiboot test kernels (local APICs in KVM, a
    /// user-space I/O APIC, PCI bus 0 for -device edu and intel-iommu).
    #[arg(short = 'M', long = "machine", value_name = "TYPE", value_parser = parse_machine)]
    pub machine: Option<MachineOption>,
    /// Accelerator: kvm (the only one).
    #[arg(long, value_name = "ACCEL", value_parser = parse_accel)]
    pub accel: Option<String>,
    /// Accepted for QEMU compatibility (KVM is always used).
    #[arg(long = "enable-kvm")]
    pub enable_kvm: bool,
    /// Accepted for QEMU compatibility (there is no display; COM1 is on stdio).
    #[arg(long)]
    pub nographic: bool,
    /// Display: none (the only one).
    #[arg(long, value_name = "TYPE", value_parser = ["none"])]
    pub display: Option<String>,
    /// Do not start the vCPUs until a monitor client sends `cont` (needs --qmp).
    #[arg(short = 'S')]
    pub start_paused: bool,
    /// Refused: run the VMM under a service manager instead.
    #[arg(long)]
    pub daemonize: bool,
    /// Accepted for QEMU compatibility: a guest reset always ends the VM here.
    #[arg(long = "no-reboot")]
    pub no_reboot: bool,
    /// Accepted for QEMU compatibility: the VM has only the devices its guest needs.
    #[arg(long)]
    pub nodefaults: bool,
    /// A device, QEMU syntax (repeatable): isa-debug-exit,iobase=0xf4,iosize=4,
    /// pc-testdev, and with -machine q35: edu, intel-iommu,intremap=on,eim=off (for test
    /// kernels such as kvm-unit-tests).
    #[arg(long = "device", value_name = "DEVICE", value_parser = parse_device)]
    pub device: Vec<DeviceOption>,
}

impl QemuArgs {
    /// The first switch given that this VMM refuses, with what to do instead.
    pub fn refused(&self, monitor: bool) -> Option<String> {
        if self.daemonize {
            return Some(
                "-daemonize is not supported: run vmm-reference under a service manager \
                 (systemd, a shell's `&`) instead"
                    .into(),
            );
        }
        if self.start_paused && !monitor {
            return Some("-S needs a monitor to continue the VM: add --qmp".into());
        }
        None
    }
}

/// A `-device` this VMM knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceOption {
    /// QEMU's isa-debug-exit: a write of `v` ends the VM with status `(v << 1) | 1`.
    IsaDebugExit {
        /// First port.
        iobase: u16,
        /// Ports (1, 2 or 4).
        iosize: u16,
    },
    /// QEMU's pc-testdev (ports 0xe0..0xef and its memory region), for test kernels.
    PcTestdev,
    /// QEMU's edu PCI device (q35 only).
    Edu,
    /// QEMU's intel-iommu with interrupt remapping, without extended interrupt mode
    /// (q35 only).
    IntelIommu,
}

impl DeviceOption {
    /// Whether the device sits on q35's PCI bus.
    pub fn needs_q35(&self) -> bool {
        matches!(self, DeviceOption::Edu | DeviceOption::IntelIommu)
    }
}

fn parse_number(key: &str, v: &str) -> Result<u16, String> {
    let parsed = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u16::from_str_radix(hex, 16),
        None => v.parse(),
    };
    parsed.map_err(|_| format!("{key}: '{v}' is not a number from 0 to 0xffff"))
}

/// Parse `-device`.
pub fn parse_device(s: &str) -> Result<DeviceOption, String> {
    let mut parts = s.split(',');
    let driver = parts.next().unwrap_or_default();
    let props: Vec<(&str, &str)> = parts
        .map(|p| p.split_once('=').ok_or(p))
        .collect::<Result<_, _>>()
        .map_err(|p| format!("-device {driver}: '{p}' is not KEY=VALUE"))?;
    match driver {
        "isa-debug-exit" => {
            let (mut iobase, mut iosize) = (0x501, 2);
            for (k, v) in props {
                match k {
                    "iobase" => iobase = parse_number(k, v)?,
                    "iosize" => iosize = parse_number(k, v)?,
                    _ => return Err(format!("-device isa-debug-exit: unknown property '{k}'")),
                }
            }
            if iobase != 0xf4 {
                return Err(format!(
                    "-device isa-debug-exit: iobase {iobase:#x} is not supported; this VMM's \
                     isa-debug-exit is at 0xf4 (iobase=0xf4,iosize=4, as kvm-unit-tests uses)"
                ));
            }
            if ![1, 2, 4].contains(&iosize) {
                return Err(format!(
                    "-device isa-debug-exit: iosize must be 1, 2 or 4, got {iosize}"
                ));
            }
            Ok(DeviceOption::IsaDebugExit { iobase, iosize })
        }
        "pc-testdev" if props.is_empty() => Ok(DeviceOption::PcTestdev),
        "pc-testdev" => Err("-device pc-testdev takes no properties".into()),
        "edu" if props.is_empty() => Ok(DeviceOption::Edu),
        "edu" => Err("-device edu takes no properties".into()),
        "intel-iommu" => {
            for (k, v) in props {
                match (k, v) {
                    ("intremap", "on") | ("eim", "off") => {}
                    ("intremap" | "eim", _) => {
                        return Err(format!(
                            "-device intel-iommu: {k}={v} is not supported; this VMM's \
                             intel-iommu has intremap=on,eim=off"
                        ))
                    }
                    _ => return Err(format!("-device intel-iommu: unknown property '{k}'")),
                }
            }
            Ok(DeviceOption::IntelIommu)
        }
        _ => Err(format!(
            "unsupported device '{driver}' (this VMM offers isa-debug-exit, pc-testdev, edu \
             and intel-iommu; CPUs are hot-plugged with the monitor's device_add)"
        )),
    }
}

/// `-machine`: the machine type and the properties this VMM acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineOption {
    /// `pc` or a versioned `pc-i440fx-*`.
    pub kind: String,
    /// `pit=on|off` (default on): whether kernel payloads get KVM's in-kernel 8254 PIT.
    pub pit: bool,
    /// `q35` (always with `kernel-irqchip=split`): local APICs in KVM, the I/O APIC and
    /// the PCI devices in user space.
    pub q35: bool,
}

/// Parse `-machine`: `pc` (or a versioned `pc-i440fx-*`), with `accel=kvm` and `pit=on|off`;
/// or `q35` (`pc-q35-*`) with `kernel-irqchip=split`.
fn parse_machine(s: &str) -> Result<MachineOption, String> {
    let mut parts = s.split(',');
    let mut kind = "pc".to_string();
    let mut pit = true;
    let mut irqchip = "on".to_string();
    for (i, part) in parts.by_ref().enumerate() {
        match part.split_once('=') {
            Some(("type", v)) => kind = v.to_string(),
            Some(("accel", v)) => {
                parse_accel(v)?;
            }
            Some(("pit", v)) => {
                pit = match v {
                    "on" | "yes" | "true" => true,
                    "off" | "no" | "false" => false,
                    _ => return Err(format!("-machine: pit={v}: expected 'on' or 'off'")),
                }
            }
            Some(("kernel-irqchip", v)) => irqchip = v.to_string(),
            Some((k, _)) => return Err(format!("-machine: unsupported property '{k}'")),
            None if i == 0 => kind = part.to_string(),
            None => return Err(format!("-machine: '{part}' is not KEY=VALUE")),
        }
    }
    let q35 = kind == "q35" || kind.starts_with("pc-q35-");
    if !q35 && kind != "pc" && !kind.starts_with("pc-i440fx-") {
        return Err(format!(
            "unsupported machine type '{kind}': this VMM offers 'pc' and \
             'q35,kernel-irqchip=split'"
        ));
    }
    let want = if q35 { "split" } else { "on" };
    if irqchip != want {
        return Err(format!(
            "-machine {kind}: kernel-irqchip={irqchip} is not supported; this VMM's {kind} \
             has kernel-irqchip={want}"
        ));
    }
    Ok(MachineOption {
        kind,
        pit: pit && !q35,
        q35,
    })
}

/// Parse `-accel`: only `kvm`.
fn parse_accel(s: &str) -> Result<String, String> {
    let name = s.split(',').next().unwrap_or_default();
    match name {
        "kvm" => Ok(name.to_string()),
        _ => Err(format!(
            "accelerator '{name}' is not available: this VMM runs guests with KVM only \
             (-accel kvm)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn qemu_single_dash_spellings_are_accepted() {
        assert_eq!(
            normalize_args(v(&[
                "vmm",
                "-smp",
                "4",
                "-m",
                "1G",
                "-cpu=host",
                "-x",
                "--smp",
                "2"
            ])),
            v(&[
                "vmm",
                "--smp",
                "4",
                "-m",
                "1G",
                "--cpu=host",
                "-x",
                "--smp",
                "2"
            ])
        );
        assert_eq!(
            normalize_args(v(&["a", "--", "-smp"])),
            v(&["a", "--", "-smp"])
        );
    }

    #[test]
    fn devices() {
        let rows: &[(&str, Result<DeviceOption, &str>)] = &[
            (
                "isa-debug-exit,iobase=0xf4,iosize=0x4",
                Ok(DeviceOption::IsaDebugExit {
                    iobase: 0xf4,
                    iosize: 4,
                }),
            ),
            (
                "isa-debug-exit",
                Err("-device isa-debug-exit: iobase 0x501 is not supported; this VMM's isa-debug-exit is at 0xf4 (iobase=0xf4,iosize=4, as kvm-unit-tests uses)"),
            ),
            ("pc-testdev", Ok(DeviceOption::PcTestdev)),
            (
                "isa-debug-exit,iobase=0xf4,iosize=3",
                Err("-device isa-debug-exit: iosize must be 1, 2 or 4, got 3"),
            ),
            (
                "isa-debug-exit,iobase=zz",
                Err("iobase: 'zz' is not a number from 0 to 0xffff"),
            ),
            (
                "isa-debug-exit,color=red",
                Err("-device isa-debug-exit: unknown property 'color'"),
            ),
            (
                "pc-testdev,x=1",
                Err("-device pc-testdev takes no properties"),
            ),
            ("edu", Ok(DeviceOption::Edu)),
            ("edu,dma_mask=1", Err("-device edu takes no properties")),
            (
                "intel-iommu,intremap=on,eim=off",
                Ok(DeviceOption::IntelIommu),
            ),
            ("intel-iommu", Ok(DeviceOption::IntelIommu)),
            (
                "intel-iommu,intremap=on,eim=on",
                Err("-device intel-iommu: eim=on is not supported; this VMM's intel-iommu has intremap=on,eim=off"),
            ),
            (
                "intel-iommu,caching-mode=on",
                Err("-device intel-iommu: unknown property 'caching-mode'"),
            ),
        ];
        for (input, want) in rows {
            assert_eq!(
                parse_device(input),
                want.clone().map_err(str::to_string),
                "{input}"
            );
        }
        assert!(parse_device("virtio-net-pci")
            .unwrap_err()
            .starts_with("unsupported device 'virtio-net-pci'"));
    }

    #[test]
    fn machines_and_accelerators() {
        assert_eq!(parse_machine("pc").unwrap().kind, "pc");
        assert_eq!(parse_machine("pc,accel=kvm").unwrap().kind, "pc");
        assert_eq!(parse_machine("accel=kvm").unwrap().kind, "pc");
        assert!(parse_machine("pc").unwrap().pit);
        assert!(!parse_machine("pc,accel=kvm,pit=off").unwrap().pit);
        assert_eq!(
            parse_machine("pc,pit=maybe").unwrap_err(),
            "-machine: pit=maybe: expected 'on' or 'off'"
        );
        assert_eq!(
            parse_machine("type=pc-i440fx-7.2").unwrap().kind,
            "pc-i440fx-7.2"
        );
        let q35 = parse_machine("q35,kernel-irqchip=split").unwrap();
        assert!(q35.q35 && !q35.pit, "{q35:?}");
        assert!(
            parse_machine("pc-q35-7.2,kernel-irqchip=split")
                .unwrap()
                .q35
        );
        assert!(!parse_machine("pc,kernel-irqchip=on").unwrap().q35);
        assert_eq!(
            parse_machine("q35").unwrap_err(),
            "-machine q35: kernel-irqchip=on is not supported; this VMM's q35 has kernel-irqchip=split"
        );
        assert_eq!(
            parse_machine("pc,kernel-irqchip=split").unwrap_err(),
            "-machine pc: kernel-irqchip=split is not supported; this VMM's pc has kernel-irqchip=on"
        );
        assert!(parse_machine("microvm")
            .unwrap_err()
            .contains("unsupported machine type 'microvm'"));
        assert!(parse_machine("pc,accel=tcg")
            .unwrap_err()
            .contains("accelerator 'tcg' is not available"));
        assert!(parse_accel("tcg,thread=multi").is_err());
        assert_eq!(parse_accel("kvm").unwrap(), "kvm");
    }
}

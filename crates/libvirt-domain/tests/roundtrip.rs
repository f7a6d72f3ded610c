//! Property: any configuration written as XML reads back as the same configuration, and
//! that XML -> config -> XML is stable; the command line of any configuration is built
//! without panicking and names every vCPU pin.

// One `&mut Gen` cannot be captured by both a filter and a map closure.
#![allow(clippy::filter_map_bool_then)]

use cpu_topology::{HostCpuId, HostCpuSet};
use libvirt_domain::config::*;
use libvirt_domain::{parse_domain, to_native, to_xml};
use proptest::prelude::*;

/// A small deterministic generator (SplitMix64), so one proptest seed builds one config.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + self.below(u64::from(hi - lo + 1)) as u32
    }
    fn flip(&mut self) -> bool {
        self.next() & 1 == 1
    }
    fn maybe<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
        if self.flip() {
            Some(f(self))
        } else {
            None
        }
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
    fn set(&mut self, limit: u32) -> HostCpuSet {
        let mut s: HostCpuSet = (0..limit)
            .filter(|_| self.below(3) == 0)
            .map(HostCpuId)
            .collect();
        if s.is_empty() {
            s.insert(HostCpuId(self.range(0, limit - 1)));
        }
        s
    }
    fn text(&mut self) -> String {
        let alphabet = [
            'a', 'Z', '0', '/', '.', '_', '-', '&', '<', '>', '\'', '"', '=', ' ',
        ];
        let n = self.range(1, 12);
        let s: String = (0..n).map(|_| self.pick(&alphabet)).collect();
        format!("x{}x", s)
    }
}

fn topology(g: &mut Gen) -> CpuTopologyConfig {
    CpuTopologyConfig {
        sockets: g.range(1, 4),
        dies: g.range(1, 2),
        clusters: g.range(1, 2),
        cores: g.range(1, 4),
        threads: g.range(1, 2),
    }
}

fn cells(g: &mut Gen, count: u32) -> Vec<NumaCellConfig> {
    let n = g.range(0, 4);
    let mut cpus: Vec<HostCpuSet> = vec![HostCpuSet::new(); n as usize];
    for v in 0..count {
        if n > 0 && g.below(4) != 0 {
            let c = g.below(u64::from(n)) as usize;
            cpus[c].insert(HostCpuId(v));
        }
    }
    (0..n)
        .map(|id| {
            let mut distances: Vec<(u32, u8)> = (0..n)
                .filter_map(|to| {
                    g.flip()
                        .then(|| (to, if to == id { 10 } else { g.range(11, 255) as u8 }))
                })
                .collect();
            distances.sort_unstable();
            let set = std::mem::take(&mut cpus[id as usize]);
            NumaCellConfig {
                id,
                cpus: (!set.is_empty()).then_some(set),
                memory_kib: u64::from(g.range(1, 2048)) * 1024,
                mem_access: g.maybe(|g| g.pick(&[MemAccess::Shared, MemAccess::Private])),
                distances,
            }
        })
        .collect()
}

fn cpu(g: &mut Gen, count: u32, topo: Option<CpuTopologyConfig>) -> CpuConfig {
    use FeaturePolicy::*;
    let names = [
        "avx", "aes", "x2apic", "pdpe1gb", "vmx", "sse4.2", "lahf_lm",
    ];
    let features = names
        .iter()
        .filter_map(|n| {
            (g.below(3) == 0).then(|| CpuFeature {
                policy: g.pick(&[Force, Require, Optional, Disable, Forbid]),
                name: n.to_string(),
            })
        })
        .collect();
    CpuConfig {
        mode: g.pick(&[
            CpuMode::Custom,
            CpuMode::HostModel,
            CpuMode::HostPassthrough,
            CpuMode::Maximum,
        ]),
        match_: g.maybe(|g| g.pick(&[CpuMatch::Minimum, CpuMatch::Exact, CpuMatch::Strict])),
        check: g.maybe(|g| g.pick(&[CpuCheck::None, CpuCheck::Partial, CpuCheck::Full])),
        migratable: g.maybe(Gen::flip),
        model: g.maybe(|g| CpuModelConfig {
            name: g
                .pick(&["Westmere", "Haswell", "EPYC-Rome", "qemu64"])
                .to_string(),
            fallback: g.maybe(|g| g.pick(&[Fallback::Allow, Fallback::Forbid])),
        }),
        vendor: g.maybe(|g| g.pick(&["Intel", "AMD"]).to_string()),
        features,
        topology: topo,
        numa: cells(g, count),
    }
}

fn cputune(g: &mut Gen, count: u32) -> CpuTune {
    CpuTune {
        vcpupin: (0..count)
            .filter_map(|vcpu| {
                g.flip().then(|| VcpuPinConfig {
                    vcpu,
                    cpuset: g.set(64),
                })
            })
            .collect(),
        emulatorpin: g.maybe(|g| g.set(64)),
        vcpusched: (0..g.range(0, 2))
            .map(|_| {
                let scheduler = g.pick(&[
                    Scheduler::Batch,
                    Scheduler::Idle,
                    Scheduler::Fifo,
                    Scheduler::Rr,
                ]);
                let rt = matches!(scheduler, Scheduler::Fifo | Scheduler::Rr);
                VcpuSched {
                    vcpus: g.maybe(|g| g.set(count)),
                    scheduler,
                    priority: if rt {
                        Some(g.range(1, 99) as i32)
                    } else {
                        None
                    },
                }
            })
            .collect(),
        shares: g.maybe(|g| g.below(1 << 20)),
        period: g.maybe(|g| g.below(1 << 20)),
        quota: g.maybe(|g| g.below(1 << 20) as i64 - (1 << 19)),
    }
}

fn numatune(g: &mut Gen, cells: u32) -> NumaTune {
    let modes = [
        MemoryMode::Strict,
        MemoryMode::Preferred,
        MemoryMode::Interleave,
        MemoryMode::Restrictive,
    ];
    NumaTune {
        memory: g.maybe(|g| {
            let auto = g.below(4) == 0;
            NumaTuneMemory {
                mode: g.pick(&modes),
                nodeset: if auto { None } else { Some(g.set(8)) },
                placement: if auto {
                    Some(Placement::Auto)
                } else {
                    g.maybe(|_| Placement::Static)
                },
            }
        }),
        memnodes: (0..cells)
            .filter_map(|cellid| {
                g.flip().then(|| MemNode {
                    cellid,
                    mode: g.pick(&modes),
                    nodeset: g.set(8),
                })
            })
            .collect(),
    }
}

fn serial(g: &mut Gen) -> SerialConfig {
    let backend = match g.below(6) {
        0 => SerialBackend::Pty,
        1 => SerialBackend::Stdio,
        2 => SerialBackend::Null,
        3 => SerialBackend::File(g.text()),
        4 => SerialBackend::Unix {
            path: g.text(),
            listen: g.flip(),
        },
        _ => SerialBackend::Tcp {
            host: g.text(),
            port: g.range(1, 65535) as u16,
            listen: g.flip(),
        },
    };
    SerialConfig {
        backend,
        port: g.range(0, 3),
    }
}

fn domain(seed: u64) -> DomainConfig {
    let mut g = Gen(seed);
    let topo = g.maybe(topology);
    let count = topo
        .and_then(|t| t.cpus())
        .unwrap_or_else(|| g.range(1, 16));
    let cpu = g.maybe(|g| cpu(g, count, topo));
    let cells = cpu.as_ref().map_or(0, |c| c.numa.len() as u32);
    let cell_total: u64 = cpu.iter().flat_map(|c| &c.numa).map(|c| c.memory_kib).sum();
    let memory_kib = if cell_total > 0 {
        cell_total
    } else {
        u64::from(g.range(1, 4096)) * 1024
    };
    DomainConfig {
        domain_type: g.pick(&["kvm", "qemu"]).to_string(),
        name: format!("vm-{}", g.below(1000)),
        uuid: g.maybe(|g| {
            let (a, b) = (g.next(), g.next());
            let mid = [a >> 16 & 0xffff, a & 0xffff, b >> 48];
            format!(
                "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                a >> 32,
                mid[0],
                mid[1],
                mid[2],
                b & 0xffff_ffff_ffff
            )
        }),
        memory_kib,
        current_memory_kib: 1 + g.below(memory_kib),
        vcpu: VcpuConfig {
            count,
            current: g.maybe(|g| g.range(1, count)),
            placement: g.maybe(|g| g.pick(&[Placement::Static, Placement::Auto])),
            cpuset: g.maybe(|g| g.set(64)),
        },
        cputune: cputune(&mut g, count),
        numatune: numatune(&mut g, cells),
        cpu,
        os: OsConfig {
            machine: g.maybe(|g| g.pick(&["pc", "q35"]).to_string()),
            kernel: g.maybe(Gen::text),
            initrd: g.maybe(Gen::text),
            cmdline: g.maybe(Gen::text),
        },
        features: Features {
            acpi: g.flip(),
            apic: g.flip(),
            pae: g.flip(),
            kvm_hidden: g.maybe(Gen::flip),
        },
        serial: g.maybe(serial),
        ignored: Vec::new(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn config_to_xml_to_config_is_the_identity(seed in any::<u64>()) {
        let d = domain(seed);
        let xml = to_xml(&d);
        let back = parse_domain(&xml).map_err(|e| TestCaseError::fail(format!("{e}\n{xml}")))?;
        prop_assert_eq!(&back, &d, "{}", xml);
        prop_assert_eq!(to_xml(&back), xml);
    }

    #[test]
    fn the_command_line_carries_every_pin(seed in any::<u64>()) {
        let d = domain(seed);
        let cmd = to_native(&d, &Default::default());
        let pins = cmd.args.iter().filter(|a| *a == "--vcpupin").count();
        prop_assert_eq!(pins, d.cputune.vcpupin.len());
        let numa_nodes = cmd.args.iter().filter(|a| a.starts_with("node,")).count();
        let want = match d.numa_cells().len() {
            0 if d.numatune.memory.is_some() => 1,
            n => n,
        };
        prop_assert_eq!(numa_nodes, want);
    }
}

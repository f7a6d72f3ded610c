//! The raw dump format against the real `cpuid` tool (Debian package cpuid): what the
//! tool prints parses and writes back byte for byte, and `cpuid -f` decodes what we write,
//! finding each vCPU's package, core and thread.

use std::path::Path;
use std::process::Command;

use cpu_topology::CpuTopology;
use cpuid_model::dump::{cpuid_r_queries, parse_raw, to_raw_string, RawCpu};
use cpuid_model::normalize::Normalizer;
use cpuid_model::{CpuidKey, CpuidTable};

fn data(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

fn cpuid_tool(args: &[&str]) -> String {
    let out = Command::new("cpuid")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `cpuid` ({e}): install the Debian package cpuid"));
    assert!(
        out.status.success(),
        "cpuid {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn fixtures_write_back_byte_for_byte() {
    for name in ["host-amd-zen4.txt", "host-intel-cascadelake-synth.txt"] {
        let text = data(name);
        let cpus = parse_raw(&text).unwrap();
        assert_eq!(cpus.len(), 1);
        assert_eq!(cpus[0].index, None);
        let written = to_raw_string(&[(0, &cpus[0].table)]);
        assert_eq!(written, text.replacen("CPU:", "CPU 0:", 1), "{name}");
    }
}

#[test]
fn live_cpuid_r_output_round_trips() {
    let live = cpuid_tool(&["-r"]);
    let cpus = parse_raw(&live).unwrap();
    assert!(!cpus.is_empty());
    let pairs: Vec<(u32, &CpuidTable)> =
        cpus.iter().map(|c| (c.index.unwrap(), &c.table)).collect();
    assert_eq!(to_raw_string(&pairs), live);
    let one = parse_raw(&cpuid_tool(&["-r", "-1"])).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].index, None);
}

#[test]
fn queries_cover_what_cpuid_r_prints_for_the_host() {
    let host = parse_raw(&data("host-amd-zen4.txt"))
        .unwrap()
        .remove(0)
        .table;
    let q = cpuid_r_queries(&host);
    // Every basic and extended leaf the tool printed is queried, in the same order.
    let printed: Vec<CpuidKey> = host
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| k.leaf < 0x1d || (0x8000_0000..=0x8000_0021).contains(&k.leaf))
        .collect();
    let asked: Vec<CpuidKey> = q
        .iter()
        .copied()
        .filter(|k| host.get(*k).is_some())
        .filter(|k| k.leaf < 0x1d || (0x8000_0000..=0x8000_0021).contains(&k.leaf))
        .collect();
    assert_eq!(asked, printed);
    // The ranges end where leaf 0 and 0x8000_0000 say, and the hypervisor range is there.
    assert_eq!(q.iter().filter(|k| k.leaf <= 0x1c).count(), 42);
    assert!(q.contains(&CpuidKey::leaf(0x4000_0001)));
    assert_eq!(q.last(), Some(&CpuidKey::leaf(0x8000_0021)));
    // 0x8000_001D's enumeration ends with the subleaf after the last valid cache.
    assert!(q.contains(&CpuidKey::subleaf(0x8000_001d, 4)));
}

/// `(APIC synth): PKG_ID=.. CORE_ID=.. SMT_ID=..` per CPU section of `cpuid -f`.
fn synth_ids(decoded: &str) -> Vec<(u32, u32, u32)> {
    decoded
        .lines()
        .filter_map(|l| l.trim().strip_prefix("(APIC synth): "))
        .map(|l| {
            let v: Vec<u32> = l
                .split_whitespace()
                .map(|f| f.split('=').nth(1).unwrap().parse().unwrap())
                .collect();
            (v[0], v[1], v[2])
        })
        .collect()
}

#[test]
fn cpuid_f_decodes_normalized_tables() {
    let topo = CpuTopology::new(2, 1, 1, 3, 2, 12).unwrap();
    for name in ["host-amd-zen4.txt", "host-intel-cascadelake-synth.txt"] {
        let base = parse_raw(&data(name)).unwrap().remove(0).table;
        let n = Normalizer::new(&base, &topo).unwrap();
        let tables: Vec<CpuidTable> = topo.present().map(|i| n.for_vcpu(i).unwrap()).collect();
        let pairs: Vec<(u32, &CpuidTable)> = tables
            .iter()
            .enumerate()
            .map(|(i, t)| (i as u32, t))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dump.txt");
        std::fs::write(&file, to_raw_string(&pairs)).unwrap();
        let decoded = cpuid_tool(&["-f", file.to_str().unwrap()]);
        let layout = topo.apic_layout();
        // SMT shift 1, package shift 3. The tool's Intel method prints the 0xB core
        // level's shift as CORE_width, its AMD method the core bits alone.
        let widths = if name.contains("amd") {
            "(APIC widths synth): CORE_width=2 SMT_width=1"
        } else {
            "(APIC widths synth): CORE_width=3 SMT_width=1"
        };
        assert_eq!(decoded.matches(widths).count(), 12, "{name}");
        // Printed from 0xB, and on AMD again from 0x8000_001E: both must agree.
        let mut apic_ids: Vec<u32> = decoded
            .lines()
            .filter_map(|l| l.trim().strip_prefix("extended APIC ID"))
            .map(|v| v.trim_start_matches([' ', '=']).parse().unwrap())
            .collect();
        apic_ids.dedup();
        let expected: Vec<u32> = topo
            .present()
            .map(|i| layout.apic_id(i).unwrap().0)
            .collect();
        assert_eq!(apic_ids, expected, "{name}");
        let synth = synth_ids(&decoded);
        if name.contains("amd") {
            // AMD method (0x8000_0008 and 0x8000_001E): the tool finds each place.
            let places: Vec<(u32, u32, u32)> = topo
                .present()
                .map(|i| {
                    let p = topo.position(i).unwrap();
                    (p.socket, p.core, p.thread)
                })
                .collect();
            assert_eq!(synth, places, "{name}");
        } else {
            // Intel leaf 0xB method: cpuid 20230120 takes the core level's shift as the
            // core width and adds the SMT width again (PKG_ID = id >> (3 + 1)); check its
            // arithmetic rather than our layout, so a change in either shows up.
            let tool: Vec<(u32, u32, u32)> = expected
                .iter()
                .map(|&a| (a >> 4, (a >> 1) & 7, a & 1))
                .collect();
            assert_eq!(synth, tool, "{name}");
        }
        // And our own parser reads the file back to the same tables.
        let back: Vec<RawCpu> = parse_raw(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(back.len(), 12);
        for (i, c) in back.iter().enumerate() {
            assert_eq!(c.index, Some(i as u32));
            let regs: Vec<_> = c.table.iter().map(|(k, e)| (*k, e.regs)).collect();
            let orig: Vec<_> = tables[i].iter().map(|(k, e)| (*k, e.regs)).collect();
            assert_eq!(regs, orig);
        }
    }
}

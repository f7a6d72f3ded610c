//! The key test: hwloc's x86 backend, fed with the per-vCPU CPUID tables this crate
//! computes, finds exactly the configured topology (packages, dies, cores, threads, and
//! each PU at its place), for an AMD and an Intel base table.
//!
//! Needs `lstopo-no-graphics` (Debian package hwloc); fails when it is missing.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use cpu_topology::{CpuTopology, TopologyPosition};
use cpuid_model::dump::parse_raw;
use cpuid_model::hwloc::write_dir;
use cpuid_model::normalize::Normalizer;
use cpuid_model::CpuidTable;

fn fixture(name: &str) -> CpuidTable {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    parse_raw(&text).unwrap().remove(0).table
}

/// One PU of hwloc's XML tree, with the gp_index of its ancestors by type.
#[derive(Debug, Default, Clone)]
struct Pu {
    os_index: u32,
    package: Option<u32>,
    package_os_index: Option<u32>,
    die: Option<u32>,
    core: Option<u32>,
    l3: Option<u32>,
    group: Option<u32>,
}

fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let pat = format!(" {name}=\"");
    let start = line.find(&pat)? + pat.len();
    let len = line[start..].find('"')?;
    Some(&line[start..start + len])
}

/// Run lstopo on the directory and return every PU with its ancestors' gp_index.
fn hwloc_pus(dir: &Path) -> (Vec<Pu>, HashMap<String, usize>, String) {
    let out = Command::new("lstopo-no-graphics")
        .args(["--of", "xml", "-"])
        .env("HWLOC_CPUID_PATH", dir)
        .env("HWLOC_COMPONENTS", "x86,stop")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run lstopo-no-graphics ({e}): install the Debian package hwloc")
        });
    assert!(
        out.status.success(),
        "lstopo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let xml = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let mut stack: Vec<(String, u32, Option<u32>)> = Vec::new();
    let mut pus = Vec::new();
    let mut counts = HashMap::new();
    for line in xml.lines() {
        let l = line.trim();
        if l.starts_with("</object>") {
            stack.pop();
            continue;
        }
        if !l.starts_with("<object ") {
            continue;
        }
        let ty = attr(l, "type").unwrap().to_string();
        let gp: u32 = attr(l, "gp_index").unwrap().parse().unwrap();
        *counts.entry(ty.clone()).or_insert(0) += 1;
        if ty == "PU" {
            let find = |t: &str| stack.iter().rev().find(|x| x.0 == t).map(|x| x.1);
            pus.push(Pu {
                os_index: attr(l, "os_index").unwrap().parse().unwrap(),
                package: find("Package"),
                package_os_index: stack.iter().find(|x| x.0 == "Package").and_then(|x| x.2),
                die: find("Die"),
                core: find("Core"),
                l3: find("L3Cache"),
                group: find("Group"),
            });
        }
        if !l.ends_with("/>") {
            let os = attr(l, "os_index").and_then(|v| v.parse().ok());
            stack.push((ty, gp, os));
        }
    }
    pus.sort_by_key(|p| p.os_index);
    (pus, counts, stderr)
}

/// Assert that `got` (hwloc object of each PU) and `want` (expected group of each PU)
/// induce the same partition of the PUs.
fn same_partition<K: std::hash::Hash + Eq + Copy + std::fmt::Debug>(
    what: &str,
    got: &[Option<u32>],
    want: &[K],
) {
    let mut fwd = HashMap::new();
    let mut back = HashMap::new();
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let g = g.unwrap_or_else(|| panic!("PU {i} has no {what}"));
        assert_eq!(
            *fwd.entry(g).or_insert(*w),
            *w,
            "PU {i}: {what} {g} mixes groups"
        );
        assert_eq!(
            *back.entry(*w).or_insert(g),
            g,
            "PU {i}: group {w:?} split over {what}s"
        );
    }
}

fn check(base_name: &str, base: &CpuidTable, topo: CpuTopology) {
    let intel = base_name == "intel";
    let label = format!("{base_name} {topo:?}");
    let n = Normalizer::new(base, &topo).unwrap();
    let tables: Vec<CpuidTable> = topo.present().map(|i| n.for_vcpu(i).unwrap()).collect();
    let dir = tempfile::tempdir().unwrap();
    write_dir(dir.path(), &tables.iter().collect::<Vec<_>>()).unwrap();
    let (pus, counts, stderr) = hwloc_pus(dir.path());
    assert!(!stderr.contains("Couldn't find"), "{label}: {stderr}");
    assert_eq!(pus.len() as u32, topo.cpus(), "{label}: PU count");
    let pos: Vec<TopologyPosition> = topo.present().map(|i| topo.position(i).unwrap()).collect();
    for (i, (p, want)) in pus.iter().zip(&pos).enumerate() {
        assert_eq!(p.os_index, i as u32, "{label}");
        // hwloc numbers packages by APIC id >> package shift: our socket id.
        assert_eq!(p.package_os_index, Some(want.socket), "{label}: PU {i}");
    }
    let col = |f: fn(&Pu) -> Option<u32>| pus.iter().map(f).collect::<Vec<_>>();
    let sockets: Vec<u32> = pos.iter().map(|p| p.socket).collect();
    same_partition(&format!("{label}: Package"), &col(|p| p.package), &sockets);
    let cores: Vec<_> = pos
        .iter()
        .map(|p| (p.socket, p.die, p.module, p.core))
        .collect();
    same_partition(&format!("{label}: Core"), &col(|p| p.core), &cores);
    // L3 is per die on both vendors; Intel shows dies as Die objects (leaf 0x1F), AMD
    // only through the L3 domains (hwloc 2.9 makes no Die object from 0x8000_001E nodes).
    let dies: Vec<_> = pos.iter().map(|p| (p.socket, p.die)).collect();
    same_partition(&format!("{label}: L3"), &col(|p| p.l3), &dies);
    if topo.dies() > 1 && intel {
        same_partition(&format!("{label}: Die"), &col(|p| p.die), &dies);
    } else {
        assert!(
            !counts.contains_key("Die"),
            "{label}: unexpected Die objects"
        );
    }
    if topo.modules() > 1 && intel {
        let modules: Vec<_> = pos.iter().map(|p| (p.socket, p.die, p.module)).collect();
        same_partition(
            &format!("{label}: Group (module)"),
            &col(|p| p.group),
            &modules,
        );
    }
    // Counts, as a user reading lstopo would check them.
    let distinct = |v: &[_]| {
        let mut v: Vec<(u32, u32, u32, u32)> = v.to_vec();
        v.sort_unstable();
        v.dedup();
        v.len()
    };
    assert_eq!(
        counts.get("Core").copied().unwrap_or(0),
        distinct(&cores),
        "{label}: cores"
    );
    let mut s = sockets.clone();
    s.dedup();
    assert_eq!(
        counts.get("Package").copied().unwrap_or(0),
        s.len(),
        "{label}: packages"
    );
}

fn topologies() -> Vec<CpuTopology> {
    let t = |s, d, m, c, th, cpus| CpuTopology::new(s, d, m, c, th, cpus).unwrap();
    vec![
        t(1, 1, 1, 1, 1, 1),
        t(1, 1, 1, 2, 1, 2),
        t(2, 1, 1, 2, 2, 8),
        t(2, 2, 1, 3, 1, 12),
        t(1, 1, 1, 3, 2, 6),
        t(2, 2, 1, 3, 2, 24),
        t(1, 3, 1, 5, 2, 30),
        t(1, 1, 1, 8, 1, 5),
        t(2, 1, 1, 3, 2, 9),
        t(1, 1, 2, 2, 2, 8),
        t(1, 1, 1, 64, 1, 64),
        t(1, 1, 1, 255, 1, 255),
        t(2, 1, 1, 150, 1, 300),
        t(4, 1, 1, 17, 3, 204),
    ]
}

#[test]
fn hwloc_sees_the_topology_amd_base() {
    let base = fixture("host-amd-zen4.txt");
    for topo in topologies() {
        check("amd", &base, topo);
    }
}

#[test]
fn hwloc_sees_the_topology_intel_base() {
    let base = fixture("host-intel-cascadelake-synth.txt");
    for topo in topologies() {
        check("intel", &base, topo);
    }
}

#[test]
fn hwloc_sees_smt_on_amd() {
    let base = fixture("host-amd-zen4.txt");
    let topo = CpuTopology::new(1, 1, 1, 2, 2, 4).unwrap();
    let n = Normalizer::new(&base, &topo).unwrap();
    let tables: Vec<_> = topo.present().map(|i| n.for_vcpu(i).unwrap()).collect();
    let dir = tempfile::tempdir().unwrap();
    write_dir(dir.path(), &tables.iter().collect::<Vec<_>>()).unwrap();
    let (pus, counts, _) = hwloc_pus(dir.path());
    assert_eq!(counts["Core"], 2);
    assert_eq!(pus[0].core, pus[1].core);
    assert_ne!(pus[1].core, pus[2].core);
}

//! `<cpu>`: mode, model, vendor, features, topology and the guest NUMA cells.

use roxmltree::Node;

use crate::config::{
    CpuCheck, CpuConfig, CpuFeature, CpuMatch, CpuMode, CpuModelConfig, CpuTopologyConfig,
    Fallback, FeaturePolicy, MemAccess, NumaCellConfig,
};
use crate::error::DomainError;
use crate::parse::{inconsistent, missing, size_kib, vcpus_exist};
use crate::reader::{text, Reader};
use crate::units::round_up_mib;

const MODES: &[(&str, CpuMode)] = &[
    ("custom", CpuMode::Custom),
    ("host-model", CpuMode::HostModel),
    ("host-passthrough", CpuMode::HostPassthrough),
    ("maximum", CpuMode::Maximum),
];
const MATCHES: &[(&str, CpuMatch)] = &[
    ("minimum", CpuMatch::Minimum),
    ("exact", CpuMatch::Exact),
    ("strict", CpuMatch::Strict),
];
const CHECKS: &[(&str, CpuCheck)] = &[
    ("none", CpuCheck::None),
    ("partial", CpuCheck::Partial),
    ("full", CpuCheck::Full),
];
const FALLBACKS: &[(&str, Fallback)] = &[("allow", Fallback::Allow), ("forbid", Fallback::Forbid)];
const POLICIES: &[(&str, FeaturePolicy)] = &[
    ("force", FeaturePolicy::Force),
    ("require", FeaturePolicy::Require),
    ("optional", FeaturePolicy::Optional),
    ("disable", FeaturePolicy::Disable),
    ("forbid", FeaturePolicy::Forbid),
];
const ON_OFF: &[(&str, bool)] = &[("on", true), ("off", false)];
const ACCESS: &[(&str, MemAccess)] = &[
    ("shared", MemAccess::Shared),
    ("private", MemAccess::Private),
];

/// Reads `<cpu>`; `count` is `<vcpu>`'s count, which topology and cells must agree with.
pub(crate) fn cpu(
    r: &mut Reader,
    root: Node<'_, '_>,
    count: u32,
) -> Result<Option<CpuConfig>, DomainError> {
    let Some(node) = r.child(root, "cpu") else {
        return Ok(None);
    };
    let mode = r
        .choice(
            node,
            "mode",
            MODES,
            "custom, host-model, host-passthrough or maximum",
        )?
        .unwrap_or(CpuMode::Custom);
    let mut cpu = CpuConfig {
        mode,
        match_: r.choice(node, "match", MATCHES, "minimum, exact or strict")?,
        check: r.choice(node, "check", CHECKS, "none, partial or full")?,
        migratable: r.choice(node, "migratable", ON_OFF, "on or off")?,
        model: None,
        vendor: None,
        features: Vec::new(),
        topology: None,
        numa: Vec::new(),
    };
    if let Some(m) = r.child(node, "model") {
        let name = text(m);
        if name.is_empty() {
            return Err(missing("cpu/model", "the model name"));
        }
        cpu.model = Some(CpuModelConfig {
            name: name.to_string(),
            fallback: r.choice(m, "fallback", FALLBACKS, "allow or forbid")?,
        });
    }
    cpu.vendor = r.child(node, "vendor").map(|v| text(v).to_string());
    for f in r.children(node, "feature") {
        let name = r
            .attr(f, "name")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| missing("cpu/feature", "attribute 'name'"))?;
        let policy = r
            .choice(
                f,
                "policy",
                POLICIES,
                "force, require, optional, disable or forbid",
            )?
            .unwrap_or(FeaturePolicy::Require);
        if cpu.features.iter().any(|x| x.name == name) {
            return Err(DomainError::Duplicate {
                element: "cpu/feature".into(),
                what: format!("name='{name}'"),
            });
        }
        cpu.features.push(CpuFeature {
            policy,
            name: name.to_string(),
        });
    }
    if let Some(t) = r.child(node, "topology") {
        cpu.topology = Some(topology(r, t, count)?);
    }
    if let Some(numa) = r.child(node, "numa") {
        cpu.numa = cells(r, numa, count)?;
    }
    Ok(Some(cpu))
}

fn topology(r: &mut Reader, t: Node<'_, '_>, count: u32) -> Result<CpuTopologyConfig, DomainError> {
    let mut level = |name: &str| -> Result<u32, DomainError> {
        let n: u32 = r.number(t, name, "a count from 1")?.unwrap_or(1);
        if n == 0 {
            return Err(DomainError::Invalid {
                element: "cpu/topology".into(),
                attribute: name.into(),
                value: "0".into(),
                expected: "a count from 1",
            });
        }
        Ok(n)
    };
    let topo = CpuTopologyConfig {
        sockets: level("sockets")?,
        dies: level("dies")?,
        clusters: level("clusters")?,
        cores: level("cores")?,
        threads: level("threads")?,
    };
    // libvirt: the topology must hold exactly the maximum vCPU count.
    if topo.cpus() != Some(count) {
        return Err(inconsistent(
            "cpu/topology",
            format!(
                "sockets*dies*clusters*cores*threads = {} does not match the <vcpu> count {count}",
                topo.cpus()
                    .map_or("overflow".to_string(), |n| n.to_string())
            ),
        ));
    }
    Ok(topo)
}

/// The cells, in id order; cells without `id` are numbered by position, as libvirt does.
fn cells(
    r: &mut Reader,
    numa: Node<'_, '_>,
    count: u32,
) -> Result<Vec<NumaCellConfig>, DomainError> {
    let nodes = r.children(numa, "cell");
    let n = nodes.len();
    let mut cells: Vec<Option<NumaCellConfig>> = vec![None; n];
    for (position, node) in nodes.iter().enumerate() {
        let id: u32 = r
            .number(*node, "id", "a cell id")?
            .unwrap_or(position as u32);
        if id as usize >= n {
            return Err(inconsistent(
                "cpu/numa/cell",
                format!(
                    "id='{id}': cell ids must be 0-{} (one per cell, no gaps)",
                    n - 1
                ),
            ));
        }
        if cells[id as usize].is_some() {
            return Err(DomainError::Duplicate {
                element: "cpu/numa/cell".into(),
                what: format!("id='{id}'"),
            });
        }
        let cpus = r.cpuset(*node, "cpus")?;
        if let Some(set) = &cpus {
            vcpus_exist(*node, "cpus", set, count)?;
        }
        let memory = r
            .attr(*node, "memory")
            .ok_or_else(|| missing("cpu/numa/cell", "attribute 'memory'"))?;
        let memory_kib = round_up_mib(size_kib(r, *node, memory, "memory")?);
        let mem_access = r.choice(*node, "memAccess", ACCESS, "shared or private")?;
        let mut distances = Vec::new();
        if let Some(d) = r.child(*node, "distances") {
            for s in r.children(d, "sibling") {
                distances.push(sibling(r, s, id, n)?);
            }
        }
        distances.sort_unstable();
        if let Some(w) = distances.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(DomainError::Duplicate {
                element: "cpu/numa/cell/distances/sibling".into(),
                what: format!("id='{}'", w[0].0),
            });
        }
        cells[id as usize] = Some(NumaCellConfig {
            id,
            cpus,
            memory_kib,
            mem_access,
            distances,
        });
    }
    let cells: Vec<NumaCellConfig> = cells.into_iter().flatten().collect();
    for (i, a) in cells.iter().enumerate() {
        for b in &cells[i + 1..] {
            if let (Some(x), Some(y)) = (&a.cpus, &b.cpus) {
                if x.intersects(y) {
                    return Err(inconsistent(
                        "cpu/numa/cell",
                        format!(
                            "cells {} and {} share vCPU(s) {}",
                            a.id,
                            b.id,
                            x.intersection(y).to_cpu_list()
                        ),
                    ));
                }
            }
        }
    }
    Ok(cells)
}

fn sibling(r: &mut Reader, s: Node<'_, '_>, cell: u32, n: usize) -> Result<(u32, u8), DomainError> {
    const WHERE: &str = "cpu/numa/cell/distances/sibling";
    let id: u32 = r
        .number(s, "id", "a cell id")?
        .ok_or_else(|| missing(WHERE, "attribute 'id'"))?;
    if id as usize >= n {
        return Err(inconsistent(WHERE, format!("id='{id}' names no cell")));
    }
    let value: u8 = r
        .number(s, "value", "a distance from 10 to 255")?
        .ok_or_else(|| missing(WHERE, "attribute 'value'"))?;
    if value < 10 || (id == cell && value != 10) || (id != cell && value == 10) {
        return Err(inconsistent(
            WHERE,
            format!(
                "value='{value}' from cell {cell} to cell {id}: 10 is a cell's distance to itself, 11-255 to another"
            ),
        ));
    }
    Ok((id, value))
}

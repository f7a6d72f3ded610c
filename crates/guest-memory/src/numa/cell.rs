//! libvirt's `<cell>` element as a config-file form of `-numa node`.

use serde::{Deserialize, Serialize};

use cpu_topology::HostCpuSet;

use super::{
    NodeMemory, NumaConfig, NumaDistOption, NumaError, NumaNodeOption, NumaOption, MAX_NODES,
};

/// Largest CPU index a cell may name (the cpuset grammar's bound, far above any vCPU count).
const CELL_CPU_LIMIT: u32 = 1 << 16;

/// libvirt rounds every guest NUMA cell up to a multiple of this (1 MiB) for QEMU.
const CELL_ALIGN: u64 = 1 << 20;

/// libvirt's `<numa><cell id= cpus= memory= unit=>` as a config-file entry, e.g. JSON
/// `{"id": 0, "cpus": "0-3", "memory": 1048576}` (unit KiB, as libvirt), with the cell's
/// `<distances><sibling id= value=/></distances>` as `"distances": [{"id": 1, "value": 21}]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumaCell {
    /// Node id.
    pub id: u32,
    /// CPUs in libvirt's cpuset syntax (`0-3,8`, `0-7,^4`).
    pub cpus: String,
    /// Memory in `unit`s.
    pub memory: u64,
    /// `b`, `KiB` (default), `MiB`, `GiB`, `TiB`, `k`, `M`, `G`, ..., or decimal `KB`, `MB`,
    /// `GB`, ... (every unit libvirt takes).
    #[serde(default)]
    pub unit: Option<String>,
    /// Distances from this cell to others (libvirt's `<sibling>`s).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub distances: Vec<NumaSibling>,
}

/// libvirt's `<sibling id= value=/>`: the distance from the enclosing cell to cell `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumaSibling {
    /// The other cell.
    pub id: u32,
    /// The distance (10 for the cell itself, 10..=255).
    pub value: u32,
}

/// libvirt's memory units (`virScaleInteger`): `b`/`bytes`; `k`, `KiB`, `M`, `MiB`, ... are
/// powers of 1024; `KB`, `MB`, ... powers of 1000. Case does not matter, as in libvirt.
fn libvirt_unit_scale(unit: &str) -> Option<u64> {
    let lower = unit.to_ascii_lowercase();
    if matches!(lower.as_str(), "b" | "byte" | "bytes") {
        return Some(1);
    }
    let (prefix, rest) = lower.split_at_checked(1)?;
    let base: u64 = match rest {
        "" | "ib" => 1024,
        "b" => 1000,
        _ => return None,
    };
    let power = "kmgtpe".find(prefix)? as u32 + 1;
    base.checked_pow(power)
}

impl NumaCell {
    /// The equivalent `-numa node,nodeid=ID,cpus=...,mem=BYTES`, the size rounded up to a
    /// whole MiB as libvirt aligns guest NUMA cells for QEMU (`memory='1000000'` KiB, not a
    /// multiple of 1 MiB, becomes 977 MiB).
    pub fn to_option(&self) -> Result<NumaOption, NumaError> {
        let bad = |reason: String| NumaError::BadCell {
            id: self.id,
            reason,
        };
        let unit = self.unit.as_deref().unwrap_or("KiB");
        let scale =
            libvirt_unit_scale(unit).ok_or_else(|| bad(format!("unknown unit '{unit}'")))?;
        let bytes = self
            .memory
            .checked_mul(scale)
            .and_then(|b| b.checked_next_multiple_of(CELL_ALIGN))
            .ok_or_else(|| bad("memory does not fit in 64 bits".into()))?;
        let cpus = if self.cpus.is_empty() {
            Vec::new()
        } else {
            HostCpuSet::parse_libvirt(&self.cpus, CELL_CPU_LIMIT)
                .map_err(|e| bad(format!("cpus '{}': {e}", self.cpus)))?
                .ranges()
        };
        Ok(NumaOption::Node(NumaNodeOption {
            nodeid: Some(self.id),
            cpus,
            memory: NodeMemory::Size(bytes),
        }))
    }

    /// The `-numa dist,src=ID,dst=SIBLING,val=VALUE` options of the cell's siblings.
    pub fn distance_options(&self) -> Result<Vec<NumaOption>, NumaError> {
        self.distances
            .iter()
            .map(|s| {
                let val = u8::try_from(s.value).map_err(|_| NumaError::BadCell {
                    id: self.id,
                    reason: format!("distance {} to cell {} is above 255", s.value, s.id),
                })?;
                if s.id >= MAX_NODES {
                    return Err(NumaError::BadCell {
                        id: self.id,
                        reason: format!("sibling id {} is not a node id", s.id),
                    });
                }
                Ok(NumaOption::Dist(NumaDistOption {
                    src: self.id,
                    dst: s.id,
                    val,
                }))
            })
            .collect()
    }
}

impl NumaConfig {
    /// The configuration libvirt `<cell>`s describe: a node per cell, then the distances
    /// of every cell's siblings (checked and completed as `-numa dist` options are).
    pub fn from_cells(cells: &[NumaCell]) -> Result<Self, NumaError> {
        let mut options = cells
            .iter()
            .map(NumaCell::to_option)
            .collect::<Result<Vec<_>, _>>()?;
        for cell in cells {
            options.extend(cell.distance_options()?);
        }
        Ok(Self { options })
    }
}

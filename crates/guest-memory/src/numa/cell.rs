//! libvirt's `<cell>` element as a config-file form of `-numa node`.

use serde::{Deserialize, Serialize};

use cpu_topology::HostCpuSet;

use super::{
    NodeMemory, NumaConfig, NumaDistOption, NumaError, NumaNodeOption, NumaOption, MAX_NODES,
};

/// Largest CPU index a cell may name (the cpuset grammar's bound, far above any vCPU count).
const CELL_CPU_LIMIT: u32 = 1 << 16;

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
    /// `b`, `KiB` (default), `MiB`, `GiB`, `TiB` (libvirt also takes `k`, `M`, `G`, ...).
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

impl NumaCell {
    /// The equivalent `-numa node,nodeid=ID,cpus=...,mem=BYTES`.
    pub fn to_option(&self) -> Result<NumaOption, NumaError> {
        let bad = |reason: String| NumaError::BadCell {
            id: self.id,
            reason,
        };
        let shift = match self.unit.as_deref().unwrap_or("KiB") {
            "b" | "B" | "bytes" => 0,
            "k" | "K" | "KiB" => 10,
            "M" | "MiB" => 20,
            "G" | "GiB" => 30,
            "T" | "TiB" => 40,
            other => return Err(bad(format!("unknown unit '{other}'"))),
        };
        let bytes = self
            .memory
            .checked_mul(1 << shift)
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

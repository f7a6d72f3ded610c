//! libvirt's `<cell>` element as a config-file form of `-numa node`.

use serde::{Deserialize, Serialize};

use super::{cpu_range, NodeMemory, NumaConfig, NumaError, NumaNodeOption, NumaOption};

/// libvirt's `<numa><cell id= cpus= memory= unit=/></numa>` as a config-file entry, e.g.
/// TOML `[[numa.cell]] id = 0, cpus = "0-3", memory = 1048576` (unit KiB, as libvirt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumaCell {
    /// Node id.
    pub id: u32,
    /// CPU list `0-3,8` (no `^`).
    pub cpus: String,
    /// Memory in `unit`s.
    pub memory: u64,
    /// `b`, `KiB` (default), `MiB`, `GiB`, `TiB` (libvirt also takes `k`, `M`, `G`, ...).
    #[serde(default)]
    pub unit: Option<String>,
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
            self.cpus
                .split(',')
                .map(cpu_range)
                .collect::<Result<_, _>>()
                .map_err(|e| bad(format!("cpus '{}': {e}", self.cpus)))?
        };
        Ok(NumaOption::Node(NumaNodeOption {
            nodeid: Some(self.id),
            cpus,
            memory: NodeMemory::Size(bytes),
        }))
    }
}

impl NumaConfig {
    /// The configuration libvirt `<cell>`s describe.
    pub fn from_cells(cells: &[NumaCell]) -> Result<Self, NumaError> {
        let options = cells
            .iter()
            .map(NumaCell::to_option)
            .collect::<Result<_, _>>()?;
        Ok(Self { options })
    }
}

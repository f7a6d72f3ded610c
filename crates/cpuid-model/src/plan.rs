//! `cpuid-plan` and `cpuid-baseline`: CPUID planning for hosts you are not on.
//!
//! Both read host CPUID from `cpuid -r` dumps and make no KVM call: the same model
//! resolution and per-vCPU normalisation as a real run, with the host as data.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::baseline::{self, Baseline, BaselineError};
use crate::check::{self, CheckError, ModelWarning};
use crate::decode::{self, DecodeError};
use crate::dump::{self, DumpError};
use crate::normalize::{NormalizeError, Normalizer};
use crate::spec::ModelSpec;
use crate::{hwloc, CpuidTable};
use cpu_topology::CpuTopology;

use crate::report::{Summary, VcpuView};

/// Why planning failed. Every variant is bad input (exit status 2) except the writes.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A dump could not be read.
    #[error("read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A dump did not parse.
    #[error("{}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and why.
        #[source]
        source: DumpError,
    },
    /// A dump has no CPU section.
    #[error("{}: no `CPU:` section; expected the output of `cpuid -r`", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The model cannot run on that host (`enforce`).
    #[error("--cpu")]
    Model(#[from] CheckError),
    /// Per-vCPU CPUID could not be computed.
    #[error("CPUID")]
    Normalize(#[from] NormalizeError),
    /// A computed view did not decode (a bug if it happens: the normaliser wrote it).
    #[error("decode the planned CPUID view of vCPU {vcpu}")]
    Decode {
        /// Which vCPU.
        vcpu: u32,
        /// Why.
        #[source]
        source: DecodeError,
    },
    /// No baseline for these hosts.
    #[error("baseline")]
    Baseline(#[from] BaselineError),
    /// An output could not be written.
    #[error("write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The hwloc directory could not be written.
    #[error("--dump-cpuid-hwloc")]
    Hwloc(#[from] hwloc::HwlocError),
}

impl PlanError {
    /// True when the user's input is at fault (exit status 2).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, PlanError::Write { .. } | PlanError::Hwloc(_))
    }
}

/// The supported CPUID of a host from its `cpuid -r` dump: the first CPU section
/// (a host's CPUs share one feature set; their APIC ids are replaced anyway).
pub fn read_host_dump(path: &Path) -> Result<CpuidTable, PlanError> {
    let text = std::fs::read_to_string(path).map_err(|source| PlanError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let cpus = dump::parse_raw(&text).map_err(|source| PlanError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    cpus.into_iter()
        .next()
        .map(|c| c.table)
        .ok_or_else(|| PlanError::Empty {
            path: path.to_path_buf(),
        })
}

/// What a plan computed.
#[derive(Debug)]
pub struct Plan {
    /// Warnings from resolving the model against the host.
    pub warnings: Vec<ModelWarning>,
    /// Each present vCPU's CPUID table, in index order.
    pub tables: Vec<CpuidTable>,
    /// The topology as the planned tables describe it.
    pub summary: Summary,
}

/// Compute what every present vCPU would see on `host` with `spec` and `topo`.
pub fn plan(host: &CpuidTable, spec: &ModelSpec, topo: &CpuTopology) -> Result<Plan, PlanError> {
    let resolved = check::resolve(spec, host)?;
    let normalizer = Normalizer::new(&resolved.table, topo)?;
    let mut tables = Vec::with_capacity(topo.cpus() as usize);
    let mut summary = Summary::default();
    for index in topo.present() {
        let table = normalizer.for_vcpu(index)?;
        let view = decode::topology_view(&table).map_err(|source| PlanError::Decode {
            vcpu: index.0,
            source,
        })?;
        let mut row = VcpuView::from_decoded(index.0, &view, None, None);
        row.node = crate::normalize::amd::node_id(&table);
        summary.vcpus.push(row);
        tables.push(table);
    }
    Ok(Plan {
        warnings: resolved.warnings,
        tables,
        summary,
    })
}

/// Write the plan's tables as a `cpuid -r` dump and/or a hwloc-gather-cpuid directory.
pub fn write_plan(
    tables: &[CpuidTable],
    raw: Option<&Path>,
    hwloc_dir: Option<&Path>,
) -> Result<(), PlanError> {
    if let Some(path) = raw {
        let cpus: Vec<(u32, &CpuidTable)> = tables
            .iter()
            .enumerate()
            .map(|(i, t)| (i as u32, t))
            .collect();
        let io = |source| PlanError::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut w = BufWriter::new(File::create(path).map_err(io)?);
        dump::write_raw(&mut w, &cpus)
            .and_then(|()| w.flush())
            .map_err(io)?;
    }
    if let Some(dir) = hwloc_dir {
        hwloc::write_dir(dir, &tables.iter().collect::<Vec<_>>())?;
    }
    Ok(())
}

/// The largest named model (plus common extra features) every host can run, and warnings
/// about the fleet (hosts of different vendors cannot migrate guests between them: a KVM
/// guest always sees its host's vendor).
pub fn fleet_baseline(paths: &[PathBuf]) -> Result<(Baseline, Vec<String>), PlanError> {
    let hosts = paths
        .iter()
        .map(|p| read_host_dump(p))
        .collect::<Result<Vec<_>, _>>()?;
    let baseline = baseline::baseline(&hosts)?;
    let mut vendors: Vec<String> = hosts
        .iter()
        .filter_map(|t| t.vendor())
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .collect();
    vendors.sort();
    vendors.dedup();
    let mut warnings = Vec::new();
    if vendors.len() > 1 {
        warnings.push(format!(
            "the hosts have different CPU vendors ({}): a KVM guest always sees its host's vendor, \
             so guests cannot live-migrate between them whatever the model",
            vendors.join(", ")
        ));
    }
    Ok((baseline, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpu_topology::smp::parse_smp;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name)
    }

    #[test]
    fn plan_for_an_intel_host_from_an_amd_one() {
        let host = read_host_dump(&fixture("host-intel-cascadelake-synth.txt")).unwrap();
        let spec = crate::spec::parse("Cascadelake-Server").unwrap();
        let topo = parse_smp("12,sockets=2,dies=2,cores=3").unwrap();
        let p = plan(&host, &spec, &topo).unwrap();
        assert_eq!(p.tables.len(), 12);
        let text = p.summary.to_string();
        assert!(
            text.starts_with("logical CPU number in total: 12\nphysical CPU number in total: 2\n"),
            "{text}"
        );
        // Sparse ids: vCPU 3 is die 1 of socket 0 -> APIC id 4.
        assert_eq!(p.summary.vcpus[3].apic_id, 4);
        assert_eq!(p.tables[0].vendor(), Some(*b"GenuineIntel"));
    }

    #[test]
    fn missing_and_malformed_dumps_are_bad_input() {
        let e = read_host_dump(Path::new("/nonexistent/dump.txt")).unwrap_err();
        assert!(e.is_bad_input());
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.txt");
        std::fs::write(&bad, "CPU 0:\n   0x00000000 0x00: eax=zz\n").unwrap();
        let e = read_host_dump(&bad).unwrap_err();
        assert!(e.is_bad_input());
        let chain = format!(
            "{e}: {}",
            std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or_default()
        );
        assert!(chain.contains("bad.txt"), "{chain}");
        std::fs::write(&bad, "\n").unwrap();
        assert!(matches!(read_host_dump(&bad), Err(PlanError::Empty { .. })));
    }

    #[test]
    fn baseline_of_one_host_runs_on_it() {
        let (b, warnings) = fleet_baseline(&[fixture("host-amd-zen4.txt")]).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let (_, mixed) = fleet_baseline(&[
            fixture("host-amd-zen4.txt"),
            fixture("host-intel-cascadelake-synth.txt"),
        ])
        .unwrap();
        assert!(mixed[0].contains("AuthenticAMD, GenuineIntel"), "{mixed:?}");
        let host = read_host_dump(&fixture("host-amd-zen4.txt")).unwrap();
        let spec = b.spec.clone();
        // The baseline resolves on its host even under enforce.
        let mut strict = spec;
        strict.enforce = true;
        check::resolve(&strict, &host).unwrap();
        assert!(b.to_string().starts_with("EPYC"), "{b}");
    }
}

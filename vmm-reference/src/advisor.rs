//! `overcommit-advice`: should this guest be this wide on these host CPUs?
//!
//! The advice first explains the numbers (vCPUs per allowed host CPU and per core against
//! the policy), then measures instead of guessing: it runs the probe guest's CPL3
//! workloads with 1..N vCPUs on the allowed CPUs. Independent spinning shows aggregate
//! throughput and how fairly the host shares its CPUs; barrier rounds show what a
//! synchronising guest gets once vCPUs outnumber CPUs (waiters spin on descheduled peers).

use std::time::{Duration, Instant};

use cpu_topology::{CpuTopology, VcpuIndex};
use probe_guest::ProbeMode;
use vcpu_placement::CpuSpec;

pub use vcpu_placement::advice::{explain, jain, table, widths, Measurement};

use crate::{Vmm, VmmConfig, VmmError};

/// A probe VM of `n` vCPUs running `mode` on `cpuset`, measured over `window`: per-vCPU
/// progress per second.
fn run_workload(
    n: u32,
    mode: ProbeMode,
    cpuset: Option<&CpuSpec>,
    window: Duration,
) -> Result<Vec<f64>, VmmError> {
    let mut config = VmmConfig::new(CpuTopology::flat(n)?);
    config.payload = crate::Payload::Probe(crate::ProbeConfig {
        mode,
        ..Default::default()
    });
    config.placement.config.cpuset = cpuset.cloned();
    config.placement.overcommit.warn_only = true;
    config.name = Some(format!("overcommit-advice-{n}"));
    let mut vmm = Vmm::new(config)?;
    vmm.start()?;
    // Let every vCPU leave CPL0 start-up before the window opens.
    std::thread::sleep(Duration::from_millis(20));
    let read = |vmm: &Vmm| {
        (0..n)
            .map(|i| vmm.progress(VcpuIndex(i)))
            .collect::<Result<Vec<_>, _>>()
    };
    let (start, t0) = (read(&vmm)?, Instant::now());
    std::thread::sleep(window);
    let (end, elapsed) = (read(&vmm)?, t0.elapsed().as_secs_f64());
    vmm.stop()?;
    Ok(end
        .iter()
        .zip(&start)
        .map(|(e, s)| (e - s) as f64 / elapsed)
        .collect())
}

/// Measure spin and barrier workloads for each width.
pub fn measure(
    widths: &[u32],
    cpuset: Option<&CpuSpec>,
    window: Duration,
    barrier_work: u64,
) -> Result<Vec<Measurement>, VmmError> {
    let mut rows = Vec::new();
    for &n in widths {
        let spin = run_workload(n, ProbeMode::Spin { iterations: 0 }, cpuset, window)?;
        let max = spin.iter().cloned().fold(0.0, f64::max);
        let min = spin.iter().cloned().fold(f64::INFINITY, f64::min);
        let barrier = run_workload(
            n,
            ProbeMode::Barrier {
                rounds: u64::MAX / 2,
                work: barrier_work,
            },
            cpuset,
            window,
        )?;
        rows.push(Measurement {
            vcpus: n,
            spin_rate: spin.iter().sum(),
            spin_min_over_max: if max > 0.0 { min / max } else { 0.0 },
            spin_jain: jain(&spin),
            // Every vCPU passes the same rounds (+-1): the slowest is the guest's pace.
            barrier_rate: barrier.iter().cloned().fold(f64::INFINITY, f64::min),
        });
    }
    Ok(rows)
}

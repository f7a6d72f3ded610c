//! `overcommit-advice`: should this guest be this wide on these host CPUs?
//!
//! The advice first explains the numbers (vCPUs per allowed host CPU and per core against
//! the policy), then measures instead of guessing: it runs the probe guest's CPL3
//! workloads with 1..N vCPUs on the allowed CPUs. Independent spinning shows aggregate
//! throughput and how fairly the host shares its CPUs; barrier rounds show what a
//! synchronising guest gets once vCPUs outnumber CPUs (waiters spin on descheduled peers).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use cpu_topology::{CpuTopology, HostCpuInventory, HostCpuSet, VcpuIndex};
use probe_guest::ProbeMode;
use vcpu_placement::{CpuSpec, OvercommitPolicy};

use crate::{Vmm, VmmConfig, VmmError};

/// One measured width.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// vCPUs of the guest.
    pub vcpus: u32,
    /// Spin iterations per second, all vCPUs together.
    pub spin_rate: f64,
    /// Slowest vCPU's share relative to the fastest (1.0 = perfectly even).
    pub spin_min_over_max: f64,
    /// Jain's fairness index of the per-vCPU spin rates (1.0 = even, 1/n = one vCPU got all).
    pub spin_jain: f64,
    /// Barrier rounds per second (every vCPU passes each round).
    pub barrier_rate: f64,
}

/// The widths to measure: 1, 2, 4, ... up to `max`, plus the allowed CPU count and `max`.
pub fn widths(max: u32, cpus: u32) -> Vec<u32> {
    let mut w: Vec<u32> = std::iter::successors(Some(1u32), |n| n.checked_mul(2))
        .take_while(|&n| n <= max)
        .collect();
    w.extend([cpus.min(max), max]);
    w.sort_unstable();
    w.dedup();
    w
}

/// Jain's fairness index: (sum x)^2 / (n * sum x^2).
pub fn jain(xs: &[f64]) -> f64 {
    let sum: f64 = xs.iter().sum();
    let squares: f64 = xs.iter().map(|x| x * x).sum();
    if squares == 0.0 {
        return 0.0;
    }
    sum * sum / (xs.len() as f64 * squares)
}

/// The explanation for `vcpus` on `allowed` of `host` under `policy`.
pub fn explain(
    host: &HostCpuInventory,
    allowed: &HostCpuSet,
    vcpus: u32,
    policy: &OvercommitPolicy,
) -> String {
    let cpus = allowed.len() as u32;
    let cores = host
        .cores()
        .iter()
        .filter(|c| c.intersects(allowed))
        .count() as u32;
    let per_cpu = f64::from(vcpus) / f64::from(cpus.max(1));
    let per_core = f64::from(vcpus) / f64::from(cores.max(1));
    let mut text = String::new();
    let _ = writeln!(
        text,
        "guest: {vcpus} vCPUs; allowed host CPUs: {allowed} ({cpus} CPUs on {cores} cores)"
    );
    let _ = writeln!(
        text,
        "load: {per_cpu:.2} vCPUs per host CPU, {per_core:.2} per core"
    );
    let verdict = if vcpus <= cpus {
        "fits: every vCPU can have a host CPU of its own (a dedicated placement is possible)"
            .to_string()
    } else if per_cpu <= f64::from(policy.shared_ratio) && per_core <= f64::from(policy.core_cap) {
        format!(
            "over-committed within the policy ({}:1 shared, at most {} per core): fine for independent work; \
             a guest that synchronises across vCPUs (spinlocks, barriers) loses time whenever a waiter runs \
             while the holder is descheduled; prefer at most {cpus} vCPUs for such guests",
            policy.shared_ratio, policy.core_cap
        )
    } else {
        format!(
            "not recommended: above the policy ({}:1 shared, at most {} per core); `--overcommit strict` refuses \
             this VM; use at most {} vCPUs on these CPUs, or allow more CPUs",
            policy.shared_ratio,
            policy.core_cap,
            cpus * policy.shared_ratio
        )
    };
    let _ = writeln!(text, "advice: {verdict}");
    text
}

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

/// The measurements as a table.
pub fn table(rows: &[Measurement], cpus: u32) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "| vCPUs | vCPU:CPU | spin total (M iter/s) | spin per vCPU (M iter/s) | slowest/fastest | Jain fairness | barrier rounds/s |"
    );
    let _ = writeln!(text, "|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let _ = writeln!(
            text,
            "| {} | {:.2} | {:.0} | {:.0} | {:.2} | {:.3} | {:.0} |",
            r.vcpus,
            f64::from(r.vcpus) / f64::from(cpus.max(1)),
            r.spin_rate / 1e6,
            r.spin_rate / 1e6 / f64::from(r.vcpus),
            r.spin_min_over_max,
            r.spin_jain,
            r.barrier_rate
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_cover_powers_the_cpu_count_and_the_maximum() {
        assert_eq!(widths(12, 2), [1, 2, 4, 8, 12]);
        assert_eq!(widths(1, 2), [1]);
        assert_eq!(widths(6, 3), [1, 2, 3, 4, 6]);
    }

    #[test]
    fn jain_index() {
        assert!((jain(&[1.0, 1.0, 1.0]) - 1.0).abs() < 1e-12);
        assert!((jain(&[1.0, 0.0, 0.0, 0.0]) - 0.25).abs() < 1e-12);
        assert_eq!(jain(&[0.0]), 0.0);
    }

    #[test]
    fn explanations_follow_the_policy() {
        let host = HostCpuInventory::uniform(1, 2, 1);
        let all = host.online().clone();
        let policy = OvercommitPolicy::default();
        assert!(explain(&host, &all, 2, &policy).contains("advice: fits"));
        assert!(
            explain(&host, &all, 8, &policy).contains("advice: over-committed within the policy")
        );
        let wide = explain(&host, &all, 64, &policy);
        assert!(wide.contains("advice: not recommended"), "{wide}");
        assert!(wide.contains("at most 10 vCPUs on these CPUs"), "{wide}");
        assert!(wide.contains("32.00 vCPUs per host CPU"), "{wide}");
    }
}

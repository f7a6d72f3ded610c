//! Over-commit advice: how many vCPUs per allowed host CPU and per core a guest brings,
//! against the policy, and the table of measured CPL3 workloads the VMM's
//! `overcommit-advice` fills in (spin throughput and fairness, barrier rounds).

use std::fmt::Write as _;

use cpu_topology::{HostCpuInventory, HostCpuSet};

use crate::OvercommitPolicy;

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

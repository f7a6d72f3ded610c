//! What a run prints: the classic cpu-info.sh summary, as a Linux guest would compute it
//! from /proc/cpuinfo, the NUMA node count when `--numa` was given (lscpu's wording,
//! from the configuration), then one row per vCPU.

use std::collections::BTreeSet;
use std::fmt;

/// What one vCPU reported, decoded from its own CPUID view, plus where its thread ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcpuView {
    /// vCPU index (QEMU's cpu-index).
    pub index: u32,
    /// x2APIC id the vCPU read from CPUID.
    pub apic_id: u32,
    /// Package (/proc/cpuinfo `physical id`).
    pub socket: u32,
    /// Die within the package.
    pub die: u32,
    /// Core within the package (/proc/cpuinfo `core id`).
    pub core: u32,
    /// Thread within the core.
    pub thread: u32,
    /// Threads per core.
    pub threads_per_core: u32,
    /// Logical CPUs per package (/proc/cpuinfo `siblings`).
    pub logical_per_package: u32,
    /// Cores per package (/proc/cpuinfo `cpu cores`).
    pub cores_per_package: u32,
    /// Node id the vCPU read from its own CPUID (AMD leaf 0x8000_001E `ECX[7:0]`, when the
    /// vendor is AMD and TOPOEXT is set); `None` where CPUID has no node id (Intel).
    pub node: Option<u32>,
    /// Host thread id of the vCPU (none for a plan).
    pub host_tid: Option<i32>,
    /// Host CPU the vCPU thread ran on when the guest reported.
    pub host_cpu: Option<u32>,
}

impl VcpuView {
    /// A row from a decoded CPUID view and, for a real run, where the vCPU thread ran. The
    /// view has no node id: set [`VcpuView::node`] from the table
    /// (`crate::normalize::amd::node_id`).
    pub fn from_decoded(
        index: u32,
        view: &crate::decode::TopologyView,
        host_tid: Option<i32>,
        host_cpu: Option<u32>,
    ) -> Self {
        Self {
            index,
            apic_id: view.apic_id,
            socket: view.package_id,
            die: view.die_id,
            core: view.core_id,
            thread: view.thread_id,
            threads_per_core: view.threads_per_core,
            logical_per_package: view.logical_per_package,
            cores_per_package: view.cores_per_package,
            node: None,
            host_tid,
            host_cpu,
        }
    }
}

/// What one vCPU did in a workload mode (spin, barrier, exits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadView {
    /// vCPU index.
    pub index: u32,
    /// The guest's progress counter: iterations, rounds or exits.
    pub progress: u64,
    /// VM exits the vCPU thread handled.
    pub exits: u64,
    /// Host thread id of the vCPU.
    pub host_tid: i32,
    /// Host CPU of the vCPU thread at its last exit.
    pub host_cpu: Option<u32>,
}

/// The result of a probe run, in vCPU index order: CPUID views (report mode) or
/// workload progress (the other modes).
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Views in vCPU index order (report mode).
    pub vcpus: Vec<VcpuView>,
    /// Progress in vCPU index order (workload modes).
    pub workload: Vec<WorkloadView>,
    /// Number of NUMA nodes the VM was configured with (`--numa`), if any.
    pub numa_nodes: Option<usize>,
}

/// Distinct values, space separated, as `uniq` would leave them for cpu-info.sh.
fn distinct<T: Ord + fmt::Display>(values: impl Iterator<Item = T>) -> String {
    let set: BTreeSet<T> = values.collect();
    set.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |n| n.to_string())
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.workload.is_empty() {
            writeln!(
                f,
                "{:>5} {:>14} {:>10} {:>9} {:>9}",
                "vCPU", "progress", "exits", "host tid", "host CPU"
            )?;
            for w in &self.workload {
                writeln!(
                    f,
                    "{:>5} {:>14} {:>10} {:>9} {:>9}",
                    w.index,
                    w.progress,
                    w.exits,
                    w.host_tid,
                    or_dash(w.host_cpu)
                )?;
            }
            return Ok(());
        }
        let v = &self.vcpus;
        writeln!(f, "logical CPU number in total: {}", v.len())?;
        writeln!(
            f,
            "physical CPU number in total: {}",
            v.iter().map(|c| c.socket).collect::<BTreeSet<_>>().len()
        )?;
        writeln!(
            f,
            "core number in a physical CPU: {}",
            distinct(v.iter().map(|c| c.cores_per_package))
        )?;
        writeln!(
            f,
            "logical CPU number in a physical CPU: {}",
            distinct(v.iter().map(|c| c.logical_per_package))
        )?;
        let smt: BTreeSet<u32> = v.iter().map(|c| c.threads_per_core).collect();
        match smt.iter().max() {
            Some(&t) if t > 1 => {
                writeln!(f, "Hyper threading is enabled. Each core has {t} threads.")?
            }
            _ => writeln!(f, "Hyper threading is not enabled.")?,
        }
        if let Some(nodes) = self.numa_nodes {
            writeln!(f, "NUMA node(s): {nodes} (from the NUMA configuration)")?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "{:>5} {:>8} {:>7} {:>4} {:>5} {:>7} {:>5} {:>9} {:>9}",
            "vCPU", "APIC id", "socket", "die", "core", "thread", "node", "host tid", "host CPU"
        )?;
        for c in v {
            writeln!(
                f,
                "{:>5} {:>8} {:>7} {:>4} {:>5} {:>7} {:>5} {:>9} {:>9}",
                c.index,
                c.apic_id,
                c.socket,
                c.die,
                c.core,
                c.thread,
                or_dash(c.node),
                or_dash(c.host_tid),
                or_dash(c.host_cpu)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(index: u32, socket: u32, core: u32, thread: u32) -> VcpuView {
        VcpuView {
            index,
            apic_id: socket << 2 | core << 1 | thread,
            socket,
            die: 0,
            core,
            thread,
            threads_per_core: 2,
            logical_per_package: 4,
            cores_per_package: 2,
            node: (socket == 0).then_some(0),
            host_tid: Some(100 + index as i32),
            host_cpu: Some(index % 2),
        }
    }

    #[test]
    fn cpu_info_sh_lines_for_two_sockets_two_cores_two_threads() {
        let mut vcpus = Vec::new();
        for i in 0..8 {
            vcpus.push(view(i, i / 4, (i / 2) % 2, i % 2));
        }
        let text = Summary {
            vcpus,
            ..Summary::default()
        }
        .to_string();
        let head: Vec<&str> = text.lines().take(5).collect();
        assert_eq!(
            head,
            [
                "logical CPU number in total: 8",
                "physical CPU number in total: 2",
                "core number in a physical CPU: 2",
                "logical CPU number in a physical CPU: 4",
                "Hyper threading is enabled. Each core has 2 threads.",
            ]
        );
        assert!(
            text.contains(
                "\n\n vCPU  APIC id  socket  die  core  thread  node  host tid  host CPU\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "\n    0        0       0    0     0       0     0       100         0\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "\n    7        7       1    0     1       1     -       107         1\n"
            ),
            "{text}"
        );
        assert!(!text.contains("NUMA"), "{text}");
    }

    #[test]
    fn numa_node_count_follows_the_cpu_info_sh_lines() {
        let text = Summary {
            vcpus: (0..4).map(|i| view(i, i / 2, i % 2, 0)).collect(),
            numa_nodes: Some(2),
            ..Summary::default()
        }
        .to_string();
        let head: Vec<&str> = text.lines().take(7).collect();
        assert_eq!(
            head,
            [
                "logical CPU number in total: 4",
                "physical CPU number in total: 2",
                "core number in a physical CPU: 2",
                "logical CPU number in a physical CPU: 4",
                "Hyper threading is enabled. Each core has 2 threads.",
                "NUMA node(s): 2 (from the NUMA configuration)",
                "",
            ]
        );
    }
}

//! The probe VM with `--numa`/`--object`: each vCPU reads its configured NUMA node from its
//! own CPUID (AMD leaf 0x8000_001E), the summary shows it, `--dump-cpuid` agrees, and
//! node RAM from a backend is bound on the host as asked. Tests with `kvm` in their name
//! need /dev/kvm and fail loudly without it.

use std::process::{Command, Output};

use cpu_topology::smp::parse_smp;
use cpuid_model::dump::parse_raw;
use cpuid_model::CpuidKey;
use guest_memory::{parse_memory_backend, NumaConfig};
use probe_guest::ProbeMode;
use vmm_reference::{Vmm, VmmConfig};

fn vmm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmm-reference"))
        .args(args)
        .output()
        .expect("run vmm-reference")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The `node` column of the per-vCPU table, in row order.
fn node_column(stdout: &str) -> Vec<String> {
    let mut lines = stdout
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("vCPU"));
    let header: Vec<&str> = lines
        .next()
        .expect("a per-vCPU table")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "vCPU", "APIC", "id", "socket", "die", "core", "thread", "node", "host", "tid", "host",
            "CPU"
        ]
    );
    lines
        .map(|row| {
            row.split_whitespace()
                .nth(6)
                .expect("a node column")
                .to_string()
        })
        .collect()
}

/// 0x8000_001E ECX of each vCPU in a `--dump-cpuid` file.
fn dumped_ecx(path: &std::path::Path) -> Vec<u32> {
    parse_raw(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .iter()
        .map(|cpu| {
            cpu.table
                .regs(CpuidKey::leaf(0x8000_001e))
                .expect("the AMD model has leaf 0x8000001e")
                .ecx
        })
        .collect()
}

/// Run the probe on `--smp 4,sockets=2,cores=2 -m 128M` with two 64 MiB nodes and
/// `--cpu model`; returns the summary and each vCPU's dumped 0x8000_001E ECX.
fn run_two_nodes(model: &str, node0: &str, node1: &str) -> (String, Vec<u32>) {
    vmm_reference::testing::require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("cpuid.txt");
    let n0 = format!("node,nodeid=0,{node0},mem=64M");
    let n1 = format!("node,nodeid=1,{node1},mem=64M");
    let out = vmm(&[
        "--smp",
        "4,sockets=2,cores=2",
        "--numa",
        &n0,
        "--numa",
        &n1,
        "-m",
        "128M",
        "--cpu",
        model,
        "--dump-cpuid",
        dump.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let ecx = if model.starts_with("EPYC") {
        dumped_ecx(&dump)
    } else {
        Vec::new()
    };
    (stdout, ecx)
}

#[test]
fn kvm_probe_numa_node_per_socket_in_cpuid_summary_and_dump() {
    let (stdout, ecx) = run_two_nodes("EPYC", "cpus=0-1", "cpus=2-3");
    // The cpu-info.sh lines are unchanged; the node count follows, labelled as config.
    let head: Vec<&str> = stdout.lines().take(7).collect();
    assert_eq!(
        head,
        [
            "logical CPU number in total: 4",
            "physical CPU number in total: 2",
            "core number in a physical CPU: 2",
            "logical CPU number in a physical CPU: 2",
            "Hyper threading is not enabled.",
            "NUMA node(s): 2 (from the NUMA configuration)",
            "",
        ],
        "{stdout}"
    );
    assert_eq!(node_column(&stdout), ["0", "0", "1", "1"], "{stdout}");
    // One node per socket: node id = the vCPU's node, one node per processor.
    assert_eq!(ecx, [0x000, 0x000, 0x001, 0x001]);
}

#[test]
fn kvm_probe_numa_uneven_nodes_in_cpuid_summary_and_dump() {
    let (stdout, ecx) = run_two_nodes("EPYC", "cpus=0,cpus=3", "cpus=1-2");
    assert_eq!(node_column(&stdout), ["0", "1", "1", "0"], "{stdout}");
    // Both sockets hold both nodes: two nodes per processor (ECX[10:8] = 1).
    assert_eq!(ecx, [0x100, 0x101, 0x101, 0x100]);
}

#[test]
fn kvm_probe_numa_intel_model_has_no_cpuid_node() {
    let (stdout, _) = run_two_nodes("Skylake-Server", "cpus=0-1", "cpus=2-3");
    assert!(
        stdout.contains("\nNUMA node(s): 2 (from the NUMA configuration)\n"),
        "{stdout}"
    );
    assert_eq!(node_column(&stdout), ["-", "-", "-", "-"], "{stdout}");
}

#[test]
fn kvm_probe_without_numa_keeps_die_node_ids_and_no_numa_line() {
    vmm_reference::testing::require_kvm();
    let out = vmm(&["--smp", "4,sockets=2,dies=2", "--cpu", "EPYC"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("NUMA"), "{stdout}");
    // One node per die, numbered across sockets.
    assert_eq!(node_column(&stdout), ["0", "1", "2", "3"], "{stdout}");
}

/// Bad NUMA input is refused before /dev/kvm is opened: status 2, one line.
#[test]
fn bad_numa_input_exits_2_with_one_line() {
    let rows: &[(&[&str], &str)] = &[
        (
            &["--numa", "node,nodeid=0,cpus=0-3,mem=64M"],
            "--numa: total memory for NUMA nodes (0x4000000) should equal RAM size (0x8000000)",
        ),
        (
            &["--numa", "node,cpus=0-1,mem=64M", "--numa", "node,cpus=1-3,mem=64M"],
            "--numa: CPU 1 is already assigned to node-id: 0",
        ),
        (
            &["--numa", "node,cpus=0-1,mem=64M", "--numa", "node,cpus=2,mem=64M"],
            "--numa: CPU(s) not present in any NUMA nodes: 3 (every CPU up to maxcpus must be in a node)",
        ),
        (
            &["--numa", "node,cpus=0-4,mem=128M"],
            "--numa: CPU index (4) should be smaller than maxcpus (4)",
        ),
        (
            &["--numa", "node,cpus=0-3,memdev=nope"],
            "--numa: memdev=nope names no memory backend (define it with --object memory-backend-ram,id=nope,size=...)",
        ),
        (
            &[
                "--numa",
                "node,cpus=0-1,mem=64M",
                "--numa",
                "node,cpus=2-3,mem=64M",
                "--numa",
                "dist,src=0,dst=1,val=5",
            ],
            "--numa: NUMA distance (5) is invalid, it shouldn't be less than 10.",
        ),
        (
            &["--numa", "node,foo=1"],
            "invalid value 'node,foo=1' for '--numa <SPEC>': -numa node: invalid parameter 'foo' (see --help)",
        ),
    ];
    for (numa, want) in rows {
        let mut args = vec!["--smp", "4", "-m", "128M"];
        args.extend_from_slice(numa);
        let out = vmm(&args);
        let errors: Vec<String> = text(&out.stderr)
            .lines()
            .filter(|l| !l.contains("warning:"))
            .map(str::to_string)
            .collect();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {errors:?}");
        assert_eq!(errors, [format!("vmm-reference: {want}")], "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

/// The `/proc/self/numa_maps` line of a memfd backend, by its id (the kernel shows the
/// memfd as `file=/memfd:NAME\040(deleted)`).
fn numa_maps_line(backend: &str) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/numa_maps").unwrap();
    let name = format!("file=/memfd:guest-memory:{backend}");
    let deleted = format!("{name}\\040(deleted)");
    maps.lines()
        .find(|l| l.split_whitespace().any(|w| w == name || w == deleted))
        .map(str::to_string)
}

#[test]
fn kvm_probe_numa_memfd_backend_is_bound_while_the_probe_runs() {
    vmm_reference::testing::require_kvm();
    let mut config = VmmConfig::new(parse_smp("2,sockets=2").unwrap());
    config.memory = 128 << 20;
    config.probe_mut().unwrap().mode = ProbeMode::Spin { iterations: 0 };
    config.objects = vec![
        parse_memory_backend(
            "memory-backend-memfd,id=probe-numa-bound,size=64M,host-nodes=0,policy=bind",
        )
        .unwrap(),
        parse_memory_backend("memory-backend-memfd,id=probe-numa-free,size=64M").unwrap(),
    ];
    config.numa = NumaConfig::parse([
        "node,nodeid=0,cpus=0,memdev=probe-numa-bound",
        "node,nodeid=1,cpus=1,memdev=probe-numa-free",
    ])
    .unwrap();
    let mut vm = Vmm::new(config).unwrap();
    let nodes: Vec<(Vec<u32>, u64)> = vm
        .numa()
        .unwrap()
        .nodes()
        .iter()
        .map(|n| (n.cpus.iter().map(|c| c.0).collect(), n.size))
        .collect();
    assert_eq!(nodes, [(vec![0], 64 << 20), (vec![1], 64 << 20)]);
    vm.start().unwrap();
    // Wait until both vCPUs spin in the guest, then look at the host mappings.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while [0, 1]
        .iter()
        .any(|&i| vm.progress(cpu_topology::VcpuIndex(i)).unwrap() == 0)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the probe did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let bound = numa_maps_line("probe-numa-bound");
    let free = numa_maps_line("probe-numa-free");
    vm.stop().unwrap();
    vm.exit();
    let bound = bound.expect("node 0's memfd is mapped");
    assert_eq!(bound.split_whitespace().nth(1), Some("bind:0"), "{bound}");
    let free = free.expect("node 1's memfd is mapped");
    assert_eq!(free.split_whitespace().nth(1), Some("default"), "{free}");
}

/// A vCPU hot-plugged into a slot reads the slot's node from its own CPUID (node 0 in
/// socket 1, where one node per die would say 1).
#[test]
fn kvm_probe_numa_hotplugged_vcpu_reads_its_slot_node() {
    use std::time::Duration;
    use vcpu_lifecycle::VcpuEvent;

    vmm_reference::testing::require_kvm();
    let mut config = VmmConfig::new(parse_smp("2,maxcpus=4,sockets=2,cores=2").unwrap());
    config.cpu = cpuid_model::spec::parse("EPYC").unwrap();
    config.numa = NumaConfig::parse([
        "node,nodeid=0,cpus=0,cpus=3,mem=64M",
        "node,nodeid=1,cpus=1-2,mem=64M",
    ])
    .unwrap();
    let mut vm = Vmm::new(config).unwrap();
    let halted = |vm: &Vmm, want: u32| {
        let mut seen = 0;
        while seen < want {
            match vm.next_event(Duration::from_secs(30)) {
                Some(VcpuEvent::Halted { .. }) => seen += 1,
                other => panic!("waiting for {want} halted vCPUs: {other:?}"),
            }
        }
    };
    vm.start().unwrap();
    halted(&vm, 2);
    let slot = vm.position(cpu_topology::VcpuIndex(3)).unwrap();
    let index = vm.add_vcpu(slot, "cpu3").unwrap();
    halted(&vm, 1);
    let node_of = |vm: &Vmm, i: u32| {
        vm.take_report(cpu_topology::VcpuIndex(i))
            .and_then(|r| r.get(0x8000_001e, 0).map(|e| e.ecx))
            .expect("a report with leaf 0x8000001e")
    };
    let (boot, plugged) = (node_of(&vm, 1), node_of(&vm, index.0));
    vm.stop().unwrap();
    vm.exit();
    // Two nodes in each socket: ECX[10:8] = 1.
    assert_eq!((boot, plugged), (0x101, 0x100));
}

//! Runs the probe guest on real KVM through kvm-ioctls. Every test here needs
//! /dev/kvm and fails (never skips) when it cannot be opened.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use cpu_topology::VcpuIndex;
use kvm_bindings::{
    kvm_mp_state, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES, KVM_MP_STATE_RUNNABLE,
};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use probe_guest::{Doorbell, ProbeGuest, ProbeLayout, ProbeMode, ProbeReport};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

const RAM: usize = 64 << 20;
const WATCHDOG: Duration = Duration::from_secs(60);

/// How one vCPU's run ended.
#[derive(Debug)]
enum Outcome {
    /// The guest rang Done at privilege level `cpl`; `report` is set when it
    /// rang Report before.
    Done {
        report: Option<ProbeReport>,
        cpl: u16,
        pings: u64,
    },
    /// KVM_EXIT_SHUTDOWN.
    Shutdown,
    /// KVM_EXIT_INTERNAL_ERROR with its suberror and RIP.
    InternalError { suberror: u32, rip: u64 },
    /// Anything else, described (read through Debug in assertion messages).
    #[allow(dead_code)]
    Unexpected(String),
}

struct TestVm {
    _kvm: Kvm,
    _vm: VmFd,
    mem: Arc<GuestMemoryMmap>,
    probe: ProbeGuest,
    vcpus: Vec<VcpuFd>,
}

fn open_kvm() -> Kvm {
    Kvm::new().unwrap_or_else(|e| {
        panic!("this test needs KVM: opening /dev/kvm failed: {e} (check that /dev/kvm exists and is accessible)")
    })
}

/// Registers all of `mem` as slot 0.
fn map_memory(vm: &VmFd, mem: &GuestMemoryMmap) {
    let host = mem.get_host_address(GuestAddress(0)).unwrap();
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: RAM as u64,
        userspace_addr: host as u64,
    };
    // SAFETY: `host` is the start of one mmap of RAM bytes owned by `mem`, which
    // the returned TestVm keeps alive for at least as long as the VM fd.
    unsafe { vm.set_user_memory_region(region) }.unwrap();
}

/// Reads the internal-error suberror from the vCPU's kvm_run.
fn internal_error_suberror(vcpu: &mut VcpuFd) -> u32 {
    let run = vcpu.get_kvm_run();
    // SAFETY: called right after KVM_RUN returned KVM_EXIT_INTERNAL_ERROR,
    // for which `internal` is the active member of the exit union.
    unsafe { run.__bindgen_anon_1.internal.suberror }
}

fn setup(mode: ProbeMode, vcpus: u32, queries: &[(u32, u32)]) -> TestVm {
    let kvm = open_kvm();
    let vm = kvm.create_vm().unwrap();
    let mem = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM)]).unwrap());
    map_memory(&vm, &mem);
    vm.create_irq_chip().unwrap();
    let layout = ProbeLayout::new(vcpus, RAM as u64).unwrap();
    let probe = ProbeGuest::new(mode, layout);
    probe.load(mem.as_ref(), queries, vcpus).unwrap();
    let supported = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).unwrap();
    let mut fds = Vec::new();
    for id in 0..vcpus {
        let vcpu = vm.create_vcpu(u64::from(id)).unwrap();
        let mut cpuid = supported.clone();
        for e in cpuid.as_mut_slice() {
            match e.function {
                1 => e.ebx = (e.ebx & 0x00ff_ffff) | (id << 24),
                0xb => e.edx = id,
                _ => {}
            }
        }
        vcpu.set_cpuid2(&cpuid).unwrap();
        let sregs = probe.vcpu_sregs(&vcpu.get_sregs().unwrap());
        vcpu.set_sregs(&sregs).unwrap();
        vcpu.set_regs(&probe.vcpu_regs(VcpuIndex(id)).unwrap())
            .unwrap();
        vcpu.set_mp_state(kvm_mp_state {
            mp_state: KVM_MP_STATE_RUNNABLE,
        })
        .unwrap();
        fds.push(vcpu);
    }
    TestVm {
        _kvm: kvm,
        _vm: vm,
        mem,
        probe,
        vcpus: fds,
    }
}

/// Runs one vCPU until Done or a stop. Never enters the vCPU after Done: with
/// the in-kernel irqchip its `hlt` would block inside KVM_RUN.
fn run_vcpu(
    mut vcpu: VcpuFd,
    index: VcpuIndex,
    probe: ProbeGuest,
    mem: &GuestMemoryMmap,
) -> Outcome {
    let mut report = None;
    let mut pings = 0u64;
    loop {
        let doorbell = match vcpu.run() {
            Ok(VcpuExit::IoOut(port, data)) => match Doorbell::from_port_write(port, data) {
                Some(d) => d,
                None => return Outcome::Unexpected(format!("port write {port:#x} {data:x?}")),
            },
            Ok(VcpuExit::Shutdown) => return Outcome::Shutdown,
            Ok(VcpuExit::InternalError) => {
                let suberror = internal_error_suberror(&mut vcpu);
                let rip = vcpu.get_regs().map(|r| r.rip).unwrap_or(u64::MAX);
                return Outcome::InternalError { suberror, rip };
            }
            Ok(other) => return Outcome::Unexpected(format!("{other:?}")),
            Err(e) => return Outcome::Unexpected(format!("KVM_RUN failed: {e}")),
        };
        match doorbell {
            Doorbell::Report => match probe.read_report(mem, index) {
                Ok(r) => report = Some(r),
                Err(e) => return Outcome::Unexpected(format!("bad report: {e}")),
            },
            Doorbell::Done => {
                let cpl = vcpu
                    .get_sregs()
                    .map(|s| s.cs.selector & 3)
                    .unwrap_or(u16::MAX);
                return Outcome::Done { report, cpl, pings };
            }
            Doorbell::Ping => pings += 1,
        }
    }
}

/// Runs every vCPU on its own thread; fails the test when one is not done
/// within the watchdog time.
fn run_all(vm: TestVm) -> (Vec<Outcome>, Arc<GuestMemoryMmap>, ProbeGuest) {
    let (tx, rx) = mpsc::channel();
    let n = vm.vcpus.len();
    for (i, vcpu) in vm.vcpus.into_iter().enumerate() {
        let tx = tx.clone();
        let mem = Arc::clone(&vm.mem);
        let probe = vm.probe;
        thread::Builder::new()
            .name(format!("vcpu {i}"))
            .spawn(move || {
                let out = run_vcpu(vcpu, VcpuIndex(i as u32), probe, &mem);
                let _ = tx.send((i, out));
            })
            .unwrap();
    }
    let mut outcomes: Vec<Option<Outcome>> = (0..n).map(|_| None).collect();
    let deadline = Instant::now() + WATCHDOG;
    for _ in 0..n {
        let left = deadline.saturating_duration_since(Instant::now());
        let (i, out) = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("vCPUs not done after {WATCHDOG:?}"));
        outcomes[i] = Some(out);
    }
    (
        outcomes.into_iter().map(Option::unwrap).collect(),
        vm.mem,
        vm.probe,
    )
}

fn host_vendor() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("vendor_id"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap()
        .trim()
        .to_string()
}

fn vendor_of(report: &ProbeReport) -> String {
    let leaf0 = report.get(0, 0).expect("leaf 0 reported");
    [leaf0.ebx, leaf0.edx, leaf0.ecx]
        .iter()
        .flat_map(|r| r.to_le_bytes())
        .map(char::from)
        .collect()
}

const QUERIES: &[(u32, u32)] = &[
    (0, 0),
    (1, 0),
    (0xb, 0),
    (0xb, 1),
    (0x8000_0000, 0),
    (0x8000_0001, 0),
];

fn check_reports(vcpus: u32) {
    let vm = setup(ProbeMode::Report, vcpus, QUERIES);
    let (outcomes, mem, probe) = run_all(vm);
    let vendor = host_vendor();
    for (i, out) in outcomes.into_iter().enumerate() {
        let report = match out {
            Outcome::Done {
                report: Some(r),
                cpl: 0,
                pings: 0,
            } => r,
            other => panic!("vCPU {i}: expected a report then Done, got {other:?}"),
        };
        assert_eq!(report.entries.len(), QUERIES.len(), "vCPU {i}");
        assert_eq!(vendor_of(&report), vendor, "vCPU {i}");
        assert_eq!(
            report.get(1, 0).unwrap().ebx >> 24,
            i as u32,
            "vCPU {i} leaf 1 APIC id"
        );
        // Leaf 1 EDX bit 0 (FPU) is set on every x86-64 CPU.
        assert_eq!(report.get(1, 0).unwrap().edx & 1, 1);
        assert_eq!(
            probe
                .echoed_index(mem.as_ref(), VcpuIndex(i as u32))
                .unwrap(),
            i as u32
        );
        let max_basic = report.get(0, 0).unwrap().eax;
        if max_basic >= 0xb {
            assert_eq!(
                report.get(0xb, 0).unwrap().edx,
                i as u32,
                "vCPU {i} leaf 0xb x2APIC id"
            );
        }
        println!(
            "vCPU {i}: {} leaves, vendor {vendor}, max basic leaf {max_basic:#x}",
            report.entries.len()
        );
    }
}

#[test]
fn kvm_report_one_vcpu() {
    check_reports(1);
}

#[test]
fn kvm_report_four_vcpus() {
    check_reports(4);
}

#[test]
fn kvm_report_64_vcpus() {
    check_reports(64);
}

#[test]
fn kvm_spin_1000_iterations_at_cpl3() {
    let vm = setup(ProbeMode::Spin { iterations: 1000 }, 1, &[]);
    let (outcomes, mem, probe) = run_all(vm);
    assert!(
        matches!(
            outcomes[0],
            Outcome::Done {
                report: None,
                cpl: 3,
                ..
            }
        ),
        "{:?}",
        outcomes[0]
    );
    assert_eq!(probe.progress(mem.as_ref(), VcpuIndex(0)).unwrap(), 1000);
}

#[test]
fn kvm_exits_mode_rings_one_ping_per_exit_at_cpl3() {
    let vm = setup(ProbeMode::Exits { count: 250 }, 1, &[]);
    let (outcomes, mem, probe) = run_all(vm);
    assert!(
        matches!(
            outcomes[0],
            Outcome::Done {
                report: None,
                cpl: 3,
                pings: 250
            }
        ),
        "{:?}",
        outcomes[0]
    );
    assert_eq!(probe.progress(mem.as_ref(), VcpuIndex(0)).unwrap(), 250);
}

#[test]
fn kvm_spin_10m_iterations_timing() {
    let iterations = 10_000_000;
    let vm = setup(ProbeMode::Spin { iterations }, 1, &[]);
    let start = Instant::now();
    let (outcomes, mem, probe) = run_all(vm);
    let took = start.elapsed();
    assert!(
        matches!(
            outcomes[0],
            Outcome::Done {
                report: None,
                cpl: 3,
                ..
            }
        ),
        "{:?}",
        outcomes[0]
    );
    assert_eq!(
        probe.progress(mem.as_ref(), VcpuIndex(0)).unwrap(),
        iterations
    );
    println!(
        "spin: {iterations} iterations in {took:?} ({:.2} ns/iteration)",
        took.as_nanos() as f64 / iterations as f64
    );
}

fn check_barrier(vcpus: u32, rounds: u64, work: u64) {
    let vm = setup(ProbeMode::Barrier { rounds, work }, vcpus, &[]);
    let start = Instant::now();
    let (outcomes, mem, probe) = run_all(vm);
    for (i, out) in outcomes.iter().enumerate() {
        assert!(
            matches!(
                out,
                Outcome::Done {
                    report: None,
                    cpl: 3,
                    ..
                }
            ),
            "vCPU {i}: {out:?}"
        );
        assert_eq!(
            probe.progress(mem.as_ref(), VcpuIndex(i as u32)).unwrap(),
            rounds,
            "vCPU {i}"
        );
    }
    println!(
        "barrier: {vcpus} vCPUs, {rounds} rounds of {work} work in {:?}",
        start.elapsed()
    );
}

#[test]
fn kvm_barrier_two_vcpus() {
    check_barrier(2, 200, 1000);
}

#[test]
fn kvm_barrier_four_vcpus() {
    check_barrier(4, 50, 1000);
}

#[test]
fn kvm_triple_fault() {
    let vm = setup(ProbeMode::TripleFault, 1, &[]);
    let (outcomes, _, _) = run_all(vm);
    assert!(
        matches!(outcomes[0], Outcome::Shutdown),
        "{:?}",
        outcomes[0]
    );
}

#[test]
fn kvm_bad_fetch() {
    let vm = setup(ProbeMode::BadFetch, 1, &[]);
    let (outcomes, _, _) = run_all(vm);
    println!("bad fetch: {:?}", outcomes[0]);
    match outcomes[0] {
        Outcome::InternalError { suberror, rip } => {
            assert_eq!(suberror, kvm_bindings::KVM_INTERNAL_ERROR_EMULATION);
            assert_eq!(rip, probe_guest::abi::BAD_FETCH_GPA);
        }
        ref other => panic!("expected KVM_EXIT_INTERNAL_ERROR, got {other:?}"),
    }
}

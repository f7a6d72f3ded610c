//! Real domain definitions: the seed material's examples, the element forms libvirt's
//! documentation describes, a `virsh dumpxml`-style file full of devices, and broken files.
//! Each is checked for what it carries, the command line it becomes (every option value
//! parsed by the grammar the binary uses), and the XML it writes back.

use std::path::Path;

use cpu_topology::HostCpuSet;
use guest_memory::numa::{NumaConfig, NumaMachine, UnassignedCpus};
use libvirt_domain::config::{CpuMode, Fallback, FeaturePolicy, MemAccess, SerialBackend};
use libvirt_domain::{check_host, parse_domain, to_native, to_xml, DomainConfig, NativeOptions};

fn read(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load(name: &str) -> DomainConfig {
    parse_domain(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Checks every value of the command line with the grammar `vmm-reference` parses it
/// with, and the NUMA options as a whole, as the binary resolves them.
fn check_native_args(d: &DomainConfig) -> Vec<String> {
    let cmd = to_native(d, &NativeOptions::default());
    let args = cmd.args.clone();
    assert_eq!(args.len() % 2, 0, "{args:?}");
    let mut numa = Vec::new();
    let mut backends = Vec::new();
    let mut smp = None;
    let mut ram = 0;
    for pair in args.chunks(2) {
        let (option, value) = (pair[0].as_str(), pair[1].as_str());
        match option {
            "--smp" => smp = Some(cpu_topology::smp::parse_smp(value).expect(value)),
            "-m" => ram = guest_memory::parse_size(value).expect(value),
            "--cpu" => {
                cpuid_model::spec::parse(value).expect(value);
            }
            "--numa" => numa.push(value.to_string()),
            "--object" => {
                backends.push(guest_memory::backend::parse_memory_backend(value).expect(value))
            }
            "--vcpupin" => {
                vcpu_placement::VcpuPin::parse(value).expect(value);
            }
            "--cpuset" | "--emulatorpin" => {
                vcpu_placement::CpuSpec::parse(value).expect(value);
            }
            "--name" | "--kernel" | "--initrd" | "--append" | "--serial" => {}
            other => panic!("unexpected option {other} in {args:?}"),
        }
    }
    let smp = smp.expect("--smp is always given");
    assert_eq!(ram, d.memory_kib * 1024);
    if !numa.is_empty() {
        let config = NumaConfig::parse(numa.iter().map(String::as_str)).expect("--numa");
        let topology = config
            .resolve(&NumaMachine {
                ram_size: ram,
                max_cpus: smp.max_cpus(),
                cpus_per_socket: smp.threads_per_socket(),
                backends: &backends,
                unassigned: UnassignedCpus::Reject,
            })
            .unwrap_or_else(|e| panic!("{numa:?}: {e}"));
        assert_eq!(topology.nodes().len(), d.numa_cells().len().max(1));
    }
    args
}

/// XML -> config -> XML -> config gives the same configuration (ignored parts aside).
fn round_trip(d: &DomainConfig) {
    let again = parse_domain(&to_xml(d)).unwrap_or_else(|e| panic!("{e}\n{}", to_xml(d)));
    assert!(again.ignored.is_empty(), "{:?}", again.ignored);
    assert_eq!(
        again,
        DomainConfig {
            ignored: Vec::new(),
            ..d.clone()
        }
    );
}

#[test]
fn seed_custom_westmere_with_pins_topology_and_cells() {
    let d = load("seed_westmere.xml");
    let cpu = d.cpu.as_ref().unwrap();
    assert_eq!(cpu.mode, CpuMode::Custom);
    let model = cpu.model.as_ref().unwrap();
    assert_eq!(
        (model.name.as_str(), model.fallback),
        ("Westmere", Some(Fallback::Allow))
    );
    assert_eq!(d.vcpu.cpuset.as_ref().unwrap().to_cpu_list(), "0-1");
    assert_eq!(d.cputune.vcpupin.len(), 2);
    assert_eq!(
        d.uuid.as_deref(),
        Some("c7a5fdbd-cdaf-9455-926a-d65c16db1809")
    );
    assert_eq!(
        check_native_args(&d).join(" "),
        "--name seed-westmere -m 1024M --smp 4,sockets=2,cores=2,threads=1 --cpu Westmere,-aes \
         --object memory-backend-ram,id=ram-node0,size=512M --numa node,nodeid=0,cpus=0-1,memdev=ram-node0 \
         --object memory-backend-ram,id=ram-node1,size=512M --numa node,nodeid=1,cpus=2-3,memdev=ram-node1 \
         --cpuset 0-1 --vcpupin 0:0 --vcpupin 1:1 --emulatorpin 0-1"
    );
    assert_eq!(d.ignored, []);
    round_trip(&d);
}

#[test]
fn seed_host_passthrough_with_a_caret_cpuset() {
    let d = load("seed_host_passthrough.xml");
    assert_eq!(d.cpu.as_ref().unwrap().mode, CpuMode::HostPassthrough);
    assert_eq!(d.vcpu.cpuset.as_ref().unwrap().to_cpu_list(), "1-2,4,6");
    assert_eq!(
        check_native_args(&d).join(" "),
        "--name seed-passthrough -m 512M --smp 2 --cpu host --cpuset 1-2,4,6 --vcpupin 0:1 --vcpupin 1:2"
    );
    check_host(&d, &HostCpuSet::first_n(7)).unwrap();
    let e = check_host(&d, &HostCpuSet::first_n(4)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "<vcpu> cpuset: host CPU(s) 4,6 are not online on this host (online: 0-3)"
    );
    round_trip(&d);
}

#[test]
fn custom_model_with_fallback_forbid_vendor_and_every_policy() {
    let d = load("doc_custom_fallback.xml");
    let cpu = d.cpu.as_ref().unwrap();
    let policies: Vec<FeaturePolicy> = cpu.features.iter().map(|f| f.policy).collect();
    use FeaturePolicy::*;
    assert_eq!(policies, [Force, Require, Optional, Disable, Forbid]);
    assert_eq!(cpu.vendor.as_deref(), Some("Intel"));
    assert_eq!((d.memory_kib, d.current_memory_kib), (2 << 20, 1 << 20));
    let cmd = to_native(&d, &NativeOptions::default());
    // The vendor becomes QEMU's vendor= property, which --cpu takes.
    assert_eq!(
        check_native_args(&d).join(" "),
        "--name custom-fallback -m 2048M --smp 2,sockets=1,cores=2,threads=1 \
         --cpu SandyBridge,+x2apic,+pdpe1gb,-lahf_lm,-avx,vendor=GenuineIntel,enforce"
    );
    let notes = cmd.notes.join("\n");
    for want in [
        "<currentMemory> 1024 MiB: no balloon, the guest gets all 2048 MiB",
        "policy='optional' name='vmx'",
        "policy='forbid' name='avx'",
        "machine='pc-q35-7.2'",
    ] {
        assert!(notes.contains(want), "{want} not in\n{notes}");
    }
    assert!(!notes.contains("vendor"), "{notes}");
    // For a binary whose --cpu predates the properties, they are notes instead.
    let without = to_native(
        &d,
        &NativeOptions {
            cpu_properties: false,
        },
    );
    assert!(without
        .args
        .contains(&"SandyBridge,+x2apic,+pdpe1gb,-lahf_lm,-avx,enforce".to_string()));
    assert!(without
        .notes
        .join("\n")
        .contains("<cpu><vendor>: needs --cpu ...,vendor=GenuineIntel"));
    round_trip(&d);
}

#[test]
fn host_passthrough_with_topology_and_fewer_present_vcpus() {
    let d = load("doc_host_passthrough_topology.xml");
    assert_eq!((d.vcpu.count, d.vcpu.present()), (8, 4));
    assert_eq!(d.memory_kib, 2 << 20);
    assert_eq!(
        check_native_args(&d).join(" "),
        "--name passthrough-topology -m 2048M --smp 4,maxcpus=8,sockets=1,cores=4,threads=2 \
         --cpu host,check=off"
    );
    round_trip(&d);
}

#[test]
fn cputune_pins_emulatorpin_and_unsupported_cgroup_knobs() {
    let d = load("doc_cputune.xml");
    let pins: Vec<(u32, String)> = d
        .cputune
        .vcpupin
        .iter()
        .map(|p| (p.vcpu, p.cpuset.to_cpu_list()))
        .collect();
    assert_eq!(
        pins,
        [
            (0, "1,3-4".into()),
            (1, "0-1".into()),
            (2, "2-3".into()),
            (3, "0,4".into())
        ]
    );
    assert_eq!(
        (d.cputune.shares, d.cputune.period, d.cputune.quota),
        (Some(2048), Some(1_000_000), Some(-1))
    );
    assert_eq!(
        d.cputune.vcpusched[0].vcpus.as_ref().unwrap().to_cpu_list(),
        "0-1,3"
    );
    assert_eq!(
        check_native_args(&d).join(" "),
        "--name cputune -m 256M --smp 4 --cpuset 0-7 --vcpupin 0:1,3-4 --vcpupin 1:0-1 \
         --vcpupin 2:2-3 --vcpupin 3:0,4 --emulatorpin 1-3"
    );
    let notes = to_native(&d, &NativeOptions::default()).notes;
    assert_eq!(
        notes
            .iter()
            .filter(|n| n.contains("not supported by this VMM"))
            .count(),
        4,
        "{notes:?}"
    );
    round_trip(&d);
}

#[test]
fn numa_cells_with_distances_rounding_and_memory_policies() {
    let d = load("doc_numa_distances.xml");
    let cells = d.numa_cells();
    assert_eq!(cells.len(), 4);
    // 1000000 KiB is not a whole MiB: libvirt rounds each cell up to 977 MiB.
    assert!(cells.iter().all(|c| c.memory_kib == 977 * 1024));
    assert_eq!(d.memory_kib, 4 * 977 * 1024);
    assert_eq!(cells[1].mem_access, Some(MemAccess::Shared));
    assert_eq!(cells[0].distances, [(0, 10), (1, 21), (2, 31), (3, 41)]);
    let args = check_native_args(&d).join(" ");
    for want in [
        "-m 3908M --smp 8,sockets=4,cores=2,threads=1 --cpu max",
        "--object memory-backend-ram,id=ram-node0,size=977M,host-nodes=0,policy=bind",
        "--object memory-backend-ram,id=ram-node1,size=977M,share=on,host-nodes=0,policy=preferred",
        "--object memory-backend-ram,id=ram-node3,size=977M,host-nodes=0,policy=interleave",
        "--numa node,nodeid=2,cpus=4-5,memdev=ram-node2",
        "--numa dist,src=0,dst=3,val=41",
        "--numa dist,src=3,dst=2,val=21",
    ] {
        assert!(args.contains(want), "{want} not in {args}");
    }
    round_trip(&d);
}

#[test]
fn cells_without_ids_in_mixed_units_set_the_memory() {
    let d = load("doc_memory_units.xml");
    let cells = d.numa_cells();
    let ids: Vec<u32> = cells.iter().map(|c| c.id).collect();
    assert_eq!(ids, [0, 1, 2]);
    // 500 MB = 488281.25 KiB -> 488282 KiB -> 477 MiB.
    let sizes: Vec<u64> = cells.iter().map(|c| c.memory_kib / 1024).collect();
    assert_eq!(sizes, [1024, 512, 477]);
    assert_eq!(d.memory_kib, (1024 + 512 + 477) * 1024);
    assert_eq!(d.current_memory_kib, 1536 * 1024);
    assert_eq!(d.domain_type, "qemu");
    let args = check_native_args(&d).join(" ");
    assert!(
        args.starts_with("--name memory-units -m 2013M --smp 3 --object"),
        "{args}"
    );
    round_trip(&d);
}

#[test]
fn devices_and_other_unimplemented_parts_are_named_once() {
    let d = load("devices_ignored.xml");
    assert_eq!(
        d.uuid.as_deref(),
        Some("4dea22b3-1d52-d8f3-2516-782e98ab3fa0")
    );
    assert_eq!(
        d.os.kernel.as_deref(),
        Some("/var/lib/libvirt/boot/vmlinuz")
    );
    assert_eq!(d.features.kvm_hidden, Some(true));
    assert_eq!(d.serial.as_ref().unwrap().backend, SerialBackend::Pty);
    assert_eq!(
        d.ignored_warning().unwrap(),
        "domain 'web-01': not implemented, ignored: title, metadata, resource, os/boot, \
         features/apic@eoi, features/vmport, clock, on_poweroff, on_reboot, on_crash, \
         devices/emulator, devices/disk (x2), devices/controller, devices/interface, \
         devices/serial/target/model, devices/graphics, devices/video, devices/memballoon"
    );
    let cmd = to_native(&d, &NativeOptions::default());
    assert_eq!(
        check_native_args(&d).join(" "),
        "--name web-01 -m 1024M --smp 2 --cpu host,kvm=off --kernel /var/lib/libvirt/boot/vmlinuz \
         --initrd /var/lib/libvirt/boot/initrd.img --append console=ttyS0 root=/dev/vda1 --serial stdio"
    );
    assert!(cmd
        .to_shell("vmm-reference")
        .contains("--append 'console=ttyS0 root=/dev/vda1'"));
    let notes = cmd.notes.join("\n");
    assert!(notes.contains("host-model"), "{notes}");
    // <kvm><hidden state='on'/> is QEMU's kvm=off, in --cpu; not a note.
    assert!(!notes.contains("kvm=off"), "{notes}");
    round_trip(&d);
}

#[test]
fn broken_files_name_the_element_and_attribute() {
    let rows: &[(&str, &str)] = &[
        ("bad_xml.xml", "domain XML does not parse: "),
        ("unknown_unit.xml", "<memory> unit='MiBs': unknown unit"),
        (
            "vcpupin_no_such_vcpu.xml",
            "<cputune/vcpupin> vcpu: vCPU 2 does not exist (the domain has 2 vCPUs, 0-1)",
        ),
        ("cpuset_syntax.xml", "<vcpu> cpuset='1-4,^': "),
        (
            "topology_mismatch.xml",
            "<cpu/topology>: sockets*dies*clusters*cores*threads = 6 does not match the <vcpu> count 4",
        ),
    ];
    for (file, want) in rows {
        let e = parse_domain(&read(&format!("broken/{file}")))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(want), "{file}: {e}");
        assert_eq!(e.lines().count(), 1, "{file}: {e}");
    }
    let d = load("broken/cpuset_beyond_host.xml");
    assert_eq!(
        check_host(&d, &HostCpuSet::first_n(2))
            .unwrap_err()
            .to_string(),
        "<vcpu> cpuset: host CPU(s) 4095 are not online on this host (online: 0-1)"
    );
}

#[test]
fn vendor_kvm_hidden_and_migratable_become_cpu_properties() {
    let domain = |cpu: &str| {
        parse_domain(&format!(
            "<domain type='kvm'><name>p</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>\
             {cpu}<features><kvm><hidden state='on'/></kvm></features></domain>"
        ))
        .unwrap()
    };
    let rows = [
        (
            "<cpu mode='host-passthrough' migratable='off'/>",
            "host,kvm=off,migratable=off",
            None,
        ),
        (
            "<cpu mode='maximum' migratable='on'/>",
            "max,kvm=off",
            None,
        ),
        (
            "<cpu mode='custom'><model>EPYC</model><vendor>Hygon</vendor></cpu>",
            "EPYC,vendor=HygonGenuine,kvm=off",
            None,
        ),
        (
            "<cpu mode='custom'><model>Haswell</model><vendor>Zhaoxin</vendor></cpu>",
            "Haswell,kvm=off",
            Some("<cpu><vendor>Zhaoxin</vendor>: this VMM lays out CPUID for Intel, AMD and Hygon only"),
        ),
        (
            "<cpu mode='custom' migratable='off'><model>Haswell</model></cpu>",
            "Haswell,kvm=off",
            Some("<cpu migratable='off'>: applies to host-passthrough and maximum only"),
        ),
        ("", "qemu64,kvm=off", None),
    ];
    for (cpu, want, note) in rows {
        let d = domain(cpu);
        let args = check_native_args(&d);
        let at = args.iter().position(|a| a == "--cpu").expect(cpu);
        assert_eq!(args[at + 1], want, "{cpu}");
        let notes = to_native(&d, &NativeOptions::default()).notes.join("\n");
        match note {
            Some(n) => assert!(notes.contains(n), "{cpu}: {notes}"),
            None => assert!(!notes.contains("--cpu"), "{cpu}: {notes}"),
        }
    }
}

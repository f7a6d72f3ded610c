//! HMP commands and the virsh-style verbs, exact text, against [`FakeBackend`].

use serde_json::{json, Value};

use super::{j, rig};
use crate::*;

#[test]
fn hmp_info_commands() {
    let mut r = rig(FakeBackend::new(2, 1, 1, 2).with_numa(2));
    assert_eq!(
        r.hmp("info cpus"),
        "* CPU #0: thread_id=1000\n  CPU #1: thread_id=1001 (halted)\n"
    );
    assert_eq!(r.hmp("info kvm"), "kvm support: enabled\n");
    assert_eq!(r.hmp("info status"), "VM status: running\n");
    assert_eq!(
        r.hmp("info numa"),
        "2 nodes\nnode 0 cpus: 0\nnode 0 size: 128 MB\nnode 0 plugged: 0 MB\n\
         node 1 cpus: 1\nnode 1 size: 128 MB\nnode 1 plugged: 0 MB\n"
    );
    let regs = r.hmp("info registers");
    assert!(
        regs.contains("RIP=0000000000100000 RFL=00000002 [-------] CPL=0 HLT=0\n"),
        "{regs}"
    );
    let all = r.hmp("info registers -a");
    assert!(all.starts_with("\nCPU#0\nRAX="), "{all}");
    assert!(
        all.contains("\nCPU#1\n") && all.contains("RIP=0000000000100001"),
        "{all}"
    );
    assert_eq!(r.hmp("info bogus"), "unknown command: 'info bogus'\n");
    assert!(r.hmp("info").starts_with("info cpus -- "));
    assert_eq!(
        r.hmp("info registers 3"),
        "Error: invalid arguments for 'info registers' (expected nothing or -a)\n"
    );
    assert_eq!(r.hmp("foo bar"), "unknown command: 'foo'\n");
    assert_eq!(r.hmp(""), "");
    assert!(r.hmp("help").contains("info cpus -- show the vCPUs"));
}

#[test]
fn hmp_memory_and_translation() {
    let mut r = rig(FakeBackend::new(1, 1, 1, 1));
    assert_eq!(r.hmp("gva2gpa 0x1000"), "gpa: 0x1000\n");
    assert_eq!(r.hmp("gva2gpa 0x100000000"), "Unmapped\n");
    assert_eq!(r.hmp("gva2gpa zz"), "Error: invalid address 'zz'\n");
    assert_eq!(
        r.hmp("xp /4xb 0x100"),
        "0000000000000100: 0x00 0x01 0x02 0x03\n"
    );
    assert_eq!(r.hmp("xp 0x10"), "0000000000000010: 0x13121110\n");
    assert_eq!(
        r.hmp("xp /2xg 0x1000000"),
        "Error: cannot access guest memory at 0x1000000\n"
    );
    assert_eq!(
        r.hmp("xp /100000xg 0"),
        "Error: xp: at most 65536 bytes per dump\n"
    );
    assert_eq!(r.hmp("xp /4q 0"), "Error: invalid char in format: 'q'\n");
}

#[test]
fn hmp_control_and_pinning() {
    let mut r = rig(FakeBackend::new(1, 4, 1, 2));
    assert_eq!(r.hmp("stop"), "");
    assert_eq!(r.hmp("info status"), "VM status: paused\n");
    assert_eq!(r.hmp("cont"), "");
    assert_eq!(
        r.events(),
        vec![j(r#"{"event": "STOP"}"#), j(r#"{"event": "RESUME"}"#)]
    );
    assert_eq!(r.hmp("cpu-add 3"), "");
    assert_eq!(r.hmp("cpu-add 3"), "Error: CPU 3 is already present\n");
    assert_eq!(r.hmp("cpu-add 9"), "Error: Invalid CPU index 9\n");
    assert_eq!(r.hmp("cpu-add x"), "Error: 'x' is not a valid number\n");
    assert_eq!(r.hmp("cpu-add"), "Error: invalid arguments for 'cpu-add'\n");
    let cpus = r.one(r#"{"execute": "query-cpus-fast"}"#);
    assert_eq!(cpus["return"][2]["cpu-index"], json!(3));
    assert_eq!(r.hmp("vcpupin 1 2-3,^3"), "");
    assert_eq!(
        r.fake.pins(),
        vec![(cpu_topology::VcpuIndex(1), "2-3,^3".to_owned())]
    );
    assert_eq!(r.hmp("vcpupin 7 1"), "Error: CPU 7 does not exist\n");
    assert!(r
        .hmp("vcpuinfo")
        .starts_with("VCPU:           0\nCPU:            0\n"));
    assert_eq!(
        r.hmp("system_reset"),
        "Error: system_reset is not supported by this VMM\n"
    );
}

#[test]
fn hmp_quit_quits() {
    let mut r = rig(FakeBackend::new(1, 1, 1, 1));
    let replies = run_script(
        &r.monitor,
        &mut r.session,
        r#"{"execute": "human-monitor-command", "arguments": {"command-line": "quit"}}"#,
    );
    assert_eq!(replies, vec![j(r#"{"return": ""}"#)]);
    assert!(r.fake.quit_called());
}

#[test]
fn human_monitor_command_arguments() {
    let mut r = rig(FakeBackend::new(1, 1, 1, 1));
    assert_eq!(
        r.one(r#"{"execute": "human-monitor-command"}"#),
        j(r#"{"error": {"class": "GenericError", "desc": "Parameter 'command-line' is missing"}}"#)
    );
    assert_eq!(
        r.one(r#"{"execute": "human-monitor-command", "arguments": {"command-line": "info kvm", "cpu-index": 0}}"#),
        j(r#"{"return": "kvm support: enabled\n"}"#)
    );
    let req = |line: &str, cpu: u32| {
        json!({"execute": "human-monitor-command",
               "arguments": {"command-line": line, "cpu-index": cpu}})
        .to_string()
    };
    assert_eq!(
        r.one(&req("info cpus", 0))["return"],
        json!("* CPU #0: thread_id=1000\n")
    );
    assert_eq!(
        r.one(&req("gva2gpa 0x10", 5))["return"],
        json!("Error: CPU 5 does not exist\n")
    );
}

#[test]
fn hmp_cpu_index_selects_current_cpu() {
    let mut r = rig(FakeBackend::new(1, 2, 1, 2));
    let req = json!({"execute": "human-monitor-command",
                     "arguments": {"command-line": "info cpus", "cpu-index": 1}});
    assert_eq!(
        r.one(&req.to_string())["return"],
        json!("  CPU #0: thread_id=1000\n* CPU #1: thread_id=1001 (halted)\n")
    );
    let req = json!({"execute": "human-monitor-command",
                     "arguments": {"command-line": "info registers", "cpu-index": 1}});
    let text = r.one(&req.to_string())["return"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(text.contains("RIP=0000000000100001"), "{text}");
}

#[test]
fn query_name_uuid_target_machines_memory() {
    let mut r = rig(FakeBackend::new(2, 2, 1, 2).with_name("web1"));
    assert_eq!(
        r.one(r#"{"execute": "query-name"}"#),
        j(r#"{"return": {"name": "web1"}}"#)
    );
    assert_eq!(
        r.one(r#"{"execute": "query-uuid"}"#),
        j(r#"{"return": {"UUID": "00000000-0000-0000-0000-000000000000"}}"#)
    );
    assert_eq!(
        r.one(r#"{"execute": "query-target"}"#),
        j(r#"{"return": {"arch": "x86_64"}}"#)
    );
    assert_eq!(
        r.one(r#"{"execute": "query-machines"}"#),
        j(
            r#"{"return": [{"name": "pc", "is-default": true, "cpu-max": 1024,
              "hotpluggable-cpus": true, "numa-mem-supported": false, "deprecated": false,
              "default-cpu-type": "qemu64-x86_64-cpu", "default-ram-id": "pc.ram"}]}"#
        )
    );
    assert_eq!(
        r.one(r#"{"execute": "query-memory-size-summary"}"#),
        j(r#"{"return": {"base-memory": 16777216, "plugged-memory": 0}}"#)
    );
    assert_eq!(
        r.one(r#"{"execute": "query-target", "arguments": {"x": 1}}"#),
        j(r#"{"error": {"class": "GenericError", "desc": "Parameter 'x' is unexpected"}}"#)
    );
    // x86 QEMU has no baseline or comparison: libvirt computes those itself.
    assert_eq!(
        r.one(r#"{"execute": "query-cpu-model-baseline"}"#)["error"]["class"],
        "CommandNotFound"
    );
    let mut unnamed = rig(FakeBackend::new(1, 1, 1, 1));
    assert_eq!(
        unnamed.one(r#"{"execute": "query-name"}"#),
        j(r#"{"return": {}}"#)
    );
}

#[test]
fn cpu_model_queries() {
    let host = crate::cpu_models::tests::host_without(&["aes"]);
    let mut r = rig(FakeBackend::new(1, 1, 1, 1).with_host_cpuid(host));
    let defs = r.one(r#"{"execute": "query-cpu-definitions"}"#);
    let defs = defs["return"].as_array().unwrap();
    assert_eq!(defs.len(), cpuid_model::model::all().len());
    let westmere = defs.iter().find(|d| d["name"] == "Westmere").unwrap();
    assert_eq!(
        westmere,
        &j(
            r#"{"name": "Westmere", "typename": "Westmere-x86_64-cpu", "static": false,
              "migration-safe": true, "unavailable-features": ["aes"], "deprecated": false,
              "alias-of": "Westmere-v1"}"#
        )
    );
    let out = r.one(
        r#"{"execute": "query-cpu-model-expansion", "arguments": {"type": "full",
            "model": {"name": "Westmere", "props": {"sse4.2": false}}}}"#,
    );
    assert_eq!(out["return"]["model"]["name"], "Westmere");
    assert_eq!(out["return"]["model"]["props"]["sse4.2"], false);
    assert_eq!(out["return"]["model"]["props"]["aes"], true);
    assert_eq!(out["return"]["model"]["props"]["sse4.1"], true);
    let out = r.one(
        r#"{"execute": "query-cpu-model-expansion", "arguments": {"type": "static",
            "model": {"name": "qemu64"}}}"#,
    );
    assert_eq!(out["return"]["model"]["name"], "base");
    let rows: &[(&str, &str)] = &[
        (
            r#"{"type": "full", "model": {"name": "Pentium9"}}"#,
            "CPU model 'Pentium9' not found",
        ),
        (
            r#"{"type": "wide", "model": {"name": "qemu64"}}"#,
            "Parameter 'type' does not accept value 'wide'",
        ),
        (r#"{"type": "full"}"#, "Parameter 'model' is missing"),
        (
            r#"{"type": "full", "model": {"name": "qemu64", "props": {"warp": true}}}"#,
            "Property 'qemu64-x86_64-cpu.warp' not found",
        ),
        (
            r#"{"type": "full", "model": {"name": "qemu64", "props": {"aes": 1}}}"#,
            "Invalid parameter type for 'aes', expected: boolean",
        ),
    ];
    for (args, desc) in rows {
        let req = format!(r#"{{"execute": "query-cpu-model-expansion", "arguments": {args}}}"#);
        assert_eq!(r.one(&req)["error"]["desc"], *desc, "{args}");
    }
    // A backend that cannot read the host's CPUID says so.
    let mut plain = rig(FakeBackend::new(1, 1, 1, 1));
    assert_eq!(
        plain.one(r#"{"execute": "query-cpu-definitions"}"#)["error"]["desc"],
        "CPU model queries is not supported by this VMM"
    );
}

/// [`crate::fake::FAKE_MEMORY`] in KiB.
const FAKE_MEMORY_KIB: u64 = crate::fake::FAKE_MEMORY / 1024;

#[test]
fn hmp_virsh_cpu_verbs() {
    let mut r = rig(FakeBackend::new(1, 4, 1, 2).with_name("web1"));
    assert_eq!(
        r.hmp("vcpucount"),
        "maximum      config         4\nmaximum      live           4\n\
         current      config         2\ncurrent      live           2\n"
    );
    assert_eq!(r.hmp("vcpupin 1 3 --live"), "");
    assert_eq!(
        r.hmp("vcpupin"),
        " VCPU   CPU Affinity\n----------------------\n 0      0-1\n 1      3\n 2      0-1\n 3      0-1\n"
    );
    assert_eq!(
        r.hmp("emulatorpin"),
        "emulator: CPU Affinity\n----------------------------------\n       *: 0-1\n"
    );
    assert_eq!(r.hmp("emulatorpin 1"), "");
    assert!(r.hmp("emulatorpin").ends_with("       *: 1\n"));
    assert_eq!(
        r.hmp("emulatorpin 1 --config"),
        "Error: only live changes are supported (--live)\n"
    );
    // Plug up to 4: the lowest empty slots, named as libvirt names them.
    assert_eq!(r.hmp("setvcpus 4"), "");
    let paths: Vec<Value> = r.one(r#"{"execute": "query-cpus-fast"}"#)["return"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["qom-path"].clone())
        .collect();
    assert_eq!(
        paths,
        [
            "/machine/unattached/device[0]",
            "/machine/unattached/device[1]",
            "/machine/peripheral/vcpu2",
            "/machine/peripheral/vcpu3",
        ]
    );
    assert!(r
        .hmp("vcpucount")
        .ends_with("current      live           4\n"));
    // Unplug back to 3: the highest goes, with its event.
    assert_eq!(r.hmp("setvcpus 3"), "");
    assert_eq!(
        r.events(),
        vec![j(
            r#"{"event": "DEVICE_DELETED", "data": {"device": "vcpu3", "path": "/machine/peripheral/vcpu3"}}"#
        )]
    );
    assert_eq!(
        r.hmp("setvcpus 1"),
        "Error: vCPU 1 was present at boot and cannot be unplugged\n"
    );
    assert_eq!(
        r.one(r#"{"execute": "query-cpus-fast"}"#)["return"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        r.hmp("setvcpus 5"),
        "Error: requested vcpus is greater than max allowable vcpus for the live domain: 5 > 4\n"
    );
    assert_eq!(
        r.hmp("setvcpus 0"),
        "Error: Invalid number of virtual CPUs\n"
    );
    // The live domain: 3 of 4 vCPUs, vCPU 1's live pin, the emulator's pin.
    let xml = r.hmp("dumpxml");
    let d = libvirt_domain::parse_domain(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    assert_eq!(d.name, "web1");
    assert_eq!(d.uuid.as_deref(), Some(NIL_UUID));
    assert_eq!((d.vcpu.count, d.vcpu.current), (4, Some(3)));
    assert_eq!(d.memory_kib, FAKE_MEMORY_KIB);
    let [pin] = d.cputune.vcpupin.as_slice() else {
        panic!("one vcpupin expected: {xml}")
    };
    assert_eq!((pin.vcpu, pin.cpuset.to_cpu_list()), (1, "3".to_owned()));
    assert_eq!(
        d.cputune.emulatorpin.map(|e| e.to_cpu_list()).as_deref(),
        Some("1")
    );
    let cpu = d.cpu.unwrap();
    assert_eq!(cpu.model.unwrap().name, "qemu64");
    let t = cpu.topology.unwrap();
    assert_eq!((t.sockets, t.cores, t.threads), (1, 4, 1));
}

//! Command reply shapes, exact JSON, against [`FakeBackend`].

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::*;

struct Rig {
    fake: Arc<FakeBackend>,
    monitor: Monitor,
    session: Session,
    events: Arc<Mutex<Vec<Value>>>,
}

fn rig(fake: FakeBackend) -> Rig {
    let fake = Arc::new(fake);
    let monitor = Monitor::new(fake.clone(), EventSink::new()).with_version(QmpVersion {
        package: "test".into(),
        ..QmpVersion::default()
    });
    let events = Arc::new(Mutex::new(Vec::new()));
    let e = events.clone();
    monitor.events().subscribe(Box::new(move |line| {
        let mut v: Value = serde_json::from_str(line).unwrap();
        // Timestamps are checked separately; strip them for exact comparisons.
        let ts = v.as_object_mut().unwrap().remove("timestamp").unwrap();
        assert!(ts["seconds"].as_u64().unwrap() > 1_600_000_000);
        assert!(ts["microseconds"].as_u64().unwrap() < 1_000_000);
        e.lock().unwrap().push(v);
        true
    }));
    let mut session = Session::new();
    let r = run_script(&monitor, &mut session, r#"{"execute": "qmp_capabilities"}"#);
    assert_eq!(r, vec![json!({"return": {}})]);
    Rig {
        fake,
        monitor,
        session,
        events,
    }
}

impl Rig {
    fn one(&mut self, input: &str) -> Value {
        let mut r = run_script(&self.monitor, &mut self.session, input);
        assert_eq!(r.len(), 1, "{input}: {r:?}");
        r.remove(0)
    }

    fn hmp(&mut self, line: &str) -> String {
        let req = json!({"execute": "human-monitor-command", "arguments": {"command-line": line}});
        let reply = self.one(&req.to_string());
        reply["return"]
            .as_str()
            .unwrap_or_else(|| panic!("{line}: {reply}"))
            .to_owned()
    }

    fn events(&self) -> Vec<Value> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}

fn j(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

#[test]
fn greeting_and_negotiation() {
    let monitor = Monitor::new(Arc::new(FakeBackend::new(1, 2, 1, 2)), EventSink::new());
    let g = monitor.greeting();
    assert_eq!(g["QMP"]["capabilities"], json!([]));
    assert_eq!(
        g["QMP"]["version"]["qemu"],
        json!({"major": 7, "minor": 2, "micro": 0})
    );
    assert!(g["QMP"]["version"]["package"]
        .as_str()
        .unwrap()
        .starts_with("vmm-monitor "));
    let mut s = Session::new();
    let r = run_script(
        &monitor,
        &mut s,
        r#"{"execute": "query-status", "id": "a"}
           {"execute": "qmp_capabilities", "id": 1}
           {"execute": "qmp_capabilities", "id": 2}"#,
    );
    assert_eq!(
        r,
        vec![
            j(
                r#"{"error": {"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}, "id": "a"}"#
            ),
            j(r#"{"return": {}, "id": 1}"#),
            j(
                r#"{"error": {"class": "CommandNotFound", "desc": "Capabilities negotiation is already complete, command ignored"}, "id": 2}"#
            ),
        ]
    );
}

#[test]
fn events_are_not_sent_before_negotiation_by_monitor_itself() {
    // The Monitor emits to the sink; which clients receive is the server's business. Here
    // we only check that a pre-negotiation stop is refused and emits nothing.
    let fake = Arc::new(FakeBackend::new(1, 1, 1, 1));
    let monitor = Monitor::new(fake.clone(), EventSink::new());
    let got = Arc::new(Mutex::new(0));
    let g = got.clone();
    monitor.events().subscribe(Box::new(move |_| {
        *g.lock().unwrap() += 1;
        true
    }));
    let mut s = Session::new();
    run_script(&monitor, &mut s, r#"{"execute": "stop"}"#);
    assert_eq!(*got.lock().unwrap(), 0);
    assert_eq!(fake.status(), RunState::Running);
}

#[test]
fn query_version_status_kvm_commands() {
    let mut r = rig(FakeBackend::new(1, 2, 1, 2));
    assert_eq!(
        r.one(r#"{"execute": "query-version", "id": 1}"#),
        j(
            r#"{"return": {"qemu": {"major": 7, "minor": 2, "micro": 0}, "package": "test"}, "id": 1}"#
        )
    );
    assert_eq!(
        r.one(r#"{"execute": "query-status"}"#),
        j(r#"{"return": {"running": true, "singlestep": false, "status": "running"}}"#)
    );
    assert_eq!(
        r.one(r#"{"execute": "query-kvm"}"#),
        j(r#"{"return": {"enabled": true, "present": true}}"#)
    );
    let cmds = r.one(r#"{"execute": "query-commands"}"#);
    let names: Vec<&str> = cmds["return"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, COMMANDS);
}

#[test]
fn stop_cont_emit_events_once() {
    let mut r = rig(FakeBackend::new(1, 1, 1, 1));
    assert_eq!(
        r.one(r#"{"execute": "stop", "id": 5}"#),
        j(r#"{"return": {}, "id": 5}"#)
    );
    assert_eq!(
        r.one(r#"{"execute": "query-status"}"#),
        j(r#"{"return": {"running": false, "singlestep": false, "status": "paused"}}"#)
    );
    assert_eq!(r.one(r#"{"execute": "stop"}"#), j(r#"{"return": {}}"#));
    assert_eq!(r.events(), vec![j(r#"{"event": "STOP"}"#)]);
    assert_eq!(r.one(r#"{"execute": "cont"}"#), j(r#"{"return": {}}"#));
    assert_eq!(r.one(r#"{"execute": "cont"}"#), j(r#"{"return": {}}"#));
    assert_eq!(r.events(), vec![j(r#"{"event": "RESUME"}"#)]);
    assert_eq!(
        r.one(r#"{"execute": "stop", "arguments": {"now": true}}"#),
        j(r#"{"error": {"class": "GenericError", "desc": "Parameter 'now' is unexpected"}}"#)
    );
}

#[test]
fn system_reset_supported_or_not() {
    let mut r = rig(FakeBackend::new(1, 1, 1, 1));
    assert_eq!(
        r.one(r#"{"execute": "system_reset"}"#),
        j(
            r#"{"error": {"class": "GenericError", "desc": "system_reset is not supported by this VMM"}}"#
        )
    );
    assert!(r.events().is_empty());
    let mut r = rig(FakeBackend::new(1, 1, 1, 1).with_reset());
    assert_eq!(
        r.one(r#"{"execute": "system_reset"}"#),
        j(r#"{"return": {}}"#)
    );
    assert_eq!(
        r.events(),
        vec![j(
            r#"{"event": "RESET", "data": {"guest": false, "reason": "host-qmp-system-reset"}}"#
        )]
    );
}

#[test]
fn system_powerdown_presses_the_button_or_is_not_supported() {
    let mut r = rig(FakeBackend::new(1, 1, 1, 1));
    assert_eq!(
        r.one(r#"{"execute": "system_powerdown", "id": 1}"#),
        j(
            r#"{"error": {"class": "GenericError", "desc": "system_powerdown is not supported by this VMM"}, "id": 1}"#
        )
    );
    assert_eq!(
        r.hmp("system_powerdown"),
        "Error: system_powerdown is not supported by this VMM\n"
    );
    assert!(r.events().is_empty());

    let mut r = rig(FakeBackend::new(1, 1, 1, 1).with_power_button());
    assert_eq!(
        r.one(r#"{"execute": "system_powerdown", "id": 2}"#),
        j(r#"{"return": {}, "id": 2}"#)
    );
    assert_eq!(r.hmp("system_powerdown"), "");
    assert_eq!(r.fake.power_button_presses(), 2);
    // QEMU emits POWERDOWN (no data) when the button is pressed; the guest's SHUTDOWN
    // comes later, from the guest.
    assert_eq!(
        r.events(),
        vec![
            j(r#"{"event": "POWERDOWN"}"#),
            j(r#"{"event": "POWERDOWN"}"#)
        ]
    );
    assert_eq!(
        r.one(r#"{"execute": "system_powerdown", "arguments": {"force": true}}"#),
        j(r#"{"error": {"class": "GenericError", "desc": "Parameter 'force' is unexpected"}}"#)
    );
    let commands = r.one(r#"{"execute": "query-commands"}"#);
    assert!(commands["return"]
        .as_array()
        .unwrap()
        .contains(&json!({"name": "system_powerdown"})));
}

#[test]
fn quit_replies_then_shuts_down() {
    let mut r = rig(FakeBackend::new(1, 1, 1, 1));
    let replies = run_script(
        &r.monitor,
        &mut r.session,
        r#"{"execute": "quit", "id": "q"}{"execute": "query-status"}"#,
    );
    // Nothing after quit is executed.
    assert_eq!(replies, vec![j(r#"{"return": {}, "id": "q"}"#)]);
    assert!(r.fake.quit_called());
    assert_eq!(
        r.events(),
        vec![j(
            r#"{"event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}}"#
        )]
    );
}

#[test]
fn query_cpus_fast_shape() {
    let mut r = rig(FakeBackend::new(2, 1, 2, 2));
    assert_eq!(
        r.one(r#"{"execute": "query-cpus-fast"}"#),
        j(r#"{"return": [
            {"cpu-index": 0, "qom-path": "/machine/unattached/device[0]", "thread-id": 1000,
             "props": {"socket-id": 0, "die-id": 0, "core-id": 0, "thread-id": 0},
             "target": "x86_64"},
            {"cpu-index": 1, "qom-path": "/machine/unattached/device[1]", "thread-id": 1001,
             "props": {"socket-id": 0, "die-id": 0, "core-id": 0, "thread-id": 1},
             "target": "x86_64"}]}"#)
    );
    let mut r = rig(FakeBackend::new(2, 1, 1, 1).with_numa(2));
    assert_eq!(
        r.one(r#"{"execute": "query-cpus-fast"}"#)["return"][0]["props"],
        j(r#"{"node-id": 0, "socket-id": 0, "die-id": 0, "core-id": 0, "thread-id": 0}"#)
    );
}

#[test]
fn query_hotpluggable_cpus_shape() {
    let mut r = rig(FakeBackend::new(1, 3, 1, 1));
    assert_eq!(
        r.one(r#"{"execute": "query-hotpluggable-cpus"}"#),
        j(r#"{"return": [
            {"type": "qemu64-x86_64-cpu", "vcpus-count": 1,
             "props": {"socket-id": 0, "die-id": 0, "core-id": 2, "thread-id": 0}},
            {"type": "qemu64-x86_64-cpu", "vcpus-count": 1,
             "props": {"socket-id": 0, "die-id": 0, "core-id": 1, "thread-id": 0}},
            {"type": "qemu64-x86_64-cpu", "vcpus-count": 1,
             "props": {"socket-id": 0, "die-id": 0, "core-id": 0, "thread-id": 0},
             "qom-path": "/machine/unattached/device[0]"}]}"#)
    );
}

#[test]
fn device_add_and_del_cpu() {
    let mut r = rig(FakeBackend::new(1, 4, 1, 2));
    let add = r#"{"execute": "device_add", "id": 9, "arguments": {"driver": "qemu64-x86_64-cpu",
                  "id": "cpu2", "socket-id": 0, "die-id": 0, "core-id": 2, "thread-id": 0}}"#;
    assert_eq!(r.one(add), j(r#"{"return": {}, "id": 9}"#));
    let cpus = r.one(r#"{"execute": "query-cpus-fast"}"#);
    assert_eq!(
        cpus["return"][2]["qom-path"],
        json!("/machine/peripheral/cpu2")
    );
    assert_eq!(cpus["return"][2]["cpu-index"], json!(2));
    // The same slot again.
    let again = add.replace("cpu2", "cpu2b");
    assert_eq!(
        r.one(&again),
        j(
            r#"{"error": {"class": "GenericError", "desc": "CPU[2] with APIC ID 2 exists"}, "id": 9}"#
        )
    );
    let rows: &[(&str, &str)] = &[
        (
            r#"{"driver": "qemu64-x86_64-cpu", "id": "c", "socket-id": 0, "core-id": 7, "thread-id": 0}"#,
            "Invalid CPU core-id: 7 must be in range 0:3",
        ),
        (
            r#"{"driver": "EPYC-x86_64-cpu", "socket-id": 0, "core-id": 3, "thread-id": 0}"#,
            "Invalid CPU type, expected cpu type: 'qemu64-x86_64-cpu'",
        ),
        (
            r#"{"driver": "virtio-net-pci"}"#,
            "'virtio-net-pci' is not a valid device model name",
        ),
        (
            r#"{"driver": "qemu64-x86_64-cpu", "socket-id": 0, "thread-id": 0}"#,
            "CPU core-id is not set",
        ),
        (
            r#"{"driver": "qemu64-x86_64-cpu", "socket-id": "0", "core-id": 3, "thread-id": 0}"#,
            "Invalid parameter type for 'socket-id', expected: integer",
        ),
        (
            r#"{"driver": "qemu64-x86_64-cpu", "socket-id": 0, "core-id": 3, "thread-id": 0, "bogus": 1}"#,
            "Property 'qemu64-x86_64-cpu.bogus' not found",
        ),
        (r#"{"id": "x"}"#, "Parameter 'driver' is missing"),
    ];
    for (args, desc) in rows {
        let req = format!(r#"{{"execute": "device_add", "arguments": {args}}}"#);
        assert_eq!(
            r.one(&req),
            json!({"error": {"class": "GenericError", "desc": desc}}),
            "{args}"
        );
    }
    assert!(r.events().is_empty());
    assert_eq!(
        r.one(r#"{"execute": "device_del", "arguments": {"id": "cpu2"}}"#),
        j(r#"{"return": {}}"#)
    );
    assert_eq!(
        r.events(),
        vec![j(
            r#"{"event": "DEVICE_DELETED", "data": {"device": "cpu2", "path": "/machine/peripheral/cpu2"}}"#
        )]
    );
    assert_eq!(
        r.one(r#"{"execute": "device_del", "arguments": {"id": "cpu2"}}"#),
        j(r#"{"error": {"class": "DeviceNotFound", "desc": "Device 'cpu2' not found"}}"#)
    );
    assert_eq!(
        r.one(r#"{"execute": "device_del", "arguments": {"id": 3}}"#),
        j(
            r#"{"error": {"class": "GenericError", "desc": "Invalid parameter type for 'id', expected: string"}}"#
        )
    );
}

#[test]
fn unknown_command_and_bad_input_keep_session() {
    let mut r = rig(FakeBackend::new(1, 1, 1, 1));
    let replies = run_script(
        &r.monitor,
        &mut r.session,
        "{\"execute\": \"no-such\", \"id\": [1]}\n{\"execute\": }\n[]\n{\"execute\": \"query-kvm\", \"id\": 2}\n",
    );
    assert_eq!(replies.len(), 4);
    assert_eq!(
        replies[0],
        j(
            r#"{"error": {"class": "CommandNotFound", "desc": "The command no-such has not been found"}, "id": [1]}"#
        )
    );
    assert_eq!(replies[1]["error"]["class"], json!("GenericError"));
    assert!(replies[1]["error"]["desc"]
        .as_str()
        .unwrap()
        .starts_with("JSON parse error, "));
    assert!(replies[1].get("id").is_none());
    assert_eq!(
        replies[2],
        j(r#"{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}"#)
    );
    assert_eq!(
        replies[3],
        j(r#"{"return": {"enabled": true, "present": true}, "id": 2}"#)
    );
}

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

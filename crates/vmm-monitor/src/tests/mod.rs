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

mod hmp;

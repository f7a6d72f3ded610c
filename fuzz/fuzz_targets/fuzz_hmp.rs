#![no_main]
//! HMP command lines through a whole monitor: each input line goes to `hmp::run` and, as
//! QMP's `human-monitor-command` (with a `cpu-index` from the first byte), through
//! `Monitor::handle` over a `FakeBackend` VM of 2 sockets x 2 cores x 2 threads on two
//! NUMA nodes. The whole input is also run as a QMP script. Nothing may panic, and every
//! reply is a `return` (a string for `human-monitor-command`) or an `error`.
use std::sync::Arc;

use cpu_topology::VcpuIndex;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use vmm_monitor::{hmp, run_script, EventSink, FakeBackend, Monitor, Session};

fn monitor() -> Monitor {
    let fake = FakeBackend::new(2, 2, 2, 4)
        .with_numa(2)
        .with_reset()
        .with_power_button()
        .with_name("fuzz");
    Monitor::new(Arc::new(fake), EventSink::new())
}

fuzz_target!(|data: &[u8]| {
    let Some((&cpu, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let m = monitor();
    let mut session = Session::new();
    let caps = m.handle(&mut session, Ok(json!({"execute": "qmp_capabilities"})));
    assert!(caps.reply.get("return").is_some(), "{}", caps.reply);
    for line in text.lines().take(64) {
        let _ = hmp::run(&m, line, VcpuIndex(u32::from(cpu % 10)));
        let mut args = json!({"command-line": line});
        if cpu & 0x80 != 0 {
            args["cpu-index"] = json!(cpu & 0x7f);
        }
        let out = m.handle(
            &mut session,
            Ok(json!({"execute": "human-monitor-command", "arguments": args})),
        );
        match (out.reply.get("return"), out.reply.get("error")) {
            (Some(Value::String(_)), None) | (None, Some(_)) => {}
            _ => panic!("HMP reply is neither text nor an error: {}", out.reply),
        }
        if out.quit {
            break;
        }
    }
    // The same text as a QMP conversation on a fresh session.
    let replies = run_script(&monitor(), &mut Session::new(), &text);
    assert!(replies
        .iter()
        .all(|r| r.get("return").is_some() || r.get("error").is_some()));
});

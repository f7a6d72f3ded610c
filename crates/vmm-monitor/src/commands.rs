//! QMP command dispatch: one request in, one reply out, each command one backend call.

use std::sync::Arc;

use cpu_topology::VcpuIndex;
use serde_json::{json, Map, Value};

use crate::backend::{BackendError, CpuInfo, CpuPlugRequest, CpuProps, MonitorBackend, Unplug};
use crate::events::{EventSink, QmpEvent};
use crate::protocol::{
    error_reply, parse_request, return_reply, Args, ErrorClass, QmpError, QmpVersion, Session,
};
use crate::{cpu_models, hmp};

/// Every command this monitor accepts, as `query-commands` lists them.
pub const COMMANDS: &[&str] = &[
    "qmp_capabilities",
    "query-version",
    "query-commands",
    "query-status",
    "query-kvm",
    "stop",
    "cont",
    "system_reset",
    "system_powerdown",
    "quit",
    "query-cpus-fast",
    "query-hotpluggable-cpus",
    "device_add",
    "device_del",
    "human-monitor-command",
    "query-name",
    "query-uuid",
    "query-target",
    "query-machines",
    "query-memory-size-summary",
    "query-cpu-definitions",
    "query-cpu-model-expansion",
];

/// What executing one input produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The reply to send to the client that asked.
    pub reply: Value,
    /// Events to broadcast once the reply has been sent (e.g. `DEVICE_DELETED`).
    pub events_after: Vec<QmpEvent>,
    /// `quit` was accepted: after sending the reply, call [`Monitor::finish_quit`] and stop
    /// serving.
    pub quit: bool,
}

impl Outcome {
    fn reply(reply: Value) -> Self {
        Outcome {
            reply,
            events_after: Vec::new(),
            quit: false,
        }
    }
}

/// Result of a command body: the return value, events to send after it, whether to quit.
pub(crate) struct Done {
    pub(crate) value: Value,
    pub(crate) events_after: Vec<QmpEvent>,
    pub(crate) quit: bool,
}

impl From<Value> for Done {
    fn from(value: Value) -> Self {
        Done {
            value,
            events_after: Vec::new(),
            quit: false,
        }
    }
}

/// The transport-independent monitor: owns the backend and the event sink, and executes
/// requests for any number of sessions.
#[derive(Clone)]
pub struct Monitor {
    backend: Arc<dyn MonitorBackend>,
    events: EventSink,
    version: QmpVersion,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("events", &self.events)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Turns a backend error into the QMP error a client sees.
pub fn backend_error(e: &BackendError) -> QmpError {
    match e {
        BackendError::DeviceNotFound { .. } => QmpError {
            class: ErrorClass::DeviceNotFound,
            desc: e.to_string(),
        },
        _ => QmpError::generic(crate::error_chain(e)),
    }
}

fn props_json(p: &CpuProps) -> Value {
    let mut m = Map::new();
    if let Some(n) = p.node_id {
        m.insert("node-id".into(), json!(n));
    }
    m.insert("socket-id".into(), json!(p.socket_id));
    m.insert("die-id".into(), json!(p.die_id));
    if let Some(module) = p.module_id {
        m.insert("module-id".into(), json!(module));
    }
    m.insert("core-id".into(), json!(p.core_id));
    m.insert("thread-id".into(), json!(p.thread_id));
    Value::Object(m)
}

/// One `query-cpus-fast` entry (`CpuInfoFast`).
pub fn cpu_info_json(c: &CpuInfo) -> Value {
    json!({
        "cpu-index": c.index.0,
        "qom-path": c.qom_path,
        "thread-id": c.thread_id,
        "props": props_json(&c.props),
        "target": "x86_64",
    })
}

impl Monitor {
    /// A monitor speaking the default [`QmpVersion`].
    pub fn new(backend: Arc<dyn MonitorBackend>, events: EventSink) -> Self {
        Monitor {
            backend,
            events,
            version: QmpVersion::default(),
        }
    }

    /// Replaces the version the greeting and `query-version` report.
    pub fn with_version(mut self, version: QmpVersion) -> Self {
        self.version = version;
        self
    }

    /// The event sink (subscribe clients to it; give it to the VMM).
    pub fn events(&self) -> &EventSink {
        &self.events
    }

    /// The backend.
    pub fn backend(&self) -> &dyn MonitorBackend {
        self.backend.as_ref()
    }

    /// The greeting a new connection receives.
    pub fn greeting(&self) -> Value {
        self.version.greeting()
    }

    /// Executes one framed input: a parsed value, or the parse error the framer reported
    /// (which becomes a `GenericError` reply without id).
    pub fn handle(&self, session: &mut Session, input: Result<Value, QmpError>) -> Outcome {
        let value = match input {
            Ok(v) => v,
            Err(e) => return Outcome::reply(error_reply(&e, None)),
        };
        let request = match parse_request(value) {
            Ok(r) => r,
            Err((e, id)) => return Outcome::reply(error_reply(&e, id.as_ref())),
        };
        let id = request.id.as_ref();
        if let Err(e) = session.gate(&request.command, &request.arguments) {
            return Outcome::reply(error_reply(&e, id));
        }
        if request.command == "qmp_capabilities" {
            return Outcome::reply(return_reply(json!({}), id));
        }
        match self.dispatch(&request.command, Args::new(request.arguments)) {
            Ok(done) => Outcome {
                reply: return_reply(done.value, id),
                events_after: done.events_after,
                quit: done.quit,
            },
            Err(e) => Outcome::reply(error_reply(&e, id)),
        }
    }

    /// Completes an accepted `quit` once its reply is out: tells the VMM to exit and
    /// broadcasts `SHUTDOWN` (`guest: false, reason: host-qmp-quit`).
    pub fn finish_quit(&self) {
        self.backend.quit();
        self.events.emit(
            "SHUTDOWN",
            json!({"guest": false, "reason": "host-qmp-quit"}),
        );
    }

    fn dispatch(&self, command: &str, mut args: Args) -> Result<Done, QmpError> {
        let done: Done = match command {
            "query-version" => self.version.to_json().into(),
            "query-commands" => {
                Value::Array(COMMANDS.iter().map(|c| json!({"name": c})).collect()).into()
            }
            "query-status" => {
                let s = self.backend.status();
                json!({"running": s.is_running(), "singlestep": false, "status": s.as_str()}).into()
            }
            "query-kvm" => {
                let k = self.backend.kvm();
                json!({"enabled": k.enabled, "present": k.present}).into()
            }
            "stop" => {
                args.finish()?;
                self.stop()?;
                json!({}).into()
            }
            "cont" => {
                args.finish()?;
                self.cont()?;
                json!({}).into()
            }
            "system_reset" => {
                args.finish()?;
                self.backend.reset().map_err(|e| backend_error(&e))?;
                self.events.emit(
                    "RESET",
                    json!({"guest": false, "reason": "host-qmp-system-reset"}),
                );
                json!({}).into()
            }
            "system_powerdown" => {
                args.finish()?;
                self.powerdown()?;
                json!({}).into()
            }
            "quit" => {
                args.finish()?;
                Done {
                    value: json!({}),
                    events_after: Vec::new(),
                    quit: true,
                }
            }
            "query-cpus-fast" => {
                args.finish()?;
                Value::Array(self.backend.cpus().iter().map(cpu_info_json).collect()).into()
            }
            "query-hotpluggable-cpus" => {
                args.finish()?;
                self.hotpluggable_json().into()
            }
            "device_add" => return self.device_add(args),
            "device_del" => {
                let id = args.str("id")?;
                args.finish()?;
                return self.device_del(&id);
            }
            "human-monitor-command" => {
                let line = args.str("command-line")?;
                let cpu = args
                    .opt_u32("cpu-index")?
                    .map_or(hmp::DEFAULT_CPU, VcpuIndex);
                args.finish()?;
                let out = hmp::run(self, &line, cpu);
                Done {
                    value: Value::String(out.text),
                    events_after: out.events_after,
                    quit: out.quit,
                }
            }
            "query-name" => {
                args.finish()?;
                match self.backend.name() {
                    Some(name) => json!({ "name": name }),
                    None => json!({}),
                }
                .into()
            }
            "query-uuid" => {
                args.finish()?;
                json!({"UUID": self.backend.uuid()}).into()
            }
            "query-target" => {
                args.finish()?;
                json!({"arch": "x86_64"}).into()
            }
            "query-machines" => {
                args.finish()?;
                let m = self.backend.machine().map_err(|e| backend_error(&e))?;
                json!([{
                    "name": "pc",
                    "is-default": true,
                    "cpu-max": m.kvm_max_vcpus,
                    "hotpluggable-cpus": true,
                    "numa-mem-supported": false,
                    "deprecated": false,
                    "default-cpu-type": cpu_models::typename("qemu64"),
                    "default-ram-id": "pc.ram",
                }])
                .into()
            }
            "query-memory-size-summary" => {
                args.finish()?;
                let m = self.backend.machine().map_err(|e| backend_error(&e))?;
                json!({"base-memory": m.memory, "plugged-memory": 0}).into()
            }
            "query-cpu-definitions" => {
                args.finish()?;
                let host = self.backend.host_cpuid().map_err(|e| backend_error(&e))?;
                cpu_models::definitions(&host).into()
            }
            "query-cpu-model-expansion" => {
                let request = cpu_models::expansion_request(&mut args)?;
                args.finish()?;
                let host = self.backend.host_cpuid().map_err(|e| backend_error(&e))?;
                cpu_models::expand(request, &host)?.into()
            }
            other => {
                return Err(QmpError::command_not_found(format!(
                    "The command {other} has not been found"
                )))
            }
        };
        Ok(done)
    }

    /// `stop`: pauses the VM, emitting `STOP` when it was running.
    pub(crate) fn stop(&self) -> Result<(), QmpError> {
        let was_running = self.backend.status().is_running();
        self.backend.stop().map_err(|e| backend_error(&e))?;
        if was_running {
            self.events.emit("STOP", Value::Null);
        }
        Ok(())
    }

    /// `cont`: resumes the VM, emitting `RESUME` when it was not running.
    pub(crate) fn cont(&self) -> Result<(), QmpError> {
        let was_running = self.backend.status().is_running();
        self.backend.cont().map_err(|e| backend_error(&e))?;
        if !was_running {
            self.events.emit("RESUME", Value::Null);
        }
        Ok(())
    }

    /// `system_powerdown`: presses the power button, emitting `POWERDOWN` (as QEMU does,
    /// before the guest reacts).
    pub(crate) fn powerdown(&self) -> Result<(), QmpError> {
        self.backend.powerdown().map_err(|e| backend_error(&e))?;
        self.events.emit("POWERDOWN", Value::Null);
        Ok(())
    }

    fn cpu_type(&self) -> String {
        format!("{}-x86_64-cpu", self.backend.cpu_model())
    }

    fn hotpluggable_json(&self) -> Value {
        let ty = self.cpu_type();
        // QEMU lists the slots from the highest index down.
        let slots = self.backend.hotpluggable_cpus();
        Value::Array(
            slots
                .iter()
                .rev()
                .map(|s| {
                    let mut m = Map::new();
                    m.insert("type".into(), json!(ty));
                    m.insert("vcpus-count".into(), json!(1));
                    m.insert("props".into(), props_json(&s.props));
                    if let Some(p) = &s.qom_path {
                        m.insert("qom-path".into(), json!(p));
                    }
                    Value::Object(m)
                })
                .collect(),
        )
    }

    fn device_add(&self, mut args: Args) -> Result<Done, QmpError> {
        let driver = args.str("driver")?;
        let expected = self.cpu_type();
        if driver != expected {
            return Err(QmpError::generic(if driver.ends_with("-x86_64-cpu") {
                format!("Invalid CPU type, expected cpu type: '{expected}'")
            } else {
                format!("'{driver}' is not a valid device model name")
            }));
        }
        let id = args.opt_str("id")?;
        let need = |v: Option<u32>, name: &str| {
            v.ok_or_else(|| QmpError::generic(format!("CPU {name} is not set")))
        };
        let props = CpuProps {
            socket_id: need(args.opt_u32("socket-id")?, "socket-id")?,
            die_id: args.opt_u32("die-id")?.unwrap_or(0),
            module_id: args.opt_u32("module-id")?,
            core_id: need(args.opt_u32("core-id")?, "core-id")?,
            thread_id: need(args.opt_u32("thread-id")?, "thread-id")?,
            node_id: args.opt_u32("node-id")?,
        };
        if let Err(e) = args.finish() {
            // QEMU names the property with its type: "Property 'T.foo' not found".
            let name = e
                .desc
                .trim_start_matches("Parameter '")
                .trim_end_matches("' is unexpected");
            return Err(QmpError::generic(format!(
                "Property '{expected}.{name}' not found"
            )));
        }
        self.backend
            .add_cpu(&CpuPlugRequest { id, props })
            .map_err(|e| backend_error(&e))?;
        Ok(json!({}).into())
    }

    pub(crate) fn device_del(&self, id: &str) -> Result<Done, QmpError> {
        let events_after = match self.backend.del_cpu(id).map_err(|e| backend_error(&e))? {
            Unplug::Completed { qom_path } => {
                let data = json!({"device": id, "path": qom_path});
                vec![QmpEvent::now("DEVICE_DELETED", data.as_object().cloned())]
            }
            Unplug::Pending => Vec::new(),
        };
        Ok(Done {
            value: json!({}),
            events_after,
            quit: false,
        })
    }
}

/// Runs a whole request/reply exchange for tests and embedders without a socket: feeds
/// `input` text through a [`JsonStream`](crate::protocol::JsonStream) and returns every
/// reply, sending deferred events and finishing `quit` as a server would.
pub fn run_script(monitor: &Monitor, session: &mut Session, input: &str) -> Vec<Value> {
    let mut stream = crate::protocol::JsonStream::new();
    stream.push(input.as_bytes());
    let mut replies = Vec::new();
    while let Some(item) = stream.next_value() {
        let out = monitor.handle(session, item);
        replies.push(out.reply);
        for e in &out.events_after {
            monitor.events().send(e);
        }
        if out.quit {
            monitor.finish_quit();
            break;
        }
    }
    replies
}

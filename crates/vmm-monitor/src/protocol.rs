//! QMP wire protocol, without sockets: framing of the input stream, the request envelope,
//! error replies and argument checking, with QEMU's wording (qapi/qmp-dispatch.c,
//! qobject-input-visitor.c, monitor/qmp.c).

use serde_json::{json, Map, Value};

/// Version a QMP greeting and `query-version` report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QmpVersion {
    /// QEMU-compatible major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Micro version.
    pub micro: u32,
    /// Free text naming the implementation.
    pub package: String,
}

impl Default for QmpVersion {
    /// The QMP dialect this monitor speaks is QEMU 7.2's (docs/MONITOR.md); the package names this crate
    /// (embedders name their VMM with [`Monitor::with_version`](crate::Monitor::with_version)).
    fn default() -> Self {
        QmpVersion {
            major: 7,
            minor: 2,
            micro: 0,
            package: format!("vmm-monitor {}", env!("CARGO_PKG_VERSION")),
        }
    }
}

impl QmpVersion {
    /// The `VersionInfo` object.
    pub fn to_json(&self) -> Value {
        json!({
            "qemu": {"major": self.major, "minor": self.minor, "micro": self.micro},
            "package": self.package,
        })
    }

    /// The greeting sent when a client connects (no capabilities: OOB is not offered).
    pub fn greeting(&self) -> Value {
        json!({"QMP": {"version": self.to_json(), "capabilities": []}})
    }
}

/// QMP error classes (qapi/error.json).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Everything without a more specific class.
    GenericError,
    /// Unknown command, or a command not allowed in the current state.
    CommandNotFound,
    /// `device_del` of an unknown id.
    DeviceNotFound,
    /// KVM is missing.
    KvmMissingCap,
}

impl ErrorClass {
    /// The class string on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::GenericError => "GenericError",
            ErrorClass::CommandNotFound => "CommandNotFound",
            ErrorClass::DeviceNotFound => "DeviceNotFound",
            ErrorClass::KvmMissingCap => "KVMMissingCap",
        }
    }
}

/// An error reply's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QmpError {
    /// Error class.
    pub class: ErrorClass,
    /// Human-readable description.
    pub desc: String,
}

impl QmpError {
    /// A `GenericError`.
    pub fn generic(desc: impl Into<String>) -> Self {
        QmpError {
            class: ErrorClass::GenericError,
            desc: desc.into(),
        }
    }

    /// A `CommandNotFound` error.
    pub fn command_not_found(desc: impl Into<String>) -> Self {
        QmpError {
            class: ErrorClass::CommandNotFound,
            desc: desc.into(),
        }
    }
}

/// Builds `{"return": value}` plus the request's id, if any.
pub fn return_reply(value: Value, id: Option<&Value>) -> Value {
    let mut obj = Map::new();
    obj.insert("return".into(), value);
    if let Some(id) = id {
        obj.insert("id".into(), id.clone());
    }
    Value::Object(obj)
}

/// Builds `{"error": {"class": ..., "desc": ...}}` plus the request's id, if any.
pub fn error_reply(error: &QmpError, id: Option<&Value>) -> Value {
    let mut obj = Map::new();
    obj.insert(
        "error".into(),
        json!({"class": error.class.as_str(), "desc": error.desc}),
    );
    if let Some(id) = id {
        obj.insert("id".into(), id.clone());
    }
    Value::Object(obj)
}

/// A checked request envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Command name.
    pub command: String,
    /// Arguments (empty when absent).
    pub arguments: Map<String, Value>,
    /// The `id`, echoed verbatim in the reply.
    pub id: Option<Value>,
}

/// Checks the envelope of one input value. On error, the id (when it could be read) is
/// returned too, so the error reply still carries it.
pub fn parse_request(input: Value) -> Result<Request, (QmpError, Option<Value>)> {
    let Value::Object(mut obj) = input else {
        return Err((QmpError::generic("QMP input must be a JSON object"), None));
    };
    let id = obj.remove("id");
    let fail = |desc: String, id: &Option<Value>| Err((QmpError::generic(desc), id.clone()));
    if obj.contains_key("exec-oob") {
        return fail(
            "QMP input member 'exec-oob' is not supported: out-of-band execution was not \
             negotiated"
                .into(),
            &id,
        );
    }
    let command = match obj.remove("execute") {
        Some(Value::String(s)) => s,
        Some(_) => return fail("QMP input member 'execute' must be a string".into(), &id),
        None => return fail("QMP input lacks member 'execute'".into(), &id),
    };
    let arguments = match obj.remove("arguments") {
        Some(Value::Object(m)) => m,
        Some(_) => return fail("QMP input member 'arguments' must be an object".into(), &id),
        None => Map::new(),
    };
    if let Some(key) = obj.keys().next() {
        return fail(format!("QMP input member '{key}' is unexpected"), &id);
    }
    Ok(Request {
        command,
        arguments,
        id,
    })
}

/// Per-connection negotiation state (qmp-spec "Capabilities Negotiation").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Session {
    negotiated: bool,
}

impl Session {
    /// A session that has just received the greeting.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `qmp_capabilities` succeeded, i.e. commands run and events flow.
    pub fn negotiated(&self) -> bool {
        self.negotiated
    }

    /// Applies the negotiation rule to `command`. On success for `qmp_capabilities` the
    /// session enters command mode; `args` are checked for the one known member, `enable`.
    pub fn gate(&mut self, command: &str, args: &Map<String, Value>) -> Result<(), QmpError> {
        let is_cap = command == "qmp_capabilities";
        match (self.negotiated, is_cap) {
            (false, false) => Err(QmpError::command_not_found(
                "Expecting capabilities negotiation with 'qmp_capabilities'",
            )),
            (true, true) => Err(QmpError::command_not_found(
                "Capabilities negotiation is already complete, command ignored",
            )),
            (false, true) => {
                let mut a = Args::new(args.clone());
                // No capability is offered, so any entry of `enable` is refused.
                let enable = a.opt_array("enable")?.unwrap_or_default();
                if let Some(cap) = enable.first() {
                    return Err(match cap.as_str() {
                        Some("oob") => QmpError::generic("Capability oob not available"),
                        Some(other) => QmpError::generic(format!(
                            "Parameter 'enable[0]' does not accept value '{other}'"
                        )),
                        None => QmpError::generic(
                            "Invalid parameter type for 'enable[0]', expected: string",
                        ),
                    });
                }
                a.finish()?;
                self.negotiated = true;
                Ok(())
            }
            (true, false) => Ok(()),
        }
    }
}

/// Largest input kept while waiting for a value to complete; beyond it the input is
/// discarded with an error (QEMU caps tokens at 64 MiB; a monitor needs far less).
pub const MAX_PENDING_INPUT: usize = 1 << 20;

/// Splits a byte stream into JSON values. Values may be separated by newlines, by other
/// whitespace or by nothing at all, and may arrive in pieces.
#[derive(Debug, Default)]
pub struct JsonStream {
    buf: Vec<u8>,
}

impl JsonStream {
    /// An empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet consumed.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Returns the next complete value, a parse error (`JSON parse error, ...`) after which
    /// the stream has resynchronised, or `None` when more input is needed.
    ///
    /// Resynchronisation drops the input up to and including the next newline, or all of
    /// it when no newline has arrived yet: a newline-delimited client loses only the bad
    /// line.
    pub fn next_value(&mut self) -> Option<Result<Value, QmpError>> {
        // Drop separators first, so resynchronisation looks for the newline that ends the
        // bad value rather than the one before it.
        let start = self
            .buf
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(self.buf.len());
        self.buf.drain(..start);
        let mut it = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
        match it.next() {
            None => {
                self.buf.clear();
                None
            }
            Some(Ok(v)) => {
                let used = it.byte_offset();
                self.buf.drain(..used);
                Some(Ok(v))
            }
            Some(Err(e)) if e.is_eof() => {
                if self.buf.len() > MAX_PENDING_INPUT {
                    self.buf.clear();
                    return Some(Err(QmpError::generic(
                        "JSON parse error, input too long without a complete value",
                    )));
                }
                None
            }
            Some(Err(e)) => {
                let msg = format!("JSON parse error, {e}");
                match self.buf.iter().position(|&b| b == b'\n') {
                    Some(nl) => drop(self.buf.drain(..=nl)),
                    None => self.buf.clear(),
                }
                Some(Err(QmpError::generic(msg)))
            }
        }
    }
}

/// Typed access to command arguments with QEMU's error texts. Every member must be taken;
/// [`Args::finish`] rejects the rest as unexpected.
#[derive(Debug)]
pub struct Args {
    map: Map<String, Value>,
}

impl Args {
    /// Wraps a request's arguments.
    pub fn new(map: Map<String, Value>) -> Self {
        Args { map }
    }

    fn type_error(name: &str, expected: &str) -> QmpError {
        QmpError::generic(format!(
            "Invalid parameter type for '{name}', expected: {expected}"
        ))
    }

    /// Fails with `Parameter 'NAME' is missing`.
    pub fn missing(name: &str) -> QmpError {
        QmpError::generic(format!("Parameter '{name}' is missing"))
    }

    /// An optional string member.
    pub fn opt_str(&mut self, name: &str) -> Result<Option<String>, QmpError> {
        match self.map.remove(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(Self::type_error(name, "string")),
        }
    }

    /// A required string member.
    pub fn str(&mut self, name: &str) -> Result<String, QmpError> {
        self.opt_str(name)?.ok_or_else(|| Self::missing(name))
    }

    /// An optional non-negative 32-bit integer member.
    pub fn opt_u32(&mut self, name: &str) -> Result<Option<u32>, QmpError> {
        match self.map.remove(name) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) => u32::try_from(v)
                    .map(Some)
                    .map_err(|_| QmpError::generic(format!("Parameter '{name}' expects uint32"))),
                None if n.is_i64() => Err(QmpError::generic(format!(
                    "Parameter '{name}' expects uint32"
                ))),
                None => Err(Self::type_error(name, "integer")),
            },
            Some(_) => Err(Self::type_error(name, "integer")),
        }
    }

    /// An optional array member.
    pub fn opt_array(&mut self, name: &str) -> Result<Option<Vec<Value>>, QmpError> {
        match self.map.remove(name) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(Self::type_error(name, "array")),
        }
    }

    /// An optional object member.
    pub fn opt_object(&mut self, name: &str) -> Result<Option<Map<String, Value>>, QmpError> {
        match self.map.remove(name) {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(_) => Err(Self::type_error(name, "object")),
        }
    }

    /// Rejects members nobody took: `Parameter 'NAME' is unexpected`.
    pub fn finish(self) -> Result<(), QmpError> {
        match self.map.keys().next() {
            Some(k) => Err(QmpError::generic(format!("Parameter '{k}' is unexpected"))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn greeting_shape() {
        let g = QmpVersion {
            package: "vmm-reference 0.1.0".into(),
            ..QmpVersion::default()
        }
        .greeting();
        assert_eq!(
            g,
            v(
                r#"{"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0},
                  "package": "vmm-reference 0.1.0"}, "capabilities": []}}"#
            )
        );
    }

    #[test]
    fn envelope_table() {
        /// Input, then (command, arguments, id) or (error, id).
        type Row<'a> = (
            &'a str,
            Result<(&'a str, &'a str, Option<&'a str>), (&'a str, Option<&'a str>)>,
        );
        let rows: &[Row] = &[
            (r#"{"execute": "stop"}"#, Ok(("stop", "{}", None))),
            (
                r#"{"execute": "x", "arguments": {"a": 1}, "id": {"k": [1, "two"]}}"#,
                Ok(("x", r#"{"a": 1}"#, Some(r#"{"k": [1, "two"]}"#))),
            ),
            (
                r#"{"execute": "x", "id": null}"#,
                Ok(("x", "{}", Some("null"))),
            ),
            (r#"[1, 2]"#, Err(("QMP input must be a JSON object", None))),
            (r#""stop""#, Err(("QMP input must be a JSON object", None))),
            (
                r#"{"id": 7}"#,
                Err(("QMP input lacks member 'execute'", Some("7"))),
            ),
            (
                r#"{"execute": 3, "id": "a"}"#,
                Err(("QMP input member 'execute' must be a string", Some("\"a\""))),
            ),
            (
                r#"{"execute": "x", "arguments": [1]}"#,
                Err(("QMP input member 'arguments' must be an object", None)),
            ),
            (
                r#"{"execute": "x", "extra": 1}"#,
                Err(("QMP input member 'extra' is unexpected", None)),
            ),
        ];
        for (input, want) in rows {
            let got = parse_request(v(input));
            match (got, want) {
                (Ok(r), Ok((cmd, args, id))) => {
                    assert_eq!(r.command, *cmd, "{input}");
                    assert_eq!(Value::Object(r.arguments), v(args), "{input}");
                    assert_eq!(r.id, id.map(v), "{input}");
                }
                (Err((e, id)), Err((desc, want_id))) => {
                    assert_eq!(e.class, ErrorClass::GenericError, "{input}");
                    assert_eq!(e.desc, *desc, "{input}");
                    assert_eq!(id, want_id.map(v), "{input}");
                }
                (got, _) => panic!("{input}: unexpected {got:?}"),
            }
        }
    }

    #[test]
    fn negotiation_state_machine() {
        let mut s = Session::new();
        let none = Map::new();
        let e = s.gate("query-status", &none).unwrap_err();
        assert_eq!(e.class, ErrorClass::CommandNotFound);
        assert_eq!(
            e.desc,
            "Expecting capabilities negotiation with 'qmp_capabilities'"
        );
        assert!(!s.negotiated());
        let oob = v(r#"{"enable": ["oob"]}"#).as_object().unwrap().clone();
        assert_eq!(
            s.gate("qmp_capabilities", &oob).unwrap_err().desc,
            "Capability oob not available"
        );
        let bad = v(r#"{"enable": ["x"]}"#).as_object().unwrap().clone();
        assert_eq!(
            s.gate("qmp_capabilities", &bad).unwrap_err().desc,
            "Parameter 'enable[0]' does not accept value 'x'"
        );
        let extra = v(r#"{"foo": 1}"#).as_object().unwrap().clone();
        assert_eq!(
            s.gate("qmp_capabilities", &extra).unwrap_err().desc,
            "Parameter 'foo' is unexpected"
        );
        assert!(!s.negotiated());
        let empty = v(r#"{"enable": []}"#).as_object().unwrap().clone();
        s.gate("qmp_capabilities", &empty).unwrap();
        assert!(s.negotiated());
        s.gate("query-status", &none).unwrap();
        let e = s.gate("qmp_capabilities", &none).unwrap_err();
        assert_eq!(e.class, ErrorClass::CommandNotFound);
        assert_eq!(
            e.desc,
            "Capabilities negotiation is already complete, command ignored"
        );
    }

    #[test]
    fn replies_echo_id_verbatim() {
        let id = v(r#"{"nested": [1.5, null, "x"]}"#);
        assert_eq!(
            return_reply(json!({}), Some(&id)),
            v(r#"{"return": {}, "id": {"nested": [1.5, null, "x"]}}"#)
        );
        assert_eq!(
            error_reply(&QmpError::command_not_found("nope"), None),
            v(r#"{"error": {"class": "CommandNotFound", "desc": "nope"}}"#)
        );
    }

    #[test]
    fn stream_splits_concatenated_and_partial_values() {
        let mut s = JsonStream::new();
        s.push(br#"{"a":1}{"b":"#);
        assert_eq!(s.next_value().unwrap().unwrap(), v(r#"{"a":1}"#));
        assert!(s.next_value().is_none());
        s.push(b"2}\r\n  \n");
        assert_eq!(s.next_value().unwrap().unwrap(), v(r#"{"b":2}"#));
        assert!(s.next_value().is_none());
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn stream_yields_the_same_values_for_every_split() {
        let input = "{\"execute\": \"a\", \"id\": [1, {\"x\": \"}\"}]}\n{\"execute\":\"b\"}  \r\n{\"c\": 1.5}";
        let mut whole = JsonStream::new();
        whole.push(input.as_bytes());
        let mut want = Vec::new();
        while let Some(v) = whole.next_value() {
            want.push(v.unwrap());
        }
        assert_eq!(want.len(), 3);
        for split in 0..=input.len() {
            let mut s = JsonStream::new();
            let mut got = Vec::new();
            for part in [&input.as_bytes()[..split], &input.as_bytes()[split..]] {
                s.push(part);
                while let Some(v) = s.next_value() {
                    got.push(v.unwrap());
                }
            }
            assert_eq!(got, want, "split at {split}");
        }
    }

    #[test]
    fn stream_resynchronises_after_garbage_line() {
        let mut s = JsonStream::new();
        s.push(b"{\"execute\": nonsense}\n{\"execute\": \"stop\"}\n");
        let e = s.next_value().unwrap().unwrap_err();
        assert_eq!(e.class, ErrorClass::GenericError);
        assert!(e.desc.starts_with("JSON parse error, "), "{}", e.desc);
        assert_eq!(
            s.next_value().unwrap().unwrap(),
            v(r#"{"execute": "stop"}"#)
        );
        assert!(s.next_value().is_none());
    }

    #[test]
    fn stream_caps_pending_input() {
        let mut s = JsonStream::new();
        s.push(b"[");
        s.push(&b"1,".repeat(MAX_PENDING_INPUT / 2 + 1));
        let e = s.next_value().unwrap().unwrap_err();
        assert!(e.desc.contains("too long"));
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn args_table() {
        let mut a = Args::new(
            v(r#"{"s": "x", "n": 5, "neg": -1, "big": 4294967296, "f": 1.5, "t": true}"#)
                .as_object()
                .unwrap()
                .clone(),
        );
        assert_eq!(a.str("s").unwrap(), "x");
        assert_eq!(a.opt_u32("n").unwrap(), Some(5));
        assert_eq!(a.opt_u32("absent").unwrap(), None);
        assert_eq!(
            a.opt_u32("neg").unwrap_err().desc,
            "Parameter 'neg' expects uint32"
        );
        assert_eq!(
            a.opt_u32("big").unwrap_err().desc,
            "Parameter 'big' expects uint32"
        );
        assert_eq!(
            a.opt_u32("f").unwrap_err().desc,
            "Invalid parameter type for 'f', expected: integer"
        );
        assert_eq!(
            a.opt_str("t").unwrap_err().desc,
            "Invalid parameter type for 't', expected: string"
        );
        assert_eq!(
            a.str("gone").unwrap_err().desc,
            "Parameter 'gone' is missing"
        );
        a.finish().unwrap();
        let b = Args::new(v(r#"{"zzz": 1}"#).as_object().unwrap().clone());
        assert_eq!(
            b.finish().unwrap_err().desc,
            "Parameter 'zzz' is unexpected"
        );
    }
}

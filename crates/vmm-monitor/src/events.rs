//! Asynchronous QMP events and their fan-out.
//!
//! An event is serialised once, with its timestamp, and handed to every subscriber as one
//! complete line, in the calling thread and in emission order (subscribers are called under
//! one lock); a subscriber that reports failure is dropped. The VMM holds an [`EventSink`]
//! to emit events it originates (a guest shutdown, a CPU the guest finally ejected), from
//! any thread. A [`QmpServer`](crate::QmpServer) subscribes once and queues each line for
//! its event loop, which sends it to every negotiated client.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

/// Receives serialised events (one JSON object and its trailing newline). Returns `false`
/// when it can take no more, and is then unsubscribed.
pub type Subscriber = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// A QMP event ready to be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    /// Event name, e.g. `STOP` or `DEVICE_DELETED`.
    pub name: String,
    /// The `data` member; `None` leaves it out, as QEMU does for STOP and RESUME.
    pub data: Option<Map<String, Value>>,
    /// Seconds since the Unix epoch.
    pub seconds: u64,
    /// Microseconds within the second.
    pub microseconds: u32,
}

impl QmpEvent {
    /// An event stamped with the current time.
    pub fn now(name: &str, data: Option<Map<String, Value>>) -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        QmpEvent {
            name: name.to_owned(),
            data,
            seconds: since.as_secs(),
            microseconds: since.subsec_micros(),
        }
    }

    /// The wire form: `{"event": NAME, "data": {...}, "timestamp": {...}}`.
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("event".into(), Value::String(self.name.clone()));
        if let Some(data) = &self.data {
            obj.insert("data".into(), Value::Object(data.clone()));
        }
        obj.insert(
            "timestamp".into(),
            json!({"seconds": self.seconds, "microseconds": self.microseconds}),
        );
        Value::Object(obj)
    }
}

#[derive(Default)]
struct Bus {
    next_id: AtomicU64,
    subscribers: Mutex<Vec<(u64, Subscriber)>>,
}

/// A cheap-to-clone handle that broadcasts events to every subscriber.
#[derive(Clone, Default)]
pub struct EventSink {
    bus: Arc<Bus>,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self
            .bus
            .subscribers
            .lock()
            .map(|s| s.len())
            .unwrap_or_default();
        f.debug_struct("EventSink")
            .field("subscribers", &n)
            .finish()
    }
}

impl EventSink {
    /// A sink with no subscribers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a subscriber; the returned id removes it again with [`EventSink::unsubscribe`].
    pub fn subscribe(&self, subscriber: Subscriber) -> u64 {
        let id = self.bus.next_id.fetch_add(1, Ordering::Relaxed);
        self.bus
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((id, subscriber));
        id
    }

    /// Removes a subscriber (no-op for an unknown id).
    pub fn unsubscribe(&self, id: u64) {
        self.bus
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(i, _)| *i != id);
    }

    /// Sends a prepared event to every subscriber.
    pub fn send(&self, event: &QmpEvent) {
        let mut line = event.to_json().to_string();
        line.push('\n');
        self.bus
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(_, deliver)| deliver(&line));
    }

    /// Stamps and sends an event; `data` must be a JSON object or `null` (no data member).
    pub fn emit(&self, name: &str, data: Value) {
        let data = match data {
            Value::Object(map) => Some(map),
            _ => None,
        };
        self.send(&QmpEvent::now(name, data));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_wire_shape() {
        let mut data = Map::new();
        data.insert("device".into(), json!("cpu5"));
        let e = QmpEvent {
            name: "DEVICE_DELETED".into(),
            data: Some(data),
            seconds: 1700000000,
            microseconds: 42,
        };
        assert_eq!(
            e.to_json(),
            json!({"event": "DEVICE_DELETED", "data": {"device": "cpu5"},
                   "timestamp": {"seconds": 1700000000u64, "microseconds": 42}})
        );
        let stop = QmpEvent { data: None, ..e };
        assert!(stop.to_json().get("data").is_none());
    }

    #[test]
    fn failed_subscriber_is_dropped() {
        let sink = EventSink::new();
        let got = Arc::new(Mutex::new(Vec::<String>::new()));
        let g = got.clone();
        sink.subscribe(Box::new(move |l| {
            g.lock().unwrap().push(l.to_owned());
            true
        }));
        sink.subscribe(Box::new(|_| false));
        sink.emit("STOP", Value::Null);
        sink.emit("RESUME", Value::Null);
        let lines = got.lock().unwrap().clone();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("{\"event\":\"STOP\",\"timestamp\":{"));
        assert!(lines[0].ends_with("}\n"));
        assert_eq!(sink.bus.subscribers.lock().unwrap().len(), 1);
    }

    #[test]
    fn timestamp_is_now() {
        let e = QmpEvent::now("X", None);
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        assert!(wall.as_secs() - e.seconds <= 1);
        assert!(e.microseconds < 1_000_000);
    }
}

//! Serves the in-memory `FakeBackend` (2 sockets x 2 cores, 2 CPUs present) on a QMP socket
//! from one event-manager loop in the main thread, until a client sends `quit`.
//!
//! ```text
//! cargo run -p vmm-monitor --example fake_vm -- /tmp/fake.qmp
//! cargo run -p vmm-monitor --example fake_vm -- unix:/tmp/fake.qmp,server,wait=on
//! ```
//!
//! Then, in another shell: `socat - UNIX-CONNECT:/tmp/fake.qmp`, or any QMP client
//! (`qmp-shell /tmp/fake.qmp`). The process runs one thread whatever the number of
//! clients.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
use vmm_monitor::{parse_qmp_option, EventSink, FakeBackend, Monitor, QmpServer};

type Loop = EventManager<Box<dyn MutEventSubscriber + Send>>;

fn run(arg: &str) -> Result<(), Box<dyn std::error::Error>> {
    let opt = parse_qmp_option(arg)?;
    let backend = Arc::new(
        FakeBackend::new(2, 2, 1, 2)
            .with_reset()
            .with_power_button(),
    );
    let events = EventSink::new();
    let monitor = Monitor::new(backend.clone(), events);
    let server = QmpServer::bind(&opt.path, monitor)?;
    let handle = server.handle();
    let mut event_loop = Loop::new()?;
    let id = event_loop.add_subscriber(Box::new(server));
    println!("listening on {}", opt.path.display());
    std::io::stdout().flush()?;

    if opt.wait {
        // QEMU's wait=on: nothing runs before the first client is there.
        while handle.clients_accepted() == 0 && !handle.is_closed() {
            event_loop.run()?;
        }
        println!("client connected: starting the guest");
    }
    while !handle.quit_requested() && !handle.is_closed() {
        event_loop.run()?;
    }
    // The server closed its clients and removed its socket on `quit`; dropping it is all
    // that is left.
    drop(event_loop.remove_subscriber(id)?);
    println!("quit (backend told: {})", backend.quit_called());
    Ok(())
}

fn main() -> ExitCode {
    let Some(arg) = std::env::args().nth(1) else {
        eprintln!("usage: fake_vm SOCKET | unix:SOCKET,server[,wait=on|off]");
        return ExitCode::from(2);
    };
    match run(&arg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fake_vm: {e}");
            ExitCode::FAILURE
        }
    }
}

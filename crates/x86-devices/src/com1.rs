//! COM1: a 16550 UART (vm-superio's `Serial`) at ports `0x3f8..=0x3ff`, interrupting on
//! ISA IRQ 4 through an [`InterruptLine`] the VMM registers as an irqfd.
//!
//! Output goes to a [`ConsoleSink`]: an optional writer (stdout, a file, a socket client)
//! plus a [`ConsoleRing`] of the last [`CONSOLE_RING_BYTES`] bytes for fault reports.
//! Input is fed by the embedder ([`Com1::enqueue_input`], or the serial backends of
//! [`crate::serial`] on the event loop); when the guest empties the receive FIFO the
//! device signals [`Com1::rx_ready`], so a backend that paused on a full FIFO resumes.

use std::collections::VecDeque;
use std::io::{self, LineWriter, Write};
use std::sync::{Mutex, MutexGuard};

use cpu_topology::VcpuIndex;
use vm_superio::serial::SerialEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use crate::bus::{BusDevice, DeviceAction, Range};
use crate::irq::{InterruptLine, IrqError};

/// First port of COM1.
pub const COM1_BASE: u16 = 0x3f8;
/// COM1's ports.
pub const COM1_RANGE: Range = Range::ports(COM1_BASE, 8);
/// COM1's ISA interrupt (GSI).
pub const COM1_IRQ: u32 = 4;
/// Bytes of console output kept for error reports.
pub const CONSOLE_RING_BYTES: usize = 16 * 1024;

/// The last [`CONSOLE_RING_BYTES`] bytes the guest wrote to its console.
#[derive(Debug)]
pub struct ConsoleRing {
    bytes: VecDeque<u8>,
}

impl Default for ConsoleRing {
    fn default() -> Self {
        Self {
            bytes: VecDeque::with_capacity(CONSOLE_RING_BYTES),
        }
    }
}

impl ConsoleRing {
    /// Append bytes, dropping the oldest beyond the capacity (never reallocates).
    pub fn push(&mut self, data: &[u8]) {
        let data = &data[data.len().saturating_sub(CONSOLE_RING_BYTES)..];
        let excess = (self.bytes.len() + data.len()).saturating_sub(CONSOLE_RING_BYTES);
        self.bytes.drain(..excess);
        self.bytes.extend(data);
    }

    /// How many bytes the ring holds.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the guest wrote nothing yet.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The last `n` non-empty lines, oldest first, without carriage returns.
    pub fn tail_lines(&self, n: usize) -> Vec<String> {
        let (a, b) = self.bytes.as_slices();
        let text = String::from_utf8_lossy(&[a, b].concat()).into_owned();
        let lines: Vec<String> = text
            .split('\n')
            .map(|l| l.trim_end_matches('\r').to_string())
            .filter(|l| !l.trim().is_empty())
            .collect();
        lines[lines.len().saturating_sub(n)..].to_vec()
    }
}

/// A `Write` that is also `Send` and `Debug`, for the console output.
pub trait ConsoleWrite: Write + Send + std::fmt::Debug {}
impl<T: Write + Send + std::fmt::Debug> ConsoleWrite for T {}

/// Where COM1's output goes: a writer and the ring.
#[derive(Debug)]
pub struct ConsoleSink {
    out: Output,
    ring: ConsoleRing,
}

#[derive(Debug)]
enum Output {
    None,
    /// One write per line (stdout, files).
    Lines(LineWriter<Box<dyn ConsoleWrite>>),
    /// One write per guest write (interactive sockets: prompts without a newline).
    Direct(Box<dyn ConsoleWrite>),
}

impl ConsoleSink {
    /// Only the ring (`--serial null`).
    pub fn ring_only() -> Self {
        Self {
            out: Output::None,
            ring: ConsoleRing::default(),
        }
    }

    /// Line-buffered output to `out`.
    pub fn line_buffered(out: Box<dyn ConsoleWrite>) -> Self {
        Self {
            out: Output::Lines(LineWriter::new(out)),
            ring: ConsoleRing::default(),
        }
    }

    /// Unbuffered output to `out`: every byte the guest writes is passed on at once.
    pub fn unbuffered(out: Box<dyn ConsoleWrite>) -> Self {
        Self {
            out: Output::Direct(out),
            ring: ConsoleRing::default(),
        }
    }

    /// Write out a buffered partial line.
    pub fn flush_output(&mut self) -> io::Result<()> {
        match &mut self.out {
            Output::Lines(out) => out.flush(),
            Output::Direct(out) => out.flush(),
            Output::None => Ok(()),
        }
    }

    /// The ring of recent output.
    pub fn ring(&self) -> &ConsoleRing {
        &self.ring
    }
}

impl Write for ConsoleSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.ring.push(buf);
        // A closed stdout or a departed client must not stop the guest: the ring still
        // has the text.
        let _ = match &mut self.out {
            Output::Lines(out) => out.write_all(buf),
            Output::Direct(out) => out.write_all(buf),
            Output::None => Ok(()),
        };
        Ok(buf.len())
    }

    /// vm-superio flushes after every byte; line-buffered output stays line buffered and
    /// [`ConsoleSink::flush_output`] pushes out a partial line.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// vm-superio's interrupt trigger: one edge on the COM1 line.
#[derive(Debug)]
struct Irq(InterruptLine);

impl Trigger for Irq {
    type E = IrqError;

    fn trigger(&self) -> Result<(), IrqError> {
        self.0.pulse()
    }
}

/// Signals [`Com1::rx_ready`] when the guest has read the last received byte.
#[derive(Debug)]
struct RxReady(EventFd);

impl SerialEvents for RxReady {
    fn buffer_read(&self) {}
    fn out_byte(&self) {}
    fn tx_lost_byte(&self) {}
    fn in_buffer_empty(&self) {
        // Only a full eventfd counter fails; the reader is woken either way.
        let _ = self.0.write(1);
    }
}

type Uart = Serial<Irq, RxReady, ConsoleSink>;

/// Why COM1 could not be created.
#[derive(Debug, thiserror::Error)]
pub enum Com1Error {
    /// The interrupt eventfd.
    #[error("create COM1's interrupt")]
    Interrupt(#[source] IrqError),
    /// The receive-ready eventfd.
    #[error("create COM1's receive-ready eventfd")]
    RxReady(#[source] io::Error),
}

/// COM1 on the bus: register it at [`COM1_RANGE`].
#[derive(Debug)]
pub struct Com1 {
    uart: Mutex<Uart>,
    rx_ready: EventFd,
}

impl Com1 {
    /// COM1 on [`COM1_IRQ`] writing to `sink`.
    pub fn new(sink: ConsoleSink) -> Result<Self, Com1Error> {
        Self::with_gsi(sink, COM1_IRQ)
    }

    /// COM1 interrupting on `gsi`.
    pub fn with_gsi(sink: ConsoleSink, gsi: u32) -> Result<Self, Com1Error> {
        let line = InterruptLine::new("COM1", gsi).map_err(Com1Error::Interrupt)?;
        let rx = EventFd::new(libc::EFD_NONBLOCK).map_err(Com1Error::RxReady)?;
        let rx_ready = rx.try_clone().map_err(Com1Error::RxReady)?;
        Ok(Self {
            uart: Mutex::new(Serial::with_events(Irq(line), RxReady(rx), sink)),
            rx_ready,
        })
    }

    fn uart(&self) -> MutexGuard<'_, Uart> {
        self.uart.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register COM1's interrupt eventfd as a KVM irqfd (in-kernel irqchip).
    pub fn register_irqfd(&self, vm: &kvm_ioctls::VmFd) -> Result<(), kvm_ioctls::Error> {
        self.uart().interrupt_evt().0.register(vm)
    }

    /// COM1's interrupt GSI.
    pub fn gsi(&self) -> u32 {
        self.uart().interrupt_evt().0.gsi()
    }

    /// Written whenever the guest has emptied the receive FIFO: a backend waiting for
    /// room watches it (readable) and then calls [`Com1::enqueue_input`] again.
    pub fn rx_ready(&self) -> &EventFd {
        &self.rx_ready
    }

    /// Queue bytes for the guest. Returns how many were taken: at most the free space
    /// of the 64-byte receive FIFO (0 when full). While the guest keeps the UART in
    /// loopback mode, external input is dropped, as on real hardware, and reported taken.
    pub fn enqueue_input(&self, bytes: &[u8]) -> usize {
        let mut uart = self.uart();
        let n = uart.fifo_capacity().min(bytes.len());
        // Errors: a full FIFO (n == 0, nothing taken) or the interrupt write (the bytes
        // are queued either way).
        let _ = uart.enqueue_raw_bytes(&bytes[..n]);
        n
    }

    /// Free space in the receive FIFO.
    pub fn input_space(&self) -> usize {
        self.uart().fifo_capacity()
    }

    /// The last `n` lines of console output.
    pub fn console_tail(&self, n: usize) -> Vec<String> {
        self.uart().writer().ring().tail_lines(n)
    }

    /// Flush buffered console output (a line without its newline yet).
    pub fn flush_output(&self) {
        let _ = self.uart().writer_mut().flush_output();
    }
}

impl BusDevice for Com1 {
    fn read(&self, _: VcpuIndex, offset: u64, data: &mut [u8]) -> DeviceAction {
        data.fill(0);
        if let (Some(first), Ok(offset)) = (data.first_mut(), u8::try_from(offset)) {
            *first = self.uart().read(offset);
        }
        DeviceAction::Continue
    }

    fn write(&self, _: VcpuIndex, offset: u64, data: &[u8]) -> DeviceAction {
        if let (Some(&byte), Ok(offset)) = (data.first(), u8::try_from(offset)) {
            // The only failure is the irqfd write; the output is already in the ring.
            let _ = self.uart().write(offset, byte);
        }
        DeviceAction::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A writer the test can read back.
    #[derive(Debug, Clone, Default)]
    pub(crate) struct Shared(pub Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    const V: VcpuIndex = VcpuIndex(0);

    fn com1() -> (Com1, Shared) {
        let out = Shared::default();
        (
            Com1::new(ConsoleSink::line_buffered(Box::new(out.clone()))).unwrap(),
            out,
        )
    }

    fn pulses(c: &Com1) -> u64 {
        c.uart().interrupt_evt().0.take_pulses()
    }

    fn inb(c: &Com1, offset: u64) -> u8 {
        let mut b = [0u8];
        c.read(V, offset, &mut b);
        b[0]
    }

    #[test]
    fn output_reaches_the_writer_by_line_and_the_ring() {
        let (c, out) = com1();
        for b in b"Linux version 6.1\r\nsecond" {
            assert_eq!(c.write(V, 0, &[*b]), DeviceAction::Continue);
        }
        assert_eq!(out.0.lock().unwrap().as_slice(), b"Linux version 6.1\r\n");
        c.flush_output();
        assert_eq!(
            out.0.lock().unwrap().as_slice(),
            b"Linux version 6.1\r\nsecond"
        );
        assert_eq!(c.console_tail(5), ["Linux version 6.1", "second"]);
        // THR-empty interrupt enabled (IER bit 1): the next byte raises IRQ 4.
        c.write(V, 1, &[0x02]);
        c.write(V, 0, b"x");
        assert!(pulses(&c) >= 1);
        assert_eq!(inb(&c, 5) & 0x60, 0x60, "LSR: transmitter empty");
        assert_eq!(c.gsi(), COM1_IRQ);
    }

    #[test]
    fn ring_keeps_the_newest_bytes() {
        let mut ring = ConsoleRing::default();
        for i in 0..3000 {
            ring.push(format!("line {i}\n").as_bytes());
        }
        assert_eq!(ring.tail_lines(2), ["line 2998", "line 2999"]);
        assert_eq!(ring.len(), CONSOLE_RING_BYTES);
        ring.push(&vec![b'a'; 3 * CONSOLE_RING_BYTES]);
        assert_eq!(ring.len(), CONSOLE_RING_BYTES);
    }

    #[test]
    fn input_fills_the_fifo_and_rx_ready_fires_when_drained() {
        let (c, _) = com1();
        c.write(V, 1, &[0x01]); // receive-data interrupt enabled
        assert_eq!(c.enqueue_input(b"ls\n"), 3);
        assert!(pulses(&c) >= 1, "data ready raises IRQ 4");
        assert_eq!(inb(&c, 5) & 1, 1, "LSR data ready");
        assert_eq!(inb(&c, 0), b'l');
        assert_eq!(c.input_space(), 64 - 2);
        assert_eq!(c.enqueue_input(&[b'x'; 100]), 62, "only what fits");
        assert_eq!(c.enqueue_input(b"y"), 0);
        assert!(c.rx_ready().read().is_err(), "not drained yet");
        for _ in 0..64 {
            inb(&c, 0);
        }
        assert_eq!(c.rx_ready().read().unwrap(), 1);
        assert_eq!(c.input_space(), 64);
    }

    #[test]
    fn ring_only_sink_still_keeps_the_tail() {
        let c = Com1::new(ConsoleSink::ring_only()).unwrap();
        for b in b"panic: oops\n" {
            c.write(V, 0, &[*b]);
        }
        assert_eq!(c.console_tail(1), ["panic: oops"]);
    }
}

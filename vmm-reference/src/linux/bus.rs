//! The I/O bus of a Linux guest: COM1, the keyboard controller's reset line, the CPU
//! hot-plug register block, and nothing else.
//!
//! | ports | device |
//! |---|---|
//! | `0x3f8..=0x3ff` | COM1, a 16550 UART (vm-superio), interrupt on IRQ 4 via an irqfd |
//! | `0x60`, `0x64` | i8042: writing `0xfe` to `0x64` (pulse the reset line) ends the VM |
//! | `0xcd8..0xce4` | CPU hot-plug registers (x86-boot's `CpuHotplugController`), when the guest has hot-pluggable slots |
//!
//! Everything else reads as all ones and swallows writes, as an empty ISA bus does; MMIO
//! outside RAM likewise. The PIC, IOAPIC, PIT and local APICs are KVM's (in-kernel
//! irqchip), so their accesses never get here.

use std::collections::VecDeque;
use std::io::{self, LineWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use cpu_topology::VcpuIndex;
use vcpu_lifecycle::{ExitAction, ExitHandler};
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;
use x86_boot::acpi::{CpuHotplugConfig, CpuHotplugController, HOTPLUG_IO_LEN};
use x86_boot::CpuEntry;

/// First port of COM1.
pub const COM1_BASE: u16 = 0x3f8;
/// COM1's ISA interrupt.
pub const COM1_IRQ: u32 = 4;
/// The i8042 command/status port.
pub const I8042_COMMAND: u16 = 0x64;
/// The i8042 data port.
pub const I8042_DATA: u16 = 0x60;
/// i8042 command: pulse the CPU reset line (Linux's `reboot=k`).
pub const I8042_RESET: u8 = 0xfe;
/// Bytes of console output kept for error reports.
pub const CONSOLE_RING_BYTES: usize = 16 * 1024;

/// The reason a reset through the keyboard controller gives the vCPU thread.
pub const REBOOT_REASON: &str = "guest reboot (i8042 reset)";

/// The serial interrupt: an eventfd registered as KVM irqfd on [`COM1_IRQ`].
#[derive(Debug)]
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = io::Error;

    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}

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
        for &b in data {
            if self.bytes.len() == CONSOLE_RING_BYTES {
                self.bytes.pop_front();
            }
            self.bytes.push_back(b);
        }
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

/// Where COM1's output goes: a line-buffered writer (stdout or a file) and the ring.
#[derive(Debug)]
pub struct ConsoleSink {
    out: Option<LineWriter<Box<dyn WriteDebug>>>,
    ring: ConsoleRing,
}

/// A `Write` that is also `Send` and `Debug`, for the console output.
pub trait WriteDebug: Write + Send + std::fmt::Debug {}
impl<T: Write + Send + std::fmt::Debug> WriteDebug for T {}

impl ConsoleSink {
    /// Output to `out` (`None`: only the ring).
    pub fn new(out: Option<Box<dyn WriteDebug>>) -> Self {
        Self {
            out: out.map(LineWriter::new),
            ring: ConsoleRing::default(),
        }
    }

    /// Write out a buffered partial line.
    pub fn flush_output(&mut self) -> io::Result<()> {
        match &mut self.out {
            Some(out) => out.flush(),
            None => Ok(()),
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
        if let Some(out) = &mut self.out {
            // A closed stdout must not stop the guest: the ring still has the text.
            let _ = out.write_all(buf);
        }
        Ok(buf.len())
    }

    /// vm-superio flushes after every byte; the output stays line buffered (one write per
    /// line) and [`ConsoleSink::flush_output`] pushes out a partial line.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

type Com1 = Serial<IrqTrigger, vm_superio::serial::NoEvents, ConsoleSink>;

/// Exit handler of a Linux VM.
#[derive(Debug)]
pub struct LinuxBus {
    com1: Mutex<Com1>,
    reboot: AtomicBool,
    hotplug: Option<(u16, Mutex<CpuHotplugController>)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LinuxBus {
    /// A bus with COM1 raising `irq` and writing to `console`, and the hot-plug register
    /// block for `cpus` when `hotplug` is given.
    pub fn new(
        irq: IrqTrigger,
        console: ConsoleSink,
        hotplug: Option<(CpuHotplugConfig, &[CpuEntry])>,
    ) -> Self {
        Self {
            com1: Mutex::new(Serial::new(irq, console)),
            reboot: AtomicBool::new(false),
            hotplug: hotplug
                .map(|(cfg, cpus)| (cfg.io_base, Mutex::new(CpuHotplugController::new(cpus)))),
        }
    }

    /// Whether the guest asked for a reset through the keyboard controller.
    pub fn reboot_requested(&self) -> bool {
        self.reboot.load(Ordering::Acquire)
    }

    /// The last `n` lines of console output.
    pub fn console_tail(&self, n: usize) -> Vec<String> {
        lock(&self.com1).writer().ring().tail_lines(n)
    }

    /// Flush buffered console output (a line without its newline yet).
    pub fn flush_console(&self) {
        let _ = lock(&self.com1).writer_mut().flush_output();
    }

    fn hotplug_offset(&self, port: u16) -> Option<(u64, &Mutex<CpuHotplugController>)> {
        let (base, ctl) = self.hotplug.as_ref()?;
        let offset = port.checked_sub(*base)?;
        (u64::from(offset) < u64::from(HOTPLUG_IO_LEN)).then_some((u64::from(offset), ctl))
    }
}

fn com1_offset(port: u16) -> Option<u8> {
    port.checked_sub(COM1_BASE)
        .filter(|o| *o < 8)
        .map(|o| o as u8)
}

impl ExitHandler for LinuxBus {
    fn io_in(&self, _vcpu: VcpuIndex, port: u16, data: &mut [u8]) -> ExitAction {
        if let Some(offset) = com1_offset(port) {
            let value = lock(&self.com1).read(offset);
            data.fill(0);
            if let Some(first) = data.first_mut() {
                *first = value;
            }
        } else if port == I8042_COMMAND || port == I8042_DATA {
            // Status 0: no data, input buffer empty (Linux's reboot path waits for that).
            data.fill(0);
        } else if let Some((offset, ctl)) = self.hotplug_offset(port) {
            lock(ctl).read(offset, data);
        } else {
            data.fill(0xff);
        }
        ExitAction::Continue
    }

    fn io_out(&self, _vcpu: VcpuIndex, port: u16, data: &[u8]) -> ExitAction {
        if let Some(offset) = com1_offset(port) {
            if let Some(&byte) = data.first() {
                // The only failure is the irqfd write; the output is already in the ring.
                let _ = lock(&self.com1).write(offset, byte);
            }
        } else if port == I8042_COMMAND && data.first() == Some(&I8042_RESET) {
            self.reboot.store(true, Ordering::Release);
            return ExitAction::StopVm(REBOOT_REASON.into());
        } else if let Some((offset, ctl)) = self.hotplug_offset(port) {
            // Eject needs a monitor to act on; without one the slot simply empties.
            let _ = lock(ctl).write(offset, data);
        }
        ExitAction::Continue
    }

    fn mmio_read(&self, _vcpu: VcpuIndex, _addr: u64, data: &mut [u8]) -> ExitAction {
        data.fill(0xff);
        ExitAction::Continue
    }

    fn mmio_write(&self, _vcpu: VcpuIndex, _addr: u64, _data: &[u8]) -> ExitAction {
        ExitAction::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A writer the test can read back.
    #[derive(Debug, Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn bus(hotplug: bool) -> (LinuxBus, Shared, EventFd) {
        let out = Shared::default();
        let evt = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let cpus = [CpuEntry::new(0, true), CpuEntry::new(1, false)];
        let bus = LinuxBus::new(
            IrqTrigger(evt.try_clone().unwrap()),
            ConsoleSink::new(Some(Box::new(out.clone()))),
            hotplug.then_some((CpuHotplugConfig::default(), &cpus[..])),
        );
        (bus, out, evt)
    }

    fn outb(bus: &LinuxBus, port: u16, v: u8) -> ExitAction {
        bus.io_out(VcpuIndex(0), port, &[v])
    }

    fn inb(bus: &LinuxBus, port: u16) -> u8 {
        let mut b = [0u8];
        assert_eq!(bus.io_in(VcpuIndex(0), port, &mut b), ExitAction::Continue);
        b[0]
    }

    #[test]
    fn serial_output_reaches_the_console_and_the_ring() {
        let (bus, out, evt) = bus(false);
        for b in b"Linux version 6.1\r\nsecond" {
            assert_eq!(outb(&bus, COM1_BASE, *b), ExitAction::Continue);
        }
        // Line buffered: the complete line is out, the partial one after a flush.
        assert_eq!(out.0.lock().unwrap().as_slice(), b"Linux version 6.1\r\n");
        bus.flush_console();
        assert_eq!(
            out.0.lock().unwrap().as_slice(),
            b"Linux version 6.1\r\nsecond"
        );
        assert_eq!(bus.console_tail(5), ["Linux version 6.1", "second"]);
        assert_eq!(bus.console_tail(1), ["second"]);
        // THR-empty interrupt enabled (IER bit 1): the next byte raises IRQ 4.
        outb(&bus, COM1_BASE + 1, 0x02);
        outb(&bus, COM1_BASE, b'x');
        assert!(evt.read().unwrap() >= 1);
        // LSR says the transmitter is empty.
        assert_eq!(inb(&bus, COM1_BASE + 5) & 0x60, 0x60);
    }

    #[test]
    fn ring_keeps_the_newest_bytes() {
        let mut ring = ConsoleRing::default();
        for i in 0..3000 {
            ring.push(format!("line {i}\n").as_bytes());
        }
        assert_eq!(ring.tail_lines(2), ["line 2998", "line 2999"]);
        assert_eq!(ring.bytes.len(), CONSOLE_RING_BYTES);
    }

    #[test]
    fn i8042_reset_ends_the_vm() {
        let (bus, _, _) = bus(false);
        assert_eq!(inb(&bus, I8042_COMMAND), 0);
        assert_eq!(outb(&bus, I8042_COMMAND, 0xaa), ExitAction::Continue);
        assert!(!bus.reboot_requested());
        assert_eq!(
            outb(&bus, I8042_COMMAND, I8042_RESET),
            ExitAction::StopVm(REBOOT_REASON.into())
        );
        assert!(bus.reboot_requested());
    }

    #[test]
    fn hotplug_registers_answer_only_when_configured() {
        let (bus, _, _) = bus(true);
        let base = CpuHotplugConfig::default().io_base;
        // Slot 0 is present, slot 1 empty.
        assert_eq!(inb(&bus, base + 4), 1);
        outb(&bus, base, 1);
        assert_eq!(inb(&bus, base), 1);
        assert_eq!(inb(&bus, base + 4), 0);
        // Out of range selector: status 0.
        outb(&bus, base, 7);
        assert_eq!(inb(&bus, base + 4), 0);
        let (plain, _, _) = self::bus(false);
        assert_eq!(inb(&plain, base + 4), 0xff);
    }

    #[test]
    fn unassigned_ports_and_mmio_read_all_ones() {
        let (bus, _, _) = bus(false);
        assert_eq!(inb(&bus, 0x2f8), 0xff);
        let mut d = [0u8; 4];
        bus.io_in(VcpuIndex(0), 0xcfc, &mut d);
        assert_eq!(d, [0xff; 4]);
        bus.mmio_read(VcpuIndex(0), 0xd000_0000, &mut d);
        assert_eq!(d, [0xff; 4]);
    }
}

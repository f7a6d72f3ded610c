//! The I/O bus of a Linux guest: COM1, the keyboard controller's reset line, the ACPI
//! power registers, the CPU hot-plug register block, and nothing else.
//!
//! | ports | device |
//! |---|---|
//! | `0x3f8..=0x3ff` | COM1, a 16550 UART (vm-superio), interrupt on IRQ 4 via an irqfd |
//! | `0x60`, `0x64` | i8042: writing `0xfe` to `0x64` (pulse the reset line) ends the VM |
//! | `0x3c0..0x3c3` | ACPI sleep control, sleep status and reset registers (x86-boot's `PowerRegisters`): S5 powers off, the reset value reboots |
//! | `0xcd8..0xce4` | CPU hot-plug registers (x86-boot's `CpuHotplugController`), when the guest has hot-pluggable slots |
//!
//! The bus also owns the Generic Event Device's interrupts: one eventfd per GED event
//! (CPU hot-plug on GSI 5, the power button on GSI 6), registered as KVM irqfds by
//! [`LinuxBus::register_irqfds`] together with COM1's. An irqfd without a resample fd
//! makes KVM assert and at once deassert the line, one edge per eventfd write, which is
//! what the GED's edge-triggered, active-high `Interrupt` descriptors ask for.
//!
//! Everything else reads as all ones and swallows writes, as an empty ISA bus does; MMIO
//! outside RAM likewise. The PIC, IOAPIC, PIT and local APICs are KVM's (in-kernel
//! irqchip), so their accesses never get here.

use std::collections::VecDeque;
use std::io::{self, LineWriter, Write};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};

use cpu_topology::VcpuIndex;
use vcpu_lifecycle::{ExitAction, ExitHandler};
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;
use x86_boot::acpi::{
    CpuHotplugConfig, CpuHotplugController, HotplugError, HotplugEvent, PowerConfig, PowerEvent,
    PowerRegisters, HOTPLUG_IO_LEN, POWER_IO_LEN,
};
use x86_boot::CpuEntry;

use super::GuestExit;

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
/// The reason a write of the reset value to the ACPI reset register gives.
pub const RESET_REASON: &str = "guest reboot (ACPI reset register)";
/// The reason an S5 write to the ACPI sleep control register gives.
pub const POWER_OFF_REASON: &str = "guest power off (ACPI S5)";

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

/// Where COM1's output goes: a writer (stdout, a file, a socket client) and the ring.
#[derive(Debug)]
pub struct ConsoleSink {
    out: Option<Output>,
    ring: ConsoleRing,
}

#[derive(Debug)]
enum Output {
    /// One write per line (stdout, files).
    Lines(LineWriter<Box<dyn WriteDebug>>),
    /// One write per guest write (interactive sockets: prompts without a newline).
    Direct(Box<dyn WriteDebug>),
}

/// A `Write` that is also `Send` and `Debug`, for the console output.
pub trait WriteDebug: Write + Send + std::fmt::Debug {}
impl<T: Write + Send + std::fmt::Debug> WriteDebug for T {}

impl ConsoleSink {
    /// Line-buffered output to `out` (`None`: only the ring).
    pub fn new(out: Option<Box<dyn WriteDebug>>) -> Self {
        Self {
            out: out.map(|o| Output::Lines(LineWriter::new(o))),
            ring: ConsoleRing::default(),
        }
    }

    /// Unbuffered output to `out`: every byte the guest writes is passed on at once.
    pub fn unbuffered(out: Box<dyn WriteDebug>) -> Self {
        Self {
            out: Some(Output::Direct(out)),
            ring: ConsoleRing::default(),
        }
    }

    /// Write out a buffered partial line.
    pub fn flush_output(&mut self) -> io::Result<()> {
        match &mut self.out {
            Some(Output::Lines(out)) => out.flush(),
            Some(Output::Direct(out)) => out.flush(),
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
        // A closed stdout or a departed client must not stop the guest: the ring still
        // has the text.
        let _ = match &mut self.out {
            Some(Output::Lines(out)) => out.write_all(buf),
            Some(Output::Direct(out)) => out.write_all(buf),
            None => Ok(()),
        };
        Ok(buf.len())
    }

    /// vm-superio flushes after every byte; line-buffered output stays line buffered
    /// (one write per line) and [`ConsoleSink::flush_output`] pushes out a partial line.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

type Com1 = Serial<IrqTrigger, vm_superio::serial::NoEvents, ConsoleSink>;

/// What the bus routes besides COM1 and the i8042 (from the boot tables).
#[derive(Debug, Clone, Copy, Default)]
pub struct BusConfig<'a> {
    /// The CPU hot-plug register block and every slot (`None`: no hot-pluggable slot).
    pub hotplug: Option<(CpuHotplugConfig, &'a [CpuEntry])>,
    /// The ACPI power registers and the power button (`None`: neither).
    pub power: Option<PowerConfig>,
}

/// Why the bus could not be built or could not raise an interrupt.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// An interrupt eventfd could not be created.
    #[error("create the {line} interrupt eventfd")]
    EventFd {
        /// Which interrupt (`COM1`, `CPU hot-plug`, `power button`).
        line: &'static str,
        /// The eventfd error.
        #[source]
        source: io::Error,
    },
    /// `system_powerdown` on a VM built without a power button.
    #[error("the VM has no ACPI power button")]
    NoPowerButton,
    /// The eventfd write that raises an interrupt failed.
    #[error("raise the {line} interrupt (GSI {gsi})")]
    Interrupt {
        /// Which interrupt.
        line: &'static str,
        /// Its GSI.
        gsi: u32,
        /// The eventfd error.
        #[source]
        source: io::Error,
    },
}

/// An edge-triggered interrupt line: an eventfd the bus writes, registered as a KVM
/// irqfd on `gsi`.
#[derive(Debug)]
struct GsiLine {
    name: &'static str,
    gsi: u32,
    evt: EventFd,
}

impl GsiLine {
    fn new(name: &'static str, gsi: u32) -> Result<Self, BusError> {
        let evt = EventFd::new(libc::EFD_NONBLOCK)
            .map_err(|source| BusError::EventFd { line: name, source })?;
        Ok(Self { name, gsi, evt })
    }

    /// One edge: KVM asserts and deasserts the GSI for each write.
    fn pulse(&self) -> io::Result<()> {
        self.evt.write(1)
    }
}

#[derive(Debug)]
struct Hotplug {
    base: u16,
    ctl: Mutex<CpuHotplugController>,
    ejected: Mutex<Vec<u32>>,
    line: GsiLine,
}

#[derive(Debug)]
struct Power {
    base: u16,
    button: Option<GsiLine>,
    /// A sleep state other than S5 was requested (warned once).
    warned_sleep: AtomicBool,
}

/// Values of [`LinuxBus::exit`].
const EXIT_NONE: u8 = 0;
const EXIT_REBOOT: u8 = 1;
const EXIT_POWER_OFF: u8 = 2;

/// Exit handler of a Linux VM.
#[derive(Debug)]
pub struct LinuxBus {
    com1: Mutex<Com1>,
    com1_gsi: u32,
    exit: AtomicU8,
    hotplug: Option<Hotplug>,
    power: Option<Power>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn offset_in(port: u16, base: u16, len: u16) -> Option<u64> {
    let offset = port.checked_sub(base)?;
    (offset < len).then_some(u64::from(offset))
}

impl LinuxBus {
    /// A bus with COM1 on [`COM1_IRQ`] writing to `console`, the i8042 reset line, and
    /// the power registers and hot-plug block `config` names. Creates every interrupt
    /// eventfd; [`LinuxBus::register_irqfds`] hands them to KVM.
    pub fn new(console: ConsoleSink, config: BusConfig<'_>) -> Result<Self, BusError> {
        let com1_irq = GsiLine::new("COM1", COM1_IRQ)?;
        let hotplug = match config.hotplug {
            Some((cfg, cpus)) => Some(Hotplug {
                base: cfg.io_base,
                ctl: Mutex::new(CpuHotplugController::new(cpus)),
                ejected: Mutex::new(Vec::new()),
                line: GsiLine::new("CPU hot-plug", cfg.ged_gsi)?,
            }),
            None => None,
        };
        let power = match config.power {
            Some(cfg) => Some(Power {
                base: cfg.io_base,
                button: cfg
                    .button_gsi
                    .map(|gsi| GsiLine::new("power button", gsi))
                    .transpose()?,
                warned_sleep: AtomicBool::new(false),
            }),
            None => None,
        };
        Ok(Self {
            com1: Mutex::new(Serial::new(IrqTrigger(com1_irq.evt), console)),
            com1_gsi: com1_irq.gsi,
            exit: AtomicU8::new(EXIT_NONE),
            hotplug,
            power,
        })
    }

    /// Register every interrupt of the bus (COM1, the GED's CPU hot-plug and power button
    /// events) as a KVM irqfd on its GSI. Needs the in-kernel irqchip.
    pub fn register_irqfds(&self, vm: &kvm_ioctls::VmFd) -> Result<(), kvm_ioctls::Error> {
        vm.register_irqfd(&lock(&self.com1).interrupt_evt().0, self.com1_gsi)?;
        for line in self.ged_lines() {
            vm.register_irqfd(&line.evt, line.gsi)?;
        }
        Ok(())
    }

    /// The GED's interrupt lines: `(GSI, what it signals)`.
    pub fn ged_interrupts(&self) -> Vec<(u32, &'static str)> {
        self.ged_lines().map(|l| (l.gsi, l.name)).collect()
    }

    fn ged_lines(&self) -> impl Iterator<Item = &GsiLine> {
        let hotplug = self.hotplug.as_ref().map(|h| &h.line);
        let button = self.power.as_ref().and_then(|p| p.button.as_ref());
        hotplug.into_iter().chain(button)
    }

    fn hotplug(&self) -> Result<&Hotplug, HotplugError> {
        self.hotplug.as_ref().ok_or(HotplugError::NotConfigured)
    }

    fn pulse_hotplug(hp: &Hotplug) -> Result<(), HotplugError> {
        hp.line.pulse().map_err(|source| HotplugError::Interrupt {
            gsi: hp.line.gsi,
            source,
        })
    }

    /// Mark slot `uid` populated with an insert pending and raise the CPU hot-plug GED
    /// interrupt, so the guest's `_EVT` rescans the slots and onlines the CPU. Create the
    /// slot's vCPU (waiting for INIT/SIPI) before this.
    pub fn plug_cpu(&self, uid: u32) -> Result<(), HotplugError> {
        let hp = self.hotplug()?;
        lock(&hp.ctl).plug(uid)?;
        Self::pulse_hotplug(hp)
    }

    /// Ask the guest to release slot `uid` (remove pending) and raise the CPU hot-plug
    /// GED interrupt. The guest offlines the CPU and ejects the slot, which
    /// [`LinuxBus::take_ejected`] then reports (or never does, if the guest refuses).
    pub fn request_cpu_unplug(&self, uid: u32) -> Result<(), HotplugError> {
        let hp = self.hotplug()?;
        lock(&hp.ctl).request_unplug(uid)?;
        Self::pulse_hotplug(hp)
    }

    /// Slots the guest ejected (`_EJ0`) since the last call, in eject order; their vCPUs
    /// can be stopped. Empty without a hot-plug block.
    pub fn take_ejected(&self) -> Vec<u32> {
        match &self.hotplug {
            Some(hp) => std::mem::take(&mut *lock(&hp.ejected)),
            None => Vec::new(),
        }
    }

    /// Whether hot-plug slot `uid` holds a CPU (false without a hot-plug block).
    pub fn cpu_slot_enabled(&self, uid: u32) -> bool {
        self.hotplug
            .as_ref()
            .is_some_and(|hp| lock(&hp.ctl).is_enabled(uid))
    }

    /// Press the ACPI power button: raise its GED interrupt, so the guest's `_EVT`
    /// notifies `\_SB.PWRB` (0x80) and the guest shuts down in an orderly way (QMP
    /// `system_powerdown`).
    pub fn press_power_button(&self) -> Result<(), BusError> {
        let line = self
            .power
            .as_ref()
            .and_then(|p| p.button.as_ref())
            .ok_or(BusError::NoPowerButton)?;
        line.pulse().map_err(|source| BusError::Interrupt {
            line: line.name,
            gsi: line.gsi,
            source,
        })
    }

    /// How the guest ended the VM, once a vCPU got [`ExitAction::StopVm`] from the bus
    /// (reset through the i8042 or the ACPI reset register, or ACPI power off).
    pub fn guest_exit(&self) -> Option<GuestExit> {
        match self.exit.load(Ordering::Acquire) {
            EXIT_REBOOT => Some(GuestExit::Reboot),
            EXIT_POWER_OFF => Some(GuestExit::PowerOff),
            _ => None,
        }
    }

    /// Whether the guest asked for a reset (i8042 or ACPI reset register).
    pub fn reboot_requested(&self) -> bool {
        self.guest_exit() == Some(GuestExit::Reboot)
    }

    /// Queue bytes for COM1's receiver (console input). Returns how many fit the
    /// 64-byte receive FIFO; the caller retries the rest later.
    pub fn queue_console_input(&self, bytes: &[u8]) -> usize {
        let mut com1 = lock(&self.com1);
        let n = com1.fifo_capacity().min(bytes.len());
        // The only failure after queueing is the interrupt write (or a full FIFO when
        // `n` is 0); the bytes are in the FIFO either way.
        let _ = com1.enqueue_raw_bytes(&bytes[..n]);
        n
    }

    /// Free space in COM1's receive FIFO.
    pub fn console_input_space(&self) -> usize {
        lock(&self.com1).fifo_capacity()
    }

    /// The last `n` lines of console output.
    pub fn console_tail(&self, n: usize) -> Vec<String> {
        lock(&self.com1).writer().ring().tail_lines(n)
    }

    /// Flush buffered console output (a line without its newline yet).
    pub fn flush_console(&self) {
        let _ = lock(&self.com1).writer_mut().flush_output();
    }

    fn stop(&self, exit: u8, reason: &str) -> ExitAction {
        self.exit.store(exit, Ordering::Release);
        ExitAction::StopVm(reason.into())
    }

    fn hotplug_offset(&self, port: u16) -> Option<(u64, &Hotplug)> {
        let hp = self.hotplug.as_ref()?;
        offset_in(port, hp.base, HOTPLUG_IO_LEN).map(|o| (o, hp))
    }

    fn power_offset(&self, port: u16) -> Option<(u64, &Power)> {
        let p = self.power.as_ref()?;
        offset_in(port, p.base, POWER_IO_LEN).map(|o| (o, p))
    }

    fn power_write(&self, power: &Power, offset: u64, data: &[u8]) -> ExitAction {
        match PowerRegisters::write(offset, data) {
            Some(PowerEvent::PowerOff) => self.stop(EXIT_POWER_OFF, POWER_OFF_REASON),
            Some(PowerEvent::Reset) => self.stop(EXIT_REBOOT, RESET_REASON),
            Some(PowerEvent::Sleep { slp_typ }) => {
                if !power.warned_sleep.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "guest asked for ACPI sleep type {slp_typ}, which the tables do not \
                         offer (only S5, power off): ignored"
                    );
                }
                ExitAction::Continue
            }
            None => ExitAction::Continue,
        }
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
        } else if let Some((offset, _)) = self.power_offset(port) {
            PowerRegisters::read(offset, data);
        } else if let Some((offset, hp)) = self.hotplug_offset(port) {
            lock(&hp.ctl).read(offset, data);
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
            return self.stop(EXIT_REBOOT, REBOOT_REASON);
        } else if let Some((offset, power)) = self.power_offset(port) {
            return self.power_write(power, offset, data);
        } else if let Some((offset, hp)) = self.hotplug_offset(port) {
            let event = lock(&hp.ctl).write(offset, data);
            if let Some(HotplugEvent::Eject { uid }) = event {
                lock(&hp.ejected).push(uid);
            }
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

    fn bus_with(hotplug: bool, power: Option<PowerConfig>) -> (LinuxBus, Shared, EventFd) {
        let out = Shared::default();
        let cpus = [CpuEntry::new(0, true), CpuEntry::new(1, false)];
        let bus = LinuxBus::new(
            ConsoleSink::new(Some(Box::new(out.clone()))),
            BusConfig {
                hotplug: hotplug.then_some((CpuHotplugConfig::default(), &cpus[..])),
                power,
            },
        )
        .unwrap();
        let evt = lock(&bus.com1).interrupt_evt().0.try_clone().unwrap();
        (bus, out, evt)
    }

    fn bus(hotplug: bool) -> (LinuxBus, Shared, EventFd) {
        bus_with(hotplug, None)
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

    fn power_bus(hotplug: bool) -> LinuxBus {
        bus_with(hotplug, Some(PowerConfig::default())).0
    }

    /// How many pulses an interrupt line got since the last call.
    fn pulses(line: &GsiLine) -> u64 {
        line.evt.read().unwrap_or(0)
    }

    #[test]
    fn acpi_s5_powers_off() {
        let bus = power_bus(false);
        // acpi_hw_extended_sleep(): clear WAK_STS in the status register, then write
        // SLP_TYP 5 << 2 | SLP_EN to the control register.
        assert_eq!(outb(&bus, 0x3c1, 0x80), ExitAction::Continue);
        assert_eq!(bus.guest_exit(), None);
        assert_eq!(
            outb(&bus, 0x3c0, 0x34),
            ExitAction::StopVm(POWER_OFF_REASON.into())
        );
        assert_eq!(bus.guest_exit(), Some(GuestExit::PowerOff));
        assert!(!bus.reboot_requested());
        assert_eq!(inb(&bus, 0x3c1), 0, "no wake status");
    }

    #[test]
    fn acpi_reset_register_reboots() {
        let bus = power_bus(false);
        assert_eq!(outb(&bus, 0x3c2, 0x00), ExitAction::Continue);
        assert_eq!(
            outb(&bus, 0x3c2, x86_boot::acpi::power::RESET_VALUE),
            ExitAction::StopVm(RESET_REASON.into())
        );
        assert_eq!(bus.guest_exit(), Some(GuestExit::Reboot));
        assert!(bus.reboot_requested());
    }

    #[test]
    fn other_sleep_states_are_ignored() {
        let bus = power_bus(false);
        for byte in [0x24, 0x2c, 0x2c, 0x14] {
            assert_eq!(outb(&bus, 0x3c0, byte), ExitAction::Continue, "{byte:#x}");
        }
        assert_eq!(bus.guest_exit(), None);
        assert!(bus
            .power
            .as_ref()
            .unwrap()
            .warned_sleep
            .load(Ordering::Relaxed));
    }

    #[test]
    fn power_ports_are_empty_without_power() {
        let (bus, _, _) = bus(false);
        assert_eq!(outb(&bus, 0x3c0, 0x34), ExitAction::Continue);
        assert_eq!(outb(&bus, 0x3c2, 0x01), ExitAction::Continue);
        assert_eq!(inb(&bus, 0x3c0), 0xff);
        assert_eq!(bus.guest_exit(), None);
    }

    #[test]
    fn power_button_pulses_its_own_line() {
        let bus = power_bus(true);
        assert_eq!(
            bus.ged_interrupts(),
            [(5, "CPU hot-plug"), (6, "power button")]
        );
        bus.press_power_button().unwrap();
        let button = bus.power.as_ref().unwrap().button.as_ref().unwrap();
        assert_eq!(pulses(button), 1);
        assert_eq!(pulses(&bus.hotplug.as_ref().unwrap().line), 0);

        let (plain, _, _) = self::bus(false);
        assert!(plain.ged_interrupts().is_empty());
        assert_eq!(
            plain.press_power_button().unwrap_err().to_string(),
            "the VM has no ACPI power button"
        );
        let no_button = bus_with(
            false,
            Some(PowerConfig {
                button_gsi: None,
                ..PowerConfig::default()
            }),
        )
        .0;
        assert!(matches!(
            no_button.press_power_button(),
            Err(BusError::NoPowerButton)
        ));
    }

    /// What the DSDT's `CSCN` does for one slot: select it, read the status.
    fn slot_status(bus: &LinuxBus, uid: u32) -> u8 {
        let base = CpuHotplugConfig::default().io_base;
        bus.io_out(VcpuIndex(0), base, &uid.to_le_bytes());
        inb(bus, base + 4)
    }

    #[test]
    fn plug_unplug_and_eject_through_the_bus() {
        let bus = power_bus(true);
        let base = CpuHotplugConfig::default().io_base;
        let line = &bus.hotplug.as_ref().unwrap().line;

        bus.plug_cpu(1).unwrap();
        assert_eq!(pulses(line), 1, "plug raises the GED interrupt");
        assert_eq!(slot_status(&bus, 1), 0b011, "enabled, insert pending");
        assert!(bus.cpu_slot_enabled(1));
        assert_eq!(
            bus.plug_cpu(1).unwrap_err().to_string(),
            "CPU slot 1 is already populated"
        );
        assert_eq!(pulses(line), 0, "no pulse for a refused plug");

        bus.request_cpu_unplug(1).unwrap();
        assert_eq!(pulses(line), 1);
        assert_eq!(slot_status(&bus, 1) & 0b100, 0b100, "remove pending");
        assert!(bus.take_ejected().is_empty());
        // _EJ0: select slot 1, write CEJF.
        bus.io_out(VcpuIndex(0), base, &1u32.to_le_bytes());
        bus.io_out(VcpuIndex(0), base + 4, &[0b1000]);
        assert_eq!(bus.take_ejected(), [1]);
        assert!(bus.take_ejected().is_empty(), "taken once");
        assert!(!bus.cpu_slot_enabled(1));
        assert_eq!(
            bus.request_cpu_unplug(1).unwrap_err().to_string(),
            "CPU slot 1 is empty"
        );
        assert_eq!(
            bus.plug_cpu(7).unwrap_err().to_string(),
            "CPU slot 7 does not exist (2 slots)"
        );
    }

    #[test]
    fn hotplug_requests_need_a_hotplug_block() {
        let bus = power_bus(false);
        for err in [bus.plug_cpu(1), bus.request_cpu_unplug(0)] {
            assert_eq!(
                err.unwrap_err().to_string(),
                "CPU hot-plug is not configured (start the VM with maxcpus above cpus)"
            );
        }
        assert!(bus.take_ejected().is_empty());
    }

    #[test]
    fn console_input_fills_the_receive_fifo() {
        let (bus, _, evt) = bus(false);
        // Receive-data interrupt enabled (IER bit 0).
        outb(&bus, COM1_BASE + 1, 0x01);
        assert_eq!(bus.queue_console_input(b"ls\n"), 3);
        assert!(evt.read().unwrap() >= 1, "data ready raises IRQ 4");
        assert_eq!(inb(&bus, COM1_BASE + 5) & 1, 1, "LSR data ready");
        assert_eq!(inb(&bus, COM1_BASE), b'l');
        assert_eq!(bus.console_input_space(), 64 - 2);
        assert_eq!(bus.queue_console_input(&[b'x'; 100]), 62, "only what fits");
        assert_eq!(bus.queue_console_input(b"y"), 0);
    }

    #[test]
    fn kvm_register_irqfds_claims_every_line() {
        crate::testing::require_kvm();
        let kvm = kvm_ioctls::Kvm::new().unwrap();
        let vm = kvm.create_vm().unwrap();
        vm.create_irq_chip().unwrap();
        let bus = power_bus(true);
        bus.register_irqfds(&vm).unwrap();
        // A second registration of the same eventfds is refused (EBUSY): all three are in.
        assert!(bus.register_irqfds(&vm).is_err());
        bus.press_power_button().unwrap();
        bus.plug_cpu(1).unwrap();
    }

    /// The master 8259's state: KVM's default routing sends GSIs 0..15 to the PIC as well
    /// as the IOAPIC, and the PIC keeps a latched edge in IRR while `last_irr` follows the
    /// line level, which makes a pulse observable after the fact.
    fn master_pic(vm: &kvm_ioctls::VmFd) -> kvm_bindings::kvm_pic_state {
        let mut chip = kvm_bindings::kvm_irqchip {
            chip_id: kvm_bindings::KVM_IRQCHIP_PIC_MASTER,
            ..Default::default()
        };
        vm.get_irqchip(&mut chip).unwrap();
        // SAFETY: for chip_id KVM_IRQCHIP_PIC_MASTER, KVM_GET_IRQCHIP fills the `pic`
        // member of the union; it is plain bytes, valid for any bit pattern.
        unsafe { chip.chip.pic }
    }

    #[test]
    fn kvm_ged_pulses_are_single_edges() {
        crate::testing::require_kvm();
        let kvm = kvm_ioctls::Kvm::new().unwrap();
        let vm = kvm.create_vm().unwrap();
        vm.create_irq_chip().unwrap();
        let bus = power_bus(true);
        bus.register_irqfds(&vm).unwrap();
        let (hotplug, button) = (1u8 << 5, 1u8 << 6);
        assert_eq!(master_pic(&vm).irr & (hotplug | button), 0);
        bus.press_power_button().unwrap();
        bus.plug_cpu(1).unwrap();
        // KVM injects irqfd writes from a work queue: wait for both edges.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let pic = loop {
            let pic = master_pic(&vm);
            if pic.irr & (hotplug | button) == hotplug | button
                || std::time::Instant::now() > deadline
            {
                break pic;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert_eq!(
            pic.irr & (hotplug | button),
            hotplug | button,
            "edges latched"
        );
        assert_eq!(pic.last_irr & (hotplug | button), 0, "lines low again");
        assert_eq!(pic.irr & 1 << 4, 0, "COM1 did not fire");
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

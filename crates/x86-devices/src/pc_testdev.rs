//! QEMU's `pc-testdev` (hw/misc/pc-testdev.c), the ISA test device kvm-unit-tests uses.
//! Ranges as QEMU 7.2's `info mtree` shows them:
//!
//! | range | QEMU name | behaviour | used by |
//! |---|---|---|---|
//! | ports `0xe0..=0xe3` | `pc-testdev-ioport` | a 32-bit data register: writes store the bytes at their offset, reads return them | emulator (string I/O), realmode (in/out of each width) |
//! | ports `0xe4..=0xe7` | `pc-testdev-flush-page` | a 32-bit write names a guest-physical page to "flush" | eventinj |
//! | ports `0xe8..=0xeb` | `pc-testdev-ioport-byte` | the same data register, byte-wise | - |
//! | ports `0x2000..=0x2017` | `pc-testdev-irq-line` | a byte write to `0x2000 + n` sets ISA/IOAPIC line `n` to `value != 0`; a wider write is split into byte writes, one line per byte | ioapic, realmode (`outl` to `0x200b`), and tests through `set_irq_line()` |
//! | MMIO `0xff000000..=0xff00ffff` | `pc-testdev-iomem` | 64 KiB of plain memory behind MMIO exits | emulator, lam (`IORAM_BASE_PHYS`) |
//!
//! What this implementation leaves out or changes: the flush page calls
//! [`TestdevHooks::flush_page`], whose default does nothing (QEMU `mprotect`s the page
//! so KVM drops its mapping and the next guest access faults in the middle of event
//! injection; without it eventinj still passes, that path is just not exercised). IRQ
//! line writes call [`TestdevHooks::set_irq_line`] (the embedder wires it to
//! `KVM_IRQ_LINE`; the default does nothing). String I/O longer than four bytes (`rep
//! outs`/`rep ins`) is taken as byte elements, because an exit handler sees `size *
//! count` bytes without the element size: right for the suite's `rep outsb`/`rep insb`,
//! wrong for `rep outsw` (used only by the AMD SEV test).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use cpu_topology::VcpuIndex;

use crate::bus::{BusBuilder, BusDevice, BusError, DeviceAction, FirstDevice, Range};

/// The data register.
pub const TESTDEV_IOPORT: Range = Range::ports(0xe0, 4);
/// The flush-page register.
pub const TESTDEV_FLUSH: Range = Range::ports(0xe4, 4);
/// The data register, byte-wise.
pub const TESTDEV_IOPORT_BYTE: Range = Range::ports(0xe8, 4);
/// One port per interrupt line.
pub const TESTDEV_IRQ_LINES: Range = Range::ports(0x2000, 24);
/// The MMIO memory.
pub const TESTDEV_IOMEM: Range = Range::mmio(0xff00_0000, 0x1_0000);

/// What pc-testdev needs from the VMM.
pub trait TestdevHooks: Send + Sync + std::fmt::Debug {
    /// Set interrupt line `line` (a GSI, 0..24) to `level` (`KVM_IRQ_LINE`).
    fn set_irq_line(&self, line: u32, level: bool) {
        let _ = (line, level);
    }
    /// Make the next guest access to page `gpa` fault into KVM (QEMU: `mprotect` it
    /// off and on).
    fn flush_page(&self, gpa: u64) {
        let _ = gpa;
    }
}

/// Hooks that do nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;
impl TestdevHooks for NoHooks {}

/// Hooks that drive the IRQ lines through `KVM_IRQ_LINE` on the in-kernel irqchip (the
/// flush page stays a no-op).
#[derive(Debug)]
pub struct KvmIrqLines(pub Arc<kvm_ioctls::VmFd>);

impl TestdevHooks for KvmIrqLines {
    fn set_irq_line(&self, line: u32, level: bool) {
        if let Err(e) = self.0.set_irq_line(line, level) {
            log::warn!("pc-testdev: set IRQ line {line} to {level}: {e}");
        }
    }
}

/// The pc-testdev state, shared by its five ranges.
#[derive(Debug)]
pub struct PcTestdev {
    data: AtomicU32,
    iomem: Mutex<Box<[u8]>>,
    hooks: Arc<dyn TestdevHooks>,
}

impl PcTestdev {
    /// A test device calling `hooks` for IRQ lines and page flushes.
    pub fn new(hooks: Arc<dyn TestdevHooks>) -> Arc<Self> {
        Arc::new(Self {
            data: AtomicU32::new(0),
            iomem: Mutex::new(vec![0u8; TESTDEV_IOMEM.len as usize].into_boxed_slice()),
            hooks,
        })
    }

    /// Put every range of the device on `bus`.
    pub fn register<F: FirstDevice>(
        self: &Arc<Self>,
        bus: BusBuilder<F>,
    ) -> Result<BusBuilder<F>, BusError> {
        let part = |kind| {
            Arc::new(Part {
                dev: self.clone(),
                kind,
            }) as Arc<dyn BusDevice>
        };
        bus.io("pc-testdev-ioport", TESTDEV_IOPORT, part(Kind::Data))?
            .io("pc-testdev-flush-page", TESTDEV_FLUSH, part(Kind::Flush))?
            .io(
                "pc-testdev-ioport-byte",
                TESTDEV_IOPORT_BYTE,
                part(Kind::Data),
            )?
            .io(
                "pc-testdev-irq-line",
                TESTDEV_IRQ_LINES,
                part(Kind::IrqLine),
            )?
            .mmio("pc-testdev-iomem", TESTDEV_IOMEM, part(Kind::Iomem))
    }

    /// The data register's value.
    pub fn data(&self) -> u32 {
        self.data.load(Ordering::Relaxed)
    }

    fn data_write(&self, offset: u64, data: &[u8]) {
        // `rep outsb`: the last byte wins, as QEMU's one write per element.
        let data = if data.len() > 4 {
            &data[data.len() - 1..]
        } else {
            data
        };
        let mut bytes = self.data().to_le_bytes();
        for (i, &b) in data.iter().enumerate() {
            if let Some(slot) = bytes.get_mut(offset as usize + i) {
                *slot = b;
            }
        }
        self.data
            .store(u32::from_le_bytes(bytes), Ordering::Relaxed);
    }

    fn data_read(&self, offset: u64, data: &mut [u8]) {
        let bytes = self.data().to_le_bytes();
        let at = |i: usize| bytes.get(i).copied().unwrap_or(0);
        if data.len() > 4 {
            // `rep insb`: every element reads the byte at `offset`.
            data.fill(at(offset as usize));
        } else {
            for (i, b) in data.iter_mut().enumerate() {
                *b = at(offset as usize + i);
            }
        }
    }

    fn iomem(&self) -> std::sync::MutexGuard<'_, Box<[u8]>> {
        self.iomem.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Data,
    Flush,
    IrqLine,
    Iomem,
}

#[derive(Debug)]
struct Part {
    dev: Arc<PcTestdev>,
    kind: Kind,
}

impl BusDevice for Part {
    fn read(&self, _: VcpuIndex, offset: u64, data: &mut [u8]) -> DeviceAction {
        match self.kind {
            Kind::Data => self.dev.data_read(offset, data),
            Kind::Iomem => {
                let mem = self.dev.iomem();
                data.fill(0);
                let src = mem.get(offset as usize..).unwrap_or_default();
                let n = src.len().min(data.len());
                data[..n].copy_from_slice(&src[..n]);
            }
            // Write-only registers.
            Kind::Flush | Kind::IrqLine => data.fill(0xff),
        }
        DeviceAction::Continue
    }

    fn write(&self, _: VcpuIndex, offset: u64, data: &[u8]) -> DeviceAction {
        match (self.kind, data) {
            (Kind::Data, _) => self.dev.data_write(offset, data),
            (Kind::Flush, &[a, b, c, d]) => self
                .dev
                .hooks
                .flush_page(u64::from(u32::from_le_bytes([a, b, c, d])) & !0xfff),
            // QEMU accepts one byte at a time here and splits a wider access into byte
            // accesses at consecutive ports (memory_access_size), so realmode.c's `outl`
            // of 1 to 0x200b raises line 11 and lowers lines 12-14.
            (Kind::IrqLine, bytes) if bytes.len() <= 4 => {
                for (line, &level) in (offset..TESTDEV_IRQ_LINES.len).zip(bytes) {
                    self.dev.hooks.set_irq_line(line as u32, level != 0);
                }
            }
            (Kind::Iomem, _) => {
                let mut mem = self.dev.iomem();
                if let Some(dst) = mem.get_mut(offset as usize..) {
                    let n = dst.len().min(data.len());
                    dst[..n].copy_from_slice(&data[..n]);
                }
            }
            // Accesses of a size QEMU refuses, and string writes.
            (Kind::Flush | Kind::IrqLine, _) => {}
        }
        DeviceAction::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Bus;
    use vcpu_lifecycle::ExitHandler;

    const V: VcpuIndex = VcpuIndex(0);

    #[derive(Debug, Default)]
    struct Record(Mutex<Vec<String>>);
    impl TestdevHooks for Record {
        fn set_irq_line(&self, line: u32, level: bool) {
            self.0.lock().unwrap().push(format!("irq {line} {level}"));
        }
        fn flush_page(&self, gpa: u64) {
            self.0.lock().unwrap().push(format!("flush {gpa:#x}"));
        }
    }

    fn bus() -> (Bus, Arc<PcTestdev>, Arc<Record>) {
        let rec = Arc::new(Record::default());
        let dev = PcTestdev::new(rec.clone());
        (dev.register(BusBuilder::new()).unwrap().build(), dev, rec)
    }

    fn read(bus: &Bus, port: u16, len: usize) -> Vec<u8> {
        let mut d = vec![0xaa; len];
        bus.io_in(V, port, &mut d);
        d
    }

    #[test]
    fn data_register_keeps_each_width_at_its_offset() {
        let (bus, dev, _) = bus();
        // realmode.c io_test1..6: out then in of the same width.
        bus.io_out(V, 0xe0, &[0xef]);
        assert_eq!(read(&bus, 0xe0, 1), [0xef]);
        bus.io_out(V, 0xe0, &0x1234u16.to_le_bytes());
        assert_eq!(read(&bus, 0xe0, 2), 0x1234u16.to_le_bytes());
        bus.io_out(V, 0xe0, &0xdead_beefu32.to_le_bytes());
        assert_eq!(read(&bus, 0xe0, 4), 0xdead_beefu32.to_le_bytes());
        bus.io_out(V, 0xe2, &[0x77]);
        assert_eq!(dev.data(), 0xde77_beef);
        assert_eq!(read(&bus, 0xe9, 1), [0xbe], "the byte-wise alias");
    }

    #[test]
    fn string_io_as_emulator_c_does_it() {
        let (bus, _, _) = bus();
        // test_stringio: rep outsb of "abcdefghijklmnop", then inb gives the last char.
        bus.io_out(V, 0xe0, b"abcdefghijklmnop");
        assert_eq!(read(&bus, 0xe0, 1), b"p");
        // test_string_io_mmio: outw 0x9999, then rep insb of 1024 bytes.
        bus.io_out(V, 0xe0, &0x9999u16.to_le_bytes());
        assert!(read(&bus, 0xe0, 1024).iter().all(|&b| b == 0x99));
    }

    #[test]
    fn iomem_is_memory_and_ends_at_64k() {
        let (bus, _, _) = bus();
        bus.mmio_write(V, 0xff00_1000, &0x1122_3344u32.to_le_bytes());
        let mut d = [0u8; 4];
        bus.mmio_read(V, 0xff00_1001, &mut d);
        assert_eq!(d, [0x33, 0x22, 0x11, 0]);
        bus.mmio_write(V, 0xff00_fffe, &[1, 2, 3, 4]);
        bus.mmio_read(V, 0xff00_fffe, &mut d);
        assert_eq!(d, [1, 2, 0, 0], "the part past the end is not stored");
        bus.mmio_read(V, 0xff01_0000, &mut d);
        assert_eq!(d, [0xff; 4], "outside the device: unassigned");
    }

    #[test]
    fn irq_lines_and_flush_reach_the_hooks() {
        let (bus, _, rec) = bus();
        // lib/x86/apic.c set_irq_line(0x0e, 1), then 0.
        bus.io_out(V, 0x200e, &[1]);
        bus.io_out(V, 0x200e, &[0]);
        bus.io_out(V, 0x2017, &[5]);
        // realmode.c test_sti_inhibit: outl of 1 to 0x200b is four byte writes.
        bus.io_out(V, 0x200b, &1u32.to_le_bytes());
        // A word at the last port: the byte past the range is dropped.
        bus.io_out(V, 0x2017, &[0, 1]);
        // eventinj flush_phys_addr: outl of an address.
        bus.io_out(V, 0xe4, &0x0012_3456u32.to_le_bytes());
        bus.io_out(V, 0xe4, &[1]); // a byte write: refused
        assert_eq!(
            *rec.0.lock().unwrap(),
            [
                "irq 14 true",
                "irq 14 false",
                "irq 23 true",
                "irq 11 true",
                "irq 12 false",
                "irq 13 false",
                "irq 14 false",
                "irq 23 false",
                "flush 0x123000"
            ]
        );
        let quiet = PcTestdev::new(Arc::new(NoHooks));
        let bus = quiet.register(BusBuilder::new()).unwrap().build();
        assert_eq!(
            bus.io_out(V, 0x2000, &[1]),
            vcpu_lifecycle::ExitAction::Continue
        );
    }
}

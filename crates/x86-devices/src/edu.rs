//! QEMU's `edu` teaching device (PCI 1234:11e8, QEMU's docs/specs/edu.txt) as far as
//! kvm-unit-tests uses it: a 1 MiB memory BAR 0, INTx pin A and a 64-bit MSI capability,
//! and DMA through the IOMMU.
//!
//! | BAR 0 offset | register | behaviour |
//! |---|---|---|
//! | `0x00` | identification | `0x010000ed` (version 1.0, magic 0xed) |
//! | `0x04` | liveness | reads the bitwise inverse of the last write |
//! | `0x08` | factorial | a write computes the factorial at once (wrapping at 32 bits) |
//! | `0x20` | status | bit 0 computing (always clear here), bit 7 raise an interrupt after a factorial |
//! | `0x24` | interrupt status | read-only |
//! | `0x60` | raise | ORs the value into the interrupt status and raises an interrupt |
//! | `0x64` | acknowledge | clears those bits; INTx drops when none is left |
//! | `0x80` / `0x88` / `0x90` | DMA source / destination / count | 32- or 64-bit |
//! | `0x98` | DMA command | bit 0 start, bit 1 direction (1: buffer to RAM), bit 2 raise interrupt 0x100 when done |
//!
//! The 4 KiB DMA buffer sits at device address `0x40000`; the other side of a transfer
//! is a DMA address that the IOMMU translates. A transfer runs to completion when the
//! command is written (QEMU runs it from a timer), so the guest's poll of bit 0 ends at
//! once. Accesses other than 4 bytes (or 8 at `0x80` and above) read all ones and are
//! ignored, as QEMU's. With MSI enabled an interrupt is one MSI; otherwise INTx is held
//! while the interrupt status is not zero.

use std::sync::{Arc, Mutex};

use cpu_topology::VcpuIndex;

use crate::bus::{BusDevice, DeviceAction};
use crate::ioapic::InterruptRoute;
use crate::pci::{lock, Bdf, ConfigSpace, MemoryBar, PciFunction, PciId};

/// BAR 0's size.
pub const EDU_BAR_SIZE: u32 = 1 << 20;
/// Device address of the DMA buffer.
pub const EDU_DMA_BUFFER: u64 = 0x40000;
/// The DMA buffer's size.
pub const EDU_DMA_SIZE: usize = 4096;
const DMA_START: u64 = 1;
const DMA_TO_RAM: u64 = 2;
const DMA_IRQ: u64 = 4;
const DMA_DONE_IRQ: u32 = 0x100;
const STATUS_IRQ_AFTER_FACTORIAL: u32 = 0x80;
const FACTORIAL_IRQ: u32 = 0x1;

/// How edu reaches guest memory and asserts INTx (the machine wires both).
pub trait EduPorts: InterruptRoute {
    /// Copy `buf` from (`to_memory` false) or to DMA address `iova`; false when the
    /// IOMMU or guest memory refuses it.
    fn dma(&self, requester: Bdf, iova: u64, buf: &mut [u8], to_memory: bool) -> bool;
    /// Set interrupt line `line` (the I/O APIC input) to `asserted`.
    fn intx(&self, line: u8, asserted: bool);
}

#[derive(Debug)]
struct State {
    config: ConfigSpace,
    liveness: u32,
    factorial: u32,
    status: u32,
    irq_status: u32,
    dma_src: u64,
    dma_dst: u64,
    dma_count: u64,
    dma_cmd: u64,
    buffer: Box<[u8; EDU_DMA_SIZE]>,
    intx: bool,
}

/// The edu device at one bdf; see the [module docs](self).
#[derive(Debug)]
pub struct Edu {
    bdf: Bdf,
    state: Mutex<State>,
    ports: Arc<dyn EduPorts>,
}

/// What an access decided to do outside the state lock.
#[derive(Debug, Default)]
struct Effects {
    intx: Option<(u8, bool)>,
    msi: Option<crate::pci::MsiMessage>,
}

impl Edu {
    /// An edu at `bdf` with BAR 0 at `bar0` (1 MiB aligned) and INTx pin A on
    /// interrupt line `line`.
    pub fn new(bdf: Bdf, bar0: u32, line: u8, ports: Arc<dyn EduPorts>) -> Self {
        let mut config = ConfigSpace::new(PciId {
            vendor: 0x1234,
            device: 0x11e8,
            // QEMU's PCI_CLASS_OTHERS as edu sets it: class 0x00, sub-class 0xff.
            class: 0x00_ff_00,
            revision: 0x10,
        });
        config.add_memory_bar(
            0,
            MemoryBar {
                addr: bar0,
                size: EDU_BAR_SIZE,
            },
        );
        config.set_interrupt(1, line);
        config.add_msi_capability();
        Self {
            bdf,
            state: Mutex::new(State {
                config,
                liveness: 0,
                factorial: 1,
                status: 0,
                irq_status: 0,
                dma_src: 0,
                dma_dst: 0,
                dma_count: 0,
                dma_cmd: 0,
                buffer: Box::new([0; EDU_DMA_SIZE]),
                intx: false,
            }),
            ports,
        }
    }

    /// Where it sits.
    pub fn bdf(&self) -> Bdf {
        self.bdf
    }

    fn raise(s: &mut State, bits: u32, fx: &mut Effects) {
        s.irq_status |= bits;
        if let Some(msg) = s.config.msi() {
            fx.msi = Some(msg);
        } else {
            // INTx is a level: a raise while it is held adds no edge.
            Self::update_intx(s, fx);
        }
    }

    fn update_intx(s: &mut State, fx: &mut Effects) {
        let want = s.irq_status != 0 && s.config.msi().is_none();
        if want != s.intx {
            s.intx = want;
            fx.intx = Some((s.config.interrupt_line(), want));
        }
    }

    fn apply(&self, fx: Effects) {
        if let Some((line, level)) = fx.intx {
            self.ports.intx(line, level);
        }
        if let Some(msg) = fx.msi {
            self.ports.send(msg, Some(self.bdf));
        }
    }

    fn read_reg(s: &State, offset: u64) -> u64 {
        match offset {
            0x00 => 0x0100_00ed,
            0x04 => u64::from(!s.liveness),
            0x08 => u64::from(s.factorial),
            0x20 => u64::from(s.status),
            0x24 => u64::from(s.irq_status),
            0x80 => s.dma_src,
            0x88 => s.dma_dst,
            0x90 => s.dma_count,
            0x98 => s.dma_cmd,
            _ => 0,
        }
    }

    fn write_reg(&self, s: &mut State, offset: u64, v: u64, fx: &mut Effects) {
        match offset {
            0x04 => s.liveness = v as u32,
            0x08 => {
                s.factorial = (1..=v as u32).fold(1u32, |acc, n| acc.wrapping_mul(n));
                if s.status & STATUS_IRQ_AFTER_FACTORIAL != 0 {
                    Self::raise(s, FACTORIAL_IRQ, fx);
                }
            }
            0x20 => {
                s.status = (s.status & !STATUS_IRQ_AFTER_FACTORIAL)
                    | (v as u32 & STATUS_IRQ_AFTER_FACTORIAL)
            }
            0x60 => Self::raise(s, v as u32, fx),
            0x64 => {
                s.irq_status &= !(v as u32);
                Self::update_intx(s, fx);
            }
            0x80 => s.dma_src = v,
            0x88 => s.dma_dst = v,
            0x90 => s.dma_count = v,
            0x98 if v & DMA_START != 0 && s.dma_cmd & DMA_START == 0 => {
                s.dma_cmd = v;
                self.run_dma(s);
                s.dma_cmd &= !DMA_START;
                if v & DMA_IRQ != 0 {
                    Self::raise(s, DMA_DONE_IRQ, fx);
                }
            }
            _ => {}
        }
    }

    /// The transfer the command register asks for; a buffer range outside the 4 KiB
    /// buffer, or DMA refused by the IOMMU or bus master off, leaves memory untouched.
    fn run_dma(&self, s: &mut State) {
        let to_ram = s.dma_cmd & DMA_TO_RAM != 0;
        let (dev, iova) = if to_ram {
            (s.dma_src, s.dma_dst)
        } else {
            (s.dma_dst, s.dma_src)
        };
        let count = s.dma_count as usize;
        let start = dev.wrapping_sub(EDU_DMA_BUFFER) as usize;
        let Some(end) = start.checked_add(count).filter(|&e| e <= EDU_DMA_SIZE) else {
            log::warn!(
                "edu: DMA of {count} bytes at device address {dev:#x} is outside the buffer"
            );
            return;
        };
        if !s.config.bus_master() {
            log::warn!("edu: DMA with bus mastering off");
            return;
        }
        let chunk = &mut s.buffer[start..end];
        if !self.ports.dma(self.bdf, iova, chunk, to_ram) {
            log::warn!("edu: DMA at {iova:#x} refused");
        }
    }
}

impl PciFunction for Edu {
    fn config_read(&self, offset: usize, data: &mut [u8]) {
        lock(&self.state).config.read(offset, data);
    }

    fn config_write(&self, offset: usize, data: &[u8]) {
        let mut fx = Effects::default();
        {
            let mut s = lock(&self.state);
            s.config.write(offset, data);
            Self::update_intx(&mut s, &mut fx);
        }
        self.apply(fx);
    }
}

impl BusDevice for Edu {
    fn read(&self, _: VcpuIndex, offset: u64, data: &mut [u8]) -> DeviceAction {
        let s = lock(&self.state);
        let sized = data.len() == 4 || (data.len() == 8 && offset >= 0x80);
        let v = if sized && s.config.bar_decodes(0) {
            Self::read_reg(&s, offset)
        } else {
            u64::MAX
        };
        let n = data.len().min(8);
        data[..n].copy_from_slice(&v.to_le_bytes()[..n]);
        DeviceAction::Continue
    }

    fn write(&self, _: VcpuIndex, offset: u64, data: &[u8]) -> DeviceAction {
        let mut fx = Effects::default();
        {
            let mut s = lock(&self.state);
            let sized = data.len() == 4 || (data.len() == 8 && offset >= 0x80);
            if !sized || !s.config.bar_decodes(0) {
                return DeviceAction::Continue;
            }
            let mut b = [0u8; 8];
            b[..data.len()].copy_from_slice(data);
            self.write_reg(&mut s, offset, u64::from_le_bytes(b), &mut fx);
        }
        self.apply(fx);
        DeviceAction::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::MsiMessage;

    const V: VcpuIndex = VcpuIndex(0);
    const BDF: Bdf = Bdf::new(3, 0);

    /// Guest RAM at DMA address 0.. (no IOMMU) and a log of interrupts.
    #[derive(Debug, Default)]
    struct Ports {
        ram: Mutex<Vec<u8>>,
        intx: Mutex<Vec<(u8, bool)>>,
        msi: Mutex<Vec<(MsiMessage, Option<Bdf>)>>,
    }
    impl InterruptRoute for Ports {
        fn send(&self, msg: MsiMessage, requester: Option<Bdf>) {
            self.msi.lock().unwrap().push((msg, requester));
        }
    }
    impl EduPorts for Ports {
        fn dma(&self, _: Bdf, iova: u64, buf: &mut [u8], to_memory: bool) -> bool {
            let mut ram = self.ram.lock().unwrap();
            let Some(mem) = ram.get_mut(iova as usize..iova as usize + buf.len()) else {
                return false;
            };
            if to_memory {
                mem.copy_from_slice(buf);
            } else {
                buf.copy_from_slice(mem);
            }
            true
        }
        fn intx(&self, line: u8, asserted: bool) {
            self.intx.lock().unwrap().push((line, asserted));
        }
    }

    fn edu() -> (Edu, Arc<Ports>) {
        let ports = Arc::new(Ports {
            ram: Mutex::new(vec![0; 0x2000]),
            ..Default::default()
        });
        (Edu::new(BDF, 0xfea0_0000, 16, ports.clone()), ports)
    }

    fn r32(e: &Edu, off: u64) -> u32 {
        let mut d = [0; 4];
        e.read(V, off, &mut d);
        u32::from_le_bytes(d)
    }

    fn w32(e: &Edu, off: u64, v: u32) {
        e.write(V, off, &v.to_le_bytes());
    }

    fn w64(e: &Edu, off: u64, v: u64) {
        e.write(V, off, &v.to_le_bytes());
    }

    fn master_on(e: &Edu) {
        e.config_write(0x04, &0x0006u16.to_le_bytes());
    }

    #[test]
    fn identification_liveness_and_factorial() {
        let (e, _) = edu();
        assert_eq!(r32(&e, 0x00), 0x0100_00ed);
        w32(&e, 0x04, 1);
        assert_eq!(r32(&e, 0x04), !1);
        w32(&e, 0x08, 5);
        assert_eq!(r32(&e, 0x08), 120);
        assert_eq!(r32(&e, 0x20) & 1, 0, "done at once");
        let mut short = [0; 2];
        e.read(V, 0, &mut short);
        assert_eq!(short, [0xff; 2], "only 4-byte accesses below 0x80");
        let mut d = [0; 2];
        e.config_read(0, &mut d);
        assert_eq!(u16::from_le_bytes(d), 0x1234);
    }

    #[test]
    fn the_bar_answers_only_while_it_decodes() {
        let (e, _) = edu();
        e.config_write(0x10, &u32::MAX.to_le_bytes());
        assert_eq!(r32(&e, 0), u32::MAX, "BAR being sized");
        e.config_write(0x10, &0xfea0_0000u32.to_le_bytes());
        assert_eq!(r32(&e, 0), 0x0100_00ed);
    }

    #[test]
    fn dma_copies_between_ram_and_the_buffer_like_the_test() {
        let (e, ports) = edu();
        master_on(&e);
        ports.ram.lock().unwrap()[0x1000..0x1004].copy_from_slice(&0x1234_5678u32.to_le_bytes());
        // edu_dma(dev, iova 0x1000, 4, 0, false): RAM to the buffer.
        w64(&e, 0x80, 0x1000);
        w64(&e, 0x88, EDU_DMA_BUFFER);
        w64(&e, 0x90, 4);
        w32(&e, 0x98, 1);
        assert_eq!(r32(&e, 0x98) & 1, 0, "done");
        // edu_dma(dev, iova 0x1004, 4, 0, true): the buffer to RAM.
        w64(&e, 0x80, EDU_DMA_BUFFER);
        w64(&e, 0x88, 0x1004);
        w64(&e, 0x90, 4);
        w32(&e, 0x98, 1 | 2);
        assert_eq!(
            ports.ram.lock().unwrap()[0x1004..0x1008],
            0x1234_5678u32.to_le_bytes()
        );
        let mut q = [0; 8];
        e.read(V, 0x88, &mut q);
        assert_eq!(u64::from_le_bytes(q), 0x1004);
    }

    #[test]
    fn dma_outside_the_buffer_or_without_bus_master_does_nothing() {
        let (e, ports) = edu();
        ports.ram.lock().unwrap()[0..4].copy_from_slice(&[1, 2, 3, 4]);
        w64(&e, 0x80, EDU_DMA_BUFFER);
        w64(&e, 0x88, 0);
        w64(&e, 0x90, 4);
        w32(&e, 0x98, 1 | 2);
        assert_eq!(
            ports.ram.lock().unwrap()[0..4],
            [1, 2, 3, 4],
            "bus master off"
        );
        master_on(&e);
        w64(&e, 0x80, EDU_DMA_BUFFER + 4095);
        w32(&e, 0x98, 1 | 2);
        assert_eq!(
            ports.ram.lock().unwrap()[0..4],
            [1, 2, 3, 4],
            "past the buffer"
        );
        w64(&e, 0x80, EDU_DMA_BUFFER);
        w32(&e, 0x98, 1 | 2 | 4);
        assert_eq!(ports.ram.lock().unwrap()[0..4], [0; 4]);
        assert_eq!(r32(&e, 0x24), DMA_DONE_IRQ, "completion interrupt");
    }

    #[test]
    fn intx_is_held_while_the_status_is_set() {
        let (e, ports) = edu();
        w32(&e, 0x60, 1);
        assert_eq!(r32(&e, 0x24), 1);
        w32(&e, 0x60, 2);
        w32(&e, 0x64, 1);
        w32(&e, 0x64, 2);
        assert_eq!(*ports.intx.lock().unwrap(), [(16, true), (16, false)]);
        assert!(ports.msi.lock().unwrap().is_empty());
    }

    #[test]
    fn with_msi_enabled_a_raise_sends_the_message_with_the_requester_id() {
        let (e, ports) = edu();
        e.config_write(0x44, &0xfee0_0030u32.to_le_bytes());
        e.config_write(0x4c, &0u16.to_le_bytes());
        e.config_write(0x42, &1u16.to_le_bytes());
        w32(&e, 0x60, 1);
        w32(&e, 0x60, 1);
        let msg = MsiMessage {
            address: 0xfee0_0030,
            data: 0,
        };
        assert_eq!(
            *ports.msi.lock().unwrap(),
            [(msg, Some(BDF)), (msg, Some(BDF))]
        );
        assert!(ports.intx.lock().unwrap().is_empty());
        w32(&e, 0x20, STATUS_IRQ_AFTER_FACTORIAL);
        w32(&e, 0x08, 3);
        assert_eq!(ports.msi.lock().unwrap().len(), 3, "factorial interrupt");
    }
}

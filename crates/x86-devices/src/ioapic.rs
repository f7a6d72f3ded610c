//! A user-space I/O APIC (82093AA, version 0x20, 24 pins) at MMIO `0xfec00000`, for a VM
//! with KVM's split irqchip (local APICs in KVM, `KVM_CAP_SPLIT_IRQCHIP`): each interrupt
//! it raises becomes an MSI that goes through an [`InterruptRoute`] (interrupt
//! remapping, then `KVM_SIGNAL_MSI`).
//!
//! A redirection entry (RTE) in compatibility format becomes the MSI the 82093AA would
//! send (destination, destination mode, vector, delivery and trigger mode). One in
//! remappable format (bit 48, as the VT-d specification defines for IOxAPICs: index
//! bits 14:0 in 63:49, bit 15 in 11) becomes a remappable-format MSI carrying that index,
//! so the remapping unit's IRTE decides the vector and destination; the RTE's vector
//! field only matches EOIs. Edge-triggered pins send one MSI per rising edge; level-
//! triggered ones send while asserted and the remote IRR is clear, which an EOI
//! ([`Ioapic::end_of_interrupt`], or the EOI register at `0x40`) clears. Polarity is
//! recorded but not applied: [`Ioapic::set_level`] takes the logical (asserted) level.

use std::sync::{Arc, Mutex};

use cpu_topology::VcpuIndex;

use crate::bus::{BusDevice, DeviceAction, Range};
use crate::pci::{lock, Bdf, MsiMessage};

/// The I/O APIC's registers.
pub const IOAPIC_RANGE: Range = Range::mmio(0xfec0_0000, 0x1000);
/// Input pins.
pub const IOAPIC_PINS: usize = 24;

const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
const EOI: u64 = 0x40;
const VERSION: u32 = 0x20 | ((IOAPIC_PINS as u32 - 1) << 16);
const RTE_MASKED: u64 = 1 << 16;
const RTE_LEVEL: u64 = 1 << 15;
const RTE_REMOTE_IRR: u64 = 1 << 14;
const RTE_DELIVERY_STATUS: u64 = 1 << 12;
const RTE_REMAPPABLE: u64 = 1 << 48;
/// RTE bits the guest cannot write: delivery status and remote IRR.
const RTE_READ_ONLY: u64 = RTE_DELIVERY_STATUS | RTE_REMOTE_IRR;

/// Where an interrupt request goes: through interrupt remapping to the local APICs.
pub trait InterruptRoute: Send + Sync + std::fmt::Debug {
    /// Send `msg` on behalf of `requester` (`None`: the I/O APIC, which has no PCI
    /// requester id).
    fn send(&self, msg: MsiMessage, requester: Option<Bdf>);
}

#[derive(Debug, Clone)]
struct State {
    id: u8,
    select: u8,
    rte: [u64; IOAPIC_PINS],
    /// Asserted pins.
    level: u32,
}

/// The I/O APIC; see the [module docs](self).
#[derive(Debug)]
pub struct Ioapic {
    state: Mutex<State>,
    route: Arc<dyn InterruptRoute>,
}

/// The MSI that RTE `rte` sends.
pub fn rte_message(rte: u64) -> MsiMessage {
    let vector = (rte & 0xff) as u32;
    let level = u32::from(rte & RTE_LEVEL != 0);
    if rte & RTE_REMAPPABLE != 0 {
        let index = (rte >> 49) & 0x7fff;
        let index15 = (rte >> 11) & 1;
        return MsiMessage {
            address: 0xfee0_0000 | index << 5 | 1 << 4 | index15 << 2,
            data: vector | level << 15 | level << 14,
        };
    }
    MsiMessage {
        address: 0xfee0_0000 | ((rte >> 56) & 0xff) << 12 | ((rte >> 11) & 1) << 2,
        data: vector | (((rte >> 8) & 7) as u32) << 8 | level << 15 | level << 14,
    }
}

impl Ioapic {
    /// An I/O APIC at reset (every pin masked) sending through `route`.
    pub fn new(route: Arc<dyn InterruptRoute>) -> Self {
        Self {
            state: Mutex::new(State {
                id: 0,
                select: 0,
                rte: [RTE_MASKED; IOAPIC_PINS],
                level: 0,
            }),
            route,
        }
    }

    /// Set input `pin` to `asserted`; pins beyond 23 are ignored.
    pub fn set_level(&self, pin: usize, asserted: bool) {
        let msg = {
            let mut s = lock(&self.state);
            if pin >= IOAPIC_PINS {
                return;
            }
            let bit = 1u32 << pin;
            let rising = asserted && s.level & bit == 0;
            if asserted {
                s.level |= bit;
            } else {
                s.level &= !bit;
            }
            let rte = s.rte[pin];
            if rte & RTE_LEVEL == 0 {
                (rising && rte & RTE_MASKED == 0).then(|| rte_message(rte))
            } else {
                Self::service_level(&mut s, pin)
            }
        };
        self.send(msg);
    }

    /// A level-triggered pin that is asserted, unmasked and not awaiting an EOI sends
    /// and sets its remote IRR.
    fn service_level(s: &mut State, pin: usize) -> Option<MsiMessage> {
        let rte = s.rte[pin];
        let ready = rte & RTE_LEVEL != 0 && rte & (RTE_MASKED | RTE_REMOTE_IRR) == 0;
        if !ready || s.level & (1 << pin) == 0 {
            return None;
        }
        s.rte[pin] |= RTE_REMOTE_IRR;
        Some(rte_message(rte))
    }

    fn send(&self, msg: Option<MsiMessage>) {
        if let Some(msg) = msg {
            self.route.send(msg, None);
        }
    }

    /// The local APICs accepted an EOI for `vector`: clear the remote IRR of every
    /// level-triggered pin with that vector and send again from the ones still asserted.
    pub fn end_of_interrupt(&self, vector: u8) {
        let msgs: Vec<MsiMessage> = {
            let mut s = lock(&self.state);
            (0..IOAPIC_PINS)
                .filter_map(|pin| {
                    let rte = s.rte[pin];
                    if rte & RTE_REMOTE_IRR == 0 || rte as u8 != vector {
                        return None;
                    }
                    s.rte[pin] &= !RTE_REMOTE_IRR;
                    Self::service_level(&mut s, pin)
                })
                .collect()
        };
        msgs.into_iter().for_each(|m| self.send(Some(m)));
    }

    /// Redirection entry `pin` (tests, monitors).
    pub fn rte(&self, pin: usize) -> Option<u64> {
        lock(&self.state).rte.get(pin).copied()
    }

    fn read_window(s: &State) -> u32 {
        match s.select {
            0 => u32::from(s.id) << 24,
            1 => VERSION,
            2 => u32::from(s.id) << 24,
            r @ 0x10..=0x3f => {
                let rte = s.rte[usize::from(r - 0x10) / 2];
                (rte >> (32 * u32::from(r & 1))) as u32
            }
            _ => 0,
        }
    }

    fn write_window(&self, value: u32) {
        let msg = {
            let mut s = lock(&self.state);
            match s.select {
                0 => {
                    s.id = ((value >> 24) & 0xf) as u8;
                    None
                }
                r @ 0x10..=0x3f => {
                    let pin = usize::from(r - 0x10) / 2;
                    let shift = 32 * u32::from(r & 1);
                    let old = s.rte[pin];
                    let mut new = (old & !(0xffff_ffffu64 << shift)) | u64::from(value) << shift;
                    new = (new & !RTE_READ_ONLY) | (old & RTE_READ_ONLY);
                    if new & RTE_LEVEL == 0 {
                        new &= !RTE_REMOTE_IRR;
                    }
                    s.rte[pin] = new;
                    Self::service_level(&mut s, pin)
                }
                _ => None,
            }
        };
        self.send(msg);
    }
}

impl BusDevice for Ioapic {
    fn read(&self, _: VcpuIndex, offset: u64, data: &mut [u8]) -> DeviceAction {
        let s = lock(&self.state);
        let v = match offset {
            IOREGSEL => u32::from(s.select),
            IOWIN => Self::read_window(&s),
            _ => 0,
        };
        let bytes = v.to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = bytes.get(i).copied().unwrap_or(0);
        }
        DeviceAction::Continue
    }

    fn write(&self, _: VcpuIndex, offset: u64, data: &[u8]) -> DeviceAction {
        let mut b = [0u8; 4];
        let n = data.len().min(4);
        b[..n].copy_from_slice(&data[..n]);
        let v = u32::from_le_bytes(b);
        match offset {
            IOREGSEL => lock(&self.state).select = v as u8,
            IOWIN => self.write_window(v),
            EOI => self.end_of_interrupt(v as u8),
            _ => {}
        }
        DeviceAction::Continue
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const V: VcpuIndex = VcpuIndex(0);

    #[derive(Debug, Default)]
    pub(crate) struct Sent(pub Mutex<Vec<(MsiMessage, Option<Bdf>)>>);
    impl InterruptRoute for Sent {
        fn send(&self, msg: MsiMessage, requester: Option<Bdf>) {
            self.0.lock().unwrap().push((msg, requester));
        }
    }
    impl Sent {
        fn take(&self) -> Vec<MsiMessage> {
            self.0.lock().unwrap().drain(..).map(|(m, _)| m).collect()
        }
    }

    fn ioapic() -> (Ioapic, Arc<Sent>) {
        let sent = Arc::new(Sent::default());
        (Ioapic::new(sent.clone()), sent)
    }

    fn write_rte(io: &Ioapic, pin: u8, rte: u64) {
        for (half, v) in [(0u8, rte as u32), (1, (rte >> 32) as u32)] {
            io.write(V, IOREGSEL, &[0x10 + 2 * pin + half]);
            io.write(V, IOWIN, &v.to_le_bytes());
        }
    }

    fn reg(io: &Ioapic, r: u8) -> u32 {
        io.write(V, IOREGSEL, &[r]);
        let mut d = [0; 4];
        io.read(V, IOWIN, &mut d);
        u32::from_le_bytes(d)
    }

    #[test]
    fn registers_read_back_and_pins_start_masked() {
        let (io, _) = ioapic();
        assert_eq!(reg(&io, 1), 0x0017_0020, "24 pins, version 0x20");
        assert_eq!(reg(&io, 0x10), 1 << 16);
        io.write(V, IOREGSEL, &[0]);
        io.write(V, IOWIN, &0x0f00_0000u32.to_le_bytes());
        assert_eq!(reg(&io, 0), 0x0f00_0000);
        write_rte(&io, 5, 0x0300_0000_0000_5031);
        assert_eq!(reg(&io, 0x1a), 0x31, "delivery status is read-only");
        assert_eq!(reg(&io, 0x1b), 0x0300_0000);
        assert_eq!(io.rte(24), None);
    }

    #[test]
    fn edge_pins_send_once_per_rising_edge() {
        let (io, sent) = ioapic();
        io.set_level(16, true);
        assert!(sent.take().is_empty(), "masked");
        io.set_level(16, false);
        write_rte(&io, 16, 0x0200_0000_0000_0040);
        io.set_level(16, true);
        io.set_level(16, true);
        io.set_level(16, false);
        io.set_level(16, true);
        let msg = MsiMessage {
            address: 0xfee0_2000,
            data: 0x40,
        };
        assert_eq!(sent.take(), [msg, msg]);
        io.set_level(99, true);
    }

    #[test]
    fn level_pins_wait_for_the_eoi() {
        let (io, sent) = ioapic();
        write_rte(&io, 3, RTE_LEVEL | 0x51);
        io.set_level(3, true);
        assert_eq!(sent.take().len(), 1);
        assert_eq!(reg(&io, 0x16) & (1 << 14), 1 << 14, "remote IRR");
        io.set_level(3, true);
        assert!(sent.take().is_empty(), "remote IRR holds it");
        io.end_of_interrupt(0x52);
        assert!(sent.take().is_empty(), "other vector");
        io.write(V, EOI, &[0x51, 0, 0, 0]);
        assert_eq!(
            sent.take()[0].data,
            0x51 | 1 << 15 | 1 << 14,
            "still asserted"
        );
        io.set_level(3, false);
        io.end_of_interrupt(0x51);
        assert!(sent.take().is_empty());
        assert_eq!(reg(&io, 0x16) & (1 << 14), 0);
    }

    #[test]
    fn unmasking_an_asserted_level_pin_sends() {
        let (io, sent) = ioapic();
        io.set_level(7, true);
        write_rte(&io, 7, RTE_LEVEL | RTE_MASKED | 0x60);
        assert!(sent.take().is_empty());
        write_rte(&io, 7, RTE_LEVEL | 0x60);
        assert_eq!(sent.take().len(), 1);
    }

    #[test]
    fn remappable_entries_send_their_index_in_remappable_format() {
        let (io, sent) = ioapic();
        // kvm-unit-tests' vtd_setup_ioapic_irq: index 1, vector 0xed, edge.
        write_rte(&io, 16, RTE_REMAPPABLE | 1 << 49 | 0xed);
        io.set_level(16, true);
        let m = sent.take()[0];
        assert_eq!(m.address, 0xfee0_0000 | 1 << 5 | 1 << 4);
        assert_eq!(crate::vtd_tables::interrupt_index(&m), 1);
        assert_eq!(
            rte_message(RTE_REMAPPABLE | 0x7fff << 49 | 1 << 11).address & 0xffffc,
            0xffff4
        );
        assert_eq!(sent.0.lock().unwrap().len(), 0);
    }
}

//! The q35-like PCI part of a test machine with KVM's split irqchip: PCI bus 0
//! ([`crate::pci`]) with the host bridge at 00:00.0 and QEMU's `edu` at 00:01.0, the
//! user-space I/O APIC ([`crate::ioapic`]), and optionally the VT-d remapping unit
//! ([`crate::vtd`]), wired as QEMU's `-M q35,kernel-irqchip=split -device
//! intel-iommu,intremap=on,eim=off -device edu` wires them:
//!
//! ```text
//! edu DMA ──────────────► VT-d translate ─► guest RAM
//! edu MSI ──────────────► VT-d remap (source-id 00:01.0) ─┐
//! edu INTA# ─► I/O APIC pin 16 ─► VT-d remap (no source-id) ─┴► KVM_SIGNAL_MSI ─► LAPIC
//! ```
//!
//! The VMM plays the firmware: edu's BAR 0 is at [`EDU_BAR0`] and its interrupt line
//! register says [`EDU_INTX_LINE`], as SeaBIOS would leave them. Without the remapping
//! unit, DMA addresses are guest-physical and interrupts go to the LAPICs unchanged.

use std::sync::Arc;

use crate::bus::{BusBuilder, BusDevice, BusError, FirstDevice, Range};
use crate::edu::{Edu, EduPorts, EDU_BAR_SIZE};
use crate::ioapic::{InterruptRoute, Ioapic, IOAPIC_RANGE};
use crate::pc_testdev::TestdevHooks;
use crate::pci::{Bdf, MsiMessage, PciFunction, PciHost, PlainFunction, PCI_CONFIG_RANGE};
use crate::vtd::{MsiSink, Vtd, VTD_RANGE};
use crate::vtd_tables::DmaMemory;

/// Where edu sits.
pub const EDU_BDF: Bdf = Bdf::new(1, 0);
/// edu's BAR 0 (below the I/O APIC, as SeaBIOS places it under QEMU).
pub const EDU_BAR0: u32 = 0xfea0_0000;
/// The I/O APIC input edu's INTA# is wired to (q35 routes PCI INTx to pins 16-23).
pub const EDU_INTX_LINE: u8 = 16;

/// What the PCI part has.
#[derive(Debug)]
pub struct Q35Config {
    /// The VT-d unit (`-device intel-iommu,intremap=on`).
    pub iommu: bool,
    /// QEMU's edu (`-device edu`).
    pub edu: bool,
    /// Guest RAM, for DMA and the remapping tables.
    pub memory: Arc<dyn DmaMemory>,
    /// Where interrupts end (`vtd::KvmMsi` on KVM).
    pub sink: Arc<dyn MsiSink>,
}

/// Interrupt requests through the remapping unit (when there is one) to the sink.
#[derive(Debug)]
struct Remap {
    vtd: Option<Arc<Vtd>>,
    sink: Arc<dyn MsiSink>,
}

impl InterruptRoute for Remap {
    fn send(&self, msg: MsiMessage, requester: Option<Bdf>) {
        let out = match &self.vtd {
            Some(vtd) => vtd.remap(msg, requester.map(|b| b.0)),
            None => Some(msg),
        };
        if let Some(out) = out {
            self.sink.signal(out);
        }
    }
}

/// What edu reaches: DMA through the remapping unit, INTx through the I/O APIC.
#[derive(Debug)]
struct EduWiring {
    remap: Arc<Remap>,
    ioapic: Arc<Ioapic>,
    memory: Arc<dyn DmaMemory>,
}

impl InterruptRoute for EduWiring {
    fn send(&self, msg: MsiMessage, requester: Option<Bdf>) {
        self.remap.send(msg, requester);
    }
}

impl EduPorts for EduWiring {
    fn dma(&self, requester: Bdf, iova: u64, buf: &mut [u8], to_memory: bool) -> bool {
        match &self.remap.vtd {
            Some(vtd) => vtd.dma(requester.0, iova, buf, to_memory).is_ok(),
            None if to_memory => self.memory.write(iova, buf),
            None => self.memory.read(iova, buf),
        }
    }

    fn intx(&self, line: u8, asserted: bool) {
        self.ioapic.set_level(usize::from(line), asserted);
    }
}

impl TestdevHooks for Ioapic {
    fn set_irq_line(&self, line: u32, level: bool) {
        self.set_level(line as usize, level);
    }
}

/// The PCI part's devices, once on the bus.
#[derive(Debug, Clone)]
pub struct Q35 {
    ioapic: Arc<Ioapic>,
    vtd: Option<Arc<Vtd>>,
    edu: Option<Arc<Edu>>,
}

impl Q35 {
    /// Create the devices `config` names and add their ranges to `bus`: the PCI
    /// configuration ports, the I/O APIC, the VT-d registers, edu's BAR 0.
    pub fn register<F: FirstDevice>(
        config: Q35Config,
        bus: BusBuilder<F>,
    ) -> Result<(BusBuilder<F>, Self), BusError> {
        let vtd = config
            .iommu
            .then(|| Arc::new(Vtd::new(config.memory.clone(), config.sink.clone())));
        let remap = Arc::new(Remap {
            vtd: vtd.clone(),
            sink: config.sink,
        });
        let ioapic = Arc::new(Ioapic::new(remap.clone()));
        let edu = config.edu.then(|| {
            let wiring = Arc::new(EduWiring {
                remap,
                ioapic: ioapic.clone(),
                memory: config.memory,
            });
            Arc::new(Edu::new(EDU_BDF, EDU_BAR0, EDU_INTX_LINE, wiring))
        });
        let mut functions: Vec<(Bdf, Arc<dyn PciFunction>)> =
            vec![(Bdf::new(0, 0), Arc::new(PlainFunction::q35_host_bridge()))];
        if let Some(edu) = &edu {
            functions.push((EDU_BDF, edu.clone()));
        }
        let mut bus = bus
            .io(
                "pci config",
                PCI_CONFIG_RANGE,
                Arc::new(PciHost::new(functions)),
            )?
            .mmio("ioapic", IOAPIC_RANGE, ioapic.clone())?;
        if let Some(vtd) = &vtd {
            bus = bus.mmio("intel-iommu", VTD_RANGE, vtd.clone())?;
        }
        if let Some(edu) = &edu {
            let bar = Range::mmio(u64::from(EDU_BAR0), u64::from(EDU_BAR_SIZE));
            bus = bus.mmio("edu", bar, edu.clone() as Arc<dyn BusDevice>)?;
        }
        Ok((bus, Self { ioapic, vtd, edu }))
    }

    /// The I/O APIC (its pins drive pc-testdev's IRQ lines on this machine).
    pub fn ioapic(&self) -> &Arc<Ioapic> {
        &self.ioapic
    }

    /// DMA faults and blocked interrupts of the remapping unit (0 without one).
    pub fn iommu_faults(&self) -> u64 {
        self.vtd.as_deref().map_or(0, Vtd::faults)
    }

    /// Whether edu is present.
    pub fn has_edu(&self) -> bool {
        self.edu.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vtd_tables::tests::{map_iova0, VecMemory};
    use cpu_topology::VcpuIndex;
    use std::sync::Mutex;
    use vcpu_lifecycle::ExitHandler;

    const V: VcpuIndex = VcpuIndex(0);

    #[derive(Debug, Default)]
    struct Lapics(Mutex<Vec<MsiMessage>>);
    impl MsiSink for Lapics {
        fn signal(&self, msg: MsiMessage) {
            self.0.lock().unwrap().push(msg);
        }
    }

    fn machine(iommu: bool) -> (crate::bus::Bus, Q35, Arc<VecMemory>, Arc<Lapics>) {
        let mem = Arc::new(VecMemory::new(0x20000));
        let lapics = Arc::new(Lapics::default());
        let (bus, q35) = Q35::register(
            Q35Config {
                iommu,
                edu: true,
                memory: mem.clone(),
                sink: lapics.clone(),
            },
            BusBuilder::new(),
        )
        .unwrap();
        (bus.build(), q35, mem, lapics)
    }

    fn cfg(bus: &crate::bus::Bus, reg: u32, v: Option<u32>) -> u32 {
        let addr = (1u32 << 31) | u32::from(EDU_BDF.0) << 8 | reg;
        bus.io_out(V, 0xcf8, &addr.to_le_bytes());
        let mut d = [0; 4];
        match v {
            Some(v) => {
                bus.io_out(V, 0xcfc, &v.to_le_bytes());
            }
            None => {
                bus.io_in(V, 0xcfc, &mut d);
            }
        }
        u32::from_le_bytes(d)
    }

    fn mmio32(bus: &crate::bus::Bus, addr: u64, v: Option<u32>) -> u32 {
        let mut d = [0; 4];
        match v {
            Some(v) => {
                bus.mmio_write(V, addr, &v.to_le_bytes());
            }
            None => {
                bus.mmio_read(V, addr, &mut d);
            }
        }
        u32::from_le_bytes(d)
    }

    fn ioapic_rte(bus: &crate::bus::Bus, pin: u32, rte: u64) {
        for half in 0..2 {
            mmio32(bus, 0xfec0_0000, Some(0x10 + 2 * pin + half));
            mmio32(bus, 0xfec0_0010, Some((rte >> (32 * half)) as u32));
        }
    }

    #[test]
    fn the_kvm_unit_tests_sequence_runs_through_remapping() {
        let (bus, q35, mem, lapics) = machine(true);
        assert!(q35.has_edu());
        const VTD: u64 = 0xfed9_0000;
        // vtd_init: QI, root table at 0x1000, IR table at 0x6000 (64K entries), TE, IRE.
        let gsts = |bus: &crate::bus::Bus| mmio32(bus, VTD + 0x1c, None);
        for (reg, v) in [(None, 1u32 << 26), (Some(0x1000u32), 1 << 30)] {
            if let Some(v) = reg {
                mmio32(&bus, VTD + 0x20, Some(v));
            }
            mmio32(&bus, VTD + 0x18, Some(gsts(&bus) | v));
        }
        mmio32(&bus, VTD + 0xb8, Some(0x600f));
        for bit in [24, 31, 25] {
            mmio32(&bus, VTD + 0x18, Some(gsts(&bus) | 1 << bit));
        }
        assert_eq!(gsts(&bus), 0xc700_0000, "TES RTPS QIES IRES IRTPS");
        // vtd_map_range(00:01.0, IOVA 0 -> 0x9000), then edu_dma both ways.
        map_iova0(&mem, 0x1000, 0x9000);
        mem.put(0x2000 + 16 * 0x08, 0x3000 | 1);
        mem.put(0x2000 + 16 * 0x08 + 8, 1 | 0x08 << 8);
        mem.put(0x9000, 0x1234_5678);
        cfg(&bus, 0x04, Some(0x0006));
        let edu = u64::from(EDU_BAR0);
        for (src, dst, cmd) in [(0, 0x40000, 1), (0x40000, 4, 3)] {
            bus.mmio_write(V, edu + 0x80, &(src as u64).to_le_bytes());
            bus.mmio_write(V, edu + 0x88, &(dst as u64).to_le_bytes());
            bus.mmio_write(V, edu + 0x90, &4u64.to_le_bytes());
            mmio32(&bus, edu + 0x98, Some(cmd));
        }
        let mut word = [0; 4];
        assert!(mem.read(0x9004, &mut word));
        assert_eq!(u32::from_le_bytes(word), 0x1234_5678, "DMAR 4B memcpy");
        // IR IOAPIC: IRTE 1 -> vector 0xed, RTE of the interrupt line in remappable form.
        mem.put(0x6000 + 16, 1 | 0xed << 16);
        mem.put(0x6000 + 24, 0x08 | 1 << 18);
        let line = cfg(&bus, 0x3c, None) & 0xff;
        assert_eq!(line, u32::from(EDU_INTX_LINE));
        // The RTE's own vector (0x33) only matches EOIs: the IRTE's 0xed is delivered.
        ioapic_rte(&bus, line, 1 << 48 | 1 << 49 | 0x33);
        mmio32(&bus, edu + 0x60, Some(1));
        mmio32(&bus, edu + 0x64, Some(1));
        // IR MSI: IRTE 2 -> vector 0xee, MSI address in remappable form.
        mem.put(0x6000 + 32, 1 | 0xee << 16);
        mem.put(0x6000 + 40, 0x08 | 1 << 18);
        cfg(&bus, 0x44, Some(0xfee0_0000 | 2 << 5 | 1 << 4));
        cfg(&bus, 0x48, Some(0));
        cfg(&bus, 0x4c, Some(0));
        cfg(&bus, 0x40, Some(0x0001_0000 | 0x0005));
        mmio32(&bus, edu + 0x60, Some(1));
        let vectors: Vec<u32> = lapics.0.lock().unwrap().iter().map(|m| m.data).collect();
        assert_eq!(vectors, [0xed, 0xee]);
        assert_eq!(q35.iommu_faults(), 0);
    }

    #[test]
    fn without_the_iommu_dma_is_physical_and_msis_pass() {
        let (bus, q35, mem, lapics) = machine(false);
        let mut d = [0; 4];
        bus.mmio_read(V, 0xfed9_0000, &mut d);
        assert_eq!(d, [0xff; 4], "no VT-d registers");
        mem.put(0x100, 0xabcd);
        cfg(&bus, 0x04, Some(0x0006));
        let edu = u64::from(EDU_BAR0);
        bus.mmio_write(V, edu + 0x80, &0x100u64.to_le_bytes());
        bus.mmio_write(V, edu + 0x88, &0x40000u64.to_le_bytes());
        bus.mmio_write(V, edu + 0x90, &4u64.to_le_bytes());
        mmio32(&bus, edu + 0x98, Some(1));
        bus.mmio_write(V, edu + 0x80, &0x40000u64.to_le_bytes());
        bus.mmio_write(V, edu + 0x88, &0x104u64.to_le_bytes());
        mmio32(&bus, edu + 0x98, Some(3));
        assert!(mem.read(0x104, &mut d));
        assert_eq!(u32::from_le_bytes(d), 0xabcd);
        ioapic_rte(&bus, 16, 0x41);
        mmio32(&bus, edu + 0x60, Some(1));
        q35.ioapic().set_irq_line(5, true);
        assert_eq!(
            *lapics.0.lock().unwrap(),
            [MsiMessage {
                address: 0xfee0_0000,
                data: 0x41
            }]
        );
        assert_eq!(q35.iommu_faults(), 0);
    }
}

//! An Intel VT-d DMA and interrupt remapping unit at MMIO `0xfed90000` (where QEMU's q35
//! `intel-iommu` sits and kvm-unit-tests looks for it), as QEMU models it with
//! `intremap=on,eim=off`: version 1.0, 39-bit guest address width (3-level tables),
//! 2 MiB and 1 GiB second-level pages, queued invalidation, interrupt remapping,
//! pass-through, no extended interrupt mode.
//!
//! | offset | register | behaviour |
//! |---|---|---|
//! | `0x00` | VER | 0x10 |
//! | `0x08` | CAP | [`CAP`] |
//! | `0x10` | ECAP | [`ECAP`] |
//! | `0x18` / `0x1c` | GCMD / GSTS | TE, QIE, IRE, CFI follow the command at once; SRTP and SIRTP latch RTADDR and IRTA and set RTPS and IRTPS |
//! | `0x20` | RTADDR | root table (legacy mode) |
//! | `0x28` | CCMD | context-cache invalidation: ICC clears at once (nothing is cached) |
//! | `0x34` | FSTS | write 1 to clear; IQE when the invalidation queue holds a bad descriptor |
//! | `0x38..=0x44` | FECTL, FEDATA, FEADDR, FEUADDR | stored (IM set at reset) |
//! | `0x80` / `0x88` / `0x90` | IQH / IQT / IQA | a tail write runs every descriptor up to the tail |
//! | `0x9c` | ICS | IWC, write 1 to clear |
//! | `0xa0..=0xac` | IECTL, IEDATA, IEADDR, IEUADDR | invalidation-wait interrupt when IM is clear |
//! | `0xb8` | IRTA | interrupt remapping table |
//! | `0x200` / `0x208` | IVA / IOTLB | IOTLB invalidation: IVT clears at once |
//!
//! Nothing is cached, so every invalidation descriptor (context, IOTLB, device-TLB,
//! interrupt entry cache) completes as soon as it is read; an invalidation wait writes
//! its status and raises its interrupt. Translation faults are returned to the caller
//! (the DMA fails, the interrupt is dropped) and counted ([`Vtd::faults`]); they are not
//! written to fault recording registers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cpu_topology::VcpuIndex;

use crate::bus::{BusDevice, DeviceAction, Range};
use crate::pci::{lock, MsiMessage};
use crate::vtd_tables::{self, DmaMemory, IrTable, VtdFault};

/// The unit's registers.
pub const VTD_RANGE: Range = Range::mmio(0xfed9_0000, 0x1000);

/// CAP: ND 2 (256 domains), SAGAW 39-bit, MGAW 38, ZLR, fault recording at 0x220 (one
/// record), SLLPS 2 MiB + 1 GiB, PSI, MAMV 18, DWD, DRD.
pub const CAP: u64 = 2
    | 0x2 << 8
    | 38 << 16
    | 1 << 22
    | 0x22 << 24
    | 0b11 << 34
    | 1 << 39
    | 18 << 48
    | 1 << 54
    | 1 << 55;
/// ECAP: QI, DT off, IR, EIM off, PT, IOTLB registers at 0x200, MHMV 15.
pub const ECAP: u64 = 1 << 1 | 1 << 3 | 1 << 6 | 0x20 << 8 | 0xf << 20;

const ECAP_EIM: u64 = 1 << 4;

/// GCMD/GSTS bits.
pub mod gcmd {
    /// Translation enable.
    pub const TE: u32 = 1 << 31;
    /// Set root table pointer (GSTS: RTPS).
    pub const SRTP: u32 = 1 << 30;
    /// Queued invalidation enable.
    pub const QIE: u32 = 1 << 26;
    /// Interrupt remapping enable.
    pub const IRE: u32 = 1 << 25;
    /// Set interrupt remap table pointer (GSTS: IRTPS).
    pub const SIRTP: u32 = 1 << 24;
    /// Compatibility format interrupts pass.
    pub const CFI: u32 = 1 << 23;
}

const VER: u64 = 0x00;
const CAP_REG: u64 = 0x08;
const ECAP_REG: u64 = 0x10;
const GCMD: u64 = 0x18;
const RTADDR: u64 = 0x20;
const CCMD: u64 = 0x28;
const FSTS: u64 = 0x34;
const FECTL: u64 = 0x38;
const IQH: u64 = 0x80;
const IQT: u64 = 0x88;
const IQA: u64 = 0x90;
const ICS: u64 = 0x9c;
const IECTL: u64 = 0xa0;
const IEDATA: u64 = 0xa4;
const IEADDR: u64 = 0xa8;
const IEUADDR: u64 = 0xac;
const IRTA: u64 = 0xb8;
const IOTLB: u64 = 0x208;
const FSTS_IQE: u32 = 1 << 4;
const INTERRUPT_MASK: u32 = 1 << 31;

/// Where remapped interrupts and the unit's own interrupts go (KVM_SIGNAL_MSI on KVM).
pub trait MsiSink: Send + Sync + std::fmt::Debug {
    /// Deliver a compatibility-format MSI.
    fn signal(&self, msg: MsiMessage);
}

/// An [`MsiSink`] that delivers through `KVM_SIGNAL_MSI`.
#[derive(Debug)]
pub struct KvmMsi(pub Arc<kvm_ioctls::VmFd>);

impl MsiSink for KvmMsi {
    fn signal(&self, msg: MsiMessage) {
        let msi = kvm_bindings::kvm_msi {
            address_lo: msg.address as u32,
            address_hi: (msg.address >> 32) as u32,
            data: msg.data,
            ..Default::default()
        };
        if let Err(e) = self.0.signal_msi(msi) {
            log::warn!("KVM_SIGNAL_MSI {:#x}/{:#x}: {e}", msg.address, msg.data);
        }
    }
}

/// The register file (plain data).
#[derive(Debug, Default, Clone)]
struct Regs {
    gsts: u32,
    rtaddr: u64,
    root: u64,
    ccmd: u64,
    fsts: u32,
    fault_event: [u32; 4],
    iqh: u64,
    iqt: u64,
    iqa: u64,
    ics: u32,
    inv_event: [u32; 4],
    irta: u64,
    ir_table: Option<IrTable>,
    iva: u64,
    iotlb: u64,
}

/// The remapping unit; see the [module docs](self).
#[derive(Debug)]
pub struct Vtd {
    regs: Mutex<Regs>,
    mem: Arc<dyn DmaMemory>,
    sink: Arc<dyn MsiSink>,
    ecap: u64,
    faults: AtomicU64,
}

impl Vtd {
    /// A unit at reset reading its tables from `mem` and raising its invalidation-wait
    /// interrupts through `sink`.
    pub fn new(mem: Arc<dyn DmaMemory>, sink: Arc<dyn MsiSink>) -> Self {
        let mut regs = Regs::default();
        regs.fault_event[0] = INTERRUPT_MASK;
        regs.inv_event[0] = INTERRUPT_MASK;
        Self {
            regs: Mutex::new(regs),
            mem,
            sink,
            ecap: ECAP,
            faults: AtomicU64::new(0),
        }
    }

    /// Translation faults and blocked interrupts so far.
    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::Relaxed)
    }

    fn fault<T>(&self, r: Result<T, VtdFault>, what: &str) -> Result<T, VtdFault> {
        if let Err(e) = &r {
            self.faults.fetch_add(1, Ordering::Relaxed);
            log::debug!("VT-d: {what} blocked: {e}");
        }
        r
    }

    /// The guest-physical address of DMA address `iova` from requester `sid`
    /// (identity while translation is off).
    pub fn translate(&self, sid: u16, iova: u64, write: bool) -> Result<u64, VtdFault> {
        let (te, root) = {
            let r = lock(&self.regs);
            (r.gsts & gcmd::TE != 0, r.root)
        };
        if !te {
            return Ok(iova);
        }
        let r = vtd_tables::translate(self.mem.as_ref(), root, sid, iova, write);
        self.fault(r, "DMA")
    }

    /// Copy between guest memory at DMA address `iova` and `buf`, page by page through
    /// the translation (`to_memory`: a write into guest memory).
    pub fn dma(
        &self,
        sid: u16,
        iova: u64,
        buf: &mut [u8],
        to_memory: bool,
    ) -> Result<(), VtdFault> {
        let mut done = 0;
        while done < buf.len() {
            let at = iova.wrapping_add(done as u64);
            let n = (0x1000 - (at & 0xfff) as usize).min(buf.len() - done);
            let gpa = self.translate(sid, at, to_memory)?;
            let chunk = &mut buf[done..done + n];
            let ok = if to_memory {
                self.mem.write(gpa, chunk)
            } else {
                self.mem.read(gpa, chunk)
            };
            if !ok {
                return self.fault(Err(VtdFault::TableRead(gpa)), "DMA");
            }
            done += n;
        }
        Ok(())
    }

    /// The interrupt that `msg` from requester `sid` (`None`: the IOAPIC) delivers, or
    /// `None` when remapping blocks it.
    pub fn remap(&self, msg: MsiMessage, sid: Option<u16>) -> Option<MsiMessage> {
        let (gsts, table) = {
            let r = lock(&self.regs);
            (r.gsts, r.ir_table)
        };
        if gsts & gcmd::IRE == 0 {
            return Some(msg);
        }
        let r = match (vtd_tables::is_remappable(&msg), table) {
            (false, _) if gsts & gcmd::CFI != 0 => Ok(msg),
            (false, _) => Err(VtdFault::CompatibilityBlocked),
            (true, Some(t)) => vtd_tables::remap_interrupt(self.mem.as_ref(), &t, &msg, sid),
            (true, None) => Err(VtdFault::IndexBeyondTable(vtd_tables::interrupt_index(
                &msg,
            ))),
        };
        self.fault(r, "interrupt").ok()
    }

    fn read_reg(&self, offset: u64) -> u64 {
        let r = lock(&self.regs);
        let qword = offset & !7;
        let v = match qword {
            VER => 0x10,
            CAP_REG => CAP,
            ECAP_REG => self.ecap,
            GCMD => u64::from(r.gsts) << 32,
            RTADDR => r.rtaddr,
            CCMD => r.ccmd,
            0x30 => u64::from(r.fsts) << 32,
            FECTL => u64::from(r.fault_event[0]) | u64::from(r.fault_event[1]) << 32,
            0x40 => u64::from(r.fault_event[2]) | u64::from(r.fault_event[3]) << 32,
            IQH => r.iqh,
            IQT => r.iqt,
            IQA => r.iqa,
            0x98 => u64::from(r.ics) << 32,
            IECTL => u64::from(r.inv_event[0]) | u64::from(r.inv_event[1]) << 32,
            IEADDR => u64::from(r.inv_event[2]) | u64::from(r.inv_event[3]) << 32,
            IRTA => r.irta,
            0x200 => r.iva,
            IOTLB => r.iotlb,
            _ => 0,
        };
        v >> (8 * (offset & 4))
    }

    /// A register write; `width` is 4 or 8 bytes.
    fn write_reg(&self, offset: u64, value: u64, width: usize) {
        let mut r = lock(&self.regs);
        let merge = |old: u64| -> u64 {
            match (width, offset & 4) {
                (8, _) => value,
                (_, 0) => (old & !0xffff_ffff) | (value & 0xffff_ffff),
                _ => (old & 0xffff_ffff) | (value << 32),
            }
        };
        match offset {
            GCMD => self.command(&mut r, value as u32),
            RTADDR | 0x24 => r.rtaddr = merge(r.rtaddr),
            CCMD | 0x2c => {
                let v = merge(r.ccmd);
                // ICC (bit 63) clears at once; CAIG (60:59) reports the requested CIRG.
                r.ccmd = (v & !(1 << 63) & !(3 << 59)) | ((v >> 61) & 3) << 59;
            }
            FSTS => r.fsts &= !(value as u32 & 0x7f),
            FECTL => r.fault_event[0] = value as u32 & INTERRUPT_MASK,
            0x3c | 0x40 | 0x44 => r.fault_event[((offset - FECTL) / 4) as usize] = value as u32,
            IQT | 0x8c => {
                r.iqt = merge(r.iqt) & 0x7fff0;
                self.run_queue(&mut r);
            }
            IQA | 0x94 if r.gsts & gcmd::QIE == 0 => r.iqa = merge(r.iqa),
            ICS => r.ics &= !(value as u32 & 1),
            IECTL => r.inv_event[0] = value as u32 & INTERRUPT_MASK,
            IEDATA | IEADDR | IEUADDR => {
                r.inv_event[((offset - IECTL) / 4) as usize] = value as u32
            }
            IRTA | 0xbc => r.irta = merge(r.irta),
            0x200 | 0x204 => r.iva = merge(r.iva),
            IOTLB | 0x20c => r.iotlb = merge(r.iotlb) & !(1 << 63),
            _ => {}
        }
    }

    fn command(&self, r: &mut Regs, cmd: u32) {
        let persistent = gcmd::TE | gcmd::IRE | gcmd::CFI;
        r.gsts = (r.gsts & !persistent) | (cmd & persistent);
        if cmd & gcmd::QIE != 0 && r.gsts & gcmd::QIE == 0 {
            r.gsts |= gcmd::QIE;
            r.iqh = 0;
        } else if cmd & gcmd::QIE == 0 && r.gsts & gcmd::QIE != 0 && r.iqh == r.iqt {
            r.gsts &= !gcmd::QIE;
        }
        if cmd & gcmd::SRTP != 0 {
            r.root = r.rtaddr;
            r.gsts |= gcmd::SRTP;
        }
        if cmd & gcmd::SIRTP != 0 {
            r.ir_table = Some(IrTable::from_irta(r.irta, self.ecap & ECAP_EIM != 0));
            r.gsts |= gcmd::SIRTP;
        }
    }

    /// Run the invalidation queue from IQH up to IQT (128-bit descriptors).
    fn run_queue(&self, r: &mut Regs) {
        if r.gsts & gcmd::QIE == 0 || r.fsts & FSTS_IQE != 0 {
            return;
        }
        let entries = 256u64 << (r.iqa & 7);
        let base = r.iqa & !0xfff;
        while r.iqh != r.iqt {
            let at = base + r.iqh;
            let mut d = [0u8; 16];
            if !self.mem.read(at, &mut d) || !self.descriptor(r, &d) {
                r.fsts |= FSTS_IQE;
                return;
            }
            r.iqh = (r.iqh + 16) % (entries * 16);
        }
    }

    /// One descriptor; false when it is malformed.
    fn descriptor(&self, r: &mut Regs, d: &[u8; 16]) -> bool {
        let mut lo = [0; 8];
        lo.copy_from_slice(&d[..8]);
        let lo = u64::from_le_bytes(lo);
        let mut hi = [0; 8];
        hi.copy_from_slice(&d[8..]);
        let hi = u64::from_le_bytes(hi);
        match lo & 0xf {
            // Context-cache, IOTLB, device-TLB, interrupt-entry-cache invalidation:
            // nothing is cached.
            1..=4 => true,
            5 => {
                if lo & (1 << 5) != 0 {
                    let status = ((lo >> 32) as u32).to_le_bytes();
                    if !self.mem.write(hi & !3, &status) {
                        return false;
                    }
                }
                if lo & (1 << 4) != 0 {
                    r.ics |= 1;
                    if r.inv_event[0] & INTERRUPT_MASK == 0 {
                        self.sink.signal(MsiMessage {
                            address: u64::from(r.inv_event[2]) | u64::from(r.inv_event[3]) << 32,
                            data: r.inv_event[1],
                        });
                    }
                }
                true
            }
            _ => false,
        }
    }
}

impl BusDevice for Vtd {
    fn read(&self, _: VcpuIndex, offset: u64, data: &mut [u8]) -> DeviceAction {
        let v = match data.len() {
            4 if offset % 4 == 0 => self.read_reg(offset),
            8 if offset % 8 == 0 => self.read_reg(offset),
            _ => u64::MAX,
        };
        let n = data.len().min(8);
        data[..n].copy_from_slice(&v.to_le_bytes()[..n]);
        DeviceAction::Continue
    }

    fn write(&self, _: VcpuIndex, offset: u64, data: &[u8]) -> DeviceAction {
        match data.len() {
            4 if offset % 4 == 0 => {
                let mut b = [0; 4];
                b.copy_from_slice(data);
                self.write_reg(offset, u64::from(u32::from_le_bytes(b)), 4);
            }
            8 if offset % 8 == 0 => {
                let mut b = [0; 8];
                b.copy_from_slice(data);
                self.write_reg(offset, u64::from_le_bytes(b), 8);
            }
            _ => {}
        }
        DeviceAction::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vtd_tables::tests::{map_iova0, VecMemory};

    const V: VcpuIndex = VcpuIndex(0);
    const GSTS: u64 = 0x1c;

    #[derive(Debug, Default)]
    pub(crate) struct Recorder(pub Mutex<Vec<MsiMessage>>);
    impl MsiSink for Recorder {
        fn signal(&self, msg: MsiMessage) {
            self.0.lock().unwrap().push(msg);
        }
    }

    fn unit() -> (Vtd, Arc<VecMemory>, Arc<Recorder>) {
        let mem = Arc::new(VecMemory::new(0x20000));
        let sink = Arc::new(Recorder::default());
        (Vtd::new(mem.clone(), sink.clone()), mem, sink)
    }

    fn r32(u: &Vtd, off: u64) -> u32 {
        let mut d = [0; 4];
        u.read(V, off, &mut d);
        u32::from_le_bytes(d)
    }

    fn r64(u: &Vtd, off: u64) -> u64 {
        let mut d = [0; 8];
        u.read(V, off, &mut d);
        u64::from_le_bytes(d)
    }

    fn w32(u: &Vtd, off: u64, v: u32) {
        u.write(V, off, &v.to_le_bytes());
    }

    fn w64(u: &Vtd, off: u64, v: u64) {
        u.write(V, off, &v.to_le_bytes());
    }

    /// What kvm-unit-tests' vtd_gcmd_or does: GSTS | one bit.
    fn gcmd_or(u: &Vtd, bit: u32) {
        let s = r32(u, GSTS);
        w32(u, GCMD, s | bit);
    }

    #[test]
    fn identification_registers_read_as_the_test_expects() {
        let (u, ..) = unit();
        assert_eq!((r32(&u, VER) >> 4) & 0xf, 1, "major version 1");
        let cap = r64(&u, CAP_REG);
        assert_eq!(cap & (0x2 << 8), 0x2 << 8, "SAGAW 39-bit");
        assert_eq!(cap & (3 << 34), 3 << 34, "SLLPS");
        assert_eq!((cap >> 16) & 0x3f, 38, "MGAW");
        assert_eq!(u64::from(r32(&u, 0x0c)), cap >> 32, "high half");
        let ecap = r64(&u, ECAP_REG);
        assert_eq!(ecap & 0b1_1010, 0b1010, "QI and IR, no EIM");
        assert_eq!(r32(&u, FSTS), 0);
        assert_eq!(r32(&u, FECTL), INTERRUPT_MASK);
        assert_eq!(r32(&u, GSTS), 0);
        let mut odd = [0; 2];
        u.read(V, 2, &mut odd);
        assert_eq!(odd, [0xff; 2], "only 4- and 8-byte accesses");
    }

    #[test]
    fn the_test_init_sequence_sets_every_status_bit() {
        let (u, ..) = unit();
        gcmd_or(&u, gcmd::QIE);
        w64(&u, RTADDR, 0x1000);
        gcmd_or(&u, gcmd::SRTP);
        w64(&u, IRTA, 0x6000 | 0xf);
        gcmd_or(&u, gcmd::SIRTP);
        gcmd_or(&u, gcmd::TE);
        gcmd_or(&u, gcmd::IRE);
        let s = r32(&u, GSTS);
        for bit in [gcmd::QIE, gcmd::SRTP, gcmd::SIRTP, gcmd::TE, gcmd::IRE] {
            assert_eq!(s & bit, bit, "{bit:#x} in {s:#x}");
        }
        assert_eq!(r64(&u, RTADDR), 0x1000);
        assert_eq!(r64(&u, IRTA), 0x600f);
        assert_eq!(r32(&u, FSTS), 0);
        w32(&u, GCMD, s & !gcmd::TE);
        assert_eq!(r32(&u, GSTS) & gcmd::TE, 0, "translation off again");
        assert_eq!(r32(&u, GSTS) & gcmd::SRTP, gcmd::SRTP, "RTPS stays");
    }

    #[test]
    fn dma_goes_through_the_latched_root_table() {
        let (u, mem, _) = unit();
        map_iova0(&mem, 0x1000, 0x9000);
        mem.put(0x9000, 0x1234_5678);
        let mut buf = [0u8; 4];
        u.dma(0x18, 0x9000, &mut buf, false).unwrap();
        assert_eq!(
            u32::from_le_bytes(buf),
            0x1234_5678,
            "identity while TE is off"
        );
        w64(&u, RTADDR, 0x1000);
        gcmd_or(&u, gcmd::SRTP);
        gcmd_or(&u, gcmd::TE);
        let mut buf = [0u8; 4];
        u.dma(0x18, 0, &mut buf, false).unwrap();
        assert_eq!(u32::from_le_bytes(buf), 0x1234_5678, "IOVA 0 -> 0x9000");
        u.dma(0x18, 4, &mut buf, true).unwrap();
        let mut back = [0u8; 8];
        assert!(mem.read(0x9000, &mut back));
        assert_eq!(back, [0x78, 0x56, 0x34, 0x12, 0x78, 0x56, 0x34, 0x12]);
        let mut across = [0u8; 8];
        assert!(
            u.dma(0x18, 0xffc, &mut across, false).is_err(),
            "page 1 unmapped"
        );
        assert!(u.dma(0x20, 0, &mut buf, false).is_err(), "other device");
        assert_eq!(u.faults(), 2);
    }

    #[test]
    fn interrupts_pass_until_remapping_is_on_then_go_through_the_table() {
        let (u, mem, _) = unit();
        let compat = MsiMessage {
            address: 0xfee0_1000,
            data: 0x41,
        };
        assert_eq!(u.remap(compat, Some(0x18)), Some(compat));
        mem.put(0x6000 + 16, 1 | 0xee << 16 | 0x100 << 32);
        mem.put(0x6000 + 24, 0x18 | 1 << 18);
        w64(&u, IRTA, 0x6000 | 0xf);
        gcmd_or(&u, gcmd::SIRTP);
        gcmd_or(&u, gcmd::IRE);
        assert_eq!(
            u.remap(compat, Some(0x18)),
            None,
            "compatibility format blocked"
        );
        gcmd_or(&u, gcmd::CFI);
        assert_eq!(
            u.remap(compat, Some(0x18)),
            Some(compat),
            "CFI lets it pass"
        );
        let remappable = MsiMessage {
            address: 0xfee0_0000 | 1 << 5 | 1 << 4,
            data: 0,
        };
        assert_eq!(
            u.remap(remappable, Some(0x18)),
            Some(MsiMessage {
                address: 0xfee0_1000,
                data: 0xee
            })
        );
        assert_eq!(u.remap(remappable, Some(0x20)), None, "source-id check");
    }

    #[test]
    fn the_invalidation_queue_runs_to_the_tail_and_writes_wait_status() {
        let (u, mem, sink) = unit();
        w64(&u, IQA, 0x3000);
        gcmd_or(&u, gcmd::QIE);
        assert_eq!(r64(&u, IQA), 0x3000);
        mem.put(0x3000, 0x1 | 1 << 4);
        mem.put(0x3010, 0x4);
        mem.put(0x3020, 0x5 | 1 << 5 | 1 << 4 | 0xabcd << 32);
        mem.put(0x3028, 0x8000);
        w64(&u, IQT, 0x30);
        assert_eq!(r64(&u, IQH), 0x30);
        let mut status = [0; 4];
        assert!(mem.read(0x8000, &mut status));
        assert_eq!(u32::from_le_bytes(status), 0xabcd);
        assert_eq!(r32(&u, ICS), 1);
        assert!(sink.0.lock().unwrap().is_empty(), "IM set");
        w32(&u, ICS, 1);
        assert_eq!(r32(&u, ICS), 0);
        w32(&u, IEDATA, 0x51);
        w32(&u, IEADDR, 0xfee0_0000);
        w32(&u, IECTL, 0);
        mem.put(0x3030, 0x5 | 1 << 4);
        w64(&u, IQT, 0x40);
        assert_eq!(
            sink.0.lock().unwrap().as_slice(),
            [MsiMessage {
                address: 0xfee0_0000,
                data: 0x51
            }]
        );
        mem.put(0x3040, 0xf);
        w64(&u, IQT, 0x50);
        assert_eq!(r32(&u, FSTS), FSTS_IQE, "bad descriptor");
        assert_eq!(r64(&u, IQH), 0x40, "the head stays on it");
        w32(&u, FSTS, FSTS_IQE);
        assert_eq!(r32(&u, FSTS), 0);
    }

    #[test]
    fn context_and_iotlb_invalidation_registers_complete_at_once() {
        let (u, ..) = unit();
        w64(&u, CCMD, 1 << 63 | 1 << 61);
        assert_eq!(r64(&u, CCMD), 1 << 61 | 1 << 59, "ICC clear, CAIG = CIRG");
        w64(&u, IOTLB, 1 << 63 | 1 << 60);
        assert_eq!(r64(&u, IOTLB), 1 << 60);
        w32(&u, RTADDR, 0x5000);
        w32(&u, RTADDR + 4, 1);
        assert_eq!(r64(&u, RTADDR), 0x1_0000_5000, "two 32-bit halves");
    }
}

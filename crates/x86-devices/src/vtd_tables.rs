//! The in-memory structures of Intel VT-d, read through a [`DmaMemory`]: the root and
//! context tables and the second-level page tables of DMA remapping
//! ([`translate`]), and the interrupt remapping table ([`remap_interrupt`]). Pure
//! functions of guest memory and the latched register values, so each is tested against
//! tables built in a plain byte vector.
//!
//! Supported: legacy-mode root table (RTADDR.TTM = 0), context entries with translation
//! type 0 (untranslated requests, multi-level tables) or 2 (pass-through), 3-level
//! (39-bit) tables with 4 KiB, 2 MiB and 1 GiB pages; IRTEs in remapped mode (posted mode
//! is refused), source-id verification (SVT 0, 1, 2), xAPIC (8-bit) destinations, or
//! 32-bit ones when extended interrupt mode is on.

use crate::pci::MsiMessage;

/// Guest-physical memory as a DMA engine sees it.
pub trait DmaMemory: Send + Sync + std::fmt::Debug {
    /// Read `buf.len()` bytes at guest-physical `gpa`; false when not all are RAM.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> bool;
    /// Write `buf` at guest-physical `gpa`; false when not all are RAM.
    fn write(&self, gpa: u64, buf: &[u8]) -> bool;
}

impl DmaMemory for vm_memory::GuestMemoryMmap {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> bool {
        vm_memory::Bytes::read_slice(self, buf, vm_memory::GuestAddress(gpa)).is_ok()
    }

    fn write(&self, gpa: u64, buf: &[u8]) -> bool {
        vm_memory::Bytes::write_slice(self, buf, vm_memory::GuestAddress(gpa)).is_ok()
    }
}

/// Guest RAM from guest-physical 0 held in a byte vector (tests, fuzzing, device models
/// without vm-memory). Accesses past its end are not RAM.
impl DmaMemory for std::sync::Mutex<Vec<u8>> {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> bool {
        let ram = self
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let src = byte_range(gpa, buf.len()).and_then(|r| ram.get(r));
        src.map(|src| buf.copy_from_slice(src)).is_some()
    }

    fn write(&self, gpa: u64, buf: &[u8]) -> bool {
        let mut ram = self
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let dst = byte_range(gpa, buf.len()).and_then(|r| ram.get_mut(r));
        dst.map(|dst| dst.copy_from_slice(buf)).is_some()
    }
}

/// The vector indices of `len` bytes at `gpa`, if they can be indices at all.
fn byte_range(gpa: u64, len: usize) -> Option<std::ops::Range<usize>> {
    let start = usize::try_from(gpa).ok()?;
    Some(start..start.checked_add(len)?)
}

/// Why a DMA request or an interrupt request was blocked (the VT-d fault reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VtdFault {
    /// A table entry could not be read from guest memory.
    #[error("read a VT-d table entry at {0:#x}: not guest RAM")]
    TableRead(u64),
    /// The root entry of the requester's bus is not present (reason 0x1).
    #[error("root entry for bus {0} not present")]
    RootNotPresent(u8),
    /// The context entry of the requester is not present (reason 0x2).
    #[error("context entry for devfn {0:#x} not present")]
    ContextNotPresent(u8),
    /// The context entry asks for what this unit does not offer (reason 0x3, 0xa).
    #[error("context entry invalid: {0}")]
    ContextInvalid(&'static str),
    /// The address is beyond the domain's address width (reason 0x4).
    #[error("address {0:#x} beyond the domain's address width")]
    AddressBeyondWidth(u64),
    /// A page-table entry does not allow the access (reason 0x5 write, 0x6 read).
    #[error("{access} at {iova:#x}: level {level} entry does not allow it")]
    NotPermitted {
        /// `read` or `write`.
        access: &'static str,
        /// The I/O virtual address.
        iova: u64,
        /// The table level (3 top .. 1 leaf).
        level: u8,
    },
    /// A compatibility-format interrupt while only remappable ones pass (reason 0x25).
    #[error("compatibility-format interrupt blocked")]
    CompatibilityBlocked,
    /// The interrupt index is beyond the table (reason 0x21).
    #[error("interrupt index {0} beyond the remapping table")]
    IndexBeyondTable(u32),
    /// The IRTE is not present (reason 0x22).
    #[error("IRTE {0} not present")]
    IrteNotPresent(u32),
    /// The IRTE is malformed or posted (reason 0x24).
    #[error("IRTE {0} invalid: {1}")]
    IrteInvalid(u32, &'static str),
    /// The requester's source-id fails the IRTE's verification (reason 0x26).
    #[error("IRTE {index}: source-id {sid:#06x} not allowed")]
    SourceId {
        /// The IRTE index.
        index: u32,
        /// The requester id.
        sid: u16,
    },
}

/// The read/write bits of a second-level entry, and its page-size bit.
const PTE_R: u64 = 1 << 0;
const PTE_W: u64 = 1 << 1;
const PTE_PS: u64 = 1 << 7;
/// Address bits of table entries and pointers (bits 51:12).
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// The address width of 3-level tables (context entry AW = 1).
pub const ADDRESS_WIDTH_39: u8 = 39;

fn read_u64(mem: &dyn DmaMemory, gpa: u64) -> Result<u64, VtdFault> {
    let mut b = [0; 8];
    if mem.read(gpa, &mut b) {
        Ok(u64::from_le_bytes(b))
    } else {
        Err(VtdFault::TableRead(gpa))
    }
}

/// Translate `iova` from requester `sid` for a read (`write` false) or a write, with the
/// root table at `root` (RTADDR as latched by SRTP). Returns the guest-physical address.
pub fn translate(
    mem: &dyn DmaMemory,
    root: u64,
    sid: u16,
    iova: u64,
    write: bool,
) -> Result<u64, VtdFault> {
    let bus = (sid >> 8) as u8;
    let devfn = sid as u8;
    let root_lo = read_u64(mem, (root & ADDR_MASK) + 16 * u64::from(bus))?;
    if root_lo & 1 == 0 {
        return Err(VtdFault::RootNotPresent(bus));
    }
    let ce_addr = (root_lo & ADDR_MASK) + 16 * u64::from(devfn);
    let (ce_lo, ce_hi) = (read_u64(mem, ce_addr)?, read_u64(mem, ce_addr + 8)?);
    if ce_lo & 1 == 0 {
        return Err(VtdFault::ContextNotPresent(devfn));
    }
    match (ce_lo >> 2) & 3 {
        0 => {}
        2 => return Ok(iova),
        _ => return Err(VtdFault::ContextInvalid("translation type")),
    }
    if ce_hi & 7 != 1 {
        return Err(VtdFault::ContextInvalid(
            "address width (only 39-bit is offered)",
        ));
    }
    if iova >> ADDRESS_WIDTH_39 != 0 {
        return Err(VtdFault::AddressBeyondWidth(iova));
    }
    let need = if write { PTE_W } else { PTE_R };
    let mut table = ce_lo & ADDR_MASK;
    for level in (1..=3u8).rev() {
        let shift = 12 + 9 * u32::from(level - 1);
        let pte = read_u64(mem, table + 8 * ((iova >> shift) & 0x1ff))?;
        if pte & need == 0 {
            return Err(VtdFault::NotPermitted {
                access: if write { "write" } else { "read" },
                iova,
                level,
            });
        }
        if level == 1 || pte & PTE_PS != 0 {
            let page = (1u64 << shift) - 1;
            return Ok((pte & ADDR_MASK & !page) | (iova & page));
        }
        table = pte & ADDR_MASK;
    }
    Err(VtdFault::ContextInvalid("page walk"))
}

/// The interrupt remapping table as latched by SIRTP (IRTA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IrTable {
    /// Guest-physical base (4 KiB aligned).
    pub base: u64,
    /// Entries: `2^(S+1)`.
    pub entries: u32,
    /// Extended interrupt mode: 32-bit (x2APIC) destinations.
    pub x2apic: bool,
}

impl IrTable {
    /// Decode an IRTA value (`eim_supported`: ECAP.EIM; without it EIME is ignored).
    pub fn from_irta(irta: u64, eim_supported: bool) -> Self {
        Self {
            base: irta & ADDR_MASK,
            entries: 2u32 << (irta & 0xf),
            x2apic: eim_supported && irta & (1 << 11) != 0,
        }
    }
}

/// An interrupt remapping table entry (remapped mode), decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Irte {
    /// Destination mode: logical.
    pub logical: bool,
    /// Redirection hint.
    pub redirection_hint: bool,
    /// Trigger mode: level.
    pub level: bool,
    /// Delivery mode (0 fixed, 1 lowest priority, ...).
    pub delivery_mode: u8,
    /// Vector.
    pub vector: u8,
    /// Destination id (raw 32-bit field).
    pub destination: u32,
    /// Source-id, its qualifier and its validation type.
    pub source_id: u16,
    /// SQ.
    pub source_qualifier: u8,
    /// SVT.
    pub source_validation: u8,
}

impl Irte {
    /// Decode the two quadwords of entry `index`.
    pub fn decode(index: u32, lo: u64, hi: u64) -> Result<Self, VtdFault> {
        if lo & 1 == 0 {
            return Err(VtdFault::IrteNotPresent(index));
        }
        if lo & (1 << 15) != 0 {
            return Err(VtdFault::IrteInvalid(index, "posted mode is not offered"));
        }
        Ok(Self {
            logical: lo & (1 << 2) != 0,
            redirection_hint: lo & (1 << 3) != 0,
            level: lo & (1 << 4) != 0,
            delivery_mode: ((lo >> 5) & 7) as u8,
            vector: (lo >> 16) as u8,
            destination: (lo >> 32) as u32,
            source_id: hi as u16,
            source_qualifier: ((hi >> 16) & 3) as u8,
            source_validation: ((hi >> 18) & 3) as u8,
        })
    }

    /// Check requester `sid` against the entry's source validation.
    fn verify(&self, index: u32, sid: u16) -> Result<(), VtdFault> {
        let ok = match self.source_validation {
            0 => true,
            1 => {
                let ignore: u16 = [0, 0b100, 0b110, 0b111][usize::from(self.source_qualifier)];
                (sid & !ignore) == (self.source_id & !ignore)
            }
            2 => {
                let bus = (sid >> 8) as u8;
                ((self.source_id >> 8) as u8..=self.source_id as u8).contains(&bus)
            }
            _ => return Err(VtdFault::IrteInvalid(index, "source validation type 3")),
        };
        if ok {
            Ok(())
        } else {
            Err(VtdFault::SourceId { index, sid })
        }
    }

    /// The compatibility-format MSI this entry delivers (`x2apic`: 32-bit destination,
    /// else the xAPIC id in bits 15:8 of the field).
    pub fn message(&self, x2apic: bool) -> MsiMessage {
        let dest = if x2apic {
            self.destination
        } else {
            (self.destination >> 8) & 0xff
        };
        let address = 0xfee0_0000
            | u64::from(dest & 0xff) << 12
            | u64::from(self.redirection_hint) << 3
            | u64::from(self.logical) << 2
            | u64::from(dest >> 8) << 40;
        let data = u32::from(self.vector)
            | u32::from(self.delivery_mode) << 8
            | u32::from(self.level) << 15
            | u32::from(self.level) << 14;
        MsiMessage { address, data }
    }
}

/// Whether an MSI address is in remappable format (bit 4).
pub fn is_remappable(msg: &MsiMessage) -> bool {
    msg.address & (1 << 4) != 0
}

/// The interrupt index of a remappable-format message: handle\[14:0\] in address bits
/// 19:5, handle\[15\] in bit 2, plus the data's subhandle when SHV (bit 3) is set.
pub fn interrupt_index(msg: &MsiMessage) -> u32 {
    let handle = ((msg.address >> 5) & 0x7fff) as u32 | (((msg.address >> 2) & 1) as u32) << 15;
    if msg.address & (1 << 3) != 0 {
        handle + (msg.data & 0xffff)
    } else {
        handle
    }
}

/// Remap a remappable-format interrupt request through `table`. `sid` is the requester
/// id, or `None` for a request without one (the IOAPIC's, as under QEMU, which skips
/// source-id verification for it).
pub fn remap_interrupt(
    mem: &dyn DmaMemory,
    table: &IrTable,
    msg: &MsiMessage,
    sid: Option<u16>,
) -> Result<MsiMessage, VtdFault> {
    let index = interrupt_index(msg);
    if index >= table.entries {
        return Err(VtdFault::IndexBeyondTable(index));
    }
    let at = table.base + 16 * u64::from(index);
    let irte = Irte::decode(index, read_u64(mem, at)?, read_u64(mem, at + 8)?)?;
    if let Some(sid) = sid {
        irte.verify(index, sid)?;
    }
    Ok(irte.message(table.x2apic))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Guest RAM from 0 in a vector.
    #[derive(Debug)]
    pub(crate) struct VecMemory(pub Mutex<Vec<u8>>);

    impl VecMemory {
        pub(crate) fn new(size: usize) -> Self {
            Self(Mutex::new(vec![0; size]))
        }
        pub(crate) fn put(&self, gpa: u64, v: u64) {
            assert!(self.write(gpa, &v.to_le_bytes()));
        }
    }

    impl DmaMemory for VecMemory {
        fn read(&self, gpa: u64, buf: &mut [u8]) -> bool {
            self.0.read(gpa, buf)
        }
        fn write(&self, gpa: u64, buf: &[u8]) -> bool {
            self.0.write(gpa, buf)
        }
    }

    const ROOT: u64 = 0x1000;
    const CTX: u64 = 0x2000;
    const L3: u64 = 0x3000;
    const L2: u64 = 0x4000;
    const L1: u64 = 0x5000;
    const SID: u16 = 0x0018;

    /// The tables kvm-unit-tests builds for 00:03.0: IOVA 0 -> `page`.
    pub(crate) fn map_iova0(mem: &VecMemory, root: u64, page: u64) {
        mem.put(root, CTX | 1);
        mem.put(CTX + 16 * 0x18, L3 | 1);
        mem.put(CTX + 16 * 0x18 + 8, 1 | (0x18 << 8));
        mem.put(L3, L2 | 3);
        mem.put(L2, L1 | 3);
        mem.put(L1, page | 3);
    }

    #[test]
    fn a_three_level_walk_maps_4k_pages() {
        let mem = VecMemory::new(0x10000);
        map_iova0(&mem, ROOT, 0x8000);
        assert_eq!(translate(&mem, ROOT, SID, 0x10, false), Ok(0x8010));
        assert_eq!(translate(&mem, ROOT, SID, 0xffc, true), Ok(0x8ffc));
        assert_eq!(
            translate(&mem, ROOT, SID, 0x1000, false),
            Err(VtdFault::NotPermitted {
                access: "read",
                iova: 0x1000,
                level: 1
            })
        );
        mem.put(L1, 0x8000 | PTE_R);
        assert!(matches!(
            translate(&mem, ROOT, SID, 0, true),
            Err(VtdFault::NotPermitted { level: 1, .. })
        ));
        assert_eq!(
            translate(&mem, ROOT, SID, 1 << 39, false),
            Err(VtdFault::AddressBeyondWidth(1 << 39))
        );
    }

    #[test]
    fn missing_or_unsupported_entries_fault_by_reason() {
        let mem = VecMemory::new(0x10000);
        assert_eq!(
            translate(&mem, ROOT, SID, 0, false),
            Err(VtdFault::RootNotPresent(0))
        );
        map_iova0(&mem, ROOT, 0x8000);
        assert_eq!(
            translate(&mem, ROOT, 0x0020, 0, false),
            Err(VtdFault::ContextNotPresent(0x20))
        );
        mem.put(CTX + 16 * 0x18 + 8, 2);
        assert!(matches!(
            translate(&mem, ROOT, SID, 0, false),
            Err(VtdFault::ContextInvalid(_))
        ));
        mem.put(CTX + 16 * 0x18, L3 | 1 | (2 << 2));
        assert_eq!(
            translate(&mem, ROOT, SID, 0x1234_5678, true),
            Ok(0x1234_5678),
            "pass-through"
        );
        mem.put(ROOT, 0xf_0000 | 1);
        assert_eq!(
            translate(&mem, ROOT, SID, 0, false),
            Err(VtdFault::TableRead(0xf_0000 + 16 * 0x18))
        );
    }

    #[test]
    fn large_pages_map_2m_and_1g() {
        let mem = VecMemory::new(0x10000);
        map_iova0(&mem, ROOT, 0x8000);
        mem.put(L2 + 8, 0x4020_0000 | PTE_PS | 3);
        assert_eq!(
            translate(&mem, ROOT, SID, 0x20_1234, false),
            Ok(0x4020_1234)
        );
        mem.put(L3 + 8, 0x8000_0000 | PTE_PS | 3);
        assert_eq!(
            translate(&mem, ROOT, SID, 0x4012_3456, true),
            Ok(0x8012_3456)
        );
    }

    fn irte(vector: u8, dest: u32, sid: u16, svt: u64, sq: u64) -> (u64, u64) {
        let lo = 1 | 1 << 1 | u64::from(vector) << 16 | u64::from(dest) << 32;
        let hi = u64::from(sid) | sq << 16 | svt << 18;
        (lo, hi)
    }

    #[test]
    fn irtes_decode_and_build_the_compatibility_message() {
        let (lo, hi) = irte(0xee, 0x0300, SID, 1, 0);
        let e = Irte::decode(1, lo, hi).unwrap();
        assert_eq!((e.vector, e.destination, e.source_id), (0xee, 0x300, SID));
        assert_eq!(
            e.message(false),
            MsiMessage {
                address: 0xfee0_3000,
                data: 0xee
            },
            "xAPIC destination in bits 15:8"
        );
        assert_eq!(e.message(true).address, 0x300_fee0_0000, "x2APIC id 0x300");
        let lvl = Irte::decode(1, lo | 1 << 4 | 1 << 2 | 1 << 5, hi).unwrap();
        assert_eq!(lvl.message(false).data, 0xee | 1 << 8 | 1 << 14 | 1 << 15);
        assert_eq!(lvl.message(false).address & 4, 4, "logical");
        assert_eq!(Irte::decode(1, 0, 0), Err(VtdFault::IrteNotPresent(1)));
        assert!(matches!(
            Irte::decode(1, lo | 1 << 15, hi),
            Err(VtdFault::IrteInvalid(1, _))
        ));
    }

    #[test]
    fn remappable_messages_find_their_entry_and_verify_the_source() {
        let mem = VecMemory::new(0x10000);
        let table = IrTable::from_irta(0x6000 | 0xf | 1 << 11, false);
        assert_eq!(
            (table.base, table.entries, table.x2apic),
            (0x6000, 65536, false)
        );
        let (lo, hi) = irte(0xee, 0, SID, 1, 0);
        mem.put(0x6000 + 16 * 2, lo);
        mem.put(0x6000 + 16 * 2 + 8, hi);
        let msg = MsiMessage {
            address: 0xfee0_0000 | 2 << 5 | 1 << 4,
            data: 0,
        };
        assert!(is_remappable(&msg));
        assert_eq!(interrupt_index(&msg), 2);
        let out = remap_interrupt(&mem, &table, &msg, Some(SID)).unwrap();
        assert_eq!(
            out,
            MsiMessage {
                address: 0xfee0_0000,
                data: 0xee
            }
        );
        assert_eq!(
            remap_interrupt(&mem, &table, &msg, Some(0x0020)),
            Err(VtdFault::SourceId {
                index: 2,
                sid: 0x20
            })
        );
        assert!(
            remap_interrupt(&mem, &table, &msg, None).is_ok(),
            "IOAPIC: no sid"
        );
        let shv = MsiMessage {
            address: 0xfee0_0000 | 1 << 5 | 1 << 4 | 1 << 3,
            data: 1,
        };
        assert_eq!(interrupt_index(&shv), 2, "handle 1 + subhandle 1");
        let high = MsiMessage {
            address: 0xfee0_0000 | 1 << 4 | 1 << 2,
            data: 0,
        };
        assert_eq!(interrupt_index(&high), 1 << 15);
        let small = IrTable::from_irta(0x6000, false);
        assert_eq!(
            remap_interrupt(&mem, &small, &msg, None),
            Err(VtdFault::IndexBeyondTable(2))
        );
        assert_eq!(
            remap_interrupt(&mem, &table, &high, None),
            Err(VtdFault::TableRead(0x6000 + 16 * (1 << 15))),
            "entry 32768 is past this guest's RAM"
        );
    }

    #[test]
    fn source_qualifiers_and_bus_ranges() {
        let (lo, _) = irte(0x30, 0, 0, 0, 0);
        let with = |sid, svt, sq| Irte::decode(0, lo, irte(0, 0, sid, svt, sq).1).unwrap();
        assert!(with(0x0018, 1, 3).verify(0, 0x001f).is_ok());
        assert!(with(0x0018, 1, 2).verify(0, 0x001f).is_err());
        assert!(with(0x0018, 1, 2).verify(0, 0x001e).is_ok());
        assert!(with(0x0203, 2, 0).verify(0, 0x0318).is_ok());
        assert!(with(0x0203, 2, 0).verify(0, 0x0418).is_err());
        assert!(with(0, 3, 0).verify(0, 0).is_err());
        assert!(with(0x1234, 0, 0).verify(0, 0).is_ok());
    }
}

//! Guest-virtual to guest-physical translation by walking the guest's x86-64 page tables.
//!
//! The walk reads page-table entries from guest RAM the way the MMU does in long mode:
//! CR3 points at the top table (PML4, or PML5 with CR4.LA57), each level indexes 9 bits of
//! the address, and a PS bit in a PDPT or PD entry ends the walk with a 1 GiB or 2 MiB
//! page. The result carries the effective permissions of the whole walk: writable and user
//! only if every level allows it, no-execute if any level forbids execution.
//!
//! What this walk does not model: access/dirty bit updates (it never writes), protection
//! keys, SMEP/SMAP/CR0.WP (it reports flags; it does not judge an access), and the guest's
//! MAXPHYADDR (entries are masked to 52 address bits; reserved-bit checks cover only the
//! PS bit at the top levels and the reserved low bits of large-page addresses).

use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemory};

/// Present.
const P: u64 = 1 << 0;
/// Read/write.
const RW: u64 = 1 << 1;
/// User/supervisor.
const US: u64 = 1 << 2;
/// Page size (large page) in a PDPT or PD entry.
const PS: u64 = 1 << 7;
/// Execute disable.
const XD: u64 = 1 << 63;
/// Physical address bits 51:12 of an entry or of CR3.
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// One level of the page-table hierarchy, named as in the Intel SDM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PagingLevel {
    /// Page map level 5 (only with LA57).
    Pml5,
    /// Page map level 4.
    Pml4,
    /// Page-directory-pointer table (entries may map 1 GiB pages).
    Pdpt,
    /// Page directory (entries may map 2 MiB pages).
    Pd,
    /// Page table (entries map 4 KiB pages).
    Pt,
}

impl PagingLevel {
    /// Bit position of the address bits this level indexes.
    fn shift(self) -> u32 {
        match self {
            Self::Pml5 => 48,
            Self::Pml4 => 39,
            Self::Pdpt => 30,
            Self::Pd => 21,
            Self::Pt => 12,
        }
    }

    fn next(self) -> Option<Self> {
        match self {
            Self::Pml5 => Some(Self::Pml4),
            Self::Pml4 => Some(Self::Pdpt),
            Self::Pdpt => Some(Self::Pd),
            Self::Pd => Some(Self::Pt),
            Self::Pt => None,
        }
    }
}

impl std::fmt::Display for PagingLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pml5 => "PML5",
            Self::Pml4 => "PML4",
            Self::Pdpt => "PDPT",
            Self::Pd => "PD",
            Self::Pt => "PT",
        })
    }
}

/// Size of the page a translation ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageSize {
    /// 4 KiB, mapped by a PT entry.
    Size4K,
    /// 2 MiB, mapped by a PD entry with PS set.
    Size2M,
    /// 1 GiB, mapped by a PDPT entry with PS set.
    Size1G,
}

impl PageSize {
    /// The page size in bytes.
    pub fn bytes(self) -> u64 {
        match self {
            Self::Size4K => 1 << 12,
            Self::Size2M => 1 << 21,
            Self::Size1G => 1 << 30,
        }
    }
}

/// Effective permissions of a translation, combined over all levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageFlags {
    /// Writes allowed (R/W set at every level).
    pub writable: bool,
    /// User-mode access allowed (U/S set at every level).
    pub user: bool,
    /// Instruction fetch forbidden (XD set at some level; meaningful with EFER.NXE).
    pub nx: bool,
}

/// A successful translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    /// The guest-physical address of the byte at the guest-virtual address.
    pub gpa: GuestAddress,
    /// The page the address lies in.
    pub page_size: PageSize,
    /// Effective permissions.
    pub flags: PageFlags,
}

/// Paging mode: what CR3, CR4.LA57 say about the walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PagingMode {
    /// CR3: the top table's guest-physical address (bits 51:12; PCID/PCD/PWT bits ignored).
    pub cr3: u64,
    /// CR4.LA57: five-level paging, 57-bit virtual addresses.
    pub la57: bool,
}

/// Why a guest-virtual address has no translation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WalkError {
    /// Bits above the virtual address width are not copies of its top bit.
    #[error("guest-virtual address {gva:#x} is not canonical")]
    NonCanonical {
        /// The address.
        gva: u64,
    },
    /// The entry for the address at `level` has the present bit clear.
    #[error(
        "guest-virtual address {gva:#x} is not mapped: {level} entry {entry:#x} is not present"
    )]
    NotPresent {
        /// The address.
        gva: u64,
        /// The level whose entry is not present.
        level: PagingLevel,
        /// The entry's value.
        entry: u64,
    },
    /// A page table lies outside guest RAM.
    #[error(
        "{level} table entry at guest-physical {entry_gpa:#x} (for {gva:#x}) is outside guest RAM"
    )]
    TableOutsideRam {
        /// The address being translated.
        gva: u64,
        /// The level whose table could not be read.
        level: PagingLevel,
        /// The guest-physical address of the entry.
        entry_gpa: u64,
    },
    /// An entry with a reserved bit set (the MMU raises #PF with RSVD).
    #[error("guest-virtual address {gva:#x}: {level} entry {entry:#x} has reserved bits set")]
    ReservedBits {
        /// The address.
        gva: u64,
        /// The level of the faulty entry.
        level: PagingLevel,
        /// The entry's value.
        entry: u64,
    },
}

/// Translates `gva` with 4-level paging rooted at `cr3`.
///
/// ```
/// use guest_memory::walk::{gva_to_gpa, PageSize};
/// use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
/// let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
/// // PML4 at 0x1000 -> PDPT at 0x2000 -> PD at 0x3000 whose entry 1 maps 2 MiB at 4 MiB.
/// mem.write_obj(0x2000u64 | 0x3, GuestAddress(0x1000)).unwrap();
/// mem.write_obj(0x3000u64 | 0x3, GuestAddress(0x2000)).unwrap();
/// mem.write_obj(0x40_0000u64 | 0x83, GuestAddress(0x3008)).unwrap();
/// let t = gva_to_gpa(&mem, 0x1000, 0x20_1234).unwrap();
/// assert_eq!(t.gpa, GuestAddress(0x40_1234));
/// assert_eq!(t.page_size, PageSize::Size2M);
/// assert!(t.flags.writable && !t.flags.user && !t.flags.nx);
/// ```
pub fn gva_to_gpa<M: GuestMemory + ?Sized>(
    mem: &M,
    cr3: u64,
    gva: u64,
) -> Result<Translation, WalkError> {
    walk(mem, PagingMode { cr3, la57: false }, gva)
}

/// Translates `gva` in the given paging mode (4- or 5-level).
pub fn walk<M: GuestMemory + ?Sized>(
    mem: &M,
    mode: PagingMode,
    gva: u64,
) -> Result<Translation, WalkError> {
    let va_bits = if mode.la57 { 57 } else { 48 };
    let unused = 64 - va_bits;
    if (((gva << unused) as i64) >> unused) as u64 != gva {
        return Err(WalkError::NonCanonical { gva });
    }

    let mut level = if mode.la57 {
        PagingLevel::Pml5
    } else {
        PagingLevel::Pml4
    };
    let mut table = mode.cr3 & ADDR_MASK;
    let mut flags = PageFlags {
        writable: true,
        user: true,
        nx: false,
    };
    loop {
        let index = (gva >> level.shift()) & 0x1ff;
        let entry_gpa = table + index * 8;
        let entry: u64 =
            mem.read_obj(GuestAddress(entry_gpa))
                .map_err(|_| WalkError::TableOutsideRam {
                    gva,
                    level,
                    entry_gpa,
                })?;
        if entry & P == 0 {
            return Err(WalkError::NotPresent { gva, level, entry });
        }
        flags.writable &= entry & RW != 0;
        flags.user &= entry & US != 0;
        flags.nx |= entry & XD != 0;

        let page_size = match level {
            PagingLevel::Pt => Some(PageSize::Size4K),
            PagingLevel::Pd if entry & PS != 0 => Some(PageSize::Size2M),
            PagingLevel::Pdpt if entry & PS != 0 => Some(PageSize::Size1G),
            PagingLevel::Pml5 | PagingLevel::Pml4 if entry & PS != 0 => {
                return Err(WalkError::ReservedBits { gva, level, entry })
            }
            _ => None,
        };
        if let Some(page_size) = page_size {
            let size = page_size.bytes();
            let frame = entry & ADDR_MASK;
            // Bit 12 of a large-page entry is PAT; bits between it and the page size are
            // reserved.
            let reserved = if page_size == PageSize::Size4K {
                0
            } else {
                frame & (size - 1) & !(1 << 12)
            };
            if reserved != 0 {
                return Err(WalkError::ReservedBits { gva, level, entry });
            }
            let base = frame & !(size - 1);
            return Ok(Translation {
                gpa: GuestAddress(base | (gva & (size - 1))),
                page_size,
                flags,
            });
        }
        table = entry & ADDR_MASK;
        // Not at `Pt` here: the `Pt` arm above always returns.
        level = level.next().unwrap_or(PagingLevel::Pt);
    }
}

#[cfg(test)]
mod tests;

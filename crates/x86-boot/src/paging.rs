//! 4-level identity-mapping page tables with 2 MiB pages.
//!
//! The tables map guest-virtual address `v` to guest-physical `v` for
//! `0..size`, rounded up to whole GiB. Every level has the User bit set, so
//! code running at CPL3 can touch the whole mapped range; callers that want
//! privilege separation build their own tables.
//!
//! In guest memory the tables are one contiguous block starting at a 4 KiB
//! aligned `pml4_addr`: the PML4 page, the PDPT page, then one page directory
//! per GiB. [`identity_map_footprint`] says how many bytes that is.

use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryError};

/// Page size of one table.
pub const PAGE_SIZE: u64 = 0x1000;
/// Bytes mapped by one page-directory entry (a 2 MiB page).
pub const LARGE_PAGE_SIZE: u64 = 2 << 20;
/// Bytes mapped by one page directory (one PDPT entry).
pub const GIB: u64 = 1 << 30;
/// Largest `size` one PDPT can map (512 GiB).
pub const MAX_IDENTITY_MAP: u64 = 512 * GIB;
/// Entries per table.
const ENTRIES: u64 = 512;

/// Present.
pub const PTE_PRESENT: u64 = 1 << 0;
/// Writable.
pub const PTE_WRITABLE: u64 = 1 << 1;
/// User (CPL3) accessible.
pub const PTE_USER: u64 = 1 << 2;
/// Page size: in a PD entry, maps a 2 MiB page.
pub const PTE_LARGE: u64 = 1 << 7;
/// Physical address bits of an entry (bits 12..52).
pub const PTE_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

const TABLE_FLAGS: u64 = PTE_PRESENT | PTE_WRITABLE | PTE_USER;
const LEAF_FLAGS: u64 = TABLE_FLAGS | PTE_LARGE;

/// Errors from building page tables.
#[derive(Debug, thiserror::Error)]
pub enum PagingError {
    /// The mapping size is zero or above what one PDPT maps.
    #[error("identity map size {size:#x} is not in 1..={max:#x}")]
    SizeNotRepresentable {
        /// Requested size in bytes.
        size: u64,
        /// Largest supported size.
        max: u64,
    },
    /// The table base is not 4 KiB aligned.
    #[error("page table address {0:#x} is not 4 KiB aligned")]
    Misaligned(u64),
    /// The tables would extend past the end of the address space.
    #[error("page tables at {addr:#x} ({len:#x} bytes) overflow the address space")]
    AddressOverflow {
        /// Table base.
        addr: u64,
        /// Table block size.
        len: u64,
    },
    /// Writing a table into guest memory failed.
    #[error("writing page table at {addr:#x} into guest memory failed")]
    WriteTable {
        /// Guest-physical address of the table.
        addr: u64,
        /// Cause.
        #[source]
        source: GuestMemoryError,
    },
}

/// Number of page directories needed to map `size` bytes.
fn directories(size: u64) -> Result<u64, PagingError> {
    if size == 0 || size > MAX_IDENTITY_MAP {
        return Err(PagingError::SizeNotRepresentable {
            size,
            max: MAX_IDENTITY_MAP,
        });
    }
    Ok(size.div_ceil(GIB))
}

/// Bytes of guest memory the tables for an identity map of `size` bytes use.
pub fn identity_map_footprint(size: u64) -> Result<u64, PagingError> {
    Ok((2 + directories(size)?) * PAGE_SIZE)
}

/// Writes identity-mapping tables for `0..size` (rounded up to whole GiB) at
/// `pml4_addr` and returns the value to load into CR3.
pub fn write_identity_map<M: GuestMemory + ?Sized>(
    mem: &M,
    pml4_addr: GuestAddress,
    size: u64,
) -> Result<u64, PagingError> {
    let base = pml4_addr.0;
    if base % PAGE_SIZE != 0 {
        return Err(PagingError::Misaligned(base));
    }
    let dirs = directories(size)?;
    let len = identity_map_footprint(size)?;
    if base.checked_add(len).is_none() {
        return Err(PagingError::AddressOverflow { addr: base, len });
    }
    let pdpt = base + PAGE_SIZE;
    let first_pd = pdpt + PAGE_SIZE;

    let mut page = vec![0u8; PAGE_SIZE as usize];
    put_entry(&mut page, 0, pdpt | TABLE_FLAGS);
    write_page(mem, base, &page)?;

    page.fill(0);
    for d in 0..dirs {
        put_entry(&mut page, d, (first_pd + d * PAGE_SIZE) | TABLE_FLAGS);
    }
    write_page(mem, pdpt, &page)?;

    for d in 0..dirs {
        for e in 0..ENTRIES {
            let phys = d * GIB + e * LARGE_PAGE_SIZE;
            put_entry(&mut page, e, phys | LEAF_FLAGS);
        }
        write_page(mem, first_pd + d * PAGE_SIZE, &page)?;
    }
    Ok(base)
}

fn put_entry(page: &mut [u8], index: u64, value: u64) {
    let at = (index * 8) as usize;
    page[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

fn write_page<M: GuestMemory + ?Sized>(mem: &M, addr: u64, page: &[u8]) -> Result<(), PagingError> {
    mem.write_slice(page, GuestAddress(addr))
        .map_err(|source| PagingError::WriteTable { addr, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    fn mem(size: usize) -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), size)]).unwrap()
    }

    fn entry(m: &GuestMemoryMmap, table: u64, index: u64) -> u64 {
        m.read_obj::<u64>(GuestAddress(table + index * 8)).unwrap()
    }

    /// Walks the tables like the MMU does for a 2 MiB leaf.
    fn translate(m: &GuestMemoryMmap, cr3: u64, va: u64) -> Option<(u64, u64)> {
        let mut flags = !0u64;
        let mut table = cr3 & PTE_ADDR_MASK;
        for (level, shift) in [39u32, 30, 21].into_iter().enumerate() {
            let e = entry(m, table, (va >> shift) & 0x1ff);
            if e & PTE_PRESENT == 0 {
                return None;
            }
            flags &= e;
            if level == 2 {
                assert_ne!(e & PTE_LARGE, 0, "PD entry must be a 2 MiB page");
                let pa =
                    (e & PTE_ADDR_MASK & !(LARGE_PAGE_SIZE - 1)) | (va & (LARGE_PAGE_SIZE - 1));
                return Some((pa, flags & (PTE_WRITABLE | PTE_USER)));
            }
            table = e & PTE_ADDR_MASK;
        }
        None
    }

    #[test]
    fn identity_maps_low_memory_and_mmio_hole_for_user() {
        let m = mem(1 << 20);
        let cr3 = write_identity_map(&m, GuestAddress(0x9000), 4 * GIB).unwrap();
        assert_eq!(cr3, 0x9000);
        for va in [
            0u64,
            0x10_0000,
            0x1234_5678,
            0xd000_0000,
            0xfee0_0000,
            4 * GIB - 1,
        ] {
            assert_eq!(
                translate(&m, cr3, va),
                Some((va, PTE_WRITABLE | PTE_USER)),
                "va {va:#x}"
            );
        }
        assert_eq!(translate(&m, cr3, 4 * GIB), None);
    }

    #[test]
    fn size_rounds_up_to_whole_gib() {
        let m = mem(1 << 20);
        let cr3 = write_identity_map(&m, GuestAddress(0x1000), GIB + 1).unwrap();
        assert_eq!(
            translate(&m, cr3, 2 * GIB - 1).map(|t| t.0),
            Some(2 * GIB - 1)
        );
        assert_eq!(translate(&m, cr3, 2 * GIB), None);
        assert_eq!(identity_map_footprint(GIB + 1).unwrap(), 4 * PAGE_SIZE);
    }

    #[test]
    fn largest_map_reaches_512_gib() {
        let m = mem(4 << 20);
        let cr3 = write_identity_map(&m, GuestAddress(0), MAX_IDENTITY_MAP).unwrap();
        let va = MAX_IDENTITY_MAP - LARGE_PAGE_SIZE;
        assert_eq!(translate(&m, cr3, va).map(|t| t.0), Some(va));
    }

    #[test]
    fn rejects_bad_arguments() {
        let m = mem(1 << 20);
        for (addr, size, text) in [
            (
                0x1000,
                0,
                "identity map size 0x0 is not in 1..=0x8000000000",
            ),
            (
                0x1000,
                MAX_IDENTITY_MAP + 1,
                "identity map size 0x8000000001 is not in 1..=0x8000000000",
            ),
            (
                0x1001,
                GIB,
                "page table address 0x1001 is not 4 KiB aligned",
            ),
            (
                !0xfff,
                GIB,
                "page tables at 0xfffffffffffff000 (0x3000 bytes) overflow the address space",
            ),
            (
                0xff000,
                GIB,
                "writing page table at 0x100000 into guest memory failed",
            ),
        ] {
            let err = write_identity_map(&m, GuestAddress(addr), size).unwrap_err();
            assert_eq!(err.to_string(), text);
        }
    }

    proptest::proptest! {
        #[test]
        fn every_mapped_address_translates_to_itself(gib in 1u64..=8, va_frac in 0.0f64..1.0) {
            let m = mem(1 << 20);
            let size = gib * GIB;
            let cr3 = write_identity_map(&m, GuestAddress(0x4000), size).unwrap();
            let va = ((size as f64 * va_frac) as u64).min(size - 1);
            proptest::prop_assert_eq!(translate(&m, cr3, va), Some((va, PTE_WRITABLE | PTE_USER)));
            proptest::prop_assert_eq!(translate(&m, cr3, size + (va % GIB)), None);
        }
    }
}

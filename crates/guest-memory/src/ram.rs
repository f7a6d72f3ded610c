//! Guest RAM backed by anonymous host memory, and guest-physical to host-virtual translation.
//!
//! [`GuestRam::new`] maps one anonymous region per [`RamRegion`] of a [`MemoryLayout`]
//! through vm-memory's [`GuestMemoryMmap::from_ranges`], which maps with
//! `MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE`: the kernel neither reserves swap nor
//! commits pages for the mapping, so a 4 GiB guest that touched 10 MiB costs 10 MiB of host
//! memory. [`GuestRam::register`] hands the regions to KVM (see [`crate::slots`]).

use std::sync::Arc;

use kvm_ioctls::VmFd;
use thiserror::Error;
use vm_memory::mmap::FromRangesError;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryError, GuestMemoryMmap};

use crate::layout::{MemoryLayout, RamRegion};
use crate::slots::{MemorySlots, SlotError, SlotId};

/// A host-virtual address in this process, where a guest-physical address is mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostAddress(pub usize);

impl HostAddress {
    /// The address as a raw pointer (dereferencing it is the caller's business).
    pub fn as_ptr(self) -> *mut u8 {
        self.0 as *mut u8
    }
}

/// Why guest RAM could not be mapped or an address not translated.
#[derive(Debug, Error)]
pub enum MemoryError {
    /// A region is larger than the host address space (`usize`).
    #[error("RAM region at {gpa:#x} of size {size:#x} does not fit in the host address space")]
    RegionTooLarge {
        /// Start of the region.
        gpa: u64,
        /// Its size.
        size: u64,
    },
    /// mmap of the backing memory failed.
    #[error("mapping {} of guest RAM failed", crate::size::format_size(*size))]
    Map {
        /// Total RAM that was being mapped.
        size: u64,
        /// vm-memory's error, holding the errno.
        #[source]
        source: FromRangesError,
    },
    /// The address is in no RAM region (MMIO hole, beyond the end of RAM).
    #[error("guest-physical address {gpa:#x} is not guest RAM")]
    NotRam {
        /// The address asked for.
        gpa: u64,
    },
    /// The range starts in RAM but runs past the end of its region.
    #[error("guest-physical range {gpa:#x}+{len:#x} crosses the end of its RAM region at {region_end:#x}")]
    CrossesRegion {
        /// Start of the range.
        gpa: u64,
        /// Its length.
        len: usize,
        /// End of the region holding `gpa`.
        region_end: u64,
    },
    /// vm-memory refused a translation the layout allowed (an internal inconsistency).
    #[error("translating guest-physical address {gpa:#x} to a host address failed")]
    HostAddress {
        /// The address asked for.
        gpa: u64,
        /// vm-memory's error.
        #[source]
        source: GuestMemoryError,
    },
}

/// Guest RAM: a [`MemoryLayout`] backed by anonymous mappings.
///
/// Cloning the inner [`GuestMemoryMmap`] (it is reference counted) is the way to share RAM
/// with device emulation and loaders; the mappings live as long as any clone or any
/// [`MemorySlots`] holds them.
#[derive(Debug)]
pub struct GuestRam {
    layout: MemoryLayout,
    memory: GuestMemoryMmap,
}

impl GuestRam {
    /// Maps anonymous memory for every region of `layout`. Nothing is touched, so the host
    /// pays only for pages the guest (or the VMM) writes later.
    ///
    /// ```
    /// use guest_memory::{layout::MemoryLayout, ram::GuestRam};
    /// use vm_memory::{Bytes, GuestAddress};
    /// let ram = GuestRam::new(&MemoryLayout::x86_64(64 << 20).unwrap()).unwrap();
    /// ram.memory().write_obj(0xdead_beef_u32, GuestAddress(0x1000)).unwrap();
    /// let hva = ram.translate(GuestAddress(0x1000), 4).unwrap();
    /// assert!(!hva.as_ptr().is_null());
    /// ```
    pub fn new(layout: &MemoryLayout) -> Result<Self, MemoryError> {
        let ranges = layout
            .regions()
            .iter()
            .map(|r| {
                usize::try_from(r.size)
                    .map(|size| (r.gpa, size))
                    .map_err(|_| MemoryError::RegionTooLarge {
                        gpa: r.gpa.0,
                        size: r.size,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let memory = GuestMemoryMmap::from_ranges(&ranges).map_err(|source| MemoryError::Map {
            size: layout.ram_size(),
            source,
        })?;
        Ok(Self {
            layout: layout.clone(),
            memory,
        })
    }

    /// Wraps an already mapped memory map that backs `layout` (used by the backends).
    pub(crate) fn from_parts(layout: MemoryLayout, memory: GuestMemoryMmap) -> Self {
        Self { layout, memory }
    }

    /// The layout this RAM backs.
    pub fn layout(&self) -> &MemoryLayout {
        &self.layout
    }

    /// The vm-memory view, for `Bytes` reads and writes by guest-physical address.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.memory
    }

    /// Registers every region as a KVM memory slot, slots `0..n` in layout order. The slots
    /// stay registered, and the memory mapped, until the returned [`MemorySlots`] is
    /// dropped.
    pub fn register(&self, vm: Arc<VmFd>) -> Result<MemorySlots, SlotError> {
        self.register_at(vm, SlotId(0))
    }

    /// Like [`GuestRam::register`], with slots `first..first + n`, leaving lower slot
    /// numbers to the caller (ROM, device memory).
    pub fn register_at(&self, vm: Arc<VmFd>, first: SlotId) -> Result<MemorySlots, SlotError> {
        MemorySlots::register(vm, &self.memory, first)
    }

    /// The host address of `gpa`, after checking that all of `gpa..gpa + len` lies in one
    /// RAM region, so the caller may access `len` bytes from the returned address.
    ///
    /// A range that runs into the MMIO hole or past the end of RAM is an error, never a
    /// silent access to a neighbouring mapping.
    pub fn translate(&self, gpa: GuestAddress, len: usize) -> Result<HostAddress, MemoryError> {
        let region = self.region_for(gpa, len)?;
        let host = self
            .memory
            .get_host_address(gpa)
            .map_err(|source| MemoryError::HostAddress { gpa: gpa.0, source })?;
        debug_assert!(region.contains(gpa));
        Ok(HostAddress(host as usize))
    }

    fn region_for(&self, gpa: GuestAddress, len: usize) -> Result<&RamRegion, MemoryError> {
        let region = self
            .layout
            .region_of(gpa)
            .ok_or(MemoryError::NotRam { gpa: gpa.0 })?;
        let crosses = MemoryError::CrossesRegion {
            gpa: gpa.0,
            len,
            region_end: region.end(),
        };
        match gpa.0.checked_add(len as u64) {
            Some(end) if end <= region.end() => Ok(region),
            _ => Err(crosses),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use vm_memory::Bytes;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    /// The smaps block of the mapping that contains `addr`.
    fn smaps_entry(addr: usize) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut current = String::new();
        let mut found = false;
        for line in smaps.lines() {
            let head = line.split_whitespace().next().unwrap_or("");
            if let Some((lo, hi)) = head.split_once('-').filter(|_| !head.ends_with(':')) {
                if let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                {
                    if found {
                        break;
                    }
                    found = (lo..hi).contains(&addr);
                    current.clear();
                }
            }
            current.push_str(line);
            current.push('\n');
        }
        assert!(found, "no mapping holds {addr:#x}");
        current
    }

    fn smaps_kib(entry: &str, field: &str) -> u64 {
        entry
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    #[test]
    fn untouched_ram_is_noreserve_and_costs_no_rss() {
        let ram = GuestRam::new(&MemoryLayout::x86_64(4608 * MIB).unwrap()).unwrap();
        // Touch one page in the high region.
        ram.memory()
            .write_obj(7u64, GuestAddress(4 * GIB + 0x1000))
            .unwrap();
        for (gpa, size) in [(0, 3 * GIB), (4 * GIB, 1536 * MIB)] {
            let hva = ram.translate(GuestAddress(gpa), 1).unwrap();
            let entry = smaps_entry(hva.0);
            let flags = entry.lines().find(|l| l.starts_with("VmFlags:")).unwrap();
            assert!(
                flags.split_whitespace().any(|f| f == "nr"),
                "not MAP_NORESERVE: {flags}"
            );
            assert!(smaps_kib(&entry, "Size:") >= size / 1024);
            // Count the region's own resident pages: its smaps entry may be one VMA with
            // other test threads' malloc arenas (also MAP_NORESERVE) and their pages.
            let resident = crate::host_sys::resident_pages(hva.0, size as usize).unwrap();
            // The one write faults in one page, or one 2 MiB page where THP is "always".
            let most = if gpa == 4 * GIB { 512 } else { 0 };
            assert!(resident <= most, "{resident} resident pages at {gpa:#x}");
        }
    }

    #[test]
    fn translate_stays_inside_one_region() {
        let ram = GuestRam::new(&MemoryLayout::x86_64(4 * GIB).unwrap()).unwrap();
        let base_low = ram.translate(GuestAddress(0), 1).unwrap();
        let last_low = ram.translate(GuestAddress(3 * GIB - 8), 8).unwrap();
        assert_eq!(last_low.0 - base_low.0, (3 * GIB - 8) as usize);
        assert!(ram.translate(GuestAddress(3 * GIB), 0).is_err());

        let rows: &[(u64, usize, &str)] = &[
            (3 * GIB - 8, 9, "guest-physical range 0xbffffff8+0x9 crosses the end of its RAM region at 0xc0000000"),
            (3 * GIB, 1, "guest-physical address 0xc0000000 is not guest RAM"),
            (0xfee0_0000, 4, "guest-physical address 0xfee00000 is not guest RAM"),
            (5 * GIB, 1, "guest-physical address 0x140000000 is not guest RAM"),
            (5 * GIB - 1, 2, "guest-physical range 0x13fffffff+0x2 crosses the end of its RAM region at 0x140000000"),
            (0, usize::MAX, "guest-physical range 0x0+0xffffffffffffffff crosses the end of its RAM region at 0xc0000000"),
        ];
        for (gpa, len, want) in rows {
            let err = ram.translate(GuestAddress(*gpa), *len).unwrap_err();
            assert_eq!(err.to_string(), *want);
        }
    }

    #[test]
    fn write_through_hva_reads_back_through_guest_memory() {
        let ram = GuestRam::new(&MemoryLayout::x86_64(3 * GIB + 2 * MIB).unwrap()).unwrap();
        for gpa in [0x0, 0x1234, 3 * GIB - 8, 4 * GIB, 4 * GIB + 2 * MIB - 8] {
            let hva = ram.translate(GuestAddress(gpa), 8).unwrap();
            let value = gpa ^ 0x5a5a_5a5a_5a5a_5a5a;
            let bytes = value.to_le_bytes();
            // Write through the host mapping without unsafe code: a VolatileSlice of the same
            // range must begin at the translated address.
            let slice = ram.memory().get_slice(GuestAddress(gpa), 8).unwrap();
            assert_eq!(slice.ptr_guard().as_ptr() as usize, hva.0);
            slice.copy_from(&bytes);
            assert_eq!(
                ram.memory().read_obj::<u64>(GuestAddress(gpa)).unwrap(),
                value
            );
        }
    }

    proptest! {
        /// Against a naive model: translate succeeds exactly when the whole range lies in one
        /// region, and then returns region base + offset.
        #[test]
        fn translate_matches_model(
            ram_pages in 1u64..=(1 << 20) + 4096,
            gpa in 0u64..(5 * GIB),
            len in 0usize..(3 * MIB as usize),
        ) {
            let layout = MemoryLayout::x86_64(ram_pages * 4096).unwrap();
            let ram = GuestRam::new(&layout).unwrap();
            let expect = layout.regions().iter().find(|r| r.contains(GuestAddress(gpa)))
                .filter(|r| gpa + len as u64 <= r.end())
                .map(|r| (r.gpa.0, gpa - r.gpa.0));
            match (ram.translate(GuestAddress(gpa), len), expect) {
                (Ok(hva), Some((base, offset))) => {
                    let base_hva = ram.translate(GuestAddress(base), 0).unwrap();
                    prop_assert_eq!(hva.0 - base_hva.0, offset as usize);
                }
                (Err(_), None) => {}
                (got, want) => prop_assert!(false, "got {:?}, model {:?}", got, want),
            }
        }
    }
}

//! Where the probe guest lives in guest-physical memory.

use cpu_topology::VcpuIndex;
use vm_memory::GuestAddress;
use x86_boot::long_mode::LongModeLayout;

use crate::abi::*;
use crate::ProbeError;

/// Every probe structure ends below this address (2 GiB), so it stays clear
/// of any 32-bit MMIO hole a VMM may place.
pub const MAX_PROBE_END: u64 = 0x8000_0000;

/// Memory map of the probe guest for a given number of vCPU slots.
///
/// The fixed part (code, GDT, control block, query list, page tables) sits
/// between 1 MiB and 2 MiB; the per-vCPU areas follow from 2 MiB, one
/// [`VCPU_AREA_SIZE`] block per slot. See DESIGN.md for the full map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeLayout {
    max_vcpus: u32,
    ram_size: u64,
}

impl ProbeLayout {
    /// Lays out the probe for `max_vcpus` slots in `ram_size` bytes of RAM at GPA 0.
    ///
    /// Fails when `max_vcpus` is 0 or when the RAM cannot hold every
    /// per-vCPU area; the error says how much RAM is needed.
    pub fn new(max_vcpus: u32, ram_size: u64) -> Result<Self, ProbeError> {
        if max_vcpus == 0 {
            return Err(ProbeError::NoVcpus);
        }
        let needed = Self::required_ram(max_vcpus);
        if needed > MAX_PROBE_END {
            return Err(ProbeError::TooManyVcpus {
                max_vcpus,
                end: needed,
                limit: MAX_PROBE_END,
            });
        }
        if ram_size < needed {
            return Err(ProbeError::RamTooSmall {
                max_vcpus,
                needed,
                ram_size,
            });
        }
        Ok(Self {
            max_vcpus,
            ram_size,
        })
    }

    /// Bytes of RAM from GPA 0 the probe needs for `max_vcpus` slots.
    pub const fn required_ram(max_vcpus: u32) -> u64 {
        VCPU_AREAS_GPA + max_vcpus as u64 * VCPU_AREA_SIZE
    }

    /// Number of vCPU slots.
    pub fn max_vcpus(&self) -> u32 {
        self.max_vcpus
    }

    /// RAM size this layout was checked against.
    pub fn ram_size(&self) -> u64 {
        self.ram_size
    }

    /// Entry point and first code byte.
    pub fn code(&self) -> GuestAddress {
        GuestAddress(CODE_GPA)
    }

    /// The control block.
    pub fn control_block(&self) -> GuestAddress {
        GuestAddress(CONTROL_GPA)
    }

    /// The query list (`MAX_QUERIES` entries of leaf u32, subleaf u32).
    pub fn query_list(&self) -> GuestAddress {
        GuestAddress(QUERY_LIST_GPA)
    }

    /// GDT and page-table placement for `x86_boot`.
    pub fn long_mode(&self) -> LongModeLayout {
        LongModeLayout {
            gdt_addr: GuestAddress(GDT_GPA),
            pml4_addr: GuestAddress(PAGE_TABLES_GPA),
            identity_map_size: IDENTITY_MAP_SIZE,
        }
    }

    /// Base of the per-vCPU area of `index`.
    pub fn vcpu_area(&self, index: VcpuIndex) -> Result<GuestAddress, ProbeError> {
        if index.0 >= self.max_vcpus {
            return Err(ProbeError::IndexOutOfRange {
                index,
                max_vcpus: self.max_vcpus,
            });
        }
        Ok(GuestAddress(
            VCPU_AREAS_GPA + u64::from(index.0) * VCPU_AREA_SIZE,
        ))
    }

    /// Every fixed region as (name, start, length), in address order; the
    /// per-vCPU areas follow them.
    pub fn fixed_regions(&self) -> Result<[(&'static str, u64, u64); 5], ProbeError> {
        let tables = self
            .long_mode()
            .page_table_footprint()
            .map_err(|source| ProbeError::LongMode { source })?;
        Ok([
            ("code", CODE_GPA, CODE_SIZE),
            ("gdt", GDT_GPA, 0x1000),
            ("control block", CONTROL_GPA, CONTROL_SIZE),
            (
                "query list",
                QUERY_LIST_GPA,
                u64::from(MAX_QUERIES) * QUERY_ENTRY_SIZE,
            ),
            ("page tables", PAGE_TABLES_GPA, tables),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_little_ram_says_how_much_is_needed() {
        let err = ProbeLayout::new(1024, 16 << 20).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the probe guest needs 18874368 bytes (18 MiB) of guest RAM for 1024 vCPUs, \
             but only 16777216 bytes (16 MiB) are configured"
        );
        assert!(ProbeLayout::new(1024, 18 << 20).is_ok());
        assert!(ProbeLayout::new(1024, (18 << 20) - 1).is_err());
    }

    #[test]
    fn zero_and_absurd_vcpu_counts_are_rejected() {
        assert_eq!(
            ProbeLayout::new(0, 1 << 30).unwrap_err().to_string(),
            "the probe guest needs at least one vCPU slot"
        );
        assert_eq!(
            ProbeLayout::new(u32::MAX, u64::MAX)
                .unwrap_err()
                .to_string(),
            "4294967295 vCPU slots put the probe's memory end at 0x4000001fc000, \
             above the limit 0x80000000"
        );
    }

    #[test]
    fn sixteen_mib_holds_896_vcpus() {
        assert!(ProbeLayout::new(896, 16 << 20).is_ok());
        assert!(ProbeLayout::new(897, 16 << 20).is_err());
    }

    #[test]
    fn regions_do_not_overlap_for_any_slot_count() {
        for max in [1u32, 2, 3, 4, 64, 255, 256, 1000, 1024, 4095, 4096] {
            let layout = ProbeLayout::new(max, ProbeLayout::required_ram(max)).unwrap();
            let mut regions: Vec<(u64, u64)> = layout
                .fixed_regions()
                .unwrap()
                .iter()
                .map(|r| (r.1, r.2))
                .collect();
            for i in [0, max / 2, max - 1] {
                let a = layout.vcpu_area(VcpuIndex(i)).unwrap().0;
                if !regions.contains(&(a, VCPU_AREA_SIZE)) {
                    regions.push((a, VCPU_AREA_SIZE));
                }
            }
            regions.sort();
            for w in regions.windows(2) {
                assert!(w[0].0 + w[0].1 <= w[1].0, "{w:x?} overlap (max {max})");
            }
            let last = layout.vcpu_area(VcpuIndex(max - 1)).unwrap().0 + VCPU_AREA_SIZE;
            assert_eq!(last, ProbeLayout::required_ram(max));
            assert!(layout.vcpu_area(VcpuIndex(max)).is_err());
        }
    }

    #[test]
    fn page_tables_end_before_the_vcpu_areas() {
        let layout = ProbeLayout::new(1, 16 << 20).unwrap();
        let (_, start, len) = layout.fixed_regions().unwrap()[4];
        assert!(start + len <= VCPU_AREAS_GPA);
        assert_eq!(start % 0x1000, 0);
    }
}

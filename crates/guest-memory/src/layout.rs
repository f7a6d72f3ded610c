//! Where guest RAM sits in the x86-64 guest-physical address space.
//!
//! ```text
//! 0                     3 GiB            4 GiB                      4 GiB + (ram - 3 GiB)
//! |---- RAM (low) -------|-- MMIO hole ---|---- RAM (high) ------------|
//!                         PCI MMIO ... IOAPIC 0xfec00000, LAPIC 0xfee00000
//! ```
//!
//! RAM starts at guest-physical address 0 and runs up to [`MMIO_HOLE_START`] (3 GiB). The
//! last GiB below 4 GiB is the 32-bit MMIO hole: the IOAPIC, the local APIC and future
//! 32-bit PCI BARs live there. RAM that does not fit below the hole continues at
//! [`MMIO_HOLE_END`] (4 GiB). A guest with at most 3 GiB therefore has one region, a larger
//! one two. The hole is always listed in [`MemoryLayout::reserved`] so an e820 table can
//! mark it.
//!
//! Regions carry an optional NUMA node ([`NodeId`]): [`MemoryLayout::x86_64`] leaves it
//! `None`; [`MemoryLayout::x86_64_numa`] lays the nodes out in order from address 0 and
//! splits the node that straddles the hole into two regions with the same id.
//!
//! This module is pure: no mapping, no KVM.

use thiserror::Error;
use vm_memory::GuestAddress;

use crate::size::{format_size, MAX_MEM_SIZE};

/// Smallest unit of guest RAM: regions start and end on 4 KiB boundaries, as KVM slots must.
pub const PAGE_SIZE: u64 = 4096;

/// Start of the 32-bit MMIO hole: 3 GiB. RAM below 4 GiB ends here.
pub const MMIO_HOLE_START: u64 = 0xc000_0000;

/// End (exclusive) of the 32-bit MMIO hole: 4 GiB. RAM above the hole starts here.
pub const MMIO_HOLE_END: u64 = 0x1_0000_0000;

/// Guest-physical base of the IOAPIC registers (inside the MMIO hole).
pub const IOAPIC_BASE: u64 = 0xfec0_0000;

/// Size of the IOAPIC register window.
pub const IOAPIC_SIZE: u64 = 0x1000;

/// Guest-physical base of the local APIC registers (inside the MMIO hole).
pub const LAPIC_BASE: u64 = 0xfee0_0000;

/// Size of the local APIC register window.
pub const LAPIC_SIZE: u64 = 0x1000;

/// Start of the window left for 32-bit PCI MMIO BARs: the hole below the IOAPIC.
pub const PCI_MMIO32_START: u64 = MMIO_HOLE_START;

/// End (exclusive) of the 32-bit PCI MMIO window.
pub const PCI_MMIO32_END: u64 = IOAPIC_BASE;

/// A NUMA node number, as in `-numa node,nodeid=N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u32);

/// One contiguous run of guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RamRegion {
    /// First guest-physical address of the region (4 KiB aligned).
    pub gpa: GuestAddress,
    /// Length in bytes (a non-zero multiple of 4 KiB).
    pub size: u64,
    /// The NUMA node this RAM belongs to; `None` without NUMA.
    pub node: Option<NodeId>,
}

impl RamRegion {
    /// One past the last byte of the region.
    pub fn end(&self) -> u64 {
        // Cannot overflow: `MemoryLayout` checks every region's end.
        self.gpa.0 + self.size
    }

    /// Whether `gpa` lies inside the region.
    pub fn contains(&self, gpa: GuestAddress) -> bool {
        gpa.0 >= self.gpa.0 && gpa.0 < self.end()
    }
}

/// Why a guest-physical range is reserved (not RAM) in the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservedKind {
    /// The 32-bit MMIO hole: PCI BARs, IOAPIC, LAPIC.
    MmioHole,
}

/// A guest-physical range that is not RAM and that an e820 table should mark reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReservedRange {
    /// First guest-physical address.
    pub gpa: GuestAddress,
    /// Length in bytes.
    pub size: u64,
    /// What the range holds.
    pub kind: ReservedKind,
}

impl ReservedRange {
    /// One past the last byte of the range.
    pub fn end(&self) -> u64 {
        self.gpa.0 + self.size
    }
}

/// Why a layout was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LayoutError {
    /// A RAM size of zero.
    #[error("guest RAM size must be greater than zero")]
    ZeroSize,
    /// A size that is not a multiple of [`PAGE_SIZE`].
    #[error("guest RAM size {0:#x} is not a multiple of 4 KiB")]
    Unaligned(u64),
    /// More RAM than [`MAX_MEM_SIZE`].
    #[error("guest RAM size {} exceeds the maximum of {}", format_size(*.0), format_size(MAX_MEM_SIZE))]
    TooLarge(u64),
    /// A custom layout without regions.
    #[error("a memory layout needs at least one RAM region")]
    NoRegions,
    /// A region whose start or size is not 4 KiB aligned, or whose size is zero.
    #[error("RAM region at {gpa:#x} of size {size:#x} is empty or not 4 KiB aligned")]
    BadRegion {
        /// Start of the offending region.
        gpa: u64,
        /// Its size.
        size: u64,
    },
    /// A region that runs past the end of the 64-bit address space.
    #[error("RAM region at {gpa:#x} of size {size:#x} runs past the end of the address space")]
    RegionOverflow {
        /// Start of the offending region.
        gpa: u64,
        /// Its size.
        size: u64,
    },
    /// Regions not sorted by address, or overlapping.
    #[error("RAM region at {gpa:#x} overlaps or precedes the region ending at {previous_end:#x}")]
    Unordered {
        /// Start of the offending region.
        gpa: u64,
        /// End of the region before it.
        previous_end: u64,
    },
    /// A region overlapping a reserved range.
    #[error("RAM region at {gpa:#x} overlaps the reserved range at {reserved:#x}")]
    OverlapsReserved {
        /// Start of the offending region.
        gpa: u64,
        /// Start of the reserved range it overlaps.
        reserved: u64,
    },
}

/// Guest RAM regions plus the reserved ranges around them.
///
/// Invariants (checked by every constructor): at least one region; regions sorted by
/// address, non-overlapping, each 4 KiB aligned and non-empty; no region overlaps a
/// reserved range; no end overflows `u64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryLayout {
    regions: Vec<RamRegion>,
    reserved: Vec<ReservedRange>,
}

impl MemoryLayout {
    /// The standard x86-64 PC layout for `ram` bytes: RAM from 0 up to 3 GiB, the MMIO hole,
    /// the rest from 4 GiB.
    ///
    /// `ram` must be a non-zero multiple of 4 KiB and at most [`MAX_MEM_SIZE`].
    ///
    /// ```
    /// use guest_memory::layout::MemoryLayout;
    /// let layout = MemoryLayout::x86_64(4 << 30).unwrap();
    /// let starts: Vec<u64> = layout.regions().iter().map(|r| r.gpa.0).collect();
    /// assert_eq!(starts, [0, 4 << 30]);
    /// assert_eq!(layout.ram_size(), 4 << 30);
    /// ```
    pub fn x86_64(ram: u64) -> Result<Self, LayoutError> {
        if ram == 0 {
            return Err(LayoutError::ZeroSize);
        }
        if ram % PAGE_SIZE != 0 {
            return Err(LayoutError::Unaligned(ram));
        }
        if ram > MAX_MEM_SIZE {
            return Err(LayoutError::TooLarge(ram));
        }
        let low = ram.min(MMIO_HOLE_START);
        let mut regions = vec![RamRegion {
            gpa: GuestAddress(0),
            size: low,
            node: None,
        }];
        if ram > low {
            regions.push(RamRegion {
                gpa: GuestAddress(MMIO_HOLE_END),
                size: ram - low,
                node: None,
            });
        }
        Self::new(regions, vec![Self::mmio_hole()])
    }

    /// The x86-64 PC layout with RAM split into NUMA nodes: node sizes are laid out in the
    /// order given from guest-physical 0, the 32-bit MMIO hole is skipped where it falls,
    /// and a node that straddles it becomes two regions with the same node id. Nodes of
    /// size 0 (memory-less nodes) get no region.
    ///
    /// The total must satisfy the rules of [`MemoryLayout::x86_64`]; every node size must
    /// be a multiple of 4 KiB.
    ///
    /// ```
    /// use guest_memory::layout::{MemoryLayout, NodeId};
    /// const GIB: u64 = 1 << 30;
    /// let layout = MemoryLayout::x86_64_numa(&[(NodeId(0), 2 * GIB), (NodeId(1), 2 * GIB)]).unwrap();
    /// let spans: Vec<_> = layout.regions().iter().map(|r| (r.gpa.0, r.size, r.node)).collect();
    /// assert_eq!(spans, [
    ///     (0, 2 * GIB, Some(NodeId(0))),
    ///     (2 * GIB, GIB, Some(NodeId(1))),     // node 1 below the hole
    ///     (4 * GIB, GIB, Some(NodeId(1))),     // and the rest of node 1 above it
    /// ]);
    /// ```
    pub fn x86_64_numa(nodes: &[(NodeId, u64)]) -> Result<Self, LayoutError> {
        let total = nodes
            .iter()
            .try_fold(0u64, |acc, (_, size)| acc.checked_add(*size))
            .ok_or(LayoutError::TooLarge(u64::MAX))?;
        // Checks zero, alignment and the maximum of the whole.
        Self::x86_64(total)?;
        let mut regions = Vec::new();
        let mut next = 0u64; // offset into RAM, not a GPA
        for &(node, size) in nodes {
            if size % PAGE_SIZE != 0 {
                return Err(LayoutError::BadRegion { gpa: next, size });
            }
            let (start, end) = (next, next + size);
            // Part below the hole.
            if start < MMIO_HOLE_START {
                let low_end = end.min(MMIO_HOLE_START);
                if low_end > start {
                    regions.push(RamRegion {
                        gpa: GuestAddress(start),
                        size: low_end - start,
                        node: Some(node),
                    });
                }
            }
            // Part above the hole: RAM offset o >= 3 GiB sits at GPA o + 1 GiB.
            let high_start = start.max(MMIO_HOLE_START);
            if end > high_start {
                regions.push(RamRegion {
                    gpa: GuestAddress(high_start + (MMIO_HOLE_END - MMIO_HOLE_START)),
                    size: end - high_start,
                    node: Some(node),
                });
            }
            next = end;
        }
        Self::new(regions, vec![Self::mmio_hole()])
    }

    /// RAM regions of one NUMA node, in address order.
    pub fn node_regions(&self, node: NodeId) -> impl Iterator<Item = &RamRegion> + '_ {
        self.regions.iter().filter(move |r| r.node == Some(node))
    }

    /// A custom layout, for example one region per NUMA node. Checks the invariants listed
    /// on [`MemoryLayout`].
    pub fn new(regions: Vec<RamRegion>, reserved: Vec<ReservedRange>) -> Result<Self, LayoutError> {
        if regions.is_empty() {
            return Err(LayoutError::NoRegions);
        }
        let mut previous_end: Option<u64> = None;
        for region in &regions {
            let (gpa, size) = (region.gpa.0, region.size);
            if size == 0 || gpa % PAGE_SIZE != 0 || size % PAGE_SIZE != 0 {
                return Err(LayoutError::BadRegion { gpa, size });
            }
            let end = gpa
                .checked_add(size)
                .ok_or(LayoutError::RegionOverflow { gpa, size })?;
            if let Some(previous_end) = previous_end.filter(|&p| gpa < p) {
                return Err(LayoutError::Unordered { gpa, previous_end });
            }
            if let Some(hit) = reserved
                .iter()
                .find(|r| gpa < r.gpa.0.saturating_add(r.size) && r.gpa.0 < end)
            {
                return Err(LayoutError::OverlapsReserved {
                    gpa,
                    reserved: hit.gpa.0,
                });
            }
            previous_end = Some(end);
        }
        Ok(Self { regions, reserved })
    }

    /// The 32-bit MMIO hole as a reserved range.
    pub fn mmio_hole() -> ReservedRange {
        ReservedRange {
            gpa: GuestAddress(MMIO_HOLE_START),
            size: MMIO_HOLE_END - MMIO_HOLE_START,
            kind: ReservedKind::MmioHole,
        }
    }

    /// RAM regions, sorted by address.
    pub fn regions(&self) -> &[RamRegion] {
        &self.regions
    }

    /// Reserved (non-RAM) ranges an e820 table should mark.
    pub fn reserved(&self) -> &[ReservedRange] {
        &self.reserved
    }

    /// Bytes of RAM contiguous from guest-physical 0: with NUMA nodes the low RAM is
    /// several adjacent regions (one per node), which this adds up.
    pub fn ram_from_zero(&self) -> u64 {
        self.regions
            .iter()
            .try_fold(0, |end, r| {
                if r.gpa.0 == end {
                    Ok(r.end())
                } else {
                    Err(end)
                }
            })
            .unwrap_or_else(|end| end)
    }

    /// Total bytes of RAM over all regions.
    pub fn ram_size(&self) -> u64 {
        self.regions.iter().map(|r| r.size).sum()
    }

    /// One past the highest guest-physical RAM address.
    pub fn ram_end(&self) -> GuestAddress {
        // `new` rejects empty layouts, so there is a last region.
        GuestAddress(self.regions.last().map_or(0, RamRegion::end))
    }

    /// Physical address bits the guest needs to reach all RAM and reserved ranges. A VMM
    /// compares this with the host's MAXPHYADDR (CPUID 0x8000_0008 EAX bits 7:0).
    pub fn required_phys_bits(&self) -> u32 {
        let top = self
            .regions
            .iter()
            .map(RamRegion::end)
            .chain(self.reserved.iter().map(ReservedRange::end))
            .max()
            .unwrap_or(0);
        // Bits to represent the highest address `top - 1`.
        u64::BITS - top.saturating_sub(1).leading_zeros()
    }

    /// The RAM region holding `gpa`, if any.
    pub fn region_of(&self, gpa: GuestAddress) -> Option<&RamRegion> {
        self.regions.iter().find(|r| r.contains(gpa))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn spans(layout: &MemoryLayout) -> Vec<(u64, u64)> {
        layout.regions().iter().map(|r| (r.gpa.0, r.size)).collect()
    }

    #[test]
    fn x86_64_layout_table() {
        let rows: &[(u64, &[(u64, u64)])] = &[
            (4096, &[(0, 4096)]),
            (128 * MIB, &[(0, 128 * MIB)]),
            (3 * GIB - 4096, &[(0, 3 * GIB - 4096)]),
            (3 * GIB, &[(0, 3 * GIB)]),
            (3 * GIB + 4096, &[(0, 3 * GIB), (4 * GIB, 4096)]),
            (4 * GIB, &[(0, 3 * GIB), (4 * GIB, GIB)]),
            (4608 * MIB, &[(0, 3 * GIB), (4 * GIB, 1536 * MIB)]),
            (1 << 40, &[(0, 3 * GIB), (4 * GIB, (1 << 40) - 3 * GIB)]),
        ];
        for (ram, want) in rows {
            let layout = MemoryLayout::x86_64(*ram).unwrap();
            assert_eq!(spans(&layout), *want, "ram {ram:#x}");
            assert_eq!(layout.ram_size(), *ram);
            assert!(layout.regions().iter().all(|r| r.node.is_none()));
            assert_eq!(layout.reserved(), [MemoryLayout::mmio_hole()]);
        }
    }

    #[test]
    fn ram_from_zero_adds_adjacent_regions_up_to_the_first_gap() {
        assert_eq!(
            MemoryLayout::x86_64(128 * MIB).unwrap().ram_from_zero(),
            128 * MIB
        );
        assert_eq!(
            MemoryLayout::x86_64(4 * GIB).unwrap().ram_from_zero(),
            3 * GIB
        );
        let node = |gpa: u64, size: u64| RamRegion {
            gpa: GuestAddress(gpa),
            size,
            node: None,
        };
        let two_nodes = MemoryLayout::new(
            vec![node(0, 256 * MIB), node(256 * MIB, 256 * MIB)],
            Vec::new(),
        );
        assert_eq!(two_nodes.unwrap().ram_from_zero(), 512 * MIB);
        let high_only = MemoryLayout::new(vec![node(GIB, MIB)], Vec::new()).unwrap();
        assert_eq!(high_only.ram_from_zero(), 0);
    }

    #[test]
    fn x86_64_layout_errors() {
        let rows: &[(u64, &str)] = &[
            (0, "guest RAM size must be greater than zero"),
            (4095, "guest RAM size 0xfff is not a multiple of 4 KiB"),
            (
                (1 << 40) + 4096,
                "guest RAM size 1073741828 KiB exceeds the maximum of 1 TiB",
            ),
        ];
        for (ram, want) in rows {
            assert_eq!(MemoryLayout::x86_64(*ram).unwrap_err().to_string(), *want);
        }
    }

    #[test]
    fn apic_windows_lie_in_the_hole_and_outside_ram() {
        let layout = MemoryLayout::x86_64(8 * GIB).unwrap();
        for addr in [
            IOAPIC_BASE,
            IOAPIC_BASE + IOAPIC_SIZE - 1,
            LAPIC_BASE,
            LAPIC_BASE + LAPIC_SIZE - 1,
        ] {
            assert!(layout.region_of(GuestAddress(addr)).is_none(), "{addr:#x}");
            assert!((MMIO_HOLE_START..MMIO_HOLE_END).contains(&addr));
        }
        const { assert!(PCI_MMIO32_START < PCI_MMIO32_END && PCI_MMIO32_END <= IOAPIC_BASE) };
        assert_eq!(
            layout
                .region_of(GuestAddress(MMIO_HOLE_START - 1))
                .unwrap()
                .gpa
                .0,
            0
        );
        assert_eq!(
            layout.region_of(GuestAddress(MMIO_HOLE_END)).unwrap().gpa.0,
            MMIO_HOLE_END
        );
        assert!(layout.region_of(GuestAddress(9 * GIB)).is_none());
    }

    #[test]
    fn ram_end_and_phys_bits() {
        let small = MemoryLayout::x86_64(256 * MIB).unwrap();
        assert_eq!(small.ram_end(), GuestAddress(256 * MIB));
        // The hole reaches 4 GiB, so even a small guest needs 32 bits.
        assert_eq!(small.required_phys_bits(), 32);
        let big = MemoryLayout::x86_64(1 << 40).unwrap();
        assert_eq!(big.ram_end(), GuestAddress((1 << 40) + GIB));
        assert_eq!(big.required_phys_bits(), 41);
    }

    #[test]
    fn custom_layout_errors() {
        let r = |gpa: u64, size: u64| RamRegion {
            gpa: GuestAddress(gpa),
            size,
            node: Some(NodeId(0)),
        };
        let hole = vec![MemoryLayout::mmio_hole()];
        let rows: Vec<(Vec<RamRegion>, &str)> = vec![
            (vec![], "a memory layout needs at least one RAM region"),
            (vec![r(0, 0)], "RAM region at 0x0 of size 0x0 is empty or not 4 KiB aligned"),
            (vec![r(0x800, 4096)], "RAM region at 0x800 of size 0x1000 is empty or not 4 KiB aligned"),
            (vec![r(0, 100)], "RAM region at 0x0 of size 0x64 is empty or not 4 KiB aligned"),
            (
                vec![r(u64::MAX - 4095, 8192)],
                "RAM region at 0xfffffffffffff000 of size 0x2000 runs past the end of the address space",
            ),
            (
                vec![r(0, 2 * MIB), r(MIB, MIB)],
                "RAM region at 0x100000 overlaps or precedes the region ending at 0x200000",
            ),
            (
                vec![r(0, 3 * GIB + 4096)],
                "RAM region at 0x0 overlaps the reserved range at 0xc0000000",
            ),
        ];
        for (regions, want) in rows {
            assert_eq!(
                MemoryLayout::new(regions, hole.clone())
                    .unwrap_err()
                    .to_string(),
                want
            );
        }
    }

    #[test]
    fn custom_layout_keeps_node_ids() {
        let layout = MemoryLayout::new(
            vec![
                RamRegion {
                    gpa: GuestAddress(0),
                    size: GIB,
                    node: Some(NodeId(0)),
                },
                RamRegion {
                    gpa: GuestAddress(GIB),
                    size: GIB,
                    node: Some(NodeId(1)),
                },
            ],
            vec![MemoryLayout::mmio_hole()],
        )
        .unwrap();
        let nodes: Vec<_> = layout.regions().iter().map(|r| r.node).collect();
        assert_eq!(nodes, [Some(NodeId(0)), Some(NodeId(1))]);
        assert_eq!(layout.ram_size(), 2 * GIB);
    }

    #[test]
    fn x86_64_numa_table() {
        type Row = (&'static [(u32, u64)], &'static [(u64, u64, Option<NodeId>)]);
        let rows: &[Row] = &[
            (&[(0, GIB)], &[(0, GIB, Some(NodeId(0)))]),
            (
                &[(0, GIB), (1, GIB)],
                &[(0, GIB, Some(NodeId(0))), (GIB, GIB, Some(NodeId(1)))],
            ),
            // Node 1 split across the hole.
            (
                &[(0, 2 * GIB), (1, 2 * GIB)],
                &[
                    (0, 2 * GIB, Some(NodeId(0))),
                    (2 * GIB, GIB, Some(NodeId(1))),
                    (4 * GIB, GIB, Some(NodeId(1))),
                ],
            ),
            // Node 0 ends exactly at the hole: node 1 starts at 4 GiB.
            (
                &[(0, 3 * GIB), (1, GIB)],
                &[
                    (0, 3 * GIB, Some(NodeId(0))),
                    (4 * GIB, GIB, Some(NodeId(1))),
                ],
            ),
            // A memory-less node has no region.
            (
                &[(0, GIB), (1, 0), (2, 4 * GIB)],
                &[
                    (0, GIB, Some(NodeId(0))),
                    (GIB, 2 * GIB, Some(NodeId(2))),
                    (4 * GIB, 2 * GIB, Some(NodeId(2))),
                ],
            ),
            // One node larger than the low part.
            (
                &[(0, 4 * GIB)],
                &[
                    (0, 3 * GIB, Some(NodeId(0))),
                    (4 * GIB, GIB, Some(NodeId(0))),
                ],
            ),
        ];
        for (nodes, want) in rows {
            let nodes: Vec<(NodeId, u64)> = nodes.iter().map(|&(i, s)| (NodeId(i), s)).collect();
            let layout = MemoryLayout::x86_64_numa(&nodes).unwrap();
            let got: Vec<_> = layout
                .regions()
                .iter()
                .map(|r| (r.gpa.0, r.size, r.node))
                .collect();
            assert_eq!(got, *want, "nodes {nodes:?}");
            assert_eq!(layout.ram_size(), nodes.iter().map(|n| n.1).sum::<u64>());
            for (id, size) in &nodes {
                assert_eq!(layout.node_regions(*id).map(|r| r.size).sum::<u64>(), *size);
            }
        }
    }

    #[test]
    fn x86_64_numa_errors() {
        let rows: &[(&[(u32, u64)], &str)] = &[
            (
                &[(0, 0), (1, 0)],
                "guest RAM size must be greater than zero",
            ),
            (
                &[(0, GIB), (1, 2048)],
                "guest RAM size 0x40000800 is not a multiple of 4 KiB",
            ),
            (
                &[(0, 2048), (1, 2048)],
                "RAM region at 0x0 of size 0x800 is empty or not 4 KiB aligned",
            ),
            (
                &[(0, 1 << 40), (1, 4096)],
                "guest RAM size 1073741828 KiB exceeds the maximum of 1 TiB",
            ),
        ];
        for (nodes, want) in rows {
            let nodes: Vec<(NodeId, u64)> = nodes.iter().map(|&(i, s)| (NodeId(i), s)).collect();
            assert_eq!(
                MemoryLayout::x86_64_numa(&nodes).unwrap_err().to_string(),
                *want
            );
        }
    }
}

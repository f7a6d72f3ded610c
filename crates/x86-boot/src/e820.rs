//! The BIOS e820 memory map Linux reads from the zero page.
//!
//! [`build_e820_map`] turns a list of typed ranges (RAM, reserved, ACPI, ...)
//! into the sorted, non-overlapping table the kernel expects:
//!
//! - every non-RAM range is punched out of the RAM ranges it overlaps, so a
//!   reserved hole inside RAM wins over the RAM;
//! - the legacy area `0x9fc00..0x100000` (EBDA, VGA window, option ROMs,
//!   BIOS) is always reported as reserved, as QEMU/SeaBIOS and Firecracker do;
//!   the MP table and the RSDP live there;
//! - adjacent entries of the same type are merged;
//! - at most [`E820_MAX_ENTRIES`] entries (the zero page's capacity).
//!
//! Input is plain `(start, size, type)` tuples so this module does not depend
//! on any guest-memory crate.

/// Start of the Extended BIOS Data Area; RAM below it is usable low memory.
pub const EBDA_START: u64 = 0x9_fc00;
/// End of the legacy first megabyte.
pub const LEGACY_END: u64 = 0x10_0000;
/// Number of e820 entries the zero page can hold (`E820_MAX_ENTRIES_ZEROPAGE`).
pub const E820_MAX_ENTRIES: usize = 128;

/// Type of an e820 range, with the values Linux uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum E820Type {
    /// Usable RAM (1).
    Ram,
    /// Reserved, not usable (2): MMIO holes, LAPIC/IOAPIC pages, firmware.
    Reserved,
    /// ACPI reclaimable (3): tables the OS may reuse after parsing them.
    Acpi,
    /// ACPI NVS (4): must be preserved across sleep.
    Nvs,
    /// Unusable (5): RAM with errors.
    Unusable,
}

impl E820Type {
    /// The numeric type written into the table.
    pub fn raw(self) -> u32 {
        match self {
            E820Type::Ram => 1,
            E820Type::Reserved => 2,
            E820Type::Acpi => 3,
            E820Type::Nvs => 4,
            E820Type::Unusable => 5,
        }
    }

    /// Decode a numeric type; `None` for values Linux does not define here.
    pub fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            1 => E820Type::Ram,
            2 => E820Type::Reserved,
            3 => E820Type::Acpi,
            4 => E820Type::Nvs,
            5 => E820Type::Unusable,
            _ => return None,
        })
    }
}

/// One e820 entry: `size` bytes at `addr` of type `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    /// First byte of the range.
    pub addr: u64,
    /// Length in bytes (never 0).
    pub size: u64,
    /// What the range is.
    pub kind: E820Type,
}

impl E820Entry {
    /// Size of one entry in the zero page (`struct boot_e820_entry`).
    pub const SIZE: usize = 20;

    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.addr + self.size
    }

    /// The 20 bytes Linux reads: addr (u64), size (u64), type (u32).
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..16].copy_from_slice(&self.size.to_le_bytes());
        b[16..20].copy_from_slice(&self.kind.raw().to_le_bytes());
        b
    }
}

/// Errors from [`build_e820_map`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum E820Error {
    /// A range has size 0.
    #[error("e820 range at {start:#x} has size 0")]
    EmptyRange {
        /// Start of the offending range.
        start: u64,
    },
    /// `start + size` does not fit in 64 bits.
    #[error("e820 range at {start:#x} with size {size:#x} overflows the address space")]
    Overflow {
        /// Start of the offending range.
        start: u64,
        /// Its size.
        size: u64,
    },
    /// Two non-RAM ranges of different types overlap.
    #[error("e820 ranges {a_start:#x}..{a_end:#x} ({a_kind:?}) and {b_start:#x}..{b_end:#x} ({b_kind:?}) overlap")]
    Conflict {
        /// First range start.
        a_start: u64,
        /// First range end (exclusive).
        a_end: u64,
        /// First range type.
        a_kind: E820Type,
        /// Second range start.
        b_start: u64,
        /// Second range end (exclusive).
        b_end: u64,
        /// Second range type.
        b_kind: E820Type,
    },
    /// The resulting table has more entries than the zero page holds.
    #[error("e820 map needs {count} entries, the zero page holds {E820_MAX_ENTRIES}")]
    TooManyEntries {
        /// Entries the map would need.
        count: usize,
    },
}

/// Build the e820 table from typed ranges; see the module docs for the rules.
///
/// Overlapping RAM ranges are merged; a non-RAM range overlapping RAM wins;
/// two overlapping non-RAM ranges must have the same type.
pub fn build_e820_map(ranges: &[(u64, u64, E820Type)]) -> Result<Vec<E820Entry>, E820Error> {
    let mut ram: Vec<(u64, u64)> = Vec::new();
    let mut holes: Vec<(u64, u64, E820Type)> = vec![(EBDA_START, LEGACY_END, E820Type::Reserved)];
    for &(start, size, kind) in ranges {
        if size == 0 {
            return Err(E820Error::EmptyRange { start });
        }
        let end = start
            .checked_add(size)
            .ok_or(E820Error::Overflow { start, size })?;
        if kind == E820Type::Ram {
            ram.push((start, end));
        } else {
            holes.push((start, end, kind));
        }
    }
    let holes = merge_holes(holes)?;
    let ram = merge(ram);

    let mut out: Vec<(u64, u64, E820Type)> = holes.clone();
    for (start, end) in ram {
        let mut pieces = vec![(start, end)];
        for &(hs, he, _) in &holes {
            pieces = pieces
                .into_iter()
                .flat_map(|(s, e)| subtract((s, e), (hs, he)))
                .collect();
        }
        out.extend(pieces.into_iter().map(|(s, e)| (s, e, E820Type::Ram)));
    }
    out.sort_by_key(|&(s, _, _)| s);

    let mut entries: Vec<E820Entry> = Vec::with_capacity(out.len());
    for (s, e, kind) in out {
        match entries.last_mut() {
            Some(last) if last.kind == kind && last.end() == s => last.size += e - s,
            _ => entries.push(E820Entry {
                addr: s,
                size: e - s,
                kind,
            }),
        }
    }
    if entries.len() > E820_MAX_ENTRIES {
        return Err(E820Error::TooManyEntries {
            count: entries.len(),
        });
    }
    Ok(entries)
}

/// Merge overlapping or touching `[start, end)` ranges.
fn merge(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Merge non-RAM ranges; overlapping ranges must agree on the type.
fn merge_holes(mut v: Vec<(u64, u64, E820Type)>) -> Result<Vec<(u64, u64, E820Type)>, E820Error> {
    v.sort_unstable_by_key(|&(s, e, _)| (s, e));
    let mut out: Vec<(u64, u64, E820Type)> = Vec::with_capacity(v.len());
    for (s, e, kind) in v {
        match out.last_mut() {
            Some(last) if s < last.1 => {
                if last.2 != kind {
                    return Err(E820Error::Conflict {
                        a_start: last.0,
                        a_end: last.1,
                        a_kind: last.2,
                        b_start: s,
                        b_end: e,
                        b_kind: kind,
                    });
                }
                last.1 = last.1.max(e);
            }
            _ => out.push((s, e, kind)),
        }
    }
    Ok(out)
}

/// `a` minus `b`, as zero, one or two ranges.
fn subtract(a: (u64, u64), b: (u64, u64)) -> Vec<(u64, u64)> {
    if b.1 <= a.0 || b.0 >= a.1 {
        return vec![a];
    }
    let mut out = Vec::new();
    if a.0 < b.0 {
        out.push((a.0, b.0));
    }
    if b.1 < a.1 {
        out.push((b.1, a.1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn e(addr: u64, size: u64, kind: E820Type) -> E820Entry {
        E820Entry { addr, size, kind }
    }

    #[test]
    fn typical_pc_layout_with_hole_and_high_ram() {
        // 6 GiB guest: 3 GiB low, 3 GiB above 4 GiB, MMIO hole reserved.
        let map = build_e820_map(&[
            (0, 3 * GIB, E820Type::Ram),
            (4 * GIB, 3 * GIB, E820Type::Ram),
            (0xfec0_0000, 0x1000, E820Type::Reserved),
            (0xfee0_0000, 0x1000, E820Type::Reserved),
        ])
        .unwrap();
        assert_eq!(
            map,
            vec![
                e(0, EBDA_START, E820Type::Ram),
                e(EBDA_START, LEGACY_END - EBDA_START, E820Type::Reserved),
                e(MIB, 3 * GIB - MIB, E820Type::Ram),
                e(0xfec0_0000, 0x1000, E820Type::Reserved),
                e(0xfee0_0000, 0x1000, E820Type::Reserved),
                e(4 * GIB, 3 * GIB, E820Type::Ram),
            ]
        );
    }

    type Row = (Vec<(u64, u64, E820Type)>, Result<usize, &'static str>);

    #[test]
    fn table_of_inputs_and_errors() {
        let rows: Vec<Row> =
            vec![
            (vec![(0, 128 * MIB, E820Type::Ram)], Ok(3)),
            // Adjacent RAM merges.
            (
                vec![(MIB, MIB, E820Type::Ram), (2 * MIB, MIB, E820Type::Ram)],
                Ok(2),
            ),
            // ACPI area carved out of RAM.
            (
                vec![(0, 64 * MIB, E820Type::Ram), (32 * MIB, MIB, E820Type::Acpi)],
                Ok(5),
            ),
            (
                vec![(5, 0, E820Type::Ram)],
                Err("e820 range at 0x5 has size 0"),
            ),
            (
                vec![(u64::MAX, 2, E820Type::Ram)],
                Err("e820 range at 0xffffffffffffffff with size 0x2 overflows the address space"),
            ),
            (
                vec![(0x100000, 0x2000, E820Type::Acpi), (0x101000, 0x1000, E820Type::Nvs)],
                Err("e820 ranges 0x100000..0x102000 (Acpi) and 0x101000..0x102000 (Nvs) overlap"),
            ),
        ];
        for (input, want) in rows {
            let got = build_e820_map(&input);
            match want {
                Ok(n) => assert_eq!(got.unwrap().len(), n, "{input:x?}"),
                Err(msg) => assert_eq!(got.unwrap_err().to_string(), msg),
            }
        }
    }

    #[test]
    fn too_many_entries() {
        let ranges: Vec<_> = (0..130u64)
            .map(|i| (2 * GIB + i * 2 * MIB, MIB, E820Type::Ram))
            .collect();
        assert_eq!(
            build_e820_map(&ranges).unwrap_err(),
            E820Error::TooManyEntries { count: 131 }
        );
    }

    #[test]
    fn entry_bytes() {
        let b = e(0x1000, 0x2000, E820Type::Acpi).to_bytes();
        assert_eq!(u64::from_le_bytes(b[0..8].try_into().unwrap()), 0x1000);
        assert_eq!(u64::from_le_bytes(b[8..16].try_into().unwrap()), 0x2000);
        assert_eq!(u32::from_le_bytes(b[16..20].try_into().unwrap()), 3);
        for raw in 1..=5 {
            assert_eq!(E820Type::from_raw(raw).unwrap().raw(), raw);
        }
        assert_eq!(E820Type::from_raw(6), None);
    }

    fn kind_strategy() -> impl Strategy<Value = E820Type> {
        prop_oneof![
            4 => Just(E820Type::Ram),
            1 => Just(E820Type::Reserved),
        ]
    }

    proptest! {
        /// Sorted, non-overlapping, legacy area reserved, every reserved byte
        /// stays reserved, and every RAM byte outside the holes stays RAM.
        #[test]
        fn map_invariants(ranges in prop::collection::vec(
            (0u64..64, 1u64..16, kind_strategy()), 1..12)) {
            let ranges: Vec<_> = ranges
                .into_iter()
                .map(|(s, n, k)| (s * 0x8000, n * 0x8000, k))
                .collect();
            let map = build_e820_map(&ranges).unwrap();
            for w in map.windows(2) {
                prop_assert!(w[0].end() <= w[1].addr, "{:x?}", map);
                prop_assert!(!(w[0].end() == w[1].addr && w[0].kind == w[1].kind));
            }
            let kind_at = |a: u64| map.iter().find(|e| e.addr <= a && a < e.end()).map(|e| e.kind);
            prop_assert_eq!(kind_at(EBDA_START), Some(E820Type::Reserved));
            prop_assert_eq!(kind_at(LEGACY_END - 1), Some(E820Type::Reserved));
            for probe in (0..(80 * 0x8000u64)).step_by(0x4000) {
                let in_hole = ranges.iter().any(|&(s, n, k)| k != E820Type::Ram && s <= probe && probe < s + n)
                    || (EBDA_START..LEGACY_END).contains(&probe);
                let in_ram = ranges.iter().any(|&(s, n, k)| k == E820Type::Ram && s <= probe && probe < s + n);
                let want = if in_hole { Some(E820Type::Reserved) } else if in_ram { Some(E820Type::Ram) } else { None };
                prop_assert_eq!(kind_at(probe), want, "probe {:#x} in {:x?}", probe, map);
            }
        }
    }
}

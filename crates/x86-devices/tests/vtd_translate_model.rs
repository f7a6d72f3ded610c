//! VT-d second-level translation against a naive model: tables built the way a guest
//! driver (kvm-unit-tests' `vtd_install_pte`) builds them, from a random set of 4 KiB
//! mappings with random permissions, must translate exactly what a map from page to
//! (page, permissions) says, and fault everywhere else.

use std::collections::HashMap;
use std::sync::Mutex;

use proptest::prelude::*;
use x86_devices::vtd_tables::{translate, DmaMemory};

/// Guest RAM from 0 (x86-devices' `DmaMemory` for a byte vector).
type Ram = Mutex<Vec<u8>>;

fn get(ram: &Ram, gpa: u64) -> u64 {
    let mut b = [0; 8];
    assert!(ram.read(gpa, &mut b));
    u64::from_le_bytes(b)
}

fn put(ram: &Ram, gpa: u64, v: u64) {
    assert!(ram.write(gpa, &v.to_le_bytes()));
}

const ROOT: u64 = 0x1000;
const CONTEXT: u64 = 0x2000;
const TOP: u64 = 0x3000;
const SID: u16 = 0x0108; // 01:01.0

/// Guest RAM with the root and context entries of `SID` and an empty top-level table;
/// further tables are allocated from 0x4000 on.
struct Tables {
    ram: Ram,
    next: u64,
}

impl Tables {
    fn new() -> Self {
        let ram = Mutex::new(vec![0; 1 << 22]);
        put(&ram, ROOT + 16, CONTEXT | 1);
        put(&ram, CONTEXT + 16 * 0x08, TOP | 1);
        put(&ram, CONTEXT + 16 * 0x08 + 8, 1 | u64::from(SID) << 8);
        Self { ram, next: 0x4000 }
    }

    /// Map IOVA page `iova` to `gpa` with permission bits `perm` (1 read, 2 write).
    fn map(&mut self, iova: u64, gpa: u64, perm: u64) {
        let mut table = TOP;
        for level in [3u32, 2] {
            let slot = table + 8 * ((iova >> (12 + 9 * (level - 1))) & 0x1ff);
            if get(&self.ram, slot) & 3 == 0 {
                put(&self.ram, slot, self.next | 3);
                self.next += 0x1000;
            }
            table = get(&self.ram, slot) & !0xfff;
        }
        put(&self.ram, table + 8 * ((iova >> 12) & 0x1ff), gpa | perm);
    }
}

fn page() -> impl Strategy<Value = u64> {
    // Pages clustered in a few 1 GiB and 2 MiB regions so tables are shared.
    (0u64..4, 0u64..4, 0u64..512).prop_map(|(g, m, p)| (g << 30) | (m << 21) | (p << 12))
}

proptest! {
    #[test]
    fn translation_matches_a_map_of_pages(
        maps in prop::collection::vec((page(), 0u64..0x1_0000, 1u64..4), 1..40),
        probes in prop::collection::vec((page(), 0u64..0x1000), 0..40),
    ) {
        let mut tables = Tables::new();
        let mut model = HashMap::new();
        for &(iova, gpa_page, perm) in &maps {
            let gpa = gpa_page << 12;
            tables.map(iova, gpa, perm);
            model.insert(iova, (gpa, perm));
        }
        let mapped = maps.iter().map(|&(iova, ..)| (iova, 0x123));
        for (iova_page, offset) in mapped.chain(probes) {
            let iova = iova_page | offset;
            for (write, bit) in [(false, 1), (true, 2)] {
                let got = translate(&tables.ram, ROOT, SID, iova, write);
                match model.get(&iova_page) {
                    Some(&(gpa, perm)) if perm & bit != 0 => {
                        prop_assert_eq!(got, Ok(gpa | offset), "{:#x} write {}", iova, write);
                    }
                    _ => prop_assert!(got.is_err(), "{:#x} write {}: {:?}", iova, write, got),
                }
            }
        }
        prop_assert!(translate(&tables.ram, ROOT, SID + 1, 0, false).is_err(), "other function");
    }
}

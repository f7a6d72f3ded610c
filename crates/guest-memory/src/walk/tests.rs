use super::*;
use proptest::prelude::*;
use vm_memory::GuestMemoryMmap;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// Permissive flags for intermediate tables: present, writable, user.
const TABLE: u64 = P | RW | US;

/// Builds page tables in guest memory, allocating tables from a bump pointer.
struct Builder<'a> {
    mem: &'a GuestMemoryMmap,
    next: u64,
    root: u64,
    la57: bool,
}

impl<'a> Builder<'a> {
    fn new(mem: &'a GuestMemoryMmap, tables_at: u64, la57: bool) -> Self {
        let mut b = Self {
            mem,
            next: tables_at,
            root: 0,
            la57,
        };
        b.root = b.alloc();
        b
    }

    fn alloc(&mut self) -> u64 {
        let table = self.next;
        self.mem
            .write_slice(&[0u8; 4096], GuestAddress(table))
            .unwrap();
        self.next += 4096;
        table
    }

    fn mode(&self) -> PagingMode {
        PagingMode {
            cr3: self.root,
            la57: self.la57,
        }
    }

    /// Maps `gva` to `gpa` with a page of `size`; `leaf` are the leaf entry's flag bits
    /// (P is added), `table` the flags of newly created intermediate entries.
    fn map(&mut self, gva: u64, gpa: u64, size: PageSize, leaf: u64, table: u64) {
        let leaf_level = match size {
            PageSize::Size4K => PagingLevel::Pt,
            PageSize::Size2M => PagingLevel::Pd,
            PageSize::Size1G => PagingLevel::Pdpt,
        };
        let mut level = if self.la57 {
            PagingLevel::Pml5
        } else {
            PagingLevel::Pml4
        };
        let mut t = self.root;
        while level != leaf_level {
            let at = GuestAddress(t + ((gva >> level.shift()) & 0x1ff) * 8);
            let mut entry: u64 = self.mem.read_obj(at).unwrap();
            if entry & P == 0 {
                entry = self.alloc() | table;
                self.mem.write_obj(entry, at).unwrap();
            }
            t = entry & ADDR_MASK;
            level = level.next().unwrap();
        }
        let ps = if size == PageSize::Size4K { 0 } else { PS };
        let at = GuestAddress(t + ((gva >> level.shift()) & 0x1ff) * 8);
        self.mem.write_obj(gpa | leaf | ps | P, at).unwrap();
    }

    /// Overwrites the entry for `gva` at `level` (which must be reachable).
    fn set_entry(&self, gva: u64, level: PagingLevel, value: u64) {
        let mut l = if self.la57 {
            PagingLevel::Pml5
        } else {
            PagingLevel::Pml4
        };
        let mut t = self.root;
        while l != level {
            let entry: u64 = self
                .mem
                .read_obj(GuestAddress(t + ((gva >> l.shift()) & 0x1ff) * 8))
                .unwrap();
            t = entry & ADDR_MASK;
            l = l.next().unwrap();
        }
        let at = GuestAddress(t + ((gva >> l.shift()) & 0x1ff) * 8);
        self.mem.write_obj(value, at).unwrap();
    }
}

fn memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), (16 * MIB) as usize)]).unwrap()
}

fn flags(writable: bool, user: bool, nx: bool) -> PageFlags {
    PageFlags { writable, user, nx }
}

#[test]
fn translates_all_three_page_sizes() {
    let mem = memory();
    let mut b = Builder::new(&mem, MIB, false);
    b.map(0x40_0000, 0x7000, PageSize::Size4K, RW | US, TABLE);
    b.map(0x60_0000, 0x20_0000, PageSize::Size2M, RW, TABLE);
    b.map(0xffff_8000_0000_0000, 3 * GIB, PageSize::Size1G, XD, TABLE);
    let cases: &[(u64, u64, PageSize, PageFlags)] = &[
        (
            0x40_0000,
            0x7000,
            PageSize::Size4K,
            flags(true, true, false),
        ),
        (
            0x40_0fff,
            0x7fff,
            PageSize::Size4K,
            flags(true, true, false),
        ),
        (
            0x60_0000,
            0x20_0000,
            PageSize::Size2M,
            flags(true, false, false),
        ),
        (
            0x7f_fff8,
            0x3f_fff8,
            PageSize::Size2M,
            flags(true, false, false),
        ),
        (
            0xffff_8000_0000_0000,
            3 * GIB,
            PageSize::Size1G,
            flags(false, false, true),
        ),
        (
            0xffff_8000_3fff_ffff,
            4 * GIB - 1,
            PageSize::Size1G,
            flags(false, false, true),
        ),
    ];
    for &(gva, gpa, page_size, flags) in cases {
        let want = Translation {
            gpa: GuestAddress(gpa),
            page_size,
            flags,
        };
        assert_eq!(walk(&mem, b.mode(), gva), Ok(want), "gva {gva:#x}");
        assert_eq!(gva_to_gpa(&mem, b.root, gva), Ok(want), "gva {gva:#x}");
    }
}

#[test]
fn not_present_names_the_level() {
    let mem = memory();
    let mut b = Builder::new(&mem, MIB, false);
    b.map(0x40_0000, 0x7000, PageSize::Size4K, RW, TABLE);
    let rows: &[(u64, &str)] = &[
        (
            0x80_0000_0000,
            "guest-virtual address 0x8000000000 is not mapped: PML4 entry 0x0 is not present",
        ),
        (
            0x4000_0000,
            "guest-virtual address 0x40000000 is not mapped: PDPT entry 0x0 is not present",
        ),
        (
            0x20_0000,
            "guest-virtual address 0x200000 is not mapped: PD entry 0x0 is not present",
        ),
        (
            0x40_1000,
            "guest-virtual address 0x401000 is not mapped: PT entry 0x0 is not present",
        ),
    ];
    for (gva, want) in rows {
        assert_eq!(
            gva_to_gpa(&mem, b.root, *gva).unwrap_err().to_string(),
            *want
        );
    }
    // A non-zero entry without P is still not present, and the error shows it.
    b.set_entry(0x40_0000, PagingLevel::Pt, 0x7000 | RW);
    assert_eq!(
        gva_to_gpa(&mem, b.root, 0x40_0000).unwrap_err(),
        WalkError::NotPresent {
            gva: 0x40_0000,
            level: PagingLevel::Pt,
            entry: 0x7002
        }
    );
}

#[test]
fn non_canonical_addresses_are_refused() {
    let mem = memory();
    let b = Builder::new(&mem, MIB, false);
    for gva in [
        0x0000_8000_0000_0000,
        0xffff_7fff_ffff_ffff,
        0x0100_0000_0000_0000,
        0x8000_0000_0000_0000,
    ] {
        assert_eq!(
            gva_to_gpa(&mem, b.root, gva).unwrap_err().to_string(),
            format!("guest-virtual address {gva:#x} is not canonical")
        );
    }
    // With LA57, 0x0000_8000_0000_0000 is canonical (just unmapped); 0x0100_0000_0000_0000 is not.
    let b57 = Builder::new(&mem, 2 * MIB, true);
    assert!(matches!(
        walk(&mem, b57.mode(), 0x0000_8000_0000_0000),
        Err(WalkError::NotPresent {
            level: PagingLevel::Pml5,
            ..
        })
    ));
    assert_eq!(
        walk(&mem, b57.mode(), 0x0100_0000_0000_0000),
        Err(WalkError::NonCanonical {
            gva: 0x0100_0000_0000_0000
        })
    );
}

#[test]
fn tables_outside_ram_are_reported() {
    let mem = memory();
    let mut b = Builder::new(&mem, MIB, false);
    assert_eq!(
        gva_to_gpa(&mem, 32 * MIB, 0x1000).unwrap_err().to_string(),
        "PML4 table entry at guest-physical 0x2000000 (for 0x1000) is outside guest RAM"
    );
    b.map(0x40_0000, 0x7000, PageSize::Size4K, RW, TABLE);
    // Point the PD entry at a "table" in the MMIO hole.
    b.set_entry(0x40_0000, PagingLevel::Pd, 0xfee0_0000 | TABLE);
    assert_eq!(
        gva_to_gpa(&mem, b.root, 0x40_0000).unwrap_err(),
        WalkError::TableOutsideRam {
            gva: 0x40_0000,
            level: PagingLevel::Pt,
            entry_gpa: 0xfee0_0000 // PT index 0 of 0x400000
        }
    );
}

#[test]
fn a_leaf_outside_ram_still_translates() {
    // Mapping MMIO (the LAPIC page) is normal; the walk does not read the target.
    let mem = memory();
    let mut b = Builder::new(&mem, MIB, false);
    b.map(0x1000, 0xfee0_0000, PageSize::Size4K, RW, TABLE);
    assert_eq!(
        gva_to_gpa(&mem, b.root, 0x1020).unwrap().gpa,
        GuestAddress(0xfee0_0020)
    );
}

#[test]
fn flags_combine_over_levels() {
    let mem = memory();
    // Intermediate entries read-only, supervisor, no-execute; leaf fully permissive.
    let mut b = Builder::new(&mem, MIB, false);
    b.map(0x1000, 0x9000, PageSize::Size4K, RW | US, P);
    assert_eq!(
        gva_to_gpa(&mem, b.root, 0x1000).unwrap().flags,
        flags(false, false, false)
    );
    b.set_entry(0x1000, PagingLevel::Pml4, (b.root + 4096) | TABLE | XD);
    assert_eq!(
        gva_to_gpa(&mem, b.root, 0x1000).unwrap().flags,
        flags(false, false, true)
    );

    let mut b = Builder::new(&mem, 2 * MIB, false);
    b.map(0x1000, 0x9000, PageSize::Size4K, US, TABLE);
    assert_eq!(
        gva_to_gpa(&mem, b.root, 0x1000).unwrap().flags,
        flags(false, true, false)
    );
}

#[test]
fn reserved_bits_are_faults() {
    let mem = memory();
    let mut b = Builder::new(&mem, MIB, false);
    b.map(0x20_0000, 0x40_0000, PageSize::Size2M, RW, TABLE);
    // PAT (bit 12) in a 2 MiB entry is allowed and not part of the address.
    b.set_entry(
        0x20_0000,
        PagingLevel::Pd,
        0x40_0000 | (1 << 12) | PS | RW | P,
    );
    assert_eq!(
        gva_to_gpa(&mem, b.root, 0x20_0010).unwrap().gpa,
        GuestAddress(0x40_0010)
    );
    // Bit 13 of a 2 MiB entry is reserved.
    let bad = 0x40_0000 | (1 << 13) | PS | RW | P;
    b.set_entry(0x20_0000, PagingLevel::Pd, bad);
    assert_eq!(
        gva_to_gpa(&mem, b.root, 0x20_0000).unwrap_err().to_string(),
        format!("guest-virtual address 0x200000: PD entry {bad:#x} has reserved bits set")
    );
    // PS in a PML4 entry is reserved.
    let pml4e = (b.root + 4096) | PS | TABLE;
    b.set_entry(0x20_0000, PagingLevel::Pml4, pml4e);
    assert_eq!(
        gva_to_gpa(&mem, b.root, 0x20_0000),
        Err(WalkError::ReservedBits {
            gva: 0x20_0000,
            level: PagingLevel::Pml4,
            entry: pml4e
        })
    );
}

#[test]
fn cr3_low_bits_are_ignored() {
    let mem = memory();
    let mut b = Builder::new(&mem, MIB, false);
    b.map(0x5000, 0x6000, PageSize::Size4K, RW, TABLE);
    // PCID 0x123 in bits 11:0, PWT/PCD, and bit 63 (no-flush hint) do not move the root.
    for cr3 in [b.root | 0x123, b.root | 0x18, b.root | (1 << 63)] {
        assert_eq!(
            gva_to_gpa(&mem, cr3, 0x5004).unwrap().gpa,
            GuestAddress(0x6004)
        );
    }
}

#[test]
fn five_level_walk() {
    let mem = memory();
    let mut b = Builder::new(&mem, MIB, true);
    let gva = 0xff10_0000_0020_0000; // PML5 index 0x1f1: only reachable with LA57.
    b.map(gva, 0x30_0000, PageSize::Size4K, RW | US, TABLE);
    let t = walk(&mem, b.mode(), gva + 0x10).unwrap();
    assert_eq!(t.gpa, GuestAddress(0x30_0010));
    assert_eq!(t.page_size, PageSize::Size4K);
    // 4-level walk of the same address is non-canonical.
    assert_eq!(
        gva_to_gpa(&mem, b.root, gva),
        Err(WalkError::NonCanonical { gva })
    );
}

// ---- proptest against a naive model ----

/// A mapping in the model: gva start, size, gpa start, leaf flags.
#[derive(Debug, Clone, Copy)]
struct Mapping {
    gva: u64,
    size: PageSize,
    gpa: u64,
    leaf: u64,
}

/// Sign-extends a 48-bit address.
fn canonical(addr: u64) -> u64 {
    (((addr << 16) as i64) >> 16) as u64
}

/// GVAs from a small index space, so mappings share upper-level tables.
fn gva_strategy() -> impl Strategy<Value = u64> {
    (
        prop::sample::select(vec![0u64, 1, 255, 256, 511]),
        0u64..3,
        0u64..3,
        0u64..3,
    )
        .prop_map(|(pml4, pdpt, pd, pt)| canonical(pml4 << 39 | pdpt << 30 | pd << 21 | pt << 12))
}

fn mapping_strategy() -> impl Strategy<Value = Mapping> {
    (
        gva_strategy(),
        prop::sample::select(vec![PageSize::Size4K, PageSize::Size2M, PageSize::Size1G]),
        0u64..64,
        prop::sample::select(vec![0, RW, US, RW | US, XD, RW | XD, RW | US | XD]),
    )
        .prop_map(|(gva, size, frame, leaf)| {
            let mask = !(size.bytes() - 1);
            Mapping {
                gva: gva & mask,
                size,
                gpa: frame * size.bytes(),
                leaf,
            }
        })
}

fn model_lookup(maps: &[Mapping], gva: u64) -> Option<Translation> {
    maps.iter()
        .find(|m| gva >= m.gva && gva - m.gva < m.size.bytes())
        .map(|m| Translation {
            gpa: GuestAddress(m.gpa + (gva - m.gva)),
            page_size: m.size,
            flags: flags(m.leaf & RW != 0, m.leaf & US != 0, m.leaf & XD != 0),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn walk_matches_naive_model(
        wanted in prop::collection::vec(mapping_strategy(), 1..24),
        probes in prop::collection::vec((gva_strategy(), 0u64..(2 * MIB)), 1..48),
        offsets in prop::collection::vec(0u64..GIB, 24),
    ) {
        let mem = memory();
        let mut b = Builder::new(&mem, MIB, false);
        let mut maps: Vec<Mapping> = Vec::new();
        for m in wanted {
            let overlaps = maps.iter().any(|o| m.gva < o.gva + o.size.bytes() && o.gva < m.gva + m.size.bytes());
            if !overlaps {
                b.map(m.gva, m.gpa, m.size, m.leaf, TABLE);
                maps.push(m);
            }
        }
        // Every mapped page translates, at its first byte, last byte and a random offset.
        for (m, off) in maps.iter().zip(&offsets) {
            for gva in [m.gva, m.gva + m.size.bytes() - 1, m.gva + off % m.size.bytes()] {
                prop_assert_eq!(walk(&mem, b.mode(), gva), Ok(model_lookup(&maps, gva).unwrap()));
            }
        }
        // Probes near mapped addresses: mapped ones agree with the model, others are not
        // present.
        for (base, off) in probes {
            let gva = base + off;
            match (walk(&mem, b.mode(), gva), model_lookup(&maps, gva)) {
                (Ok(got), Some(want)) => prop_assert_eq!(got, want),
                (Err(WalkError::NotPresent { .. }), None) => {}
                (got, want) => prop_assert!(false, "gva {:#x}: walk {:?}, model {:?}", gva, got, want),
            }
        }
    }
}

/// Cross-check against KVM's own walker (KVM_TRANSLATE) on a vCPU in long mode.
#[test]
fn kvm_translate_cross_check() {
    use crate::{layout::MemoryLayout, ram::GuestRam};
    use kvm_ioctls::Kvm;
    use std::sync::Arc;

    let kvm = Kvm::new().expect("this test needs /dev/kvm: opening it failed");
    let vm = Arc::new(kvm.create_vm().expect("KVM_CREATE_VM"));
    let ram = GuestRam::new(&MemoryLayout::x86_64(64 * MIB).unwrap()).unwrap();
    let _slots = ram.register(Arc::clone(&vm)).unwrap();
    let mem = ram.memory();

    let mut b = Builder::new(mem, MIB, false);
    let maps = [
        (0x40_0000, 0x7000, PageSize::Size4K),
        (0x7fff_ffe0_0000, 0x20_0000, PageSize::Size2M),
        (0xffff_8000_0000_0000, 0, PageSize::Size1G),
        (0xffff_ffff_ffff_f000, 0x3f_f000, PageSize::Size4K),
    ];
    for (gva, gpa, size) in maps {
        b.map(gva, gpa, size, RW, TABLE);
    }

    let vcpu = vm.create_vcpu(0).expect("KVM_CREATE_VCPU");
    // KVM honours 1 GiB pages and NX only when the guest's CPUID has PDPE1GB and NX.
    let cpuid = kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .unwrap();
    vcpu.set_cpuid2(&cpuid).unwrap();
    // Software KVM (shadow paging, as on this project's hosts) offers no PDPE1GB, and its
    // walker then treats PS in a PDPT entry as a reserved bit.
    let gbpages = cpuid
        .as_slice()
        .iter()
        .any(|e| e.function == 0x8000_0001 && e.edx & (1 << 26) != 0);
    let mut sregs = vcpu.get_sregs().unwrap();
    sregs.cr3 = b.root;
    sregs.cr4 |= 1 << 5; // PAE
    sregs.cr0 |= 1 | (1 << 31); // PE, PG
    sregs.efer |= (1 << 8) | (1 << 10) | (1 << 11); // LME, LMA, NXE
    sregs.cs.l = 1;
    sregs.cs.db = 0;
    vcpu.set_sregs(&sregs).unwrap();

    let mut checked = 0;
    for (gva, _, size) in maps {
        for probe in [
            gva,
            gva + 0x123,
            gva + (size.bytes() - 1),
            gva.wrapping_add(size.bytes()),
        ] {
            let kvm_tr = vcpu.translate_gva(probe).unwrap();
            let mode = PagingMode {
                cr3: b.root,
                la57: false,
            };
            match walk(mem, mode, probe) {
                Ok(t) if t.page_size == PageSize::Size1G && !gbpages => {
                    assert_eq!(
                        kvm_tr.valid, 0,
                        "KVM maps {probe:#x} with a 1 GiB page without PDPE1GB"
                    );
                }
                Ok(t) => {
                    assert_eq!(kvm_tr.valid, 1, "KVM cannot translate {probe:#x}, we can");
                    assert_eq!(kvm_tr.physical_address, t.gpa.0, "gva {probe:#x}");
                }
                Err(e) => assert_eq!(kvm_tr.valid, 0, "KVM translates {probe:#x}, we say {e}"),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 16);
}

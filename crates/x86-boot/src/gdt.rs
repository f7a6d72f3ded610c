//! A flat 64-bit Global Descriptor Table and the conversion of its entries
//! into the `kvm_segment` form that `KVM_SET_SREGS` expects.
//!
//! The table order follows what `SYSCALL`/`SYSRET` need (user data right before
//! user code), so a guest kernel can program `STAR` against it unchanged:
//!
//! | index | selector | descriptor |
//! |---|---|---|
//! | 0 | 0x00 | null |
//! | 1 | 0x08 | kernel code, 64-bit (L=1), DPL 0 |
//! | 2 | 0x10 | kernel data, DPL 0 |
//! | 3 | 0x1b | user data, DPL 3 |
//! | 4 | 0x23 | user code, 64-bit (L=1), DPL 3 |

use kvm_bindings::kvm_segment;

/// Selector of the 64-bit kernel code segment (GDT index 1, RPL 0).
pub const KERNEL_CODE64_SELECTOR: u16 = 0x08;
/// Selector of the kernel data segment (GDT index 2, RPL 0).
pub const KERNEL_DATA_SELECTOR: u16 = 0x10;
/// Selector of the user data segment (GDT index 3, RPL 3).
pub const USER_DATA_SELECTOR: u16 = 0x18 | 3;
/// Selector of the 64-bit user code segment (GDT index 4, RPL 3).
pub const USER_CODE64_SELECTOR: u16 = 0x20 | 3;

/// Number of descriptors in [`Gdt::standard_64bit`].
pub const GDT_ENTRIES: usize = 5;

/// Access-byte type nibble: code, execute/read, accessed.
const TYPE_CODE_EXEC_READ_ACCESSED: u8 = 0xb;
/// Access-byte type nibble: data, read/write, accessed.
const TYPE_DATA_READ_WRITE_ACCESSED: u8 = 0x3;

/// Fields of one code or data segment descriptor, before encoding.
///
/// `limit` is the raw 20-bit field; with `granularity_4k` it counts 4 KiB pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SegmentDescriptor {
    /// Segment base (32 bits in a legacy descriptor).
    pub base: u32,
    /// Raw 20-bit limit field.
    pub limit: u32,
    /// Type nibble (bits 40..44).
    pub type_: u8,
    /// S bit: 1 for code/data, 0 for system descriptors.
    pub code_or_data: bool,
    /// Descriptor privilege level, 0..=3.
    pub dpl: u8,
    /// P bit.
    pub present: bool,
    /// AVL bit (free for software).
    pub avl: bool,
    /// L bit: 64-bit code segment.
    pub long: bool,
    /// D/B bit: 32-bit default operand size.
    pub default_32: bool,
    /// G bit: limit counts 4 KiB units.
    pub granularity_4k: bool,
}

impl SegmentDescriptor {
    /// A flat 4 GiB segment with the given type and privilege level.
    const fn flat(type_: u8, dpl: u8, long: bool) -> Self {
        Self {
            base: 0,
            limit: 0xf_ffff,
            type_,
            code_or_data: true,
            dpl,
            present: true,
            avl: false,
            long,
            // D must be 0 when L is 1.
            default_32: !long,
            granularity_4k: true,
        }
    }

    /// Encodes the descriptor as the 8 bytes the CPU reads (little-endian u64).
    pub const fn encode(&self) -> u64 {
        let base = self.base as u64;
        let limit = (self.limit & 0xf_ffff) as u64;
        let access = (self.type_ as u64 & 0xf)
            | ((self.code_or_data as u64) << 4)
            | ((self.dpl as u64 & 3) << 5)
            | ((self.present as u64) << 7);
        let flags = (self.avl as u64)
            | ((self.long as u64) << 1)
            | ((self.default_32 as u64) << 2)
            | ((self.granularity_4k as u64) << 3);
        (limit & 0xffff)
            | ((base & 0xff_ffff) << 16)
            | (access << 40)
            | ((limit >> 16) << 48)
            | (flags << 52)
            | ((base >> 24) << 56)
    }

    /// Decodes the 8 bytes of a descriptor. Every bit pattern decodes.
    pub const fn decode(raw: u64) -> Self {
        let base = ((raw >> 16) & 0xff_ffff) | (((raw >> 56) & 0xff) << 24);
        let limit = (raw & 0xffff) | (((raw >> 48) & 0xf) << 16);
        let access = (raw >> 40) & 0xff;
        let flags = (raw >> 52) & 0xf;
        Self {
            base: base as u32,
            limit: limit as u32,
            type_: (access & 0xf) as u8,
            code_or_data: access & (1 << 4) != 0,
            dpl: ((access >> 5) & 3) as u8,
            present: access & (1 << 7) != 0,
            avl: flags & 1 != 0,
            long: flags & (1 << 1) != 0,
            default_32: flags & (1 << 2) != 0,
            granularity_4k: flags & (1 << 3) != 0,
        }
    }

    /// The limit in bytes as the CPU applies it (expanded when `granularity_4k`).
    pub const fn byte_limit(&self) -> u32 {
        let raw = self.limit & 0xf_ffff;
        if self.granularity_4k {
            (raw << 12) | 0xfff
        } else {
            raw
        }
    }

    /// The segment-register state KVM expects for this descriptor loaded with `selector`.
    pub fn to_kvm_segment(&self, selector: u16) -> kvm_segment {
        kvm_segment {
            base: u64::from(self.base),
            limit: self.byte_limit(),
            selector,
            type_: self.type_,
            present: u8::from(self.present),
            dpl: self.dpl,
            db: u8::from(self.default_32),
            s: u8::from(self.code_or_data),
            l: u8::from(self.long),
            g: u8::from(self.granularity_4k),
            avl: u8::from(self.avl),
            unusable: u8::from(!self.present),
            padding: 0,
        }
    }
}

/// Decodes a raw descriptor straight into a `kvm_segment` for `selector`.
pub fn kvm_segment_from_raw(raw: u64, selector: u16) -> kvm_segment {
    SegmentDescriptor::decode(raw).to_kvm_segment(selector)
}

/// A GDT as a list of raw descriptors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gdt {
    entries: [u64; GDT_ENTRIES],
}

impl Gdt {
    /// The standard table described in the module docs.
    pub const fn standard_64bit() -> Self {
        Self {
            entries: [
                0,
                SegmentDescriptor::flat(TYPE_CODE_EXEC_READ_ACCESSED, 0, true).encode(),
                SegmentDescriptor::flat(TYPE_DATA_READ_WRITE_ACCESSED, 0, false).encode(),
                SegmentDescriptor::flat(TYPE_DATA_READ_WRITE_ACCESSED, 3, false).encode(),
                SegmentDescriptor::flat(TYPE_CODE_EXEC_READ_ACCESSED, 3, true).encode(),
            ],
        }
    }

    /// The raw descriptors, index 0 first.
    pub fn entries(&self) -> &[u64] {
        &self.entries
    }

    /// The table as bytes in guest order.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.entries.iter().flat_map(|e| e.to_le_bytes()).collect()
    }

    /// The GDTR limit: size in bytes minus one.
    pub fn limit(&self) -> u16 {
        // GDT_ENTRIES * 8 - 1 = 39 always fits.
        (self.entries.len() * 8 - 1) as u16
    }

    /// The `kvm_segment` for `selector`, or `None` when the selector's index is
    /// outside the table. The RPL bits of `selector` are kept as given.
    pub fn segment(&self, selector: u16) -> Option<kvm_segment> {
        let raw = *self.entries.get(usize::from(selector >> 3))?;
        Some(kvm_segment_from_raw(raw, selector))
    }
}

impl Default for Gdt {
    fn default() -> Self {
        Self::standard_64bit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_entries_match_well_known_values() {
        let gdt = Gdt::standard_64bit();
        assert_eq!(
            gdt.entries(),
            &[
                0,
                0x00af_9b00_0000_ffff,
                0x00cf_9300_0000_ffff,
                0x00cf_f300_0000_ffff,
                0x00af_fb00_0000_ffff
            ]
        );
        assert_eq!(gdt.limit(), 39);
        assert_eq!(gdt.to_bytes().len(), 40);
    }

    #[test]
    fn kernel_code_segment_decodes_to_long_mode_ring0() {
        let cs = Gdt::standard_64bit()
            .segment(KERNEL_CODE64_SELECTOR)
            .unwrap();
        assert_eq!(cs.selector, 0x08);
        assert_eq!((cs.base, cs.limit), (0, 0xffff_ffff));
        assert_eq!((cs.type_, cs.s, cs.present, cs.dpl), (0xb, 1, 1, 0));
        assert_eq!((cs.l, cs.db, cs.g, cs.avl, cs.unusable), (1, 0, 1, 0, 0));
    }

    #[test]
    fn user_segments_have_dpl3_and_rpl3() {
        let gdt = Gdt::standard_64bit();
        let ds = gdt.segment(USER_DATA_SELECTOR).unwrap();
        assert_eq!(
            (ds.selector, ds.dpl, ds.type_, ds.db, ds.l),
            (0x1b, 3, 3, 1, 0)
        );
        let cs = gdt.segment(USER_CODE64_SELECTOR).unwrap();
        assert_eq!(
            (cs.selector, cs.dpl, cs.type_, cs.l, cs.db),
            (0x23, 3, 0xb, 1, 0)
        );
    }

    #[test]
    fn selector_outside_table_is_none() {
        assert!(Gdt::standard_64bit().segment(5 << 3).is_none());
    }

    #[test]
    fn byte_granular_limit_is_not_expanded() {
        let d = SegmentDescriptor {
            limit: 0x1234,
            ..SegmentDescriptor::default()
        };
        assert_eq!(d.byte_limit(), 0x1234);
    }

    #[test]
    fn decode_inverts_encode_for_every_field() {
        let d = SegmentDescriptor {
            base: 0x1234_5678,
            limit: 0xa_bcde,
            type_: 0x5,
            code_or_data: true,
            dpl: 2,
            present: true,
            avl: true,
            long: false,
            default_32: true,
            granularity_4k: false,
        };
        assert_eq!(SegmentDescriptor::decode(d.encode()), d);
        let raw = 0xdead_beef_cafe_f00d_u64;
        assert_eq!(SegmentDescriptor::decode(raw).encode(), raw);
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn raw_descriptor_round_trips(raw in any::<u64>()) {
            prop_assert_eq!(SegmentDescriptor::decode(raw).encode(), raw);
        }

        #[test]
        fn kvm_segment_reflects_descriptor(raw in any::<u64>(), selector in any::<u16>()) {
            let d = SegmentDescriptor::decode(raw);
            let s = kvm_segment_from_raw(raw, selector);
            prop_assert_eq!(s.base, u64::from(d.base));
            prop_assert_eq!(s.selector, selector);
            prop_assert_eq!(s.dpl, ((raw >> 45) & 3) as u8);
            prop_assert_eq!(s.present, ((raw >> 47) & 1) as u8);
            prop_assert_eq!(s.l, ((raw >> 53) & 1) as u8);
            prop_assert_eq!(s.g, ((raw >> 55) & 1) as u8);
            let raw_limit = ((raw & 0xffff) | ((raw >> 32) & 0xf_0000)) as u32;
            prop_assert_eq!(s.limit, if s.g == 1 { (raw_limit << 12) | 0xfff } else { raw_limit });
        }
    }
}

//! `diff::diff` tests: named feature bits, raw register changes, added and
//! removed leaves.

use cpuid_model::diff::{diff, EntryDiff};
use cpuid_model::{CpuidEntry, CpuidKey, CpuidRegs, CpuidTable};

fn table(rows: &[(u32, u32, [u32; 4])]) -> CpuidTable {
    rows.iter()
        .map(|(leaf, sub, r)| {
            (
                CpuidKey::subleaf(*leaf, *sub),
                CpuidEntry {
                    regs: CpuidRegs {
                        eax: r[0],
                        ebx: r[1],
                        ecx: r[2],
                        edx: r[3],
                    },
                    indexed: *leaf == 7,
                },
            )
        })
        .collect()
}

const AVX: u32 = 1 << 28;
const X2APIC: u32 = 1 << 21;

#[test]
fn equal_tables_have_no_diff() {
    let a = table(&[(1, 0, [0x306c4, 0, AVX, 0])]);
    let d = diff(&a, &a.clone());
    assert!(d.is_empty());
    assert_eq!(d.to_string(), "");
}

#[test]
fn feature_bits_are_named_and_raw_fields_shown_as_values() {
    let a = table(&[(1, 0, [0x0003_06c4, 0x0002_0800, AVX | 1, 0])]);
    let b = table(&[(1, 0, [0x00a1_0f11, 0x0002_0800, X2APIC | 1, 0])]);
    let d = diff(&a, &b);
    assert_eq!(
        d.to_string(),
        "0x00000001 0x00 eax: 0x000306c4 -> 0x00a10f11\n\
         0x00000001 0x00 ecx: -avx +x2apic\n"
    );
    let names = |v: Vec<&'static cpuid_model::features::Feature>| {
        v.iter().map(|f| f.name).collect::<Vec<_>>()
    };
    assert_eq!(names(d.removed_features()), ["avx"]);
    assert_eq!(names(d.added_features()), ["x2apic"]);
}

#[test]
fn uncatalogued_bits_in_a_feature_register_are_shown_apart() {
    // Leaf 1 EDX bit 10 is reserved, so no feature names it.
    let a = table(&[(1, 0, [0, 0, 0, 1 << 10]), (7, 0, [0, 1 << 4, 0, 0])]);
    let b = table(&[(1, 0, [0, 0, 0, 1]), (7, 0, [0, 0, 0, 0])]);
    assert_eq!(
        diff(&a, &b).to_string(),
        "0x00000001 0x00 edx: +fpu (other bits 0x00000400 -> 0x00000000)\n\
         0x00000007 0x00 ebx: -hle\n"
    );
    let only_other = diff(
        &table(&[(1, 0, [0, 0, 0, 1 << 10])]),
        &table(&[(1, 0, [0, 0, 0, 0])]),
    );
    assert_eq!(
        only_other.to_string(),
        "0x00000001 0x00 edx: other bits 0x00000400 -> 0x00000000\n"
    );
}

#[test]
fn added_and_removed_leaves_are_listed_with_their_features() {
    let a = table(&[(0xb, 1, [5, 2, 0x201, 0]), (7, 0, [0, 1 << 5, 0, 0])]);
    let b = table(&[(0x8000_0001, 0, [0, 0, 1 << 2, 0])]);
    let d = diff(&a, &b);
    assert_eq!(
        d.to_string(),
        "0x00000007 0x00: removed eax=0x00000000 ebx=0x00000020 ecx=0x00000000 edx=0x00000000\n\
         0x0000000b 0x01: removed eax=0x00000005 ebx=0x00000002 ecx=0x00000201 edx=0x00000000\n\
         0x80000001 0x00: added eax=0x00000000 ebx=0x00000000 ecx=0x00000004 edx=0x00000000\n"
    );
    assert_eq!(
        d.removed_features()
            .iter()
            .map(|f| f.name)
            .collect::<Vec<_>>(),
        ["avx2"]
    );
    assert_eq!(
        d.added_features()
            .iter()
            .map(|f| f.name)
            .collect::<Vec<_>>(),
        ["svm"]
    );
    assert!(matches!(d.entries[2], EntryDiff::Added { .. }));
}

#[test]
fn indexed_flag_changes_are_reported() {
    let a = table(&[(4, 0, [1, 0, 0, 0])]);
    let mut b = a.clone();
    b.get_mut(CpuidKey::leaf(4)).unwrap().indexed = true;
    assert_eq!(
        diff(&a, &b).to_string(),
        "0x00000004 0x00: indexed false -> true\n"
    );
}

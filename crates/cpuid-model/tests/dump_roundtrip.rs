//! Property tests of the raw dump format: write then parse gives the same registers, and
//! the indexed flag follows the documented rule.

use cpuid_model::dump::{is_indexed_leaf, parse_raw, to_raw_string};
use cpuid_model::{CpuidEntry, CpuidKey, CpuidRegs, CpuidTable};
use proptest::prelude::*;

fn table() -> impl Strategy<Value = CpuidTable> {
    let leaf = prop_oneof![
        0u32..0x30,
        0x4000_0000u32..0x4000_0010,
        0x8000_0000u32..0x8000_0030,
        any::<u32>()
    ];
    let entry = (leaf, 0u32..0x120, any::<[u32; 4]>());
    proptest::collection::vec(entry, 0..40).prop_map(|v| {
        v.into_iter()
            .map(|(leaf, subleaf, [eax, ebx, ecx, edx])| {
                let indexed = is_indexed_leaf(leaf) || subleaf != 0;
                let subleaf = if indexed { subleaf } else { 0 };
                (
                    CpuidKey { leaf, subleaf },
                    CpuidEntry {
                        regs: CpuidRegs { eax, ebx, ecx, edx },
                        indexed,
                    },
                )
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn write_then_parse(tables in proptest::collection::vec(table(), 1..4)) {
        let pairs: Vec<(u32, &CpuidTable)> =
            tables.iter().enumerate().map(|(i, t)| (i as u32 * 7, t)).collect();
        let text = to_raw_string(&pairs);
        let back = parse_raw(&text).unwrap();
        prop_assert_eq!(back.len(), tables.len());
        for (i, cpu) in back.iter().enumerate() {
            prop_assert_eq!(cpu.index, Some(i as u32 * 7));
            let regs = |t: &CpuidTable| t.iter().map(|(k, e)| (*k, e.regs)).collect::<Vec<_>>();
            prop_assert_eq!(regs(&cpu.table), regs(&tables[i]));
            // A leaf written with subleaves other than 0 comes back indexed everywhere.
            for (k, e) in cpu.table.iter() {
                let multi = cpu.table.iter().any(|(o, _)| o.leaf == k.leaf && o.subleaf != 0);
                prop_assert_eq!(e.indexed, is_indexed_leaf(k.leaf) || multi);
            }
        }
        prop_assert_eq!(
            to_raw_string(&back.iter().map(|c| (c.index.unwrap(), &c.table)).collect::<Vec<_>>()),
            text
        );
    }

    #[test]
    fn parse_never_panics(s in "(CPU( [0-9]{1,3})?:\n|   0x[0-9a-f]{1,8} 0x[0-9a-f]{1,2}: eax=0x[0-9a-f]{1,9} ebx=0x0 ecx=0x0 edx=0x[0-9a-f]{0,8}\n|[ -~]{0,20}\n){0,8}") {
        let _ = parse_raw(&s);
    }
}

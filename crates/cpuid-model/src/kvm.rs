//! Conversion between [`CpuidTable`] and KVM's `kvm_cpuid2` (the `kvm_bindings::CpuId`
//! FAM wrapper used by `KVM_GET_SUPPORTED_CPUID` and `KVM_SET_CPUID2`).
//!
//! This is the only place of the crate that knows KVM's representation: the entry flag
//! `KVM_CPUID_FLAG_SIGNIFCANT_INDEX` maps to [`CpuidEntry::indexed`], and a table larger
//! than `KVM_MAX_CPUID_ENTRIES` is refused instead of truncated. The module makes no
//! system call; the caller runs the ioctl.

use kvm_bindings::{
    kvm_cpuid_entry2, CpuId, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, KVM_MAX_CPUID_ENTRIES,
};

use crate::{CpuidEntry, CpuidKey, CpuidRegs, CpuidTable};

/// Errors converting a table for KVM.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvmCpuidError {
    /// The table has more entries than one `KVM_SET_CPUID2` call accepts.
    #[error("cannot build a KVM CPUID array of {entries} entries: KVM accepts at most {max}")]
    TooManyEntries {
        /// Entries in the table.
        entries: usize,
        /// `KVM_MAX_CPUID_ENTRIES`.
        max: usize,
    },
}

/// Build the `kvm_cpuid2` array for `KVM_SET_CPUID2`, in key order.
pub fn to_kvm(table: &CpuidTable) -> Result<CpuId, KvmCpuidError> {
    if table.len() > KVM_MAX_CPUID_ENTRIES {
        return Err(KvmCpuidError::TooManyEntries {
            entries: table.len(),
            max: KVM_MAX_CPUID_ENTRIES,
        });
    }
    let entries: Vec<kvm_cpuid_entry2> = table
        .iter()
        .map(|(key, entry)| kvm_cpuid_entry2 {
            function: key.leaf,
            index: key.subleaf,
            flags: if entry.indexed {
                KVM_CPUID_FLAG_SIGNIFCANT_INDEX
            } else {
                0
            },
            eax: entry.regs.eax,
            ebx: entry.regs.ebx,
            ecx: entry.regs.ecx,
            edx: entry.regs.edx,
            padding: [0; 3],
        })
        .collect();
    // The length was checked above, so the wrapper cannot refuse it.
    CpuId::from_entries(&entries).map_err(|_| KvmCpuidError::TooManyEntries {
        entries: entries.len(),
        max: KVM_MAX_CPUID_ENTRIES,
    })
}

/// Read a `kvm_cpuid2` array (for example from `KVM_GET_SUPPORTED_CPUID`).
///
/// Entries without `KVM_CPUID_FLAG_SIGNIFCANT_INDEX` are stored under subleaf 0 whatever
/// their `index` field says, since KVM ignores ECX for them. When KVM reports the same
/// key twice, the last entry wins.
pub fn from_kvm(cpuid: &CpuId) -> CpuidTable {
    cpuid
        .as_slice()
        .iter()
        .map(|e| {
            let indexed = e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX != 0;
            let key = CpuidKey {
                leaf: e.function,
                subleaf: if indexed { e.index } else { 0 },
            };
            let regs = CpuidRegs {
                eax: e.eax,
                ebx: e.ebx,
                ecx: e.ecx,
                edx: e.edx,
            };
            (key, CpuidEntry { regs, indexed })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(eax: u32, indexed: bool) -> CpuidEntry {
        CpuidEntry {
            regs: CpuidRegs {
                eax,
                ebx: eax + 1,
                ecx: eax + 2,
                edx: eax + 3,
            },
            indexed,
        }
    }

    #[test]
    fn round_trip_keeps_flags_and_order() {
        let mut t = CpuidTable::new();
        t.insert(CpuidKey::leaf(0), entry(0xd, false));
        t.insert(CpuidKey::subleaf(0xb, 1), entry(5, true));
        t.insert(CpuidKey::subleaf(0xb, 0), entry(1, true));
        let k = to_kvm(&t).unwrap();
        let s = k.as_slice();
        assert_eq!(s.len(), 3);
        assert_eq!((s[1].function, s[1].index, s[1].flags), (0xb, 0, 1));
        assert_eq!((s[2].function, s[2].index, s[2].flags), (0xb, 1, 1));
        assert_eq!(s[0].flags, 0);
        assert_eq!(from_kvm(&k), t);
    }

    #[test]
    fn unindexed_entry_ignores_index_field() {
        let e = kvm_cpuid_entry2 {
            function: 1,
            index: 7,
            flags: 0,
            eax: 9,
            ..Default::default()
        };
        let t = from_kvm(&CpuId::from_entries(&[e]).unwrap());
        assert_eq!(t.regs(CpuidKey::leaf(1)).unwrap().eax, 9);
    }

    #[test]
    fn too_many_entries_is_refused() {
        let t: CpuidTable = (0..=KVM_MAX_CPUID_ENTRIES as u32)
            .map(|i| (CpuidKey::subleaf(0xd, i), entry(i, true)))
            .collect();
        assert_eq!(
            to_kvm(&t).unwrap_err().to_string(),
            "cannot build a KVM CPUID array of 257 entries: KVM accepts at most 256"
        );
        let mut ok = t.clone();
        ok.remove(CpuidKey::subleaf(0xd, 0));
        assert_eq!(to_kvm(&ok).unwrap().as_slice().len(), KVM_MAX_CPUID_ENTRIES);
    }
}

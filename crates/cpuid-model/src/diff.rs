//! Compare two CPUID tables leaf by leaf, naming feature bits.
//!
//! ```text
//! 0x00000001 0x00 eax: 0x000306c4 -> 0x00a10f11
//! 0x00000001 0x00 ecx: -avx +x2apic
//! 0x00000001 0x00 edx: +fpu (other bits 0x00000400 -> 0x00000000)
//! 0x00000007 0x00 ebx: -hle -rtm
//! 0x0000001f 0x00: removed eax=0x00000001 ebx=0x00000002 ecx=0x00000100 edx=0x00000000
//! ```
//!
//! `-feat` is a feature set in the first table and clear in the second, `+feat`
//! the reverse. Bits that no catalogued feature names are shown as raw values
//! of the register with the feature bits masked out.

use std::fmt;

use crate::features::{self, Feature};
use crate::table::{CpuidKey, CpuidRegs, CpuidTable, Reg};

/// The change of one register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegDiff {
    /// Register.
    pub reg: Reg,
    /// Value in the first table.
    pub old: u32,
    /// Value in the second table.
    pub new: u32,
    /// Features set in the first table only.
    pub removed: Vec<&'static Feature>,
    /// Features set in the second table only.
    pub added: Vec<&'static Feature>,
    /// Mask of the bits no catalogued feature names.
    pub other_mask: u32,
}

impl RegDiff {
    /// True when bits outside the catalogue changed.
    pub fn other_bits_changed(&self) -> bool {
        (self.old ^ self.new) & self.other_mask != 0
    }
}

/// The difference at one leaf/subleaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryDiff {
    /// Only in the first table.
    Removed {
        /// Leaf/subleaf.
        key: CpuidKey,
        /// Its registers.
        regs: CpuidRegs,
    },
    /// Only in the second table.
    Added {
        /// Leaf/subleaf.
        key: CpuidKey,
        /// Its registers.
        regs: CpuidRegs,
    },
    /// In both, with different contents.
    Changed {
        /// Leaf/subleaf.
        key: CpuidKey,
        /// Registers that differ, in EAX..EDX order.
        regs: Vec<RegDiff>,
        /// `(old, new)` when the indexed flag differs.
        indexed: Option<(bool, bool)>,
    },
}

/// All differences between two tables, in key order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpuidDiff {
    /// One item per differing leaf/subleaf.
    pub entries: Vec<EntryDiff>,
}

impl CpuidDiff {
    /// True when the tables are equal.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Features set in the first table and clear (or absent) in the second.
    pub fn removed_features(&self) -> Vec<&'static Feature> {
        self.features(true)
    }

    /// Features clear (or absent) in the first table and set in the second.
    pub fn added_features(&self) -> Vec<&'static Feature> {
        self.features(false)
    }

    fn features(&self, removed: bool) -> Vec<&'static Feature> {
        let mut out = Vec::new();
        for e in &self.entries {
            match e {
                EntryDiff::Changed { regs, .. } => {
                    for r in regs {
                        out.extend(if removed { &r.removed } else { &r.added });
                    }
                }
                EntryDiff::Removed { key, regs } if removed => out.extend(set_at(*key, regs)),
                EntryDiff::Added { key, regs } if !removed => out.extend(set_at(*key, regs)),
                _ => {}
            }
        }
        out
    }
}

fn set_at(key: CpuidKey, regs: &CpuidRegs) -> impl Iterator<Item = &'static Feature> + '_ {
    features::all()
        .iter()
        .filter(move |f| f.key() == key && regs.get(f.reg) & f.mask() != 0)
}

/// Compare `a` (before) with `b` (after).
pub fn diff(a: &CpuidTable, b: &CpuidTable) -> CpuidDiff {
    let mut entries = Vec::new();
    let mut keys: Vec<CpuidKey> = a.iter().map(|(k, _)| *k).collect();
    keys.extend(b.iter().map(|(k, _)| *k));
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        match (a.get(key), b.get(key)) {
            (Some(x), None) => entries.push(EntryDiff::Removed { key, regs: x.regs }),
            (None, Some(y)) => entries.push(EntryDiff::Added { key, regs: y.regs }),
            (Some(x), Some(y)) if x != y => {
                let regs = Reg::ALL
                    .iter()
                    .filter(|r| x.regs.get(**r) != y.regs.get(**r))
                    .map(|r| reg_diff(key, *r, x.regs.get(*r), y.regs.get(*r)))
                    .collect();
                let indexed = (x.indexed != y.indexed).then_some((x.indexed, y.indexed));
                entries.push(EntryDiff::Changed { key, regs, indexed });
            }
            _ => {}
        }
    }
    CpuidDiff { entries }
}

fn reg_diff(key: CpuidKey, reg: Reg, old: u32, new: u32) -> RegDiff {
    let named: Vec<&'static Feature> = features::in_register(key, reg).collect();
    RegDiff {
        reg,
        old,
        new,
        removed: named
            .iter()
            .copied()
            .filter(|f| old & f.mask() != 0 && new & f.mask() == 0)
            .collect(),
        added: named
            .iter()
            .copied()
            .filter(|f| old & f.mask() == 0 && new & f.mask() != 0)
            .collect(),
        other_mask: !features::register_mask(key, reg),
    }
}

fn write_regs(f: &mut fmt::Formatter<'_>, r: &CpuidRegs) -> fmt::Result {
    write!(
        f,
        "eax=0x{:08x} ebx=0x{:08x} ecx=0x{:08x} edx=0x{:08x}",
        r.eax, r.ebx, r.ecx, r.edx
    )
}

impl fmt::Display for EntryDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryDiff::Removed { key, regs } => {
                write!(f, "{key}: removed ")?;
                write_regs(f, regs)
            }
            EntryDiff::Added { key, regs } => {
                write!(f, "{key}: added ")?;
                write_regs(f, regs)
            }
            EntryDiff::Changed { key, regs, indexed } => {
                let mut first = true;
                for r in regs {
                    if !first {
                        writeln!(f)?;
                    }
                    first = false;
                    write!(f, "{key} {}:", r.reg)?;
                    let named = !r.removed.is_empty() || !r.added.is_empty();
                    for feat in &r.removed {
                        write!(f, " -{}", feat.name)?;
                    }
                    for feat in &r.added {
                        write!(f, " +{}", feat.name)?;
                    }
                    if r.other_bits_changed() {
                        let (o, n) = (r.old & r.other_mask, r.new & r.other_mask);
                        if named {
                            write!(f, " (other bits 0x{o:08x} -> 0x{n:08x})")?;
                        } else if r.other_mask == u32::MAX {
                            write!(f, " 0x{:08x} -> 0x{:08x}", r.old, r.new)?;
                        } else {
                            write!(f, " other bits 0x{o:08x} -> 0x{n:08x}")?;
                        }
                    }
                }
                if let Some((o, n)) = indexed {
                    if !first {
                        writeln!(f)?;
                    }
                    write!(f, "{key}: indexed {o} -> {n}")?;
                }
                Ok(())
            }
        }
    }
}

/// One line per changed register or added/removed entry; nothing when equal.
impl fmt::Display for CpuidDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.entries {
            writeln!(f, "{e}")?;
        }
        Ok(())
    }
}

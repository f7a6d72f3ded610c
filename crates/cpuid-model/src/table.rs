//! The CPUID table: typed keys (leaf, subleaf) and register values.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A CPUID input: leaf (EAX) and subleaf (ECX).
///
/// Leaves that do not take a subleaf are stored with subleaf 0 and
/// `indexed == false` in their [`CpuidEntry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CpuidKey {
    /// EAX input.
    pub leaf: u32,
    /// ECX input.
    pub subleaf: u32,
}

impl CpuidKey {
    /// Key of a leaf without subleaves.
    pub const fn leaf(leaf: u32) -> Self {
        Self { leaf, subleaf: 0 }
    }
    /// Key of a leaf and subleaf.
    pub const fn subleaf(leaf: u32, subleaf: u32) -> Self {
        Self { leaf, subleaf }
    }
}

impl fmt::Display for CpuidKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:08x} 0x{:02x}", self.leaf, self.subleaf)
    }
}

/// The four output registers of one CPUID query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct CpuidRegs {
    /// EAX output.
    pub eax: u32,
    /// EBX output.
    pub ebx: u32,
    /// ECX output.
    pub ecx: u32,
    /// EDX output.
    pub edx: u32,
}

/// Names one output register, for feature bits and diffs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Reg {
    /// EAX.
    Eax,
    /// EBX.
    Ebx,
    /// ECX.
    Ecx,
    /// EDX.
    Edx,
}

impl Reg {
    /// All four, in output order.
    pub const ALL: [Reg; 4] = [Reg::Eax, Reg::Ebx, Reg::Ecx, Reg::Edx];
}

impl fmt::Display for Reg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reg::Eax => "eax",
            Reg::Ebx => "ebx",
            Reg::Ecx => "ecx",
            Reg::Edx => "edx",
        })
    }
}

impl CpuidRegs {
    /// Value of one register.
    pub fn get(&self, r: Reg) -> u32 {
        match r {
            Reg::Eax => self.eax,
            Reg::Ebx => self.ebx,
            Reg::Ecx => self.ecx,
            Reg::Edx => self.edx,
        }
    }
    /// Mutable access to one register.
    pub fn get_mut(&mut self, r: Reg) -> &mut u32 {
        match r {
            Reg::Eax => &mut self.eax,
            Reg::Ebx => &mut self.ebx,
            Reg::Ecx => &mut self.ecx,
            Reg::Edx => &mut self.edx,
        }
    }
}

/// One table entry: the registers and whether the leaf is indexed by ECX
/// (KVM's `KVM_CPUID_FLAG_SIGNIFCANT_INDEX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct CpuidEntry {
    /// Output registers.
    pub regs: CpuidRegs,
    /// ECX selects a subleaf.
    pub indexed: bool,
}

/// A CPUID table, ordered by key. This is what one vCPU sees (or what KVM supports).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CpuidTable {
    entries: BTreeMap<CpuidKey, CpuidEntry>,
}

impl CpuidTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    /// True when the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// Entry for a key.
    pub fn get(&self, key: CpuidKey) -> Option<&CpuidEntry> {
        self.entries.get(&key)
    }
    /// Mutable entry for a key.
    pub fn get_mut(&mut self, key: CpuidKey) -> Option<&mut CpuidEntry> {
        self.entries.get_mut(&key)
    }
    /// Registers for a key, if present.
    pub fn regs(&self, key: CpuidKey) -> Option<CpuidRegs> {
        self.entries.get(&key).map(|e| e.regs)
    }
    /// Insert or replace an entry.
    pub fn insert(&mut self, key: CpuidKey, entry: CpuidEntry) {
        self.entries.insert(key, entry);
    }
    /// Remove an entry.
    pub fn remove(&mut self, key: CpuidKey) -> Option<CpuidEntry> {
        self.entries.remove(&key)
    }
    /// Remove every subleaf of a leaf.
    pub fn remove_leaf(&mut self, leaf: u32) {
        self.entries.retain(|k, _| k.leaf != leaf);
    }
    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&CpuidKey, &CpuidEntry)> {
        self.entries.iter()
    }
    /// Mutable entries in key order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&CpuidKey, &mut CpuidEntry)> {
        self.entries.iter_mut()
    }
    /// Keep only the entries for which `f` returns true.
    pub fn retain(&mut self, f: impl FnMut(&CpuidKey, &mut CpuidEntry) -> bool) {
        self.entries.retain(f);
    }
    /// The 12-byte vendor string from leaf 0 (EBX, EDX, ECX), if present.
    pub fn vendor(&self) -> Option<[u8; 12]> {
        let r = self.regs(CpuidKey::leaf(0))?;
        let mut v = [0u8; 12];
        v[0..4].copy_from_slice(&r.ebx.to_le_bytes());
        v[4..8].copy_from_slice(&r.edx.to_le_bytes());
        v[8..12].copy_from_slice(&r.ecx.to_le_bytes());
        Some(v)
    }
}

impl FromIterator<(CpuidKey, CpuidEntry)> for CpuidTable {
    fn from_iter<I: IntoIterator<Item = (CpuidKey, CpuidEntry)>>(iter: I) -> Self {
        Self {
            entries: iter.into_iter().collect(),
        }
    }
}

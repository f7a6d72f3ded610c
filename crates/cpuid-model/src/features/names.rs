//! Looking features up by name: the canonical name, QEMU's name or an alias, in any
//! case and with `-`, `.` and `_` interchangeable, and the "did you mean" hint for a
//! name that is none of them.

use std::sync::OnceLock;

use hashbrown::HashTable;

use super::{Feature, CATALOGUE};

/// Fold a user spelling to the lookup form: lower case, `-` and `.` as `_`.
pub fn normalize_name(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '-' | '.' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// The byte `normalize_name` maps `b` to.
fn normalize_byte(b: u8) -> u8 {
    match b {
        b'-' | b'.' => b'_',
        b => b.to_ascii_lowercase(),
    }
}

/// True when `a` and `b` are the same name once normalised.
fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .all(|(x, y)| normalize_byte(x) == normalize_byte(y))
}

/// FNV-1a over the normalised bytes of `name`: the index hashes names as they are written,
/// without building normalised copies.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(normalize_byte(b))).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One spelling in [`index`]: the feature's place in [`CATALOGUE`] and which of its names
/// (0: canonical, 1: QEMU's, 2..: the aliases). Four bytes instead of two references.
type Spelling = (u16, u8);

/// The name and feature a [`Spelling`] stands for.
fn spelling(&(i, slot): &Spelling) -> (&'static str, &'static Feature) {
    let f = &CATALOGUE[usize::from(i)];
    let name = match slot {
        0 => f.name,
        1 => f.qemu_name,
        n => f.aliases[usize::from(n) - 2],
    };
    (name, f)
}

/// Every canonical name, QEMU name and alias, hashed as normalised. Built on first use
/// without copying a name: a VMM resolving one CPU model looks up a few dozen names, and a
/// map of normalised `String`s cost it more than the rest of its start-up.
fn index() -> &'static HashTable<Spelling> {
    static INDEX: OnceLock<HashTable<Spelling>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let spellings = CATALOGUE.iter().map(|f| 2 + f.aliases.len()).sum();
        let mut table: HashTable<Spelling> = HashTable::with_capacity(spellings);
        let mut insert = |entry: Spelling| {
            let (name, _) = spelling(&entry);
            let hash = name_hash(name);
            if table
                .find(hash, |e| same_name(spelling(e).0, name))
                .is_none()
            {
                table.insert_unique(hash, entry, |e| name_hash(spelling(e).0));
            }
        };
        let places = (0..).zip(CATALOGUE);
        // Canonical names win over another feature's alias.
        for (i, _) in places.clone() {
            insert((i, 0));
        }
        for (i, f) in places {
            for slot in 1..2 + f.aliases.len() {
                insert((i, slot as u8));
            }
        }
        table
    })
}

/// The feature `index` holds under `name` (any spelling).
fn lookup(name: &str) -> Option<&'static Feature> {
    index()
        .find(name_hash(name), |e| same_name(spelling(e).0, name))
        .map(|e| spelling(e).1)
}

/// Look a feature up by its canonical name, QEMU name or alias
/// (case-insensitive; `-`, `.` and `_` are interchangeable).
pub fn by_name(name: &str) -> Option<&'static Feature> {
    let prefix = LINUX_KVM_PREFIX.len();
    let linux = (name.len() > prefix
        && name.is_char_boundary(prefix)
        && same_name(&name[..prefix], LINUX_KVM_PREFIX))
    .then(|| &name[prefix..]);
    let found = lookup(name).or_else(|| lookup(linux?));
    found.filter(|f| linux.is_none() || f.is_kvm_paravirt())
}

/// Prefix of Linux's names of the paravirtual features (`KVM_FEATURE_PV_SEND_IPI`).
const LINUX_KVM_PREFIX: &str = "kvm_feature_";

/// The known name closest to `name` (edit distance), if one is close enough
/// to be a plausible typo. Used for "did you mean" hints.
pub fn suggest(name: &str) -> Option<&'static str> {
    let wanted = normalize_name(name);
    let limit = (wanted.len() / 3).clamp(1, 3);
    CATALOGUE
        .iter()
        .flat_map(|f| {
            std::iter::once((f.name, f.name))
                .chain(std::iter::once((f.qemu_name, f.name)))
                .chain(f.aliases.iter().map(move |a| (*a, f.name)))
        })
        .map(|(spelling, canonical)| (edit_distance(&wanted, &normalize_name(spelling)), canonical))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, canonical)| canonical)
}

/// Levenshtein distance over bytes (names are ASCII).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

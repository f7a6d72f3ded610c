//! Looking features up by name: the canonical name, QEMU's name or an alias, in any
//! case and with `-`, `.` and `_` interchangeable, and the "did you mean" hint for a
//! name that is none of them.

use std::cmp::Ordering;

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
const fn normalize_byte(b: u8) -> u8 {
    match b {
        b'-' | b'.' => b'_',
        b => b.to_ascii_lowercase(),
    }
}

/// `a` against `b` once both are normalised, byte by byte (then shorter first).
const fn compare_names(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut i = 0;
    while i < a.len() && i < b.len() {
        let (x, y) = (normalize_byte(a[i]), normalize_byte(b[i]));
        if x != y {
            return if x < y {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        i += 1;
    }
    if a.len() == b.len() {
        Ordering::Equal
    } else if a.len() < b.len() {
        Ordering::Less
    } else {
        Ordering::Greater
    }
}

/// One spelling in [`INDEX`]: the feature's place in [`CATALOGUE`] and which of its names
/// (0: canonical, 1: QEMU's, 2..: the aliases). Four bytes instead of two references.
type Spelling = (u16, u8);

/// The name a [`Spelling`] stands for.
const fn spelled(&(i, slot): &Spelling) -> &'static str {
    let f = &CATALOGUE[i as usize];
    match slot {
        0 => f.name,
        1 => f.qemu_name,
        n => f.aliases[n as usize - 2],
    }
}

/// How many spellings the catalogue has: two names per feature and its aliases.
const SPELLINGS: usize = {
    let mut n = 0;
    let mut i = 0;
    while i < CATALOGUE.len() {
        n += 2 + CATALOGUE[i].aliases.len();
        i += 1;
    }
    n
};

/// Every canonical name, QEMU name and alias, sorted by normalised name when the crate is
/// compiled: a lookup is a binary search, with nothing to build at run time. Among equal
/// names the canonical ones come first (in catalogue order), then the others in catalogue
/// order, and a lookup takes the first: a canonical name is never shadowed by another
/// feature's alias.
static INDEX: [Spelling; SPELLINGS] = {
    let mut order = [(0u16, 0u8); SPELLINGS];
    let mut n = 0;
    let mut i = 0;
    while i < CATALOGUE.len() {
        order[n] = (i as u16, 0);
        n += 1;
        i += 1;
    }
    i = 0;
    while i < CATALOGUE.len() {
        let mut slot = 1;
        while slot < 2 + CATALOGUE[i].aliases.len() {
            order[n] = (i as u16, slot as u8);
            n += 1;
            slot += 1;
        }
        i += 1;
    }
    merge_sort(order)
};

/// A stable sort of spellings by normalised name (bottom-up merge sort: `const` code has
/// no `sort_by`).
const fn merge_sort(mut items: [Spelling; SPELLINGS]) -> [Spelling; SPELLINGS] {
    let mut scratch = [(0u16, 0u8); SPELLINGS];
    let mut width = 1;
    while width < SPELLINGS {
        let mut lo = 0;
        while lo < SPELLINGS {
            let mid = min(lo + width, SPELLINGS);
            let hi = min(lo + 2 * width, SPELLINGS);
            let (mut a, mut b, mut out) = (lo, mid, lo);
            while out < hi {
                let take_a = b >= hi
                    || (a < mid
                        && !matches!(
                            compare_names(spelled(&items[b]), spelled(&items[a])),
                            Ordering::Less
                        ));
                if take_a {
                    scratch[out] = items[a];
                    a += 1;
                } else {
                    scratch[out] = items[b];
                    b += 1;
                }
                out += 1;
            }
            lo = hi;
        }
        let swap = items;
        items = scratch;
        scratch = swap;
        width *= 2;
    }
    items
}

const fn min(a: usize, b: usize) -> usize {
    if a < b {
        a
    } else {
        b
    }
}

/// The feature [`INDEX`] holds under `name` (any spelling).
fn lookup(name: &str) -> Option<&'static Feature> {
    let first = INDEX.partition_point(|e| compare_names(spelled(e), name) == Ordering::Less);
    let found = INDEX.get(first)?;
    (compare_names(spelled(found), name) == Ordering::Equal)
        .then(|| &CATALOGUE[usize::from(found.0)])
}

/// Look a feature up by its canonical name, QEMU name or alias
/// (case-insensitive; `-`, `.` and `_` are interchangeable).
pub fn by_name(name: &str) -> Option<&'static Feature> {
    let prefix = LINUX_KVM_PREFIX.len();
    let linux = (name.len() > prefix
        && name.is_char_boundary(prefix)
        && compare_names(&name[..prefix], LINUX_KVM_PREFIX) == Ordering::Equal)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_index_is_std_stable_sort_of_the_spellings() {
        let mut want: Vec<Spelling> = (0..CATALOGUE.len()).map(|i| (i as u16, 0)).collect();
        for (i, f) in CATALOGUE.iter().enumerate() {
            want.extend((1..2 + f.aliases.len()).map(|slot| (i as u16, slot as u8)));
        }
        want.sort_by_key(|s| normalize_name(spelled(s)));
        assert_eq!(INDEX.as_slice(), want.as_slice());
    }

    #[test]
    fn names_compare_as_their_normalised_forms() {
        for (a, b) in [
            ("AVX-512F", "avx512f"),
            ("sse4.1", "sse4_2"),
            ("a", "ab"),
            ("x", "X"),
        ] {
            assert_eq!(
                compare_names(a, b),
                normalize_name(a).cmp(&normalize_name(b)),
                "{a} vs {b}"
            );
        }
    }
}

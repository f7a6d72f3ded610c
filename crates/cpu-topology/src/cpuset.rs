//! Host CPU sets and the grammars people write them in.
//!
//! [`HostCpuSet`] is a bitmap of [`HostCpuId`]s. It parses and formats:
//!
//! | grammar | example | parse | format |
//! |---|---|---|---|
//! | kernel cpu-list (`isolcpus=`, `cpuset.cpus`, sysfs `online`) | `0-3,8`, `100-2000:2/25` | [`HostCpuSet::parse_cpu_list`] | [`HostCpuSet::to_cpu_list`], `Display` |
//! | libvirt cpuset (`<vcpupin cpuset=>`, `<emulatorpin>`) | `1-4,^3,6` | [`HostCpuSet::parse_libvirt`], [`HostCpuSet::parse_libvirt_or_all`] (`r`) | [`HostCpuSet::to_cpu_list`] |
//! | taskset mask | `0x32`, `32` | [`HostCpuSet::parse_hex_mask`] | [`HostCpuSet::to_hex_mask`] |
//! | `/proc/<pid>/status` `Cpus_allowed` | `ff,ffffffff` | [`HostCpuSet::parse_hex_mask`] | [`HostCpuSet::to_hex_words`] |
//! | `virsh vcpuinfo` affinity | `yy-y` | [`HostCpuSet::parse_affinity_string`] | [`HostCpuSet::to_affinity_string`] |
//!
//! Every parser takes a `limit`: the number of CPU ids the caller accepts (ids must be below
//! it), typically [`MAX_HOST_CPUS`] or the host's possible-CPU count. A parser never returns an
//! empty set: a string that selects no CPU is [`CpuSetError::EmptySet`].
//!
//! Differences from the originals, on purpose:
//! * cpu-list accepts the stride form `A-B:S` (every S-th CPU, the same as `A-B:1/S`), which
//!   the kernel itself does not; the kernel's `all` and `N` keywords are not accepted, because
//!   they depend on the kernel's `nr_cpu_ids`.
//! * libvirt's `^A-B` is an error, as in libvirt's own parser: `^` removes one CPU.

use std::fmt::{self, Write as _};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Linux's largest `NR_CPUS` on x86-64 (`CONFIG_MAXSMP`): a sensible parse limit when the
/// host's own count is not known.
pub const MAX_HOST_CPUS: u32 = 8192;

/// Largest limit a parser honours; a larger `limit` argument is treated as this value, so a
/// caller cannot make a parser allocate without bound.
pub const LIMIT_CEILING: u32 = 1 << 22;

/// A host (physical or host-logical) CPU number, as in `/sys/devices/system/cpu/cpuN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HostCpuId(pub u32);

impl fmt::Display for HostCpuId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u32> for HostCpuId {
    fn from(v: u32) -> Self {
        HostCpuId(v)
    }
}

/// Why a CPU-set string was refused. Each message is one line and names the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpuSetError {
    /// The string selects no CPU (empty input, `^`-removals of everything, a zero mask).
    #[error("CPU set `{input}` selects no CPU")]
    EmptySet {
        /// The input, trimmed.
        input: String,
    },
    /// A CPU at or above the caller's limit.
    #[error("CPU {cpu} is out of range: the limit is {limit} CPUs (0-{last})", last = limit.saturating_sub(1))]
    OutOfRange {
        /// The CPU number that was asked for.
        cpu: u64,
        /// The caller's limit (number of valid ids).
        limit: u32,
    },
    /// A range whose start is above its end.
    #[error("reversed range `{start}-{end}`: the start is above the end")]
    ReversedRange {
        /// Range start.
        start: u32,
        /// Range end.
        end: u32,
    },
    /// A stride of zero, or a group whose used size is zero, above the group size, or a
    /// group size of zero.
    #[error("bad stride or group `{token}`: {reason}")]
    BadGroup {
        /// The region as written.
        token: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// libvirt's `^` applied to a range.
    #[error("`^` removes a single CPU, not a range: `{token}`")]
    NegatedRange {
        /// The region as written.
        token: String,
    },
    /// A number too large for 32 bits.
    #[error("number `{digits}` is too large")]
    Overflow {
        /// The digits as written.
        digits: String,
    },
    /// Anything else the grammar does not allow.
    #[error("unexpected {found} at offset {offset} in `{input}`: expected {expected}")]
    Syntax {
        /// The input, trimmed.
        input: String,
        /// Byte offset of the problem.
        offset: usize,
        /// What was found (`'x'` or `end of input`).
        found: String,
        /// What the grammar wanted there.
        expected: &'static str,
    },
}

/// A set of host CPUs, backed by a bitmap of 64-bit words (bit `n` of word `n / 64`).
///
/// Trailing zero words are never stored, so two equal sets always compare equal. `Display`
/// and serde use the kernel cpu-list form (`0-3,8`); serde accepts the empty string as the
/// empty set.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct HostCpuSet {
    words: Vec<u64>,
}

impl fmt::Debug for HostCpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostCpuSet({})", self.to_cpu_list())
    }
}

impl fmt::Display for HostCpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_cpu_list())
    }
}

impl Serialize for HostCpuSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_cpu_list())
    }
}

impl<'de> Deserialize<'de> for HostCpuSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim().is_empty() {
            return Ok(HostCpuSet::new());
        }
        HostCpuSet::parse_cpu_list(&text, LIMIT_CEILING).map_err(serde::de::Error::custom)
    }
}

impl FromIterator<HostCpuId> for HostCpuSet {
    fn from_iter<I: IntoIterator<Item = HostCpuId>>(iter: I) -> Self {
        let mut set = HostCpuSet::new();
        for cpu in iter {
            set.insert(cpu);
        }
        set
    }
}

impl HostCpuSet {
    /// The empty set.
    pub fn new() -> Self {
        HostCpuSet { words: Vec::new() }
    }

    /// CPUs `0..count`.
    pub fn first_n(count: u32) -> Self {
        let mut set = HostCpuSet::new();
        if count > 0 {
            set.insert_range(0, count - 1);
        }
        set
    }

    /// CPUs `start..=end` (empty when `start > end`).
    pub fn from_range(start: u32, end: u32) -> Self {
        let mut set = HostCpuSet::new();
        if start <= end {
            set.insert_range(start, end);
        }
        set
    }

    /// A set holding one CPU.
    pub fn single(cpu: HostCpuId) -> Self {
        let mut set = HostCpuSet::new();
        set.insert(cpu);
        set
    }

    fn trim(&mut self) {
        while self.words.last() == Some(&0) {
            self.words.pop();
        }
    }

    /// Adds a CPU; returns whether it was new.
    pub fn insert(&mut self, cpu: HostCpuId) -> bool {
        let (w, b) = ((cpu.0 / 64) as usize, cpu.0 % 64);
        if self.words.len() <= w {
            self.words.resize(w + 1, 0);
        }
        let was = self.words[w] & (1 << b) != 0;
        self.words[w] |= 1 << b;
        !was
    }

    fn insert_range(&mut self, start: u32, end: u32) {
        for cpu in start..=end {
            self.insert(HostCpuId(cpu));
        }
    }

    /// Removes a CPU; returns whether it was present.
    pub fn remove(&mut self, cpu: HostCpuId) -> bool {
        let (w, b) = ((cpu.0 / 64) as usize, cpu.0 % 64);
        let Some(word) = self.words.get_mut(w) else {
            return false;
        };
        let was = *word & (1 << b) != 0;
        *word &= !(1 << b);
        self.trim();
        was
    }

    /// Whether the CPU is in the set.
    pub fn contains(&self, cpu: HostCpuId) -> bool {
        let (w, b) = ((cpu.0 / 64) as usize, cpu.0 % 64);
        self.words.get(w).is_some_and(|word| word & (1 << b) != 0)
    }

    /// Number of CPUs in the set.
    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Lowest CPU of the set.
    pub fn first(&self) -> Option<HostCpuId> {
        self.iter().next()
    }

    /// Highest CPU of the set.
    pub fn last(&self) -> Option<HostCpuId> {
        let w = self.words.len().checked_sub(1)?;
        let word = self.words[w];
        Some(HostCpuId(w as u32 * 64 + 63 - word.leading_zeros()))
    }

    /// CPUs in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = HostCpuId> + '_ {
        self.words.iter().enumerate().flat_map(|(w, &word)| {
            (0..64u32)
                .filter(move |b| word & (1u64 << b) != 0)
                .map(move |b| HostCpuId(w as u32 * 64 + b))
        })
    }

    fn zip_words(&self, other: &Self, op: impl Fn(u64, u64) -> u64) -> Self {
        let n = self.words.len().max(other.words.len());
        let get = |v: &Vec<u64>, i: usize| v.get(i).copied().unwrap_or(0);
        let mut set = HostCpuSet {
            words: (0..n)
                .map(|i| op(get(&self.words, i), get(&other.words, i)))
                .collect(),
        };
        set.trim();
        set
    }

    /// CPUs in either set.
    pub fn union(&self, other: &Self) -> Self {
        self.zip_words(other, |a, b| a | b)
    }

    /// CPUs in both sets.
    pub fn intersection(&self, other: &Self) -> Self {
        self.zip_words(other, |a, b| a & b)
    }

    /// CPUs of `self` that are not in `other`.
    pub fn difference(&self, other: &Self) -> Self {
        self.zip_words(other, |a, b| a & !b)
    }

    /// Whether every CPU of `self` is in `other`.
    pub fn is_subset(&self, other: &Self) -> bool {
        self.difference(other).is_empty()
    }

    /// Whether the sets share a CPU.
    pub fn intersects(&self, other: &Self) -> bool {
        !self.intersection(other).is_empty()
    }

    /// Maximal runs of consecutive CPUs, as `(start, end)` inclusive.
    pub fn ranges(&self) -> Vec<(u32, u32)> {
        let mut out: Vec<(u32, u32)> = Vec::new();
        for HostCpuId(cpu) in self.iter() {
            match out.last_mut() {
                Some((_, end)) if *end + 1 == cpu => *end = cpu,
                _ => out.push((cpu, cpu)),
            }
        }
        out
    }

    /// The kernel's compact cpu-list form: `0-3,8`; `""` for the empty set.
    pub fn to_cpu_list(&self) -> String {
        let mut s = String::new();
        for (i, (a, b)) in self.ranges().into_iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            // Writing to a String cannot fail.
            let _ = if a == b {
                write!(s, "{a}")
            } else {
                write!(s, "{a}-{b}")
            };
        }
        s
    }

    /// taskset's mask form: lowercase hex without `0x` or leading zeros (`32` for {1,4,5});
    /// `"0"` for the empty set.
    pub fn to_hex_mask(&self) -> String {
        let mut s = String::new();
        for (i, word) in self.words.iter().rev().enumerate() {
            let _ = if i == 0 {
                write!(s, "{word:x}")
            } else {
                write!(s, "{word:016x}")
            };
        }
        if s.is_empty() {
            s.push('0');
        }
        s
    }

    /// The `/proc/<pid>/status` `Cpus_allowed` form: comma-separated 32-bit words, most
    /// significant first, the first without leading zeros, the others 8 digits
    /// (`ff,ffffffff`); `"0"` for the empty set.
    pub fn to_hex_words(&self) -> String {
        let mut halves: Vec<u32> = self
            .words
            .iter()
            .flat_map(|w| [*w as u32, (*w >> 32) as u32])
            .collect();
        while halves.len() > 1 && halves.last() == Some(&0) {
            halves.pop();
        }
        let mut s = String::new();
        for (i, half) in halves.iter().rev().enumerate() {
            let _ = if i == 0 {
                write!(s, "{half:x}")
            } else {
                write!(s, ",{half:08x}")
            };
        }
        if s.is_empty() {
            s.push('0');
        }
        s
    }

    /// `virsh vcpuinfo`'s affinity string: one `y` (in the set) or `-` per CPU from 0. The
    /// string is `width` characters long, or longer when the set holds a CPU at or above
    /// `width` (so no CPU is ever hidden).
    pub fn to_affinity_string(&self, width: u32) -> String {
        let len = self.last().map_or(0, |c| c.0 + 1).max(width);
        (0..len)
            .map(|c| {
                if self.contains(HostCpuId(c)) {
                    'y'
                } else {
                    '-'
                }
            })
            .collect()
    }

    /// Parses a kernel cpu-list (`bitmap_parselist` grammar): regions `N`, `A-B`,
    /// `A-B:used/group` (in each group of `group` CPUs from `A`, the first `used`), plus the
    /// stride form `A-B:S`. Regions are separated by commas or whitespace, as in the kernel.
    pub fn parse_cpu_list(input: &str, limit: u32) -> Result<Self, CpuSetError> {
        let limit = limit.min(LIMIT_CEILING);
        let mut p = Parser::new(input);
        let mut set = HostCpuSet::new();
        loop {
            while matches!(p.peek(), Some(b',') | Some(b' ' | b'\t' | b'\n')) {
                p.pos += 1;
            }
            if p.peek().is_none() {
                break;
            }
            let region_start = p.pos;
            let start = p.number()?;
            let is_range = p.eat(b'-');
            let end = if is_range { p.number()? } else { start };
            // As in the kernel, a group or stride only follows a range.
            let (used, group) = if is_range && p.eat(b':') {
                let first = p.number()?;
                if p.eat(b'/') {
                    (first, p.number()?)
                } else {
                    (1, first)
                }
            } else {
                (1, 1)
            };
            match p.peek() {
                None | Some(b',' | b' ' | b'\t' | b'\n') => {}
                Some(_) => return Err(p.unexpected("`,`, `-`, `:` or `/`")),
            }
            let token = &p.text[region_start..p.pos];
            if start > end {
                return Err(CpuSetError::ReversedRange { start, end });
            }
            if group == 0 {
                return Err(bad_group(token, "the group size (or stride) is 0"));
            }
            if used == 0 {
                return Err(bad_group(token, "the used size is 0"));
            }
            if used > group {
                return Err(bad_group(token, "the used size is above the group size"));
            }
            check_limit(end, limit)?;
            for cpu in start..=end {
                if (cpu - start) % group < used {
                    set.insert(HostCpuId(cpu));
                }
            }
        }
        set.non_empty(input)
    }

    /// Parses a libvirt cpuset: `N`, `A-B` and `^N` separated by commas (spaces allowed around
    /// tokens); `^N` removes N from what was built so far (`1-4,^3,6` = {1,2,4,6}).
    pub fn parse_libvirt(input: &str, limit: u32) -> Result<Self, CpuSetError> {
        let limit = limit.min(LIMIT_CEILING);
        let mut p = Parser::new(input);
        let mut set = HostCpuSet::new();
        if p.peek().is_none() {
            return set.non_empty(input);
        }
        loop {
            p.skip_spaces();
            let token_start = p.pos;
            let negate = p.eat(b'^');
            let start = p.number()?;
            p.skip_spaces();
            if p.eat(b'-') {
                p.skip_spaces();
                let end = p.number()?;
                if negate {
                    return Err(CpuSetError::NegatedRange {
                        token: p.text[token_start..p.pos].to_string(),
                    });
                }
                if start > end {
                    return Err(CpuSetError::ReversedRange { start, end });
                }
                check_limit(end, limit)?;
                set.insert_range(start, end);
                p.skip_spaces();
            } else {
                check_limit(start, limit)?;
                if negate {
                    set.remove(HostCpuId(start));
                } else {
                    set.insert(HostCpuId(start));
                }
            }
            match p.peek() {
                None => break,
                Some(b',') => {
                    p.pos += 1;
                    p.skip_spaces();
                    // libvirt accepts a trailing comma.
                    if p.peek().is_none() {
                        break;
                    }
                }
                Some(_) => return Err(p.unexpected("`,` or `-`")),
            }
        }
        set.non_empty(input)
    }

    /// Like [`HostCpuSet::parse_libvirt`], but also accepts `virsh vcpupin`'s `r` (all host
    /// CPUs), which becomes `0..host_cpus`. The limit is `host_cpus`.
    pub fn parse_libvirt_or_all(input: &str, host_cpus: u32) -> Result<Self, CpuSetError> {
        if input.trim() == "r" {
            return HostCpuSet::first_n(host_cpus.min(LIMIT_CEILING)).non_empty(input);
        }
        HostCpuSet::parse_libvirt(input, host_cpus)
    }

    /// Parses a hex affinity mask: taskset's form (`0x32`, `32`, any length) or the
    /// comma-separated 32-bit words of `Cpus_allowed` (`ff,ffffffff`; each word 1 to 8 hex
    /// digits, as the kernel's `bitmap_parse` takes them). Bit `n` is CPU `n`.
    pub fn parse_hex_mask(input: &str, limit: u32) -> Result<Self, CpuSetError> {
        let limit = limit.min(LIMIT_CEILING);
        let mut p = Parser::new(input);
        if p.text.starts_with("0x") || p.text.starts_with("0X") {
            p.pos = 2;
        }
        let mut chunks: Vec<&str> = Vec::new();
        loop {
            let start = p.pos;
            while p.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                p.pos += 1;
            }
            if p.pos == start {
                return Err(p.unexpected("a hex digit"));
            }
            chunks.push(&p.text[start..p.pos]);
            match p.peek() {
                None => break,
                Some(b',') => p.pos += 1,
                Some(_) => return Err(p.unexpected("a hex digit or `,`")),
            }
        }
        let mut set = HostCpuSet::new();
        let word_form = chunks.len() > 1;
        if word_form {
            if let Some(long) = chunks.iter().find(|c| c.len() > 8) {
                return Err(CpuSetError::Overflow {
                    digits: long.to_string(),
                });
            }
        }
        let mut base: u64 = 0;
        for chunk in chunks.iter().rev() {
            for (i, digit) in chunk.bytes().rev().enumerate() {
                // The chunk holds only hex digits (checked above).
                let value = (digit as char).to_digit(16).unwrap_or(0);
                for bit in 0..4 {
                    if value & (1 << bit) != 0 {
                        let cpu = base + i as u64 * 4 + bit;
                        check_limit_u64(cpu, limit)?;
                        set.insert(HostCpuId(cpu as u32));
                    }
                }
            }
            base += if word_form {
                32
            } else {
                chunk.len() as u64 * 4
            };
        }
        set.non_empty(input)
    }

    /// Parses `virsh vcpuinfo`'s affinity string: `y` marks a CPU in the set, `-` one out.
    pub fn parse_affinity_string(input: &str, limit: u32) -> Result<Self, CpuSetError> {
        let limit = limit.min(LIMIT_CEILING);
        let p = Parser::new(input);
        let mut set = HostCpuSet::new();
        for (i, c) in p.text.bytes().enumerate() {
            match c {
                b'y' => {
                    check_limit_u64(i as u64, limit)?;
                    set.insert(HostCpuId(i as u32));
                }
                b'-' => {}
                _ => {
                    let mut q = Parser::new(input);
                    q.pos = i;
                    return Err(q.unexpected("`y` or `-`"));
                }
            }
        }
        set.non_empty(input)
    }

    fn non_empty(self, input: &str) -> Result<Self, CpuSetError> {
        if self.is_empty() {
            Err(CpuSetError::EmptySet {
                input: input.trim().to_string(),
            })
        } else {
            Ok(self)
        }
    }
}

fn bad_group(token: &str, reason: &'static str) -> CpuSetError {
    CpuSetError::BadGroup {
        token: token.to_string(),
        reason,
    }
}

fn check_limit(cpu: u32, limit: u32) -> Result<(), CpuSetError> {
    check_limit_u64(u64::from(cpu), limit)
}

fn check_limit_u64(cpu: u64, limit: u32) -> Result<(), CpuSetError> {
    if cpu >= u64::from(limit) {
        Err(CpuSetError::OutOfRange { cpu, limit })
    } else {
        Ok(())
    }
}

/// A byte cursor over the trimmed input.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        Parser {
            text: input.trim(),
            pos: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn number(&mut self) -> Result<u32, CpuSetError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.unexpected("a decimal number"));
        }
        let digits = &self.text[start..self.pos];
        digits.parse::<u32>().map_err(|_| CpuSetError::Overflow {
            digits: digits.to_string(),
        })
    }

    fn unexpected(&self, expected: &'static str) -> CpuSetError {
        let found = match self.text[self.pos..].chars().next() {
            Some(c) => format!("{c:?}"),
            None => "end of input".to_string(),
        };
        CpuSetError::Syntax {
            input: self.text.to_string(),
            offset: self.pos,
            found,
            expected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_basics() {
        let mut s = HostCpuSet::new();
        assert!(s.insert(HostCpuId(70)));
        assert!(!s.insert(HostCpuId(70)));
        assert_eq!(s.last(), Some(HostCpuId(70)));
        assert!(s.remove(HostCpuId(70)));
        assert_eq!(s, HostCpuSet::new());
        assert_eq!(HostCpuSet::first_n(3).to_cpu_list(), "0-2");
        assert_eq!(HostCpuSet::from_range(5, 5).len(), 1);
    }
}

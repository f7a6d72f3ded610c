//! The raw dump format of the `cpuid` tool (`cpuid -r`, Debian package `cpuid`).
//!
//! ```text
//! CPU 0:
//!    0x00000000 0x00: eax=0x0000000d ebx=0x68747541 ecx=0x444d4163 edx=0x69746e65
//!    0x0000000b 0x01: eax=0x00000001 ebx=0x00000002 ecx=0x00000201 edx=0x00000000
//! ```
//!
//! `cpuid -r -1` prints the header as `CPU:` without a number; the parser takes both.
//! `cpuid -f FILE` decodes what [`write_raw`] writes. The format does not say which leaves
//! take a subleaf: the parser marks a leaf indexed when it is a known indexed leaf
//! ([`is_indexed_leaf`]) or appears with a subleaf other than 0.

use std::io::{self, Write};

use crate::{CpuidEntry, CpuidKey, CpuidRegs, CpuidTable};

/// Errors parsing a raw dump. Line numbers start at 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DumpError {
    /// A leaf line before the first `CPU` header.
    #[error("line {line}: leaf line before any `CPU N:` header")]
    LeafBeforeHeader {
        /// Line number.
        line: usize,
    },
    /// A line that is neither a header, a leaf line nor blank.
    #[error("line {line}: cannot parse {text:?}: {problem}")]
    BadLine {
        /// Line number.
        line: usize,
        /// The offending line, trimmed.
        text: String,
        /// What was expected.
        problem: &'static str,
    },
    /// The same leaf and subleaf twice in one CPU section.
    #[error("line {line}: duplicate entry for leaf {key}")]
    Duplicate {
        /// Line number.
        line: usize,
        /// The repeated key.
        key: CpuidKey,
    },
}

/// One `CPU` section of a dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawCpu {
    /// The number of the `CPU N:` header, `None` for `CPU:` (`cpuid -r -1`).
    pub index: Option<u32>,
    /// The leaves of that CPU.
    pub table: CpuidTable,
}

/// Leaves that take a subleaf in ECX (Intel SDM and AMD APM): 0x4, 0x7, 0xB, 0xD, 0xF,
/// 0x10, 0x12, 0x14, 0x17, 0x18, 0x1A, 0x1B, 0x1D, 0x1E, 0x1F, 0x20, 0x23, 0x24,
/// 0x8000_001D, 0x8000_0020, 0x8000_0026.
pub fn is_indexed_leaf(leaf: u32) -> bool {
    matches!(
        leaf,
        0x4 | 0x7
            | 0xb
            | 0xd
            | 0xf
            | 0x10
            | 0x12
            | 0x14
            | 0x17
            | 0x18
            | 0x1a
            | 0x1b
            | 0x1d
            | 0x1e
            | 0x1f
            | 0x20
            | 0x23
            | 0x24
            | 0x8000_001d
            | 0x8000_0020
            | 0x8000_0026
    )
}

/// Write CPU sections in `cpuid -r` format: `CPU N:` then one line per entry, in key order.
pub fn write_raw(w: &mut impl Write, cpus: &[(u32, &CpuidTable)]) -> io::Result<()> {
    for (index, table) in cpus {
        writeln!(w, "CPU {index}:")?;
        write_entries(w, table)?;
    }
    Ok(())
}

/// The entry lines of one table, without a header.
pub fn write_entries(w: &mut impl Write, table: &CpuidTable) -> io::Result<()> {
    for (k, e) in table.iter() {
        let r = e.regs;
        writeln!(
            w,
            "   0x{:08x} 0x{:02x}: eax=0x{:08x} ebx=0x{:08x} ecx=0x{:08x} edx=0x{:08x}",
            k.leaf, k.subleaf, r.eax, r.ebx, r.ecx, r.edx
        )?;
    }
    Ok(())
}

/// Render CPU sections to a string (see [`write_raw`]).
pub fn to_raw_string(cpus: &[(u32, &CpuidTable)]) -> String {
    let mut v = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = write_raw(&mut v, cpus);
    String::from_utf8_lossy(&v).into_owned()
}

fn hex(s: &str) -> Option<u32> {
    let h = s.strip_prefix("0x")?;
    if h.is_empty() || h.len() > 8 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(h, 16).ok()
}

/// Parse a dump into one table per `CPU` section.
pub fn parse_raw(s: &str) -> Result<Vec<RawCpu>, DumpError> {
    let mut cpus: Vec<RawCpu> = Vec::new();
    for (n, raw_line) in s.lines().enumerate() {
        let line = n + 1;
        let text = raw_line.trim();
        if text.is_empty() {
            continue;
        }
        let bad = |problem| DumpError::BadLine {
            line,
            text: text.to_string(),
            problem,
        };
        if let Some(rest) = text.strip_prefix("CPU") {
            let num = rest
                .strip_suffix(':')
                .ok_or_else(|| bad("a header ends with ':'"))?
                .trim();
            let index = if num.is_empty() {
                None
            } else {
                if !num.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad("expected `CPU N:` with a decimal N"));
                }
                Some(num.parse().map_err(|_| bad("CPU number out of range"))?)
            };
            cpus.push(RawCpu {
                index,
                table: CpuidTable::new(),
            });
            continue;
        }
        let (key, regs) = parse_entry(text).ok_or_else(|| {
            bad("expected `0xLEAF 0xSUB: eax=0x... ebx=0x... ecx=0x... edx=0x...`")
        })?;
        let cpu = cpus
            .last_mut()
            .ok_or(DumpError::LeafBeforeHeader { line })?;
        if cpu.table.get(key).is_some() {
            return Err(DumpError::Duplicate { line, key });
        }
        cpu.table.insert(
            key,
            CpuidEntry {
                regs,
                indexed: false,
            },
        );
    }
    for cpu in &mut cpus {
        mark_indexed(&mut cpu.table);
    }
    Ok(cpus)
}

fn parse_entry(text: &str) -> Option<(CpuidKey, CpuidRegs)> {
    let mut it = text.split_whitespace();
    let leaf = hex(it.next()?)?;
    let subleaf = hex(it.next()?.strip_suffix(':')?)?;
    let mut regs = [0u32; 4];
    for (name, slot) in ["eax=", "ebx=", "ecx=", "edx="].iter().zip(regs.iter_mut()) {
        *slot = hex(it.next()?.strip_prefix(name)?)?;
    }
    if it.next().is_some() {
        return None;
    }
    let [eax, ebx, ecx, edx] = regs;
    Some((CpuidKey { leaf, subleaf }, CpuidRegs { eax, ebx, ecx, edx }))
}

/// Mark known indexed leaves, and leaves seen with a subleaf other than 0, as indexed.
pub fn mark_indexed(t: &mut CpuidTable) {
    let multi: Vec<u32> = t
        .iter()
        .filter(|(k, _)| k.subleaf != 0)
        .map(|(k, _)| k.leaf)
        .collect();
    for (k, e) in t.iter_mut() {
        e.indexed = is_indexed_leaf(k.leaf) || multi.binary_search(&k.leaf).is_ok();
    }
}

/// Highest leaf of the range starting at `base`, from the range's first leaf EAX,
/// limited to 0xff leaves above `base` so that garbage cannot ask for billions of queries.
fn range_end(t: &CpuidTable, base: u32) -> u32 {
    match t.regs(CpuidKey::leaf(base)) {
        Some(r) if r.eax >= base => r.eax.min(base + 0xff),
        _ => base,
    }
}

/// The CPUID queries (leaf, subleaf) the `cpuid -r` tool would print for a CPU with this
/// table, in printing order: the basic range `0..=max`, the hypervisor range from
/// 0x4000_0000, and the extended range `0x8000_0000..=max`. A leaf is queried at every
/// subleaf the table has for it (subleaf 0 when it has none); enumerated leaves (0x4, 0xB,
/// 0x1F, 0x8000_001D) also get the subleaf after their last valid one, which ends the
/// enumeration.
pub fn cpuid_r_queries(t: &CpuidTable) -> Vec<CpuidKey> {
    let mut out = Vec::new();
    for base in [0u32, 0x4000_0000, 0x8000_0000] {
        let end = range_end(t, base);
        for leaf in base..=end {
            let before = out.len();
            out.extend(t.iter().map(|(k, _)| *k).filter(|k| k.leaf == leaf));
            if out.len() == before {
                out.push(CpuidKey::leaf(leaf));
            } else if matches!(leaf, 0x4 | 0xb | 0x1f | 0x8000_001d) {
                if let Some(last) = out.last().copied() {
                    let r = t.regs(last).unwrap_or_default();
                    let valid = match leaf {
                        0xb | 0x1f => (r.ecx >> 8) & 0xff != 0,
                        _ => r.eax & 0x1f != 0,
                    };
                    if valid && last.subleaf < u32::MAX {
                        out.push(CpuidKey::subleaf(leaf, last.subleaf + 1));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rows() {
        let ok = "CPU 3:\n   0x00000000 0x00: eax=0x0000000d ebx=0x1 ecx=0x2 edx=0x3\n\n";
        let cpus = parse_raw(ok).unwrap();
        assert_eq!(cpus[0].index, Some(3));
        assert_eq!(cpus[0].table.regs(CpuidKey::leaf(0)).unwrap().eax, 0xd);
        let rows: &[(&str, &str)] = &[
            (
                "   0x00000000 0x00: eax=0x0 ebx=0x0 ecx=0x0 edx=0x0",
                "line 1: leaf line before any `CPU N:` header",
            ),
            ("CPU x:", "line 1: cannot parse \"CPU x:\": expected `CPU N:` with a decimal N"),
            ("CPU 1", "line 1: cannot parse \"CPU 1\": a header ends with ':'"),
            (
                "CPU:\n0x1 0x0: eax=0x0 ebx=0x0 ecx=0x0",
                "line 2: cannot parse \"0x1 0x0: eax=0x0 ebx=0x0 ecx=0x0\": expected `0xLEAF 0xSUB: eax=0x... ebx=0x... ecx=0x... edx=0x...`",
            ),
            (
                "CPU:\n0x1 0x0: eax=0x0 ebx=0x0 ecx=0x0 edx=0x123456789",
                "line 2: cannot parse \"0x1 0x0: eax=0x0 ebx=0x0 ecx=0x0 edx=0x123456789\": expected `0xLEAF 0xSUB: eax=0x... ebx=0x... ecx=0x... edx=0x...`",
            ),
            (
                "CPU:\n0x1 0x0: eax=0x0 ebx=0x0 ecx=0x0 edx=0x0\n0x1 0x0: eax=0x0 ebx=0x0 ecx=0x0 edx=0x0",
                "line 3: duplicate entry for leaf 0x00000001 0x00",
            ),
        ];
        for (input, err) in rows {
            assert_eq!(parse_raw(input).unwrap_err().to_string(), *err, "{input}");
        }
    }

    #[test]
    fn queries_follow_ranges_and_subleaves() {
        let text = "CPU:\n\
            0x00000000 0x00: eax=0x0000000b ebx=0 ecx=0 edx=0\n";
        assert!(parse_raw(text).is_err());
        let mut t = CpuidTable::new();
        let e = |eax, ecx| CpuidEntry {
            regs: CpuidRegs {
                eax,
                ebx: 0,
                ecx,
                edx: 0,
            },
            indexed: true,
        };
        t.insert(CpuidKey::leaf(0), e(0xb, 0));
        t.insert(CpuidKey::subleaf(0xb, 0), e(1, 0x100));
        t.insert(CpuidKey::subleaf(0xb, 1), e(1, 0x201));
        t.insert(CpuidKey::leaf(0x8000_0000), e(0x8000_0001, 0));
        let q = cpuid_r_queries(&t);
        let subs: Vec<u32> = q
            .iter()
            .filter(|k| k.leaf == 0xb)
            .map(|k| k.subleaf)
            .collect();
        assert_eq!(subs, [0, 1, 2]);
        assert_eq!(q.len(), 12 + 2 + 1 + 2);
        assert_eq!(q.last(), Some(&CpuidKey::leaf(0x8000_0001)));
    }
}

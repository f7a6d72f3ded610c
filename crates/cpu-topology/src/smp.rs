//! The `-smp` grammar: QEMU's key list and Cloud Hypervisor's `--cpus` form.
//!
//! Two spellings describe the same thing, a [`CpuTopology`]:
//!
//! * QEMU: `[[cpus=]n][,maxcpus=m][,drawers=1][,books=1][,sockets=s][,dies=d][,clusters=1]`
//!   `[,modules=o][,cores=c][,threads=t]`. Omitted values are computed the way QEMU >= 6.2
//!   computes them for the x86 PC machine (see [`SmpConfig::resolve`]).
//! * Cloud Hypervisor: `boot=n[,max=m][,topology=threads_per_core:cores_per_die:dies_per_package:packages]`
//!   (see [`ChCpusConfig::resolve`]).
//!
//! The grammar is chosen by the keys present: any of `boot`, `max` or `topology` selects Cloud
//! Hypervisor's form, and mixing keys of both forms is an error. Parsing is split in two
//! steps so callers can word their own messages: [`SmpSpec::parse`] checks the syntax and
//! keeps which values were given; [`SmpSpec::resolve`] fills in the rest and checks the
//! hierarchy. [`parse_smp`] does both.
//!
//! Machine limits (the machine's maximum vCPU count, `KVM_CAP_MAX_VCPUS`) are not checked
//! here; the caller knows them.
//!
//! Where this parser is stricter than QEMU, on purpose:
//! * numbers are plain decimal: QEMU also reads `0x10` as 16 and `010` as 8 (octal), a
//!   surprise nobody wants, so hex, signs, whitespace and leading zeros are rejected;
//! * a key given twice is an error (QEMU silently keeps the last one);
//! * empty items (`4,`, `4,,cores=2`) are an error;
//! * values above `u32::MAX` are an error (QEMU truncates them modulo 2^32).
//!
//! [`to_smp_string`] prints a topology in the canonical QEMU form, which parses back to the
//! same topology.

use std::fmt;
use std::str::FromStr;

use crate::topology::CpuTopology;

/// QEMU keys, in the order QEMU checks them for zero.
const QEMU_KEYS: [&str; 10] = [
    "cpus", "maxcpus", "drawers", "books", "sockets", "dies", "clusters", "modules", "cores",
    "threads",
];

/// Cloud Hypervisor keys.
const CH_KEYS: [&str; 3] = ["boot", "max", "topology"];

/// Longest piece of user input quoted back in an error message.
const MAX_QUOTED: usize = 40;

mod ch;
mod error;

pub use ch::{ChCpusConfig, ChTopology};
pub use error::SmpError;

/// Bits QEMU gives a level of `n` entries: `ceil(log2(n))`, 0 for one entry.
fn width(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}

/// Quote user input in a one-line message: escaped, and cut after [`MAX_QUOTED`] characters.
fn quote(s: &str) -> String {
    let mut out = String::new();
    for (n, c) in s.chars().enumerate() {
        if n == MAX_QUOTED {
            out.push_str("...");
            break;
        }
        out.extend(c.escape_debug());
    }
    out
}

/// The levels of the x86 hierarchy as QEMU prints them in its messages:
/// `sockets (2) * dies (1) * modules (1) * cores (2) * threads (1)`.
///
/// Unlike [`CpuTopology`] a level may be 0 here, when QEMU's rules computed it from a
/// maxcpus too small for the given levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SmpLevels {
    /// Sockets.
    pub sockets: u32,
    /// Dies per socket.
    pub dies: u32,
    /// Modules per die.
    pub modules: u32,
    /// Cores per module.
    pub cores: u32,
    /// Threads per core.
    pub threads: u32,
}

impl SmpLevels {
    /// Product of the levels, saturating at `u64::MAX` (far above any maxcpus, so a
    /// saturated product still compares as a mismatch).
    pub fn product(&self) -> u64 {
        [self.dies, self.modules, self.cores, self.threads]
            .into_iter()
            .fold(u64::from(self.sockets), |p, n| {
                p.saturating_mul(u64::from(n))
            })
    }

    /// Bits of QEMU's packed APIC id for these levels: `ceil(log2(n))` per level.
    pub fn apic_id_bits(&self) -> u32 {
        self.package_shift() + width(self.sockets)
    }

    /// Bits below the package id in QEMU's packed APIC id (the socket shift).
    pub fn package_shift(&self) -> u32 {
        [self.dies, self.modules, self.cores, self.threads]
            .into_iter()
            .map(width)
            .sum()
    }

    /// Build the topology once the grammar's own checks passed. Rejects layouts whose
    /// APIC ids need more than 32 bits or whose package shift does not fit CPUID's
    /// five-bit field, so every topology returned here can be laid out.
    fn build(self, cpus: u32) -> Result<CpuTopology, SmpError> {
        let bits = self.apic_id_bits();
        if bits > 32 {
            return Err(SmpError::ApicIdTooWide { levels: self, bits });
        }
        let shift = self.package_shift();
        if shift > 31 {
            return Err(SmpError::PackageShiftTooLarge {
                levels: self,
                shift,
            });
        }
        CpuTopology::new(
            self.sockets,
            self.dies,
            self.modules,
            self.cores,
            self.threads,
            cpus,
        )
        .map_err(SmpError::Topology)
    }
}

impl fmt::Display for SmpLevels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sockets ({}) * dies ({}) * modules ({}) * cores ({}) * threads ({})",
            self.sockets, self.dies, self.modules, self.cores, self.threads
        )
    }
}

/// Which grammar a string was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SmpSyntax {
    /// QEMU's `-smp` key list.
    Qemu,
    /// Cloud Hypervisor's `--cpus boot=..,max=..,topology=..`.
    CloudHypervisor,
}

/// A QEMU `-smp` configuration as given: `None` for every omitted value.
///
/// Build one with [`SmpConfig::parse`] (or [`FromStr`]) or field by field, then call
/// [`SmpConfig::resolve`]. `Display` prints the given values back in the canonical key
/// order; a config made with `From<&CpuTopology>` prints [`to_smp_string`]'s form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SmpConfig {
    /// `cpus` (or the leading bare value): vCPUs present at boot.
    pub cpus: Option<u32>,
    /// `maxcpus`: vCPU slots, present plus hot-pluggable.
    pub max_cpus: Option<u32>,
    /// `drawers` (s390x level; x86 accepts only 1).
    pub drawers: Option<u32>,
    /// `books` (s390x level; x86 accepts only 1).
    pub books: Option<u32>,
    /// `sockets`.
    pub sockets: Option<u32>,
    /// `dies` per socket.
    pub dies: Option<u32>,
    /// `clusters` (arm/riscv level; x86 accepts only 1).
    pub clusters: Option<u32>,
    /// `modules` per die.
    pub modules: Option<u32>,
    /// `cores` per module.
    pub cores: Option<u32>,
    /// `threads` per core.
    pub threads: Option<u32>,
}

impl SmpConfig {
    /// Parse a QEMU `-smp` string (syntax only; see [`SmpConfig::resolve`] for the rules).
    /// Cloud Hypervisor keys are rejected here; use [`SmpSpec::parse`] to accept both.
    pub fn parse(s: &str) -> Result<Self, SmpError> {
        SmpSpec::parse_qemu(&split_items(s)?)
    }

    /// `(key, field)` pairs in canonical order (the order QEMU checks them for zero).
    fn fields_mut(&mut self) -> [(&'static str, &mut Option<u32>); 10] {
        [
            ("cpus", &mut self.cpus),
            ("maxcpus", &mut self.max_cpus),
            ("drawers", &mut self.drawers),
            ("books", &mut self.books),
            ("sockets", &mut self.sockets),
            ("dies", &mut self.dies),
            ("clusters", &mut self.clusters),
            ("modules", &mut self.modules),
            ("cores", &mut self.cores),
            ("threads", &mut self.threads),
        ]
    }

    /// `(key, value)` pairs in canonical order.
    fn entries(&self) -> [(&'static str, Option<u32>); 10] {
        let mut copy = *self;
        copy.fields_mut().map(|(key, value)| (key, *value))
    }

    /// Compute the omitted values and check the result, following QEMU's
    /// `machine_parse_smp_config` for the x86 PC machine (QEMU >= 6.2, "prefer cores"):
    ///
    /// 1. every given value must be > 0;
    /// 2. drawers, books and clusters may only be 1; omitted dies and modules are 1;
    /// 3. cpus and maxcpus both omitted: omitted levels are 1, maxcpus is their product and
    ///    cpus equals maxcpus;
    /// 4. otherwise maxcpus defaults to cpus; if cores is omitted, sockets and threads
    ///    default to 1 and cores = maxcpus / (the others); else if sockets is omitted,
    ///    threads defaults to 1 and sockets = maxcpus / (the others); an omitted threads
    ///    is computed last the same way; cpus defaults to maxcpus;
    /// 5. the product of the levels must equal maxcpus (a division that left a remainder
    ///    fails here), and maxcpus must be >= cpus.
    ///
    /// Checks QEMU does not make: the packed APIC ids must fit in 32 bits
    /// ([`SmpError::ApicIdTooWide`]) and the package shift in CPUID's five-bit field
    /// ([`SmpError::PackageShiftTooLarge`]).
    pub fn resolve(&self) -> Result<CpuTopology, SmpError> {
        for (param, value) in self.entries() {
            if value == Some(0) {
                return Err(SmpError::ZeroValue { param });
            }
        }
        for (level, value) in [
            ("clusters", self.clusters),
            ("books", self.books),
            ("drawers", self.drawers),
        ] {
            if value.is_some_and(|n| n > 1) {
                return Err(SmpError::UnsupportedLevel { level });
            }
        }
        let dies = self.dies.unwrap_or(1);
        let modules = self.modules.unwrap_or(1);
        let (mut sockets, mut cores, mut threads) = (self.sockets, self.cores, self.threads);
        let max_cpus = self.max_cpus.or(self.cpus);
        if let Some(max) = max_cpus {
            // `others` multiplies the levels known so far; it is >= 1 because every given
            // value is > 0 and every default is 1.
            let quotient = |others: &[u32]| -> u32 {
                let product = others
                    .iter()
                    .fold(1u64, |p, &n| p.saturating_mul(u64::from(n)));
                // Quotient <= max, so it fits in u32.
                u32::try_from(u64::from(max) / product.max(1)).unwrap_or(0)
            };
            if cores.is_none() {
                let s = *sockets.get_or_insert(1);
                let t = *threads.get_or_insert(1);
                cores = Some(quotient(&[s, dies, modules, t]));
            } else if sockets.is_none() {
                let t = *threads.get_or_insert(1);
                sockets = Some(quotient(&[dies, modules, cores.unwrap_or(1), t]));
            }
            if threads.is_none() {
                threads = Some(quotient(&[
                    sockets.unwrap_or(1),
                    dies,
                    modules,
                    cores.unwrap_or(1),
                ]));
            }
        }
        let levels = SmpLevels {
            sockets: sockets.unwrap_or(1),
            dies,
            modules,
            cores: cores.unwrap_or(1),
            threads: threads.unwrap_or(1),
        };
        let product = levels.product();
        let max_cpus = match max_cpus {
            Some(max) => max,
            // All levels were given or defaulted: the product is the slot count. It may
            // not fit in u32; QEMU wraps, we report the mismatch against u32::MAX.
            None => u32::try_from(product).unwrap_or(u32::MAX),
        };
        if product != u64::from(max_cpus) {
            return Err(SmpError::ProductMismatch { levels, max_cpus });
        }
        let cpus = self.cpus.unwrap_or(max_cpus);
        if max_cpus < cpus {
            return Err(SmpError::MaxCpusBelowCpus {
                levels,
                max_cpus,
                cpus,
            });
        }
        levels.build(cpus)
    }
}

impl From<&CpuTopology> for SmpConfig {
    /// Every value given: the canonical, fully explicit form of a topology.
    fn from(t: &CpuTopology) -> Self {
        Self {
            cpus: Some(t.cpus()),
            max_cpus: Some(t.max_cpus()),
            drawers: None,
            books: None,
            sockets: Some(t.sockets()),
            dies: Some(t.dies()),
            clusters: None,
            modules: Some(t.modules()),
            cores: Some(t.cores()),
            threads: Some(t.threads()),
        }
    }
}

impl fmt::Display for SmpConfig {
    /// The given values as `key=value` items in canonical order (empty if none was given).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for (key, value) in self.entries() {
            if let Some(v) = value {
                write!(f, "{sep}{key}={v}")?;
                sep = ",";
            }
        }
        Ok(())
    }
}

impl FromStr for SmpConfig {
    type Err = SmpError;
    fn from_str(s: &str) -> Result<Self, SmpError> {
        Self::parse(s)
    }
}

/// A parsed `-smp` string in either grammar, before the rules are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SmpSpec {
    /// QEMU's key list.
    Qemu(SmpConfig),
    /// Cloud Hypervisor's `boot=..` form.
    CloudHypervisor(ChCpusConfig),
}

/// One `key=value` (or bare value) item of the list.
struct Item<'a> {
    /// `None` for a bare value.
    key: Option<&'a str>,
    value: &'a str,
}

/// Split the list into items, rejecting empty items and misplaced bare values.
fn split_items(s: &str) -> Result<Vec<Item<'_>>, SmpError> {
    let mut items = Vec::new();
    if s.is_empty() {
        return Ok(items);
    }
    for (n, raw) in s.split(',').enumerate() {
        if raw.is_empty() {
            return Err(SmpError::EmptyItem { position: n + 1 });
        }
        let item = match raw.split_once('=') {
            Some((key, value)) => Item {
                key: Some(key),
                value,
            },
            None => {
                if let Some(key) = known_key(raw) {
                    return Err(SmpError::MissingValue { key });
                }
                if n > 0 {
                    return Err(SmpError::BareValueNotFirst {
                        item: raw.to_owned(),
                    });
                }
                Item {
                    key: None,
                    value: raw,
                }
            }
        };
        items.push(item);
    }
    Ok(items)
}

/// The static name of a key of either grammar.
fn known_key(key: &str) -> Option<&'static str> {
    QEMU_KEYS
        .iter()
        .chain(CH_KEYS.iter())
        .find(|k| **k == key)
        .copied()
}

/// A plain decimal `u32`: digits only, no leading zeros except `0` itself.
fn parse_number(key: &'static str, value: &str) -> Result<u32, SmpError> {
    let plain = !value.is_empty()
        && value.bytes().all(|b| b.is_ascii_digit())
        && (value == "0" || !value.starts_with('0'));
    if !plain {
        return Err(SmpError::InvalidNumber {
            key,
            value: value.to_owned(),
        });
    }
    value.parse().map_err(|_| SmpError::NumberOutOfRange {
        key,
        value: value.to_owned(),
    })
}

impl SmpSpec {
    /// Parse either grammar (syntax only). Any of `boot`, `max`, `topology` selects Cloud
    /// Hypervisor's form; otherwise the string is QEMU's. The empty string is QEMU's form
    /// with nothing given (one vCPU).
    pub fn parse(s: &str) -> Result<Self, SmpError> {
        let items = split_items(s)?;
        // Classify keys first so that a mixed string is reported as such, whatever the order.
        let mut qemu_key = None;
        let mut ch_key = None;
        for item in &items {
            let key = match item.key {
                None => "cpus",
                Some(k) => {
                    known_key(k).ok_or_else(|| SmpError::UnknownKey { key: k.to_owned() })?
                }
            };
            if CH_KEYS.contains(&key) {
                ch_key.get_or_insert(key);
            } else {
                qemu_key.get_or_insert(key);
            }
        }
        match (qemu_key, ch_key) {
            (Some(qemu_key), Some(ch_key)) => Err(SmpError::MixedGrammar { qemu_key, ch_key }),
            (_, Some(_)) => Self::parse_ch(&items).map(Self::CloudHypervisor),
            _ => Self::parse_qemu(&items).map(Self::Qemu),
        }
    }

    fn parse_qemu(items: &[Item<'_>]) -> Result<SmpConfig, SmpError> {
        let mut config = SmpConfig::default();
        for item in items {
            let key = item.key.unwrap_or("cpus");
            let (key, slot) = config
                .fields_mut()
                .into_iter()
                .find(|(k, _)| *k == key)
                .ok_or_else(|| SmpError::UnknownKey {
                    key: key.to_owned(),
                })?;
            if slot.is_some() {
                return Err(SmpError::DuplicateKey { key });
            }
            *slot = Some(parse_number(key, item.value)?);
        }
        Ok(config)
    }

    fn parse_ch(items: &[Item<'_>]) -> Result<ChCpusConfig, SmpError> {
        let (mut boot, mut max, mut topology) = (None, None, None);
        for item in items {
            let key = item.key.and_then(known_key).unwrap_or("cpus");
            let duplicate = match key {
                "boot" => boot.replace(parse_number(key, item.value)?).is_some(),
                "max" => max.replace(parse_number(key, item.value)?).is_some(),
                "topology" => topology.replace(ChTopology::parse(item.value)?).is_some(),
                other => {
                    return Err(SmpError::UnknownKey {
                        key: other.to_owned(),
                    })
                }
            };
            if duplicate {
                return Err(SmpError::DuplicateKey { key });
            }
        }
        Ok(ChCpusConfig {
            boot: boot.ok_or(SmpError::MissingBoot)?,
            max,
            topology,
        })
    }

    /// Which grammar this was written in.
    pub fn syntax(&self) -> SmpSyntax {
        match self {
            Self::Qemu(_) => SmpSyntax::Qemu,
            Self::CloudHypervisor(_) => SmpSyntax::CloudHypervisor,
        }
    }

    /// Apply the grammar's rules: [`SmpConfig::resolve`] or [`ChCpusConfig::resolve`].
    pub fn resolve(&self) -> Result<CpuTopology, SmpError> {
        match self {
            Self::Qemu(c) => c.resolve(),
            Self::CloudHypervisor(c) => c.resolve(),
        }
    }
}

impl fmt::Display for SmpSpec {
    /// The spec in its own grammar; parses back to an equal spec.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Qemu(c) => c.fmt(f),
            Self::CloudHypervisor(c) => c.fmt(f),
        }
    }
}

impl FromStr for SmpSpec {
    type Err = SmpError;
    fn from_str(s: &str) -> Result<Self, SmpError> {
        Self::parse(s)
    }
}

/// Parse an `-smp` string in either grammar and apply its rules.
///
/// ```
/// use cpu_topology::smp::parse_smp;
///
/// let t = parse_smp("8,sockets=2").unwrap();
/// assert_eq!((t.sockets(), t.cores(), t.threads(), t.cpus()), (2, 4, 1, 8));
///
/// let t = parse_smp("boot=2,max=4,topology=2:2:1:1").unwrap();
/// assert_eq!((t.cores(), t.threads(), t.cpus(), t.max_cpus()), (2, 2, 2, 4));
///
/// let e = parse_smp("5,sockets=2").unwrap_err();
/// assert_eq!(
///     e.to_string(),
///     "Invalid CPU topology: product of the hierarchy must match maxcpus: \
///      sockets (2) * dies (1) * modules (1) * cores (2) * threads (1) != maxcpus (5)"
/// );
/// ```
pub fn parse_smp(s: &str) -> Result<CpuTopology, SmpError> {
    SmpSpec::parse(s)?.resolve()
}

/// The canonical QEMU form of a topology,
/// `cpus=N,maxcpus=M,sockets=S,dies=D,modules=O,cores=C,threads=T`; [`parse_smp`] turns it
/// back into the same topology.
pub fn to_smp_string(t: &CpuTopology) -> String {
    SmpConfig::from(t).to_string()
}

/// Runs the README's example as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_escapes_and_truncates() {
        assert_eq!(quote("a\nb"), "a\\nb");
        let long = "x".repeat(100);
        assert_eq!(quote(&long), format!("{}...", "x".repeat(MAX_QUOTED)));
    }

    #[test]
    fn levels_product_saturates() {
        let l = SmpLevels {
            sockets: u32::MAX,
            dies: u32::MAX,
            modules: u32::MAX,
            cores: u32::MAX,
            threads: u32::MAX,
        };
        assert_eq!(l.product(), u64::MAX);
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("cpus", "0"), Ok(0));
        assert_eq!(parse_number("cpus", "4294967295"), Ok(u32::MAX));
        for bad in ["", "+1", "-1", "01", "0x1", " 1", "1 ", "1k", "١"] {
            assert!(
                matches!(
                    parse_number("cpus", bad),
                    Err(SmpError::InvalidNumber { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_number("cpus", "4294967296"),
            Err(SmpError::NumberOutOfRange { .. })
        ));
    }
}

//! The `-m` grammar: guest RAM sizes written the way QEMU users write them.
//!
//! Two levels:
//!
//! - [`parse_size`] reads one size the way QEMU's `qemu_strtosz` does: a plain number is a
//!   byte count; a single suffix letter `B`, `K`, `M`, `G`, `T`, `P` or `E` (either case)
//!   scales it by a power of 1024; a decimal fraction such as `1.5G` is allowed with a
//!   suffix larger than `B` and is truncated to whole bytes; `0x...` is hexadecimal and takes
//!   no suffix.
//! - [`parse_mem_size`] reads a whole `-m` argument: `2G`, `512` (a plain number means MiB),
//!   `size=2G`. The memory hot-plug keys `slots=` and `maxmem=` are recognised and refused
//!   with [`SizeError::Unsupported`]. The result is rounded up to [`MEM_SIZE_ALIGN`] (8 KiB,
//!   as QEMU does) and must lie in `1..=`[`MAX_MEM_SIZE`].
//!
//! Deliberate differences from QEMU, each making a typo an error instead of a surprise:
//!
//! - `-m 0` is an error; QEMU silently takes it as its default size.
//! - Leading or trailing blanks and a leading `+` are errors; QEMU's `strtoull` skips them.
//! - A hexadecimal `-m` value is always MiB; QEMU scales it only when its last character is
//!   a decimal digit, so `-m 0x1b` means 27 bytes there.
//! - Sizes above [`MAX_MEM_SIZE`] (1 TiB) are refused here rather than at machine creation.
//!
//! [`format_size`] prints `256 MiB`-style text for people; [`format_size_arg`] prints the
//! shortest exact form [`parse_size`] and [`parse_mem_size`] read back (`256M`).

use thiserror::Error;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
#[cfg(test)]
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

/// Guest RAM size when `-m` is not given: 128 MiB, as in QEMU.
pub const DEFAULT_MEM_SIZE: u64 = 128 * MIB;

/// Largest guest RAM [`parse_mem_size`] accepts: 1 TiB.
///
/// With the 1 GiB MMIO hole below 4 GiB the highest guest-physical RAM address is then just
/// above 1 TiB, which needs 41 physical address bits: every x86-64 server CPU of the last
/// decade has at least 43 (most 46 or more). A VMM should still compare
/// [`crate::layout::MemoryLayout::required_phys_bits`] with the host's MAXPHYADDR.
pub const MAX_MEM_SIZE: u64 = TIB;

/// Granularity `-m` sizes are rounded up to: 8 KiB, as QEMU's `QEMU_ALIGN_UP(sz, 8192)`.
pub const MEM_SIZE_ALIGN: u64 = 8 * KIB;

/// Why a size or a `-m` argument was refused. Each message quotes the offending input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SizeError {
    /// Nothing to parse.
    #[error("memory size is empty")]
    Empty,
    /// A leading minus sign.
    #[error("memory size '{0}' is negative")]
    Negative(String),
    /// No digits where a number was expected, or characters after the suffix.
    #[error("memory size '{0}' is not a number with an optional B/K/M/G/T/P/E suffix")]
    NotANumber(String),
    /// A letter after the number that is not a known suffix.
    #[error(
        "memory size '{input}' has unknown suffix '{suffix}' (expected B, K, M, G, T, P or E)"
    )]
    UnknownSuffix {
        /// The whole size text.
        input: String,
        /// The text after the number.
        suffix: String,
    },
    /// A non-zero fraction with no unit larger than a byte.
    #[error("memory size '{0}' has a fraction but no unit larger than a byte (write e.g. 1.5G)")]
    FractionWithoutUnit(String),
    /// A hexadecimal number followed by anything but its digits.
    #[error("memory size '{0}' is hexadecimal and takes no suffix or fraction")]
    HexWithSuffix(String),
    /// The value, scaled or rounded, does not fit in 64 bits.
    #[error("memory size '{0}' does not fit in 64 bits")]
    Overflow(String),
    /// A `-m` size of zero.
    #[error("memory size must be greater than zero")]
    Zero,
    /// A `-m` size above [`MAX_MEM_SIZE`].
    #[error("memory size {} exceeds the maximum guest RAM of {}", format_size(*.0), format_size(MAX_MEM_SIZE))]
    TooLarge(u64),
    /// A `-m` key QEMU knows but this crate does not implement.
    #[error(
        "-m option '{0}' is not supported: memory hot-plug (slots, maxmem) is not implemented"
    )]
    Unsupported(String),
    /// A `-m` key nobody knows.
    #[error("unknown -m option '{0}' (expected size=)")]
    UnknownOption(String),
    /// `size` given twice, for example `-m 1G,size=2G`.
    #[error("-m option 'size' is given more than once")]
    DuplicateSize,
    /// A `key=` with no value.
    #[error("-m option '{0}' has no value")]
    MissingValue(String),
}

/// Parses one size with QEMU's `qemu_strtosz` rules: a plain number is bytes.
///
/// ```
/// use guest_memory::size::parse_size;
/// assert_eq!(parse_size("4096"), Ok(4096));
/// assert_eq!(parse_size("1.5K"), Ok(1536));
/// assert_eq!(parse_size("2g"), Ok(2 << 30));
/// assert_eq!(parse_size("0x1000"), Ok(4096));
/// ```
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    parse_scaled(s, 1)
}

/// Parses a `-m` argument to a guest RAM size in bytes.
///
/// Accepts `SIZE` or `size=SIZE`, where a `SIZE` without suffix means MiB. The result is
/// rounded up to [`MEM_SIZE_ALIGN`] and lies in `1..=`[`MAX_MEM_SIZE`].
///
/// ```
/// use guest_memory::size::parse_mem_size;
/// assert_eq!(parse_mem_size("512"), Ok(512 << 20));
/// assert_eq!(parse_mem_size("size=4.5G"), Ok(4608 << 20));
/// assert_eq!(
///     parse_mem_size("2G,maxmem=8G").unwrap_err().to_string(),
///     "-m option 'maxmem' is not supported: memory hot-plug (slots, maxmem) is not implemented"
/// );
/// ```
pub fn parse_mem_size(s: &str) -> Result<u64, SizeError> {
    let mut size_text: Option<&str> = None;
    for (i, item) in s.split(',').enumerate() {
        let value = match item.split_once('=') {
            None if i == 0 => item,
            None => return Err(SizeError::UnknownOption(item.to_string())),
            Some(("size", v)) => v,
            Some((key @ ("slots" | "maxmem"), _)) => {
                return Err(SizeError::Unsupported(key.to_string()))
            }
            Some((key, _)) => return Err(SizeError::UnknownOption(key.to_string())),
        };
        if item.contains('=') && value.is_empty() {
            return Err(SizeError::MissingValue("size".to_string()));
        }
        if size_text.replace(value).is_some() {
            return Err(SizeError::DuplicateSize);
        }
    }
    let text = size_text.unwrap_or_default();
    let bytes = parse_scaled(text, MIB)?;
    if bytes == 0 {
        return Err(SizeError::Zero);
    }
    let aligned = bytes
        .checked_next_multiple_of(MEM_SIZE_ALIGN)
        .ok_or_else(|| SizeError::Overflow(text.to_string()))?;
    if aligned > MAX_MEM_SIZE {
        return Err(SizeError::TooLarge(aligned));
    }
    Ok(aligned)
}

/// Human-readable size in the largest binary unit that divides it exactly: `256 MiB`,
/// `1536 MiB`, `4 KiB`, `100 B`.
pub fn format_size(bytes: u64) -> String {
    let (value, unit) = exact_unit(bytes);
    let name = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"][unit];
    format!("{value} {name}")
}

/// The shortest exact text [`parse_size`] reads back as `bytes`: `256M`, `1536M`, `4K`,
/// `100B`. For a multiple of [`MEM_SIZE_ALIGN`] in range, [`parse_mem_size`] reads it back
/// too.
pub fn format_size_arg(bytes: u64) -> String {
    let (value, unit) = exact_unit(bytes);
    let name = ["B", "K", "M", "G", "T", "P", "E"][unit];
    format!("{value}{name}")
}

/// `(value, unit index)` with `bytes == value << (10 * unit)` and the largest such unit.
fn exact_unit(bytes: u64) -> (u64, usize) {
    let mut value = bytes;
    let mut unit = 0;
    while unit < 6 && value != 0 && value % 1024 == 0 {
        value /= 1024;
        unit += 1;
    }
    (value, unit)
}

/// Multiplier of a suffix letter, or `None` when it is not one.
fn suffix_multiplier(c: char) -> Option<u64> {
    let shift = match c.to_ascii_uppercase() {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        'T' => 40,
        'P' => 50,
        'E' => 60,
        _ => return None,
    };
    Some(1u64 << shift)
}

/// The shared number grammar; `default_unit` scales a number without suffix.
pub(crate) fn parse_scaled(s: &str, default_unit: u64) -> Result<u64, SizeError> {
    let owned = || s.to_string();
    if s.is_empty() {
        return Err(SizeError::Empty);
    }
    if s.starts_with('-') {
        return Err(SizeError::Negative(owned()));
    }
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return parse_hex(s, hex, default_unit);
    }

    let int_len = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (int_text, rest) = s.split_at(int_len);
    let (frac_text, rest) = match rest.strip_prefix('.') {
        Some(after) => {
            let len = after
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after.len());
            after.split_at(len)
        }
        None => ("", rest),
    };
    if int_text.is_empty() && frac_text.is_empty() {
        return Err(SizeError::NotANumber(owned()));
    }

    let mut chars = rest.chars();
    let (multiplier, explicit) = match chars.next() {
        None => (default_unit, false),
        Some(c) => match suffix_multiplier(c) {
            Some(m) if chars.as_str().is_empty() => (m, true),
            Some(_) => return Err(SizeError::NotANumber(owned())),
            None if c.is_ascii_alphabetic() => {
                return Err(SizeError::UnknownSuffix {
                    input: owned(),
                    suffix: rest.to_string(),
                })
            }
            None => return Err(SizeError::NotANumber(owned())),
        },
    };
    let fraction_nonzero = frac_text.bytes().any(|b| b != b'0');
    if fraction_nonzero && (multiplier == 1 || !explicit) {
        return Err(SizeError::FractionWithoutUnit(owned()));
    }

    let integer = int_text
        .bytes()
        .try_fold(0u64, |acc, d| {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .ok_or_else(|| SizeError::Overflow(owned()))?;
    let whole = integer
        .checked_mul(multiplier)
        .ok_or_else(|| SizeError::Overflow(owned()))?;
    whole
        .checked_add(fraction_bytes(frac_text, multiplier))
        .ok_or_else(|| SizeError::Overflow(owned()))
}

/// `floor(0.<digits> * multiplier)`, exact for the first 19 digits; later digits change
/// the result by less than one byte and are dropped.
fn fraction_bytes(digits: &str, multiplier: u64) -> u64 {
    let digits = &digits.as_bytes()[..digits.len().min(19)];
    let numerator = digits
        .iter()
        .fold(0u128, |acc, d| acc * 10 + u128::from(d - b'0'));
    let denominator = 10u128.pow(digits.len() as u32);
    // numerator < denominator, so the quotient is below `multiplier` and fits in u64.
    (numerator * u128::from(multiplier) / denominator) as u64
}

/// Hexadecimal: digits only, scaled by the default unit.
fn parse_hex(s: &str, digits: &str, default_unit: u64) -> Result<u64, SizeError> {
    if digits.is_empty() {
        return Err(SizeError::NotANumber(s.to_string()));
    }
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SizeError::HexWithSuffix(s.to_string()));
    }
    let value = digits
        .chars()
        .try_fold(0u64, |acc, c| {
            let digit = u64::from(c.to_digit(16)?);
            acc.checked_mul(16)?.checked_add(digit)
        })
        .ok_or_else(|| SizeError::Overflow(s.to_string()))?;
    value
        .checked_mul(default_unit)
        .ok_or_else(|| SizeError::Overflow(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_size_table() {
        let ok: &[(&str, u64)] = &[
            ("0", 0),
            ("1", 1),
            ("4096", 4096),
            ("1B", 1),
            ("1b", 1),
            ("1K", KIB),
            ("1k", KIB),
            ("1M", MIB),
            ("2G", 2 * GIB),
            ("2g", 2 * GIB),
            ("1T", TIB),
            ("1P", 1 << 50),
            ("15E", 15 << 60),
            ("1.5K", 1536),
            ("1.5G", 1536 * MIB),
            (".5M", 512 * KIB),
            ("5.M", 5 * MIB),
            ("1.0", 1),
            ("1.00B", 1),
            ("0.1K", 102),
            ("0x1000", 4096),
            ("0X1b", 27),
            ("18446744073709551615", u64::MAX),
            ("0xffffffffffffffff", u64::MAX),
            ("00012", 12),
            // 19 fraction digits are exact: 2^64 - 1 - 0.115 truncates to u64::MAX.
            ("15.9999999999999999999E", u64::MAX),
        ];
        for (input, want) in ok {
            assert_eq!(parse_size(input), Ok(*want), "input {input:?}");
        }
    }

    #[test]
    fn parse_size_errors_table() {
        let bad: &[(&str, &str)] = &[
            ("", "memory size is empty"),
            ("-1", "memory size '-1' is negative"),
            ("-0", "memory size '-0' is negative"),
            ("abc", "memory size 'abc' is not a number with an optional B/K/M/G/T/P/E suffix"),
            (".", "memory size '.' is not a number with an optional B/K/M/G/T/P/E suffix"),
            ("G", "memory size 'G' is not a number with an optional B/K/M/G/T/P/E suffix"),
            (" 1G", "memory size ' 1G' is not a number with an optional B/K/M/G/T/P/E suffix"),
            ("1G ", "memory size '1G ' is not a number with an optional B/K/M/G/T/P/E suffix"),
            ("+1G", "memory size '+1G' is not a number with an optional B/K/M/G/T/P/E suffix"),
            ("1GB", "memory size '1GB' is not a number with an optional B/K/M/G/T/P/E suffix"),
            ("1..5G", "memory size '1..5G' is not a number with an optional B/K/M/G/T/P/E suffix"),
            ("1e3", "memory size '1e3' is not a number with an optional B/K/M/G/T/P/E suffix"),
            ("1X", "memory size '1X' has unknown suffix 'X' (expected B, K, M, G, T, P or E)"),
            ("1GiB", "memory size '1GiB' is not a number with an optional B/K/M/G/T/P/E suffix"),
            ("1Mi", "memory size '1Mi' is not a number with an optional B/K/M/G/T/P/E suffix"),
            ("2Q", "memory size '2Q' has unknown suffix 'Q' (expected B, K, M, G, T, P or E)"),
            ("1.5", "memory size '1.5' has a fraction but no unit larger than a byte (write e.g. 1.5G)"),
            ("1.5B", "memory size '1.5B' has a fraction but no unit larger than a byte (write e.g. 1.5G)"),
            ("0x", "memory size '0x' is not a number with an optional B/K/M/G/T/P/E suffix"),
            ("0x10M", "memory size '0x10M' is hexadecimal and takes no suffix or fraction"),
            ("0x1.8", "memory size '0x1.8' is hexadecimal and takes no suffix or fraction"),
            ("18446744073709551616", "memory size '18446744073709551616' does not fit in 64 bits"),
            ("16E", "memory size '16E' does not fit in 64 bits"),
            ("18446744073709551615.5K", "memory size '18446744073709551615.5K' does not fit in 64 bits"),
            ("16.0E", "memory size '16.0E' does not fit in 64 bits"),
            ("0x10000000000000000", "memory size '0x10000000000000000' does not fit in 64 bits"),
        ];
        for (input, want) in bad {
            let err = parse_size(input).expect_err(input);
            assert_eq!(err.to_string(), *want, "input {input:?}");
        }
    }

    #[test]
    fn parse_mem_size_table() {
        let ok: &[(&str, u64)] = &[
            ("128", 128 * MIB),
            ("1", MIB),
            ("0x100", 256 * MIB),
            ("2G", 2 * GIB),
            ("2g", 2 * GIB),
            ("4.5G", 4608 * MIB),
            ("1536M", 1536 * MIB),
            ("size=2G", 2 * GIB),
            ("size=512", 512 * MIB),
            ("1T", TIB),
            ("1024G", TIB),
            // Rounded up to 8 KiB like QEMU.
            ("1B", 8 * KIB),
            ("4K", 8 * KIB),
            ("8K", 8 * KIB),
            ("8193B", 16 * KIB),
            ("1.0001M", MIB + 8 * KIB),
        ];
        for (input, want) in ok {
            assert_eq!(parse_mem_size(input), Ok(*want), "input {input:?}");
        }
    }

    #[test]
    fn parse_mem_size_errors_table() {
        let bad: &[(&str, &str)] = &[
            ("", "memory size is empty"),
            ("0", "memory size must be greater than zero"),
            ("0G", "memory size must be greater than zero"),
            ("0.0G", "memory size must be greater than zero"),
            ("-1", "memory size '-1' is negative"),
            ("size=-2G", "memory size '-2G' is negative"),
            ("lots", "memory size 'lots' is not a number with an optional B/K/M/G/T/P/E suffix"),
            ("1.5", "memory size '1.5' has a fraction but no unit larger than a byte (write e.g. 1.5G)"),
            ("2Y", "memory size '2Y' has unknown suffix 'Y' (expected B, K, M, G, T, P or E)"),
            ("1025G", "memory size 1025 GiB exceeds the maximum guest RAM of 1 TiB"),
            ("2T", "memory size 2 TiB exceeds the maximum guest RAM of 1 TiB"),
            ("1099511627777B", "memory size 1073741832 KiB exceeds the maximum guest RAM of 1 TiB"),
            ("17592186044416", "memory size '17592186044416' does not fit in 64 bits"),
            ("18446744073709551615B", "memory size '18446744073709551615B' does not fit in 64 bits"),
            ("size=", "-m option 'size' has no value"),
            ("2G,slots=4,maxmem=8G", "-m option 'slots' is not supported: memory hot-plug (slots, maxmem) is not implemented"),
            ("2G,maxmem=8G", "-m option 'maxmem' is not supported: memory hot-plug (slots, maxmem) is not implemented"),
            ("size=2G,slots=2", "-m option 'slots' is not supported: memory hot-plug (slots, maxmem) is not implemented"),
            ("2G,foo=1", "unknown -m option 'foo' (expected size=)"),
            ("mem=2G", "unknown -m option 'mem' (expected size=)"),
            ("2G,4G", "unknown -m option '4G' (expected size=)"),
            ("2G,", "unknown -m option '' (expected size=)"),
            ("1G,size=2G", "-m option 'size' is given more than once"),
            ("size=1G,size=1G", "-m option 'size' is given more than once"),
        ];
        for (input, want) in bad {
            let err = parse_mem_size(input).expect_err(input);
            assert_eq!(err.to_string(), *want, "input {input:?}");
        }
    }

    #[test]
    fn default_is_128_mib_and_parses_from_its_own_text() {
        assert_eq!(DEFAULT_MEM_SIZE, 128 << 20);
        assert_eq!(parse_mem_size("128M"), Ok(DEFAULT_MEM_SIZE));
        assert_eq!(format_size(DEFAULT_MEM_SIZE), "128 MiB");
    }

    #[test]
    fn format_size_table() {
        let rows: &[(u64, &str, &str)] = &[
            (0, "0 B", "0B"),
            (100, "100 B", "100B"),
            (4096, "4 KiB", "4K"),
            (256 * MIB, "256 MiB", "256M"),
            (1536 * MIB, "1536 MiB", "1536M"),
            (GIB, "1 GiB", "1G"),
            (TIB + GIB, "1025 GiB", "1025G"),
            (1 << 60, "1 EiB", "1E"),
            (u64::MAX, "18446744073709551615 B", "18446744073709551615B"),
        ];
        for (bytes, human, arg) in rows {
            assert_eq!(format_size(*bytes), *human);
            assert_eq!(format_size_arg(*bytes), *arg);
        }
    }

    proptest! {
        #[test]
        fn format_arg_then_parse_size_round_trips(bytes in any::<u64>()) {
            prop_assert_eq!(parse_size(&format_size_arg(bytes)), Ok(bytes));
        }

        #[test]
        fn format_arg_then_parse_mem_size_round_trips(units in 1u64..=(MAX_MEM_SIZE / MEM_SIZE_ALIGN)) {
            let bytes = units * MEM_SIZE_ALIGN;
            prop_assert_eq!(parse_mem_size(&format_size_arg(bytes)), Ok(bytes));
        }

        #[test]
        fn human_text_names_the_same_bytes(bytes in any::<u64>()) {
            // "256 MiB" -> "256M": the human text differs from the argument text only in
            // spelling.
            let human = format_size(bytes).replace(' ', "").replace("iB", "");
            prop_assert_eq!(parse_size(&human), Ok(bytes));
        }

        #[test]
        fn mem_size_is_aligned_and_in_range(s in "[0-9]{1,7}(\\.[0-9]{1,3})?[KMGkmg]?") {
            if let Ok(bytes) = parse_mem_size(&s) {
                prop_assert!(bytes > 0 && bytes <= MAX_MEM_SIZE);
                prop_assert_eq!(bytes % MEM_SIZE_ALIGN, 0);
            }
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC*") {
            let _ = parse_mem_size(&s);
            let _ = parse_size(&s);
        }
    }
}

//! libvirt's scaled integers: a number with a `unit=` (default KiB for memory).
//!
//! The rules follow libvirt's `virScaleInteger`, as its domain format documentation lists
//! them: `b`/`bytes`; a one-letter prefix or prefix + `iB` is a power of 1024 (`k`, `KiB`,
//! `M`, `MiB`, ...); prefix + `B` is a power of 1000 (`KB`, `MB`, ...). Prefixes and `iB` are
//! case-insensitive, as in libvirt. Memory values are then rounded up to a whole KiB.

use crate::error::DomainError;

/// One KiB.
const KIB: u64 = 1024;

/// The multiplier of `unit`, `None` when libvirt does not know it.
///
/// ```
/// use libvirt_domain::units::unit_scale;
/// assert_eq!(unit_scale("GiB"), Some(1 << 30));
/// assert_eq!(unit_scale("GB"), Some(1_000_000_000));
/// assert_eq!(unit_scale("k"), Some(1024));
/// assert_eq!(unit_scale("KB"), Some(1000));
/// assert_eq!(unit_scale("parsecs"), None);
/// ```
pub fn unit_scale(unit: &str) -> Option<u64> {
    if ["b", "byte", "bytes"]
        .iter()
        .any(|u| u.eq_ignore_ascii_case(unit))
    {
        return Some(1);
    }
    let mut chars = unit.chars();
    let prefix = chars.next()?.to_ascii_lowercase();
    let rest = chars.as_str();
    let base: u64 = if rest.is_empty() || rest.eq_ignore_ascii_case("iB") {
        1024
    } else if rest.eq_ignore_ascii_case("B") {
        1000
    } else {
        return None;
    };
    let power = match prefix {
        'k' => 1,
        'm' => 2,
        'g' => 3,
        't' => 4,
        'p' => 5,
        'e' => 6,
        _ => return None,
    };
    base.checked_pow(power)
}

/// A memory size as libvirt reads it: `value` in `unit` (KiB when `None`), in KiB rounded up.
///
/// ```
/// use libvirt_domain::units::memory_kib;
/// assert_eq!(memory_kib("memory", 2, Some("GiB")).unwrap(), 2 << 20);
/// assert_eq!(memory_kib("memory", 1500, Some("b")).unwrap(), 2);
/// assert_eq!(memory_kib("memory", 524288, None).unwrap(), 524288);
/// ```
pub fn memory_kib(element: &str, value: u64, unit: Option<&str>) -> Result<u64, DomainError> {
    let Some(unit) = unit else {
        return Ok(value);
    };
    let scale = unit_scale(unit).ok_or_else(|| DomainError::UnknownUnit {
        element: element.to_string(),
        unit: unit.to_string(),
    })?;
    let overflow = || DomainError::SizeOverflow {
        element: element.to_string(),
        value,
        unit: unit.to_string(),
    };
    // Binary units scale KiB directly, so any KiB count libvirt can hold stays readable.
    if scale % KIB == 0 {
        return value.checked_mul(scale / KIB).ok_or_else(overflow);
    }
    let bytes = value.checked_mul(scale).ok_or_else(overflow)?;
    Ok(bytes.div_ceil(KIB))
}

/// `kib` rounded up to a whole MiB, as libvirt aligns guest memory and NUMA cells for QEMU.
pub fn round_up_mib(kib: u64) -> u64 {
    kib.div_ceil(KIB).saturating_mul(KIB)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_unit() {
        let rows: &[(&str, u64)] = &[
            ("b", 1),
            ("bytes", 1),
            ("KB", 1000),
            ("k", 1024),
            ("KiB", 1024),
            ("MB", 1_000_000),
            ("M", 1 << 20),
            ("MiB", 1 << 20),
            ("GB", 1_000_000_000),
            ("G", 1 << 30),
            ("GiB", 1 << 30),
            ("TB", 1_000_000_000_000),
            ("T", 1 << 40),
            ("TiB", 1 << 40),
            ("PiB", 1 << 50),
            ("EiB", 1 << 60),
            ("kib", 1024),
            ("mb", 1_000_000),
        ];
        for &(unit, scale) in rows {
            assert_eq!(unit_scale(unit), Some(scale), "{unit}");
        }
        for bad in ["", "x", "KiBs", "Ki", "MBB", "iB", "B2"] {
            assert_eq!(unit_scale(bad), None, "{bad}");
        }
    }

    #[test]
    fn sizes_round_up_to_kib_and_report_overflow() {
        assert_eq!(memory_kib("memory", 1, Some("b")).unwrap(), 1);
        assert_eq!(memory_kib("memory", 1024, Some("bytes")).unwrap(), 1);
        assert_eq!(memory_kib("memory", 1, Some("KB")).unwrap(), 1);
        assert_eq!(memory_kib("memory", 1, Some("MB")).unwrap(), 977);
        assert_eq!(
            memory_kib("memory", u64::MAX, Some("MiB")).unwrap_err(),
            DomainError::SizeOverflow {
                element: "memory".into(),
                value: u64::MAX,
                unit: "MiB".into()
            }
        );
        assert_eq!(
            memory_kib("currentMemory", 1, Some("furlongs"))
                .unwrap_err()
                .to_string()
                .split(':')
                .next(),
            Some("<currentMemory> unit='furlongs'")
        );
        assert_eq!(
            memory_kib("memory", u64::MAX, Some("KiB")).unwrap(),
            u64::MAX
        );
        assert_eq!(
            memory_kib("memory", u64::MAX, Some("MB"))
                .unwrap_err()
                .to_string(),
            "<memory>: size 18446744073709551615 MB is too large"
        );
        assert_eq!(round_up_mib(1), 1024);
        assert_eq!(round_up_mib(1024), 1024);
        assert_eq!(round_up_mib(1025), 2048);
        assert_eq!(round_up_mib(0), 0);
    }
}

//! QEMU's `-numa` argument grammar: [`parse_numa`] and its helpers.

use super::{NodeMemory, NumaDistOption, NumaError, NumaNodeOption, NumaOption};

/// Reads one `-numa` argument.
///
/// ```
/// use guest_memory::numa::{parse_numa, NodeMemory, NumaOption};
/// let NumaOption::Node(node) = parse_numa("node,nodeid=1,cpus=0-1,cpus=4,memdev=m1").unwrap()
/// else { unreachable!() };
/// assert_eq!(node.cpus, [(0, 1), (4, 4)]);
/// assert_eq!(node.memory, NodeMemory::Memdev("m1".into()));
/// ```
pub fn parse_numa(s: &str) -> Result<NumaOption, NumaError> {
    let mut items = s.split(',');
    let first = items.next().unwrap_or_default();
    let kind = match first.split_once('=') {
        Some(("type", v)) => v,
        Some(_) => return Err(NumaError::MissingType),
        None => first,
    };
    match kind {
        "" => Err(NumaError::MissingType),
        "node" => parse_node(items).map(NumaOption::Node),
        "dist" => parse_dist(items).map(NumaOption::Dist),
        other => Err(NumaError::UnknownType(other.to_string())),
    }
}

/// Splits `key=value`, refusing a missing or empty value.
fn key_value<'a>(kind: &'static str, item: &'a str) -> Result<(&'a str, &'a str), NumaError> {
    match item.split_once('=') {
        Some((k, v)) if !v.is_empty() => Ok((k, v)),
        Some((k, _)) => Err(NumaError::MissingValue {
            kind,
            key: k.to_string(),
        }),
        None => Err(NumaError::MissingValue {
            kind,
            key: item.to_string(),
        }),
    }
}

fn number(kind: &'static str, key: &'static str, value: &str, max: u64) -> Result<u64, NumaError> {
    let bad = || NumaError::BadNumber {
        kind,
        key,
        value: value.to_string(),
        max,
    };
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    value
        .parse::<u64>()
        .ok()
        .filter(|&n| n <= max)
        .ok_or_else(bad)
}

/// Parses `A` or `A-B` (decimal, `A <= B`) as an inclusive range.
fn cpu_range(value: &str) -> Result<(u32, u32), NumaError> {
    let bad = || NumaError::BadCpus(value.to_string());
    let one = |t: &str| {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse::<u32>().map_err(|_| bad())
    };
    let (a, b) = value.split_once('-').unwrap_or((value, value));
    let (lo, hi) = (one(a)?, one(b)?);
    if lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

fn parse_node<'a>(items: impl Iterator<Item = &'a str>) -> Result<NumaNodeOption, NumaError> {
    const KIND: &str = "node";
    let mut node = NumaNodeOption {
        nodeid: None,
        cpus: Vec::new(),
        memory: NodeMemory::None,
    };
    let mut has_mem = false;
    let mut has_memdev = false;
    for item in items {
        let (key, value) = key_value(KIND, item)?;
        let duplicate = || NumaError::Duplicate {
            kind: KIND,
            key: key.to_string(),
        };
        match key {
            "nodeid" => {
                let id = number(KIND, "nodeid", value, u16::MAX.into())? as u32;
                if node.nodeid.replace(id).is_some() {
                    return Err(duplicate());
                }
            }
            "cpus" => node.cpus.push(cpu_range(value)?),
            "mem" => {
                if has_mem {
                    return Err(duplicate());
                }
                has_mem = true;
                let bytes =
                    crate::size::parse_scaled(value, 1 << 20).map_err(NumaError::BadSize)?;
                node.memory = NodeMemory::Size(bytes);
            }
            "memdev" => {
                if has_memdev {
                    return Err(duplicate());
                }
                has_memdev = true;
                node.memory = NodeMemory::Memdev(value.to_string());
            }
            _ => {
                return Err(NumaError::UnknownParameter {
                    kind: KIND,
                    key: key.to_string(),
                })
            }
        }
    }
    if has_mem && has_memdev {
        return Err(NumaError::MemAndMemdev);
    }
    Ok(node)
}

fn parse_dist<'a>(items: impl Iterator<Item = &'a str>) -> Result<NumaDistOption, NumaError> {
    const KIND: &str = "dist";
    let (mut src, mut dst, mut val) = (None, None, None);
    for item in items {
        let (key, value) = key_value(KIND, item)?;
        let (slot, name, max): (&mut Option<u64>, &'static str, u64) = match key {
            "src" => (&mut src, "src", u16::MAX.into()),
            "dst" => (&mut dst, "dst", u16::MAX.into()),
            "val" => (&mut val, "val", u8::MAX.into()),
            _ => {
                return Err(NumaError::UnknownParameter {
                    kind: KIND,
                    key: key.to_string(),
                })
            }
        };
        if slot.replace(number(KIND, name, value, max)?).is_some() {
            return Err(NumaError::Duplicate {
                kind: KIND,
                key: key.to_string(),
            });
        }
    }
    let missing = |key| NumaError::Missing { kind: KIND, key };
    Ok(NumaDistOption {
        src: src.ok_or_else(|| missing("src"))? as u32,
        dst: dst.ok_or_else(|| missing("dst"))? as u32,
        val: val.ok_or_else(|| missing("val"))? as u8,
    })
}

//! Write a `hwloc-gather-cpuid` directory from per-vCPU tables, so that hwloc's x86
//! backend can compute the topology a guest would see:
//!
//! ```text
//! HWLOC_CPUID_PATH=DIR HWLOC_COMPONENTS=x86,stop lstopo --of xml
//! ```
//!
//! The directory holds `hwloc-cpuid-info` (`Architecture: x86`) and one file per PU,
//! `pu0`, `pu1`, ..., each starting `# mask e[abcd]x => e[abcd]x` followed by lines
//! `MASK EAX EBX ECX EDX => EAX EBX ECX EDX` in lower-case hex without `0x`. hwloc looks a
//! query up by the input registers selected by MASK (bit 0 EAX, bit 2 ECX), so leaves
//! without a subleaf are written with mask 1 and indexed leaves with mask 5.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::dump::is_indexed_leaf;
use crate::{CpuidKey, CpuidRegs, CpuidTable};

/// Errors writing a hwloc cpuid directory.
#[derive(Debug, thiserror::Error)]
pub enum HwlocError {
    /// Creating the directory failed.
    #[error("cannot create hwloc cpuid directory {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Writing one file failed.
    #[error("cannot write hwloc cpuid file {path}")]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// Contents of one `puN` file for a table.
///
/// Enumerated leaves (0x4, 0xB, 0x1F, 0x8000_001D) whose last subleaf is still valid get
/// an extra all-zero subleaf (ECX = level number for 0xB/0x1F), as the hardware answers,
/// so hwloc's enumeration ends without "Couldn't find" warnings.
pub fn pu_file(table: &CpuidTable) -> String {
    let mut s = String::from("# mask e[abcd]x => e[abcd]x\n");
    let mut line = |k: CpuidKey, indexed: bool, r: CpuidRegs| {
        let mask = if indexed { 5 } else { 1 };
        let ecx_in = if indexed { k.subleaf } else { 0 };
        let _ = writeln!(
            s,
            "{mask} {:x} 0 {ecx_in:x} 0 => {:x} {:x} {:x} {:x}",
            k.leaf, r.eax, r.ebx, r.ecx, r.edx
        );
    };
    let mut entries = table.iter().peekable();
    while let Some((k, e)) = entries.next() {
        let indexed = e.indexed || is_indexed_leaf(k.leaf);
        line(*k, indexed, e.regs);
        let last_of_leaf = entries.peek().is_none_or(|(n, _)| n.leaf != k.leaf);
        if last_of_leaf && matches!(k.leaf, 0x4 | 0xb | 0x1f | 0x8000_001d) {
            let valid = match k.leaf {
                0xb | 0x1f => (e.regs.ecx >> 8) & 0xff != 0,
                _ => e.regs.eax & 0x1f != 0,
            };
            if valid && k.subleaf < u32::MAX {
                let next = k.subleaf + 1;
                let ecx = if matches!(k.leaf, 0xb | 0x1f) {
                    next & 0xff
                } else {
                    0
                };
                let edx = if matches!(k.leaf, 0xb | 0x1f) {
                    e.regs.edx
                } else {
                    0
                };
                let regs = CpuidRegs {
                    eax: 0,
                    ebx: 0,
                    ecx,
                    edx,
                };
                line(CpuidKey::subleaf(k.leaf, next), true, regs);
            }
        }
    }
    s
}

/// Write the directory: `hwloc-cpuid-info` and `pu{i}` for `cpus[i]`.
pub fn write_dir(dir: &Path, cpus: &[&CpuidTable]) -> Result<(), HwlocError> {
    fs::create_dir_all(dir).map_err(|source| HwlocError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let write = |name: String, text: &str| {
        let path = dir.join(name);
        fs::write(&path, text).map_err(|source| HwlocError::WriteFile { path, source })
    };
    write("hwloc-cpuid-info".to_string(), "Architecture: x86\n")?;
    for (i, t) in cpus.iter().enumerate() {
        write(format!("pu{i}"), &pu_file(t))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuidEntry;

    #[test]
    fn masks_and_terminators() {
        let mut t = CpuidTable::new();
        let regs = |eax, ebx, ecx, edx| CpuidRegs { eax, ebx, ecx, edx };
        t.insert(
            CpuidKey::leaf(1),
            CpuidEntry {
                regs: regs(0xb00f21, 0x20800, 0xfffa3203, 0x178bfbff),
                indexed: false,
            },
        );
        t.insert(
            CpuidKey::subleaf(0xb, 0),
            CpuidEntry {
                regs: regs(1, 2, 0x100, 3),
                indexed: true,
            },
        );
        assert_eq!(
            pu_file(&t),
            "# mask e[abcd]x => e[abcd]x\n\
             1 1 0 0 0 => b00f21 20800 fffa3203 178bfbff\n\
             5 b 0 0 0 => 1 2 100 3\n\
             5 b 0 1 0 => 0 0 1 3\n"
        );
    }
}

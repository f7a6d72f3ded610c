//! Loading the kernel and the initrd into guest RAM.
//!
//! An uncompressed `vmlinux` (ELF) is loaded at its segments' physical addresses and
//! entered at its ELF entry point (`startup_64`). A `bzImage` is loaded at 1 MiB and
//! entered at its 64-bit entry (load address + 0x200); it then decompresses itself. On a
//! host whose KVM emulates ring-0 code (docs/LINUX.md) the decompression alone takes
//! minutes: use the vmlinux there.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::layout::HIGH_MEMORY_START;
use linux_loader::loader::{BzImage, Elf, KernelLoader};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};

/// Offset of the 64-bit entry point in a bzImage's protected-mode code.
pub const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;

/// The kernel image formats `--kernel` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    /// An uncompressed ELF vmlinux.
    Elf,
    /// A compressed bzImage.
    BzImage,
}

/// A kernel in guest memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedKernel {
    /// What was loaded.
    pub format: KernelFormat,
    /// The 64-bit entry point (BSP RIP).
    pub entry: GuestAddress,
    /// First byte after the loaded image.
    pub end: u64,
    /// A bzImage's setup header (bytes from offset 0x1f1) for the zero page.
    pub setup_header: Option<Vec<u8>>,
}

/// Why the kernel or initrd could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    /// The file could not be opened or read.
    #[error("read {}", path.display())]
    Read {
        /// Which file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// linux-loader refused the image.
    #[error("load the kernel {} ({format:?})", path.display())]
    Load {
        /// Which file.
        path: PathBuf,
        /// What it was taken for.
        format: KernelFormat,
        /// Why.
        #[source]
        source: linux_loader::loader::Error,
    },
    /// The initrd could not be copied into guest memory.
    #[error("copy the initrd {} to {addr:#x}", path.display())]
    WriteInitrd {
        /// Which file.
        path: PathBuf,
        /// Where.
        addr: u64,
        /// Why.
        #[source]
        source: vm_memory::GuestMemoryError,
    },
}

fn read_err(path: &Path) -> impl FnOnce(std::io::Error) -> LoaderError + '_ {
    move |source| LoaderError::Read {
        path: path.to_path_buf(),
        source,
    }
}

/// The format of an image, from its first bytes.
pub fn detect_format(head: &[u8]) -> KernelFormat {
    if head.starts_with(b"\x7fELF") {
        KernelFormat::Elf
    } else {
        KernelFormat::BzImage
    }
}

/// Check that the kernel at `path` can be read and say what it is (before KVM is
/// touched, so a missing file is bad input and not a half-built VM).
pub fn detect_file_format(path: &Path) -> Result<KernelFormat, LoaderError> {
    let mut file = File::open(path).map_err(read_err(path))?;
    let mut head = [0u8; 4];
    let n = file.read(&mut head).map_err(read_err(path))?;
    Ok(detect_format(&head[..n]))
}

/// Load the kernel at `path` into `mem`.
pub fn load_kernel(mem: &GuestMemoryMmap, path: &Path) -> Result<LoadedKernel, LoaderError> {
    let mut file = File::open(path).map_err(read_err(path))?;
    let mut head = [0u8; 4];
    let n = file.read(&mut head).map_err(read_err(path))?;
    file.seek(SeekFrom::Start(0)).map_err(read_err(path))?;
    let format = detect_format(&head[..n]);
    let highmem = Some(GuestAddress(HIGH_MEMORY_START));
    let load_err = |source| LoaderError::Load {
        path: path.to_path_buf(),
        format,
        source,
    };
    match format {
        KernelFormat::Elf => {
            let r = Elf::load(mem, None, &mut file, highmem).map_err(load_err)?;
            Ok(LoadedKernel {
                format,
                entry: r.kernel_load,
                end: r.kernel_end,
                setup_header: None,
            })
        }
        KernelFormat::BzImage => {
            let r = BzImage::load(mem, None, &mut file, highmem).map_err(load_err)?;
            Ok(LoadedKernel {
                format,
                entry: GuestAddress(r.kernel_load.0 + BZIMAGE_64BIT_ENTRY_OFFSET),
                end: r.kernel_end,
                setup_header: r.setup_header.map(|h| h.as_slice().to_vec()),
            })
        }
    }
}

/// The size of the initrd at `path`.
pub fn initrd_size(path: &Path) -> Result<u64, LoaderError> {
    Ok(std::fs::metadata(path).map_err(read_err(path))?.len())
}

/// Copy the initrd at `path` to `addr`.
pub fn load_initrd(mem: &GuestMemoryMmap, path: &Path, addr: u64) -> Result<(), LoaderError> {
    let data = std::fs::read(path).map_err(read_err(path))?;
    mem.write_slice(&data, GuestAddress(addr))
        .map_err(|source| LoaderError::WriteInitrd {
            path: path.to_path_buf(),
            addr,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(detect_format(b"\x7fELF\x02"), KernelFormat::Elf);
        assert_eq!(detect_format(b"MZ\0\0"), KernelFormat::BzImage);
        assert_eq!(detect_format(b""), KernelFormat::BzImage);
    }

    #[test]
    fn garbage_is_refused_with_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk");
        std::fs::write(&path, vec![0u8; 4096]).unwrap();
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
        let e = load_kernel(&mem, &path).unwrap_err();
        assert!(e.to_string().starts_with("load the kernel "), "{e}");
        assert!(e.to_string().ends_with("junk (BzImage)"), "{e}");
        let missing = load_kernel(&mem, &dir.path().join("nope")).unwrap_err();
        assert!(matches!(missing, LoaderError::Read { .. }));
    }
}

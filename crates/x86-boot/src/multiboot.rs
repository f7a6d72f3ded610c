//! A Multiboot (version 1) kernel loader, such as for the kvm-unit-tests
//! `x86/*.flat` binaries (ELF32 files with a multiboot header).
//!
//! [`load_multiboot`] is pure: it finds the multiboot header, decides where
//! every byte goes (the ELF `PT_LOAD` segments at their physical addresses, or
//! the header's a.out kludge addresses when flag bit 16 is set), checks every
//! range against the guest's e820 map and MMIO hole, builds the multiboot
//! information structure ([`crate::multiboot_info`]) and returns the plan as a
//! [`MultibootLoad`]: a list of guest writes plus the 32-bit protected-mode
//! [`MultibootEntryState`] of the boot vCPU. [`MultibootLoad::write_to`] then
//! copies it into any [`GuestMemory`].
//!
//! ```
//! use x86_boot::e820::{build_e820_map, E820Type};
//! use x86_boot::multiboot::{load_multiboot, MultibootConfig, HEADER_MAGIC};
//!
//! // The smallest a.out-kludge kernel: a header at 1 MiB followed by `hlt`.
//! let flags: u32 = 1 << 16;
//! let mut image = Vec::new();
//! for word in [
//!     HEADER_MAGIC,
//!     flags,
//!     0u32.wrapping_sub(HEADER_MAGIC.wrapping_add(flags)),
//!     0x10_0000, // header_addr
//!     0x10_0000, // load_addr
//!     0,         // load_end_addr: the whole file
//!     0,         // bss_end_addr: no bss
//!     0x10_0020, // entry_addr
//! ] {
//!     image.extend_from_slice(&word.to_le_bytes());
//! }
//! image.push(0xf4);
//!
//! let e820 = build_e820_map(&[(0, 64 << 20, E820Type::Ram)]).unwrap();
//! let config = MultibootConfig {
//!     cmdline: "console=serial",
//!     ..MultibootConfig::new(&e820)
//! };
//! let load = load_multiboot(&image, &config).unwrap();
//! assert_eq!(load.entry.eip, 0x10_0020);
//! assert_eq!(load.entry.eax, 0x2bad_b002);
//! assert_eq!(u64::from(load.entry.ebx), load.info_addr);
//! ```

use std::ops::Range;

use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryError};

use crate::e820::{E820Entry, E820Type};
pub use crate::multiboot_info::{MultibootEntryState, BOOTLOADER_MAGIC};

/// The magic number of a multiboot (v1) header.
pub const HEADER_MAGIC: u32 = 0x1bad_b002;
/// The header must lie, 4-byte aligned, within this many first bytes.
pub const HEADER_SEARCH_LEN: usize = 8192;
/// Header flag 0: modules must be page aligned (always honoured).
pub const FLAG_PAGE_ALIGN: u32 = 1 << 0;
/// Header flag 1: the kernel wants `mem_*` and the memory map (always given).
pub const FLAG_MEMORY_INFO: u32 = 1 << 1;
/// Header flag 2: the kernel wants a video mode (ignored, as QEMU does).
pub const FLAG_VIDEO_MODE: u32 = 1 << 2;
/// Header flag 16: the address fields (the "a.out kludge") are valid.
pub const FLAG_AOUT_KLUDGE: u32 = 1 << 16;
/// Bits 0..16 are requirements a loader must understand; these are the ones
/// this loader understands.
const KNOWN_REQUIRED_FLAGS: u32 = FLAG_PAGE_ALIGN | FLAG_MEMORY_INFO | FLAG_VIDEO_MODE;

/// Errors from loading a multiboot kernel; each prints as one line.
#[derive(Debug, thiserror::Error)]
pub enum MultibootError {
    /// No magic with a valid checksum in the first 8 KiB.
    #[error("no multiboot header (magic 0x1badb002 with a valid checksum, 4-byte aligned) in the first 8192 bytes")]
    NoHeader,
    /// The header asks for a feature this loader does not provide.
    #[error("the multiboot header requires flags {flags:#x} that this loader does not support")]
    UnsupportedFlags {
        /// The unsupported required bits.
        flags: u32,
    },
    /// A structure or segment extends past the end of the file.
    #[error("truncated image: the {what} at file offset {offset:#x} ({len:#x} bytes) ends past the {file_len:#x}-byte file")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Its file offset.
        offset: u64,
        /// Its length.
        len: u64,
        /// The file's length.
        file_len: usize,
    },
    /// No a.out kludge (flag 16) and not a little-endian x86 ELF file.
    #[error("the multiboot header has no load addresses (flag 16) and the image is not an x86 ELF32/ELF64 executable")]
    NotElf,
    /// The header's or an ELF segment's addresses are inconsistent.
    #[error("invalid load addresses: {0}")]
    BadAddresses(String),
    /// Nothing to load.
    #[error("the image has no loadable segment")]
    NoSegments,
    /// A loaded range overlaps the MMIO hole below 4 GiB.
    #[error("segment {start:#x}..{end:#x} overlaps the MMIO hole {hole_start:#x}..{hole_end:#x}")]
    SegmentInMmioHole {
        /// Segment start (guest-physical).
        start: u64,
        /// Segment end (exclusive).
        end: u64,
        /// MMIO hole start.
        hole_start: u64,
        /// MMIO hole end (exclusive).
        hole_end: u64,
    },
    /// A loaded range overlaps a non-RAM e820 range (legacy area, ACPI, ...).
    #[error(
        "segment {start:#x}..{end:#x} overlaps the {kind:?} range {range_start:#x}..{range_end:#x}"
    )]
    SegmentInReserved {
        /// Segment start (guest-physical).
        start: u64,
        /// Segment end (exclusive).
        end: u64,
        /// Type of the e820 range hit.
        kind: E820Type,
        /// e820 range start.
        range_start: u64,
        /// e820 range end (exclusive).
        range_end: u64,
    },
    /// A loaded range is not inside guest RAM.
    #[error("segment {start:#x}..{end:#x} is outside guest RAM (RAM ends at {ram_end:#x})")]
    SegmentOutsideRam {
        /// Segment start (guest-physical).
        start: u64,
        /// Segment end (exclusive).
        end: u64,
        /// End of the highest RAM range.
        ram_end: u64,
    },
    /// The entry point is not inside a loaded segment.
    #[error("entry point {entry:#x} is not inside a loaded segment")]
    EntryOutsideImage {
        /// The entry point.
        entry: u64,
    },
    /// A command line or module string holds a NUL byte.
    #[error("the {what} contains a NUL byte")]
    NulInString {
        /// Which string.
        what: &'static str,
    },
    /// No RAM below 4 GiB after the image for the information structure and modules.
    #[error("no room below 4 GiB after the image for the multiboot information and modules ({size:#x} bytes)")]
    NoRoomForInfo {
        /// Bytes needed.
        size: u64,
    },
    /// Writing into guest memory failed.
    #[error("writing {len:#x} bytes at guest address {gpa:#x} failed")]
    WriteMemory {
        /// Guest-physical address.
        gpa: u64,
        /// Length of the write.
        len: u64,
        /// Cause.
        #[source]
        source: GuestMemoryError,
    },
}

/// One boot module (`--initrd` becomes module 0).
#[derive(Debug, Clone, Copy)]
pub struct MultibootModule<'a> {
    /// The module's contents.
    pub data: &'a [u8],
    /// Its string (the multiboot `cmdline` of the module).
    pub cmdline: &'a str,
}

/// What the loader needs besides the image.
#[derive(Debug, Clone)]
pub struct MultibootConfig<'a> {
    /// The guest's e820 map (from [`crate::e820::build_e820_map`]); segments
    /// must lie inside its RAM ranges, and it becomes the multiboot memory map.
    pub e820: &'a [E820Entry],
    /// The MMIO hole below 4 GiB (`start..end`); an empty range means none.
    pub mmio_hole: Range<u64>,
    /// The kernel command line (`--append`).
    pub cmdline: &'a str,
    /// Boot modules, in order.
    pub modules: &'a [MultibootModule<'a>],
    /// The `boot_loader_name` string.
    pub loader_name: &'a str,
}

impl<'a> MultibootConfig<'a> {
    /// A configuration with no MMIO hole, an empty command line, no modules
    /// and the loader name "x86-boot".
    pub fn new(e820: &'a [E820Entry]) -> Self {
        Self {
            e820,
            mmio_hole: 0..0,
            cmdline: "",
            modules: &[],
            loader_name: "x86-boot",
        }
    }
}

/// The header fields that matter to the loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultibootHeader {
    /// File offset of the magic.
    pub offset: usize,
    /// The header flags.
    pub flags: u32,
    /// The address fields, present when flag 16 is set.
    pub aout: Option<AoutKludge>,
}

/// The header's address fields (valid with [`FLAG_AOUT_KLUDGE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AoutKludge {
    /// Physical address the header itself is loaded at.
    pub header_addr: u32,
    /// Physical address of the first loaded byte.
    pub load_addr: u32,
    /// End of the loaded bytes (0: to the end of the file).
    pub load_end_addr: u32,
    /// End of the zeroed bss (0: no bss).
    pub bss_end_addr: u32,
    /// Entry point.
    pub entry_addr: u32,
}

/// `data` followed by `zero_len` zero bytes at guest address `gpa`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestWrite {
    /// Guest-physical address of the first byte.
    pub gpa: u64,
    /// Bytes to copy.
    pub data: Vec<u8>,
    /// Zero bytes after `data` (a segment's bss).
    pub zero_len: u64,
}

impl GuestWrite {
    /// The guest-physical range written.
    pub fn range(&self) -> Range<u64> {
        self.gpa..self.gpa + self.data.len() as u64 + self.zero_len
    }
}

/// The result of [`load_multiboot`].
#[derive(Debug, Clone)]
pub struct MultibootLoad {
    /// Everything to write: the image's segments, then the information area
    /// (GDT, information structure, strings, memory map) and the modules.
    pub writes: Vec<GuestWrite>,
    /// Guest-physical range the kernel image occupies (including bss).
    pub image: Range<u64>,
    /// Guest-physical range of the information area and modules.
    pub info_area: Range<u64>,
    /// Address of the multiboot information structure (EBX at entry).
    pub info_addr: u64,
    /// Where each module went (start..end), in order.
    pub modules: Vec<Range<u64>>,
    /// The boot vCPU's entry state.
    pub entry: MultibootEntryState,
}

impl MultibootLoad {
    /// Copies every write into guest memory.
    pub fn write_to<M: GuestMemory + ?Sized>(&self, mem: &M) -> Result<(), MultibootError> {
        const ZEROS: [u8; 4096] = [0; 4096];
        for w in &self.writes {
            let fail =
                |gpa: u64, len: u64| move |source| MultibootError::WriteMemory { gpa, len, source };
            mem.write_slice(&w.data, GuestAddress(w.gpa))
                .map_err(fail(w.gpa, w.data.len() as u64))?;
            let mut at = w.gpa + w.data.len() as u64;
            let end = w.range().end;
            while at < end {
                let n = (end - at).min(ZEROS.len() as u64);
                mem.write_slice(&ZEROS[..n as usize], GuestAddress(at))
                    .map_err(fail(at, n))?;
                at += n;
            }
        }
        Ok(())
    }
}

fn le32(b: &[u8], off: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(w)
}

fn le16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn le64(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(w)
}

/// `len` bytes of `image` at `offset`, or [`MultibootError::Truncated`].
fn bytes<'i>(
    image: &'i [u8],
    what: &'static str,
    offset: u64,
    len: u64,
) -> Result<&'i [u8], MultibootError> {
    let range = offset.checked_add(len).and_then(|end| {
        let start = usize::try_from(offset).ok()?;
        Some(start..usize::try_from(end).ok()?)
    });
    range
        .and_then(|r| image.get(r))
        .ok_or(MultibootError::Truncated {
            what,
            offset,
            len,
            file_len: image.len(),
        })
}

/// Finds the multiboot header: the magic, 4-byte aligned in the first
/// [`HEADER_SEARCH_LEN`] bytes, followed by flags and a checksum that make
/// the three words sum to 0.
pub fn find_header(image: &[u8]) -> Result<MultibootHeader, MultibootError> {
    let search = &image[..image.len().min(HEADER_SEARCH_LEN)];
    let offset = (0..search.len().saturating_sub(11))
        .step_by(4)
        .find(|&o| {
            le32(search, o) == HEADER_MAGIC
                && HEADER_MAGIC
                    .wrapping_add(le32(search, o + 4))
                    .wrapping_add(le32(search, o + 8))
                    == 0
        })
        .ok_or(MultibootError::NoHeader)?;
    let flags = le32(image, offset + 4);
    let unsupported = flags & 0xffff & !KNOWN_REQUIRED_FLAGS;
    if unsupported != 0 {
        return Err(MultibootError::UnsupportedFlags { flags: unsupported });
    }
    let aout = if flags & FLAG_AOUT_KLUDGE != 0 {
        let f = bytes(
            image,
            "multiboot header address fields",
            offset as u64 + 12,
            20,
        )?;
        Some(AoutKludge {
            header_addr: le32(f, 0),
            load_addr: le32(f, 4),
            load_end_addr: le32(f, 8),
            bss_end_addr: le32(f, 12),
            entry_addr: le32(f, 16),
        })
    } else {
        None
    };
    Ok(MultibootHeader {
        offset,
        flags,
        aout,
    })
}

/// The segments and entry point of an image, before placement checks.
struct Image {
    writes: Vec<GuestWrite>,
    entry: u64,
}

fn bad(msg: String) -> MultibootError {
    MultibootError::BadAddresses(msg)
}

/// Loads through the header's address fields.
fn aout_image(image: &[u8], offset: usize, a: &AoutKludge) -> Result<Image, MultibootError> {
    if a.header_addr < a.load_addr {
        return Err(bad(format!(
            "header_addr {:#x} is below load_addr {:#x}",
            a.header_addr, a.load_addr
        )));
    }
    let delta = u64::from(a.header_addr - a.load_addr);
    let file_start = (offset as u64).checked_sub(delta).ok_or_else(|| {
        bad(format!(
            "load_addr {:#x} is {delta:#x} bytes before the header, which is only {offset:#x} bytes into the file",
            a.load_addr
        ))
    })?;
    let load_len = if a.load_end_addr == 0 {
        image.len() as u64 - file_start
    } else {
        u64::from(a.load_end_addr.checked_sub(a.load_addr).ok_or_else(|| {
            bad(format!(
                "load_end_addr {:#x} is below load_addr {:#x}",
                a.load_end_addr, a.load_addr
            ))
        })?)
    };
    let data = bytes(image, "a.out kludge load range", file_start, load_len)?.to_vec();
    let load_end = u64::from(a.load_addr) + load_len;
    let zero_len = match u64::from(a.bss_end_addr) {
        0 => 0,
        bss_end if bss_end >= load_end => bss_end - load_end,
        bss_end => {
            return Err(bad(format!(
                "bss_end_addr {bss_end:#x} is below the end of the loaded bytes {load_end:#x}"
            )))
        }
    };
    Ok(Image {
        writes: vec![GuestWrite {
            gpa: u64::from(a.load_addr),
            data,
            zero_len,
        }],
        entry: u64::from(a.entry_addr),
    })
}

const EM_386: u16 = 3;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;

/// Loads an ELF32 or ELF64 little-endian x86 executable's `PT_LOAD` segments
/// at their physical addresses. The entry point, when it lies in a segment's
/// virtual range, is translated to the physical one.
fn elf_image(image: &[u8]) -> Result<Image, MultibootError> {
    if image.len() < 20 || image[..4] != *b"\x7fELF" || image[5] != 1 {
        return Err(MultibootError::NotElf);
    }
    let is64 = match image[4] {
        1 => false,
        2 => true,
        _ => return Err(MultibootError::NotElf),
    };
    let machine = le16(image, 18);
    if machine != EM_386 && machine != EM_X86_64 {
        return Err(MultibootError::NotElf);
    }
    let ehdr = bytes(image, "ELF header", 0, if is64 { 64 } else { 52 })?;
    // An address-sized field at its ELF32 or ELF64 offset.
    let word = |b: &[u8], off32: usize, off64: usize| {
        if is64 {
            le64(b, off64)
        } else {
            u64::from(le32(b, off32))
        }
    };
    let (entry, phoff) = (word(ehdr, 24, 24), word(ehdr, 28, 32));
    let (phentsize, phnum) = if is64 {
        (le16(ehdr, 54), le16(ehdr, 56))
    } else {
        (le16(ehdr, 42), le16(ehdr, 44))
    };
    let min_phentsize = if is64 { 56 } else { 32 };
    if phentsize < min_phentsize {
        return Err(bad(format!(
            "ELF program header size {phentsize} is below {min_phentsize}"
        )));
    }
    let table = bytes(
        image,
        "ELF program header table",
        phoff,
        u64::from(phentsize) * u64::from(phnum),
    )?;
    let mut writes = Vec::new();
    let mut entry_phys = None;
    for ph in table.chunks_exact(usize::from(phentsize)) {
        if le32(ph, 0) != PT_LOAD {
            continue;
        }
        let offset = word(ph, 4, 8);
        let (vaddr, paddr) = (word(ph, 8, 16), word(ph, 12, 24));
        let (filesz, memsz) = (word(ph, 16, 32), word(ph, 20, 40));
        if memsz == 0 {
            continue;
        }
        if filesz > memsz {
            return Err(bad(format!(
                "ELF segment at {paddr:#x} has p_filesz {filesz:#x} above p_memsz {memsz:#x}"
            )));
        }
        if paddr.checked_add(memsz).is_none() || vaddr.checked_add(memsz).is_none() {
            return Err(bad(format!(
                "ELF segment at {paddr:#x} of {memsz:#x} bytes wraps the address space"
            )));
        }
        if (vaddr..vaddr + memsz).contains(&entry) {
            entry_phys = Some(entry - vaddr + paddr);
        }
        writes.push(GuestWrite {
            gpa: paddr,
            data: bytes(image, "ELF segment", offset, filesz)?.to_vec(),
            zero_len: memsz - filesz,
        });
    }
    Ok(Image {
        writes,
        entry: entry_phys.unwrap_or(entry),
    })
}

/// Checks that `range` lies in RAM: not in the MMIO hole, not over a non-RAM
/// e820 range, inside one RAM range.
pub(crate) fn check_in_ram(
    range: &Range<u64>,
    config: &MultibootConfig,
) -> Result<(), MultibootError> {
    let (start, end) = (range.start, range.end);
    let hole = &config.mmio_hole;
    if hole.start < hole.end && start < hole.end && hole.start < end {
        return Err(MultibootError::SegmentInMmioHole {
            start,
            end,
            hole_start: hole.start,
            hole_end: hole.end,
        });
    }
    if let Some(e) = config
        .e820
        .iter()
        .find(|e| e.kind != E820Type::Ram && start < e.end() && e.addr < end)
    {
        return Err(MultibootError::SegmentInReserved {
            start,
            end,
            kind: e.kind,
            range_start: e.addr,
            range_end: e.end(),
        });
    }
    let ram = config.e820.iter().filter(|e| e.kind == E820Type::Ram);
    // Adjacent RAM entries are merged by build_e820_map, so one entry must hold the range.
    if ram.clone().any(|e| e.addr <= start && end <= e.end()) {
        return Ok(());
    }
    Err(MultibootError::SegmentOutsideRam {
        start,
        end,
        ram_end: ram.map(E820Entry::end).max().unwrap_or(0),
    })
}

/// Plans loading the multiboot kernel `image` (see the module docs).
///
/// The information area (GDT, information structure, command line, memory
/// map, module strings) and then the modules go at the first page-aligned
/// RAM address after the image that fits them below 4 GiB, as QEMU does.
pub fn load_multiboot(
    image: &[u8],
    config: &MultibootConfig,
) -> Result<MultibootLoad, MultibootError> {
    let header = find_header(image)?;
    let loaded = match &header.aout {
        Some(a) => aout_image(image, header.offset, a)?,
        None => elf_image(image)?,
    };
    if loaded.writes.is_empty() {
        return Err(MultibootError::NoSegments);
    }
    for w in &loaded.writes {
        check_in_ram(&w.range(), config)?;
    }
    let start = loaded.writes.iter().map(|w| w.gpa).min().unwrap_or(0);
    let end = loaded
        .writes
        .iter()
        .map(|w| w.range().end)
        .max()
        .unwrap_or(0);
    let entry = u32::try_from(loaded.entry)
        .ok()
        .filter(|_| {
            loaded
                .writes
                .iter()
                .any(|w| w.range().contains(&loaded.entry))
        })
        .ok_or(MultibootError::EntryOutsideImage {
            entry: loaded.entry,
        })?;
    let info = crate::multiboot_info::build_info(end, config)?;
    let mut writes = loaded.writes;
    writes.extend(info.writes);
    Ok(MultibootLoad {
        writes,
        image: start..end,
        info_area: info.area,
        info_addr: info.info_addr,
        modules: info.modules,
        entry: MultibootEntryState::new(entry, info.info_addr, info.gdt_addr),
    })
}

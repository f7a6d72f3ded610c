//! The Linux x86 `boot_params` ("zero page") for the 64-bit boot protocol.
//!
//! The kernel's 64-bit entry point takes the address of this 4 KiB structure
//! in `RSI`. [`build_zero_page`] fills the fields a VMM is responsible for
//! (offsets from the kernel's `Documentation/arch/x86/boot.rst` and
//! `zero-page.rst`); [`write_zero_page`] stores it into guest memory.
//!
//! For a bzImage the setup header (`0x1f1..`) should first be copied from the
//! image (pass it as [`ZeroPageConfig::setup_header`]); for an ELF vmlinux there
//! is none and the fields below are all the kernel gets.

use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryError};

use crate::e820::{E820Entry, E820_MAX_ENTRIES};

/// Size of `struct boot_params`.
pub const ZERO_PAGE_SIZE: usize = 4096;

/// Byte offsets inside `boot_params` (see `zero-page.rst` and `boot.rst`).
pub mod offsets {
    /// `acpi_rsdp_addr` (u64), boot protocol 2.14+.
    pub const ACPI_RSDP_ADDR: usize = 0x070;
    /// `ext_ramdisk_image` (u32): high 32 bits of the initrd address.
    pub const EXT_RAMDISK_IMAGE: usize = 0x0c0;
    /// `ext_ramdisk_size` (u32): high 32 bits of the initrd size.
    pub const EXT_RAMDISK_SIZE: usize = 0x0c4;
    /// `ext_cmd_line_ptr` (u32): high 32 bits of the command-line address.
    pub const EXT_CMD_LINE_PTR: usize = 0x0c8;
    /// `e820_entries` (u8).
    pub const E820_ENTRIES: usize = 0x1e8;
    /// `sentinel` (u8): must stay 0 or the kernel wipes "stale" fields.
    pub const SENTINEL: usize = 0x1ef;
    /// Start of the setup header `hdr` (`setup_sects`).
    pub const HDR: usize = 0x1f1;
    /// `hdr.boot_flag` (u16) = 0xaa55.
    pub const BOOT_FLAG: usize = 0x1fe;
    /// `hdr.header` (u32) = "HdrS".
    pub const HEADER: usize = 0x202;
    /// `hdr.version` (u16).
    pub const VERSION: usize = 0x206;
    /// `hdr.type_of_loader` (u8).
    pub const TYPE_OF_LOADER: usize = 0x210;
    /// `hdr.loadflags` (u8).
    pub const LOADFLAGS: usize = 0x211;
    /// `hdr.ramdisk_image` (u32).
    pub const RAMDISK_IMAGE: usize = 0x218;
    /// `hdr.ramdisk_size` (u32).
    pub const RAMDISK_SIZE: usize = 0x21c;
    /// `hdr.heap_end_ptr` (u16).
    pub const HEAP_END_PTR: usize = 0x224;
    /// `hdr.cmd_line_ptr` (u32).
    pub const CMD_LINE_PTR: usize = 0x228;
    /// `hdr.kernel_alignment` (u32).
    pub const KERNEL_ALIGNMENT: usize = 0x230;
    /// `hdr.cmdline_size` (u32).
    pub const CMDLINE_SIZE: usize = 0x238;
    /// `e820_table`: up to 128 entries of 20 bytes.
    pub const E820_TABLE: usize = 0x2d0;
}

/// `hdr.boot_flag` value.
pub const BOOT_FLAG: u16 = 0xaa55;
/// `hdr.header` value, "HdrS" little endian.
pub const HDR_MAGIC: u32 = 0x5372_6448;
/// Boot protocol version written when no setup header is supplied (2.15).
pub const BOOT_PROTOCOL_VERSION: u16 = 0x020f;
/// `type_of_loader` for a boot loader without an assigned id.
pub const LOADER_UNDEFINED: u8 = 0xff;
/// `loadflags` bit: protected-mode code is loaded at 1 MiB or above.
pub const LOADED_HIGH: u8 = 0x01;
/// `loadflags` bit: `heap_end_ptr` is valid.
pub const CAN_USE_HEAP: u8 = 0x80;

/// What the VMM tells the kernel through the zero page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZeroPageConfig {
    /// Guest address of the NUL-terminated kernel command line.
    pub cmdline_addr: u64,
    /// Length of the command line including the terminating NUL.
    pub cmdline_size: u32,
    /// Initrd as (guest address, size), if any.
    pub initrd: Option<(u64, u64)>,
    /// Address of the ACPI RSDP, if any (`acpi_rsdp_addr`, protocol 2.14+).
    pub acpi_rsdp_addr: Option<u64>,
    /// The memory map, e.g. from [`crate::e820::build_e820_map`].
    pub e820: Vec<E820Entry>,
    /// The setup header of a bzImage (bytes from offset 0x1f1 of the image,
    /// up to the end of its header), copied before the fields above are set.
    /// `None` for an ELF vmlinux.
    pub setup_header: Option<Vec<u8>>,
}

/// Errors from building or writing the zero page.
#[derive(Debug, thiserror::Error)]
pub enum ZeroPageError {
    /// More e820 entries than the zero page holds.
    #[error("{count} e820 entries do not fit the zero page (max {E820_MAX_ENTRIES})")]
    TooManyE820Entries {
        /// Entries given.
        count: usize,
    },
    /// The supplied setup header runs past the zero page.
    #[error("setup header of {len} bytes does not fit the zero page at 0x1f1")]
    SetupHeaderTooLong {
        /// Its length.
        len: usize,
    },
    /// The initrd size does not fit the 64-bit split fields.
    #[error("initrd size {size:#x} exceeds 32+32 bits")]
    InitrdTooLarge {
        /// The size given.
        size: u64,
    },
    /// Writing the page into guest memory failed.
    #[error("failed to write the zero page at {addr:#x}")]
    Write {
        /// Guest address of the zero page.
        addr: u64,
        /// The memory error.
        #[source]
        source: GuestMemoryError,
    },
}

fn put(page: &mut [u8], off: usize, bytes: &[u8]) {
    page[off..off + bytes.len()].copy_from_slice(bytes);
}

/// Build the 4 KiB `boot_params` image.
pub fn build_zero_page(cfg: &ZeroPageConfig) -> Result<Vec<u8>, ZeroPageError> {
    let mut p = vec![0u8; ZERO_PAGE_SIZE];
    let have_header = match &cfg.setup_header {
        Some(h) => {
            if offsets::HDR + h.len() > offsets::E820_TABLE {
                return Err(ZeroPageError::SetupHeaderTooLong { len: h.len() });
            }
            put(&mut p, offsets::HDR, h);
            true
        }
        None => false,
    };
    if cfg.e820.len() > E820_MAX_ENTRIES {
        return Err(ZeroPageError::TooManyE820Entries {
            count: cfg.e820.len(),
        });
    }

    put(&mut p, offsets::BOOT_FLAG, &BOOT_FLAG.to_le_bytes());
    put(&mut p, offsets::HEADER, &HDR_MAGIC.to_le_bytes());
    if !have_header {
        put(
            &mut p,
            offsets::VERSION,
            &BOOT_PROTOCOL_VERSION.to_le_bytes(),
        );
        put(
            &mut p,
            offsets::KERNEL_ALIGNMENT,
            &0x0100_0000u32.to_le_bytes(),
        );
    }
    p[offsets::TYPE_OF_LOADER] = LOADER_UNDEFINED;
    p[offsets::LOADFLAGS] |= LOADED_HIGH | CAN_USE_HEAP;
    put(&mut p, offsets::HEAP_END_PTR, &0xfe00u16.to_le_bytes());

    // Addresses above 4 GiB use the ext_* high halves.
    let lo = |v: u64| (v as u32).to_le_bytes();
    let hi = |v: u64| ((v >> 32) as u32).to_le_bytes();
    put(&mut p, offsets::CMD_LINE_PTR, &lo(cfg.cmdline_addr));
    put(&mut p, offsets::EXT_CMD_LINE_PTR, &hi(cfg.cmdline_addr));
    put(
        &mut p,
        offsets::CMDLINE_SIZE,
        &cfg.cmdline_size.to_le_bytes(),
    );
    if let Some((addr, size)) = cfg.initrd {
        if size >> 32 > u64::from(u32::MAX) {
            return Err(ZeroPageError::InitrdTooLarge { size });
        }
        put(&mut p, offsets::RAMDISK_IMAGE, &lo(addr));
        put(&mut p, offsets::EXT_RAMDISK_IMAGE, &hi(addr));
        put(&mut p, offsets::RAMDISK_SIZE, &lo(size));
        put(&mut p, offsets::EXT_RAMDISK_SIZE, &hi(size));
    }
    if let Some(rsdp) = cfg.acpi_rsdp_addr {
        put(&mut p, offsets::ACPI_RSDP_ADDR, &rsdp.to_le_bytes());
    }
    p[offsets::SENTINEL] = 0;
    p[offsets::E820_ENTRIES] = cfg.e820.len() as u8;
    for (i, entry) in cfg.e820.iter().enumerate() {
        put(
            &mut p,
            offsets::E820_TABLE + i * E820Entry::SIZE,
            &entry.to_bytes(),
        );
    }
    Ok(p)
}

/// Build the zero page and write it at `addr`; returns `addr` for `RSI`.
pub fn write_zero_page<M: GuestMemory + ?Sized>(
    mem: &M,
    addr: GuestAddress,
    cfg: &ZeroPageConfig,
) -> Result<GuestAddress, ZeroPageError> {
    let page = build_zero_page(cfg)?;
    mem.write_slice(&page, addr)
        .map_err(|source| ZeroPageError::Write {
            addr: addr.0,
            source,
        })?;
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e820::{build_e820_map, E820Type};
    use vm_memory::GuestMemoryMmap;

    fn u16_at(p: &[u8], o: usize) -> u16 {
        u16::from_le_bytes(p[o..o + 2].try_into().unwrap())
    }
    fn u32_at(p: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(p[o..o + 4].try_into().unwrap())
    }
    fn u64_at(p: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(p[o..o + 8].try_into().unwrap())
    }

    fn config() -> ZeroPageConfig {
        ZeroPageConfig {
            cmdline_addr: 0x20000,
            cmdline_size: 42,
            initrd: Some((0x1_2345_6000, 0x80_0000)),
            acpi_rsdp_addr: Some(0xe0000),
            e820: build_e820_map(&[
                (0, 512 << 20, E820Type::Ram),
                (0xa0000, 0x60000, E820Type::Reserved),
            ])
            .unwrap(),
            setup_header: None,
        }
    }

    #[test]
    fn decode_written_zero_page() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let cfg = config();
        let at = write_zero_page(&mem, GuestAddress(0x7000), &cfg).unwrap();
        assert_eq!(at, GuestAddress(0x7000));
        let mut p = vec![0u8; ZERO_PAGE_SIZE];
        mem.read_slice(&mut p, at).unwrap();

        assert_eq!(u16_at(&p, 0x1fe), 0xaa55);
        assert_eq!(&p[0x202..0x206], b"HdrS");
        assert_eq!(u16_at(&p, 0x206), 0x020f);
        assert_eq!(p[0x210], 0xff);
        assert_eq!(p[0x211], 0x81);
        assert_eq!(u32_at(&p, 0x228), 0x20000);
        assert_eq!(u32_at(&p, 0x0c8), 0);
        assert_eq!(u32_at(&p, 0x238), 42);
        assert_eq!(u32_at(&p, 0x218), 0x2345_6000);
        assert_eq!(u32_at(&p, 0x0c0), 1);
        assert_eq!(u32_at(&p, 0x21c), 0x80_0000);
        assert_eq!(u64_at(&p, 0x070), 0xe0000);
        assert_eq!(p[0x1ef], 0);

        let n = p[0x1e8] as usize;
        assert_eq!(n, cfg.e820.len());
        assert_eq!(n, 3);
        let decoded: Vec<(u64, u64, u32)> = (0..n)
            .map(|i| {
                let o = 0x2d0 + 20 * i;
                (u64_at(&p, o), u64_at(&p, o + 8), u32_at(&p, o + 16))
            })
            .collect();
        assert_eq!(
            decoded,
            vec![
                (0, 0x9fc00, 1),
                (0x9fc00, 0x100000 - 0x9fc00, 2),
                (0x100000, (512 << 20) - 0x100000, 1)
            ]
        );
    }

    #[test]
    fn setup_header_is_kept_and_fields_override_it() {
        let mut cfg = config();
        // A fake bzImage header: setup_sects 0x1f, version 2.12 at 0x206.
        let mut hdr = vec![0u8; 0x70];
        hdr[0] = 0x1f;
        hdr[0x206 - 0x1f1..0x208 - 0x1f1].copy_from_slice(&0x020cu16.to_le_bytes());
        hdr[0x210 - 0x1f1] = 0x11;
        cfg.setup_header = Some(hdr);
        let p = build_zero_page(&cfg).unwrap();
        assert_eq!(p[0x1f1], 0x1f);
        assert_eq!(u16_at(&p, 0x206), 0x020c);
        assert_eq!(p[0x210], 0xff);
    }

    #[test]
    fn errors() {
        let mut cfg = config();
        cfg.setup_header = Some(vec![0; 0x200]);
        assert_eq!(
            build_zero_page(&cfg).unwrap_err().to_string(),
            "setup header of 512 bytes does not fit the zero page at 0x1f1"
        );
        let mut cfg = config();
        cfg.e820 = vec![cfg.e820[0]; 129];
        assert_eq!(
            build_zero_page(&cfg).unwrap_err().to_string(),
            "129 e820 entries do not fit the zero page (max 128)"
        );
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        let err = write_zero_page(&mem, GuestAddress(0x7000), &config()).unwrap_err();
        assert_eq!(err.to_string(), "failed to write the zero page at 0x7000");
    }
}

//! The multiboot (v1) information structure and the 32-bit entry state, for
//! [`crate::multiboot::load_multiboot`].
//!
//! The information area is one page-aligned block in RAM right after the
//! kernel image (QEMU puts it there too):
//!
//! ```text
//! +0x00  GDT: null, flat 32-bit code (0x08), flat data (0x10)
//! +0x20  multiboot_info (116 bytes)                        -> EBX
//! +0xa0  memory map: one 24-byte entry per e820 entry
//!  ...   module list (16 bytes per module)
//!  ...   command line, boot loader name, module strings (NUL-terminated)
//!  ...   modules, each page aligned
//! ```

use std::ops::Range;

use kvm_bindings::{kvm_dtable, kvm_regs, kvm_segment, kvm_sregs};

use crate::e820::E820Type;
use crate::gdt::SegmentDescriptor;
use crate::long_mode::{CR0_CD, CR0_ET, CR0_NW, CR0_PE, CR0_PG, EFER_LMA, EFER_LME};
use crate::multiboot::{check_in_ram, GuestWrite, MultibootConfig, MultibootError};

/// EAX at entry: tells the kernel a multiboot loader started it.
pub const BOOTLOADER_MAGIC: u32 = 0x2bad_b002;
/// Selector of the flat 32-bit code segment in the loader's GDT.
pub const CODE32_SELECTOR: u16 = 0x08;
/// Selector of the flat data segment in the loader's GDT.
pub const DATA32_SELECTOR: u16 = 0x10;

/// `multiboot_info.flags` bits this loader sets.
const INFO_MEMORY: u32 = 1 << 0;
const INFO_CMDLINE: u32 = 1 << 2;
const INFO_MODS: u32 = 1 << 3;
const INFO_MMAP: u32 = 1 << 6;
const INFO_LOADER_NAME: u32 = 1 << 9;

const PAGE: u64 = 4096;
const GDT_OFFSET: u64 = 0;
const INFO_OFFSET: u64 = 0x20;
/// `sizeof(struct multiboot_info)` up to the framebuffer colour fields.
const INFO_SIZE: u64 = 116;
const MMAP_OFFSET: u64 = 0xa0;
const MMAP_ENTRY_SIZE: u64 = 24;
const MODULE_ENTRY_SIZE: u64 = 16;
const LOW_MEMORY_END: u64 = 640 << 10;
const HIGH_MEMORY_START: u64 = 1 << 20;
const FOUR_GIB: u64 = 1 << 32;

// The GDT, the information structure and the memory map do not overlap.
const _: () = assert!(GDT_OFFSET + 24 <= INFO_OFFSET && INFO_OFFSET + INFO_SIZE <= MMAP_OFFSET);

/// The flat 4 GiB 32-bit segment descriptors of the loader's GDT.
fn flat32(type_: u8) -> SegmentDescriptor {
    SegmentDescriptor {
        base: 0,
        limit: 0xf_ffff,
        type_,
        code_or_data: true,
        dpl: 0,
        present: true,
        avl: false,
        long: false,
        default_32: true,
        granularity_4k: true,
    }
}

fn gdt_entries() -> [u64; 3] {
    [0, flat32(0xb).encode(), flat32(0x3).encode()]
}

/// The boot vCPU's state at a multiboot kernel's entry, as the Multiboot
/// specification (section 3.2) defines it: 32-bit protected mode without
/// paging, EAX = [`BOOTLOADER_MAGIC`], EBX = the information structure, CS a
/// flat 32-bit code segment, DS/ES/FS/GS/SS flat data, EFLAGS.IF = VM = 0.
/// A20 needs nothing: KVM never masks it.
///
/// The spec leaves GDTR, IDTR and ESP undefined; this loader provides a valid
/// GDT (as QEMU's loader does), an empty IDT and ESP = 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MultibootEntryState {
    /// EIP: the kernel's entry point.
    pub eip: u32,
    /// EAX: [`BOOTLOADER_MAGIC`].
    pub eax: u32,
    /// EBX: physical address of the multiboot information structure.
    pub ebx: u32,
    /// EFLAGS: only the reserved bit 1 set.
    pub eflags: u32,
    /// CS: flat 32-bit code, selector [`CODE32_SELECTOR`].
    pub cs: kvm_segment,
    /// DS, ES, FS, GS and SS: flat data, selector [`DATA32_SELECTOR`].
    pub data: kvm_segment,
    /// GDTR base (the loader's GDT in the information area).
    pub gdt_base: u64,
    /// GDTR limit.
    pub gdt_limit: u16,
}

impl MultibootEntryState {
    /// The entry state for a kernel entered at `eip` with the information
    /// structure at `info_addr` and the loader's GDT at `gdt_addr`.
    pub(crate) fn new(eip: u32, info_addr: u64, gdt_addr: u64) -> Self {
        // Both are placed below 4 GiB by build_info.
        Self {
            eip,
            eax: BOOTLOADER_MAGIC,
            ebx: u32::try_from(info_addr).unwrap_or(0),
            eflags: 0x2,
            cs: flat32(0xb).to_kvm_segment(CODE32_SELECTOR),
            data: flat32(0x3).to_kvm_segment(DATA32_SELECTOR),
            gdt_base: gdt_addr,
            gdt_limit: 3 * 8 - 1,
        }
    }

    /// Returns `base` (the vCPU's sregs from `KVM_GET_SREGS`) changed to this
    /// state: the segments, GDTR, an empty IDTR, CR0 with PE|ET set and
    /// PG|CD|NW clear, EFER without LME/LMA. CR3, CR4, TR, LDT and the APIC
    /// base stay as KVM gave them.
    pub fn sregs(&self, base: &kvm_sregs) -> kvm_sregs {
        let mut s = *base;
        s.cs = self.cs;
        s.ds = self.data;
        s.es = self.data;
        s.fs = self.data;
        s.gs = self.data;
        s.ss = self.data;
        s.gdt = kvm_dtable {
            base: self.gdt_base,
            limit: self.gdt_limit,
            padding: [0; 3],
        };
        s.idt = kvm_dtable {
            base: 0,
            limit: 0,
            padding: [0; 3],
        };
        s.cr0 = (s.cr0 | CR0_PE | CR0_ET) & !(CR0_PG | CR0_CD | CR0_NW);
        s.efer &= !(EFER_LME | EFER_LMA);
        s
    }

    /// The general registers: RIP, RAX, RBX and RFLAGS set, all others 0.
    pub fn regs(&self) -> kvm_regs {
        kvm_regs {
            rip: u64::from(self.eip),
            rax: u64::from(self.eax),
            rbx: u64::from(self.ebx),
            rflags: u64::from(self.eflags),
            ..Default::default()
        }
    }
}

/// The information area planned by [`build_info`].
pub(crate) struct InfoPlan {
    pub(crate) writes: Vec<GuestWrite>,
    pub(crate) area: Range<u64>,
    pub(crate) info_addr: u64,
    pub(crate) gdt_addr: u64,
    pub(crate) modules: Vec<Range<u64>>,
}

fn align_up(v: u64, a: u64) -> Option<u64> {
    Some(v.checked_add(a - 1)? & !(a - 1))
}

fn c_string(s: &str, what: &'static str) -> Result<Vec<u8>, MultibootError> {
    if s.as_bytes().contains(&0) {
        return Err(MultibootError::NulInString { what });
    }
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    Ok(v)
}

fn put32(buf: &mut [u8], off: u64, v: u32) {
    let off = off as usize;
    buf[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(buf: &mut [u8], off: u64, v: u64) {
    let off = off as usize;
    buf[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// The first page-aligned address at or after `from` where `size` bytes fit
/// inside one RAM range below 4 GiB, outside the MMIO hole.
fn find_room(from: u64, size: u64, config: &MultibootConfig) -> Option<u64> {
    config
        .e820
        .iter()
        .filter(|e| e.kind == E820Type::Ram)
        .filter_map(|e| align_up(e.addr.max(from), PAGE))
        .find(|&addr| {
            addr.checked_add(size)
                .is_some_and(|end| end <= FOUR_GIB && check_in_ram(&(addr..end), config).is_ok())
        })
}

/// Builds the information area for an image ending at `image_end`.
pub(crate) fn build_info(
    image_end: u64,
    config: &MultibootConfig,
) -> Result<InfoPlan, MultibootError> {
    let cmdline = c_string(config.cmdline, "command line")?;
    let loader_name = c_string(config.loader_name, "boot loader name")?;
    let module_strings = config
        .modules
        .iter()
        .map(|m| c_string(m.cmdline, "module string"))
        .collect::<Result<Vec<_>, _>>()?;

    let nmods = config.modules.len() as u64;
    let mmap_len = config.e820.len() as u64 * MMAP_ENTRY_SIZE;
    let mods_offset = MMAP_OFFSET + mmap_len;
    let strings_offset = mods_offset + nmods * MODULE_ENTRY_SIZE;
    let strings_len: u64 = [&cmdline, &loader_name]
        .into_iter()
        .chain(&module_strings)
        .map(|s| s.len() as u64)
        .sum();
    let header_len = strings_offset + strings_len;
    let mut size = align_up(header_len, PAGE).unwrap_or(u64::MAX);
    for m in config.modules {
        size = size.saturating_add(align_up(m.data.len() as u64, PAGE).unwrap_or(u64::MAX));
    }
    let base = find_room(image_end, size, config).ok_or(MultibootError::NoRoomForInfo { size })?;
    // Every address below fits in 32 bits: base + size <= 4 GiB.
    let addr32 = |off: u64| (base + off) as u32;

    let mut area = vec![0u8; header_len as usize];
    for (i, d) in gdt_entries().iter().enumerate() {
        put64(&mut area, GDT_OFFSET + i as u64 * 8, *d);
    }
    for (i, e) in config.e820.iter().enumerate() {
        let off = MMAP_OFFSET + i as u64 * MMAP_ENTRY_SIZE;
        put32(&mut area, off, (MMAP_ENTRY_SIZE - 4) as u32);
        put64(&mut area, off + 4, e.addr);
        put64(&mut area, off + 12, e.size);
        put32(&mut area, off + 20, e.kind.raw());
    }
    let mut string_at = strings_offset;
    let mut place_string = |area: &mut Vec<u8>, s: &[u8]| {
        let at = string_at;
        area[at as usize..(at as usize + s.len())].copy_from_slice(s);
        string_at += s.len() as u64;
        addr32(at)
    };
    let cmdline_addr = place_string(&mut area, &cmdline);
    let loader_name_addr = place_string(&mut area, &loader_name);
    let mut writes = Vec::new();
    let mut modules = Vec::new();
    let mut module_at = base + align_up(header_len, PAGE).unwrap_or(0);
    for (i, (m, s)) in config.modules.iter().zip(&module_strings).enumerate() {
        let string_addr = place_string(&mut area, s);
        let range = module_at..module_at + m.data.len() as u64;
        let entry = mods_offset + i as u64 * MODULE_ENTRY_SIZE;
        put32(&mut area, entry, range.start as u32);
        put32(&mut area, entry + 4, range.end as u32);
        put32(&mut area, entry + 8, string_addr);
        writes.push(GuestWrite {
            gpa: module_at,
            data: m.data.to_vec(),
            zero_len: 0,
        });
        module_at = align_up(range.end, PAGE).unwrap_or(range.end);
        modules.push(range);
    }

    let ram = config.e820.iter().filter(|e| e.kind == E820Type::Ram);
    let mem_lower = ram
        .clone()
        .find(|e| e.addr == 0)
        .map_or(0, |e| e.end().min(LOW_MEMORY_END) >> 10);
    let mem_upper = ram
        .clone()
        .find(|e| e.addr <= HIGH_MEMORY_START && HIGH_MEMORY_START < e.end())
        .map_or(0, |e| (e.end().min(FOUR_GIB) - HIGH_MEMORY_START) >> 10);
    let info = INFO_OFFSET;
    put32(
        &mut area,
        info,
        INFO_MEMORY | INFO_CMDLINE | INFO_MODS | INFO_MMAP | INFO_LOADER_NAME,
    );
    put32(&mut area, info + 4, mem_lower as u32);
    put32(&mut area, info + 8, mem_upper as u32);
    put32(&mut area, info + 16, cmdline_addr);
    put32(&mut area, info + 20, nmods as u32);
    put32(&mut area, info + 24, addr32(mods_offset));
    put32(&mut area, info + 44, mmap_len as u32);
    put32(&mut area, info + 48, addr32(MMAP_OFFSET));
    put32(&mut area, info + 64, loader_name_addr);

    writes.insert(
        0,
        GuestWrite {
            gpa: base,
            data: area,
            zero_len: 0,
        },
    );
    Ok(InfoPlan {
        writes,
        area: base..base + size,
        info_addr: base + INFO_OFFSET,
        gdt_addr: base + GDT_OFFSET,
        modules,
    })
}

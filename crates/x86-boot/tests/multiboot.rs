//! The multiboot loader on small hand-made images: where each byte lands, the
//! information structure a kernel reads, the entry state, and one row per
//! error with its exact message.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use x86_boot::e820::{build_e820_map, E820Entry, E820Type};
use x86_boot::gdt::kvm_segment_from_raw;
use x86_boot::multiboot::{
    find_header, load_multiboot, MultibootConfig, MultibootError, MultibootModule,
    FLAG_AOUT_KLUDGE, HEADER_MAGIC,
};
use x86_boot::multiboot_info::{CODE32_SELECTOR, DATA32_SELECTOR};

const MIB: u64 = 1 << 20;

fn header(flags: u32) -> Vec<u8> {
    [
        HEADER_MAGIC,
        flags,
        0u32.wrapping_sub(HEADER_MAGIC.wrapping_add(flags)),
    ]
    .iter()
    .flat_map(|w| w.to_le_bytes())
    .collect()
}

/// The a.out address fields.
struct Aout {
    header_addr: u32,
    load_addr: u32,
    load_end_addr: u32,
    bss_end_addr: u32,
    entry_addr: u32,
}

impl Aout {
    /// A kernel of `len` bytes loaded at `addr` (header first), entry 32 bytes in.
    fn at(addr: u32) -> Self {
        Self {
            header_addr: addr,
            load_addr: addr,
            load_end_addr: 0,
            bss_end_addr: 0,
            entry_addr: addr + 32,
        }
    }

    fn image(&self, len: usize) -> Vec<u8> {
        let mut v = header(FLAG_AOUT_KLUDGE);
        for w in [
            self.header_addr,
            self.load_addr,
            self.load_end_addr,
            self.bss_end_addr,
            self.entry_addr,
        ] {
            v.extend_from_slice(&w.to_le_bytes());
        }
        v.resize(len.max(v.len()), 0);
        for (i, b) in v.iter_mut().enumerate().skip(32) {
            *b = i as u8 | 1;
        }
        v
    }
}

/// One ELF program header: (type, offset, vaddr, paddr, filesz, memsz).
type Phdr = (u32, u64, u64, u64, u64, u64);

/// An ELF32 (or ELF64) x86 executable: ELF header, program headers at 0x40
/// (0x40 + 64 for ELF64), a multiboot header at 0x200, file contents to `len`.
fn elf(is64: bool, entry: u64, phdrs: &[Phdr], len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    v[..4].copy_from_slice(b"\x7fELF");
    v[4] = if is64 { 2 } else { 1 };
    v[5] = 1;
    v[6] = 1;
    let put = |v: &mut Vec<u8>, off: usize, bytes: &[u8]| {
        v[off..off + bytes.len()].copy_from_slice(bytes)
    };
    put(&mut v, 16, &2u16.to_le_bytes());
    put(&mut v, 18, &(if is64 { 62u16 } else { 3 }).to_le_bytes());
    let phoff = if is64 { 0x80 } else { 0x40 };
    if is64 {
        put(&mut v, 24, &entry.to_le_bytes());
        put(&mut v, 32, &(phoff as u64).to_le_bytes());
        put(&mut v, 54, &56u16.to_le_bytes());
        put(&mut v, 56, &(phdrs.len() as u16).to_le_bytes());
    } else {
        put(&mut v, 24, &(entry as u32).to_le_bytes());
        put(&mut v, 28, &(phoff as u32).to_le_bytes());
        put(&mut v, 42, &32u16.to_le_bytes());
        put(&mut v, 44, &(phdrs.len() as u16).to_le_bytes());
    }
    for (i, &(ty, off, vaddr, paddr, filesz, memsz)) in phdrs.iter().enumerate() {
        if is64 {
            let at = phoff + i * 56;
            put(&mut v, at, &ty.to_le_bytes());
            for (j, f) in [off, vaddr, paddr, filesz, memsz].iter().enumerate() {
                put(&mut v, at + 8 + j * 8, &f.to_le_bytes());
            }
        } else {
            let at = phoff + i * 32;
            put(&mut v, at, &ty.to_le_bytes());
            for (j, f) in [off, vaddr, paddr, filesz, memsz].iter().enumerate() {
                put(&mut v, at + 4 + j * 4, &(*f as u32).to_le_bytes());
            }
        }
    }
    put(&mut v, 0x200, &header(0));
    for (i, b) in v.iter_mut().enumerate().skip(0x300) {
        *b = i as u8 | 1;
    }
    v
}

fn ram(size: u64) -> Vec<E820Entry> {
    build_e820_map(&[(0, size, E820Type::Ram)]).unwrap()
}

fn mem(size: u64) -> GuestMemoryMmap {
    GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), size as usize)]).unwrap()
}

fn read32(m: &GuestMemoryMmap, addr: u64) -> u32 {
    m.read_obj(GuestAddress(addr)).unwrap()
}

fn read_string(m: &GuestMemoryMmap, addr: u32) -> String {
    let mut s = Vec::new();
    for a in u64::from(addr).. {
        match m.read_obj::<u8>(GuestAddress(a)).unwrap() {
            0 => break,
            b => s.push(b),
        }
    }
    String::from_utf8(s).unwrap()
}

#[test]
fn elf32_segments_land_at_their_physical_addresses_with_zeroed_bss() {
    // Text linked at 0xc0100000 (virtual) but loaded at 1 MiB; data with bss at 2 MiB.
    let image = elf(
        false,
        0xc010_0010,
        &[
            (1, 0x300, 0xc010_0000, MIB, 0x100, 0x100),
            (4, 0, 0, 0, 0, 0), // PT_NOTE: ignored
            (1, 0x400, 0xc020_0000, 2 * MIB, 0x80, 0x2000),
        ],
        0x500,
    );
    let e820 = ram(16 * MIB);
    let load = load_multiboot(&image, &MultibootConfig::new(&e820)).unwrap();
    let m = mem(16 * MIB);
    // Dirty the bss first: the loader must zero it.
    m.write_slice(&[0xff; 0x2000], GuestAddress(2 * MIB))
        .unwrap();
    load.write_to(&m).unwrap();

    assert_eq!(
        load.entry.eip, 0x10_0010,
        "the entry is translated to physical"
    );
    assert_eq!(load.image, MIB..2 * MIB + 0x2000);
    let mut text = [0u8; 0x100];
    m.read_slice(&mut text, GuestAddress(MIB)).unwrap();
    assert_eq!(text[..], image[0x300..0x400]);
    let mut data = vec![0u8; 0x2000];
    m.read_slice(&mut data, GuestAddress(2 * MIB)).unwrap();
    assert_eq!(data[..0x80], image[0x400..0x480]);
    assert!(data[0x80..].iter().all(|&b| b == 0), "bss is zeroed");
}

#[test]
fn elf64_is_loaded_too() {
    let image = elf(true, MIB + 4, &[(1, 0x300, MIB, MIB, 0x100, 0x1000)], 0x400);
    let e820 = ram(16 * MIB);
    let load = load_multiboot(&image, &MultibootConfig::new(&e820)).unwrap();
    assert_eq!(load.entry.eip, 0x10_0004);
    assert_eq!(load.image, MIB..MIB + 0x1000);
}

#[test]
fn aout_kludge_loads_the_file_from_load_addr_with_its_bss() {
    // Header at file offset 0 says: the file is loaded at 3 MiB, bss to 3 MiB + 64 KiB.
    let aout = Aout {
        bss_end_addr: (3 * MIB + 0x1_0000) as u32,
        load_end_addr: (3 * MIB + 0x100) as u32,
        ..Aout::at((3 * MIB) as u32)
    };
    let image = aout.image(0x200);
    let e820 = ram(16 * MIB);
    let load = load_multiboot(&image, &MultibootConfig::new(&e820)).unwrap();
    assert_eq!(load.image, 3 * MIB..3 * MIB + 0x1_0000);
    assert_eq!(load.writes[0].data, image[..0x100]);
    assert_eq!(load.writes[0].zero_len, 0x1_0000 - 0x100);
    assert_eq!(load.entry.eip, (3 * MIB + 32) as u32);
    assert_eq!(find_header(&image).unwrap().offset, 0);
}

#[test]
fn information_structure_holds_memory_map_command_line_and_modules() {
    let image = Aout::at(MIB as u32).image(0x1234);
    let e820 = build_e820_map(&[
        (0, 64 * MIB, E820Type::Ram),
        (0xfec0_0000, 0x1000, E820Type::Reserved),
    ])
    .unwrap();
    let initrd = vec![0x5a; 5000];
    let modules = [
        MultibootModule {
            data: &initrd,
            cmdline: "initrd",
        },
        MultibootModule {
            data: b"second",
            cmdline: "two",
        },
    ];
    let config = MultibootConfig {
        cmdline: "-smp 2 foo=bar",
        modules: &modules,
        loader_name: "vmm-reference",
        ..MultibootConfig::new(&e820)
    };
    let load = load_multiboot(&image, &config).unwrap();
    let m = mem(64 * MIB);
    load.write_to(&m).unwrap();

    let info = load.info_addr;
    assert_eq!(u64::from(load.entry.ebx), info);
    assert!(load.info_area.start >= load.image.end);
    assert_eq!(load.info_area.start % 4096, 0);
    let flags = read32(&m, info);
    assert_eq!(flags, 1 | 1 << 2 | 1 << 3 | 1 << 6 | 1 << 9);
    assert_eq!(read32(&m, info + 4), 0x9fc00 >> 10, "mem_lower in KiB");
    assert_eq!(
        read32(&m, info + 8),
        ((63 * MIB) >> 10) as u32,
        "mem_upper in KiB"
    );
    assert_eq!(read_string(&m, read32(&m, info + 16)), "-smp 2 foo=bar");
    assert_eq!(read_string(&m, read32(&m, info + 64)), "vmm-reference");

    // The memory map is the e820 table, 24 bytes per entry (size field 20).
    let (len, addr) = (read32(&m, info + 44), u64::from(read32(&m, info + 48)));
    assert_eq!(len as usize, e820.len() * 24);
    for (i, e) in e820.iter().enumerate() {
        let at = addr + i as u64 * 24;
        assert_eq!(read32(&m, at), 20);
        assert_eq!(m.read_obj::<u64>(GuestAddress(at + 4)).unwrap(), e.addr);
        assert_eq!(m.read_obj::<u64>(GuestAddress(at + 12)).unwrap(), e.size);
        assert_eq!(read32(&m, at + 20), e.kind.raw());
    }

    // Modules: page aligned, after the information, with their strings.
    assert_eq!(read32(&m, info + 20), 2);
    let mods = u64::from(read32(&m, info + 24));
    for (i, (module, range)) in modules.iter().zip(&load.modules).enumerate() {
        let entry = mods + i as u64 * 16;
        let (start, end) = (read32(&m, entry), read32(&m, entry + 4));
        assert_eq!((u64::from(start), u64::from(end)), (range.start, range.end));
        assert_eq!(start % 4096, 0);
        assert!(range.start >= load.image.end && range.end <= load.info_area.end);
        let mut got = vec![0u8; module.data.len()];
        m.read_slice(&mut got, GuestAddress(range.start)).unwrap();
        assert_eq!(got, module.data);
        assert_eq!(read_string(&m, read32(&m, entry + 8)), module.cmdline);
    }
}

#[test]
fn entry_state_is_flat_32bit_protected_mode_without_paging() {
    let image = Aout::at(MIB as u32).image(0x100);
    let e820 = ram(16 * MIB);
    let load = load_multiboot(&image, &MultibootConfig::new(&e820)).unwrap();
    let m = mem(16 * MIB);
    load.write_to(&m).unwrap();
    let entry = load.entry;

    let regs = entry.regs();
    assert_eq!(regs.rax, 0x2bad_b002);
    assert_eq!(regs.rbx, load.info_addr);
    assert_eq!(regs.rip, MIB + 32);
    assert_eq!(regs.rflags, 0x2, "IF = VM = 0");

    // KVM's reset state: real mode with CD|NW|ET.
    let reset = kvm_bindings::kvm_sregs {
        cr0: 0x6000_0010,
        efer: 1 << 8,
        ..Default::default()
    };
    let s = entry.sregs(&reset);
    assert_eq!(s.cr0, 0x11, "PE|ET, no PG, caches enabled");
    assert_eq!(s.efer, 0);
    assert_eq!((s.cs.base, s.cs.limit), (0, 0xffff_ffff));
    assert_eq!((s.cs.db, s.cs.l, s.cs.s, s.cs.type_), (1, 0, 1, 0xb));
    for seg in [s.ds, s.es, s.fs, s.gs, s.ss] {
        assert_eq!(
            (seg.base, seg.limit, seg.db, seg.type_),
            (0, 0xffff_ffff, 1, 3)
        );
    }
    // The GDT in guest memory holds exactly these segments.
    let raw = |sel: u16| {
        m.read_obj::<u64>(GuestAddress(s.gdt.base + u64::from(sel)))
            .unwrap()
    };
    assert_eq!(
        s.cs,
        kvm_segment_from_raw(raw(CODE32_SELECTOR), CODE32_SELECTOR)
    );
    assert_eq!(
        s.ss,
        kvm_segment_from_raw(raw(DATA32_SELECTOR), DATA32_SELECTOR)
    );
    assert_eq!(s.gdt.limit, 23);
    assert!(load.info_area.contains(&s.gdt.base));
}

/// Every error, with the one-line message a user sees.
#[test]
fn bad_images_give_one_line_errors() {
    let e820 = ram(64 * MIB);
    let base = MultibootConfig {
        mmio_hole: 0xc000_0000..0x1_0000_0000,
        ..MultibootConfig::new(&e820)
    };
    let big_ram = ram(0xc000_0000);
    let aout_at = |addr: u64| Aout::at(addr as u32).image(0x100);
    let mut unaligned = vec![0u8; 2];
    unaligned.extend(header(0));
    let mut beyond = vec![0u8; 8192];
    beyond.extend(header(0));
    let mut bad_checksum = header(0);
    bad_checksum[8] ^= 1;
    let mut not_elf = header(0);
    not_elf.resize(0x100, 0);
    let elf_ok = |phdrs: &[Phdr], len| elf(false, MIB, phdrs, len);
    let mut many_phdrs = elf_ok(&[(1, 0x300, MIB, MIB, 0x100, 0x100)], 0x300);
    many_phdrs[44] = 100; // e_phnum

    let rows: Vec<(&str, Vec<u8>, MultibootConfig, &str)> = vec![
        ("empty file", vec![], base.clone(), "no multiboot header (magic 0x1badb002 with a valid checksum, 4-byte aligned) in the first 8192 bytes"),
        ("bad checksum", bad_checksum, base.clone(), "no multiboot header (magic 0x1badb002 with a valid checksum, 4-byte aligned) in the first 8192 bytes"),
        ("unaligned magic", unaligned, base.clone(), "no multiboot header (magic 0x1badb002 with a valid checksum, 4-byte aligned) in the first 8192 bytes"),
        ("magic past 8 KiB", beyond, base.clone(), "no multiboot header (magic 0x1badb002 with a valid checksum, 4-byte aligned) in the first 8192 bytes"),
        ("unknown required flag", header(1 << 3), base.clone(), "the multiboot header requires flags 0x8 that this loader does not support"),
        ("address fields cut off", header(FLAG_AOUT_KLUDGE), base.clone(), "truncated image: the multiboot header address fields at file offset 0xc (0x14 bytes) ends past the 0xc-byte file"),
        ("a.out load range past the file", Aout { load_end_addr: (MIB + 0x1000) as u32, ..Aout::at(MIB as u32) }.image(0x100), base.clone(), "truncated image: the a.out kludge load range at file offset 0x0 (0x1000 bytes) ends past the 0x100-byte file"),
        ("header_addr below load_addr", Aout { header_addr: 0x1000, ..Aout::at(MIB as u32) }.image(0x100), base.clone(), "invalid load addresses: header_addr 0x1000 is below load_addr 0x100000"),
        ("load_addr before the file", Aout { load_addr: (MIB - 0x10) as u32, ..Aout::at(MIB as u32) }.image(0x100), base.clone(), "invalid load addresses: load_addr 0xffff0 is 0x10 bytes before the header, which is only 0x0 bytes into the file"),
        ("load_end below load_addr", Aout { load_end_addr: 0x10, ..Aout::at(MIB as u32) }.image(0x100), base.clone(), "invalid load addresses: load_end_addr 0x10 is below load_addr 0x100000"),
        ("bss_end below load_end", Aout { bss_end_addr: (MIB + 0x10) as u32, ..Aout::at(MIB as u32) }.image(0x100), base.clone(), "invalid load addresses: bss_end_addr 0x100010 is below the end of the loaded bytes 0x100100"),
        ("not ELF without flag 16", not_elf, base.clone(), "the multiboot header has no load addresses (flag 16) and the image is not an x86 ELF32/ELF64 executable"),
        ("ELF program headers past the file", many_phdrs, base.clone(), "truncated image: the ELF program header table at file offset 0x40 (0xc80 bytes) ends past the 0x300-byte file"),
        ("ELF segment past the file", elf_ok(&[(1, 0x300, MIB, MIB, 0x1000, 0x1000)], 0x400), base.clone(), "truncated image: the ELF segment at file offset 0x300 (0x1000 bytes) ends past the 0x400-byte file"),
        ("ELF filesz above memsz", elf_ok(&[(1, 0x300, MIB, MIB, 0x100, 0x10)], 0x400), base.clone(), "invalid load addresses: ELF segment at 0x100000 has p_filesz 0x100 above p_memsz 0x10"),
        ("ELF without PT_LOAD", elf_ok(&[(4, 0x300, MIB, MIB, 0x100, 0x100)], 0x400), base.clone(), "the image has no loadable segment"),
        ("segment outside RAM", aout_at(512 * MIB), base.clone(), "segment 0x20000000..0x20000100 is outside guest RAM (RAM ends at 0x4000000)"),
        ("segment straddling the end of RAM", aout_at(64 * MIB - 0x80), base.clone(), "segment 0x3ffff80..0x4000080 is outside guest RAM (RAM ends at 0x4000000)"),
        ("segment in the MMIO hole", aout_at(0xfee0_0000), base.clone(), "segment 0xfee00000..0xfee00100 overlaps the MMIO hole 0xc0000000..0x100000000"),
        ("segment in the legacy area", aout_at(0xa_0000), base.clone(), "segment 0xa0000..0xa0100 overlaps the Reserved range 0x9fc00..0x100000"),
        ("entry outside the image", Aout { entry_addr: 0x1000, ..Aout::at(MIB as u32) }.image(0x100), base.clone(), "entry point 0x1000 is not inside a loaded segment"),
        ("NUL in the command line", aout_at(MIB), MultibootConfig { cmdline: "a\0b", ..base.clone() }, "the command line contains a NUL byte"),
        ("no room after the image", aout_at(0xbfff_ff00), MultibootConfig { e820: &big_ram, ..base.clone() }, "no room below 4 GiB after the image for the multiboot information and modules (0x1000 bytes)"),
    ];
    for (name, image, config, want) in rows {
        let got = load_multiboot(&image, &config)
            .map(|l| format!("loaded at {:#x?}", l.image))
            .unwrap_or_else(|e| e.to_string());
        assert_eq!(got, want, "row: {name}");
        assert!(!got.contains('\n'), "row: {name}");
    }
}

#[test]
fn writing_into_too_little_memory_names_the_address() {
    let e820 = ram(64 * MIB);
    let load = load_multiboot(
        &Aout::at(MIB as u32).image(0x100),
        &MultibootConfig::new(&e820),
    )
    .unwrap();
    let err = load.write_to(&mem(MIB)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "writing 0x100 bytes at guest address 0x100000 failed"
    );
    assert!(matches!(err, MultibootError::WriteMemory { .. }));
    assert!(std::error::Error::source(&err).is_some());
}

proptest::proptest! {
    /// Any a.out fields and file length: no panic, and a successful load keeps
    /// the image, the information area and the modules apart and inside RAM.
    #[test]
    fn any_aout_fields_load_inside_ram_or_fail_cleanly(
        load in 0u32..0x500_0000,
        header_delta in 0u32..0x200,
        load_len in proptest::option::of(0u32..0x4000),
        bss in proptest::option::of(0u32..0x10_0000),
        entry_off in 0u32..0x5000,
        file_len in 0usize..0x3000,
        initrd_len in 0usize..0x3000,
    ) {
        let aout = Aout {
            header_addr: load.wrapping_add(header_delta),
            load_addr: load,
            load_end_addr: load_len.map_or(0, |l| load.wrapping_add(l)),
            bss_end_addr: bss.map_or(0, |b| load.wrapping_add(b)),
            entry_addr: load.wrapping_add(entry_off),
        };
        let mut image = vec![0u8; header_delta as usize & !3];
        image.extend(aout.image(file_len));
        let e820 = ram(64 * MIB);
        let initrd = vec![1u8; initrd_len];
        let modules = [MultibootModule { data: &initrd, cmdline: "initrd" }];
        let config = MultibootConfig { modules: &modules, ..MultibootConfig::new(&e820) };
        if let Ok(l) = load_multiboot(&image, &config) {
            proptest::prop_assert!(l.image.end <= l.info_area.start);
            proptest::prop_assert!(l.info_area.end <= 64 * MIB);
            for w in &l.writes {
                let r = w.range();
                proptest::prop_assert!(r.end <= l.image.end || l.info_area.start <= r.start);
            }
            proptest::prop_assert!(l.modules[0].start >= l.info_area.start);
            proptest::prop_assert!(l.modules[0].end <= l.info_area.end);
        }
    }
}

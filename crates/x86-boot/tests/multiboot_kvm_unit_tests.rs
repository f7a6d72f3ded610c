//! Loads every binary of a built kvm-unit-tests x86 suite with the multiboot
//! loader. The suite is built by `scripts/kvm-unit-tests`, which runs this
//! test with `KUT_DIR` set (`scripts/kvm-unit-tests --loader-test`); in a
//! plain `cargo test` it is ignored, and run with `--ignored` it fails
//! without `KUT_DIR`.

use std::path::PathBuf;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use x86_boot::e820::{build_e820_map, E820Type};
use x86_boot::multiboot::{find_header, load_multiboot, MultibootConfig, MultibootModule};

const RAM: u64 = 256 << 20;

fn read_c_string(mem: &GuestMemoryMmap, addr: u32) -> String {
    let mut out = Vec::new();
    let mut at = u64::from(addr);
    loop {
        let b: u8 = mem.read_obj(GuestAddress(at)).unwrap();
        if b == 0 {
            return String::from_utf8(out).unwrap();
        }
        out.push(b);
        at += 1;
    }
}

#[test]
#[ignore = "needs a built kvm-unit-tests suite in KUT_DIR (scripts/kvm-unit-tests --loader-test)"]
fn every_kvm_unit_tests_flat_loads() {
    let dir = PathBuf::from(
        std::env::var_os("KUT_DIR").expect("KUT_DIR must name a built kvm-unit-tests tree"),
    );
    let mut flats: Vec<PathBuf> = std::fs::read_dir(dir.join("x86"))
        .expect("KUT_DIR/x86 is readable")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "flat"))
        .collect();
    flats.sort();
    assert!(
        flats.len() >= 40,
        "only {} x86/*.flat files in {}",
        flats.len(),
        dir.display()
    );

    let e820 = build_e820_map(&[(0, RAM, E820Type::Ram)]).unwrap();
    let environ = b"TARGET=qemu\nQEMU_ACCEL=kvm\n";
    let modules = [MultibootModule {
        data: environ,
        cmdline: "environ",
    }];
    let config = MultibootConfig {
        cmdline: "arg1 arg2",
        modules: &modules,
        mmio_hole: 0xc000_0000..0x1_0000_0000,
        ..MultibootConfig::new(&e820)
    };
    for path in &flats {
        let name = path.file_name().unwrap().to_string_lossy();
        let image = std::fs::read(path).unwrap();
        // The README's claim: ELF32 with a multiboot header, no a.out kludge.
        assert_eq!(&image[..5], b"\x7fELF\x01", "{name} is not ELF32");
        let header = find_header(&image).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(header.aout, None, "{name}");

        let load = load_multiboot(&image, &config).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
        load.write_to(&mem).unwrap();

        assert!(load.image.contains(&u64::from(load.entry.eip)), "{name}");
        assert!(load.image.end <= load.info_area.start, "{name}");
        let info = load.info_addr;
        let word = |off: u64| mem.read_obj::<u32>(GuestAddress(info + off)).unwrap();
        assert_eq!(
            word(8),
            ((RAM - (1 << 20)) >> 10) as u32,
            "{name} mem_upper"
        );
        assert_eq!(read_c_string(&mem, word(16)), "arg1 arg2", "{name}");
        assert_eq!(word(20), 1, "{name} mods_count");
        let module = word(24);
        let start = mem
            .read_obj::<u32>(GuestAddress(u64::from(module)))
            .unwrap();
        let end = mem
            .read_obj::<u32>(GuestAddress(u64::from(module) + 4))
            .unwrap();
        let mut got = vec![0u8; (end - start) as usize];
        mem.read_slice(&mut got, GuestAddress(u64::from(start)))
            .unwrap();
        assert_eq!(got, environ, "{name} module 0");
        println!(
            "{name}: image {:#x}..{:#x} entry {:#x} info {:#x}",
            load.image.start, load.image.end, load.entry.eip, info
        );
    }
    println!("{} images loaded", flats.len());
}

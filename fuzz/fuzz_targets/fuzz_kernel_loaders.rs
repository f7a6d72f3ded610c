#![no_main]
//! The kernel loaders: the Multiboot loader (`find_header`, `load_multiboot` over an
//! e820 map of 8 MiB RAM with the EBDA/BIOS hole, then `write_to` guest memory) and the
//! Linux loaders (`detect_format`, and `load_kernel` for ELF vmlinux and bzImage, from
//! the input written to a temporary file). Errors are fine; a panic is not, and a plan
//! `load_multiboot` accepts lies in RAM and is written without error.
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vm_memory::{GuestAddress, GuestMemoryMmap};
use x86_boot::e820::{build_e820_map, E820Entry, E820Type};
use x86_boot::linux::loader::{detect_format, load_kernel};
use x86_boot::multiboot::{find_header, load_multiboot, MultibootConfig, MultibootModule};

const RAM: u64 = 8 << 20;

struct Fixture {
    mem: GuestMemoryMmap,
    e820: Vec<E820Entry>,
    kernel_file: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| Fixture {
        mem: GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM as usize)])
            .expect("8 MiB of guest memory"),
        e820: build_e820_map(&[(0, RAM, E820Type::Ram)]).expect("one RAM range"),
        kernel_file: std::env::temp_dir()
            .join(format!("fuzz_kernel_loaders.{}.bin", std::process::id())),
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();

    let _ = find_header(data);
    let module_len = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let modules = [MultibootModule {
        data: &data[..module_len],
        cmdline: "initrd",
    }];
    let mut config = MultibootConfig::new(&f.e820);
    config.cmdline = "console=ttyS0";
    config.modules = &modules;
    if let Ok(load) = load_multiboot(data, &config) {
        assert!(load.image.end <= RAM, "{:?}", load.image);
        if let Err(e) = load.write_to(&f.mem) {
            panic!("an accepted plan could not be written: {e}");
        }
    }

    let _ = detect_format(data);
    if std::fs::write(&f.kernel_file, data).is_ok() {
        let _ = load_kernel(&f.mem, &f.kernel_file);
    }
});

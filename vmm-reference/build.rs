//! Link flags for the `vmm-reference` binary.
//!
//! On x86-64 GNU/Linux the binary packs its relative relocations (`DT_RELR`, binutils
//! 2.38 and glibc 2.36 or later; Debian 12 has both). A position-independent Rust
//! program carries one 24-byte `R_X86_64_RELATIVE` entry per pointer in its static data
//! (every `&str` in a table, every vtable slot): about 4,000 here, 98 KiB that the
//! dynamic loader reads at every start. Packed, they take 1.2 KiB. The start-up RSS goes
//! down by about 90 KiB (docs/PERFORMANCE.md); the binary still loads at a random address.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if os == "linux" && env == "gnu" && arch == "x86_64" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}

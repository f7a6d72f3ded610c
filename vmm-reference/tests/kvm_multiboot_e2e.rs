//! Multiboot kernels end to end: hand-made images with the header's a.out addresses (the
//! kvm-unit-tests binaries themselves run in scripts/kvm-unit-tests). Needs /dev/kvm.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MAGIC: u32 = 0x1bad_b002;
/// Flag bit 16: the header's address fields are valid (the a.out kludge).
const AOUT_KLUDGE: u32 = 1 << 16;
const HEADER_LEN: u32 = 32;

/// A Multiboot image loaded at `load_addr` whose entry is the code after the header.
/// `load_end` 0 loads the whole file.
fn image(load_addr: u32, load_end: u32, code: &[u8]) -> Vec<u8> {
    let checksum = 0u32.wrapping_sub(MAGIC).wrapping_sub(AOUT_KLUDGE);
    let words = [
        MAGIC,
        AOUT_KLUDGE,
        checksum,
        load_addr, // header_addr: the header is at the start of the loaded image
        load_addr,
        load_end,
        0, // bss_end_addr: no bss
        load_addr + HEADER_LEN,
    ];
    let mut img: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    img.extend_from_slice(code);
    img
}

/// 32-bit code: write `value` to isa-debug-exit (port 0xf4), then halt.
fn debug_exit(value: u8) -> Vec<u8> {
    vec![0xb0, value, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd]
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn run(kernel: &Path, extra: &[&str]) -> Output {
    vmm_reference::testing::require_kvm();
    Command::new(env!("CARGO_BIN_EXE_vmm-reference"))
        .arg("--kernel")
        .arg(kernel)
        .args(["--timeout", "20", "-m", "128M"])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn kvm_isa_debug_exit_status_is_qemus() {
    let dir = tempfile::tempdir().unwrap();
    for (value, status) in [(0u8, 1), (3, 7), (0x7f, 0xff)] {
        let kernel = write(
            dir.path(),
            "exit.bin",
            &image(0x10_0000, 0, &debug_exit(value)),
        );
        let out = run(&kernel, &["--smp", "2"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(status), "value {value}: {stderr}");
        assert!(stderr.contains("isa-debug-exit"), "{stderr}");
    }
}

#[test]
fn kvm_bad_multiboot_images_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let code = debug_exit(0);
    let rows: [(&str, Vec<u8>); 3] = [
        // The header says the image ends 64 KiB after its start: the file is shorter.
        ("truncated", image(0x10_0000, 0x11_0000, &code)),
        // 1 GiB is past the 128 MiB of RAM.
        ("outside-ram", image(0x4000_0000, 0, &code)),
        // The local APIC's page, in the 32-bit MMIO hole.
        ("mmio-hole", image(0xfee0_0000, 0, &code)),
    ];
    for (name, bytes) in &rows {
        let kernel = write(dir.path(), name, bytes);
        let out = run(&kernel, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let errors: Vec<&str> = stderr.lines().filter(|l| !l.contains("warning:")).collect();
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert_eq!(errors.len(), 1, "{name}: {stderr}");
        assert!(
            errors[0].starts_with("vmm-reference: --kernel"),
            "{name}: {stderr}"
        );
    }
}

/// What a BIOS leaves behind, read by the guest: the BSP's LAPIC with LINT0 in
/// virtual-wire ExtINT mode (`0x8700`) and enabled (`SVR` `0x1ff`), and no 8259 line
/// masked. Exit value 0 when all hold, 1 otherwise.
#[test]
fn kvm_multiboot_bsp_starts_in_virtual_wire_mode() {
    #[rustfmt::skip]
    let mut code = vec![
        0xa1, 0x50, 0x03, 0xe0, 0xfe, // mov eax, [0xfee00350] (LVT0)
        0x3d, 0x00, 0x87, 0x00, 0x00, // cmp eax, 0x8700
        0x75, 0x1d,                   // jne fail
        0xa1, 0xf0, 0x00, 0xe0, 0xfe, // mov eax, [0xfee000f0] (SVR)
        0x3d, 0xff, 0x01, 0x00, 0x00, // cmp eax, 0x1ff
        0x75, 0x11,                   // jne fail
        0xe4, 0x21,                   // in al, 0x21 (master IMR)
        0x88, 0xc4,                   // mov ah, al
        0xe4, 0xa1,                   // in al, 0xa1 (slave IMR)
        0x08, 0xe0,                   // or al, ah
        0x75, 0x07,                   // jnz fail
    ];
    code.extend(debug_exit(0));
    code.extend(debug_exit(1)); // fail:
    let dir = tempfile::tempdir().unwrap();
    let kernel = write(dir.path(), "bios.bin", &image(0x10_0000, 0, &code));
    let out = run(&kernel, &["--smp", "2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
}

/// `-machine q35,kernel-irqchip=split -device intel-iommu,... -device edu`: the guest
/// finds edu (1234:11e8) at 00:01.0 through configuration mechanism #1 and reads VT-d's
/// version register (0x10) at 0xfed90000, then exits with 0 (status 1); anything else
/// exits with 1 (status 3). Without the PCI part (a plain `pc`, or q35 without edu) the
/// reads return all ones.
#[test]
fn kvm_q35_has_edu_on_pci_and_the_vtd_registers() {
    #[rustfmt::skip]
    let mut code = vec![
        0xb8, 0x00, 0x08, 0x00, 0x80, // mov eax, 0x80000800 (00:01.0, register 0)
        0x66, 0xba, 0xf8, 0x0c,       // mov dx, 0xcf8
        0xef,                         // out dx, eax
        0x66, 0xba, 0xfc, 0x0c,       // mov dx, 0xcfc
        0xed,                         // in eax, dx
        0x3d, 0x34, 0x12, 0xe8, 0x11, // cmp eax, 0x11e81234
        0x75, 0x11,                   // jne fail
        0xa1, 0x00, 0x00, 0xd9, 0xfe, // mov eax, [0xfed90000] (VT-d VER)
        0x83, 0xf8, 0x10,             // cmp eax, 0x10
        0x75, 0x07,                   // jne fail
    ];
    code.extend(debug_exit(0));
    code.extend(debug_exit(1)); // fail:
    let dir = tempfile::tempdir().unwrap();
    let kernel = write(dir.path(), "q35.bin", &image(0x10_0000, 0, &code));
    let q35 = ["-M", "q35,kernel-irqchip=split"];
    let iommu = ["-device", "intel-iommu,intremap=on,eim=off"];
    let edu = ["-device", "edu"];
    for (args, status) in [
        ([&q35[..], &iommu, &edu].concat(), 1),
        ([&q35[..], &iommu].concat(), 3),
        ([&q35[..], &edu].concat(), 3),
        (Vec::new(), 3),
    ] {
        let out = run(&kernel, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(status), "{args:?}: {stderr}");
    }
}

/// ACPI S3 as kvm-unit-tests' s3 enters it: the guest follows the RSDP at 0xe0000 to the
/// XSDT's first table (the FADT), writes a real-mode waking vector into the FACS the
/// FADT names, and sets `SLP_TYP` 1 with `SLP_EN` in the FADT's PM1a control block.
/// The resumed guest exits with 0x2a; a guest that is not suspended exits with 1.
#[test]
fn kvm_multiboot_guest_resumes_from_s3_at_its_facs_waking_vector() {
    #[rustfmt::skip]
    let mut code = vec![
        0xa1, 0x18, 0x00, 0x0e, 0x00,             // mov eax, [0xe0018] (RSDP.XsdtAddress)
        0x8b, 0x40, 0x24,                         // mov eax, [eax+36] (XSDT entry 0: FADT)
        0x8b, 0x58, 0x24,                         // mov ebx, [eax+36] (FADT.FIRMWARE_CTRL)
        0xc7, 0x43, 0x0c, 0x00, 0x10, 0x00, 0x00, // mov dword [ebx+12], 0x1000
        // The real-mode code at 0x1000: mov al, 0x2a; out 0xf4, al; hlt.
        0xc7, 0x05, 0x00, 0x10, 0x00, 0x00, 0xb0, 0x2a, 0xe6, 0xf4,
        0xc6, 0x05, 0x04, 0x10, 0x00, 0x00, 0xf4,
        0x8b, 0x50, 0x40,                         // mov edx, [eax+64] (FADT.PM1a_CNT_BLK)
        0x66, 0xb8, 0x00, 0x24,                   // mov ax, 0x2400 (SLP_TYP 1, SLP_EN)
        0x66, 0xef,                               // out dx, ax
    ];
    code.extend(debug_exit(1));
    let dir = tempfile::tempdir().unwrap();
    let kernel = write(dir.path(), "s3.bin", &image(0x10_0000, 0, &code));
    let out = run(&kernel, &["--smp", "2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some((0x2a << 1) | 1), "{stderr}");
}

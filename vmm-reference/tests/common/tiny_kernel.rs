//! Tiny "kernels" for end-to-end tests: a minimal ELF64 `vmlinux` around hand-encoded
//! 64-bit machine code, bootable with `--kernel` in well under a second.
//!
//! Use it from an integration test with
//!
//! ```ignore
//! #[path = "common/tiny_kernel.rs"]
//! mod tiny_kernel;
//! use tiny_kernel::{asm, write_tiny_kernel};
//!
//! let code = asm::program(&[&asm::com1_print(b"hi\n"), &asm::power_off(), &asm::HLT_LOOP]);
//! let kernel = write_tiny_kernel(dir.path(), &code);
//! ```
//!
//! What the loader (`vmm-reference/src/linux/loader.rs`) and the boot path give the code:
//! the ELF is loaded by its one `PT_LOAD` segment at [`LOAD_ADDR`] (16 MiB, above the 1 MiB
//! the 64-bit boot protocol needs) and the BSP enters at the ELF entry (the first byte of
//! `code`) in 64-bit mode with paging on (x86-boot's identity map of the low 4 GiB), flat
//! segments, interrupts off, `RSP` on a boot stack and `RSI` pointing at the zero page.
//! The APs wait for INIT/SIPI and never run.
//!
//! Ring-0 guest code is emulated on hosts without hardware virtualization (about 2 million
//! instructions per second, 10 us per port exit): keep programs short and end them with
//! [`asm::HLT_LOOP`] rather than a spin.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Guest-physical address (and virtual: the map is the identity) of the code.
pub const LOAD_ADDR: u64 = 0x100_0000;
/// COM1's first port (transmit/receive holding register).
pub const COM1: u16 = 0x3f8;
/// COM1's line status register (bit 0: data ready).
pub const COM1_LSR: u16 = 0x3fd;
/// x86-boot's ACPI sleep control register (`PowerConfig::default()`).
pub const SLEEP_CONTROL: u16 = 0x3c0;
/// `SLP_TYP` 5 (`\_S5_`) << 2 | `SLP_EN`: what Linux writes to power off.
pub const S5_POWER_OFF: u8 = 0x34;
/// x86-boot's ACPI reset register and the value that resets.
pub const RESET_REGISTER: u16 = 0x3c2;
/// `FADT.RESET_VALUE`.
pub const RESET_VALUE: u8 = 0x01;

/// A minimal ELF64 x86-64 executable: one read+execute `PT_LOAD` segment holding `code`
/// at [`LOAD_ADDR`], entry at its first byte, no sections.
pub fn elf(code: &[u8]) -> Vec<u8> {
    const EHDR: u16 = 64;
    const PHDR: u16 = 56;
    let offset = u64::from(EHDR + PHDR);
    let size = code.len() as u64;
    let mut e = Vec::with_capacity(usize::from(EHDR + PHDR) + code.len());
    e.extend_from_slice(b"\x7fELF");
    e.extend_from_slice(&[2, 1, 1, 0]); // ELFCLASS64, little endian, EV_CURRENT, System V
    e.extend_from_slice(&[0; 8]); // ABI version, padding
    e.extend_from_slice(&2u16.to_le_bytes()); // e_type: ET_EXEC
    e.extend_from_slice(&0x3eu16.to_le_bytes()); // e_machine: EM_X86_64
    e.extend_from_slice(&1u32.to_le_bytes()); // e_version
    e.extend_from_slice(&LOAD_ADDR.to_le_bytes()); // e_entry
    e.extend_from_slice(&u64::from(EHDR).to_le_bytes()); // e_phoff
    e.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    e.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    e.extend_from_slice(&EHDR.to_le_bytes()); // e_ehsize
    e.extend_from_slice(&PHDR.to_le_bytes()); // e_phentsize
    e.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    e.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    e.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    e.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    assert_eq!(e.len(), usize::from(EHDR));
    e.extend_from_slice(&1u32.to_le_bytes()); // p_type: PT_LOAD
    e.extend_from_slice(&5u32.to_le_bytes()); // p_flags: R+X
    e.extend_from_slice(&offset.to_le_bytes()); // p_offset
    e.extend_from_slice(&LOAD_ADDR.to_le_bytes()); // p_vaddr
    e.extend_from_slice(&LOAD_ADDR.to_le_bytes()); // p_paddr
    e.extend_from_slice(&size.to_le_bytes()); // p_filesz
    e.extend_from_slice(&size.to_le_bytes()); // p_memsz
    e.extend_from_slice(&0x1000u64.to_le_bytes()); // p_align
    e.extend_from_slice(code);
    e
}

/// Write [`elf`]`(code)` to a new file in `dir` (`tiny-vmlinux-N`) and return its path.
pub fn write_tiny_kernel(dir: &Path, code: &[u8]) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = dir.join(format!(
        "tiny-vmlinux-{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, elf(code))
        .unwrap_or_else(|e| panic!("write the tiny kernel {}: {e}", path.display()));
    path
}

/// Hand-encoded 64-bit instructions (no assembler needed). Every helper is
/// position-independent, so programs are plain concatenations.
pub mod asm {
    use super::{COM1, COM1_LSR, RESET_REGISTER, RESET_VALUE, S5_POWER_OFF, SLEEP_CONTROL};

    /// `hlt; jmp .-1`: stop for good (interrupts are off), one exit, no spinning.
    pub const HLT_LOOP: [u8; 3] = [0xf4, 0xeb, 0xfd];
    /// `pause; jmp .-2`: spin forever (emulated and slow at ring 0: prefer [`HLT_LOOP`]).
    pub const PAUSE_LOOP: [u8; 4] = [0xf3, 0x90, 0xeb, 0xfc];
    /// `ud2`: with no IDT the guest triple-faults (a "guest stopped" report).
    pub const UD2: [u8; 2] = [0x0f, 0x0b];

    /// `mov dx, port`.
    pub fn mov_dx(port: u16) -> Vec<u8> {
        let [lo, hi] = port.to_le_bytes();
        vec![0x66, 0xba, lo, hi]
    }

    /// `mov dx, port; mov al, value; out dx, al`.
    pub fn outb(port: u16, value: u8) -> Vec<u8> {
        let mut c = mov_dx(port);
        c.extend_from_slice(&[0xb0, value, 0xee]);
        c
    }

    /// Write `bytes` to `port`, one `out` per byte.
    pub fn out_str(port: u16, bytes: &[u8]) -> Vec<u8> {
        let mut c = mov_dx(port);
        for &b in bytes {
            c.extend_from_slice(&[0xb0, b, 0xee]); // mov al, b; out dx, al
        }
        c
    }

    /// Print `bytes` on COM1 (the UART accepts a byte per write without waiting).
    pub fn com1_print(bytes: &[u8]) -> Vec<u8> {
        out_str(COM1, bytes)
    }

    /// ACPI power off: S5 to the sleep control register, as Linux's `poweroff` does.
    pub fn power_off() -> Vec<u8> {
        outb(SLEEP_CONTROL, S5_POWER_OFF)
    }

    /// ACPI reset: the reset value to the FADT's reset register (`reboot=acpi`).
    pub fn acpi_reset() -> Vec<u8> {
        outb(RESET_REGISTER, RESET_VALUE)
    }

    /// Keyboard-controller reset (`reboot=k`): `0xfe` to port `0x64`.
    pub fn i8042_reset() -> Vec<u8> {
        vec![0xb0, 0xfe, 0xe6, 0x64] // mov al, 0xfe; out 0x64, al
    }

    /// Echo COM1 input back to COM1, polling the line status register, until the byte
    /// `stop` has been received (and echoed); then fall through to the next code.
    pub fn com1_echo_until(stop: u8) -> Vec<u8> {
        let mut c = mov_dx(COM1_LSR); // loop:
        c.push(0xec); // in al, dx
        c.extend_from_slice(&[0xa8, 0x01]); // test al, 1 (data ready)
        c.extend_from_slice(&[0x74, 0x00]); // jz loop (patched)
        let jz = c.len() - 1;
        c[jz] = (-(c.len() as i8)) as u8;
        c.extend_from_slice(&mov_dx(COM1));
        c.extend_from_slice(&[0xec, 0xee]); // in al, dx; out dx, al
        c.extend_from_slice(&[0x3c, stop]); // cmp al, stop
        c.extend_from_slice(&[0x75, 0x00]); // jne loop (patched)
        let jne = c.len() - 1;
        c[jne] = (-(c.len() as i8)) as u8;
        c
    }

    /// Concatenate pieces into one program.
    pub fn program(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }
}

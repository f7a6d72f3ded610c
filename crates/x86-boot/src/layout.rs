//! A guest-physical memory map for booting Linux through the 64-bit boot
//! protocol, in the spirit of Firecracker and Cloud Hypervisor. Every address
//! here is a default: the functions of this crate take addresses as inputs.
//!
//! ```text
//! 0x0000_0500  GDT (crate::gdt, 5 entries)
//! 0x0000_7000  zero page (boot_params), 4 KiB          -> RSI at entry
//! 0x0000_8ff0  initial stack pointer (grows down below 0x9000)
//! 0x0000_9000  identity page tables (crate::paging; 6 pages for 4 GiB)
//! 0x0002_0000  kernel command line, up to 64 KiB
//! 0x0009_fc00  ------- reserved in e820 up to 0x10_0000 -------
//! 0x000a_0000  ACPI tables (DSDT, FACP, APIC, SRAT, SLIT, XSDT), 256 KiB
//! 0x000e_0000  RSDP (Linux scans 0xe0000..0x100000; also boot_params.acpi_rsdp_addr)
//! 0x000f_0000  MP floating pointer + configuration table (Linux scans 0xf0000..)
//! 0x0010_0000  RAM; vmlinux is loaded at its ELF physical address (usually 16 MiB)
//! ...          initrd: near the top of low RAM, below the 32-bit MMIO hole
//! ```

/// GDT address.
pub const GDT_ADDR: u64 = 0x500;
/// Zero page (`boot_params`) address.
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// Initial RSP/RBP.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// First page of the identity page tables (PML4).
pub const PML4_ADDR: u64 = 0x9000;
/// Kernel command-line address.
pub const CMDLINE_ADDR: u64 = 0x2_0000;
/// Largest command line (including the NUL) that fits before the next item.
pub const CMDLINE_MAX_SIZE: u64 = 0x1_0000;
/// Start of the reserved legacy area (EBDA onwards).
pub const LEGACY_RESERVED_START: u64 = crate::e820::EBDA_START;
/// ACPI tables area start.
pub const ACPI_TABLES_START: u64 = crate::acpi::TABLES_DEFAULT_START;
/// ACPI tables area end (exclusive).
pub const ACPI_TABLES_END: u64 = crate::acpi::TABLES_DEFAULT_END;
/// RSDP address.
pub const RSDP_ADDR: u64 = crate::acpi::RSDP_DEFAULT_ADDR;
/// MP table address.
pub const MPTABLE_ADDR: u64 = crate::mptable::MPTABLE_DEFAULT_ADDR;
/// End of the reserved legacy area; RAM for the kernel starts here.
pub const HIGH_MEMORY_START: u64 = crate::e820::LEGACY_END;

// The command line ends before the reserved area; a 254-CPU MP table ends
// before 1 MiB.
const _: () = assert!(CMDLINE_ADDR + CMDLINE_MAX_SIZE <= LEGACY_RESERVED_START);
const _: () = assert!(MPTABLE_ADDR + 16 + 44 + 254 * 20 + 19 * 8 <= HIGH_MEMORY_START);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::long_mode::LongModeLayout;
    use vm_memory::GuestAddress;

    #[test]
    fn items_do_not_overlap() {
        let tables = LongModeLayout {
            gdt_addr: GuestAddress(GDT_ADDR),
            pml4_addr: GuestAddress(PML4_ADDR),
            identity_map_size: 4 << 30,
        }
        .page_table_footprint()
        .unwrap();
        let mut items = [
            (GDT_ADDR, 5 * 8),
            (ZERO_PAGE_ADDR, 4096),
            // The stack grows down from 0x8ff0 through the page after the zero page.
            (
                ZERO_PAGE_ADDR + 4096,
                BOOT_STACK_POINTER - (ZERO_PAGE_ADDR + 4096),
            ),
            (PML4_ADDR, tables),
            (CMDLINE_ADDR, CMDLINE_MAX_SIZE),
            (ACPI_TABLES_START, ACPI_TABLES_END - ACPI_TABLES_START),
            (RSDP_ADDR, 36),
            // An MP table for 254 CPUs.
            (MPTABLE_ADDR, 16 + 44 + 254 * 20 + 19 * 8),
        ];
        items.sort();
        for w in items.windows(2) {
            assert!(
                w[0].0 + w[0].1 <= w[1].0,
                "{:#x?} overlaps {:#x?}",
                w[0],
                w[1]
            );
        }
        for (addr, _) in &items[5..] {
            assert!((LEGACY_RESERVED_START..HIGH_MEMORY_START).contains(addr));
        }
    }
}

//! Entry state for starting a vCPU directly in 64-bit long mode.
//!
//! [`write_long_mode_tables`] puts the GDT and the identity page tables into
//! guest memory; [`long_mode_sregs`] turns the special registers KVM gave a
//! fresh vCPU into 64-bit CPL0 state using them. Together with RIP/RSP this
//! is enough to run 64-bit code on every vCPU at once, without INIT/SIPI and
//! without a real-mode trampoline.
//!
//! No IDT is installed (limit 0): any exception escalates to a triple fault,
//! which KVM reports as `KVM_EXIT_SHUTDOWN`. That is the right behaviour for
//! small test guests; an OS loads its own IDT.

use kvm_bindings::{kvm_dtable, kvm_sregs};
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryError};

use crate::gdt::{Gdt, KERNEL_CODE64_SELECTOR, KERNEL_DATA_SELECTOR};
use crate::paging::{self, PagingError};

/// CR0.PE: protected mode.
pub const CR0_PE: u64 = 1 << 0;
/// CR0.ET: extension type (hard-wired to 1 on modern CPUs).
pub const CR0_ET: u64 = 1 << 4;
/// CR0.NE: native x87 error reporting.
pub const CR0_NE: u64 = 1 << 5;
/// CR0.NW: not write-through (cleared).
pub const CR0_NW: u64 = 1 << 29;
/// CR0.CD: cache disable (cleared).
pub const CR0_CD: u64 = 1 << 30;
/// CR0.PG: paging.
pub const CR0_PG: u64 = 1 << 31;
/// CR4.PAE: physical address extension, required for long mode.
pub const CR4_PAE: u64 = 1 << 5;
/// CR4.OSFXSR: OS supports FXSAVE/FXRSTOR (enables SSE instructions).
pub const CR4_OSFXSR: u64 = 1 << 9;
/// CR4.OSXMMEXCPT: OS handles SIMD floating-point exceptions.
pub const CR4_OSXMMEXCPT: u64 = 1 << 10;
/// EFER.SCE: SYSCALL/SYSRET enable.
pub const EFER_SCE: u64 = 1 << 0;
/// EFER.LME: long mode enable.
pub const EFER_LME: u64 = 1 << 8;
/// EFER.LMA: long mode active.
pub const EFER_LMA: u64 = 1 << 10;

/// Where the long-mode structures live in guest-physical memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongModeLayout {
    /// Base of the GDT (8-byte aligned; a page of its own is customary).
    pub gdt_addr: GuestAddress,
    /// Base of the page-table block (4 KiB aligned), see [`paging`].
    pub pml4_addr: GuestAddress,
    /// Bytes identity-mapped from address 0 (rounded up to whole GiB).
    /// At least 4 GiB is usual so the 32-bit MMIO hole is mapped too.
    pub identity_map_size: u64,
}

impl LongModeLayout {
    /// Bytes the page tables take at `pml4_addr`.
    pub fn page_table_footprint(&self) -> Result<u64, LongModeError> {
        Ok(paging::identity_map_footprint(self.identity_map_size)?)
    }
}

/// Errors from setting up long mode.
#[derive(Debug, thiserror::Error)]
pub enum LongModeError {
    /// Building the page tables failed.
    #[error("building the identity page tables failed")]
    PageTables(#[from] PagingError),
    /// The GDT base is not 8-byte aligned.
    #[error("GDT address {0:#x} is not 8-byte aligned")]
    MisalignedGdt(u64),
    /// Writing the GDT into guest memory failed.
    #[error("writing the GDT at {addr:#x} into guest memory failed")]
    WriteGdt {
        /// GDT base.
        addr: u64,
        /// Cause.
        #[source]
        source: GuestMemoryError,
    },
}

/// Writes the standard GDT and the identity page tables; returns the CR3 value.
pub fn write_long_mode_tables<M: GuestMemory + ?Sized>(
    mem: &M,
    layout: &LongModeLayout,
) -> Result<u64, LongModeError> {
    let gdt_addr = layout.gdt_addr.0;
    if gdt_addr % 8 != 0 {
        return Err(LongModeError::MisalignedGdt(gdt_addr));
    }
    mem.write_slice(&Gdt::standard_64bit().to_bytes(), layout.gdt_addr)
        .map_err(|source| LongModeError::WriteGdt {
            addr: gdt_addr,
            source,
        })?;
    Ok(paging::write_identity_map(
        mem,
        layout.pml4_addr,
        layout.identity_map_size,
    )?)
}

/// Returns `base` (the vCPU's current sregs from `KVM_GET_SREGS`) changed to
/// 64-bit CPL0 state over the tables of `layout`.
///
/// CR0 gets PE|ET|NE|PG with CD/NW cleared, CR4 gets PAE|OSFXSR|OSXMMEXCPT,
/// EFER gets SCE|LME|LMA; CS is the kernel code64 segment, DS/ES/FS/GS/SS the
/// kernel data segment; the IDT limit is 0. TR, LDT, APIC base and the other
/// CR0/CR4 bits stay as KVM gave them.
pub fn long_mode_sregs(base: &kvm_sregs, layout: &LongModeLayout) -> kvm_sregs {
    let gdt = Gdt::standard_64bit();
    let mut s = *base;
    // The standard table always holds these selectors.
    let code = gdt.segment(KERNEL_CODE64_SELECTOR).unwrap_or_default();
    let data = gdt.segment(KERNEL_DATA_SELECTOR).unwrap_or_default();
    s.cs = code;
    s.ds = data;
    s.es = data;
    s.fs = data;
    s.gs = data;
    s.ss = data;
    s.gdt = kvm_dtable {
        base: layout.gdt_addr.0,
        limit: gdt.limit(),
        padding: [0; 3],
    };
    s.idt = kvm_dtable {
        base: 0,
        limit: 0,
        padding: [0; 3],
    };
    s.cr0 = (s.cr0 | CR0_PE | CR0_ET | CR0_NE | CR0_PG) & !(CR0_CD | CR0_NW);
    s.cr4 |= CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    s.cr3 = layout.pml4_addr.0;
    s.efer |= EFER_SCE | EFER_LME | EFER_LMA;
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gdt::kvm_segment_from_raw;
    use kvm_bindings::kvm_segment;
    use vm_memory::GuestMemoryMmap;

    fn layout() -> LongModeLayout {
        LongModeLayout {
            gdt_addr: GuestAddress(0x1000),
            pml4_addr: GuestAddress(0x2000),
            identity_map_size: 4 << 30,
        }
    }

    /// KVM's reset state for a vCPU (real mode, CD|NW|ET set).
    fn reset_sregs() -> kvm_sregs {
        let seg = kvm_segment {
            base: 0,
            limit: 0xffff,
            type_: 3,
            present: 1,
            s: 1,
            ..Default::default()
        };
        kvm_sregs {
            cs: kvm_segment {
                base: 0xffff_0000,
                selector: 0xf000,
                type_: 0xb,
                ..seg
            },
            ds: seg,
            es: seg,
            fs: seg,
            gs: seg,
            ss: seg,
            tr: kvm_segment {
                type_: 0xb,
                present: 1,
                limit: 0xffff,
                ..Default::default()
            },
            ldt: kvm_segment {
                type_: 2,
                present: 1,
                limit: 0xffff,
                ..Default::default()
            },
            cr0: 0x6000_0010,
            apic_base: 0xfee0_0900,
            ..Default::default()
        }
    }

    #[test]
    fn written_gdt_decodes_to_the_segments_in_sregs() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let cr3 = write_long_mode_tables(&mem, &layout()).unwrap();
        let s = long_mode_sregs(&reset_sregs(), &layout());
        assert_eq!(s.cr3, cr3);
        let raw = |sel: u16| {
            mem.read_obj::<u64>(GuestAddress(s.gdt.base + u64::from(sel & !7)))
                .unwrap()
        };
        assert_eq!(s.cs, kvm_segment_from_raw(raw(s.cs.selector), 0x08));
        for seg in [s.ds, s.es, s.fs, s.gs, s.ss] {
            assert_eq!(seg, kvm_segment_from_raw(raw(seg.selector), 0x10));
        }
        assert_eq!((s.cs.l, s.cs.db, s.cs.dpl), (1, 0, 0));
        assert_eq!((s.gdt.base, s.gdt.limit), (0x1000, 39));
        assert_eq!(s.idt.limit, 0);
        // The PML4 points at the PDPT with P|RW|US.
        let pml4e = mem.read_obj::<u64>(GuestAddress(cr3)).unwrap();
        assert_eq!(pml4e, 0x3000 | 0x7);
    }

    #[test]
    fn control_registers_enable_long_mode_and_sse() {
        let s = long_mode_sregs(&reset_sregs(), &layout());
        assert_eq!(s.cr0, CR0_PE | CR0_ET | CR0_NE | CR0_PG);
        assert_eq!(s.cr0 & (CR0_CD | CR0_NW), 0);
        assert_eq!(s.cr4, CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT);
        assert_eq!(s.efer, EFER_SCE | EFER_LME | EFER_LMA);
        assert_eq!(s.cr3, 0x2000);
    }

    #[test]
    fn tr_ldt_and_apic_base_are_kept() {
        let base = reset_sregs();
        let s = long_mode_sregs(&base, &layout());
        assert_eq!(s.tr, base.tr);
        assert_eq!(s.ldt, base.ldt);
        assert_eq!(s.apic_base, base.apic_base);
    }

    #[test]
    fn errors_name_the_failed_step() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let mut l = layout();
        l.gdt_addr = GuestAddress(0x1004);
        assert_eq!(
            write_long_mode_tables(&mem, &l).unwrap_err().to_string(),
            "GDT address 0x1004 is not 8-byte aligned"
        );
        l.gdt_addr = GuestAddress(0x20_0000);
        assert_eq!(
            write_long_mode_tables(&mem, &l).unwrap_err().to_string(),
            "writing the GDT at 0x200000 into guest memory failed"
        );
        l.gdt_addr = GuestAddress(0x1000);
        l.identity_map_size = 0;
        assert_eq!(
            write_long_mode_tables(&mem, &l).unwrap_err().to_string(),
            "building the identity page tables failed"
        );
        assert_eq!(
            l.page_table_footprint().unwrap_err().to_string(),
            "building the identity page tables failed"
        );
    }
}

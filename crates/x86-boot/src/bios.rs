//! The interrupt-controller state a PC BIOS leaves behind when it hands the machine
//! to a boot loader, for kernels that expect one (a Multiboot kernel is started by a
//! boot loader running on the BIOS).
//!
//! | controller | after KVM creates it | what a BIOS leaves (QEMU 7.2 + SeaBIOS, `info pic`/`info lapic`) | [`BiosInterruptState`] |
//! |---|---|---|---|
//! | 8259 master | uninitialised, vector base 0 | ICW1-4 done: vectors `0x08..=0x0f`, slave on IRQ 2, 8086 mode | the same |
//! | 8259 slave | uninitialised, vector base 0 | vectors `0x70..=0x77`, cascade identity 2 | the same |
//! | 8259 masks | all lines open | the lines SeaBIOS has handlers for (timer, keyboard, RTC, ...) | every line open, see below |
//! | BSP LAPIC `SVR` | `0xff`: software-disabled | `0x1ff`: enabled, spurious vector `0xff` | the same |
//! | BSP LAPIC `LVT0`/`LVT1` | `LVT0` ExtINT only through KVM's `LINT0_REENABLED` quirk | `0x8700` ExtINT (virtual wire), `0x8400` NMI | the same |
//!
//! The masks differ on purpose: a BIOS opens the lines of the devices it serves and has
//! interrupt handlers for them in the real-mode interrupt vector table. Without
//! firmware the table is empty, so the VMM opens every line and leaves the choice to
//! the guest: nothing raises a line before the guest programs a device (the PIT does
//! not count until programmed, COM1 interrupts only once enabled), and a guest that
//! raises one itself, like kvm-unit-tests' realmode through pc-testdev, gets the
//! interrupt at its BIOS vector (IRQ 11: vector `0x73`). Every line is edge-triggered
//! (ELCR 0): SeaBIOS marks the PCI lines 10 and 11 level-triggered, but this platform
//! has no PCI interrupt.
//!
//! Plain data: the VMM applies [`BiosInterruptState::pic`] with `KVM_SET_IRQCHIP`
//! and [`BiosInterruptState::bsp_lapic`] with `KVM_GET_LAPIC`/`KVM_SET_LAPIC`.
//!
//! [`resume_rom`] is the one piece of BIOS code the VMM needs: the S3 resume path.
//! After a sleep request the VMM resets the vCPUs with INIT, as a wake-up resets a
//! PC's CPUs; the BSP starts at the reset vector (`0xfffffff0`, in the ROM page at
//! [`RESUME_ROM_ADDR`]) and the ROM does what a BIOS does on resume: it reads the
//! FACS `Firmware_Waking_Vector` and jumps to it in real mode (`CS` = vector >> 4,
//! `IP` = vector & 0xf, `DS` = 0), or halts when the guest set none.
//!
//! ```
//! use x86_boot::bios::{BiosInterruptState, Pic};
//!
//! let state = BiosInterruptState::default();
//! assert_eq!(state.pic(Pic::Master).irq_base, 0x08);
//! assert_eq!(state.pic(Pic::Slave).irq_base, 0x70);
//! let mut lapic = kvm_bindings::kvm_lapic_state::default();
//! state.bsp_lapic(&mut lapic);
//! assert_eq!(x86_boot::bios::lapic_reg(&lapic, x86_boot::bios::APIC_LVT0), 0x8700);
//! ```

use kvm_bindings::{kvm_lapic_state, kvm_pic_state};
use vm_memory::{Bytes, GuestAddress, GuestMemory};

use crate::acpi::pm1::{FACS_LEN, FACS_WAKING_VECTOR};

/// Guest-physical address of the 4 KiB resume ROM: the page holding the reset vector.
pub const RESUME_ROM_ADDR: u64 = 0xffff_f000;
/// Size of the resume ROM.
pub const RESUME_ROM_SIZE: usize = 0x1000;
/// Offset of the reset vector (`0xfffffff0`) in the ROM.
const RESET_VECTOR_OFFSET: usize = 0xff0;
/// Offset of the resume code in the ROM (CS base `0xffff0000`, so IP `0xf000`).
const RESUME_CODE_OFFSET: usize = 0;

/// Why the resume ROM could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BiosError {
    /// The ROM could not be written (no memory at [`RESUME_ROM_ADDR`]).
    #[error("write the resume ROM at {RESUME_ROM_ADDR:#x}")]
    Write(#[source] vm_memory::GuestMemoryError),
    /// Real-mode code reaches only the first MiB.
    #[error("the FACS at {facs_addr:#x} is not below 1 MiB, where the real-mode resume code can read it")]
    FacsOutOfReach {
        /// The FACS address.
        facs_addr: u64,
    },
}

/// Build the resume ROM ([`resume_rom`]) and write it to `mem` at [`RESUME_ROM_ADDR`].
pub fn write_resume_rom<M: GuestMemory + ?Sized>(mem: &M, facs_addr: u64) -> Result<(), BiosError> {
    let rom = resume_rom(facs_addr)?;
    mem.write_slice(&rom, GuestAddress(RESUME_ROM_ADDR))
        .map_err(BiosError::Write)
}

/// The resume ROM for a FACS at `facs_addr` (below 1 MiB); see the
/// [module docs](self). Map it read-only at [`RESUME_ROM_ADDR`].
pub fn resume_rom(facs_addr: u64) -> Result<Vec<u8>, BiosError> {
    if facs_addr + FACS_LEN as u64 > 0x10_0000 {
        return Err(BiosError::FacsOutOfReach { facs_addr });
    }
    let seg = (facs_addr >> 4) as u16;
    let off = (facs_addr & 0xf) as u16;
    let [seg_lo, seg_hi] = seg.to_le_bytes();
    // The stack for the far return: the FACS's last reserved bytes (firmware-owned).
    let [sp_lo, sp_hi] = (off + FACS_LEN as u16).to_le_bytes();
    let [vec_lo, vec_hi] = (off + FACS_WAKING_VECTOR as u16).to_le_bytes();
    #[rustfmt::skip]
    let code = [
        0xfa,                         // cli
        0xb8, seg_lo, seg_hi,         // mov ax, FACS segment
        0x8e, 0xd8,                   // mov ds, ax
        0x8e, 0xd0,                   // mov ss, ax
        0xbc, sp_lo, sp_hi,           // mov sp, end of the FACS
        0x66, 0xa1, vec_lo, vec_hi,   // mov eax, [Firmware_Waking_Vector]
        0x66, 0x85, 0xc0,             // test eax, eax
        0x75, 0x03,                   // jnz wake
        0xf4,                         // 1: hlt
        0xeb, 0xfd,                   //    jmp 1b
        0x66, 0x89, 0xc3,             // wake: mov ebx, eax
        0x66, 0xc1, 0xe8, 0x04,       // shr eax, 4
        0x83, 0xe3, 0x0f,             // and bx, 0xf
        0x50,                         // push ax (CS)
        0x53,                         // push bx (IP)
        0x31, 0xc9,                   // xor cx, cx
        0x8e, 0xd9,                   // mov ds, cx
        0xcb,                         // retf
    ];
    let mut rom = vec![0xf4u8; RESUME_ROM_SIZE]; // hlt everywhere else
    rom[RESUME_CODE_OFFSET..][..code.len()].copy_from_slice(&code);
    // At the reset vector: jmp near to the code (same segment, base 0xffff0000).
    let next_ip = 0xf000 + RESET_VECTOR_OFFSET as i32 + 3;
    let rel = (0xf000 + RESUME_CODE_OFFSET as i32 - next_ip) as i16;
    let [rel_lo, rel_hi] = rel.to_le_bytes();
    rom[RESET_VECTOR_OFFSET..][..3].copy_from_slice(&[0xe9, rel_lo, rel_hi]);
    Ok(rom)
}

/// LAPIC spurious-interrupt vector register offset.
pub const APIC_SVR: usize = 0xf0;
/// LAPIC LINT0 local vector table entry offset.
pub const APIC_LVT0: usize = 0x350;
/// LAPIC LINT1 local vector table entry offset.
pub const APIC_LVT1: usize = 0x360;
/// `SVR`: APIC software-enabled, spurious vector `0xff`.
pub const SVR_ENABLED: u32 = 0x1ff;
/// `LVT0`: ExtINT delivery, level-triggered (the MP specification's virtual wire
/// mode: 8259 interrupts pass through the BSP's LAPIC).
pub const LVT0_EXTINT: u32 = 0x8700;
/// `LVT1`: NMI delivery, level-triggered.
pub const LVT1_NMI: u32 = 0x8400;
/// The 8259 lines whose trigger mode the ELCR can set: PIIX's masks, which KVM also
/// uses (IRQ 0, 1, 2, 8 and 13 are always edge-triggered).
pub const ELCR_MASK: [u8; 2] = [0xf8, 0xde];

/// One of the two 8259s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pic {
    /// IRQ 0-7, `KVM_IRQCHIP_PIC_MASTER`.
    Master,
    /// IRQ 8-15 on the master's IRQ 2, `KVM_IRQCHIP_PIC_SLAVE`.
    Slave,
}

impl Pic {
    /// The `chip_id` of `struct kvm_irqchip`.
    pub fn kvm_chip_id(self) -> u32 {
        match self {
            Pic::Master => kvm_bindings::KVM_IRQCHIP_PIC_MASTER,
            Pic::Slave => kvm_bindings::KVM_IRQCHIP_PIC_SLAVE,
        }
    }
}

/// The boot-time interrupt-controller state; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BiosInterruptState {
    /// First vector of the master's IRQ 0-7 (a PC BIOS: `0x08`).
    pub master_base: u8,
    /// First vector of the slave's IRQ 8-15 (a PC BIOS: `0x70`).
    pub slave_base: u8,
    /// Interrupt mask registers (master, slave); a set bit masks the line.
    pub masks: [u8; 2],
}

impl Default for BiosInterruptState {
    fn default() -> Self {
        Self {
            master_base: 0x08,
            slave_base: 0x70,
            masks: [0, 0],
        }
    }
}

impl BiosInterruptState {
    /// The state of one 8259 after the BIOS's initialisation words (ICW1 edge,
    /// cascade, ICW4; ICW2 the vector base; ICW3 slave on IRQ 2; ICW4 8086 mode), with
    /// nothing pending and nothing in service.
    pub fn pic(&self, pic: Pic) -> kvm_pic_state {
        let (irq_base, imr, elcr_mask) = match pic {
            Pic::Master => (self.master_base, self.masks[0], ELCR_MASK[0]),
            Pic::Slave => (self.slave_base, self.masks[1], ELCR_MASK[1]),
        };
        kvm_pic_state {
            irq_base,
            imr,
            init4: 1,
            elcr_mask,
            ..Default::default()
        }
    }

    /// Set the BSP's LAPIC registers a BIOS sets: software-enabled, LINT0 in
    /// virtual-wire ExtINT mode, LINT1 NMI. Other registers are kept.
    pub fn bsp_lapic(&self, lapic: &mut kvm_lapic_state) {
        set_lapic_reg(lapic, APIC_SVR, SVR_ENABLED);
        set_lapic_reg(lapic, APIC_LVT0, LVT0_EXTINT);
        set_lapic_reg(lapic, APIC_LVT1, LVT1_NMI);
    }
}

/// The 32-bit LAPIC register at `offset` of a `KVM_GET_LAPIC` image (0 past the end).
pub fn lapic_reg(lapic: &kvm_lapic_state, offset: usize) -> u32 {
    let mut bytes = [0u8; 4];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = lapic.regs.get(offset + i).map_or(0, |&c| c as u8);
    }
    u32::from_le_bytes(bytes)
}

/// Store the 32-bit LAPIC register at `offset` (ignored past the end).
pub fn set_lapic_reg(lapic: &mut kvm_lapic_state, offset: usize, value: u32) {
    for (i, b) in value.to_le_bytes().into_iter().enumerate() {
        if let Some(slot) = lapic.regs.get_mut(offset + i) {
            *slot = b as _;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pics_are_initialised_with_the_bios_vectors() {
        let s = BiosInterruptState::default();
        let m = s.pic(Pic::Master);
        let sl = s.pic(Pic::Slave);
        assert_eq!((m.irq_base, sl.irq_base), (0x08, 0x70));
        // IRQ 11 reaches the vector realmode.c hooks (0x73).
        assert_eq!(sl.irq_base + 3, 0x73);
        assert_eq!((m.imr, sl.imr, m.elcr, sl.elcr), (0, 0, 0, 0));
        assert_eq!((m.init_state, m.init4, sl.init4), (0, 1, 1));
        assert_eq!((m.elcr_mask, sl.elcr_mask), (0xf8, 0xde));
        assert_eq!(
            (Pic::Master.kvm_chip_id(), Pic::Slave.kvm_chip_id()),
            (0, 1)
        );
    }

    #[test]
    fn resume_rom_jumps_from_the_reset_vector_to_the_code_that_reads_the_facs() {
        let rom = resume_rom(0xa_0040).unwrap();
        assert_eq!(rom.len(), 4096);
        // jmp near -0xff3: from IP 0xfff3 to 0xf000, the first byte of the page.
        assert_eq!(rom[0xff0..0xff3], [0xe9, 0x0d, 0xf0]);
        // DS = 0xa004; the waking vector at DS:0x000c; the stack ends at DS:0x0040.
        assert_eq!(rom[..4], [0xfa, 0xb8, 0x04, 0xa0]);
        assert_eq!(rom[8..11], [0xbc, 0x40, 0x00]);
        assert_eq!(rom[11..15], [0x66, 0xa1, 0x0c, 0x00]);
        assert_eq!(rom[rom.len() - 1], 0xf4);
        let mem = vm_memory::GuestMemoryMmap::<()>::from_ranges(&[(
            GuestAddress(RESUME_ROM_ADDR),
            RESUME_ROM_SIZE,
        )])
        .unwrap();
        write_resume_rom(&mem, 0xa_0040).unwrap();
        let mut back = vec![0; RESUME_ROM_SIZE];
        mem.read_slice(&mut back, GuestAddress(RESUME_ROM_ADDR))
            .unwrap();
        assert_eq!(back, rom);
        assert_eq!(
            resume_rom(0xf_ffc8).unwrap_err().to_string(),
            "the FACS at 0xfffc8 is not below 1 MiB, where the real-mode resume code can read it"
        );
    }

    #[test]
    fn bsp_lapic_is_in_virtual_wire_mode_and_keeps_other_registers() {
        let mut lapic = kvm_lapic_state::default();
        set_lapic_reg(&mut lapic, 0x20, 0x0500_0000); // APIC id 5
        set_lapic_reg(&mut lapic, APIC_LVT0, 0x1_0000); // masked, as after reset
        BiosInterruptState::default().bsp_lapic(&mut lapic);
        assert_eq!(lapic_reg(&lapic, APIC_SVR), 0x1ff);
        assert_eq!(lapic_reg(&lapic, APIC_LVT0), 0x8700);
        assert_eq!(lapic_reg(&lapic, APIC_LVT1), 0x8400);
        assert_eq!(lapic_reg(&lapic, 0x20), 0x0500_0000);
        assert_eq!(lapic_reg(&lapic, 1022), 0, "a read past the end is 0");
        set_lapic_reg(&mut lapic, 1022, u32::MAX);
        assert_eq!(lapic_reg(&lapic, 1020), 0xffff_0000);
    }
}

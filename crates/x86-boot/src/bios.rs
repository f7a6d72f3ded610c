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

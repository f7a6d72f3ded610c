//! Fixed-layout ACPI tables: FADT, MADT, SRAT, SLIT (byte images with valid
//! checksums, built on `acpi_tables`' [`Sdt`] header helper).

use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::sdt::Sdt;
use acpi_tables::Aml;

use super::pm1::{Pm1Config, PM1_CNT_LEN, PM1_EVT_LEN, PM_TMR_LEN};
use super::power::{PowerConfig, RESET_VALUE};
use super::{AcpiConfig, NumaConfig, OEM_ID, OEM_TABLE_ID};
use crate::platform::{CpuEntry, LAPIC_ADDR, MAX_XAPIC_ID};

/// MADT revision written: 5 (ACPI 6.3) so Linux honours the Online Capable flag.
pub const MADT_REVISION: u8 = 5;
/// SRAT revision written (ACPI 3.0+ layout with 32-bit proximity domains).
pub const SRAT_REVISION: u8 = 3;
/// SLIT revision.
pub const SLIT_REVISION: u8 = 1;
/// DSDT revision: 2 means 64-bit AML integers.
pub const DSDT_REVISION: u8 = 2;

/// MADT/SRAT structure type codes used here.
pub mod madt_type {
    /// Processor Local APIC (8 bytes).
    pub const LOCAL_APIC: u8 = 0;
    /// I/O APIC (12 bytes).
    pub const IO_APIC: u8 = 1;
    /// Interrupt Source Override (10 bytes).
    pub const INTERRUPT_OVERRIDE: u8 = 2;
    /// Local APIC NMI (6 bytes).
    pub const LOCAL_APIC_NMI: u8 = 4;
    /// Processor Local x2APIC (16 bytes).
    pub const LOCAL_X2APIC: u8 = 9;
    /// Local x2APIC NMI (12 bytes).
    pub const LOCAL_X2APIC_NMI: u8 = 0xa;
}

/// MADT processor flag: enabled (running at boot).
pub const MADT_ENABLED: u32 = 1;
/// MADT processor flag (ACPI 6.3): disabled now, can be brought online later.
pub const MADT_ONLINE_CAPABLE: u32 = 2;
/// FADT IAPC_BOOT_ARCH: VGA not present.
pub const IAPC_VGA_NOT_PRESENT: u16 = 1 << 2;
/// FADT IAPC_BOOT_ARCH: an 8042 keyboard controller is present.
pub const IAPC_8042: u16 = 1 << 1;

/// Whether a slot is described by a Local x2APIC structure: APIC ids above
/// 254 and processor UIDs above 254 do not fit the 8-bit Local APIC fields
/// (the ACPI rule, as QEMU does: x2APIC only where needed).
pub fn uses_x2apic(uid: usize, apic_id: u32) -> bool {
    apic_id > MAX_XAPIC_ID || uid > MAX_XAPIC_ID as usize
}

/// The MADT processor structure for slot `uid` with the given flags.
pub fn processor_structure(uid: usize, cpu: &CpuEntry, flags: u32) -> Vec<u8> {
    if uses_x2apic(uid, cpu.apic_id) {
        let mut e = vec![madt_type::LOCAL_X2APIC, 16, 0, 0];
        e.extend_from_slice(&cpu.apic_id.to_le_bytes());
        e.extend_from_slice(&flags.to_le_bytes());
        e.extend_from_slice(&(uid as u32).to_le_bytes());
        e
    } else {
        let mut e = vec![madt_type::LOCAL_APIC, 8, uid as u8, cpu.apic_id as u8];
        e.extend_from_slice(&flags.to_le_bytes());
        e
    }
}

fn sdt(signature: &[u8; 4], header_len: u32, revision: u8) -> Sdt {
    Sdt::new(*signature, header_len, revision, OEM_ID, OEM_TABLE_ID, 1)
}

/// A register block of `len` bytes in I/O port space, accessed as 16-bit words.
fn io_block(port: u16, len: u8) -> GAS {
    GAS::new(
        AddressSpace::SystemIo,
        len * 8,
        0,
        AccessSize::WordAccess,
        u64::from(port),
    )
}

/// A one-byte register in I/O port space (Generic Address Structure).
fn io_byte(port: u16) -> GAS {
    GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        u64::from(port),
    )
}

/// FADT: ACPI 6.5 layout, hardware-reduced, pointing at the DSDT (64-bit).
///
/// `PWR_BUTTON` and `SLP_BUTTON` say there are no fixed-feature buttons (the power
/// button, if any, is the `PNP0C0C` control-method device in the DSDT). With `power`,
/// `SLEEP_CONTROL_REG`, `SLEEP_STATUS_REG` and `RESET_REG` (with `RESET_REG_SUP`) name
/// the one-byte I/O registers of [`super::power`].
///
/// With `pm1` (its config and the FACS address) the FADT is a full one instead: it
/// points at the FACS, the PM1a event and control blocks and the PM timer of
/// [`super::pm1`], with the SCI on ISA IRQ `sci`, no SMI command port (always in
/// ACPI mode) and `8042` (the i8042 reset line) in `IAPC_BOOT_ARCH`.
pub fn fadt(
    dsdt_addr: u64,
    power: Option<&PowerConfig>,
    pm1: Option<(&Pm1Config, u64)>,
) -> Vec<u8> {
    let mut b = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, 1)
        .dsdt_64(dsdt_addr)
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton);
    b.iapc_boot_arch = IAPC_VGA_NOT_PRESENT.into();
    match pm1 {
        Some((pm, facs_addr)) => {
            // As QEMU: the DSDT in both fields, the FACS (below 4 GiB) in the 32-bit
            // one only; older guests and kvm-unit-tests read the 32-bit fields.
            b = b.firmware_ctrl_32(facs_addr as u32);
            b.dsdt = (dsdt_addr as u32).into();
            b.sci_int = pm.sci.into();
            b.pm1a_evt_blk = u32::from(pm.evt_base).into();
            b.pm1a_cnt_blk = u32::from(pm.cnt_base).into();
            b.pm1_evt_len = PM1_EVT_LEN;
            b.pm1_cnt_len = PM1_CNT_LEN;
            b.x_pm1a_evt_blk = io_block(pm.evt_base, PM1_EVT_LEN);
            b.x_pm1a_cnt_blk = io_block(pm.cnt_base, PM1_CNT_LEN);
            b.pm_tmr_blk = u32::from(pm.tmr_base).into();
            b.pm_tmr_len = PM_TMR_LEN;
            b.x_pm_tmr_blk = GAS::new(
                AddressSpace::SystemIo,
                32,
                0,
                AccessSize::DwordAccess,
                u64::from(pm.tmr_base),
            );
            b.iapc_boot_arch = (IAPC_VGA_NOT_PRESENT | IAPC_8042).into();
        }
        None => b = b.flag(Flags::HwReducedAcpi),
    }
    if let Some(p) = power {
        b = b.flag(Flags::ResetRegSup);
        b.reset_reg = io_byte(p.reset_port());
        b.reset_value = RESET_VALUE;
        b.sleep_control_reg = io_byte(p.sleep_control_port());
        b.sleep_status_reg = io_byte(p.sleep_status_port());
    }
    let mut out = Vec::new();
    b.finalize().to_aml_bytes(&mut out);
    out
}

/// MADT: one processor structure per slot (UID = slot index), the IOAPIC,
/// the IRQ 0 override and the LINT1 NMI for every processor. `pcat_compat`: the
/// platform also has the 8259 pair (flag `PCAT_COMPAT`; never in hardware-reduced
/// mode).
pub fn madt(config: &AcpiConfig, pcat_compat: bool) -> Vec<u8> {
    let mut t = sdt(b"APIC", 44, MADT_REVISION);
    t.write_u32(36, LAPIC_ADDR);
    t.write_u32(40, u32::from(pcat_compat));
    let (mut any_xapic, mut any_x2apic) = (false, false);
    for (uid, cpu) in config.cpus.iter().enumerate() {
        let flags = if cpu.present {
            MADT_ENABLED
        } else {
            MADT_ONLINE_CAPABLE
        };
        if uses_x2apic(uid, cpu.apic_id) {
            any_x2apic = true;
        } else {
            any_xapic = true;
        }
        t.append_slice(&processor_structure(uid, cpu, flags));
    }
    let io = &config.ioapic;
    let mut e = vec![madt_type::IO_APIC, 12, io.id, 0];
    e.extend_from_slice(&io.address.to_le_bytes());
    e.extend_from_slice(&0u32.to_le_bytes()); // GSI base
    t.append_slice(&e);
    if io.timer_pin != 0 {
        // ISA IRQ 0 -> GSI timer_pin, flags 0 (conforms to the bus: edge, high).
        let mut e = vec![madt_type::INTERRUPT_OVERRIDE, 10, 0, 0];
        e.extend_from_slice(&u32::from(io.timer_pin).to_le_bytes());
        e.extend_from_slice(&0u16.to_le_bytes());
        t.append_slice(&e);
    }
    if any_xapic {
        // All processors (UID 0xff), flags conform, LINT1.
        t.append_slice(&[madt_type::LOCAL_APIC_NMI, 6, 0xff, 0, 0, 1]);
    }
    if any_x2apic {
        let mut e = vec![madt_type::LOCAL_X2APIC_NMI, 12, 0, 0];
        e.extend_from_slice(&u32::MAX.to_le_bytes());
        e.extend_from_slice(&[1, 0, 0, 0]);
        t.append_slice(&e);
    }
    t.as_slice().to_vec()
}

/// SRAT: processor affinity for every slot (present or hot-pluggable, all
/// flagged enabled so Linux records their node) and memory affinity per range.
pub fn srat(cpus: &[CpuEntry], numa: &NumaConfig) -> Vec<u8> {
    let mut t = sdt(b"SRAT", 48, SRAT_REVISION);
    t.write_u32(36, 1); // reserved, must be 1
    for cpu in cpus {
        let pd = cpu.node.to_le_bytes();
        if cpu.apic_id > MAX_XAPIC_ID {
            let mut e = vec![2, 24, 0, 0];
            e.extend_from_slice(&pd);
            e.extend_from_slice(&cpu.apic_id.to_le_bytes());
            e.extend_from_slice(&1u32.to_le_bytes()); // enabled
            e.extend_from_slice(&[0; 8]); // clock domain, reserved
            t.append_slice(&e);
        } else {
            let mut e = vec![0, 16, pd[0], cpu.apic_id as u8];
            e.extend_from_slice(&1u32.to_le_bytes()); // enabled
            e.push(0); // local SAPIC EID
            e.extend_from_slice(&pd[1..4]);
            e.extend_from_slice(&[0; 4]); // clock domain
            t.append_slice(&e);
        }
    }
    for m in &numa.memory {
        let mut e = vec![1, 40];
        e.extend_from_slice(&m.node.to_le_bytes());
        e.extend_from_slice(&[0, 0]);
        e.extend_from_slice(&m.start.to_le_bytes());
        e.extend_from_slice(&m.size.to_le_bytes());
        e.extend_from_slice(&[0; 4]);
        e.extend_from_slice(&1u32.to_le_bytes()); // enabled
        e.extend_from_slice(&[0; 8]);
        t.append_slice(&e);
    }
    t.as_slice().to_vec()
}

/// SLIT: the `n x n` distance matrix, row-major.
pub fn slit(distances: &[Vec<u8>]) -> Vec<u8> {
    let mut t = sdt(b"SLIT", 44, SLIT_REVISION);
    t.write_u64(36, distances.len() as u64);
    let flat: Vec<u8> = distances.iter().flatten().copied().collect();
    t.append_slice(&flat);
    t.as_slice().to_vec()
}

/// DSDT: header plus the AML body.
pub fn dsdt(aml: &[u8]) -> Vec<u8> {
    let mut t = sdt(b"DSDT", 36, DSDT_REVISION);
    t.append_slice(aml);
    t.as_slice().to_vec()
}

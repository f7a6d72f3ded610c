//! Platform description shared by the MP table and the ACPI tables: the
//! possible CPUs and the interrupt controllers.

/// Default local APIC MMIO base.
pub const LAPIC_ADDR: u32 = 0xfee0_0000;
/// Default IOAPIC MMIO base.
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
/// Highest APIC id the MP table and MADT Local APIC entries can describe
/// (255 is the xAPIC broadcast id).
pub const MAX_XAPIC_ID: u32 = 254;

/// One possible CPU (a slot): present at boot or hot-pluggable later.
///
/// The slot's position in the list is its ACPI processor UID and its index in
/// the hot-plug selector register ([`crate::acpi`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuEntry {
    /// Initial (x2)APIC id, e.g. from `cpu_topology::ApicIdLayout::apic_id`.
    pub apic_id: u32,
    /// Present (running) at boot; `false` for a hot-pluggable slot.
    pub present: bool,
    /// NUMA node (proximity domain); ignored without NUMA.
    pub node: u32,
}

impl CpuEntry {
    /// A CPU on node 0.
    pub fn new(apic_id: u32, present: bool) -> Self {
        CpuEntry {
            apic_id,
            present,
            node: 0,
        }
    }
}

/// The IOAPIC and how ISA interrupts reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoApicConfig {
    /// IOAPIC id (must not clash with an xAPIC id in the MP table; Linux
    /// re-assigns it if it does).
    pub id: u8,
    /// MMIO base.
    pub address: u32,
    /// IOAPIC input pin the PIT (ISA IRQ 0) is wired to. 2 is the PC
    /// convention (QEMU routes GSI 0 to pin 2); with KVM's default irq routing
    /// the PIT reaches pin 0, so either install a GSI 0 -> pin 2 route or set 0.
    pub timer_pin: u8,
}

impl Default for IoApicConfig {
    fn default() -> Self {
        IoApicConfig {
            id: 0,
            address: IOAPIC_ADDR,
            timer_pin: 2,
        }
    }
}

/// Sum of bytes modulo 256; a valid MP/ACPI structure sums to 0.
pub fn byte_sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

/// The byte that makes `bytes` (with its checksum field 0) sum to 0.
pub fn checksum_for(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(byte_sum(bytes))
}

#![no_main]
//! Boot-table builders and the CPU hot-plug register block: arbitrary slot lists, RAM
//! ranges and register accesses give tables or typed errors, never a panic, and every
//! table built is checksummed.
use libfuzzer_sys::fuzz_target;
use x86_boot::acpi::{
    build_acpi, AcpiConfig, AcpiLayout, CpuHotplugConfig, CpuHotplugController, IsaSerialConfig,
    PowerConfig,
};
use x86_boot::e820::{build_e820_map, E820Type};
use x86_boot::mptable::build_mptable;
use x86_boot::{CpuEntry, IoApicConfig};

fuzz_target!(|data: &[u8]| {
    let mut words = data
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    let n = words.next().unwrap_or(0) % 300;
    let cpus: Vec<CpuEntry> = (0..n)
        .map(|_| {
            let w = words.next().unwrap_or(0);
            CpuEntry {
                apic_id: w >> 2,
                present: w & 1 == 1,
                node: (w >> 1) & 1,
            }
        })
        .collect();
    let ioapic = IoApicConfig::default();
    let _ = build_mptable(0xf0000, &cpus, &ioapic);
    let flags = words.next().unwrap_or(0);
    let config = AcpiConfig {
        cpus: cpus.clone(),
        ioapic,
        numa: None,
        hotplug: (flags & 1 == 1).then(CpuHotplugConfig::default),
        power: (flags & 2 == 2).then(PowerConfig::default),
        serial: (flags & 4 == 4).then_some(IsaSerialConfig::COM1),
    };
    if let Ok(tables) = build_acpi(&config, &AcpiLayout::default()) {
        for t in &tables.tables {
            assert_eq!(
                t.bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)),
                0,
                "{:?}",
                t.signature
            );
        }
    }
    let ranges: Vec<(u64, u64, E820Type)> = (0..words.next().unwrap_or(0) % 8)
        .map(|_| {
            let (a, b) = (words.next().unwrap_or(0), words.next().unwrap_or(0));
            (u64::from(a) << 12, u64::from(b) << 12, E820Type::Ram)
        })
        .collect();
    let _ = build_e820_map(&ranges);
    let mut hotplug = CpuHotplugController::new(&cpus);
    for w in words {
        let offset = u64::from(w & 0xf);
        let bytes = w.to_le_bytes();
        let len = 1 + (w >> 30) as usize;
        if w & 0x10 == 0 {
            let mut buf = [0u8; 4];
            hotplug.read(offset, &mut buf[..len]);
        } else {
            let _ = hotplug.write(offset, &bytes[..len]);
        }
    }
});

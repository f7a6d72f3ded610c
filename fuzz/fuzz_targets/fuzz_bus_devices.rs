#![no_main]
//! Guest port and MMIO accesses through the platform bus itself, as the vCPU exit path
//! delivers them: COM1, the i8042, the ACPI power registers, the CPU hot-plug block, the
//! kvm-unit-tests devices (fw_cfg with a file, isa-debug-exit, pc-testdev) and a
//! Multiboot kernel's PC power devices (PM1 blocks, PM timer, CMOS RTC) and q35's PCI part
//! (configuration space, edu with its DMA, the VT-d unit, the user-space I/O APIC) on one
//! bus, with 64 KiB of guest RAM for DMA and the remapping tables. Each 11-byte record is one access: a target (a registered range, or any port or
//! address), an offset into it, a size, read or write, and a value. No access may panic,
//! a stop always names its cause, and COM1's console ring stays bounded.
use std::sync::Arc;

use cpu_topology::VcpuIndex;
use libfuzzer_sys::fuzz_target;
use vcpu_lifecycle::ExitHandler;
use x86_boot::acpi::pm1::Pm1Config;
use x86_boot::acpi::{CpuHotplugConfig, PowerConfig};
use x86_boot::CpuEntry;
use x86_devices::bus::Space;
use x86_devices::com1::CONSOLE_RING_BYTES;
use x86_devices::acpi_pm1::SleepHooks;
use x86_devices::pc_testdev::NoHooks;
use x86_devices::pci::MsiMessage;
use x86_devices::vtd::MsiSink;
use x86_devices::{
    ConsoleSink, FwCfgBuilder, PcPower, Platform, PlatformConfig, Q35Config, TestDevices,
};

/// Interrupts go nowhere: the fuzzer looks at the devices, not at a LAPIC.
#[derive(Debug)]
struct Drop;

impl MsiSink for Drop {
    fn signal(&self, _msg: MsiMessage) {}
}

/// S3 that wakes at once, as on KVM, without vCPUs to reset.
#[derive(Debug)]
struct WakeAtOnce;

impl SleepHooks for WakeAtOnce {
    fn suspend_to_ram(&self) -> Result<(), String> {
        Ok(())
    }
}

const RECORD: usize = 11;

fn platform(cpus: &[CpuEntry]) -> Platform {
    let fw_cfg = FwCfgBuilder::new(2, 4, 64 << 20)
        .file("etc/fuzz", b"fuzz file contents".to_vec())
        .expect("a short fw_cfg file name is accepted")
        .build();
    Platform::new(PlatformConfig {
        console: ConsoleSink::ring_only(),
        power: Some(PowerConfig::default()),
        hotplug: Some((CpuHotplugConfig::default(), cpus)),
        test_devices: Some(TestDevices {
            fw_cfg,
            testdev_hooks: Arc::new(NoHooks),
        }),
        pc_power: Some(PcPower {
            pm1: Pm1Config::default(),
            sleep: Arc::new(WakeAtOnce),
        }),
        q35: Some(Q35Config {
            iommu: true,
            edu: true,
            // 64 KiB of guest RAM at GPA 0 for edu's DMA and the VT-d tables.
            memory: Arc::new(std::sync::Mutex::new(vec![0u8; 64 << 10])),
            sink: Arc::new(Drop),
        }),
    })
    .expect("the default device layout has no overlaps")
}

fuzz_target!(|data: &[u8]| {
    let cpus = [
        CpuEntry::new(0, true),
        CpuEntry::new(1, true),
        CpuEntry::new(2, false),
        CpuEntry::new(4, false),
    ];
    let p = platform(&cpus);
    let map = p.bus().map();
    for rec in data.chunks_exact(RECORD) {
        let op = rec[0];
        let size = 1usize << (op & 3);
        let write = op & 4 != 0;
        let value: [u8; 8] = rec[3..11].try_into().unwrap();
        let target = usize::from(rec[1]) % (map.len() + 2);
        let (space, addr) = match map.get(target) {
            // Inside a registered range, or just past its end.
            Some((space, range, _)) => (*space, range.base + u64::from(rec[2]) % (range.len + 4)),
            // Anywhere: a port from two bytes, or an address from the value's high bytes.
            None if target == map.len() => {
                (Space::Io, u64::from(u16::from_le_bytes([rec[2], rec[3]])))
            }
            None => (
                Space::Mmio,
                u64::from_le_bytes(value) >> 8 << 8 | u64::from(rec[2]),
            ),
        };
        // KVM reports port I/O of 1, 2 or 4 bytes; MMIO up to 8.
        let size = if space == Space::Io {
            size.min(4)
        } else {
            size
        };
        let vcpu = VcpuIndex(u32::from(op >> 6));
        let action = match (space, write) {
            (Space::Io, false) => {
                let mut buf = [0u8; 8];
                p.io_in(vcpu, addr as u16, &mut buf[..size])
            }
            (Space::Io, true) => p.io_out(vcpu, addr as u16, &value[..size]),
            (Space::Mmio, false) => {
                let mut buf = [0u8; 8];
                p.mmio_read(vcpu, addr, &mut buf[..size])
            }
            (Space::Mmio, true) => p.mmio_write(vcpu, addr, &value[..size]),
        };
        if matches!(action, vcpu_lifecycle::ExitAction::StopVm(_)) {
            assert!(p.vm_exit().is_some(), "a stop names its cause");
        }
    }
    let tail: usize = p
        .com1()
        .console_tail(usize::MAX)
        .iter()
        .map(String::len)
        .sum();
    // Lossy UTF-8 may widen a byte to three.
    assert!(
        tail <= 3 * CONSOLE_RING_BYTES,
        "console ring grew to {tail}"
    );
});

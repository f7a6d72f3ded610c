//! Needs /dev/kvm: the device interrupts reach KVM's in-kernel irqchip. Fails loudly
//! without KVM when REQUIRE_KVM=1, skips (with a message) otherwise.

use std::sync::Arc;

use cpu_topology::VcpuIndex;
use vcpu_lifecycle::ExitHandler;
use x86_boot::acpi::{CpuHotplugConfig, PowerConfig};
use x86_boot::CpuEntry;
use x86_devices::pc_testdev::KvmIrqLines;
use x86_devices::{AcpiPm, BusBuilder, Com1, ConsoleSink, CpuHotplug, PcTestdev};

fn vm() -> Option<kvm_ioctls::VmFd> {
    match kvm_ioctls::Kvm::new() {
        Ok(kvm) => {
            let vm = kvm.create_vm().expect("create a VM");
            vm.create_irq_chip().expect("create the in-kernel irqchip");
            Some(vm)
        }
        Err(e) if std::env::var("REQUIRE_KVM").as_deref() == Ok("1") => {
            panic!("REQUIRE_KVM=1 but /dev/kvm cannot be opened: {e}")
        }
        Err(e) => {
            eprintln!("skipped: /dev/kvm cannot be opened ({e})");
            None
        }
    }
}

/// The master 8259's IRR: KVM routes GSIs 0..15 to the PIC too, and the PIC latches an
/// edge there, so a pulse is observable after the fact.
fn pic_irr(vm: &kvm_ioctls::VmFd) -> u8 {
    let mut chip = kvm_bindings::kvm_irqchip {
        chip_id: kvm_bindings::KVM_IRQCHIP_PIC_MASTER,
        ..Default::default()
    };
    vm.get_irqchip(&mut chip).expect("KVM_GET_IRQCHIP");
    // SAFETY: for chip_id KVM_IRQCHIP_PIC_MASTER, KVM_GET_IRQCHIP fills the `pic` member
    // of the union; it is plain bytes, valid for any bit pattern.
    unsafe { chip.chip.pic }.irr
}

#[test]
fn kvm_device_interrupts_latch_in_the_pic() {
    let Some(vm) = vm() else { return };
    let com1 = Com1::new(ConsoleSink::ring_only()).unwrap();
    let pm = AcpiPm::new(&PowerConfig::default()).unwrap();
    let cpus = [CpuEntry::new(0, true), CpuEntry::new(1, false)];
    let hp = CpuHotplug::new(&CpuHotplugConfig::default(), &cpus).unwrap();
    com1.register_irqfd(&vm).unwrap();
    pm.button().unwrap().register(&vm).unwrap();
    hp.line().register(&vm).unwrap();
    assert!(
        hp.line().register(&vm).is_err(),
        "a second registration is refused"
    );

    pm.press_power_button().unwrap();
    hp.plug_cpu(1).unwrap();
    let want = (1u8 << 5) | (1 << 6);
    // KVM injects irqfd writes from a work queue: wait for both edges.
    let mut irr = 0;
    for _ in 0..500 {
        irr = pic_irr(&vm);
        if irr & want == want {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(irr & want, want, "GED edges latched (IRR {irr:#010b})");
    assert_eq!(irr & (1 << 4), 0, "COM1 did not fire");

    // pc-testdev's IRQ line port raises GSI 3 through KVM_IRQ_LINE.
    let vm = Arc::new(vm);
    let testdev = PcTestdev::new(Arc::new(KvmIrqLines(vm.clone())));
    let bus = testdev.register(BusBuilder::new()).unwrap().build();
    bus.io_out(VcpuIndex(0), 0x2003, &[1]);
    bus.io_out(VcpuIndex(0), 0x2003, &[0]);
    assert_eq!(pic_irr(&vm) & (1 << 3), 1 << 3, "line 3 latched");
}

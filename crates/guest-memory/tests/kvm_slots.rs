//! KVM memory slots for real: these tests need /dev/kvm and fail when it cannot be opened.

mod common;

use std::sync::Arc;

use guest_memory::{GuestRam, MemoryLayout, SlotError, SlotId};
use kvm_ioctls::{Kvm, VcpuExit, VmFd};
use vm_memory::{Bytes, GuestAddress};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn kvm_vm() -> (Kvm, Arc<VmFd>) {
    let kvm = Kvm::new().expect("this test needs /dev/kvm: opening it failed");
    let vm = kvm.create_vm().expect("KVM_CREATE_VM failed");
    (kvm, Arc::new(vm))
}

fn spans(slots: &guest_memory::MemorySlots) -> Vec<(u32, u64, u64)> {
    slots.iter().map(|s| (s.id.0, s.gpa.0, s.size)).collect()
}

#[test]
fn kvm_registers_one_slot_below_the_hole() {
    let (_kvm, vm) = kvm_vm();
    let ram = GuestRam::new(&MemoryLayout::x86_64(256 * MIB).unwrap()).unwrap();
    let slots = ram.register(vm).unwrap();
    assert_eq!(slots.ids(), [SlotId(0)]);
    assert_eq!(spans(&slots), [(0, 0, 256 * MIB)]);
    let info = slots.iter().next().unwrap();
    assert_eq!(info.host, ram.translate(GuestAddress(0), 1).unwrap());
}

#[test]
fn kvm_registers_two_slots_around_the_hole_and_shares_memory() {
    let (_kvm, vm) = kvm_vm();
    // 4.5 GiB of guest RAM: free to map thanks to MAP_NORESERVE.
    let ram = GuestRam::new(&MemoryLayout::x86_64(4608 * MIB).unwrap()).unwrap();
    let slots = ram.register_at(vm, SlotId(3)).unwrap();
    assert_eq!(slots.len(), 2);
    assert_eq!(spans(&slots), [(3, 0, 3 * GIB), (4, 4 * GIB, 1536 * MIB)]);

    // Write through the host address KVM was given; read back through GuestMemory.
    for info in slots.iter() {
        for offset in [0, info.size / 2, info.size - 8] {
            let value = 0x1122_3344_5566_7788 ^ (info.gpa.0 + offset);
            let ptr = info
                .host
                .as_ptr()
                .wrapping_add(offset as usize)
                .cast::<u64>();
            // SAFETY: `offset + 8 <= info.size`, so the 8 bytes lie inside the slot's live
            // mapping (kept alive by `slots`); the mapping is page aligned, so `ptr` is
            // aligned for u64; no reference to this memory exists while we write.
            unsafe { ptr.write_volatile(value) };
            let gpa = GuestAddress(info.gpa.0 + offset);
            assert_eq!(ram.memory().read_obj::<u64>(gpa).unwrap(), value);
            assert_eq!(ram.translate(gpa, 8).unwrap().as_ptr(), ptr.cast::<u8>());
        }
    }
}

#[test]
fn kvm_guest_reads_and_writes_the_same_ram() {
    let (_kvm, vm) = kvm_vm();
    let ram = GuestRam::new(&MemoryLayout::x86_64(16 * MIB).unwrap()).unwrap();
    let _slots = ram.register(Arc::clone(&vm)).unwrap();

    // Real mode at 0x1000: mov byte [0x2000], 0x42; mov al, [0x3000]; out 0x10, al; hlt
    let code = [
        0xc6, 0x06, 0x00, 0x20, 0x42, 0xa0, 0x00, 0x30, 0xe6, 0x10, 0xf4,
    ];
    ram.memory()
        .write_slice(&code, GuestAddress(0x1000))
        .unwrap();
    ram.memory()
        .write_obj(0x5au8, GuestAddress(0x3000))
        .unwrap();

    let mut vcpu = common::real_mode_vcpu(&vm, 0);

    match vcpu.run().unwrap() {
        VcpuExit::IoOut(port, data) => {
            assert_eq!(port, 0x10);
            assert_eq!(data, [0x5a], "the guest read what the host wrote");
        }
        other => panic!("expected the guest's OUT, got {other:?}"),
    }
    assert_eq!(
        ram.memory().read_obj::<u8>(GuestAddress(0x2000)).unwrap(),
        0x42
    );
    assert!(matches!(vcpu.run().unwrap(), VcpuExit::Hlt));
}

#[test]
fn kvm_slots_are_deleted_on_drop() {
    let (_kvm, vm) = kvm_vm();
    let small = GuestRam::new(&MemoryLayout::x86_64(256 * MIB).unwrap()).unwrap();
    let slots = small.register(Arc::clone(&vm)).unwrap();
    // Slot 0 is taken: registering other memory there fails (KVM refuses to resize a slot).
    let big = GuestRam::new(&MemoryLayout::x86_64(512 * MIB).unwrap()).unwrap();
    let err = big.register(Arc::clone(&vm)).unwrap_err();
    assert!(matches!(err, SlotError::Register { slot: 0, .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "KVM_SET_USER_MEMORY_REGION for slot 0 at guest-physical 0x0 (size 0x20000000) failed"
    );
    drop(slots);
    // Once deleted, slot 0 and GPA 0 are free again.
    let slots = big.register(vm).unwrap();
    assert_eq!(spans(&slots), [(0, 0, 512 * MIB)]);
}

#[test]
fn kvm_failed_registration_rolls_back() {
    let (_kvm, vm) = kvm_vm();
    // Occupy 4 GiB.. with slot 10 so that the second region of a 4 GiB layout collides.
    let blocker = GuestRam::new(
        &MemoryLayout::new(
            vec![guest_memory::RamRegion {
                gpa: GuestAddress(4 * GIB),
                size: 2 * MIB,
                node: None,
            }],
            vec![],
        )
        .unwrap(),
    )
    .unwrap();
    let _blocked = blocker.register_at(Arc::clone(&vm), SlotId(10)).unwrap();
    let ram = GuestRam::new(&MemoryLayout::x86_64(4 * GIB).unwrap()).unwrap();
    let err = ram.register(Arc::clone(&vm)).unwrap_err();
    assert!(
        matches!(err, SlotError::Register { slot: 1, gpa, .. } if gpa == 4 * GIB),
        "{err}"
    );
    // Slot 0 (the low region) was deleted again: other memory can take GPA 0 now.
    let other = GuestRam::new(&MemoryLayout::x86_64(MIB).unwrap()).unwrap();
    other.register(vm).unwrap();
}

#[test]
fn kvm_slot_limit_is_checked() {
    let (_kvm, vm) = kvm_vm();
    let limit = usize::try_from(vm.check_extension_int(kvm_ioctls::Cap::NrMemslots)).unwrap();
    let ram = GuestRam::new(&MemoryLayout::x86_64(4 * GIB).unwrap()).unwrap();
    let first = u32::try_from(limit - 1).unwrap();
    let err = ram.register_at(vm, SlotId(first)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("2 memory slots from slot {first} exceed the VM's limit of {limit}")
    );
}

#[test]
fn kvm_mapping_outlives_guest_ram_while_registered() {
    let (_kvm, vm) = kvm_vm();
    let ram = GuestRam::new(&MemoryLayout::x86_64(16 * MIB).unwrap()).unwrap();
    ram.memory()
        .write_obj(0xf4u8, GuestAddress(0x1000))
        .unwrap(); // hlt
    let slots = ram.register(Arc::clone(&vm)).unwrap();
    drop(ram);
    // The guest still runs from the mapping the slots keep alive.
    let mut vcpu = common::real_mode_vcpu(&vm, 0);
    assert!(matches!(vcpu.run().unwrap(), VcpuExit::Hlt));
    drop(slots);
}

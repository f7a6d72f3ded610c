//! Backed NUMA RAM under a real KVM guest: needs /dev/kvm and fails when it cannot be opened.

mod common;

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use guest_memory::backing::backing_file_of;
use guest_memory::{parse_memory_backend, GuestRam, MemoryLayout, NodeId};
use kvm_ioctls::{Kvm, VcpuExit};
use vm_memory::{Bytes, GuestAddress};

const KIB: u64 = 1 << 10;

#[test]
fn kvm_guest_writes_land_in_the_memfd_of_their_node() {
    let kvm = Kvm::new().expect("this test needs /dev/kvm: opening it failed");
    let vm = Arc::new(kvm.create_vm().expect("KVM_CREATE_VM failed"));
    // Two 512 KiB nodes: node 0 at 0, node 1 at 0x80000, each from its own shared memfd.
    let layout =
        MemoryLayout::x86_64_numa(&[(NodeId(0), 512 * KIB), (NodeId(1), 512 * KIB)]).unwrap();
    let m0 = parse_memory_backend("memory-backend-memfd,id=m0,size=512K").unwrap();
    let m1 = parse_memory_backend("memory-backend-memfd,id=m1,size=512K,policy=bind,host-nodes=0")
        .unwrap();
    let ram = GuestRam::with_backends(&layout, &[(NodeId(0), &m0), (NodeId(1), &m1)]).unwrap();
    let slots = ram.register(Arc::clone(&vm)).unwrap();
    assert_eq!(slots.len(), 2);

    // Real mode at 0x1000 with DS = 0x8000 (node 1): mov byte [0x2000], 0x42; hlt
    let code = [0xc6, 0x06, 0x00, 0x20, 0x42, 0xf4];
    ram.memory()
        .write_slice(&code, GuestAddress(0x1000))
        .unwrap();
    let mut vcpu = common::real_mode_vcpu(&vm, 0x8000);
    assert!(matches!(vcpu.run().unwrap(), VcpuExit::Hlt));

    // The byte is in node 1's memfd at offset 0x2000, and not in node 0's.
    let (file1, offset) = backing_file_of(&ram, GuestAddress(0x82000)).unwrap();
    assert_eq!(offset, 0x2000);
    let mut byte = [0u8; 1];
    file1.read_exact_at(&mut byte, 0x2000).unwrap();
    assert_eq!(byte, [0x42]);
    let (file0, _) = backing_file_of(&ram, GuestAddress(0)).unwrap();
    file0.read_exact_at(&mut byte, 0x2000).unwrap();
    assert_eq!(byte, [0]);
}

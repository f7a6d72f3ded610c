//! Shared by the KVM tests of this crate.

use kvm_ioctls::{VcpuFd, VmFd};

/// Guest-physical address where the tests' real-mode code starts.
pub const CODE_GPA: u64 = 0x1000;

/// vCPU 0 in 16-bit real mode at [`CODE_GPA`], with CS based at 0 and DS = `ds_segment`
/// (base `ds_segment << 4`), ready to run the code the test wrote there.
pub fn real_mode_vcpu(vm: &VmFd, ds_segment: u16) -> VcpuFd {
    let vcpu = vm.create_vcpu(0).expect("KVM_CREATE_VCPU");
    let mut sregs = vcpu.get_sregs().unwrap();
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    sregs.ds.base = u64::from(ds_segment) << 4;
    sregs.ds.selector = ds_segment;
    vcpu.set_sregs(&sregs).unwrap();
    let mut regs = vcpu.get_regs().unwrap();
    regs.rip = CODE_GPA;
    regs.rflags = 2;
    vcpu.set_regs(&regs).unwrap();
    vcpu
}

//! The baseline of the exit-cost comparison: the least a VMM can do with raw KVM ioctls.
//!
//! `raw-loop N` creates a VM with 128 MiB of untouched guest RAM and one vCPU in real mode,
//! runs a guest that writes to port 0x10 N times and halts, and exits 0. No irqchip, no
//! threads, no configuration: every user-space instruction here is one any VMM must spend.

use std::process::ExitCode;

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuExit};

const RAM_SIZE: usize = 128 << 20;
const CODE_GPA: u64 = 0x1000;
/// `out 0x10, al; dec ecx; jnz -6; hlt` in 16-bit real mode.
const GUEST: [u8; 7] = [0xe6, 0x10, 0x66, 0x49, 0x75, 0xfa, 0xf4];

fn main() -> ExitCode {
    let exits: u32 = match std::env::args().nth(1).map(|s| s.parse()) {
        None => 1,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("raw-loop: usage: raw-loop [EXITS>0]");
            return ExitCode::from(2);
        }
    };
    match run(exits) {
        Ok(seen) if seen == exits => ExitCode::SUCCESS,
        Ok(seen) => {
            eprintln!("raw-loop: expected {exits} exits, saw {seen}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("raw-loop: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(exits: u32) -> Result<u32, String> {
    let kvm = Kvm::new().map_err(|e| format!("open /dev/kvm: {e}"))?;
    let vm = kvm.create_vm().map_err(|e| format!("KVM_CREATE_VM: {e}"))?;
    let ram = mem::AnonMapping::new(RAM_SIZE)?;
    ram.write(CODE_GPA as usize, &GUEST);
    let region = kvm_userspace_memory_region {
        slot: 0,
        guest_phys_addr: 0,
        memory_size: RAM_SIZE as u64,
        userspace_addr: ram.addr(),
        flags: 0,
    };
    // SAFETY: the region describes `ram`, a live anonymous mapping of RAM_SIZE bytes that
    // outlives the VM (both are dropped at the end of this function, the VM first).
    unsafe { vm.set_user_memory_region(region) }
        .map_err(|e| format!("KVM_SET_USER_MEMORY_REGION: {e}"))?;
    let mut vcpu = vm
        .create_vcpu(0)
        .map_err(|e| format!("KVM_CREATE_VCPU: {e}"))?;
    let mut sregs = vcpu
        .get_sregs()
        .map_err(|e| format!("KVM_GET_SREGS: {e}"))?;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs)
        .map_err(|e| format!("KVM_SET_SREGS: {e}"))?;
    let mut regs = vcpu.get_regs().map_err(|e| format!("KVM_GET_REGS: {e}"))?;
    regs.rip = CODE_GPA;
    regs.rflags = 2;
    regs.rcx = u64::from(exits);
    vcpu.set_regs(&regs)
        .map_err(|e| format!("KVM_SET_REGS: {e}"))?;

    let mut seen = 0u32;
    loop {
        match vcpu.run().map_err(|e| format!("KVM_RUN: {e}"))? {
            VcpuExit::IoOut(0x10, _) => seen += 1,
            VcpuExit::Hlt => return Ok(seen),
            other => return Err(format!("unexpected exit {other:?}")),
        }
    }
}

/// The one mapping this program needs, unsafe kept here.
mod mem {
    pub struct AnonMapping {
        ptr: *mut libc::c_void,
        len: usize,
    }

    impl AnonMapping {
        pub fn new(len: usize) -> Result<Self, String> {
            // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if ptr == libc::MAP_FAILED {
                return Err(format!(
                    "mmap guest RAM: {}",
                    std::io::Error::last_os_error()
                ));
            }
            Ok(Self { ptr, len })
        }

        pub fn addr(&self) -> u64 {
            self.ptr as u64
        }

        pub fn write(&self, offset: usize, bytes: &[u8]) {
            assert!(offset + bytes.len() <= self.len);
            // SAFETY: the range was checked against the mapping's length just above, and
            // nothing else references the mapping while this program writes the guest.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    self.ptr.cast::<u8>().add(offset),
                    bytes.len(),
                )
            };
        }
    }

    impl Drop for AnonMapping {
        fn drop(&mut self) {
            // SAFETY: unmaps exactly the mapping created in `new`.
            unsafe { libc::munmap(self.ptr, self.len) };
        }
    }
}

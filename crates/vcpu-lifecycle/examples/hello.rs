//! Two vCPUs in 16-bit real mode print "Hi" through port 0x3f8 and halt.
//!
//! `cargo run -p vcpu-lifecycle --example hello` (needs /dev/kvm).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cpu_topology::VcpuIndex;
use kvm_bindings::kvm_userspace_memory_region;
use vcpu_lifecycle::{event_channel, ExitAction, ExitHandler, VcpuContext, VcpuEvent, VcpuSet};

/// The guest, at GPA 0x1000:
/// `mov dx, 0x3f8` (ba f8 03); `mov al, 'H'` (b0 48); `out dx, al` (ee);
/// `mov al, 'i'` (b0 69); `out dx, al` (ee); `hlt` (f4).
const GUEST: &[u8] = &[0xba, 0xf8, 0x03, 0xb0, b'H', 0xee, 0xb0, b'i', 0xee, 0xf4];
const ENTRY: u64 = 0x1000;
const MEM_SIZE: usize = 0x10000;

/// A bus with one device: a "serial port" at 0x3f8 that collects what each vCPU writes.
#[derive(Default)]
struct Bus {
    serial: Mutex<BTreeMap<VcpuIndex, String>>,
}

impl ExitHandler for Bus {
    fn io_in(&self, _: VcpuIndex, _: u16, data: &mut [u8]) -> ExitAction {
        data.fill(0xff);
        ExitAction::Continue
    }
    fn io_out(&self, vcpu: VcpuIndex, port: u16, data: &[u8]) -> ExitAction {
        if port == 0x3f8 {
            let mut serial = self.serial.lock().unwrap_or_else(|e| e.into_inner());
            serial.entry(vcpu).or_default().push(char::from(data[0]));
        }
        ExitAction::Continue
    }
    fn mmio_read(&self, _: VcpuIndex, _: u64, data: &mut [u8]) -> ExitAction {
        data.fill(0xff);
        ExitAction::Continue
    }
    fn mmio_write(&self, _: VcpuIndex, _: u64, _: &[u8]) -> ExitAction {
        ExitAction::Continue
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let kvm = kvm_ioctls::Kvm::new()?;
    let vm = kvm.create_vm()?;

    // 64 KiB of page-aligned guest RAM at GPA 0 holding the guest code. Leaked: it must
    // outlive the VM.
    let raw: &'static mut [u8] = Box::leak(vec![0u8; MEM_SIZE + 4096].into_boxed_slice());
    let offset = raw.as_ptr().align_offset(4096);
    let mem = &mut raw[offset..][..MEM_SIZE];
    mem[ENTRY as usize..][..GUEST.len()].copy_from_slice(GUEST);
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: MEM_SIZE as u64,
        userspace_addr: mem.as_mut_ptr() as u64,
    };
    // SAFETY: the memory is valid for MEM_SIZE bytes and leaked, so it outlives the VM.
    unsafe { vm.set_user_memory_region(region)? };

    let bus = Arc::new(Bus::default());
    let (events, events_rx) = event_channel(None);
    let ctx = VcpuContext::new(bus.clone(), events)?;

    let mut vcpus = VcpuSet::new();
    for i in 0..2u32 {
        // The caller configures the vCPU: real mode, CS base 0, RIP at the guest.
        let fd = vm.create_vcpu(u64::from(i))?;
        let mut sregs = fd.get_sregs()?;
        sregs.cs.base = 0;
        sregs.cs.selector = 0;
        fd.set_sregs(&sregs)?;
        let mut regs = fd.get_regs()?;
        regs.rip = ENTRY;
        regs.rflags = 0x2;
        fd.set_regs(&regs)?;

        let handle = ctx.spawn(VcpuIndex(i), fd, None)?;
        println!("vCPU {i}: thread_id={}", handle.thread_id());
        vcpus.insert(handle);
    }

    let timeout = Duration::from_secs(5);
    vcpus.start_all(timeout)?;
    for _ in 0..vcpus.len() {
        match events_rx.recv_timeout(Duration::from_secs(30))? {
            VcpuEvent::Halted { vcpu } => println!("vCPU {vcpu}: halted"),
            VcpuEvent::StopVm(stop) => return Err(stop.to_string().into()),
        }
    }
    for (index, stats) in vcpus.stats() {
        let serial = bus.serial.lock().unwrap_or_else(|e| e.into_inner());
        let text = serial.get(&index).map_or("", String::as_str);
        println!(
            "vCPU {index}: wrote {text:?} in {} port exits",
            stats.io_out
        );
    }
    vcpus.stop_all(timeout)?;
    Ok(())
}

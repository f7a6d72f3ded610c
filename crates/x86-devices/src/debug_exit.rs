//! isa-debug-exit (QEMU's `-device isa-debug-exit,iobase=0xf4,iosize=0x4`): any write
//! ends the VM with [`VmExit::DebugExit`] of the value written, and QEMU's process exit
//! status is `(value << 1) | 1` ([`VmExit::debug_exit_status`]). kvm-unit-tests' `exit()`
//! writes its code with `outl` to port `0xf4`; its runner maps status 1 to PASS.
//! Reads return all ones, as QEMU's (the device has no read handler).

use cpu_topology::VcpuIndex;

use crate::bus::{BusDevice, DeviceAction, Range, VmExit};

/// The port kvm-unit-tests uses.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;
/// `iobase=0xf4,iosize=0x4`.
pub const DEBUG_EXIT_RANGE: Range = Range::ports(DEBUG_EXIT_PORT, 4);

/// The isa-debug-exit device.
#[derive(Debug, Clone, Copy, Default)]
pub struct DebugExit;

impl BusDevice for DebugExit {
    fn read(&self, _: VcpuIndex, _: u64, data: &mut [u8]) -> DeviceAction {
        data.fill(0xff);
        DeviceAction::Continue
    }

    /// The value is the access, little-endian (a byte, word or dword write; wider
    /// `rep outs` data keeps its first four bytes).
    fn write(&self, _: VcpuIndex, _: u64, data: &[u8]) -> DeviceAction {
        let mut value = [0u8; 4];
        let n = data.len().min(4);
        value[..n].copy_from_slice(&data[..n]);
        DeviceAction::End(VmExit::DebugExit(u32::from_le_bytes(value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_ends_the_vm_with_the_value() {
        let v = VcpuIndex(0);
        assert_eq!(
            DebugExit.write(v, 0, &1u32.to_le_bytes()),
            DeviceAction::End(VmExit::DebugExit(1))
        );
        assert_eq!(
            DebugExit.write(v, 0, &[0x7f]),
            DeviceAction::End(VmExit::DebugExit(0x7f))
        );
        assert_eq!(
            DebugExit.write(v, 0, &[2, 1]),
            DeviceAction::End(VmExit::DebugExit(0x102))
        );
        // kvm-unit-tests: report_summary() returns 0 (pass) -> status 1, 1 (fail) -> 3.
        assert_eq!(VmExit::debug_exit_status(0), 1);
        assert_eq!(VmExit::debug_exit_status(1), 3);
        let mut d = [0; 4];
        DebugExit.read(v, 0, &mut d);
        assert_eq!(d, [0xff; 4]);
    }
}

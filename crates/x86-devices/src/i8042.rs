//! The i8042 keyboard controller, reduced to what a guest without a keyboard uses: the
//! status port reads "no data, input buffer empty" and command `0xfe` (pulse the CPU
//! reset line, Linux's `reboot=k`) ends the VM with [`VmExit::Reboot`].
//!
//! Register one [`I8042`] at [`I8042_DATA_RANGE`] and at [`I8042_COMMAND_RANGE`]: the
//! device tells the two apart by the port it was registered for.

use cpu_topology::VcpuIndex;

use crate::bus::{BusDevice, DeviceAction, Range, ResetSource, VmExit};

/// The data port.
pub const I8042_DATA: u16 = 0x60;
/// The command/status port.
pub const I8042_COMMAND: u16 = 0x64;
/// The data port's range.
pub const I8042_DATA_RANGE: Range = Range::ports(I8042_DATA, 1);
/// The command port's range.
pub const I8042_COMMAND_RANGE: Range = Range::ports(I8042_COMMAND, 1);
/// Command: pulse the CPU reset line.
pub const I8042_RESET: u8 = 0xfe;

/// One i8042 port (data or command).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum I8042 {
    /// The data port: reads 0, writes ignored.
    Data,
    /// The command/status port: status 0, command [`I8042_RESET`] resets.
    Command,
}

impl BusDevice for I8042 {
    fn read(&self, _: VcpuIndex, _: u64, data: &mut [u8]) -> DeviceAction {
        // Status 0: no output data, input buffer empty (Linux's reboot path waits for it).
        data.fill(0);
        DeviceAction::Continue
    }

    fn write(&self, _: VcpuIndex, offset: u64, data: &[u8]) -> DeviceAction {
        if *self == I8042::Command && offset == 0 && data.first() == Some(&I8042_RESET) {
            return DeviceAction::End(VmExit::Reboot(ResetSource::I8042));
        }
        DeviceAction::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: VcpuIndex = VcpuIndex(0);

    #[test]
    fn command_0xfe_resets_and_nothing_else_does() {
        let mut b = [0xaa];
        I8042::Command.read(V, 0, &mut b);
        assert_eq!(b, [0]);
        assert_eq!(I8042::Command.write(V, 0, &[0xaa]), DeviceAction::Continue);
        assert_eq!(
            I8042::Data.write(V, 0, &[I8042_RESET]),
            DeviceAction::Continue
        );
        assert_eq!(
            I8042::Command.write(V, 0, &[I8042_RESET]),
            DeviceAction::End(VmExit::Reboot(ResetSource::I8042))
        );
    }
}

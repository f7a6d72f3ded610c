//! Edge-triggered interrupt lines: an eventfd the device writes, which the VMM registers
//! as a KVM irqfd on the line's GSI.
//!
//! An irqfd without a resample fd makes KVM assert and at once deassert the GSI, one edge
//! per eventfd write: what COM1's ISA interrupt and the GED's edge-triggered, active-high
//! `Interrupt` descriptors need.

use std::io;

use vmm_sys_util::eventfd::EventFd;

/// Why an interrupt line could not be created or raised.
#[derive(Debug, thiserror::Error)]
pub enum IrqError {
    /// The eventfd could not be created.
    #[error("create the {line} interrupt eventfd")]
    Create {
        /// Which line (`COM1`, `CPU hot-plug`, `power button`).
        line: &'static str,
        /// The eventfd error.
        #[source]
        source: io::Error,
    },
    /// The eventfd write that raises the interrupt failed.
    #[error("raise the {line} interrupt (GSI {gsi})")]
    Raise {
        /// Which line.
        line: &'static str,
        /// Its GSI.
        gsi: u32,
        /// The eventfd error.
        #[source]
        source: io::Error,
    },
}

/// One edge-triggered interrupt line: an eventfd for GSI `gsi`.
#[derive(Debug)]
pub struct InterruptLine {
    name: &'static str,
    gsi: u32,
    evt: EventFd,
}

impl InterruptLine {
    /// A line named `name` (for messages) on `gsi`, with a fresh non-blocking eventfd.
    pub fn new(name: &'static str, gsi: u32) -> Result<Self, IrqError> {
        let evt = EventFd::new(libc::EFD_NONBLOCK)
            .map_err(|source| IrqError::Create { line: name, source })?;
        Ok(Self { name, gsi, evt })
    }

    /// The line's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The GSI the VMM registers the eventfd on.
    pub fn gsi(&self) -> u32 {
        self.gsi
    }

    /// The eventfd (for `VmFd::register_irqfd`).
    pub fn eventfd(&self) -> &EventFd {
        &self.evt
    }

    /// Raise one edge.
    pub fn pulse(&self) -> Result<(), IrqError> {
        self.evt.write(1).map_err(|source| IrqError::Raise {
            line: self.name,
            gsi: self.gsi,
            source,
        })
    }

    /// Register the eventfd as a KVM irqfd on the line's GSI (needs the in-kernel
    /// irqchip).
    pub fn register(&self, vm: &kvm_ioctls::VmFd) -> Result<(), kvm_ioctls::Error> {
        vm.register_irqfd(&self.evt, self.gsi)
    }

    /// How many edges were raised since the last call (tests; consumes the count).
    pub fn take_pulses(&self) -> u64 {
        self.evt.read().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulses_are_counted_on_the_eventfd() {
        let line = InterruptLine::new("COM1", 4).unwrap();
        assert_eq!((line.name(), line.gsi()), ("COM1", 4));
        assert_eq!(line.take_pulses(), 0);
        line.pulse().unwrap();
        line.pulse().unwrap();
        assert_eq!(line.take_pulses(), 2);
        assert_eq!(line.take_pulses(), 0);
    }
}

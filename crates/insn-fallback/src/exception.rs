//! Exceptions the completed instruction raises in the guest.

use std::fmt;

/// An exception vector the core can raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vector {
    /// #DB (1), from INT1.
    Debug,
    /// #BP (3), from INT3.
    Breakpoint,
    /// #OF (4), from INTO with OF set.
    Overflow,
    /// #UD (6).
    InvalidOpcode,
    /// #NM (7).
    DeviceNotAvailable,
    /// #SS (12), a non-canonical stack-segment address.
    StackFault,
    /// #GP (13).
    GeneralProtection,
    /// #PF (14).
    PageFault,
    /// #MF (16), a pending x87 exception at FWAIT.
    X87,
}

impl Vector {
    /// The vector number.
    pub fn number(self) -> u8 {
        match self {
            Vector::Debug => 1,
            Vector::Breakpoint => 3,
            Vector::Overflow => 4,
            Vector::InvalidOpcode => 6,
            Vector::DeviceNotAvailable => 7,
            Vector::StackFault => 12,
            Vector::GeneralProtection => 13,
            Vector::PageFault => 14,
            Vector::X87 => 16,
        }
    }

    /// The mnemonic (`#UD`).
    pub fn mnemonic(self) -> &'static str {
        match self {
            Vector::Debug => "#DB",
            Vector::Breakpoint => "#BP",
            Vector::Overflow => "#OF",
            Vector::InvalidOpcode => "#UD",
            Vector::DeviceNotAvailable => "#NM",
            Vector::StackFault => "#SS",
            Vector::GeneralProtection => "#GP",
            Vector::PageFault => "#PF",
            Vector::X87 => "#MF",
        }
    }

    /// A trap reports the address after the instruction (#DB from INT1, #BP, #OF); a fault
    /// reports the instruction itself, which runs again after the handler.
    pub fn is_trap(self) -> bool {
        matches!(self, Vector::Debug | Vector::Breakpoint | Vector::Overflow)
    }
}

/// An exception to deliver to the guest, with its error code and, for #PF, the faulting
/// linear address (CR2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Exception {
    /// Which exception.
    pub vector: Vector,
    /// The error code pushed with it (#GP, #PF).
    pub error_code: Option<u32>,
    /// CR2 for #PF.
    pub cr2: Option<u64>,
}

impl Exception {
    const fn plain(vector: Vector) -> Self {
        Exception {
            vector,
            error_code: None,
            cr2: None,
        }
    }

    /// #UD.
    pub const UD: Exception = Exception::plain(Vector::InvalidOpcode);
    /// #NM.
    pub const NM: Exception = Exception::plain(Vector::DeviceNotAvailable);
    /// #BP.
    pub const BP: Exception = Exception::plain(Vector::Breakpoint);
    /// #DB.
    pub const DB: Exception = Exception::plain(Vector::Debug);
    /// #OF.
    pub const OF: Exception = Exception::plain(Vector::Overflow);
    /// #MF.
    pub const MF: Exception = Exception::plain(Vector::X87);
    /// #GP(0).
    pub const GP0: Exception = Exception {
        vector: Vector::GeneralProtection,
        error_code: Some(0),
        cr2: None,
    };

    /// #SS(0).
    pub const SS0: Exception = Exception {
        vector: Vector::StackFault,
        error_code: Some(0),
        cr2: None,
    };

    /// #PF at `addr` with `error_code` (see [`crate::paging::PfCode`]).
    pub fn page_fault(addr: u64, error_code: u32) -> Self {
        Exception {
            vector: Vector::PageFault,
            error_code: Some(error_code),
            cr2: Some(addr),
        }
    }
}

impl fmt::Display for Exception {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.vector.mnemonic())?;
        if let Some(code) = self.error_code {
            write!(f, "({code:#x})")?;
        }
        if let Some(cr2) = self.cr2 {
            write!(f, " at {cr2:#x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_numbers() {
        assert_eq!(Exception::GP0.to_string(), "#GP(0x0)");
        assert_eq!(Exception::UD.to_string(), "#UD");
        assert_eq!(
            Exception::page_fault(0xdead000, 0x6).to_string(),
            "#PF(0x6) at 0xdead000"
        );
        let rows = [
            (Vector::Debug, 1, true),
            (Vector::Breakpoint, 3, true),
            (Vector::Overflow, 4, true),
            (Vector::InvalidOpcode, 6, false),
            (Vector::DeviceNotAvailable, 7, false),
            (Vector::StackFault, 12, false),
            (Vector::GeneralProtection, 13, false),
            (Vector::PageFault, 14, false),
            (Vector::X87, 16, false),
        ];
        for (v, n, trap) in rows {
            assert_eq!((v.number(), v.is_trap()), (n, trap), "{}", v.mnemonic());
        }
    }
}

//! Page-protection checks of a data access, given the effective permissions of a walk.

use crate::cpu::{AccessKind, AC, CR0_WP, CR4_SMAP};

/// #PF error code bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PfCode;

impl PfCode {
    /// P: the page was present (a protection violation, not a missing page).
    pub const PRESENT: u32 = 1 << 0;
    /// W/R: the access was a write.
    pub const WRITE: u32 = 1 << 1;
    /// U/S: the access was a user-mode (CPL3) access.
    pub const USER: u32 = 1 << 2;
    /// RSVD: a reserved bit was set in a paging-structure entry.
    pub const RESERVED: u32 = 1 << 3;

    /// The error code of an access of `kind` at `cpl` that found no present page.
    pub fn not_present(kind: AccessKind, cpl: u8) -> u32 {
        access_bits(kind, cpl)
    }
}

fn access_bits(kind: AccessKind, cpl: u8) -> u32 {
    let mut code = 0;
    if kind == AccessKind::Write {
        code |= PfCode::WRITE;
    }
    if cpl == 3 {
        code |= PfCode::USER;
    }
    code
}

/// The effective permissions of a translation (R/W and U/S of every level combined).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagePermissions {
    /// Writes allowed at every level.
    pub writable: bool,
    /// User-mode access allowed at every level.
    pub user: bool,
}

/// Checks an explicit data access of `kind` at `cpl` to a present page with `perms`, under
/// CR0.WP, CR4.SMAP and RFLAGS.AC. Returns the #PF error code of a violation.
///
/// * CPL3 needs a user page, and a writable one for writes.
/// * CPL0-2 writes to a read-only page fault only with CR0.WP.
/// * CPL0-2 accesses to a user page fault with CR4.SMAP unless RFLAGS.AC is set.
pub fn check(
    perms: PagePermissions,
    kind: AccessKind,
    cpl: u8,
    cr0: u64,
    cr4: u64,
    rflags: u64,
) -> Result<(), u32> {
    let violation = if cpl == 3 {
        !perms.user || (kind == AccessKind::Write && !perms.writable)
    } else {
        let ro = kind == AccessKind::Write && !perms.writable && cr0 & CR0_WP != 0;
        let smap = perms.user && cr4 & CR4_SMAP != 0 && rflags & AC == 0;
        ro || smap
    };
    if violation {
        Err(PfCode::PRESENT | access_bits(kind, cpl))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AccessKind::{Read, Write};

    const RW_SUP: PagePermissions = PagePermissions {
        writable: true,
        user: false,
    };
    const RO_SUP: PagePermissions = PagePermissions {
        writable: false,
        user: false,
    };
    const RW_USER: PagePermissions = PagePermissions {
        writable: true,
        user: true,
    };
    const RO_USER: PagePermissions = PagePermissions {
        writable: false,
        user: true,
    };

    #[test]
    fn protection_table() {
        // (perms, kind, cpl, cr0, cr4, rflags, expected)
        let rows = [
            (RW_SUP, Write, 0, 0, 0, 0, Ok(())),
            (RO_SUP, Write, 0, 0, 0, 0, Ok(())),
            (RO_SUP, Write, 0, CR0_WP, 0, 0, Err(0b011)),
            (RO_SUP, Read, 0, CR0_WP, 0, 0, Ok(())),
            (RW_USER, Read, 0, 0, CR4_SMAP, 0, Err(0b001)),
            (RW_USER, Write, 0, 0, CR4_SMAP, 0, Err(0b011)),
            (RW_USER, Write, 0, 0, CR4_SMAP, AC, Ok(())),
            (RW_USER, Read, 0, 0, 0, 0, Ok(())),
            (RW_SUP, Read, 3, 0, 0, 0, Err(0b101)),
            (RO_USER, Write, 3, 0, 0, 0, Err(0b111)),
            (RO_USER, Read, 3, 0, CR4_SMAP, 0, Ok(())),
            (RW_USER, Write, 3, CR0_WP, CR4_SMAP, 0, Ok(())),
        ];
        for (i, (perms, kind, cpl, cr0, cr4, rflags, want)) in rows.into_iter().enumerate() {
            assert_eq!(check(perms, kind, cpl, cr0, cr4, rflags), want, "row {i}");
        }
        assert_eq!(PfCode::not_present(Write, 3), 0b110);
        assert_eq!(PfCode::not_present(Read, 0), 0);
    }
}

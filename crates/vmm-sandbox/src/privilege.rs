//! `--runas USER[:GROUP]` (QEMU's `-runas`) and dropping capabilities.
//!
//! The order matters and is the caller's: open `/dev/kvm`, create the VM, bind every
//! socket and create every file first; then [`drop_privileges`] once, on the main thread,
//! before any other thread exists (capability sets are per thread; threads spawned later
//! inherit the dropped sets), and only then install the seccomp filters.

use std::fmt;
use std::io;
use std::str::FromStr;

use crate::sys;

/// A parsed `--runas USER[:GROUP]`; names or numeric ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunAs {
    /// User name, or a numeric uid.
    pub user: String,
    /// Group name or numeric gid; the user's primary group when absent.
    pub group: Option<String>,
}

/// The ids a [`RunAs`] resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Credentials {
    /// User id.
    pub uid: u32,
    /// Group id (also the only supplementary group after the drop).
    pub gid: u32,
}

/// Errors from `--runas` and the capability drop. Every message is one line.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// `--runas` is empty, or has an empty part or more than one `:`.
    #[error("invalid --runas '{value}': expected USER[:GROUP]")]
    InvalidRunAs {
        /// The value given.
        value: String,
    },
    /// No such user (and not a number).
    #[error("--runas: no user '{user}'")]
    NoSuchUser {
        /// The name.
        user: String,
    },
    /// No such group (and not a number).
    #[error("--runas: no group '{group}'")]
    NoSuchGroup {
        /// The name.
        group: String,
    },
    /// The user or group database could not be read.
    #[error("--runas: looking up '{name}' failed")]
    Lookup {
        /// The name.
        name: String,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// One of setgroups, setgid, setuid failed.
    #[error("--runas: {call} failed")]
    SetId {
        /// The call.
        call: &'static str,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// After the drop the ids are not the requested ones, or uid 0 could be regained.
    #[error("--runas: the drop did not stick (uids {uids:?}, gids {gids:?}, wanted {uid}:{gid})")]
    NotDropped {
        /// Real, effective, saved uid after the drop.
        uids: (u32, u32, u32),
        /// Real, effective, saved gid after the drop.
        gids: (u32, u32, u32),
        /// Wanted uid.
        uid: u32,
        /// Wanted gid.
        gid: u32,
    },
    /// A capability syscall failed.
    #[error("dropping capabilities: {call} failed")]
    Capabilities {
        /// The call.
        call: &'static str,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// Another thread of the process still holds capabilities (it was spawned before the
    /// drop, which empties only the calling thread's sets when there is no `--runas`).
    #[error("dropping capabilities: thread {tid} '{name}' still holds capabilities (CapPrm {permitted:#x}); drop them before spawning threads")]
    ThreadKeepsCapabilities {
        /// The thread id.
        tid: u32,
        /// Its name.
        name: String,
        /// Its permitted set.
        permitted: u64,
    },
    /// Capabilities are left after the drop (effective, permitted masks).
    #[error(
        "dropping capabilities did not stick: effective {effective:#x}, permitted {permitted:#x}"
    )]
    CapabilitiesLeft {
        /// CapEff.
        effective: u64,
        /// CapPrm.
        permitted: u64,
    },
}

impl FromStr for RunAs {
    type Err = PrivilegeError;

    /// Parse `USER[:GROUP]`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || PrivilegeError::InvalidRunAs {
            value: s.to_owned(),
        };
        let (user, group) = match s.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (s, None),
        };
        let bad = |p: &str| p.is_empty() || p.contains(':') || p.contains('\0');
        if bad(user) || group.is_some_and(bad) {
            return Err(invalid());
        }
        Ok(Self {
            user: user.to_owned(),
            group: group.map(str::to_owned),
        })
    }
}

impl fmt::Display for RunAs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.user)?;
        if let Some(g) = &self.group {
            write!(f, ":{g}")?;
        }
        Ok(())
    }
}

/// `--runas` value parser for clap (`value_parser = parse_runas`).
pub fn parse_runas(s: &str) -> Result<RunAs, PrivilegeError> {
    s.parse()
}

impl RunAs {
    /// Look the names up (`getpwnam_r`, `getgrnam_r`); a name that is not in the database
    /// but is a decimal number is taken as an id, as QEMU does for `-runas`.
    pub fn resolve(&self) -> Result<Credentials, PrivilegeError> {
        let lookup = |name: &str, source| PrivilegeError::Lookup {
            name: name.to_owned(),
            source,
        };
        let (uid, primary) =
            match sys::user_by_name(&self.user).map_err(|e| lookup(&self.user, e))? {
                Some(ids) => (ids.0, Some(ids.1)),
                None => match self.user.parse::<u32>() {
                    Ok(uid) => (uid, None),
                    Err(_) => {
                        return Err(PrivilegeError::NoSuchUser {
                            user: self.user.clone(),
                        })
                    }
                },
            };
        let gid = match &self.group {
            Some(group) => match sys::group_by_name(group).map_err(|e| lookup(group, e))? {
                Some(gid) => gid,
                None => group
                    .parse::<u32>()
                    .map_err(|_| PrivilegeError::NoSuchGroup {
                        group: group.clone(),
                    })?,
            },
            // A numeric uid without a passwd entry has no primary group: use gid = uid.
            None => primary.unwrap_or(uid),
        };
        Ok(Credentials { uid, gid })
    }
}

/// Drop to `runas` (when given) and drop every capability, for the whole process.
///
/// 1. Empty the bounding set (so no later exec can regain anything) and the ambient set.
/// 2. With `runas`: `setgroups([gid])`, `setgid(gid)`, `setuid(uid)`, in that order (each
///    needs the privilege the next one removes); then check that real, effective and saved
///    ids are the requested ones and, for a non-root uid, that `setuid(0)` fails.
/// 3. Empty the effective, permitted and inheritable sets (`capset`) and check that the
///    kernel reports both effective and permitted empty.
///
/// 4. Check that no thread of the process keeps a permitted capability.
///
/// Call it on the main thread before any other thread is spawned: capability sets are per
/// thread (without `runas` only the calling thread's are emptied; step 4 reports a thread
/// spawned too early), and later threads inherit the emptied ones. Running as root without `runas`
/// is supported: the process keeps uid 0 but holds no capability, so it can still use
/// the fds it opened and files it owns, and nothing else root could.
pub fn drop_privileges(runas: Option<&Credentials>) -> Result<(), PrivilegeError> {
    let caps = |call, source| PrivilegeError::Capabilities { call, source };
    // Up to the kernel's last capability: the first number it does not know is EINVAL
    // (one syscall instead of reading /proc/sys/kernel/cap_last_cap).
    for cap in 0..64 {
        match sys::bounding_drop(cap) {
            // EPERM: no CAP_SETPCAP (not started as root): the bounding set stays, but the
            // permitted set, which is what counts, is still emptied below.
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => break,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(e) => return Err(caps("prctl(PR_CAPBSET_DROP)", e)),
        }
    }
    sys::ambient_clear().map_err(|e| caps("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", e))?;
    if let Some(c) = runas {
        let set_id = |call, source| PrivilegeError::SetId { call, source };
        sys::set_groups(&[c.gid]).map_err(|e| set_id("setgroups", e))?;
        sys::set_gid(c.gid).map_err(|e| set_id("setgid", e))?;
        sys::set_uid(c.uid).map_err(|e| set_id("setuid", e))?;
        let (uids, gids) = sys::res_ids();
        let regained = c.uid != 0 && sys::set_uid(0).is_ok();
        if uids != (c.uid, c.uid, c.uid) || gids != (c.gid, c.gid, c.gid) || regained {
            return Err(PrivilegeError::NotDropped {
                uids,
                gids,
                uid: c.uid,
                gid: c.gid,
            });
        }
    }
    sys::capset_empty().map_err(|e| caps("capset", e))?;
    let (effective, permitted) = sys::capget().map_err(|e| caps("capget", e))?;
    if effective != 0 || permitted != 0 {
        return Err(PrivilegeError::CapabilitiesLeft {
            effective,
            permitted,
        });
    }
    other_threads_hold_none()
}

/// Check `/proc/self/task/*/status`: no other thread may keep a permitted capability
/// (the calling thread's sets were just read with `capget`).
fn other_threads_hold_none() -> Result<(), PrivilegeError> {
    let caps = |source| PrivilegeError::Capabilities {
        call: "reading /proc/self/task",
        source,
    };
    let me = sys::gettid().to_string();
    for task in std::fs::read_dir("/proc/self/task").map_err(caps)? {
        let task = task.map_err(caps)?;
        if task.file_name().to_str() == Some(me.as_str()) {
            continue;
        }
        // A thread that ended since the listing has nothing left to check.
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::trim)
                .unwrap_or_default()
        };
        let permitted = u64::from_str_radix(field("CapPrm:"), 16).unwrap_or(u64::MAX);
        if permitted != 0 {
            return Err(PrivilegeError::ThreadKeepsCapabilities {
                tid: task.file_name().to_string_lossy().parse().unwrap_or(0),
                name: field("Name:").to_owned(),
                permitted,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runas_grammar_table() {
        let ok = |u: &str, g: Option<&str>| {
            Ok::<_, String>(RunAs {
                user: u.into(),
                group: g.map(Into::into),
            })
        };
        let err = |v: &str| Err(format!("invalid --runas '{v}': expected USER[:GROUP]"));
        let rows = [
            ("nobody", ok("nobody", None)),
            ("nobody:nogroup", ok("nobody", Some("nogroup"))),
            ("65534:65534", ok("65534", Some("65534"))),
            ("", err("")),
            (":grp", err(":grp")),
            ("usr:", err("usr:")),
            ("a:b:c", err("a:b:c")),
        ];
        for (input, want) in rows {
            let got = parse_runas(input).map_err(|e| e.to_string());
            assert_eq!(got, want, "input {input:?}");
            if let Ok(r) = got {
                assert_eq!(r.to_string(), input);
            }
        }
    }

    #[test]
    fn resolves_names_and_numbers() {
        // Debian's base-passwd gives root uid 0, gid 0 on every system.
        let root = parse_runas("root").unwrap().resolve().unwrap();
        assert_eq!(root, Credentials { uid: 0, gid: 0 });
        let numeric = parse_runas("4242:4343").unwrap().resolve().unwrap();
        assert_eq!(
            numeric,
            Credentials {
                uid: 4242,
                gid: 4343
            }
        );
        let err = parse_runas("no-such-user-x")
            .unwrap()
            .resolve()
            .unwrap_err();
        assert_eq!(err.to_string(), "--runas: no user 'no-such-user-x'");
        let err = parse_runas("root:no-such-group-x")
            .unwrap()
            .resolve()
            .unwrap_err();
        assert_eq!(err.to_string(), "--runas: no group 'no-such-group-x'");
    }
}

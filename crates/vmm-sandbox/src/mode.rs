//! The `--seccomp on|log|off` grammar and QEMU's `-sandbox on|off[,KEY=VALUE...]`.

use std::fmt;
use std::str::FromStr;

/// What a filter does with a syscall its thread kind does not need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SeccompMode {
    /// End the process with a message naming the syscall (`SECCOMP_RET_TRAP` and the
    /// SIGSYS reporter). The default.
    #[default]
    On,
    /// Let the syscall through and have the kernel log it (`SECCOMP_RET_LOG`: an audit
    /// record, `type=1326`, in the kernel log).
    Log,
    /// No filter at all.
    Off,
}

/// A `--seccomp` or `-sandbox` value that is not valid. Every message is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModeError {
    /// `--seccomp` takes on, log or off.
    #[error("invalid --seccomp mode '{value}': expected on, log or off")]
    InvalidSeccomp {
        /// The value given.
        value: String,
    },
    /// `-sandbox` starts with on or off.
    #[error("invalid -sandbox value '{value}': expected on or off first")]
    InvalidSandbox {
        /// The first item given.
        value: String,
    },
    /// A `-sandbox` option QEMU does not have, or an item without `=`.
    #[error("invalid -sandbox option '{item}': expected obsolete, elevateprivileges, spawn or resourcecontrol=allow|deny|children")]
    InvalidSandboxOption {
        /// The item given.
        item: String,
    },
    /// A `-sandbox` option given twice.
    #[error("-sandbox option '{key}' given twice")]
    DuplicateSandboxOption {
        /// The key.
        key: String,
    },
}

/// QEMU's `-sandbox` sub-options. This VMM's filters already deny what each of them can
/// deny (obsolete syscalls, set*uid, fork/exec, scheduler and resource changes outside
/// its own threads), so they are accepted for compatibility and change nothing.
const SANDBOX_KEYS: [&str; 4] = ["obsolete", "elevateprivileges", "spawn", "resourcecontrol"];

impl SeccompMode {
    /// Parse QEMU's `-sandbox on|off[,obsolete=..][,elevateprivileges=..][,spawn=..]`
    /// `[,resourcecontrol=..]` (values `allow`, `deny`, `children`). `on` maps to
    /// [`SeccompMode::On`]; QEMU has no log mode.
    pub fn parse_sandbox(s: &str) -> Result<Self, ModeError> {
        let mut items = s.split(',');
        let first = items.next().unwrap_or_default();
        let mode = match first {
            "on" => Self::On,
            "off" => Self::Off,
            _ => {
                return Err(ModeError::InvalidSandbox {
                    value: first.to_owned(),
                })
            }
        };
        let mut seen: Vec<&str> = Vec::new();
        for item in items {
            let bad = || ModeError::InvalidSandboxOption {
                item: item.to_owned(),
            };
            let (key, value) = item.split_once('=').ok_or_else(bad)?;
            if !SANDBOX_KEYS.contains(&key) || !["allow", "deny", "children"].contains(&value) {
                return Err(bad());
            }
            if seen.contains(&key) {
                return Err(ModeError::DuplicateSandboxOption {
                    key: key.to_owned(),
                });
            }
            seen.push(key);
        }
        Ok(mode)
    }

    /// The mode's `--seccomp` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::On => "on",
            Self::Log => "log",
            Self::Off => "off",
        }
    }
}

impl FromStr for SeccompMode {
    type Err = ModeError;

    /// Parse `--seccomp on|log|off`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "on" => Ok(Self::On),
            "log" => Ok(Self::Log),
            "off" => Ok(Self::Off),
            _ => Err(ModeError::InvalidSeccomp {
                value: s.to_owned(),
            }),
        }
    }
}

impl fmt::Display for SeccompMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `--seccomp` value parser for clap (`value_parser = parse_seccomp`).
pub fn parse_seccomp(s: &str) -> Result<SeccompMode, ModeError> {
    s.parse()
}

/// `-sandbox` value parser for clap (`value_parser = parse_sandbox`).
pub fn parse_sandbox(s: &str) -> Result<SeccompMode, ModeError> {
    SeccompMode::parse_sandbox(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seccomp_grammar_table() {
        let rows: [(&str, Result<SeccompMode, &str>); 6] = [
            ("on", Ok(SeccompMode::On)),
            ("log", Ok(SeccompMode::Log)),
            ("off", Ok(SeccompMode::Off)),
            (
                "",
                Err("invalid --seccomp mode '': expected on, log or off"),
            ),
            (
                "ON",
                Err("invalid --seccomp mode 'ON': expected on, log or off"),
            ),
            (
                "on,log",
                Err("invalid --seccomp mode 'on,log': expected on, log or off"),
            ),
        ];
        for (input, want) in rows {
            let got = parse_seccomp(input).map_err(|e| e.to_string());
            assert_eq!(got, want.map_err(str::to_owned), "input {input:?}");
        }
    }

    #[test]
    fn sandbox_grammar_table() {
        let opt =
            "expected obsolete, elevateprivileges, spawn or resourcecontrol=allow|deny|children";
        let rows: Vec<(&str, Result<SeccompMode, String>)> = vec![
            ("on", Ok(SeccompMode::On)),
            ("off", Ok(SeccompMode::Off)),
            (
                "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
                Ok(SeccompMode::On),
            ),
            ("on,elevateprivileges=children", Ok(SeccompMode::On)),
            (
                "log",
                Err("invalid -sandbox value 'log': expected on or off first".into()),
            ),
            (
                "",
                Err("invalid -sandbox value '': expected on or off first".into()),
            ),
            (
                "on,spawn",
                Err(format!("invalid -sandbox option 'spawn': {opt}")),
            ),
            (
                "on,spawn=maybe",
                Err(format!("invalid -sandbox option 'spawn=maybe': {opt}")),
            ),
            (
                "on,fork=deny",
                Err(format!("invalid -sandbox option 'fork=deny': {opt}")),
            ),
            (
                "on,spawn=deny,spawn=allow",
                Err("-sandbox option 'spawn' given twice".into()),
            ),
        ];
        for (input, want) in rows {
            let got = parse_sandbox(input).map_err(|e| e.to_string());
            assert_eq!(got, want, "input {input:?}");
        }
    }

    #[test]
    fn seccomp_spelling_round_trips() {
        for mode in [SeccompMode::On, SeccompMode::Log, SeccompMode::Off] {
            assert_eq!(mode.to_string().parse::<SeccompMode>(), Ok(mode));
        }
        assert_eq!(SeccompMode::default(), SeccompMode::On);
    }
}

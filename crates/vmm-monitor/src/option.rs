//! The `--qmp` option, in QEMU's chardev spelling.
//!
//! Accepted: `unix:PATH,server,wait=off`, `unix:PATH,server=on,wait=off`,
//! `unix:PATH,server,nowait`, and a plain `PATH` (server, no wait). A `,` inside the path
//! is written `,,` as in QEMU.

use std::path::PathBuf;

/// A parsed `--qmp` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QmpOption {
    /// Where the listening socket is created.
    pub path: PathBuf,
    /// `wait=on`: do not start the guest before a client has connected (QEMU's default for
    /// server sockets when `wait` is not given).
    pub wait: bool,
}

/// Why a `--qmp` option was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QmpOptionError {
    /// Another chardev backend was named.
    #[error("unsupported QMP transport '{0}': only unix: sockets are supported")]
    Transport(String),
    /// No path was given.
    #[error("the QMP socket path is empty")]
    EmptyPath,
    /// `server=off` or `server` missing after `unix:`.
    #[error("the QMP socket must be a server: use 'unix:PATH,server=on,wait=off'")]
    NotServer,
    /// An unknown `key[=value]`.
    #[error("unknown QMP socket option '{0}' (expected server, wait or nowait)")]
    UnknownOption(String),
    /// A switch got something other than on/off.
    #[error("invalid value '{value}' for QMP socket option '{key}' (expected on or off)")]
    BadSwitch {
        /// Option name.
        key: String,
        /// Value given.
        value: String,
    },
}

/// Chardev backends QEMU knows that this monitor does not serve.
const OTHER_BACKENDS: &[&str] = &[
    "tcp",
    "telnet",
    "tn3270",
    "websocket",
    "udp",
    "stdio",
    "pty",
    "null",
    "vc",
    "file",
    "pipe",
    "serial",
    "tty",
    "mon",
    "chardev",
    "vsock",
    "fd",
    "none",
];

fn split_escaped(s: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                if let Some(last) = parts.last_mut() {
                    last.push(',');
                }
            } else {
                parts.push(String::new());
            }
        } else if let Some(last) = parts.last_mut() {
            last.push(c);
        }
    }
    parts
}

fn switch(key: &str, value: Option<&str>) -> Result<bool, QmpOptionError> {
    match value {
        None | Some("on") | Some("yes") | Some("true") => Ok(true),
        Some("off") | Some("no") | Some("false") => Ok(false),
        Some(v) => Err(QmpOptionError::BadSwitch {
            key: key.to_owned(),
            value: v.to_owned(),
        }),
    }
}

/// Parses a `--qmp` value.
pub fn parse_qmp_option(s: &str) -> Result<QmpOption, QmpOptionError> {
    let (scheme, rest) = match s.split_once(':') {
        Some((scheme, rest)) if scheme.chars().all(|c| c.is_ascii_alphanumeric()) => {
            (Some(scheme), rest)
        }
        _ => (None, s),
    };
    match scheme {
        Some("unix") => {}
        Some(other) => return Err(QmpOptionError::Transport(other.to_owned())),
        None if OTHER_BACKENDS.contains(&s.split(',').next().unwrap_or_default()) => {
            return Err(QmpOptionError::Transport(
                s.split(',').next().unwrap_or_default().into(),
            ))
        }
        None => {}
    }
    let mut parts = split_escaped(rest).into_iter();
    let path = parts.next().unwrap_or_default();
    if path.is_empty() {
        return Err(QmpOptionError::EmptyPath);
    }
    // A plain path means a server that does not wait.
    let mut server = scheme.is_none();
    let mut wait = None;
    for part in parts {
        let (key, value) = match part.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (part.as_str(), None),
        };
        match key {
            "server" => server = switch(key, value)?,
            "wait" => wait = Some(switch(key, value)?),
            "nowait" if value.is_none() => wait = Some(false),
            _ => return Err(QmpOptionError::UnknownOption(part.clone())),
        }
    }
    if !server {
        return Err(QmpOptionError::NotServer);
    }
    Ok(QmpOption {
        path: PathBuf::from(path),
        wait: wait.unwrap_or(scheme.is_some()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qmp_option_table() {
        let ok: &[(&str, &str, bool)] = &[
            ("unix:/tmp/q.sock,server,wait=off", "/tmp/q.sock", false),
            ("unix:/tmp/q.sock,server=on,wait=off", "/tmp/q.sock", false),
            ("unix:/tmp/q.sock,server,nowait", "/tmp/q.sock", false),
            ("unix:/tmp/q.sock,server", "/tmp/q.sock", true),
            ("unix:/tmp/q.sock,server=on,wait=on", "/tmp/q.sock", true),
            ("unix:rel/q.sock,wait=no,server=yes", "rel/q.sock", false),
            ("/run/vmm/qmp.sock", "/run/vmm/qmp.sock", false),
            ("qmp.sock", "qmp.sock", false),
            (
                "unix:/tmp/a,,b.sock,server,wait=off",
                "/tmp/a,b.sock",
                false,
            ),
            ("/tmp/x:y.sock", "/tmp/x:y.sock", false),
        ];
        for (input, path, wait) in ok {
            assert_eq!(
                parse_qmp_option(input),
                Ok(QmpOption {
                    path: PathBuf::from(path),
                    wait: *wait
                }),
                "{input}"
            );
        }
        let bad: &[(&str, &str)] = &[
            (
                "tcp:127.0.0.1:4444,server,wait=off",
                "unsupported QMP transport 'tcp': only unix: sockets are supported",
            ),
            (
                "telnet:localhost:4444,server",
                "unsupported QMP transport 'telnet': only unix: sockets are supported",
            ),
            (
                "stdio",
                "unsupported QMP transport 'stdio': only unix: sockets are supported",
            ),
            ("unix:", "the QMP socket path is empty"),
            ("", "the QMP socket path is empty"),
            (
                "unix:/tmp/q.sock",
                "the QMP socket must be a server: use 'unix:PATH,server=on,wait=off'",
            ),
            (
                "unix:/tmp/q.sock,server=off",
                "the QMP socket must be a server: use 'unix:PATH,server=on,wait=off'",
            ),
            (
                "unix:/tmp/q.sock,server,wait=maybe",
                "invalid value 'maybe' for QMP socket option 'wait' (expected on or off)",
            ),
            (
                "unix:/tmp/q.sock,server,reconnect=1",
                "unknown QMP socket option 'reconnect=1' (expected server, wait or nowait)",
            ),
        ];
        for (input, err) in bad {
            assert_eq!(
                parse_qmp_option(input).unwrap_err().to_string(),
                *err,
                "{input}"
            );
        }
    }
}

//! The `--serial` option (QEMU's spellings): where COM1's output goes and its input
//! comes from.
//!
//! | `--serial` | output | input |
//! |---|---|---|
//! | `stdio` | standard output, line buffered | standard input |
//! | `file:PATH` | PATH (created or truncated), line buffered | none |
//! | `null`, `none` | nowhere | none |
//! | `unix:PATH,server[,wait=off]` | the connected client, unbuffered | the connected client |
//! | `tcp:[HOST]:PORT,server[,wait=off]` | the connected client, unbuffered | the connected client |
//!
//! [`SerialOutput`]'s `Display` prints the canonical spelling, which parses back to the
//! same value.

use std::fmt;
use std::path::PathBuf;

/// Where COM1's output goes and its input comes from (`--serial`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SerialOutput {
    /// Output to the VMM's standard output, no input (the library default, so a test
    /// harness's standard input is never read).
    #[default]
    Stdout,
    /// `stdio`: output to standard output, input from standard input.
    Stdio,
    /// A file (created or truncated).
    File(PathBuf),
    /// Nowhere (the last lines are still kept for error reports).
    Null,
    /// A listening socket; output to and input from its connected client.
    Socket(SocketServer),
}

/// A listening socket for the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketServer {
    /// Where to listen.
    pub address: SocketAddress,
    /// Block until the first client connects before the guest starts.
    pub wait: bool,
}

/// The address of a [`SocketServer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketAddress {
    /// A Unix-domain stream socket at this path.
    Unix(PathBuf),
    /// A TCP socket; `host` as given (empty in `tcp::PORT` means every interface).
    Tcp {
        /// Host name or address (IPv6 in brackets).
        host: String,
        /// Port, 1..=65535.
        port: u16,
    },
}

impl fmt::Display for SocketAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketAddress::Unix(path) => write!(f, "unix:{}", path.display()),
            SocketAddress::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
        }
    }
}

/// Parse `--serial`: `stdio`, `file:PATH`, `null` (or `none`), `unix:PATH,server[,...]`
/// or `tcp:[HOST]:PORT,server[,...]`, with the options `server` (`server=on`), `wait=on`,
/// `wait=off` and `nowait`.
pub fn parse_serial(s: &str) -> Result<SerialOutput, String> {
    match s {
        "stdio" => return Ok(SerialOutput::Stdio),
        "null" | "none" => return Ok(SerialOutput::Null),
        _ => {}
    }
    if let Some(path) = s.strip_prefix("file:") {
        return match path {
            "" => Err("file: needs a path".to_string()),
            _ => Ok(SerialOutput::File(PathBuf::from(path))),
        };
    }
    let (address, options) = if let Some(rest) = s.strip_prefix("unix:") {
        let (path, options) = rest.split_once(',').unwrap_or((rest, ""));
        if path.is_empty() {
            return Err("unix: needs a path".to_string());
        }
        (SocketAddress::Unix(PathBuf::from(path)), options)
    } else if let Some(rest) = s.strip_prefix("tcp:") {
        let (hostport, options) = rest.split_once(',').unwrap_or((rest, ""));
        let Some((host, port)) = hostport.rsplit_once(':') else {
            return Err(format!("{s}: expected tcp:HOST:PORT"));
        };
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("{s}: invalid port '{port}' (expected 1..65535)")),
        };
        let host = host.to_string();
        (SocketAddress::Tcp { host, port }, options)
    } else {
        return Err(format!(
            "unknown serial backend '{s}' (expected stdio, file:PATH, null, \
             unix:PATH,server or tcp:HOST:PORT,server)"
        ));
    };
    let (mut server, mut wait) = (false, true);
    for option in options.split(',').filter(|o| !o.is_empty()) {
        match option {
            "server" | "server=on" => server = true,
            "wait" | "wait=on" => wait = true,
            "nowait" | "wait=off" => wait = false,
            _ => {
                return Err(format!(
                    "{s}: unknown option '{option}' (expected server, wait=on, wait=off or nowait)"
                ))
            }
        }
    }
    if !server {
        return Err(format!("{s}: only server mode is supported (add ,server)"));
    }
    Ok(SerialOutput::Socket(SocketServer { address, wait }))
}

impl fmt::Display for SerialOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // `Stdout` has no spelling of its own: it is the library default.
            SerialOutput::Stdout | SerialOutput::Stdio => f.write_str("stdio"),
            SerialOutput::File(path) => write!(f, "file:{}", path.display()),
            SerialOutput::Null => f.write_str("null"),
            SerialOutput::Socket(s) => write!(
                f,
                "{},server,wait={}",
                s.address,
                if s.wait { "on" } else { "off" }
            ),
        }
    }
}

impl std::str::FromStr for SerialOutput {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_serial(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(path: &str, wait: bool) -> SerialOutput {
        SerialOutput::Socket(SocketServer {
            address: SocketAddress::Unix(path.into()),
            wait,
        })
    }

    fn tcp(host: &str, port: u16, wait: bool) -> SerialOutput {
        SerialOutput::Socket(SocketServer {
            address: SocketAddress::Tcp {
                host: host.into(),
                port,
            },
            wait,
        })
    }

    #[test]
    fn serial_grammar() {
        let rows: &[(&str, Result<SerialOutput, &str>)] = &[
            ("stdio", Ok(SerialOutput::Stdio)),
            ("null", Ok(SerialOutput::Null)),
            ("none", Ok(SerialOutput::Null)),
            ("file:/tmp/x", Ok(SerialOutput::File("/tmp/x".into()))),
            ("file:", Err("file: needs a path")),
            ("unix:/tmp/s,server", Ok(unix("/tmp/s", true))),
            ("unix:/tmp/s,server=on", Ok(unix("/tmp/s", true))),
            ("unix:/tmp/s,server,wait=off", Ok(unix("/tmp/s", false))),
            ("unix:/tmp/s,server,nowait", Ok(unix("/tmp/s", false))),
            ("unix:/tmp/s,wait=off,server", Ok(unix("/tmp/s", false))),
            ("unix:/tmp/s,server,wait=on", Ok(unix("/tmp/s", true))),
            ("unix:", Err("unix: needs a path")),
            ("unix:,server", Err("unix: needs a path")),
            (
                "unix:/tmp/s",
                Err("unix:/tmp/s: only server mode is supported (add ,server)"),
            ),
            (
                "unix:/tmp/s,server,wait=maybe",
                Err(
                    "unix:/tmp/s,server,wait=maybe: unknown option 'wait=maybe' \
                     (expected server, wait=on, wait=off or nowait)",
                ),
            ),
            (
                "tcp:127.0.0.1:4444,server",
                Ok(tcp("127.0.0.1", 4444, true)),
            ),
            ("tcp::4444,server,nowait", Ok(tcp("", 4444, false))),
            (
                "tcp:[::1]:4444,server,wait=off",
                Ok(tcp("[::1]", 4444, false)),
            ),
            (
                "tcp:localhost",
                Err("tcp:localhost: expected tcp:HOST:PORT"),
            ),
            (
                "tcp:localhost:http,server",
                Err("tcp:localhost:http,server: invalid port 'http' (expected 1..65535)"),
            ),
            (
                "tcp:localhost:0,server",
                Err("tcp:localhost:0,server: invalid port '0' (expected 1..65535)"),
            ),
            (
                "tcp:localhost:70000,server",
                Err("tcp:localhost:70000,server: invalid port '70000' (expected 1..65535)"),
            ),
            (
                "tcp:localhost:4444",
                Err("tcp:localhost:4444: only server mode is supported (add ,server)"),
            ),
            (
                "pty",
                Err(
                    "unknown serial backend 'pty' (expected stdio, file:PATH, null, \
                     unix:PATH,server or tcp:HOST:PORT,server)",
                ),
            ),
        ];
        for (input, want) in rows {
            assert_eq!(
                parse_serial(input),
                want.clone().map_err(str::to_string),
                "{input}"
            );
        }
    }

    #[test]
    fn socket_addresses_print_as_given() {
        assert_eq!(
            SocketAddress::Unix("/run/vm.sock".into()).to_string(),
            "unix:/run/vm.sock"
        );
        let tcp = SocketAddress::Tcp {
            host: "[::1]".into(),
            port: 5,
        };
        assert_eq!(tcp.to_string(), "tcp:[::1]:5");
    }

    #[test]
    fn the_canonical_spelling_parses_back() {
        for text in [
            "stdio",
            "null",
            "file:/tmp/console.log",
            "unix:/tmp/s,server",
            "unix:/tmp/s,server,nowait",
            "tcp::4444,server,wait=off",
            "tcp:[::1]:4444,server",
        ] {
            let parsed = parse_serial(text).unwrap();
            assert_eq!(
                parse_serial(&parsed.to_string()),
                Ok(parsed.clone()),
                "{text}"
            );
            assert_eq!(text.parse::<SerialOutput>(), Ok(parsed));
        }
    }
}

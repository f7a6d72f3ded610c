//! What `/proc/thread-self/status` says about a thread's sandbox.

use std::io;

/// A thread's sandbox state as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadSandboxStatus {
    /// `Seccomp:` 0 none, 1 strict, 2 filter.
    pub seccomp: u8,
    /// `NoNewPrivs:`.
    pub no_new_privs: bool,
    /// `CapEff:` as a mask.
    pub cap_effective: u64,
}

/// The calling thread's [`ThreadSandboxStatus`].
pub fn thread_status() -> io::Result<ThreadSandboxStatus> {
    status_of("/proc/thread-self/status")
}

/// [`ThreadSandboxStatus`] of thread `tid` of process `pid` (`/proc/PID/task/TID/status`).
pub fn task_status(pid: u32, tid: u32) -> io::Result<ThreadSandboxStatus> {
    status_of(&format!("/proc/{pid}/task/{tid}/status"))
}

fn status_of(path: &str) -> io::Result<ThreadSandboxStatus> {
    let text = std::fs::read_to_string(path)?;
    parse_status(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path}: no Seccomp/NoNewPrivs/CapEff lines"),
        )
    })
}

fn parse_status(text: &str) -> Option<ThreadSandboxStatus> {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).map(str::trim))
    };
    Some(ThreadSandboxStatus {
        seccomp: field("Seccomp:")?.parse().ok()?,
        no_new_privs: field("NoNewPrivs:")? == "1",
        cap_effective: u64::from_str_radix(field("CapEff:")?, 16).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernel_lines() {
        let text = "Name:\tvcpu 0\nCapEff:\t000001ffffffffff\nNoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n";
        assert_eq!(
            parse_status(text),
            Some(ThreadSandboxStatus {
                seccomp: 2,
                no_new_privs: true,
                cap_effective: 0x1ff_ffff_ffff
            })
        );
        assert_eq!(parse_status("Name:\tx\n"), None);
    }

    #[test]
    fn thread_self_is_the_task_entry() {
        let tid = std::fs::read_link("/proc/thread-self").unwrap();
        let tid: u32 = tid.file_name().unwrap().to_str().unwrap().parse().unwrap();
        assert_eq!(
            thread_status().unwrap(),
            task_status(std::process::id(), tid).unwrap()
        );
    }
}

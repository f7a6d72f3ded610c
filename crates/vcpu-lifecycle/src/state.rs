//! The vCPU state machine: states, commands and the legal transitions.
//!
//! This module is pure: it decides what a command does to a state. The vCPU thread
//! (`vcpu.rs`) performs the side effects (completing pending I/O before a pause, tearing the
//! thread down on stop). See DESIGN.md for the table in prose.

use std::fmt;

/// Lifecycle state of one vCPU.
///
/// ```text
///            Start            Pause
///  Created ---------> Running <-----> Paused
///     |                  |   Resume     |
///     |                  | guest finished (handler Halt, KVM_EXIT_HLT)
///     |                  v              |
///     |               Halted            |
///     |                  |              |
///     +------------------+--------------+--> Stopped (Stop command, guest fault, VM stop)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum VcpuState {
    /// The thread exists and answers commands; the guest has not run yet.
    Created = 0,
    /// The thread enters the guest (KVM_RUN) and dispatches exits.
    Running = 1,
    /// The guest is stopped at an instruction boundary with all pending I/O completed;
    /// the thread waits for commands.
    Paused = 2,
    /// The guest finished (the exit handler returned [`crate::ExitAction::Halt`], or
    /// KVM_EXIT_HLT arrived without an in-kernel irqchip). The thread stays alive and
    /// answers commands but never enters the guest again.
    Halted = 3,
    /// Terminal: the thread has exited (or is exiting) and the vCPU fd is closed.
    Stopped = 4,
}

impl VcpuState {
    /// Decodes the value stored by [`VcpuState::as_u8`]; unknown values read as `Stopped`.
    pub(crate) fn from_u8(v: u8) -> Self {
        match v {
            0 => VcpuState::Created,
            1 => VcpuState::Running,
            2 => VcpuState::Paused,
            3 => VcpuState::Halted,
            _ => VcpuState::Stopped,
        }
    }

    /// The value stored in the shared atomic state cell.
    pub(crate) fn as_u8(self) -> u8 {
        self as u8
    }

    /// Lower-case name, as shown in reports (`running`, `paused`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            VcpuState::Created => "created",
            VcpuState::Running => "running",
            VcpuState::Paused => "paused",
            VcpuState::Halted => "halted",
            VcpuState::Stopped => "stopped",
        }
    }
}

impl fmt::Display for VcpuState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A command sent to a vCPU thread; every command gets exactly one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VcpuCommand {
    /// Enter the guest for the first time.
    Start,
    /// Leave the guest at the next exit (completing pending I/O) and wait.
    Pause,
    /// Enter the guest again after a pause.
    Resume,
    /// Leave the guest, close the vCPU fd and end the thread.
    Stop,
    /// Run a caller's closure with the vCPU fd on the vCPU thread (read or set registers,
    /// save state). Only while the guest is not running: `Created`, `Paused`, `Halted`.
    FdAccess,
}

impl VcpuCommand {
    /// Lower-case name, as shown in errors (`pause`, `resume`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            VcpuCommand::Start => "start",
            VcpuCommand::Pause => "pause",
            VcpuCommand::Resume => "resume",
            VcpuCommand::Stop => "stop",
            VcpuCommand::FdAccess => "fd access",
        }
    }
}

impl fmt::Display for VcpuCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state a command leads to from `from`, or `None` when the command is illegal there.
///
/// Pause and resume are idempotent (pausing a paused vCPU succeeds), and a halted vCPU
/// accepts both without leaving `Halted`, so a VM-wide pause or resume works whatever its
/// vCPUs are doing. Stop is legal from every state and idempotent. Fd access never changes
/// the state and is refused while the guest runs (its registers would be in flux).
pub fn transition(from: VcpuState, command: VcpuCommand) -> Option<VcpuState> {
    use VcpuCommand as C;
    use VcpuState as S;
    match (from, command) {
        (_, C::Stop) => Some(S::Stopped),
        (S::Created, C::Start) => Some(S::Running),
        (S::Running | S::Paused, C::Pause) => Some(S::Paused),
        (S::Running | S::Paused, C::Resume) => Some(S::Running),
        (S::Halted, C::Pause | C::Resume) => Some(S::Halted),
        (S::Created | S::Paused | S::Halted, C::FdAccess) => Some(from),
        (S::Created, C::Pause | C::Resume)
        | (S::Running | S::Paused | S::Halted | S::Stopped, C::Start)
        | (S::Stopped, C::Pause | C::Resume)
        | (S::Running | S::Stopped, C::FdAccess) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use VcpuCommand as C;
    use VcpuState as S;

    const STATES: [VcpuState; 5] = [S::Created, S::Running, S::Paused, S::Halted, S::Stopped];

    #[test]
    fn transition_table() {
        // (from, command, expected) for every pair: the table in DESIGN.md.
        let table: &[(VcpuState, VcpuCommand, Option<VcpuState>)] = &[
            (S::Created, C::Start, Some(S::Running)),
            (S::Created, C::Pause, None),
            (S::Created, C::Resume, None),
            (S::Created, C::Stop, Some(S::Stopped)),
            (S::Created, C::FdAccess, Some(S::Created)),
            (S::Running, C::Start, None),
            (S::Running, C::Pause, Some(S::Paused)),
            (S::Running, C::Resume, Some(S::Running)),
            (S::Running, C::Stop, Some(S::Stopped)),
            (S::Running, C::FdAccess, None),
            (S::Paused, C::Start, None),
            (S::Paused, C::Pause, Some(S::Paused)),
            (S::Paused, C::Resume, Some(S::Running)),
            (S::Paused, C::Stop, Some(S::Stopped)),
            (S::Paused, C::FdAccess, Some(S::Paused)),
            (S::Halted, C::Start, None),
            (S::Halted, C::Pause, Some(S::Halted)),
            (S::Halted, C::Resume, Some(S::Halted)),
            (S::Halted, C::Stop, Some(S::Stopped)),
            (S::Halted, C::FdAccess, Some(S::Halted)),
            (S::Stopped, C::Start, None),
            (S::Stopped, C::Pause, None),
            (S::Stopped, C::Resume, None),
            (S::Stopped, C::Stop, Some(S::Stopped)),
            (S::Stopped, C::FdAccess, None),
        ];
        assert_eq!(table.len(), 25);
        for &(from, cmd, expected) in table {
            assert_eq!(transition(from, cmd), expected, "{from} + {cmd}");
        }
    }

    #[test]
    fn stopped_is_terminal() {
        for cmd in [C::Start, C::Pause, C::Resume, C::Stop, C::FdAccess] {
            assert!(matches!(
                transition(S::Stopped, cmd),
                None | Some(S::Stopped)
            ));
        }
    }

    #[test]
    fn state_encoding_round_trips() {
        for s in STATES {
            assert_eq!(VcpuState::from_u8(s.as_u8()), s);
        }
        assert_eq!(VcpuState::from_u8(200), S::Stopped);
    }

    #[test]
    fn names() {
        let names: Vec<String> = STATES.iter().map(|s| s.to_string()).collect();
        assert_eq!(names, ["created", "running", "paused", "halted", "stopped"]);
        assert_eq!(C::Resume.to_string(), "resume");
        assert_eq!(C::FdAccess.to_string(), "fd access");
    }
}

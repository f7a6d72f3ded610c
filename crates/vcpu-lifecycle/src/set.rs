//! All vCPUs of a VM, controlled together: [`VcpuSet`].

use std::fmt;
use std::time::{Duration, Instant};

use cpu_topology::VcpuIndex;

use crate::handle::{VcpuError, VcpuHandle, DROP_TIMEOUT};
use crate::observer::VcpuObserver;
use crate::state::VcpuCommand;
use crate::stats::ExitStats;

/// One or more vCPUs failed a set-wide command; the others completed it.
#[derive(Debug)]
pub struct VcpuSetError {
    /// The command.
    pub command: VcpuCommand,
    /// How many vCPUs it was sent to.
    pub total: usize,
    /// The failures, in vCPU order.
    pub failures: Vec<VcpuError>,
}

impl fmt::Display for VcpuSetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} vCPUs failed to {}",
            self.failures.len(),
            self.total,
            self.command
        )?;
        for (i, e) in self.failures.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for VcpuSetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.failures.first().map(|e| e as _)
    }
}

/// The vCPUs of one VM, kept in index order.
///
/// Set-wide commands are concurrent: the command is sent to every vCPU and every vCPU is
/// kicked before any reply is awaited, and all replies share one deadline, so pausing N
/// busy vCPUs costs about one exit, not N. Dropping the set stops every vCPU.
#[derive(Debug, Default)]
pub struct VcpuSet {
    vcpus: Vec<VcpuHandle>,
}

impl VcpuSet {
    /// An empty set.
    pub fn new() -> Self {
        VcpuSet::default()
    }

    /// Adds a vCPU; a handle with an index already in the set replaces (and so stops) the
    /// old one.
    pub fn insert(&mut self, handle: VcpuHandle) {
        match self
            .vcpus
            .binary_search_by_key(&handle.index(), VcpuHandle::index)
        {
            Ok(i) => self.vcpus[i] = handle,
            Err(i) => self.vcpus.insert(i, handle),
        }
    }

    /// Takes a vCPU out of the set (e.g. for hot-unplug).
    pub fn remove(&mut self, index: VcpuIndex) -> Option<VcpuHandle> {
        let i = self
            .vcpus
            .binary_search_by_key(&index, VcpuHandle::index)
            .ok()?;
        Some(self.vcpus.remove(i))
    }

    /// Number of vCPUs.
    pub fn len(&self) -> usize {
        self.vcpus.len()
    }

    /// True if the set has no vCPU.
    pub fn is_empty(&self) -> bool {
        self.vcpus.is_empty()
    }

    /// The vCPU with this index.
    pub fn get(&self, index: VcpuIndex) -> Option<&VcpuHandle> {
        let i = self
            .vcpus
            .binary_search_by_key(&index, VcpuHandle::index)
            .ok()?;
        self.vcpus.get(i)
    }

    /// The vCPU with this index, to send it a command.
    pub fn get_mut(&mut self, index: VcpuIndex) -> Option<&mut VcpuHandle> {
        let i = self
            .vcpus
            .binary_search_by_key(&index, VcpuHandle::index)
            .ok()?;
        self.vcpus.get_mut(i)
    }

    /// The vCPUs in index order.
    pub fn iter(&self) -> impl Iterator<Item = &VcpuHandle> {
        self.vcpus.iter()
    }

    /// Observers of every vCPU, for a monitor thread.
    pub fn observers(&self) -> Vec<VcpuObserver> {
        self.vcpus.iter().map(VcpuHandle::observer).collect()
    }

    /// Exit statistics of every vCPU, in index order.
    pub fn stats(&self) -> Vec<(VcpuIndex, ExitStats)> {
        self.vcpus.iter().map(|v| (v.index(), v.stats())).collect()
    }

    /// Starts every vCPU (all were created first, so they enter the guest together). Every
    /// thread's set-up ([`VcpuHandle::settle`]) is waited for first: no vCPU enters the
    /// guest unless every one is placed.
    pub fn start_all(&mut self, timeout: Duration) -> Result<(), VcpuSetError> {
        self.settle_all()?;
        self.broadcast(VcpuCommand::Start, timeout)
    }

    /// Waits for the set-up of every vCPU spawned with
    /// [`VcpuContext::spawn_unsettled`](crate::VcpuContext::spawn_unsettled); the set-ups
    /// ran concurrently, so this takes as long as the slowest. The error lists every vCPU
    /// whose set-up failed (as failures of `start`).
    pub fn settle_all(&mut self) -> Result<(), VcpuSetError> {
        let mut failures: Vec<VcpuError> = self
            .vcpus
            .iter_mut()
            .filter_map(|v| v.settle().err())
            .collect();
        if failures.is_empty() {
            return Ok(());
        }
        failures.sort_by_key(vcpu_of);
        Err(VcpuSetError {
            command: VcpuCommand::Start,
            total: self.vcpus.len(),
            failures,
        })
    }

    /// Pauses every vCPU; halted ones stay halted.
    pub fn pause_all(&mut self, timeout: Duration) -> Result<(), VcpuSetError> {
        self.broadcast(VcpuCommand::Pause, timeout)
    }

    /// Resumes every vCPU; halted ones stay halted.
    pub fn resume_all(&mut self, timeout: Duration) -> Result<(), VcpuSetError> {
        self.broadcast(VcpuCommand::Resume, timeout)
    }

    /// Stops every vCPU and joins the threads that answered.
    pub fn stop_all(&mut self, timeout: Duration) -> Result<(), VcpuSetError> {
        self.broadcast(VcpuCommand::Stop, timeout)
    }

    /// Sends `command` to all, kicks all, then collects replies against one deadline.
    fn broadcast(&mut self, command: VcpuCommand, timeout: Duration) -> Result<(), VcpuSetError> {
        let deadline = Instant::now() + timeout;
        let mut failures = Vec::new();
        let mut pending = Vec::with_capacity(self.vcpus.len());
        for (i, v) in self.vcpus.iter_mut().enumerate() {
            match v.send(command, None) {
                Ok(p) => pending.push((i, p)),
                Err(e) => failures.push(e),
            }
        }
        for (i, p) in pending {
            if let Err(e) = self.vcpus[i].wait(p, deadline, timeout) {
                failures.push(e);
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            failures.sort_by_key(vcpu_of);
            Err(VcpuSetError {
                command,
                total: self.vcpus.len(),
                failures,
            })
        }
    }
}

fn vcpu_of(e: &VcpuError) -> u32 {
    match e {
        VcpuError::SpawnThread { vcpu, .. }
        | VcpuError::SignalMask { vcpu, .. }
        | VcpuError::Hook { vcpu, .. }
        | VcpuError::SpawnTimeout { vcpu, .. }
        | VcpuError::Timeout { vcpu, .. }
        | VcpuError::InvalidTransition { vcpu, .. }
        | VcpuError::Stopped { vcpu, .. }
        | VcpuError::Kick { vcpu, .. }
        | VcpuError::FdNotReturned { vcpu }
        | VcpuError::SyscallCompletionWithoutMemory { vcpu } => vcpu.0,
        VcpuError::KickHandler { .. } => u32::MAX,
    }
}

impl Drop for VcpuSet {
    fn drop(&mut self) {
        if let Err(e) = self.stop_all(DROP_TIMEOUT) {
            log::warn!("vcpu-lifecycle: dropping the vCPU set: {e}");
        }
    }
}

impl<'a> IntoIterator for &'a VcpuSet {
    type Item = &'a VcpuHandle;
    type IntoIter = std::slice::Iter<'a, VcpuHandle>;
    fn into_iter(self) -> Self::IntoIter {
        self.vcpus.iter()
    }
}

impl FromIterator<VcpuHandle> for VcpuSet {
    fn from_iter<I: IntoIterator<Item = VcpuHandle>>(iter: I) -> Self {
        let mut set = VcpuSet::new();
        for h in iter {
            set.insert(h);
        }
        set
    }
}

//! Where the VM's threads run: the placement plan, its admission against every VM on the
//! host (the ledger), the per-vCPU pinning hook, and live re-pin / vcpuinfo.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use cpu_topology::{CpuTopology, HostCpuInventory, HostCpuSet, HostError, VcpuIndex};
use vcpu_lifecycle::{PreRunHook, VcpuSet};
use vcpu_placement::{
    apply_emulator_to_current_thread, apply_to_current_thread, pin_thread, thread_affinity,
    Admitted, Ledger, LedgerError, OvercommitPolicy, PlacementConfig, PlacementError,
    PlacementPlan, ThreadError, Tid, VcpuInfo, VmLoad,
};

/// Placement options of a VM (`--vcpupin`, `--cpuset`, `--emulatorpin`, `--placement`,
/// `--overcommit*`, `--ledger-dir`).
#[derive(Debug, Clone, Default)]
pub struct PlacementOptions {
    /// Pins and policy.
    pub config: PlacementConfig,
    /// Over-commit limits; the KVM values are filled in by the VMM.
    pub overcommit: OvercommitPolicy,
    /// The host ledger directory; `None` uses the default (/run, else $XDG_RUNTIME_DIR).
    pub ledger_dir: Option<PathBuf>,
}

/// Why placement failed.
#[derive(Debug, thiserror::Error)]
pub enum PlacementSetupError {
    /// The host's CPUs could not be read from sysfs.
    #[error("read the host CPU inventory")]
    Host(#[from] HostError),
    /// The plan is impossible (pins for vCPUs or CPUs that do not exist, offline CPUs...).
    #[error("placement")]
    Plan(#[from] PlacementError),
    /// The host ledger refused the VM or failed.
    #[error("over-commit admission")]
    Ledger(#[from] LedgerError),
    /// Applying an affinity failed.
    #[error("apply affinity")]
    Thread(#[from] ThreadError),
}

impl PlacementSetupError {
    /// True when the user's configuration is at fault (exit status 2).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            PlacementSetupError::Plan(_) | PlacementSetupError::Ledger(LedgerError::Refused(_))
        )
    }
}

/// The VM's placement, admitted on the host.
#[derive(Debug)]
pub struct VmPlacement {
    host: HostCpuInventory,
    plan: Arc<Mutex<PlacementPlan>>,
    policy: OvercommitPolicy,
    ledger: Option<(Ledger, Admitted)>,
    name: String,
    /// The vCPUs the ledger counts: the boot vCPUs, then whatever hot-plug changed.
    present: BTreeSet<VcpuIndex>,
    /// The affinity the VMM started with: what an unpinned vCPU gets, even when its thread
    /// is created by an emulator thread pinned elsewhere (hot-plug after `emulatorpin`).
    inherited: Option<HostCpuSet>,
}

impl VmPlacement {
    /// Read the host, compute the plan for every slot of `topo`, and admit the present vCPUs
    /// against every live VM in the ledger. Warnings go to the log.
    pub fn new(
        options: &PlacementOptions,
        topo: &CpuTopology,
        name: &str,
    ) -> Result<Self, PlacementSetupError> {
        let host = HostCpuInventory::read()?;
        let plan = PlacementPlan::compute(&options.config, &host, topo.max_cpus())?;
        for w in plan.warnings() {
            log::warn!("{w}");
        }
        let mut placement = Self {
            host,
            plan: Arc::new(Mutex::new(plan)),
            policy: options.overcommit.clone(),
            ledger: None,
            name: name.to_string(),
            present: topo.present().collect(),
            inherited: thread_affinity(Tid::current()).ok(),
        };
        let ledger = match &options.ledger_dir {
            Some(dir) => Ledger::open(dir.clone()),
            None => Ledger::open_default(),
        };
        let load = placement.load();
        match ledger {
            Ok(ledger) => {
                let admitted = ledger.admit(load, &placement.policy, &placement.host)?;
                for w in admitted.warnings() {
                    log::warn!("{w}");
                }
                placement.ledger = Some((ledger, admitted));
            }
            Err(e) => {
                // Without a ledger the check still runs, counting this VM alone.
                log::warn!(
                    "host ledger unavailable ({e}); over-commit admission counts this VM only"
                );
                let warnings =
                    vcpu_placement::admit(&placement.policy, &placement.host, &[], &load)
                        .map_err(|e| PlacementSetupError::Ledger(LedgerError::Refused(e)))?;
                for w in warnings {
                    log::warn!("{w}");
                }
            }
        }
        Ok(placement)
    }

    /// [`VmPlacement::new`] for a VM about to be created with `kvm`: KVM's recommended
    /// vCPU count (`KVM_CAP_NR_VCPUS`) joins the over-commit policy, and a VM without a
    /// `--name` is recorded as `vmm-reference-<pid>`.
    pub fn for_kvm(
        options: &PlacementOptions,
        topo: &CpuTopology,
        name: Option<&str>,
        kvm: &kvm_ioctls::Kvm,
    ) -> Result<Self, PlacementSetupError> {
        let mut options = options.clone();
        options.overcommit.kvm_nr_vcpus = u32::try_from(kvm.get_nr_vcpus()).ok();
        let name = name.map_or_else(
            || format!("vmm-reference-{}", std::process::id()),
            str::to_string,
        );
        Self::new(&options, topo, &name)
    }

    /// The load the present vCPUs put on the host.
    fn load(&self) -> VmLoad {
        let plan = self.plan.lock().unwrap_or_else(|p| p.into_inner());
        let mut load = VmLoad::from_plan(&self.name, &plan);
        let mut index = 0u32;
        load.vcpus.retain(|_| {
            let keep = self.present.contains(&VcpuIndex(index));
            index += 1;
            keep
        });
        load
    }

    /// The plan as `--placement-plan` prints it.
    pub fn plan_text(&self) -> String {
        self.plan
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .to_string()
    }

    /// The hook a vCPU thread runs on itself before its first KVM_RUN: apply its affinity
    /// (an unpinned vCPU: the VMM's own starting affinity, not its creator's).
    pub fn hook(&self) -> PreRunHook {
        let plan = Arc::clone(&self.plan);
        let inherited = self.inherited.clone();
        Box::new(move |vcpu, _fd| {
            let plan = plan.lock().unwrap_or_else(|p| p.into_inner());
            let (tid, pinned) = apply_to_current_thread(&plan, vcpu)?;
            if let (false, Some(cpus)) = (pinned, &inherited) {
                pin_thread(tid, cpus)?;
            }
            Ok(())
        })
    }

    /// Pin the calling (main) thread as the emulator. Call after the vCPU threads exist.
    pub fn pin_emulator(&self) -> Result<(), PlacementSetupError> {
        let plan = self.plan.lock().unwrap_or_else(|p| p.into_inner());
        apply_emulator_to_current_thread(&plan)?;
        Ok(())
    }

    /// Re-pin a running vCPU's thread, after checking the set and re-admitting the VM.
    pub fn repin(
        &mut self,
        vcpu: VcpuIndex,
        tid: i32,
        cpus: HostCpuSet,
    ) -> Result<(), PlacementSetupError> {
        let previous = {
            let mut plan = self.plan.lock().unwrap_or_else(|p| p.into_inner());
            let previous = plan.clone();
            plan.repin(vcpu, cpus.clone(), &self.host)?;
            previous
        };
        let load = self.load();
        if let Some((ledger, admitted)) = &mut self.ledger {
            if let Err(e) = ledger.readmit(admitted, load, &self.policy, &self.host) {
                *self.plan.lock().unwrap_or_else(|p| p.into_inner()) = previous;
                return Err(e.into());
            }
        }
        pin_thread(Tid(tid), &cpus)?;
        Ok(())
    }

    /// The vCPUs present changed (hot-plug): re-admit the VM with their load. When the
    /// host refuses it (`--overcommit strict`), the old set stays and the error says why.
    pub fn set_present(
        &mut self,
        present: impl IntoIterator<Item = VcpuIndex>,
    ) -> Result<(), PlacementSetupError> {
        let previous = std::mem::replace(&mut self.present, present.into_iter().collect());
        let load = self.load();
        let result = match &mut self.ledger {
            Some((ledger, admitted)) => ledger
                .readmit(admitted, load, &self.policy, &self.host)
                .map(|()| admitted.warnings().to_vec()),
            None => vcpu_placement::admit(&self.policy, &self.host, &[], &load)
                .map_err(LedgerError::Refused),
        };
        match result {
            Ok(warnings) => {
                for w in warnings {
                    log::warn!("{w}");
                }
                Ok(())
            }
            Err(e) => {
                self.present = previous;
                Err(e.into())
            }
        }
    }

    /// `virsh vcpuinfo` for every vCPU of `vcpus`, blocks separated by an empty line. The
    /// state is in virsh's words where virsh has one (`running`; `blocked` for a vCPU
    /// that finished in HLT; `offline`), and `paused` for a vCPU the monitor stopped.
    pub fn vcpuinfo_all(&self, vcpus: &VcpuSet) -> Result<String, PlacementSetupError> {
        let mut text = String::new();
        for h in vcpus.iter() {
            if !text.is_empty() {
                text.push('\n');
            }
            let state = match h.state() {
                vcpu_lifecycle::VcpuState::Halted => "blocked",
                vcpu_lifecycle::VcpuState::Stopped => "offline",
                vcpu_lifecycle::VcpuState::Paused => "paused",
                _ => "running",
            };
            text.push_str(&self.vcpuinfo(h.index(), h.thread_id().0, state)?);
        }
        Ok(text)
    }

    /// The host CPUs of every slot up to `slots`: a present vCPU's thread as /proc shows
    /// it, an absent one's planned pin (what it gets when plugged).
    pub fn affinities(
        &self,
        vcpus: &VcpuSet,
        slots: u32,
    ) -> Result<Vec<(VcpuIndex, HostCpuSet)>, PlacementSetupError> {
        let plan = self.plan.lock().unwrap_or_else(|p| p.into_inner());
        (0..slots)
            .map(VcpuIndex)
            .map(|i| {
                let cpus = match vcpus.get(i) {
                    Some(h) => thread_affinity(Tid(h.thread_id().0))?,
                    None => plan
                        .vcpu(i)
                        .map_or_else(|| self.host.online().clone(), |p| p.cpus.clone()),
                };
                Ok((i, cpus))
            })
            .collect()
    }

    /// `virsh emulatorpin`: pin every thread of the process that is not a vCPU (`vcpus`)
    /// to `cpus` when given, then return the main thread's host CPUs.
    pub fn emulatorpin(
        &self,
        vcpus: &VcpuSet,
        cpus: Option<HostCpuSet>,
    ) -> Result<HostCpuSet, PlacementSetupError> {
        let main = Tid(std::process::id() as i32);
        if let Some(cpus) = cpus {
            let offline = cpus.difference(self.host.online());
            if !offline.is_empty() {
                return Err(PlacementError::OfflineCpu {
                    what: "emulatorpin".into(),
                    cpus: offline,
                    online: self.host.online().clone(),
                }
                .into());
            }
            let vcpu_tids: BTreeSet<i32> = vcpus.iter().map(|h| h.thread_id().0).collect();
            let tasks =
                std::fs::read_dir("/proc/self/task").map_err(|source| ThreadError::ReadProc {
                    path: "/proc/self/task".into(),
                    source,
                })?;
            for tid in tasks.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
                if !vcpu_tids.contains(&tid) {
                    pin_thread(Tid(tid), &cpus)?;
                }
            }
        }
        Ok(thread_affinity(main)?)
    }

    /// `virsh vcpuinfo` for one vCPU thread, read from /proc.
    pub fn vcpuinfo(
        &self,
        vcpu: VcpuIndex,
        tid: i32,
        state: &str,
    ) -> Result<String, PlacementSetupError> {
        let info = VcpuInfo::read(vcpu, Tid(tid))?;
        Ok(info.to_libvirt_string(state, self.host.cpu_id_limit()))
    }

    /// The host's online CPUs.
    pub fn host_cpus(&self) -> &HostCpuSet {
        self.host.online()
    }

    /// Parse a cpuset as `virsh vcpupin` takes it (libvirt syntax, `r` = all host CPUs).
    pub fn parse_cpuset(&self, text: &str) -> Result<HostCpuSet, cpu_topology::CpuSetError> {
        HostCpuSet::parse_libvirt_or_all(text, self.host.cpu_id_limit())
    }
}

#[cfg(test)]
mod tests {
    use cpu_topology::smp::parse_smp;
    use vcpu_placement::CpuSpec;

    use super::*;

    /// vCPU counts of every entry in the ledger directory.
    fn ledger_vcpus(dir: &std::path::Path) -> Vec<usize> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let path = e.unwrap().path();
                (path.extension()? == "json").then_some(path)
            })
            .map(|p| {
                let entry: vcpu_placement::LedgerEntry =
                    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
                entry.vm.vcpus.len()
            })
            .collect()
    }

    fn options(ledger: &std::path::Path, strict: bool) -> PlacementOptions {
        let mut o = PlacementOptions {
            ledger_dir: Some(ledger.to_path_buf()),
            ..Default::default()
        };
        o.config.cpuset = Some(CpuSpec::parse("0").unwrap());
        o.overcommit.strict = strict;
        o.overcommit.warn_only = !strict;
        o
    }

    #[test]
    fn hot_plug_changes_what_the_ledger_counts() {
        let ledger = tempfile::tempdir().unwrap();
        let topo = parse_smp("1,maxcpus=4").unwrap();
        let mut p = VmPlacement::new(&options(ledger.path(), false), &topo, "t").unwrap();
        assert_eq!(ledger_vcpus(ledger.path()), [1]);
        p.set_present([0, 2, 3].map(VcpuIndex)).unwrap();
        assert_eq!(ledger_vcpus(ledger.path()), [3]);
        p.set_present([VcpuIndex(0)]).unwrap();
        assert_eq!(ledger_vcpus(ledger.path()), [1]);
        drop(p);
        assert_eq!(ledger_vcpus(ledger.path()), Vec::<usize>::new());
    }

    #[test]
    fn strict_admission_refuses_a_plug_past_the_allowed_cpus() {
        let ledger = tempfile::tempdir().unwrap();
        let topo = parse_smp("1,maxcpus=2").unwrap();
        let mut p = VmPlacement::new(&options(ledger.path(), true), &topo, "t").unwrap();
        let err = p.set_present([0, 1].map(VcpuIndex)).unwrap_err();
        assert!(err.is_bad_input(), "{err}");
        // The refused vCPU is not counted.
        assert_eq!(ledger_vcpus(ledger.path()), [1]);
        p.set_present([VcpuIndex(0)]).unwrap();
    }
}

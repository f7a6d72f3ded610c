//! Where the VM's threads run: the placement plan, its admission against every VM on the
//! host (the ledger), the per-vCPU pinning hook, and live re-pin / vcpuinfo.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use cpu_topology::{CpuTopology, HostCpuInventory, HostCpuSet, HostError, VcpuIndex};
use vcpu_lifecycle::PreRunHook;
use vcpu_placement::{
    apply_emulator_to_current_thread, apply_to_current_thread, pin_thread, Admitted, Ledger,
    LedgerError, OvercommitPolicy, PlacementConfig, PlacementError, PlacementPlan, ThreadError,
    Tid, VcpuInfo, VmLoad,
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
    present: u32,
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
            present: topo.cpus(),
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

    /// The load the present vCPUs put on the host.
    fn load(&self) -> VmLoad {
        let plan = self.plan.lock().unwrap_or_else(|p| p.into_inner());
        let mut load = VmLoad::from_plan(&self.name, &plan);
        load.vcpus.truncate(self.present as usize);
        load
    }

    /// The plan as `--placement-plan` prints it.
    pub fn plan_text(&self) -> String {
        self.plan
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .to_string()
    }

    /// The hook a vCPU thread runs on itself before its first KVM_RUN: apply its affinity.
    pub fn hook(&self) -> PreRunHook {
        let plan = Arc::clone(&self.plan);
        Box::new(move |vcpu, _fd| {
            let plan = plan.lock().unwrap_or_else(|p| p.into_inner());
            apply_to_current_thread(&plan, vcpu)?;
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

    /// Parse a cpuset as `virsh vcpupin` takes it (libvirt syntax, `r` = all host CPUs).
    pub fn parse_cpuset(&self, text: &str) -> Result<HostCpuSet, cpu_topology::CpuSetError> {
        HostCpuSet::parse_libvirt_or_all(text, self.host.cpu_id_limit())
    }
}

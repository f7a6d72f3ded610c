//! The host-wide ledger of live VMs' placements: one JSON file per VM in a runtime directory,
//! admission under a directory-wide `flock`, reclaim of entries whose process is gone.
//! See DESIGN.md for the protocol.
#![forbid(unsafe_code)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use cpu_topology::host::HostCpuInventory;
use serde::{Deserialize, Serialize};

use crate::admission::{admit, AdmissionError, AdmissionWarning, OvercommitPolicy, VmLoad};
use crate::sys;
use crate::thread::{TaskStat, ThreadError};

/// Directory used by [`Ledger::open_default`] when `/run` is writable.
pub const SYSTEM_DIR: &str = "/run/kvm-cpu-virt/placement";

const LOCK_FILE: &str = ".lock";
const ENTRY_PREFIX: &str = "vm-";
const ENTRY_SUFFIX: &str = ".json";

/// Entries created by this process, to keep file names unique.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Why a ledger operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The directory could not be created.
    #[error("cannot create the ledger directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The directory could not be listed, or an entry read or removed.
    #[error("cannot read the ledger entry {}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// This VM's entry could not be written.
    #[error("cannot write the ledger entry {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An entry could not be encoded.
    #[error("cannot encode the ledger entry for VM `{vm}`")]
    Encode {
        /// The VM.
        vm: String,
        /// The encoder error.
        #[source]
        source: serde_json::Error,
    },
    /// This process's `/proc` entry could not be read (needed for its start time).
    #[error("cannot identify this process in /proc")]
    SelfStat(#[source] ThreadError),
    /// The admission check refused the VM.
    #[error("admission refused")]
    Refused(#[from] AdmissionError),
}

/// One live VM as stored on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The owning process.
    pub pid: u32,
    /// Its start time (`/proc/<pid>/stat` field 22), to detect a reused pid.
    pub start_time: u64,
    /// The VM's placement load.
    pub vm: VmLoad,
}

/// A VM admitted into the ledger. Dropping it removes the entry.
#[derive(Debug)]
pub struct Admitted {
    path: PathBuf,
    warnings: Vec<AdmissionWarning>,
    released: bool,
}

impl Admitted {
    /// Warnings from the admission check.
    pub fn warnings(&self) -> &[AdmissionWarning] {
        &self.warnings
    }

    /// The entry file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the entry now (instead of on drop).
    pub fn release(mut self) -> Result<(), LedgerError> {
        self.released = true;
        remove_entry(&self.path)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if !self.released {
            if let Err(e) = remove_entry(&self.path) {
                log::warn!("placement ledger: {e}");
            }
        }
    }
}

fn remove_entry(path: &Path) -> Result<(), LedgerError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(LedgerError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The ledger directory.
#[derive(Debug, Clone)]
pub struct Ledger {
    dir: PathBuf,
}

/// The directory lock; released when dropped (the file is closed).
struct DirLock {
    _file: File,
}

/// Whether the process that wrote `entry` is gone: no `/proc/<pid>`, a zombie, or a
/// different start time (the pid was reused).
fn is_dead(entry: &LedgerEntry) -> Result<bool, ThreadError> {
    Ok(match TaskStat::of_process(entry.pid)? {
        None => true,
        Some(stat) => matches!(stat.state, 'Z' | 'X' | 'x') || stat.start_time != entry.start_time,
    })
}

impl Ledger {
    /// Opens (creating it with mode 0700 semantics of the umask) the ledger in `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, LedgerError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| LedgerError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        Ok(Ledger { dir })
    }

    /// Opens [`SYSTEM_DIR`] when it can be created, else `$XDG_RUNTIME_DIR/kvm-cpu-virt/placement`.
    /// Only VMMs sharing one directory see each other.
    pub fn open_default() -> Result<Self, LedgerError> {
        match Ledger::open(SYSTEM_DIR) {
            Ok(ledger) => Ok(ledger),
            Err(system_err) => match std::env::var_os("XDG_RUNTIME_DIR") {
                Some(xdg) => Ledger::open(Path::new(&xdg).join("kvm-cpu-virt/placement")),
                None => Err(system_err),
            },
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> Result<DirLock, LedgerError> {
        let path = self.dir.join(LOCK_FILE);
        let lock_err = |source| LedgerError::Lock {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(lock_err)?;
        sys::lock_exclusive(&file).map_err(lock_err)?;
        Ok(DirLock { _file: file })
    }

    /// Reads every entry, removing those of dead processes. Must hold the lock.
    fn scan(&self, _lock: &DirLock) -> Result<Vec<(PathBuf, LedgerEntry)>, LedgerError> {
        let read_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LedgerError::Read { path, source }
        };
        let mut live = Vec::new();
        for dirent in fs::read_dir(&self.dir).map_err(read_err(&self.dir))? {
            let path = dirent.map_err(read_err(&self.dir))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !name.starts_with(ENTRY_PREFIX) || !name.ends_with(ENTRY_SUFFIX) {
                continue;
            }
            let text = match fs::read_to_string(&path) {
                Ok(text) => text,
                // Released by its owner between listing and reading.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(LedgerError::Read { path, source }),
            };
            let entry: LedgerEntry = match serde_json::from_str(&text) {
                Ok(entry) => entry,
                Err(e) => {
                    log::warn!("placement ledger: ignoring {}: {e}", path.display());
                    continue;
                }
            };
            // A /proc read error keeps the entry: better refuse a VM than overload the host.
            if is_dead(&entry).unwrap_or(false) {
                log::info!(
                    "placement ledger: reclaiming {} of dead pid {}",
                    path.display(),
                    entry.pid
                );
                remove_entry(&path)?;
                continue;
            }
            live.push((path, entry));
        }
        live.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(live)
    }

    /// Live entries, after reclaiming dead ones.
    pub fn entries(&self) -> Result<Vec<LedgerEntry>, LedgerError> {
        let lock = self.lock()?;
        Ok(self.scan(&lock)?.into_iter().map(|(_, e)| e).collect())
    }

    /// Admits `vm` if the host stays within `policy` counting every live VM, and records it
    /// for as long as the returned [`Admitted`] lives. Lock, read, check and write happen as
    /// one step, so concurrent VMMs cannot all be admitted past the limit.
    pub fn admit(
        &self,
        vm: VmLoad,
        policy: &OvercommitPolicy,
        host: &HostCpuInventory,
    ) -> Result<Admitted, LedgerError> {
        let pid = std::process::id();
        let start_time = TaskStat::of_process(pid)
            .map_err(LedgerError::SelfStat)?
            .map(|s| s.start_time)
            .unwrap_or(0);
        let lock = self.lock()?;
        let live: Vec<VmLoad> = self.scan(&lock)?.into_iter().map(|(_, e)| e.vm).collect();
        let warnings = admit(policy, host, &live, &vm)?;
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let path = self
            .dir
            .join(format!("{ENTRY_PREFIX}{pid}-{seq}{ENTRY_SUFFIX}"));
        let entry = LedgerEntry {
            pid,
            start_time,
            vm,
        };
        self.write_entry(&path, &entry)?;
        drop(lock);
        Ok(Admitted {
            path,
            warnings,
            released: false,
        })
    }

    /// Re-checks and rewrites an admitted VM's entry with a new load (a live re-pin). On
    /// refusal the old entry stays.
    pub fn readmit(
        &self,
        admitted: &mut Admitted,
        vm: VmLoad,
        policy: &OvercommitPolicy,
        host: &HostCpuInventory,
    ) -> Result<(), LedgerError> {
        let lock = self.lock()?;
        let entries = self.scan(&lock)?;
        let mine = entries
            .iter()
            .find(|(p, _)| *p == admitted.path)
            .map(|(_, e)| e.clone());
        let live: Vec<VmLoad> = entries
            .into_iter()
            .filter(|(p, _)| *p != admitted.path)
            .map(|(_, e)| e.vm)
            .collect();
        admitted.warnings = admit(policy, host, &live, &vm)?;
        let (pid, start_time) = match mine {
            Some(e) => (e.pid, e.start_time),
            None => (std::process::id(), 0),
        };
        self.write_entry(
            &admitted.path,
            &LedgerEntry {
                pid,
                start_time,
                vm,
            },
        )
    }

    /// Writes through a temporary file and a rename, so readers never see half an entry.
    /// No fsync: the ledger describes live processes and is meaningless after a reboot
    /// (its default home, /run, is emptied then), and the rename is atomic for readers.
    /// A flush to disk would cost every VM start about half a millisecond (measured).
    fn write_entry(&self, path: &Path, entry: &LedgerEntry) -> Result<(), LedgerError> {
        let json = serde_json::to_vec_pretty(entry).map_err(|source| LedgerError::Encode {
            vm: entry.vm.name.clone(),
            source,
        })?;
        let tmp = path.with_extension("tmp");
        let write_err = |source| LedgerError::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::create(&tmp).map_err(write_err)?;
        file.write_all(&json).map_err(write_err)?;
        fs::rename(&tmp, path).map_err(write_err)
    }
}

//! The host-wide ledger of live VMs' placements: one JSON file per VM in a runtime directory,
//! admission under a directory-wide `flock`, reclaim of entries whose process is gone.
//! See DESIGN.md for the protocol.
//!
//! Nothing in the directory is trusted blindly: entries are opened with `O_NOFOLLOW` (and
//! `O_NONBLOCK`, so a FIFO cannot hang the scan), must be regular files owned by the
//! directory's owner (or, in a group-shared ledger, by its group), at most
//! [`MAX_ENTRY_BYTES`] long and match the schema. Anything else is reported once per scan
//! (a `log` warning and [`Admitted::ignored`]) and left alone.
#![forbid(unsafe_code)]

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
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

/// Largest entry read (1 MiB): a 4096-vCPU VM with a CPU list per vCPU is far smaller.
pub const MAX_ENTRY_BYTES: u64 = 1 << 20;
/// Longest VM name an entry may carry (it is printed in messages).
const MAX_NAME_CHARS: usize = 256;
/// Most vCPUs an entry may list (KVM's largest `KVM_CAP_MAX_VCPU_ID`).
const MAX_ENTRY_VCPUS: usize = 4096;

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
#[serde(deny_unknown_fields)]
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
    ignored: Vec<IgnoredEntry>,
    released: bool,
}

impl Admitted {
    /// Warnings from the admission check.
    pub fn warnings(&self) -> &[AdmissionWarning] {
        &self.warnings
    }

    /// Files of the ledger directory the admission scan did not trust (each was also
    /// logged once as a warning).
    pub fn ignored(&self) -> &[IgnoredEntry] {
        &self.ignored
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

/// Why a file in the ledger directory was not trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IgnoredReason {
    /// A symbolic link (entries are opened with `O_NOFOLLOW`).
    Symlink,
    /// Not a regular file (a directory, a FIFO, a device).
    NotARegularFile,
    /// Owned by someone the directory's owner (or group, when shared) is not.
    ForeignOwner {
        /// The file's uid.
        uid: u32,
        /// The file's gid.
        gid: u32,
    },
    /// Longer than [`MAX_ENTRY_BYTES`].
    TooLarge {
        /// Its size.
        bytes: u64,
    },
    /// It could not be opened or read (the OS error's text).
    Unreadable(String),
    /// Not an entry: not JSON, or not the entry schema (the parser's message).
    Corrupt(String),
    /// Parsed, but a value is out of range.
    Invalid(String),
}

impl fmt::Display for IgnoredReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Symlink => f.write_str("it is a symbolic link (entries are never followed)"),
            Self::NotARegularFile => f.write_str("it is not a regular file"),
            Self::ForeignOwner { uid, gid } => {
                write!(
                    f,
                    "it is owned by uid {uid} gid {gid}, not by the ledger directory's owner"
                )
            }
            Self::TooLarge { bytes } => {
                write!(
                    f,
                    "it is {bytes} bytes long, more than the {MAX_ENTRY_BYTES}-byte limit"
                )
            }
            Self::Unreadable(e) => write!(f, "it cannot be read: {e}"),
            Self::Corrupt(e) => write!(f, "it is not a ledger entry: {e}"),
            Self::Invalid(e) => write!(f, "it holds an invalid value: {e}"),
        }
    }
}

/// A file of the ledger directory that a scan left alone, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredEntry {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: IgnoredReason,
}

impl fmt::Display for IgnoredEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "placement ledger: ignoring {}: {}",
            self.path.display(),
            self.reason
        )
    }
}

/// Who may write trusted entries: the directory's owner, and in a group-shared ledger
/// also its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Trust {
    uid: u32,
    gid: Option<u32>,
}

impl Trust {
    fn accepts(&self, uid: u32, gid: u32) -> bool {
        uid == self.uid || self.gid == Some(gid)
    }
}

/// The ledger directory.
#[derive(Debug, Clone)]
pub struct Ledger {
    dir: PathBuf,
    shared: bool,
}

/// A scan's result: live entries (dead ones are already reclaimed) and the files left alone.
#[derive(Debug, Clone, Default)]
pub struct LedgerScan {
    /// Trusted entries of live processes, by file name.
    pub live: Vec<(PathBuf, LedgerEntry)>,
    /// Files not trusted, each logged once.
    pub ignored: Vec<IgnoredEntry>,
}

impl LedgerEntry {
    /// Range checks beyond the JSON schema. (A pid that cannot exist is not checked here:
    /// such an entry is dead and reclaimed.)
    fn validate(&self) -> Result<(), String> {
        let name = &self.vm.name;
        if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
            return Err("the VM name is too long or has control characters".into());
        }
        if self.vm.vcpus.is_empty() || self.vm.vcpus.len() > MAX_ENTRY_VCPUS {
            return Err(format!("{} vCPUs", self.vm.vcpus.len()));
        }
        Ok(())
    }
}

/// Open, check and parse one entry. `Ok(None)`: it vanished (released by its owner).
fn read_entry(path: &Path, trust: Trust) -> Result<Option<LedgerEntry>, IgnoredReason> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(IgnoredReason::Symlink),
        Err(e) => return Err(IgnoredReason::Unreadable(e.to_string())),
    };
    let meta = file
        .metadata()
        .map_err(|e| IgnoredReason::Unreadable(e.to_string()))?;
    if !meta.file_type().is_file() {
        return Err(IgnoredReason::NotARegularFile);
    }
    if !trust.accepts(meta.uid(), meta.gid()) {
        return Err(IgnoredReason::ForeignOwner {
            uid: meta.uid(),
            gid: meta.gid(),
        });
    }
    if meta.len() > MAX_ENTRY_BYTES {
        return Err(IgnoredReason::TooLarge { bytes: meta.len() });
    }
    let mut bytes = Vec::new();
    file.take(MAX_ENTRY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| IgnoredReason::Unreadable(e.to_string()))?;
    if bytes.len() as u64 > MAX_ENTRY_BYTES {
        return Err(IgnoredReason::TooLarge {
            bytes: bytes.len() as u64,
        });
    }
    let entry: LedgerEntry =
        serde_json::from_slice(&bytes).map_err(|e| IgnoredReason::Corrupt(e.to_string()))?;
    entry.validate().map_err(IgnoredReason::Invalid)?;
    Ok(Some(entry))
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
    /// Opens the ledger in `dir`, creating it (and missing parents) with mode 0700: only
    /// its owner's entries are trusted.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, LedgerError> {
        Self::open_with(dir.into(), false)
    }

    /// Opens a group-shared ledger in `dir`: created with mode 2770 (setgid, so entries
    /// take the directory's group), and entries owned by the directory's owner or group are
    /// trusted. For VMMs running as different users of one group.
    pub fn open_shared(dir: impl Into<PathBuf>) -> Result<Self, LedgerError> {
        Self::open_with(dir.into(), true)
    }

    fn open_with(dir: PathBuf, shared: bool) -> Result<Self, LedgerError> {
        let create_err = |source| LedgerError::CreateDir {
            path: dir.clone(),
            source,
        };
        if !dir.is_dir() {
            let mode = if shared { 0o2770 } else { 0o700 };
            DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(&dir)
                .map_err(create_err)?;
            // The umask may have taken bits away (group ones for a shared ledger).
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).map_err(create_err)?;
        }
        let meta = fs::metadata(&dir).map_err(create_err)?;
        if meta.mode() & 0o002 != 0 && meta.mode() & 0o1000 == 0 {
            log::warn!(
                "placement ledger: {} is writable by every user (mode {:o}): anyone can remove entries",
                dir.display(),
                meta.mode() & 0o7777
            );
        }
        Ok(Ledger { dir, shared })
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

    /// Mode of the files this process creates.
    fn file_mode(&self) -> u32 {
        if self.shared {
            0o640
        } else {
            0o600
        }
    }

    fn trust(&self) -> Result<Trust, LedgerError> {
        let meta = fs::metadata(&self.dir).map_err(|source| LedgerError::Read {
            path: self.dir.clone(),
            source,
        })?;
        Ok(Trust {
            uid: meta.uid(),
            gid: self.shared.then_some(meta.gid()),
        })
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
            .mode(self.file_mode())
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(lock_err)?;
        sys::lock_exclusive(&file).map_err(lock_err)?;
        Ok(DirLock { _file: file })
    }

    /// Reads every entry, removing those of dead processes. Must hold the lock.
    fn scan(&self, _lock: &DirLock) -> Result<LedgerScan, LedgerError> {
        let read_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LedgerError::Read { path, source }
        };
        let trust = self.trust()?;
        let mut scan = LedgerScan::default();
        for dirent in fs::read_dir(&self.dir).map_err(read_err(&self.dir))? {
            let path = dirent.map_err(read_err(&self.dir))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !name.starts_with(ENTRY_PREFIX) || !name.ends_with(ENTRY_SUFFIX) {
                continue;
            }
            let entry = match read_entry(&path, trust) {
                Ok(Some(entry)) => entry,
                Ok(None) => continue,
                Err(reason) => {
                    let ignored = IgnoredEntry { path, reason };
                    log::warn!("{ignored}");
                    scan.ignored.push(ignored);
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
                // A dead VM's entry no longer counts even when it cannot be removed (this
                // process dropped its privileges): the next scan by its owner removes it.
                if let Err(e) = remove_entry(&path) {
                    log::warn!("placement ledger: {e}");
                }
                continue;
            }
            scan.live.push((path, entry));
        }
        scan.live.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(scan)
    }

    /// Scan the directory now: live entries and the files left alone (each logged once).
    pub fn inspect(&self) -> Result<LedgerScan, LedgerError> {
        let lock = self.lock()?;
        self.scan(&lock)
    }

    /// Live entries, after reclaiming dead ones.
    pub fn entries(&self) -> Result<Vec<LedgerEntry>, LedgerError> {
        let lock = self.lock()?;
        Ok(self.scan(&lock)?.live.into_iter().map(|(_, e)| e).collect())
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
        let scan = self.scan(&lock)?;
        let live: Vec<VmLoad> = scan.live.into_iter().map(|(_, e)| e.vm).collect();
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
            ignored: scan.ignored,
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
        let entries = self.scan(&lock)?.live;
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
    /// The temporary file is created new (`O_EXCL`, `O_NOFOLLOW`) after removing whatever
    /// had its name, so a planted link cannot redirect the write.
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
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(write_err(e)),
            _ => {}
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(self.file_mode())
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(write_err)?;
        file.write_all(&json).map_err(write_err)?;
        fs::rename(&tmp, path).map_err(write_err)
    }
}

//! The ledger against hostile or broken files in its directory: each is reported once,
//! ignored (never followed, never trusted, never deleted) and admission stays correct.

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use cpu_topology::cpuset::{HostCpuSet, MAX_HOST_CPUS};
use cpu_topology::host::HostCpuInventory;
use vcpu_placement::ledger::IgnoredReason;
use vcpu_placement::thread::TaskStat;
use vcpu_placement::{Ledger, LedgerEntry, OvercommitPolicy, VcpuLoad, VmLoad};

/// `n` vCPUs floating over CPUs 0-1.
fn vm(name: &str, n: usize) -> VmLoad {
    VmLoad {
        name: name.to_string(),
        vcpus: vec![
            VcpuLoad {
                cpus: HostCpuSet::parse_cpu_list("0-1", MAX_HOST_CPUS).unwrap(),
                dedicated: false,
            };
            n
        ],
    }
}

/// Two host CPUs; the default 5:1 ratio lets 10 vCPUs in.
fn host() -> HostCpuInventory {
    HostCpuInventory::uniform(1, 2, 1)
}

/// Refuse rather than warn past the ratio, so a wrongly counted entry shows as a refusal.
fn refusing() -> OvercommitPolicy {
    OvercommitPolicy {
        warn_only: false,
        ..OvercommitPolicy::default()
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ledger-abuse-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

/// An entry for a VM of `n` vCPUs owned by this (live) test process: if trusted, it
/// counts against admission.
fn live_entry_json(n: usize) -> Vec<u8> {
    let me = std::process::id();
    let start_time = TaskStat::of_process(me).unwrap().unwrap().start_time;
    let entry = LedgerEntry {
        pid: me,
        start_time,
        vm: vm("planted", n),
    };
    serde_json::to_vec(&entry).unwrap()
}

/// Whether this test may chown files to another uid (root). Otherwise it says it is
/// skipped, unless `REQUIRE_ROOT` is set, which makes that an error.
fn can_chown() -> bool {
    if fs::metadata("/proc/self").unwrap().uid() == 0 {
        return true;
    }
    assert!(
        std::env::var_os("REQUIRE_ROOT").is_none(),
        "REQUIRE_ROOT set, not root"
    );
    eprintln!("skipped: chown needs root (REQUIRE_ROOT=1 makes this an error)");
    false
}

/// Admit an 8-vCPU VM: it fits only if none of the planted 8-vCPU loads is counted.
/// A planted file's name and the check its reported reason must pass.
type Expected<'a> = (&'a str, fn(&IgnoredReason) -> bool);

fn admit_checks(dir: &Path, want: &[Expected<'_>]) {
    let ledger = Ledger::open(dir).unwrap();
    for round in 0..2 {
        let admitted = ledger
            .admit(vm("new", 8), &refusing(), &host())
            .unwrap_or_else(|e| panic!("round {round}: refused: {e:?}"));
        let ignored = admitted.ignored();
        assert_eq!(ignored.len(), want.len(), "round {round}: {ignored:#?}");
        for (name, is_reason) in want {
            let hits: Vec<_> = ignored
                .iter()
                .filter(|i| i.path.file_name().unwrap() == *name)
                .collect();
            assert_eq!(hits.len(), 1, "{name} reported once: {ignored:#?}");
            assert!(is_reason(&hits[0].reason), "{name}: {}", hits[0]);
            assert!(
                dir.join(name).symlink_metadata().is_ok(),
                "{name} was left in place"
            );
        }
        // Only this VM is counted: a second 8-vCPU VM would exceed 10 and is refused.
        assert!(ledger.admit(vm("second", 8), &refusing(), &host()).is_err());
        drop(admitted);
    }
}

#[test]
fn symlink_to_etc_passwd_is_not_followed() {
    let dir = scratch("symlink");
    Ledger::open(&dir).unwrap();
    let passwd_before = fs::read("/etc/passwd").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("vm-evil.json")).unwrap();
    // A link to a file that would parse and count, too.
    let target = std::env::temp_dir().join(format!("ledger-abuse-target-{}", std::process::id()));
    fs::write(&target, live_entry_json(8)).unwrap();
    std::os::unix::fs::symlink(&target, dir.join("vm-link.json")).unwrap();
    admit_checks(
        &dir,
        &[
            ("vm-evil.json", |r| *r == IgnoredReason::Symlink),
            ("vm-link.json", |r| *r == IgnoredReason::Symlink),
        ],
    );
    assert_eq!(fs::read("/etc/passwd").unwrap(), passwd_before);
    fs::remove_file(target).unwrap();
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn garbage_and_wrong_schema_are_ignored() {
    let dir = scratch("garbage");
    Ledger::open(&dir).unwrap();
    fs::write(dir.join("vm-garbage.json"), b"\x00\xff{{{ not json").unwrap();
    fs::write(
        dir.join("vm-extra.json"),
        br#"{"pid": 1, "start_time": 1, "vm": {"name": "x", "vcpus": []}, "admin": true}"#,
    )
    .unwrap();
    let mut long_name: serde_json::Value = serde_json::from_slice(&live_entry_json(8)).unwrap();
    long_name["vm"]["name"] = "\u{1b}]0;pwned\u{7}".into();
    fs::write(
        dir.join("vm-escape.json"),
        serde_json::to_vec(&long_name).unwrap(),
    )
    .unwrap();
    admit_checks(
        &dir,
        &[
            ("vm-garbage.json", |r| {
                matches!(r, IgnoredReason::Corrupt(_))
            }),
            (
                "vm-extra.json",
                |r| matches!(r, IgnoredReason::Corrupt(e) if e.contains("admin")),
            ),
            ("vm-escape.json", |r| matches!(r, IgnoredReason::Invalid(_))),
        ],
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ten_megabyte_entry_is_not_read() {
    let dir = scratch("large");
    Ledger::open(&dir).unwrap();
    // Valid JSON that would count if read: an 8-vCPU entry padded with whitespace to 10 MB.
    let mut big = live_entry_json(8);
    big.resize(10 << 20, b' ');
    fs::write(dir.join("vm-big.json"), &big).unwrap();
    admit_checks(
        &dir,
        &[("vm-big.json", |r| {
            *r == IgnoredReason::TooLarge { bytes: 10 << 20 }
        })],
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fifo_and_directory_entries_do_not_hang_the_scan() {
    let dir = scratch("fifo");
    Ledger::open(&dir).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(dir.join("vm-fifo.json"))
        .status()
        .unwrap();
    assert!(status.success());
    fs::create_dir(dir.join("vm-dir.json")).unwrap();
    admit_checks(
        &dir,
        &[
            ("vm-fifo.json", |r| *r == IgnoredReason::NotARegularFile),
            ("vm-dir.json", |r| *r == IgnoredReason::NotARegularFile),
        ],
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn entry_owned_by_another_uid_is_not_trusted() {
    if !can_chown() {
        return;
    }
    let dir = scratch("foreign");
    Ledger::open(&dir).unwrap();
    let path = dir.join("vm-foreign.json");
    fs::write(&path, live_entry_json(8)).unwrap();
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    admit_checks(
        &dir,
        &[("vm-foreign.json", |r| {
            *r == IgnoredReason::ForeignOwner {
                uid: 65534,
                gid: 65534,
            }
        })],
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_abuse_at_once_warns_once_each_and_still_reclaims_the_dead() {
    let dir = scratch("all");
    Ledger::open(&dir).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("vm-evil.json")).unwrap();
    fs::write(dir.join("vm-garbage.json"), "{").unwrap();
    let mut big = live_entry_json(8);
    big.resize(10 << 20, b' ');
    fs::write(dir.join("vm-big.json"), &big).unwrap();
    // A killed VMM's entry: a pid that cannot be running. Trusted, dead, so reclaimed.
    let dead = LedgerEntry {
        pid: 0x7fff_fff0,
        start_time: 1,
        vm: vm("killed", 8),
    };
    fs::write(dir.join("vm-dead.json"), serde_json::to_vec(&dead).unwrap()).unwrap();
    let ledger = Ledger::open(&dir).unwrap();
    let admitted = ledger.admit(vm("new", 8), &refusing(), &host()).unwrap();
    let mut names: Vec<_> = admitted
        .ignored()
        .iter()
        .map(|i| i.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["vm-big.json", "vm-evil.json", "vm-garbage.json"]);
    assert!(
        !dir.join("vm-dead.json").exists(),
        "the dead VMM's entry is reclaimed"
    );
    let message = admitted.ignored()[0].to_string();
    assert!(
        message.starts_with("placement ledger: ignoring "),
        "{message}"
    );
    drop(admitted);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn directory_is_private_unless_shared_and_entries_are_owner_only() {
    let private = scratch("private");
    let ledger = Ledger::open(private.join("a/b")).unwrap();
    let mode = fs::metadata(private.join("a/b"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o700);
    let admitted = ledger.admit(vm("x", 1), &refusing(), &host()).unwrap();
    let entry_mode = fs::metadata(admitted.path()).unwrap().permissions().mode();
    assert_eq!(entry_mode & 0o777, 0o600);
    drop(admitted);

    let shared = scratch("shared");
    let ledger = Ledger::open_shared(&shared).unwrap();
    let mode = fs::metadata(&shared).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o2770);
    let admitted = ledger.admit(vm("x", 1), &refusing(), &host()).unwrap();
    let entry_mode = fs::metadata(admitted.path()).unwrap().permissions().mode();
    assert_eq!(entry_mode & 0o777, 0o640);
    drop(admitted);
    fs::remove_dir_all(&private).unwrap();
    fs::remove_dir_all(&shared).unwrap();
}

#[test]
fn shared_ledger_trusts_the_group_but_not_others() {
    if !can_chown() {
        return;
    }
    let dir = scratch("shared-group");
    let ledger = Ledger::open_shared(&dir).unwrap();
    let gid = fs::metadata(&dir).unwrap().gid();
    let member = dir.join("vm-member.json");
    fs::write(&member, live_entry_json(4)).unwrap();
    std::os::unix::fs::chown(&member, Some(65534), Some(gid)).unwrap();
    let outsider = dir.join("vm-outsider.json");
    fs::write(&outsider, live_entry_json(4)).unwrap();
    std::os::unix::fs::chown(&outsider, Some(65534), Some(65534)).unwrap();
    let scan = ledger.inspect().unwrap();
    assert_eq!(scan.live.len(), 1, "{scan:#?}");
    assert_eq!(scan.live[0].0, member);
    assert_eq!(scan.ignored.len(), 1, "{scan:#?}");
    assert_eq!(scan.ignored[0].path, outsider);
    fs::remove_dir_all(&dir).unwrap();
}

//! Side-by-side comparison of the reference VMM against a raw-ioctl loop and QEMU.
//!
//! `cargo run --release -p vmm-benches --bin compare` (or `benches/run`, which installs
//! valgrind and QEMU first) prints two tables:
//! 1. user-space instructions per port-I/O exit (callgrind: counts instructions, not
//!    seconds, so the figure repeats on a busy machine), from the difference between a
//!    short and a long run so that start-up cost cancels out;
//! 2. whole-process wall time (median) and peak RSS (median and largest) of a trivial
//!    guest: start, one exit, stop. The runners take turns (one run of each per round, in
//!    an order where each follows every other equally often, after one warm-up round), so
//!    a busy machine slows them alike instead of skewing one of them.
//!    Peak RSS is the program's own VmHWM, read from /proc when it exits (see [`peak`]):
//!    `ru_maxrss` of a spawned child also counts the parent's RSS, which exec records from
//!    the address space it replaces.
//!
//! `compare --before PATH` adds an earlier build of vmm-reference as one more row of
//! both tables, measured in the same run, and this build with `--seccomp off`; the
//! trivial-guest table is then followed by each build's difference from the earlier one,
//! paired by round, with a bootstrap interval.
//!
//! The header names the machine (CPUs, model, kernel) so the tables can be compared with
//! docs/PERFORMANCE.md.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SHORT: u64 = 500;
const LONG: u64 = 5500;
/// Timed rounds of the trivial guest: a multiple of 2, 4, 6, 8 and 10, so every ordering
/// ([`round_order`]) comes up equally often whatever the number of runners (two to five).
const RUNS: usize = 120;
/// Traced runs per command for the memory columns. A trivial guest's peak RSS varies by
/// about 0.2 MiB from run to run (which thread touches which pages first), so the table
/// shows the median and the largest of many runs, taken in turns like the wall times.
const RSS_RUNS: usize = 30;
/// Rounds of the seccomp table (two runners, a second each).
const SECCOMP_RUNS: usize = 20;

struct Runner {
    name: &'static str,
    /// Command line for a guest that makes `exits` port-I/O exits.
    argv: Box<dyn Fn(u64) -> Vec<String>>,
}

fn main() {
    let dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target/release"));
    let raw = dir.join("raw-loop");
    let vmm = dir.join("vmm-reference");
    for bin in [&raw, &vmm] {
        if !bin.exists() {
            eprintln!(
                "compare: {} is missing: run `cargo build --release --workspace` first",
                bin.display()
            );
            std::process::exit(2);
        }
    }
    let raw_s = raw.display().to_string();
    let vmm_s = vmm.display().to_string();
    let mut runners = vec![
        Runner {
            name: "raw ioctl loop",
            argv: Box::new(move |n| vec![raw_s.clone(), n.to_string()]),
        },
        Runner {
            name: "vmm-reference",
            argv: Box::new(move |n| {
                vec![
                    vmm_s.clone(),
                    "--smp".into(),
                    "1".into(),
                    "--probe".into(),
                    format!("exits={n}"),
                ]
            }),
        },
    ];
    // `--before PATH`: an earlier build of vmm-reference, measured in the same run (same
    // machine, same load, interleaved) for a before/after table.
    let before = before_arg();
    if let Some(before) = before.clone() {
        runners.push(Runner {
            name: BEFORE,
            argv: Box::new(move |n| {
                vec![
                    before.clone(),
                    "--smp".into(),
                    "1".into(),
                    "--probe".into(),
                    format!("exits={n}"),
                ]
            }),
        });
    }

    let mut out = String::new();
    let _ = writeln!(out, "Machine: {}\n", machine());
    let _ = writeln!(
        out,
        "## User-space instructions per port-I/O exit (callgrind, {SHORT} vs {LONG} exits)\n"
    );
    let _ = writeln!(out, "| runner | instructions/exit | vs raw loop | target |");
    let _ = writeln!(out, "|---|---:|---:|---|");
    let mut raw_per_exit = None;
    for r in &runners {
        // Valgrind cannot run a process that installs seccomp filters (it does not
        // implement seccomp(2)): the instruction count is taken with the filters off;
        // their kernel-side cost is the last table.
        let argv = |n: u64| {
            let mut a = (r.argv)(n);
            if r.name == "vmm-reference" {
                a.extend(["--seccomp".to_string(), "off".to_string()]);
            }
            a
        };
        match per_exit_instructions(&argv) {
            Ok(per) => {
                let base = *raw_per_exit.get_or_insert(per);
                let target = if r.name != "raw ioctl loop" {
                    "<= 2.0x"
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "| {} | {per:.1} | {:.2}x | {target} |",
                    r.name,
                    per / base
                );
            }
            Err(e) => {
                let _ = writeln!(out, "| {} | error: {e} | | |", r.name);
            }
        }
    }

    let _ = writeln!(
        out,
        "\n## Trivial guest: start, one exit, stop ({RUNS} runs each, {RSS_RUNS} traced for memory)\n"
    );
    let _ = writeln!(
        out,
        "| runner | wall time median (ms) | vs raw loop | peak RSS median (MiB) | peak RSS max (MiB) | private at exit, max (MiB) | target |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---|");
    let mut rows: Vec<(&str, Vec<String>)> =
        runners.iter().map(|r| (r.name, (r.argv)(1))).collect();
    if before.is_some() {
        // The same build without its seccomp filters, which the before build did not
        // have: what the filters cost at start-up, apart from everything else.
        let at = 1 + rows
            .iter()
            .position(|(n, _)| *n == "vmm-reference")
            .expect("the vmm-reference row is always there");
        let mut argv = rows[at - 1].1.clone();
        argv.extend(["--seccomp".to_string(), "off".to_string()]);
        rows.insert(at, (NO_FILTERS, argv));
    }
    let qemu = qemu_command();
    if let Some(q) = &qemu {
        rows.push(("qemu-system-x86_64", q.clone()));
    }
    let argvs: Vec<Vec<String>> = rows.iter().map(|(_, a)| a.clone()).collect();
    let results = measure_interleaved(&argvs, RUNS, RSS_RUNS);
    let wall_of = |name: &str| {
        rows.iter()
            .zip(&results)
            .find(|((n, _), _)| *n == name)
            .and_then(|(_, r)| r.as_ref().ok().map(|m| m.wall))
    };
    let wall_raw = wall_of("raw ioctl loop");
    let wall_qemu = wall_of("qemu-system-x86_64");
    for ((name, _), result) in rows.iter().zip(&results) {
        match result {
            Ok(m) => {
                let target = if name.starts_with("vmm-reference") {
                    "<= 1.5x raw, <= 0.1x QEMU, <= 2.5 MiB"
                } else {
                    ""
                };
                let vs_raw =
                    wall_raw.map_or(String::new(), |b| format!("{:.2}x", ms(m.wall) / ms(b)));
                let mib = |kib: u64| kib as f64 / 1024.0;
                let _ = writeln!(
                    out,
                    "| {name} | {:.2} | {vs_raw} | {:.2} | {:.2} | {:.2} | {target} |",
                    ms(m.wall),
                    mib(m.peak_median_kib),
                    mib(m.peak_max_kib),
                    mib(m.anon_max_kib)
                );
            }
            Err(e) => {
                let _ = writeln!(out, "| {name} | error: {e} | | | | | |");
            }
        }
    }
    match (wall_of("vmm-reference"), wall_qemu) {
        (Some(v), Some(q)) => {
            let _ = writeln!(
                out,
                "\nvmm-reference / QEMU wall time: {:.3}x (target <= 0.1x)",
                ms(v) / ms(q)
            );
        }
        _ if qemu.is_none() => {
            let _ = writeln!(
                out,
                "\nqemu-system-x86_64 not found: `benches/run` installs it (Debian qemu-system-x86)."
            );
        }
        _ => {}
    }
    let rounds_of = |name: &str| {
        rows.iter()
            .zip(&results)
            .find(|((n, _), _)| *n == name)
            .and_then(|(_, r)| r.as_ref().ok().map(|m| &m.rounds))
    };
    for name in ["vmm-reference", NO_FILTERS] {
        if let (Some(after), Some(before)) = (rounds_of(name), rounds_of(BEFORE)) {
            let (median, low, high) = paired_difference(after, before);
            let _ = writeln!(
                out,
                "\n{name} minus before, paired by round: median {median:+.3} ms \
                 (95% bootstrap interval {low:+.3} to {high:+.3} ms, {} rounds)",
                after.len().min(before.len())
            );
        }
    }
    seccomp_cost(&mut out, &vmm_s_for_seccomp(&dir));
    print!("{out}");
}

/// Row name of the `--before` build.
const BEFORE: &str = "vmm-reference (before)";
/// Row name of this build with `--seccomp off` (only with `--before`).
const NO_FILTERS: &str = "vmm-reference --seccomp off";

/// The `--before PATH` argument; exits 2 with a one-line error when it is wrong.
fn before_arg() -> Option<String> {
    let mut args = std::env::args().skip(1);
    let mut before = None;
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--before", Some(path)) if Path::new(&path).is_file() => before = Some(path),
            ("--before", Some(path)) => {
                eprintln!("compare: --before {path}: no such file");
                std::process::exit(2);
            }
            _ => {
                eprintln!("usage: compare [--before PATH-TO-AN-EARLIER-vmm-reference]");
                std::process::exit(2);
            }
        }
    }
    before
}

fn vmm_s_for_seccomp(dir: &Path) -> String {
    dir.join("vmm-reference").display().to_string()
}

/// Exits the seccomp comparison makes: enough that the exit path dominates start-up.
const SECCOMP_EXITS: u64 = 20_000;

/// Wall time of a guest making [`SECCOMP_EXITS`] port-I/O exits with the filters on (the
/// default) and off, interleaved so that background load hits both alike.
fn seccomp_cost(out: &mut String, vmm: &str) {
    let argv = |mode: &str| {
        vec![
            vmm.to_string(),
            "--smp".into(),
            "1".into(),
            "--probe".into(),
            format!("exits={SECCOMP_EXITS}"),
            "--seccomp".into(),
            mode.into(),
        ]
    };
    let results = measure_interleaved(&[argv("on"), argv("off")], SECCOMP_RUNS, 0);
    let _ = writeln!(
        out,
        "\n## Seccomp filters on the exit path: {SECCOMP_EXITS} exits ({SECCOMP_RUNS} runs each)\n"
    );
    let _ = writeln!(out, "| --seccomp | wall time median (ms) | per exit (us) |");
    let _ = writeln!(out, "|---|---:|---:|");
    for (mode, r) in ["on", "off"].iter().zip(&results) {
        match r {
            Ok(m) => {
                let _ = writeln!(
                    out,
                    "| {mode} | {:.2} | {:.2} |",
                    ms(m.wall),
                    ms(m.wall) * 1000.0 / SECCOMP_EXITS as f64
                );
            }
            Err(e) => {
                let _ = writeln!(out, "| {mode} | error: {e} | |");
            }
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Instructions per exit from two callgrind runs: (I(long) - I(short)) / (long - short).
fn per_exit_instructions(argv: &dyn Fn(u64) -> Vec<String>) -> Result<f64, String> {
    let count = |n: u64| -> Result<u64, String> {
        let out_file =
            std::env::temp_dir().join(format!("compare-callgrind-{}-{n}", std::process::id()));
        let args = argv(n);
        let output = Command::new("valgrind")
            .arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", out_file.display()))
            .args(&args)
            .stdout(Stdio::null())
            .output()
            .map_err(|e| format!("valgrind: {e} (install the Debian package valgrind)"))?;
        let _ = std::fs::remove_file(&out_file);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            return Err(format!(
                "{} failed: {}",
                args[0],
                stderr.lines().last().unwrap_or("")
            ));
        }
        stderr
            .lines()
            .find_map(|l| l.split("Collected :").nth(1))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| "no 'Collected' line from callgrind".to_string())
    };
    let (short, long) = (count(SHORT)?, count(LONG)?);
    Ok(long.saturating_sub(short) as f64 / (LONG - SHORT) as f64)
}

/// Median wall time of each command over `runs` rounds, and its memory figures over
/// `rss_runs` traced rounds. Each round runs every command once, in the order
/// [`round_order`] gives; one warm-up round (page cache, first-use kernel work) is not
/// counted. Traced runs are separate: tracing slows the exit path, so they never count for
/// time.
fn measure_interleaved(
    argvs: &[Vec<String>],
    runs: usize,
    rss_runs: usize,
) -> Vec<Result<Measured, String>> {
    let mut walls: Vec<Vec<Duration>> = vec![Vec::with_capacity(runs); argvs.len()];
    let mut mems: Vec<Vec<peak::Memory>> = vec![Vec::with_capacity(rss_runs); argvs.len()];
    let mut errors: Vec<Option<String>> = vec![None; argvs.len()];
    let n = argvs.len();
    for round in 0..=runs {
        for i in round_order(n, round) {
            let argv = &argvs[i];
            if errors[i].is_some() {
                continue;
            }
            match run_once(argv) {
                Ok(wall) if round > 0 => walls[i].push(wall),
                Ok(_) => {}
                Err(e) => errors[i] = Some(e),
            }
        }
    }
    for round in 0..rss_runs {
        for i in round_order(n, round) {
            let argv = &argvs[i];
            if errors[i].is_some() {
                continue;
            }
            match peak::run(argv) {
                Ok((status, m)) if status_ok(argv, status) => mems[i].push(m),
                Ok((status, _)) => {
                    errors[i] = Some(format!("{} exited with status {status} (traced)", argv[0]))
                }
                Err(e) => errors[i] = Some(e),
            }
        }
    }
    walls
        .into_iter()
        .zip(mems)
        .zip(errors)
        .map(|((mut w, mut m), err)| {
            if let Some(e) = err {
                return Err(e);
            }
            let rounds = w.clone();
            w.sort();
            m.sort_by_key(|m| m.peak_kib);
            let peak = |i: usize| m.get(i).map_or(0, |m| m.peak_kib);
            Ok(Measured {
                rounds,
                wall: w[w.len() / 2],
                peak_median_kib: peak(m.len() / 2),
                peak_max_kib: peak(m.len().saturating_sub(1)),
                anon_max_kib: m.iter().map(|m| m.anon_kib).max().unwrap_or(0),
            })
        })
        .collect()
}

/// The median of the per-round differences `after - before` (ms), with a 95% bootstrap
/// interval for it. Both ran in every round, close together, so the pairing removes most
/// of what the machine's load does to both; the medians of the table do not.
fn paired_difference(after: &[Duration], before: &[Duration]) -> (f64, f64, f64) {
    let diffs: Vec<f64> = after
        .iter()
        .zip(before)
        .map(|(a, b)| ms(*a) - ms(*b))
        .collect();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    // A fixed-seed xorshift: the same measurements always give the same interval.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut medians: Vec<f64> = (0..2000)
        .map(|_| {
            let mut sample: Vec<f64> = (0..diffs.len())
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    diffs[(state % diffs.len() as u64) as usize]
                })
                .collect();
            median(&mut sample)
        })
        .collect();
    medians.sort_by(f64::total_cmp);
    let mut all = diffs.clone();
    (median(&mut all), medians[50], medians[1949])
}

/// The order of the commands in round `round`: rows of a Williams design. A program's
/// time depends on what ran just before it (the kernel may still be tearing the previous
/// VM down, and QEMU's teardown is heavy), so over a whole cycle of rows every command
/// runs directly after every other command equally often, and takes every place equally
/// often. (Starting each round one further along a fixed order, as this runner did
/// before, gives every place but always the same predecessor: with QEMU last, the command
/// after it in the list followed QEMU and no other did.)
fn round_order(n: usize, round: usize) -> Vec<usize> {
    // First row 0, 1, n-1, 2, n-2, ...; row r adds r (mod n); for odd n the rows are
    // also run reversed.
    let mut first = vec![0];
    let (mut low, mut high) = (1, n.saturating_sub(1));
    while first.len() < n {
        first.push(low);
        low += 1;
        if first.len() < n {
            first.push(high);
            high -= 1;
        }
    }
    let rows = if n.is_multiple_of(2) { n } else { 2 * n };
    let row = round % rows.max(1);
    let mut order: Vec<usize> = first.iter().map(|&c| (c + row) % n).collect();
    if row >= n {
        order.reverse();
    }
    order
}

/// What [`measure_interleaved`] finds for one command.
struct Measured {
    /// Wall time of every timed round, in round order.
    rounds: Vec<Duration>,
    /// Median wall time.
    wall: Duration,
    /// Median and largest VmHWM of the traced runs, KiB.
    peak_median_kib: u64,
    peak_max_kib: u64,
    /// Largest RssAnon at exit, KiB.
    anon_max_kib: u64,
}

/// One run: wall time from spawn to reaped exit.
fn run_once(argv: &[String]) -> Result<Duration, String> {
    let start = Instant::now();
    let status = Command::new(&argv[0])
        .args(&argv[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("{}: {e}", argv[0]))?;
    let wall = start.elapsed();
    let code = status.code().unwrap_or(-1);
    if !status_ok(argv, code) {
        return Err(format!("{} exited with status {code}", argv[0]));
    }
    Ok(wall)
}

/// `N CPUs, <model name>, Linux <release>` from /proc.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_string();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} CPUs, {model}, Linux {}", release.trim())
}

/// QEMU's isa-debug-exit turns a write of V into exit status (V << 1) | 1.
fn status_ok(argv: &[String], status: i32) -> bool {
    if argv[0].ends_with("qemu-system-x86_64") {
        status == 1
    } else {
        status == 0
    }
}

/// QEMU with a 64 KiB firmware whose reset vector writes 0 to isa-debug-exit (port 0xf4).
fn qemu_command() -> Option<Vec<String>> {
    let qemu = [
        "/usr/bin/qemu-system-x86_64",
        "/usr/local/bin/qemu-system-x86_64",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())?;
    let mut fw = vec![0xf4u8; 64 << 10];
    // At the reset vector (offset 0xfff0): mov al, 0; out 0xf4, al; hlt.
    fw[0xfff0..0xfff5].copy_from_slice(&[0xb0, 0x00, 0xe6, 0xf4, 0xf4]);
    let path = std::env::temp_dir().join("compare-debug-exit.bin");
    std::fs::write(&path, fw).ok()?;
    Some(
        [
            qemu,
            "-accel",
            "kvm",
            "-M",
            "pc",
            "-m",
            "128M",
            "-nodefaults",
            "-display",
            "none",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=4",
            "-bios",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([path.display().to_string()])
        .collect(),
    )
}

/// A program's own peak RSS: run it under ptrace, stop it at its exit (PTRACE_EVENT_EXIT,
/// before its address space is torn down) and read VmHWM and RssAnon from
/// `/proc/<pid>/status`.
///
/// `ru_maxrss` from wait4 cannot be used: exec records the peak of the address space it
/// replaces into the new program's maxrss, and for a spawned child that is the spawning
/// process's (posix_spawn shares it; fork copies it). A small program then reads as large
/// as its parent.
mod peak {
    use std::os::unix::process::CommandExt as _;
    use std::process::{Command, Stdio};

    /// Memory of one run, KiB.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Memory {
        /// VmHWM: the largest resident set of the program's address space.
        pub peak_kib: u64,
        /// RssAnon at exit: private anonymous memory (heap, stacks, ...).
        pub anon_kib: u64,
    }

    fn field(status: &str, name: &str) -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    fn ptrace(request: libc::c_uint, pid: libc::pid_t, data: usize) -> Result<(), String> {
        // SAFETY: the requests used here (SETOPTIONS, CONT) take no pointer; `addr` is
        // unused and `data` is an integer (options or a signal number).
        let r = unsafe { libc::ptrace(request, pid, 0usize, data) };
        if r < 0 {
            return Err(format!("ptrace: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    fn wait(pid: libc::pid_t) -> Result<i32, String> {
        let mut status = 0;
        // SAFETY: waitpid writes only to the local passed by pointer; pid is our child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r < 0 {
            return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
        }
        Ok(status)
    }

    /// Run `argv` to its end; its exit status and memory.
    pub fn run(argv: &[String]) -> Result<(i32, Memory), String> {
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: the closure runs in the forked child before exec and only makes one
        // async-signal-safe system call.
        unsafe {
            cmd.pre_exec(|| {
                if libc::ptrace(libc::PTRACE_TRACEME, 0, 0usize, 0usize) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| format!("{}: {e}", argv[0]))?;
        let pid = child.id() as libc::pid_t;
        // The child stops with SIGTRAP at its exec.
        let status = wait(pid)?;
        if !libc::WIFSTOPPED(status) {
            return Err(format!("{} did not stop at exec", argv[0]));
        }
        let options = libc::PTRACE_O_TRACEEXIT | libc::PTRACE_O_EXITKILL;
        ptrace(libc::PTRACE_SETOPTIONS, pid, options as usize)?;
        ptrace(libc::PTRACE_CONT, pid, 0)?;
        let mut mem = Memory::default();
        loop {
            let status = wait(pid)?;
            if libc::WIFEXITED(status) {
                return Ok((libc::WEXITSTATUS(status), mem));
            }
            if libc::WIFSIGNALED(status) {
                return Ok((-1, mem));
            }
            let exit_event = libc::SIGTRAP | (libc::PTRACE_EVENT_EXIT << 8);
            if status >> 8 == exit_event {
                let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
                mem.peak_kib = field(&text, "VmHWM:").unwrap_or(0);
                mem.anon_kib = field(&text, "RssAnon:").unwrap_or(0);
                ptrace(libc::PTRACE_CONT, pid, 0)?;
            } else {
                // Any other stop is a signal for the program: deliver it.
                let sig = libc::WSTOPSIG(status) as usize;
                ptrace(libc::PTRACE_CONT, pid, sig)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_follows_every_other_equally_often() {
        for n in 1..=6usize {
            let rows = if n.is_multiple_of(2) { n } else { 2 * n };
            let mut follows = vec![vec![0; n]; n];
            let mut places = vec![vec![0; n]; n];
            for round in 0..rows {
                let order = round_order(n, round);
                let mut seen = order.clone();
                seen.sort_unstable();
                assert_eq!(seen, (0..n).collect::<Vec<_>>(), "n {n} round {round}");
                for (place, &c) in order.iter().enumerate() {
                    places[c][place] += 1;
                }
                for pair in order.windows(2) {
                    follows[pair[0]][pair[1]] += 1;
                }
            }
            let want = rows / n;
            for a in 0..n {
                assert!(places[a].iter().all(|&p| p == want), "n {n}: {places:?}");
                for b in (0..n).filter(|&b| b != a) {
                    assert_eq!(follows[a][b], follows[0][1], "n {n}: {follows:?}");
                }
            }
        }
        assert_eq!(RUNS % 120, 0);
        assert_eq!(RSS_RUNS % 10, 0);
    }

    #[test]
    fn the_paired_difference_follows_the_rounds_not_the_outliers() {
        let ms = |v: u64| Duration::from_micros(v);
        let before: Vec<Duration> = (0..9).map(|r| ms(4000 + 300 * r)).collect();
        // After is 0.1 ms slower in every round, whatever the round's own load.
        let after: Vec<Duration> = before.iter().map(|b| *b + ms(100)).collect();
        let (median, low, high) = paired_difference(&after, &before);
        assert!(
            (median - 0.1).abs() < 1e-9 && (low - 0.1).abs() < 1e-9,
            "{median} {low}"
        );
        assert!((high - 0.1).abs() < 1e-9);
        // One round 1 ms slower, the others equal: the median says 0.
        let mut after = before.clone();
        after[3] += ms(1000);
        let (median, low, high) = paired_difference(&after, &before);
        assert_eq!(median, 0.0);
        assert!(low <= median && median <= high);
    }
}

//! Side-by-side comparison of the reference VMM against a raw-ioctl loop and QEMU.
//!
//! `cargo run --release -p vmm-benches --bin compare` (or `benches/run`, which installs
//! valgrind and QEMU first) prints two tables:
//! 1. user-space instructions per port-I/O exit (callgrind: counts instructions, not
//!    seconds, so the figure repeats on a busy machine), from the difference between a
//!    short and a long run so that start-up cost cancels out;
//! 2. whole-process wall time (median) and peak RSS (largest) of a trivial guest:
//!    start, one exit, stop.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SHORT: u64 = 500;
const LONG: u64 = 5500;
const RUNS: usize = 20;

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
    let runners = [
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

    let mut out = String::new();
    let _ = writeln!(
        out,
        "## User-space instructions per port-I/O exit (callgrind, {SHORT} vs {LONG} exits)\n"
    );
    let _ = writeln!(out, "| runner | instructions/exit | vs raw loop | target |");
    let _ = writeln!(out, "|---|---:|---:|---|");
    let mut raw_per_exit = None;
    for r in &runners {
        match per_exit_instructions(&r.argv) {
            Ok(per) => {
                let base = *raw_per_exit.get_or_insert(per);
                let target = if r.name == "vmm-reference" {
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
        "\n## Trivial guest: start, one exit, stop ({RUNS} runs each)\n"
    );
    let _ = writeln!(
        out,
        "| runner | wall time median (ms) | vs raw loop | peak RSS (MiB) | target |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---|");
    let mut wall_raw = None;
    let mut rows: Vec<(&str, Vec<String>)> =
        runners.iter().map(|r| (r.name, (r.argv)(1))).collect();
    let qemu = qemu_command();
    if let Some(q) = &qemu {
        rows.push(("qemu-system-x86_64", q.clone()));
    }
    let mut vmm_wall = None;
    for (name, argv) in &rows {
        match measure(argv, RUNS) {
            Ok((wall, rss)) => {
                let base = *wall_raw.get_or_insert(wall);
                let target = match *name {
                    "vmm-reference" => {
                        vmm_wall = Some(wall);
                        "<= 1.5x raw, <= 0.1x QEMU, <= 2.5 MiB"
                    }
                    _ => "",
                };
                let _ = writeln!(
                    out,
                    "| {name} | {:.2} | {:.2}x | {:.2} | {target} |",
                    ms(wall),
                    ms(wall) / ms(base),
                    rss as f64 / 1024.0
                );
            }
            Err(e) => {
                let _ = writeln!(out, "| {name} | error: {e} | | | |");
            }
        }
    }
    if let (Some(v), Some(q)) = (vmm_wall, qemu.as_ref().and_then(|q| measure(q, RUNS).ok())) {
        let _ = writeln!(
            out,
            "\nvmm-reference / QEMU wall time: {:.3}x (target <= 0.1x)",
            ms(v) / ms(q.0)
        );
    } else if qemu.is_none() {
        let _ = writeln!(
            out,
            "\nqemu-system-x86_64 not found: `benches/run` installs it (Debian qemu-system-x86)."
        );
    }
    print!("{out}");
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

/// Median wall time and largest peak RSS (KiB) over `runs` runs of `argv`.
fn measure(argv: &[String], runs: usize) -> Result<(Duration, i64), String> {
    let mut walls = Vec::with_capacity(runs);
    let mut peak = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", argv[0]))?;
        let (status, rss) = rusage::wait(child.id())?;
        walls.push(start.elapsed());
        if !status_ok(argv, status) {
            return Err(format!("{} exited with status {status}", argv[0]));
        }
        peak = peak.max(rss);
    }
    walls.sort();
    Ok((walls[runs / 2], peak))
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

mod rusage {
    /// Wait for `pid` and return its exit status and peak RSS in KiB (ru_maxrss).
    pub fn wait(pid: u32) -> Result<(i32, i64), String> {
        let mut status = 0;
        // SAFETY: rusage is plain old data; all-zero is a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 writes only to the two locals passed by pointer, which live
        // across the call; pid is our own child.
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
        if r < 0 {
            return Err(format!("wait4: {}", std::io::Error::last_os_error()));
        }
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        };
        Ok((code, usage.ru_maxrss))
    }
}

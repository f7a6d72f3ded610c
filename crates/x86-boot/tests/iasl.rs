//! Checks the generated ACPI tables with ACPICA's own disassembler and
//! compiler (`iasl`, Debian package `acpica-tools`). These tests FAIL when
//! iasl is missing: they are the only check that the AML is valid.

use std::path::{Path, PathBuf};
use std::process::Command;

use cpu_topology::{CpuTopology, VcpuIndex};
use x86_boot::acpi::{
    build_acpi, AcpiConfig, AcpiLayout, AcpiTables, CpuHotplugConfig, IsaSerialConfig, MemoryRange,
    NumaConfig, PowerConfig,
};
use x86_boot::CpuEntry;

fn iasl() -> &'static str {
    match Command::new("iasl").arg("-v").output() {
        Ok(_) => "iasl",
        Err(e) => panic!("iasl not found ({e}): install the Debian package acpica-tools"),
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("x86-boot-iasl-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Run iasl with `args` in `dir`; returns stdout+stderr, panicking on failure.
fn run(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(iasl())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "iasl {args:?} failed:\n{text}");
    text
}

/// Disassemble every table; recompile the DSDT source. Returns the sources.
fn check_with_iasl(tables: &AcpiTables, name: &str) -> std::collections::BTreeMap<String, String> {
    let dir = scratch(name);
    let mut sources = std::collections::BTreeMap::new();
    for t in &tables.tables {
        let sig = String::from_utf8_lossy(&t.signature).to_lowercase();
        let file = format!("{sig}.dat");
        std::fs::write(dir.join(&file), &t.bytes).unwrap();
        let log = run(&dir, &["-d", &file]);
        let dsl = std::fs::read_to_string(dir.join(format!("{sig}.dsl"))).unwrap();
        for bad in ["**** ", "Error", "Invalid", "Unknown"] {
            assert!(
                !dsl.contains(bad),
                "{sig}: disassembly contains {bad:?}:\n{dsl}"
            );
        }
        assert!(!log.contains("Error"), "{sig}: {log}");
        // Collapse whitespace so assertions do not depend on column layout.
        sources.insert(sig, dsl.split_whitespace().collect::<Vec<_>>().join(" "));
    }
    // The DSDT source must compile back without errors or warnings.
    let log = run(&dir, &["-p", "recompiled", "dsdt.dsl"]);
    assert!(log.contains("0 Errors"), "{log}");
    assert!(log.contains("0 Warnings"), "{log}");
    if std::env::var_os("X86_BOOT_KEEP_IASL").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    sources
}

fn cpus_of(topo: &CpuTopology) -> Vec<CpuEntry> {
    let layout = topo.apic_layout();
    (0..topo.max_cpus())
        .map(|i| CpuEntry {
            apic_id: layout.apic_id(VcpuIndex(i)).unwrap().0,
            present: i < topo.cpus(),
            node: topo.position(VcpuIndex(i)).unwrap().socket,
        })
        .collect()
}

#[test]
fn iasl_accepts_two_socket_numa_hotplug_tables() {
    let topo = CpuTopology::new(2, 1, 1, 4, 2, 8).unwrap();
    let config = AcpiConfig {
        cpus: cpus_of(&topo),
        numa: Some(NumaConfig {
            memory: vec![
                MemoryRange {
                    start: 0,
                    size: 1 << 31,
                    node: 0,
                },
                MemoryRange {
                    start: 1 << 32,
                    size: 1 << 31,
                    node: 1,
                },
            ],
            distances: None,
        }),
        hotplug: Some(CpuHotplugConfig::default()),
        serial: Some(IsaSerialConfig::COM1),
        ..Default::default()
    };
    let tables = build_acpi(&config, &AcpiLayout::default()).unwrap();
    let src = check_with_iasl(&tables, "numa");
    let dsdt = &src["dsdt"];
    assert!(dsdt.contains("Device (COM1)"), "{dsdt}");
    assert!(dsdt.contains("Name (_HID, EisaId (\"PNP0501\")"), "{dsdt}");
    assert!(
        dsdt.contains("Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, ) { 0x00000004, } IO (Decode16, 0x03F8, // Range Minimum 0x03F8, // Range Maximum 0x01, // Alignment 0x08, // Length"),
        "{dsdt}"
    );
    for i in 0..16 {
        assert!(
            dsdt.contains(&format!("Device (C{i:03X})")),
            "C{i:03X}:\n{dsdt}"
        );
    }
    assert_eq!(dsdt.matches("Name (_HID, \"ACPI0007\"").count(), 16);
    assert!(dsdt.contains("Name (_HID, \"ACPI0013\""), "{dsdt}");
    assert!(
        dsdt.contains("OperationRegion (PRST, SystemIO, 0x0CD8, 0x0C)"),
        "{dsdt}"
    );
    assert!(dsdt.contains("Method (_EJ0, 1"), "{dsdt}");
    assert!(dsdt.contains("Name (_PXM, One)"), "{dsdt}");

    let madt = &src["apic"];
    assert!(madt.contains("Revision : 05"), "{madt}");
    assert_eq!(
        madt.matches("Subtable Type : 00 [Processor Local APIC]")
            .count(),
        16
    );
    assert_eq!(madt.matches("Processor Enabled : 1").count(), 8, "{madt}");
    assert_eq!(
        madt.matches("Runtime Online Capable : 1").count(),
        8,
        "{madt}"
    );
    assert!(madt.contains("Subtable Type : 02 [Interrupt Source Override]"));
    let srat = &src["srat"];
    assert_eq!(
        srat.matches("[Processor Local APIC/SAPIC Affinity]")
            .count(),
        16
    );
    assert_eq!(srat.matches("[Memory Affinity]").count(), 2);
    let slit = &src["slit"];
    assert!(slit.contains("Localities : 0000000000000002"), "{slit}");
    assert!(
        src["facp"].contains("Hardware Reduced (V5) : 1"),
        "{}",
        src["facp"]
    );
}

#[test]
fn iasl_accepts_three_hundred_cpu_tables() {
    let topo = CpuTopology::new(1, 1, 1, 300, 1, 256).unwrap();
    let mut cpus = cpus_of(&topo);
    for (i, c) in cpus.iter_mut().enumerate() {
        c.node = (i / 150) as u32;
    }
    let config = AcpiConfig {
        cpus,
        numa: Some(NumaConfig {
            memory: vec![
                MemoryRange {
                    start: 0,
                    size: 1 << 30,
                    node: 0,
                },
                MemoryRange {
                    start: 1 << 30,
                    size: 1 << 30,
                    node: 1,
                },
            ],
            distances: Some(vec![vec![10, 30], vec![30, 10]]),
        }),
        hotplug: Some(CpuHotplugConfig::default()),
        ..Default::default()
    };
    let tables = build_acpi(&config, &AcpiLayout::default()).unwrap();
    let src = check_with_iasl(&tables, "x2apic");
    let madt = &src["apic"];
    assert_eq!(
        madt.matches("[Processor Local x2APIC]").count(),
        45,
        "ids 255..=299"
    );
    assert_eq!(madt.matches("[Processor Local APIC]").count(), 255);
    assert!(madt.contains("[Local x2APIC NMI]"), "{madt}");
    let srat = &src["srat"];
    assert_eq!(
        srat.matches("[Processor Local x2APIC Affinity]").count(),
        45
    );
    assert_eq!(src["dsdt"].matches("Name (_HID, \"ACPI0007\"").count(), 300);
}

/// Execute the hot-plug methods in ACPICA's AML interpreter (`acpiexec`,
/// same package). Its emulated I/O ports read 0, so every `_STA` is 0; the
/// point is that the methods run to completion without AML exceptions.
#[test]
fn acpiexec_runs_hotplug_methods() {
    let topo = CpuTopology::new(1, 1, 1, 4, 1, 2).unwrap();
    let config = AcpiConfig {
        cpus: cpus_of(&topo),
        hotplug: Some(CpuHotplugConfig::default()),
        ..Default::default()
    };
    let tables = build_acpi(&config, &AcpiLayout::default()).unwrap();
    let dir = scratch("exec");
    std::fs::write(dir.join("dsdt.dat"), &tables.table(b"DSDT").unwrap().bytes).unwrap();
    let script = "evaluate \\_SB.CPUS.C000._STA; evaluate \\_SB.CPUS.C003._STA; \
                  evaluate \\_SB.GED._EVT 5; evaluate \\_SB.CPUS.C003._EJ0 0; \
                  evaluate \\_SB.CPUS.C002._MAT";
    let out = match Command::new("acpiexec")
        .args(["-b", script, "dsdt.dat"])
        .current_dir(&dir)
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!("acpiexec not found ({e}): install the Debian package acpica-tools"),
    };
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{text}");
    for bad in ["AE_", "Exception", "Error"] {
        assert!(!text.contains(bad), "acpiexec reported {bad:?}:\n{text}");
    }
    assert_eq!(
        text.matches("[Integer] = 0000000000000000").count(),
        2,
        "{text}"
    );
    assert!(
        text.contains("No object was returned from evaluation of \\_SB.GED._EVT"),
        "{text}"
    );
    assert!(
        text.contains("00 08 02 02 01 00 00 00"),
        "_MAT of slot 2:\n{text}"
    );
}

/// Power off, reset and the power button next to CPU hot-plug: iasl decodes the FADT
/// registers and finds `\_S5_`, the `PNP0C0C` device and a GED with one interrupt per
/// event.
#[test]
fn iasl_decodes_power_registers_and_button() {
    let topo = CpuTopology::new(1, 1, 1, 4, 1, 2).unwrap();
    let config = AcpiConfig {
        cpus: cpus_of(&topo),
        hotplug: Some(CpuHotplugConfig::default()),
        power: Some(PowerConfig::default()),
        ..Default::default()
    };
    let tables = build_acpi(&config, &AcpiLayout::default()).unwrap();
    let src = check_with_iasl(&tables, "power");
    let dsdt = &src["dsdt"];
    assert!(
        dsdt.contains(
            "Name (\\_S5, Package (0x04) // _S5_: S5 System State { 0x05, Zero, Zero, Zero })"
        ),
        "{dsdt}"
    );
    assert!(
        dsdt.contains(
            "Device (PWRB) { Name (_HID, EisaId (\"PNP0C0C\") /* Power Button Device */)"
        ),
        "{dsdt}"
    );
    for gsi in ["0x00000005", "0x00000006"] {
        assert!(
            dsdt.contains(&format!(
                "Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, ) {{ {gsi}, }}"
            )),
            "GSI {gsi}:\n{dsdt}"
        );
    }
    assert!(
        dsdt.contains("If ((Arg0 == 0x05)) { \\_SB.CPUS.CSCN () }"),
        "{dsdt}"
    );
    assert!(
        dsdt.contains("If ((Arg0 == 0x06)) { Notify (\\_SB.PWRB, 0x80)"),
        "{dsdt}"
    );

    let facp = &src["facp"];
    for want in [
        "Reset Register Supported (V2) : 1",
        "Value to cause reset : 01",
        "Hardware Reduced (V5) : 1",
    ] {
        assert!(facp.contains(want), "{want}:\n{facp}");
    }
    // The three registers: SystemIO, 8 bits, byte access, at 0x3c2 (reset), 0x3c0
    // (sleep control) and 0x3c1 (sleep status).
    for (name, port) in [
        ("Reset Register", "00000000000003C2"),
        ("Sleep Control Register", "00000000000003C0"),
        ("Sleep Status Register", "00000000000003C1"),
    ] {
        let at = facp
            .find(&format!("{name} : [Generic Address Structure]"))
            .unwrap_or_else(|| panic!("{name}:\n{facp}"));
        // The five fields follow, each after its `[offset]` column.
        let fields: Vec<&str> = facp[at..].split(" [").skip(2).take(7).collect();
        let text = fields.join(" [");
        for want in [
            "Space ID : 01 [SystemIO]",
            "Bit Width : 08",
            "Bit Offset : 00",
            "Encoded Access Width : 01 [Byte Access:8]",
            &format!("Address : {port}"),
        ] {
            assert!(text.contains(want), "{name}: {want}:\n{text}");
        }
    }
}

/// ACPICA's interpreter evaluates `\_S5_` to SLP_TYP 5 and runs both GED events.
#[test]
fn acpiexec_evaluates_s5_and_the_button_event() {
    let topo = CpuTopology::new(1, 1, 1, 4, 1, 2).unwrap();
    let config = AcpiConfig {
        cpus: cpus_of(&topo),
        hotplug: Some(CpuHotplugConfig::default()),
        power: Some(PowerConfig::default()),
        ..Default::default()
    };
    let tables = build_acpi(&config, &AcpiLayout::default()).unwrap();
    let dir = scratch("exec-power");
    std::fs::write(dir.join("dsdt.dat"), &tables.table(b"DSDT").unwrap().bytes).unwrap();
    let script = "evaluate \\_S5_; evaluate \\_SB.GED._EVT 6; evaluate \\_SB.GED._EVT 5";
    let out = match Command::new("acpiexec")
        .args(["-b", script, "dsdt.dat"])
        .current_dir(&dir)
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!("acpiexec not found ({e}): install the Debian package acpica-tools"),
    };
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{text}");
    for bad in ["AE_", "Exception", "Error"] {
        assert!(!text.contains(bad), "acpiexec reported {bad:?}:\n{text}");
    }
    assert!(text.contains("[Package] Contains 4 Elements"), "{text}");
    assert!(text.contains("[Integer] = 0000000000000005"), "{text}");
    assert!(
        text.contains("Notify"),
        "the button event notifies PWRB:\n{text}"
    );
}

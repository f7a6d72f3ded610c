//! Table tests for the `-smp` grammar: valid rows give a topology, invalid rows give the
//! exact error text. Many rows are the configurations of QEMU's
//! `tests/unit/test-smp-parse.c`, written as strings, with QEMU >= 6.2 ("prefer cores")
//! expectations for the x86 PC machine (which prints dies and modules in its messages).

use cpu_topology::smp::{
    parse_smp, to_smp_string, ChCpusConfig, ChTopology, SmpConfig, SmpError, SmpLevels, SmpSpec,
    SmpSyntax,
};
use cpu_topology::CpuTopology;

/// Expected topology: (cpus, maxcpus, sockets, dies, modules, cores, threads).
type Shape = (u32, u32, u32, u32, u32, u32, u32);

fn shape(t: &CpuTopology) -> Shape {
    (
        t.cpus(),
        t.max_cpus(),
        t.sockets(),
        t.dies(),
        t.modules(),
        t.cores(),
        t.threads(),
    )
}

const VALID: &[(&str, Shape)] = &[
    // Nothing given: one vCPU.
    ("", (1, 1, 1, 1, 1, 1, 1)),
    // One value given.
    ("8", (8, 8, 1, 1, 1, 8, 1)),
    ("cpus=8", (8, 8, 1, 1, 1, 8, 1)),
    ("sockets=2", (2, 2, 2, 1, 1, 1, 1)),
    ("cores=4", (4, 4, 1, 1, 1, 4, 1)),
    ("threads=2", (2, 2, 1, 1, 1, 1, 2)),
    ("maxcpus=16", (16, 16, 1, 1, 1, 16, 1)),
    ("dies=2", (2, 2, 1, 2, 1, 1, 1)),
    ("modules=2", (2, 2, 1, 1, 2, 1, 1)),
    // Two values.
    ("8,sockets=2", (8, 8, 2, 1, 1, 4, 1)),
    ("8,cores=4", (8, 8, 2, 1, 1, 4, 1)),
    ("8,threads=2", (8, 8, 1, 1, 1, 4, 2)),
    ("8,maxcpus=16", (8, 16, 1, 1, 1, 16, 1)),
    ("sockets=2,cores=4", (8, 8, 2, 1, 1, 4, 1)),
    ("sockets=2,threads=2", (4, 4, 2, 1, 1, 1, 2)),
    ("sockets=2,maxcpus=16", (16, 16, 2, 1, 1, 8, 1)),
    ("cores=4,threads=2", (8, 8, 1, 1, 1, 4, 2)),
    ("cores=4,maxcpus=16", (16, 16, 4, 1, 1, 4, 1)),
    ("threads=2,maxcpus=16", (16, 16, 1, 1, 1, 8, 2)),
    // Three values.
    ("8,sockets=2,cores=4", (8, 8, 2, 1, 1, 4, 1)),
    ("8,sockets=2,threads=2", (8, 8, 2, 1, 1, 2, 2)),
    ("8,sockets=2,maxcpus=16", (8, 16, 2, 1, 1, 8, 1)),
    ("8,cores=4,threads=2", (8, 8, 1, 1, 1, 4, 2)),
    ("8,cores=4,maxcpus=16", (8, 16, 4, 1, 1, 4, 1)),
    ("8,threads=2,maxcpus=16", (8, 16, 1, 1, 1, 8, 2)),
    ("sockets=2,cores=4,threads=2", (16, 16, 2, 1, 1, 4, 2)),
    ("sockets=2,cores=4,maxcpus=16", (16, 16, 2, 1, 1, 4, 2)),
    ("sockets=2,threads=2,maxcpus=16", (16, 16, 2, 1, 1, 4, 2)),
    ("cores=4,threads=2,maxcpus=16", (16, 16, 2, 1, 1, 4, 2)),
    // Four and five values.
    ("8,sockets=2,cores=4,threads=1", (8, 8, 2, 1, 1, 4, 1)),
    ("8,sockets=2,cores=4,maxcpus=16", (8, 16, 2, 1, 1, 4, 2)),
    ("8,sockets=2,threads=2,maxcpus=16", (8, 16, 2, 1, 1, 4, 2)),
    ("8,cores=4,threads=2,maxcpus=16", (8, 16, 2, 1, 1, 4, 2)),
    (
        "sockets=2,cores=4,threads=2,maxcpus=16",
        (16, 16, 2, 1, 1, 4, 2),
    ),
    (
        "8,sockets=2,cores=4,threads=2,maxcpus=16",
        (8, 16, 2, 1, 1, 4, 2),
    ),
    // Levels this machine lacks are accepted as 1.
    (
        "8,drawers=1,books=1,sockets=2,dies=1,clusters=1,modules=1,cores=2,threads=2,maxcpus=8",
        (8, 8, 2, 1, 1, 2, 2),
    ),
    // Dies and modules take part in the computation.
    ("16,sockets=2,dies=2", (16, 16, 2, 2, 1, 4, 1)),
    ("16,dies=2,modules=2,threads=2", (16, 16, 1, 2, 2, 2, 2)),
    (
        "sockets=2,dies=2,modules=2,cores=2,threads=2",
        (32, 32, 2, 2, 2, 2, 2),
    ),
    ("12,sockets=2,dies=2,cores=3", (12, 12, 2, 2, 1, 3, 1)),
    ("24,cores=3,dies=2", (24, 24, 4, 2, 1, 3, 1)),
    ("8,cores=2,sockets=2", (8, 8, 2, 1, 1, 2, 2)),
    // Order of keys does not matter; the bare value must come first.
    ("threads=2,cores=4,sockets=2", (16, 16, 2, 1, 1, 4, 2)),
    ("maxcpus=8,cpus=2", (2, 8, 1, 1, 1, 8, 1)),
    // Large, in range (31 bits of APIC id).
    ("2147483648", (1 << 31, 1 << 31, 1, 1, 1, 1 << 31, 1)),
    (
        "1,sockets=65536,cores=32768,maxcpus=2147483648",
        (1, 1 << 31, 65536, 1, 1, 32768, 1),
    ),
    // 32 bits of APIC id, 16 of them for the package.
    (
        "1,sockets=65536,cores=65535,maxcpus=4294901760",
        (1, 4_294_901_760, 65536, 1, 1, 65535, 1),
    ),
    // Cloud Hypervisor's form.
    ("boot=1", (1, 1, 1, 1, 1, 1, 1)),
    ("boot=4", (4, 4, 1, 1, 1, 4, 1)),
    ("boot=2,max=6", (2, 6, 1, 1, 1, 6, 1)),
    ("boot=2,topology=1:1:2:1", (2, 2, 1, 2, 1, 1, 1)),
    ("boot=4,max=16,topology=2:2:2:2", (4, 16, 2, 2, 1, 2, 2)),
    ("topology=2:3:1:2,max=12,boot=12", (12, 12, 2, 1, 1, 3, 2)),
];

const INVALID: &[(&str, &str)] = &[
    // Zero values (QEMU's wording, plus which parameter).
    (
        "0",
        "Invalid CPU topology: CPU topology parameters must be greater than zero (cpus=0)",
    ),
    (
        "1,maxcpus=0",
        "Invalid CPU topology: CPU topology parameters must be greater than zero (maxcpus=0)",
    ),
    (
        "1,drawers=0",
        "Invalid CPU topology: CPU topology parameters must be greater than zero (drawers=0)",
    ),
    (
        "1,books=0",
        "Invalid CPU topology: CPU topology parameters must be greater than zero (books=0)",
    ),
    (
        "1,sockets=0",
        "Invalid CPU topology: CPU topology parameters must be greater than zero (sockets=0)",
    ),
    (
        "1,dies=0",
        "Invalid CPU topology: CPU topology parameters must be greater than zero (dies=0)",
    ),
    (
        "1,clusters=0",
        "Invalid CPU topology: CPU topology parameters must be greater than zero (clusters=0)",
    ),
    (
        "1,modules=0",
        "Invalid CPU topology: CPU topology parameters must be greater than zero (modules=0)",
    ),
    (
        "1,cores=0",
        "Invalid CPU topology: CPU topology parameters must be greater than zero (cores=0)",
    ),
    (
        "1,threads=0",
        "Invalid CPU topology: CPU topology parameters must be greater than zero (threads=0)",
    ),
    // The zero check comes before the unsupported-level check, as in QEMU.
    (
        "2,clusters=2,threads=0",
        "Invalid CPU topology: CPU topology parameters must be greater than zero (threads=0)",
    ),
    // Levels the x86 PC machine does not have.
    (
        "2,clusters=2",
        "clusters > 1 not supported by this machine's CPU topology",
    ),
    (
        "2,books=2",
        "books > 1 not supported by this machine's CPU topology",
    ),
    (
        "2,drawers=2",
        "drawers > 1 not supported by this machine's CPU topology",
    ),
    (
        "2,drawers=2,books=2,clusters=2",
        "clusters > 1 not supported by this machine's CPU topology",
    ),
    // Product of the hierarchy.
    (
        "8,sockets=2,cores=4,threads=2,maxcpus=8",
        "Invalid CPU topology: product of the hierarchy must match maxcpus: \
         sockets (2) * dies (1) * modules (1) * cores (4) * threads (2) != maxcpus (8)",
    ),
    (
        "5,sockets=2",
        "Invalid CPU topology: product of the hierarchy must match maxcpus: \
         sockets (2) * dies (1) * modules (1) * cores (2) * threads (1) != maxcpus (5)",
    ),
    (
        // threads is computed last and comes out as 0.
        "sockets=3,cores=2,maxcpus=5",
        "Invalid CPU topology: product of the hierarchy must match maxcpus: \
         sockets (3) * dies (1) * modules (1) * cores (2) * threads (0) != maxcpus (5)",
    ),
    (
        "2,dies=2,maxcpus=1",
        "Invalid CPU topology: product of the hierarchy must match maxcpus: \
         sockets (1) * dies (2) * modules (1) * cores (0) * threads (1) != maxcpus (1)",
    ),
    (
        "16,sockets=2,modules=2,cores=4,threads=2,maxcpus=16",
        "Invalid CPU topology: product of the hierarchy must match maxcpus: \
         sockets (2) * dies (1) * modules (2) * cores (4) * threads (2) != maxcpus (16)",
    ),
    (
        "16,sockets=2,dies=2,cores=4,threads=2,maxcpus=16",
        "Invalid CPU topology: product of the hierarchy must match maxcpus: \
         sockets (2) * dies (2) * modules (1) * cores (4) * threads (2) != maxcpus (16)",
    ),
    (
        "200,sockets=3,dies=5,modules=2,cores=4,threads=2,maxcpus=200",
        "Invalid CPU topology: product of the hierarchy must match maxcpus: \
         sockets (3) * dies (5) * modules (2) * cores (4) * threads (2) != maxcpus (200)",
    ),
    (
        // QEMU's 32-bit product wraps to 0 here; ours does not.
        "sockets=65536,cores=65536",
        "Invalid CPU topology: product of the hierarchy must match maxcpus: \
         sockets (65536) * dies (1) * modules (1) * cores (65536) * threads (1) \
         != maxcpus (4294967295)",
    ),
    (
        "4294967295,sockets=4294967295,dies=4294967295,modules=4294967295,threads=4294967295",
        "Invalid CPU topology: product of the hierarchy must match maxcpus: \
         sockets (4294967295) * dies (4294967295) * modules (4294967295) * cores (0) \
         * threads (4294967295) != maxcpus (4294967295)",
    ),
    // Valid for QEMU's rules, but the APIC ids cannot be described.
    (
        "4294967295",
        "Invalid CPU topology: the package id for sockets (1) * dies (1) * modules (1) * \
         cores (4294967295) * threads (1) would start at APIC id bit 32, but CPUID can \
         describe at most 31",
    ),
    (
        // 65537 * 65535 == u32::MAX slots, but 17 + 16 bits of id.
        "sockets=65537,cores=65535",
        "Invalid CPU topology: APIC ids for sockets (65537) * dies (1) * modules (1) * \
         cores (65535) * threads (1) need 33 bits, more than 32",
    ),
    // maxcpus below cpus.
    (
        "18,sockets=2,cores=4,threads=2,maxcpus=16",
        "Invalid CPU topology: maxcpus must be equal to or greater than smp: \
         sockets (2) * dies (1) * modules (1) * cores (4) * threads (2) == maxcpus (16) \
         < smp_cpus (18)",
    ),
    (
        "4,maxcpus=2",
        "Invalid CPU topology: maxcpus must be equal to or greater than smp: \
         sockets (1) * dies (1) * modules (1) * cores (2) * threads (1) == maxcpus (2) \
         < smp_cpus (4)",
    ),
    (
        "242,sockets=3,dies=5,modules=2,cores=4,threads=2,maxcpus=240",
        "Invalid CPU topology: maxcpus must be equal to or greater than smp: \
         sockets (3) * dies (5) * modules (2) * cores (4) * threads (2) == maxcpus (240) \
         < smp_cpus (242)",
    ),
    (
        // maxcpus defaults to cpus, so this is a product error, not a maxcpus one.
        "9,sockets=2,cores=4",
        "Invalid CPU topology: product of the hierarchy must match maxcpus: \
         sockets (2) * dies (1) * modules (1) * cores (4) * threads (1) != maxcpus (9)",
    ),
    // Syntax: keys.
    (
        "4,foo=1",
        "unknown -smp parameter 'foo' (expected cpus, maxcpus, drawers, books, sockets, dies, \
         clusters, modules, cores, threads; or boot, max, topology)",
    ),
    (
        "CPUS=4",
        "unknown -smp parameter 'CPUS' (expected cpus, maxcpus, drawers, books, sockets, dies, \
         clusters, modules, cores, threads; or boot, max, topology)",
    ),
    (
        "=4",
        "unknown -smp parameter '' (expected cpus, maxcpus, drawers, books, sockets, dies, \
         clusters, modules, cores, threads; or boot, max, topology)",
    ),
    (
        "4, cores=2",
        "unknown -smp parameter ' cores' (expected cpus, maxcpus, drawers, books, sockets, \
         dies, clusters, modules, cores, threads; or boot, max, topology)",
    ),
    (
        "boot=2,affinity=0@[1]",
        "unknown -smp parameter 'affinity' (expected cpus, maxcpus, drawers, books, sockets, \
         dies, clusters, modules, cores, threads; or boot, max, topology)",
    ),
    ("4,sockets", "-smp parameter 'sockets' needs a value (sockets=N)"),
    ("cores", "-smp parameter 'cores' needs a value (cores=N)"),
    ("cpus=4,cpus=8", "-smp parameter 'cpus' is given more than once"),
    ("4,cpus=4", "-smp parameter 'cpus' is given more than once"),
    (
        "4,sockets=2,sockets=2",
        "-smp parameter 'sockets' is given more than once",
    ),
    ("boot=2,boot=2", "-smp parameter 'boot' is given more than once"),
    (
        "boot=2,topology=1:1:1:2,topology=1:1:1:2",
        "-smp parameter 'topology' is given more than once",
    ),
    // Syntax: items.
    ("4,", "empty item 2 in the -smp list (stray comma?)"),
    (",4", "empty item 1 in the -smp list (stray comma?)"),
    ("4,,cores=2", "empty item 2 in the -smp list (stray comma?)"),
    (
        "4,sockets=2,4",
        "invalid -smp item '4': only the first item may omit its key (cpus=)",
    ),
    (
        "cpus=4,8",
        "invalid -smp item '8': only the first item may omit its key (cpus=)",
    ),
    // Syntax: numbers.
    (
        "0x10",
        "invalid value '0x10' for -smp parameter 'cpus': expected a decimal integer \
         (no sign, spaces, hex or leading zeros)",
    ),
    (
        "010",
        "invalid value '010' for -smp parameter 'cpus': expected a decimal integer \
         (no sign, spaces, hex or leading zeros)",
    ),
    (
        "cores=+4",
        "invalid value '+4' for -smp parameter 'cores': expected a decimal integer \
         (no sign, spaces, hex or leading zeros)",
    ),
    (
        "threads=-1",
        "invalid value '-1' for -smp parameter 'threads': expected a decimal integer \
         (no sign, spaces, hex or leading zeros)",
    ),
    (
        "4 ",
        "invalid value '4 ' for -smp parameter 'cpus': expected a decimal integer \
         (no sign, spaces, hex or leading zeros)",
    ),
    (
        "maxcpus=",
        "invalid value '' for -smp parameter 'maxcpus': expected a decimal integer \
         (no sign, spaces, hex or leading zeros)",
    ),
    (
        "4k",
        "invalid value '4k' for -smp parameter 'cpus': expected a decimal integer \
         (no sign, spaces, hex or leading zeros)",
    ),
    (
        "sockets=2=3",
        "invalid value '2=3' for -smp parameter 'sockets': expected a decimal integer \
         (no sign, spaces, hex or leading zeros)",
    ),
    (
        "4\n",
        "invalid value '4\\n' for -smp parameter 'cpus': expected a decimal integer \
         (no sign, spaces, hex or leading zeros)",
    ),
    (
        "4294967296",
        "value '4294967296' for -smp parameter 'cpus' is out of range (at most 4294967295)",
    ),
    (
        "cores=18446744073709551617",
        "value '18446744073709551617' for -smp parameter 'cores' is out of range \
         (at most 4294967295)",
    ),
    // Mixing the grammars.
    (
        "4,max=8",
        "-smp mixes QEMU ('cpus') and Cloud Hypervisor ('max') syntax; use one of them",
    ),
    (
        "boot=2,sockets=2",
        "-smp mixes QEMU ('sockets') and Cloud Hypervisor ('boot') syntax; use one of them",
    ),
    (
        "topology=1:1:1:1,cpus=1",
        "-smp mixes QEMU ('cpus') and Cloud Hypervisor ('topology') syntax; use one of them",
    ),
    // Cloud Hypervisor's rules.
    ("max=4", "Cloud Hypervisor CPU syntax needs boot=N"),
    ("topology=1:1:1:1", "Cloud Hypervisor CPU syntax needs boot=N"),
    (
        "boot=0",
        "Invalid CPU topology: CPU topology parameters must be greater than zero (boot=0)",
    ),
    (
        "boot=1,max=0",
        "Invalid CPU topology: CPU topology parameters must be greater than zero (max=0)",
    ),
    (
        "boot=1,topology=1:0:1:1",
        "Invalid CPU topology: CPU topology parameters must be greater than zero \
         (cores_per_die=0)",
    ),
    ("boot=4,max=2", "max (2) must be greater than or equal to boot (4)"),
    (
        "boot=2,max=4,topology=1:2:1:1",
        "topology 1:2:1:1 describes 2 vCPUs, but max is 4",
    ),
    (
        "boot=2,topology=1:2:2:1",
        "topology 1:2:2:1 describes 4 vCPUs, but max is 2",
    ),
    (
        "boot=2,topology=1:2:1",
        "invalid topology '1:2:1': expected threads_per_core:cores_per_die:dies_per_package:packages",
    ),
    (
        "boot=2,topology=1:2:1:1:1",
        "invalid topology '1:2:1:1:1': expected threads_per_core:cores_per_die:dies_per_package:packages",
    ),
    (
        "boot=2,topology=1:x:1:2",
        "invalid value 'x' for -smp parameter 'cores_per_die': expected a decimal integer \
         (no sign, spaces, hex or leading zeros)",
    ),
    (
        "boot=2,topology=",
        "invalid value '' for -smp parameter 'threads_per_core': expected a decimal integer \
         (no sign, spaces, hex or leading zeros)",
    ),
    (
        "boot=02",
        "invalid value '02' for -smp parameter 'boot': expected a decimal integer \
         (no sign, spaces, hex or leading zeros)",
    ),
];

#[test]
fn valid_rows() {
    let mut failures = Vec::new();
    for (input, want) in VALID {
        match parse_smp(input) {
            Ok(t) if shape(&t) == *want => {}
            other => failures.push(format!("{input:?}: want {want:?}, got {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn invalid_rows() {
    let mut failures = Vec::new();
    for (input, want) in INVALID {
        match parse_smp(input) {
            Err(e) if e.to_string() == *want => {}
            Err(e) => failures.push(format!("{input:?}:\n  want {want}\n  got  {e}")),
            Ok(t) => failures.push(format!("{input:?}: want error {want}, got {t:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_message_is_one_line() {
    for (input, _) in INVALID {
        let msg = parse_smp(input).unwrap_err().to_string();
        assert!(!msg.contains('\n'), "{input:?}: {msg:?}");
    }
}

#[test]
fn valid_rows_print_and_parse_back() {
    for (input, _) in VALID {
        let t = parse_smp(input).unwrap();
        let printed = to_smp_string(&t);
        assert_eq!(parse_smp(&printed).unwrap(), t, "{input:?} -> {printed:?}");
    }
}

#[test]
fn canonical_form() {
    let t = CpuTopology::new(2, 3, 1, 5, 2, 7).unwrap();
    assert_eq!(
        to_smp_string(&t),
        "cpus=7,maxcpus=60,sockets=2,dies=3,modules=1,cores=5,threads=2"
    );
}

#[test]
fn errors_are_typed() {
    assert_eq!(
        parse_smp("5,sockets=2"),
        Err(SmpError::ProductMismatch {
            levels: SmpLevels {
                sockets: 2,
                dies: 1,
                modules: 1,
                cores: 2,
                threads: 1
            },
            max_cpus: 5
        })
    );
    assert_eq!(
        parse_smp("1,books=0"),
        Err(SmpError::ZeroValue { param: "books" })
    );
    assert_eq!(
        parse_smp("2,clusters=2"),
        Err(SmpError::UnsupportedLevel { level: "clusters" })
    );
    assert_eq!(
        parse_smp("4,maxcpus=2"),
        Err(SmpError::MaxCpusBelowCpus {
            levels: SmpLevels {
                sockets: 1,
                dies: 1,
                modules: 1,
                cores: 2,
                threads: 1
            },
            max_cpus: 2,
            cpus: 4
        })
    );
    assert_eq!(
        parse_smp("boot=4,max=2"),
        Err(SmpError::ChMaxBelowBoot { boot: 4, max: 2 })
    );
}

#[test]
fn spec_keeps_what_was_given() {
    let spec = SmpSpec::parse("8,cores=4").unwrap();
    assert_eq!(spec.syntax(), SmpSyntax::Qemu);
    assert_eq!(
        spec,
        SmpSpec::Qemu(SmpConfig {
            cpus: Some(8),
            cores: Some(4),
            ..SmpConfig::default()
        })
    );
    assert_eq!(spec.to_string(), "cpus=8,cores=4");

    let spec: SmpSpec = "boot=2,max=4,topology=2:1:1:2".parse().unwrap();
    assert_eq!(spec.syntax(), SmpSyntax::CloudHypervisor);
    assert_eq!(
        spec,
        SmpSpec::CloudHypervisor(ChCpusConfig {
            boot: 2,
            max: Some(4),
            topology: Some(ChTopology {
                threads_per_core: 2,
                cores_per_die: 1,
                dies_per_package: 1,
                packages: 2
            }),
        })
    );
    assert_eq!(spec.to_string(), "boot=2,max=4,topology=2:1:1:2");
    assert_eq!(SmpSpec::parse("").unwrap().to_string(), "");
}

#[test]
fn qemu_only_parser_rejects_cloud_hypervisor_keys() {
    assert_eq!(
        "boot=2".parse::<SmpConfig>(),
        Err(SmpError::UnknownKey {
            key: "boot".to_owned()
        })
    );
    assert_eq!(
        SmpConfig::parse("2,max=4"),
        Err(SmpError::UnknownKey {
            key: "max".to_owned()
        })
    );
    assert_eq!(
        SmpConfig::parse("2,sockets=2").unwrap().resolve().unwrap(),
        CpuTopology::new(2, 1, 1, 1, 1, 2).unwrap()
    );
}

#[test]
fn config_built_by_hand_resolves() {
    let config = SmpConfig {
        max_cpus: Some(16),
        sockets: Some(2),
        threads: Some(2),
        ..SmpConfig::default()
    };
    let t = config.resolve().unwrap();
    assert_eq!(shape(&t), (16, 16, 2, 1, 1, 4, 2));
    assert_eq!(config.to_string(), "maxcpus=16,sockets=2,threads=2");
}

#[test]
fn long_input_is_cut_in_messages() {
    let input = format!("4,{}=1", "k".repeat(500));
    let msg = parse_smp(&input).unwrap_err().to_string();
    assert!(msg.len() < 250, "{msg}");
    assert!(msg.contains(&format!("'{}...'", "k".repeat(40))), "{msg}");
}

#[test]
fn apic_ids_wider_than_32_bits_are_rejected() {
    // 65537 threads take 17 bits and 32769 cores 16: 33 bits, although the 2147581953
    // slots fit in u32.
    assert_eq!(
        parse_smp("threads=65537,cores=32769")
            .unwrap_err()
            .to_string(),
        "Invalid CPU topology: APIC ids for sockets (1) * dies (1) * modules (1) * \
         cores (32769) * threads (65537) need 33 bits, more than 32"
    );
    // Five levels of 65 take 7 bits each.
    assert!(matches!(
        parse_smp("sockets=65,dies=65,modules=65,cores=65,threads=65"),
        Err(SmpError::ApicIdTooWide { bits: 35, .. })
    ));
    assert!(matches!(
        parse_smp("boot=1,max=2147581953,topology=65537:32769:1:1"),
        Err(SmpError::ApicIdTooWide { bits: 33, .. })
    ));
    // 32 bits below the package: CPUID 0xB EAX[4:0] cannot say "shift by 32".
    assert_eq!(
        parse_smp("1,threads=65536,cores=65535,maxcpus=4294901760")
            .unwrap_err()
            .to_string(),
        "Invalid CPU topology: the package id for sockets (1) * dies (1) * modules (1) * \
         cores (65535) * threads (65536) would start at APIC id bit 32, but CPUID can \
         describe at most 31"
    );
    // Exactly 32 bits with the package on top is fine, and the last id maps back.
    let t = parse_smp("1,sockets=2,threads=32768,cores=65535,maxcpus=4294901760").unwrap();
    let l = t.apic_layout();
    assert_eq!(l.socket_shift(), 31);
    let last = cpu_topology::VcpuIndex(t.max_cpus() - 1);
    assert_eq!(l.index_of(l.apic_id(last).unwrap()).unwrap(), last);
}

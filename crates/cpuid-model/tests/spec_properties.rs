//! QEMU's non-feature CPU properties planned over the host dumps in `tests/data`, the way
//! `vmm-reference cpuid-plan` plans (resolve, then per-vCPU normalisation): what each one
//! changes in the table a vCPU gets, and that the guest still decodes its place.

use cpu_topology::smp::parse_smp;
use cpu_topology::VcpuIndex;
use cpuid_model::normalize::{Normalizer, Vendor};
use cpuid_model::{check, decode, dump, features, spec, CpuidKey, CpuidTable};

fn host(name: &str) -> CpuidTable {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    dump::parse_raw(&text).unwrap().remove(0).table
}

const AMD: &str = "host-amd-zen4.txt";
const INTEL: &str = "host-intel-cascadelake-synth.txt";

/// vCPU 5 of `8,sockets=2,cores=2,threads=2` (socket 1, core 0, thread 1), checked to
/// decode back to that place.
fn vcpu5(host_dump: &str, cpu: &str) -> CpuidTable {
    let r = check::resolve(&spec::parse(cpu).unwrap(), &host(host_dump)).unwrap();
    let topo = parse_smp("8,sockets=2,cores=2,threads=2").unwrap();
    let t = Normalizer::new(&r.table, &topo)
        .unwrap()
        .for_vcpu(VcpuIndex(5))
        .unwrap();
    let v = decode::topology_view(&t).unwrap_or_else(|e| panic!("{cpu}: {e}"));
    assert_eq!(
        (v.package_id, v.core_id, v.thread_id, v.apic_id),
        (1, 0, 1, 5),
        "{cpu}"
    );
    t
}

/// The 12-byte string of a vendor leaf (EBX, EDX, ECX) or of the hypervisor signature
/// leaf 0x4000_0000 (EBX, ECX, EDX).
fn vendor_of(t: &CpuidTable, leaf: u32) -> String {
    let r = t.regs(CpuidKey::leaf(leaf)).unwrap();
    let words = match leaf {
        0x4000_0000 => [r.ebx, r.ecx, r.edx],
        _ => [r.ebx, r.edx, r.ecx],
    };
    let mut b = Vec::new();
    for w in words {
        b.extend_from_slice(&w.to_le_bytes());
    }
    String::from_utf8(b).unwrap()
}

fn leaves(t: &CpuidTable, range: std::ops::Range<u32>) -> Vec<u32> {
    let mut v: Vec<u32> = t
        .iter()
        .map(|(k, _)| k.leaf)
        .filter(|l| range.contains(l))
        .collect();
    v.dedup();
    v
}

#[test]
fn vendor_sets_both_vendor_leaves_and_the_layout() {
    // (host, spec, vendor the guest reads, normalised as)
    let rows = [
        (INTEL, "Haswell", "GenuineIntel", Vendor::Intel),
        (
            INTEL,
            "Haswell,vendor=AuthenticAMD",
            "AuthenticAMD",
            Vendor::Amd,
        ),
        (
            AMD,
            "EPYC,vendor=GenuineIntel",
            "GenuineIntel",
            Vendor::Intel,
        ),
        (AMD, "EPYC,vendor=HygonGenuine", "HygonGenuine", Vendor::Amd),
        (
            AMD,
            "host,vendor=GenuineIntel",
            "GenuineIntel",
            Vendor::Intel,
        ),
        (
            INTEL,
            "host,vendor=AuthenticAMD",
            "AuthenticAMD",
            Vendor::Amd,
        ),
    ];
    for (h, cpu, want, layout) in rows {
        let t = vcpu5(h, cpu);
        assert_eq!(vendor_of(&t, 0), want, "{cpu}");
        if !cpu.starts_with("host") || h == AMD {
            assert_eq!(vendor_of(&t, 0x8000_0000), want, "{cpu}");
        }
        assert_eq!(
            decode::topology_view(&t).unwrap().vendor,
            Some(layout),
            "{cpu}"
        );
        let leaf4 = t.regs(CpuidKey::subleaf(4, 0)).unwrap();
        if cpu.starts_with("host") && h == AMD {
            // An AMD host has no leaf 4 caches to show.
            assert_eq!(leaf4.eax & 0x1f, 0, "{cpu}");
        } else if want == "AuthenticAMD" {
            // QEMU gives an AMD guest no leaf 2 / leaf 4 caches.
            assert_eq!(leaf4.eax & 0x1f, 0, "{cpu}");
            assert_eq!(t.regs(CpuidKey::leaf(2)).unwrap().eax, 0, "{cpu}");
        } else {
            // L1d shared by the 2 threads of a core, 2 addressable cores per package.
            assert_eq!(leaf4.eax >> 14, 1 | 1 << 12, "{cpu}");
        }
    }
    // EPYC as GenuineIntel keeps its 0x8000_001D caches (as QEMU), with the guest's
    // sharing: L3 shared by the 4 threads of a socket.
    let t = vcpu5(AMD, "EPYC,vendor=GenuineIntel");
    assert_eq!(
        (t.regs(CpuidKey::subleaf(0x8000_001d, 3)).unwrap().eax >> 14) & 0xfff,
        3
    );
}

#[test]
fn identity_properties_set_signature_and_brand() {
    let brand = |t: &CpuidTable| {
        let mut b = Vec::new();
        for leaf in 0x8000_0002..=0x8000_0004 {
            let r = t.regs(CpuidKey::leaf(leaf)).unwrap();
            for w in [r.eax, r.ebx, r.ecx, r.edx] {
                b.extend_from_slice(&w.to_le_bytes());
            }
        }
        String::from_utf8(b)
            .unwrap()
            .trim_end_matches('\0')
            .to_string()
    };
    let sig = check::encode_signature(25, 1, 2);
    let cpu = "Haswell,family=25,model=1,stepping=2,model-id=Test CPU 1.0";
    let t = vcpu5(INTEL, cpu);
    assert_eq!(t.regs(CpuidKey::leaf(1)).unwrap().eax, sig);
    assert_eq!(t.regs(CpuidKey::leaf(0x8000_0001)).unwrap().eax, sig);
    assert_eq!(brand(&t), "Test CPU 1.0");
    // On host, the fields replace the host's and keep its other bits.
    let before = host(AMD).regs(CpuidKey::leaf(1)).unwrap().eax;
    let t = vcpu5(AMD, "host,family=6,model=0x55,model-id=");
    let want = (before & !0x0fff_0ff0) | check::encode_signature(6, 0x55, 0) & 0x0fff_0ff0;
    assert_eq!(t.regs(CpuidKey::leaf(1)).unwrap().eax, want);
    assert_eq!(t.regs(CpuidKey::leaf(0x8000_0001)).unwrap().eax, want);
    assert_eq!(brand(&t), "");
}

#[test]
fn level_and_xlevel_replace_the_automatic_levels() {
    // (host, spec, leaf 0 EAX after normalisation, highest basic leaf present,
    //  0x8000_0000 EAX or None when there are no extended leaves)
    let rows = [
        (INTEL, "Haswell", 0xd, 0xd, Some(0x8000_0008)),
        (INTEL, "Haswell,level=0x14", 0x14, 0x14, Some(0x8000_0008)),
        // Below 0xB the topology leaf still comes (DESIGN.md: deliberate difference).
        (INTEL, "Haswell,level=7", 0xb, 0xb, Some(0x8000_0008)),
        (INTEL, "Haswell,min-level=2", 0xd, 0xd, Some(0x8000_0008)),
        (
            INTEL,
            "Haswell,min-level=0x10",
            0x10,
            0x10,
            Some(0x8000_0008),
        ),
        (AMD, "EPYC,xlevel=0x80000008", 0xd, 0xd, Some(0x8000_0008)),
        (
            AMD,
            "EPYC,min-xlevel=0x80000021",
            0xd,
            0xd,
            Some(0x8000_0021),
        ),
        (AMD, "qemu64,xlevel=0", 0xd, 0xd, None),
        (AMD, "host", 0x1c, 0x1c, Some(0x8000_0021)),
        (
            AMD,
            "host,level=0xd,xlevel=0x8000001f",
            0xd,
            0xd,
            Some(0x8000_001f),
        ),
    ];
    for (h, cpu, level, highest, xlevel) in rows {
        let t = vcpu5(h, cpu);
        assert_eq!(t.regs(CpuidKey::leaf(0)).unwrap().eax, level, "{cpu}");
        assert_eq!(leaves(&t, 0..0x2000_0000).last(), Some(&highest), "{cpu}");
        let ext = leaves(&t, 0x8000_0000..0x8001_0000);
        assert_eq!(ext.last().copied(), xlevel, "{cpu}");
        if let Some(x) = xlevel {
            assert_eq!(t.regs(CpuidKey::leaf(0x8000_0000)).unwrap().eax, x, "{cpu}");
        }
    }
    // Features in leaves above the level are not given: no leaf 7, no AVX2.
    let t = vcpu5(INTEL, "Haswell,level=6");
    assert!(!features::by_name("avx2").unwrap().is_set(&t));
    // Without extended leaves there is no long mode to report.
    let t = vcpu5(AMD, "qemu64,xlevel=0");
    assert!(!features::by_name("lm").unwrap().is_set(&t));
}

#[test]
fn kvm_off_hides_the_kvm_signature_and_keeps_the_hypervisor_bit() {
    let hypervisor = features::by_name("hypervisor").unwrap();
    for cpu in ["EPYC", "host"] {
        let t = vcpu5(AMD, cpu);
        assert_eq!(vendor_of(&t, 0x4000_0000), "KVMKVMKVM\0\0\0", "{cpu}");
        assert!(t.get(CpuidKey::leaf(0x4000_0001)).is_some(), "{cpu}");
        let cpu = format!("{cpu},kvm=off");
        let t = vcpu5(AMD, &cpu);
        assert_eq!(
            leaves(&t, 0x4000_0000..0x5000_0000),
            [] as [u32; 0],
            "{cpu}"
        );
        assert!(hypervisor.is_set(&t), "{cpu}");
    }
    // -hypervisor is the switch for the leaf 1 bit.
    assert!(!hypervisor.is_set(&vcpu5(AMD, "EPYC,kvm=off,-hypervisor")));
}

#[test]
fn migratable_off_passes_invtsc_through() {
    let invtsc = features::by_name("invtsc").unwrap();
    for h in [AMD, INTEL] {
        assert!(invtsc.is_set(&host(h)), "{h}");
        assert!(!invtsc.is_set(&vcpu5(h, "host")), "{h}");
        assert!(!invtsc.is_set(&vcpu5(h, "max,migratable=on")), "{h}");
        assert!(invtsc.is_set(&vcpu5(h, "host,migratable=off")), "{h}");
        assert!(invtsc.is_set(&vcpu5(h, "max,+invtsc")), "{h}");
    }
}

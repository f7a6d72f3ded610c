//! Arbitrary bytes as an `-smp` string. A panic is a finding; so is a parsed topology that
//! breaks the `CpuTopology` invariant, cannot lay out its APIC ids, or does not survive a
//! print/parse round trip.
#![no_main]
use cpu_topology::smp::{parse_smp, to_smp_string, SmpSpec};
use cpu_topology::VcpuIndex;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match SmpSpec::parse(s) {
        Ok(spec) => {
            // The spec prints in its own grammar and parses back to itself.
            let printed = spec.to_string();
            assert_eq!(SmpSpec::parse(&printed).as_ref(), Ok(&spec), "{printed:?}");
        }
        Err(e) => assert!(!e.to_string().contains('\n'), "{e}"),
    }
    let Ok(t) = parse_smp(s) else {
        return;
    };
    let levels = [t.sockets(), t.dies(), t.modules(), t.cores(), t.threads()];
    assert!(levels.iter().all(|&n| n >= 1), "{t:?}");
    let product = levels.iter().fold(1u64, |p, &n| p * u64::from(n));
    assert_eq!(product, u64::from(t.max_cpus()), "{t:?}");
    assert!(t.cpus() >= 1 && t.cpus() <= t.max_cpus(), "{t:?}");

    let layout = t.apic_layout();
    let last = VcpuIndex(t.max_cpus() - 1);
    for i in [VcpuIndex(0), VcpuIndex(t.cpus() - 1), last] {
        let id = layout.apic_id(i).expect("slot in range");
        assert_eq!(layout.index_of(id).expect("id of a slot"), i, "{t:?}");
    }
    assert_eq!(layout.max_apic_id(), layout.apic_id(last).unwrap(), "{t:?}");

    let canonical = to_smp_string(&t);
    assert_eq!(parse_smp(&canonical), Ok(t), "{canonical:?}");
});

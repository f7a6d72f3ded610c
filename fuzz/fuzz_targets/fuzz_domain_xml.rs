//! Feeds arbitrary text to the libvirt domain XML reader, then everything built on what it
//! accepts: the command-line conversion, the host check and the XML writer. Nothing may
//! panic, and an accepted domain must survive XML -> config -> XML -> config unchanged.
#![no_main]
use cpu_topology::HostCpuSet;
use libfuzzer_sys::fuzz_target;
use libvirt_domain::{check_host, parse_domain, to_native, to_xml, DomainConfig, NativeOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(domain) = parse_domain(text) else {
        return;
    };
    let _ = domain.ignored_warning();
    let _ = check_host(&domain, &HostCpuSet::first_n(4));
    for cpu_properties in [false, true] {
        let cmd = to_native(&domain, &NativeOptions { cpu_properties });
        assert_eq!(cmd.args.len() % 2, 0);
        let _ = cmd.to_shell("vmm-reference");
    }
    let xml = to_xml(&domain);
    let again = match parse_domain(&xml) {
        Ok(d) => d,
        Err(e) => panic!("written XML does not read back: {e}\n{xml}"),
    };
    assert!(again.ignored.is_empty(), "{:?}", again.ignored);
    let expected = DomainConfig {
        ignored: Vec::new(),
        ..domain
    };
    assert_eq!(again, expected, "{xml}");
    assert_eq!(to_xml(&again), xml);
});

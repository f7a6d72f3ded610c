//! Feeds arbitrary text to the `-numa` and `-object memory-backend-*` parsers, the libvirt
//! XML cell reader and the NUMA resolver: they must never panic, and what they accept must
//! keep their contracts (a resolved topology covers exactly the RAM size and every CPU
//! once).
#![no_main]
use guest_memory::backend::parse_memory_backend;
use guest_memory::numa::{
    cells_from_libvirt_xml, parse_numa, NumaConfig, NumaMachine, UnassignedCpus,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The same text as a libvirt domain XML: cells or a typed error, never a panic.
    if let Ok(cells) = cells_from_libvirt_xml(text) {
        assert!(!cells.is_empty());
        let _ = NumaConfig::from_cells(&cells);
    }
    // Lines: `object ...` go to the backend parser, the rest to -numa.
    let mut backends = Vec::new();
    let mut numa = Vec::new();
    for line in text.lines() {
        if let Some(object) = line.strip_prefix("object ") {
            if let Ok(b) = parse_memory_backend(object) {
                assert!(b.size > 0);
                let _ = b.check_host_nodes(&[0]);
                backends.push(b);
            }
        } else {
            let _ = parse_numa(line);
            numa.push(line);
        }
    }
    let Ok(config) = NumaConfig::parse(numa.iter().copied()) else {
        return;
    };
    let ram: u64 = 1 << 30;
    // Keep CPU counts small so a fuzzer input cannot make resolve spend long in loops.
    let max_cpus = (data.len() % 64) as u32 + 1;
    for unassigned in [UnassignedCpus::Reject, UnassignedCpus::NodeZero] {
        let machine = NumaMachine {
            ram_size: ram,
            max_cpus,
            cpus_per_socket: 2,
            backends: &backends,
            unassigned,
        };
        if let Ok(topo) = config.resolve(&machine) {
            assert_eq!(topo.nodes().iter().map(|n| n.size).sum::<u64>(), ram);
            let cpus: usize = topo.nodes().iter().map(|n| n.cpus.len()).sum();
            assert_eq!(cpus, max_cpus as usize);
            if let Ok(layout) = topo.layout() {
                assert_eq!(layout.ram_size(), ram);
            }
            let _ = topo.info_numa();
        }
    }
});

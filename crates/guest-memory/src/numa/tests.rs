use super::*;
use crate::backend::parse_memory_backend;
use proptest::prelude::*;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn node(nodeid: Option<u32>, cpus: &[(u32, u32)], memory: NodeMemory) -> NumaOption {
    NumaOption::Node(NumaNodeOption {
        nodeid,
        cpus: cpus.to_vec(),
        memory,
    })
}

#[test]
fn parse_valid_rows() {
    let rows: Vec<(&str, NumaOption)> = vec![
        ("node", node(None, &[], NodeMemory::None)),
        ("type=node", node(None, &[], NodeMemory::None)),
        ("node,nodeid=3", node(Some(3), &[], NodeMemory::None)),
        (
            "node,cpus=0-3,mem=512",
            node(None, &[(0, 3)], NodeMemory::Size(512 * MIB)),
        ),
        (
            "node,cpus=0-1,cpus=4,cpus=6-7,mem=1G",
            node(None, &[(0, 1), (4, 4), (6, 7)], NodeMemory::Size(GIB)),
        ),
        (
            "node,nodeid=1,cpus=2,memdev=ram-1",
            node(Some(1), &[(2, 2)], NodeMemory::Memdev("ram-1".into())),
        ),
        ("node,mem=0", node(None, &[], NodeMemory::Size(0))),
        (
            "dist,src=0,dst=1,val=20",
            NumaOption::Dist(NumaDistOption {
                src: 0,
                dst: 1,
                val: 20,
            }),
        ),
        (
            "dist,val=255,dst=0,src=1",
            NumaOption::Dist(NumaDistOption {
                src: 1,
                dst: 0,
                val: 255,
            }),
        ),
    ];
    for (input, want) in rows {
        assert_eq!(parse_numa(input), Ok(want), "input {input:?}");
    }
}

#[test]
fn parse_invalid_rows() {
    let rows: &[(&str, &str)] = &[
        ("", "-numa needs a type: node or dist"),
        ("nodeid=1", "-numa needs a type: node or dist"),
        ("bogus", "-numa type 'bogus' is not supported (expected node or dist)"),
        ("cpu,node-id=0", "-numa type 'cpu' is not supported (expected node or dist)"),
        ("node,foo=1", "-numa node: invalid parameter 'foo'"),
        ("node,cpus", "-numa node: parameter 'cpus' has no value"),
        ("node,mem=", "-numa node: parameter 'mem' has no value"),
        ("node,nodeid=1,nodeid=2", "-numa node: parameter 'nodeid' is given more than once"),
        ("node,mem=1G,mem=1G", "-numa node: parameter 'mem' is given more than once"),
        ("node,memdev=a,memdev=b", "-numa node: parameter 'memdev' is given more than once"),
        ("node,nodeid=x", "-numa node: parameter 'nodeid' expects an integer from 0 to 65535, got 'x'"),
        ("node,nodeid=-1", "-numa node: parameter 'nodeid' expects an integer from 0 to 65535, got '-1'"),
        ("node,nodeid=65536", "-numa node: parameter 'nodeid' expects an integer from 0 to 65535, got '65536'"),
        ("node,cpus=1-0", "-numa node: parameter 'cpus' expects a CPU index or a range A-B, got '1-0'"),
        ("node,cpus=a", "-numa node: parameter 'cpus' expects a CPU index or a range A-B, got 'a'"),
        ("node,cpus=1-", "-numa node: parameter 'cpus' expects a CPU index or a range A-B, got '1-'"),
        ("node,cpus=0:3", "-numa node: parameter 'cpus' expects a CPU index or a range A-B, got '0:3'"),
        ("node,cpus=99999999999", "-numa node: parameter 'cpus' expects a CPU index or a range A-B, got '99999999999'"),
        ("node,mem=lots", "-numa node: parameter 'mem' is not a size: memory size 'lots' is not a number with an optional B/K/M/G/T/P/E suffix"),
        ("node,mem=1G,memdev=m0", "numa configuration should use either mem= or memdev=,mixing both is not allowed"),
        ("dist,src=0,dst=1", "-numa dist: parameter 'val' is missing"),
        ("dist,dst=1,val=20", "-numa dist: parameter 'src' is missing"),
        ("dist,src=0,val=20", "-numa dist: parameter 'dst' is missing"),
        ("dist,src=0,dst=1,val=256", "-numa dist: parameter 'val' expects an integer from 0 to 255, got '256'"),
        ("dist,src=0,dst=1,val=300", "-numa dist: parameter 'val' expects an integer from 0 to 255, got '300'"),
        ("dist,src=0,dst=1,val=20,val=30", "-numa dist: parameter 'val' is given more than once"),
        ("dist,src=0,dst=1,val=20,mem=1", "-numa dist: invalid parameter 'mem'"),
    ];
    for (input, want) in rows {
        let err = parse_numa(input).expect_err(input);
        assert_eq!(err.to_string(), *want, "input {input:?}");
    }
}

fn backends() -> Vec<MemoryBackendConfig> {
    ["m0,size=512M", "m1,size=512M", "big,size=1G", "odd,size=6K"]
        .iter()
        .map(|b| parse_memory_backend(&format!("memory-backend-ram,id={b}")).unwrap())
        .collect()
}

fn resolve(
    args: &[&str],
    ram: u64,
    cpus: u32,
    unassigned: UnassignedCpus,
) -> Result<NumaTopology, NumaError> {
    let backends = backends();
    let machine = NumaMachine {
        ram_size: ram,
        max_cpus: cpus,
        cpus_per_socket: 1,
        backends: &backends,
        unassigned,
    };
    NumaConfig::parse(args.iter().copied())?.resolve(&machine)
}

/// `(node id, cpus, size)` per node.
fn summary(t: &NumaTopology) -> Vec<(u32, Vec<u32>, u64)> {
    t.nodes()
        .iter()
        .map(|n| (n.id.0, n.cpus.iter().map(|c| c.0).collect(), n.size))
        .collect()
}

#[test]
fn resolve_valid_rows() {
    // Explicit CPUs and legacy mem=.
    let t = resolve(
        &["node,cpus=0-1,mem=512M", "node,cpus=2-3,mem=512M"],
        GIB,
        4,
        UnassignedCpus::Reject,
    )
    .unwrap();
    assert_eq!(
        summary(&t),
        [(0, vec![0, 1], 512 * MIB), (1, vec![2, 3], 512 * MIB)]
    );
    assert_eq!(t.warnings(), [NumaWarning::LegacyMem]);
    assert_eq!(t.distances(), [vec![10, 20], vec![20, 10]]);
    assert_eq!(t.node_of_cpu(VcpuIndex(3)), Some(NodeId(1)));
    assert_eq!(
        t.info_numa(),
        "2 nodes\nnode 0 cpus: 0 1\nnode 0 size: 512 MB\nnode 0 plugged: 0 MB\n\
         node 1 cpus: 2 3\nnode 1 size: 512 MB\nnode 1 plugged: 0 MB\n"
    );

    // memdev=, nodeids out of order, repeated cpus=, a memory-less node.
    let t = resolve(
        &[
            "node,nodeid=1,cpus=1,cpus=3,memdev=big",
            "node,nodeid=0,cpus=0,cpus=2",
            "node,nodeid=2",
        ],
        GIB,
        4,
        UnassignedCpus::Reject,
    )
    .unwrap();
    assert_eq!(
        summary(&t),
        [(0, vec![0, 2], 0), (1, vec![1, 3], GIB), (2, vec![], 0)]
    );
    assert_eq!(t.nodes()[1].memdev.as_deref(), Some("big"));
    assert!(t.warnings().is_empty());

    // No CPUs anywhere: QEMU's default mapping, socket % nodes (one CPU per socket here).
    let t = resolve(
        &["node,mem=512M", "node,mem=512M"],
        GIB,
        4,
        UnassignedCpus::Reject,
    )
    .unwrap();
    assert_eq!(
        summary(&t),
        [(0, vec![0, 2], 512 * MIB), (1, vec![1, 3], 512 * MIB)]
    );

    // Partial mapping with NodeZero: the rest goes to node 0 and is reported.
    let t = resolve(
        &["node,cpus=0-1,mem=512M", "node,cpus=2,mem=512M"],
        GIB,
        4,
        UnassignedCpus::NodeZero,
    )
    .unwrap();
    assert_eq!(summary(&t)[0].1, [0, 1, 3]);
    assert_eq!(
        t.warnings()[1].to_string(),
        "CPU(s) not present in any NUMA nodes: 3; they were put on node 0 (partial NUMA mappings are deprecated)"
    );

    // Symmetric fill: only 0->1 and 0->2, 1->2 given once; the reverse gets the same value.
    let t = resolve(
        &[
            "node,mem=1G",
            "node,mem=0",
            "node,mem=0",
            "dist,src=0,dst=1,val=21",
            "dist,src=0,dst=2,val=31",
            "dist,src=2,dst=1,val=41",
        ],
        GIB,
        1,
        UnassignedCpus::Reject,
    )
    .unwrap();
    assert_eq!(
        t.distances(),
        [vec![10, 21, 31], vec![21, 10, 41], vec![31, 41, 10]]
    );
    assert_eq!(t.distance(NodeId(2), NodeId(0)), Some(31));
    assert_eq!(t.distance(NodeId(3), NodeId(0)), None);

    // Asymmetric and complete.
    let t = resolve(
        &[
            "node,mem=1G",
            "node,mem=0",
            "dist,src=0,dst=1,val=20",
            "dist,src=1,dst=0,val=30",
            "dist,src=0,dst=0,val=10",
        ],
        GIB,
        1,
        UnassignedCpus::Reject,
    )
    .unwrap();
    assert_eq!(t.distances(), [vec![10, 20], vec![30, 10]]);
}

#[test]
fn resolve_invalid_rows() {
    use UnassignedCpus::{NodeZero, Reject};
    let rows: &[(&[&str], u64, u32, UnassignedCpus, &str)] = &[
        (&["dist,src=0,dst=1,val=20"], GIB, 1, Reject, "NUMA configuration has no nodes"),
        (&["node,nodeid=200,mem=1G"], GIB, 1, Reject, "Max number of NUMA nodes reached: 200"),
        (&["node,nodeid=128,mem=1G"], GIB, 1, Reject, "Max number of NUMA nodes reached: 128"),
        (&["node,nodeid=0,mem=1G", "node,nodeid=0,mem=0"], GIB, 1, Reject, "Duplicate NUMA nodeid: 0"),
        (&["node,nodeid=1,mem=512M", "node,mem=512M"], GIB, 1, Reject, "Duplicate NUMA nodeid: 1"),
        (&["node,mem=512M", "node,nodeid=2,mem=512M"], GIB, 1, Reject, "numa: Node ID missing: 1"),
        (&["node,nodeid=3,mem=1G"], GIB, 1, Reject, "numa: Node ID missing: 2"),
        (&["node,cpus=0-1,mem=512M", "node,cpus=2,mem=256M"], GIB, 3, Reject, "total memory for NUMA nodes (0x30000000) should equal RAM size (0x40000000)"),
        (&["node,memdev=m0"], GIB, 1, Reject, "total memory for NUMA nodes (0x20000000) should equal RAM size (0x40000000)"),
        (&["node,cpus=0-4,mem=1G"], GIB, 4, Reject, "CPU index (4) should be smaller than maxcpus (4)"),
        (&["node,cpus=7,mem=1G"], GIB, 4, Reject, "CPU index (7) should be smaller than maxcpus (4)"),
        (&["node,cpus=0-1,cpus=3,mem=512M", "node,cpus=1,mem=512M"], GIB, 4, Reject, "CPU 1 is already assigned to node-id: 0"),
        (&["node,cpus=0-1,mem=512M", "node,cpus=2,mem=512M"], GIB, 6, Reject, "CPU(s) not present in any NUMA nodes: 3-5 (every CPU up to maxcpus must be in a node)"),
        (&["node,cpus=0,mem=512M", "node,cpus=2,mem=512M"], GIB, 5, Reject, "CPU(s) not present in any NUMA nodes: 1, 3-4 (every CPU up to maxcpus must be in a node)"),
        (&["node,mem=512M", "node,memdev=m1"], GIB, 1, Reject, "numa configuration should use either mem= or memdev=,mixing both is not allowed"),
        (&["node,memdev=m0", "node,mem=512M"], GIB, 1, Reject, "numa configuration should use either mem= or memdev=,mixing both is not allowed"),
        (&["node,memdev=nope"], GIB, 1, Reject, "memdev=nope names no memory backend (define it with --object memory-backend-ram,id=nope,size=...)"),
        (&["node,memdev=m0", "node,memdev=m0"], GIB, 1, Reject, "memory backend 'm0' is used by node 0 and node 1"),
        (&["node,memdev=odd"], 6 << 10, 1, Reject, "memory size 0x1800 of NUMA node 0 is not a multiple of 4 KiB"),
        (&["node,mem=1G", "dist,src=0,dst=128,val=20"], GIB, 1, Reject, "Parameter 'dst' expects an integer between 0 and 127"),
        (&["node,mem=1G", "dist,src=200,dst=0,val=20"], GIB, 1, Reject, "Parameter 'src' expects an integer between 0 and 127"),
        (&["node,mem=1G", "dist,src=0,dst=3,val=20"], GIB, 1, Reject, "Source/Destination NUMA node is missing. Please use '-numa node' option to declare it first."),
        (&["node,mem=1G", "dist,src=0,dst=0,val=9"], GIB, 1, Reject, "NUMA distance (9) is invalid, it shouldn't be less than 10."),
        (&["node,mem=1G", "node,mem=0", "dist,src=0,dst=1,val=0"], GIB, 1, Reject, "NUMA distance (0) is invalid, it shouldn't be less than 10."),
        (&["node,mem=1G", "dist,src=0,dst=0,val=20"], GIB, 1, Reject, "Local distance of node 0 should be 10."),
        (&["node,mem=512M", "node,mem=512M", "node,mem=0", "dist,src=0,dst=1,val=30"], GIB, 1, NodeZero, "The distance between node 0 and 2 is missing, at least one distance value between each nodes should be provided."),
        (&["node,mem=512M", "node,mem=512M", "node,mem=0", "dist,src=0,dst=1,val=20", "dist,src=1,dst=0,val=30", "dist,src=0,dst=2,val=20", "dist,src=1,dst=2,val=20"], GIB, 1, Reject, "At least one asymmetrical pair of distances is given, please provide distances for both directions of all node pairs."),
    ];
    for (args, ram, cpus, unassigned, want) in rows {
        let err = resolve(args, *ram, *cpus, *unassigned).expect_err(&format!("{args:?}"));
        assert_eq!(err.to_string(), *want, "args {args:?}");
    }
}

#[test]
fn layout_follows_the_nodes() {
    let t = resolve(
        &[
            "node,cpus=0,mem=2G",
            "node,cpus=1,mem=2G",
            "node,cpus=2,mem=0",
        ],
        4 * GIB,
        3,
        UnassignedCpus::Reject,
    )
    .unwrap();
    let layout = t.layout().unwrap();
    let got: Vec<_> = layout
        .regions()
        .iter()
        .map(|r| (r.gpa.0, r.size, r.node.map(|n| n.0)))
        .collect();
    assert_eq!(
        got,
        [
            (0, 2 * GIB, Some(0)),
            (2 * GIB, GIB, Some(1)),
            (4 * GIB, GIB, Some(1))
        ]
    );
    let srat = t.srat_input(&layout);
    assert_eq!(
        srat,
        [
            NodeAffinity {
                node: NodeId(0),
                memory: vec![(0, 2 * GIB)],
                cpus: vec![VcpuIndex(0)]
            },
            NodeAffinity {
                node: NodeId(1),
                memory: vec![(2 * GIB, GIB), (4 * GIB, GIB)],
                cpus: vec![VcpuIndex(1)]
            },
            NodeAffinity {
                node: NodeId(2),
                memory: vec![],
                cpus: vec![VcpuIndex(2)]
            },
        ]
    );
    // Only memdev= nodes have backends.
    assert!(t.node_backends(&backends()).is_empty());
    let b = backends();
    let t = resolve(
        &["node,cpus=0,memdev=m0", "node,cpus=1,memdev=m1"],
        GIB,
        2,
        UnassignedCpus::Reject,
    )
    .unwrap();
    let ids: Vec<_> = t
        .node_backends(&b)
        .iter()
        .map(|(n, b)| (n.0, b.id.as_str()))
        .collect();
    assert_eq!(ids, [(0, "m0"), (1, "m1")]);
}

#[test]
fn libvirt_cells_from_json_map_to_the_same_config() {
    let json = r#"[
        {"id": 0, "cpus": "0-1", "memory": 524288},
        {"id": 1, "cpus": "2,3", "memory": 512, "unit": "MiB"}
    ]"#;
    let cells: Vec<NumaCell> = serde_json::from_str(json).unwrap();
    let from_cells = NumaConfig::from_cells(&cells).unwrap();
    let from_cli = NumaConfig::parse([
        "node,nodeid=0,cpus=0-1,mem=512M",
        "node,nodeid=1,cpus=2-3,mem=512M",
    ])
    .unwrap();
    assert_eq!(from_cells, from_cli);
    let backends = backends();
    let machine = NumaMachine {
        ram_size: GIB,
        max_cpus: 4,
        cpus_per_socket: 1,
        backends: &backends,
        unassigned: UnassignedCpus::Reject,
    };
    assert_eq!(
        summary(&from_cells.resolve(&machine).unwrap()),
        [(0, vec![0, 1], 512 * MIB), (1, vec![2, 3], 512 * MIB)]
    );

    let bad = [
        (
            r#"{"id": 0, "cpus": "0-1", "memory": 1, "unit": "parsec"}"#,
            "NUMA cell 0: unknown unit 'parsec'",
        ),
        (
            r#"{"id": 2, "cpus": "3-1", "memory": 1}"#,
            "NUMA cell 2: cpus '3-1': reversed range `3-1`: the start is above the end",
        ),
        (
            r#"{"id": 0, "cpus": "0", "memory": 18446744073709551615, "unit": "GiB"}"#,
            "NUMA cell 0: memory does not fit in 64 bits",
        ),
    ];
    for (json, want) in bad {
        let cell: NumaCell = serde_json::from_str(json).unwrap();
        assert_eq!(cell.to_option().unwrap_err().to_string(), want);
        assert_eq!(
            NumaConfig::from_cells(&[cell]).unwrap_err().to_string(),
            want
        );
    }
    assert!(
        serde_json::from_str::<NumaCell>(r#"{"id": 0, "cpus": "0", "memory": 1, "extra": 1}"#)
            .is_err()
    );
}

proptest! {
    /// Any valid configuration: the layout covers exactly -m bytes, every region's node
    /// exists and carries that node's size, every CPU is in exactly one node.
    #[test]
    fn valid_configs_cover_ram_exactly(
        sizes in proptest::collection::vec(0u64..=2048, 1..6),
        cpus_per_node in 1u32..4,
    ) {
        let sizes: Vec<u64> = sizes.iter().map(|s| s * 2 * MIB).collect();
        let ram: u64 = sizes.iter().sum();
        prop_assume!(ram > 0);
        let args: Vec<String> = sizes.iter().enumerate().map(|(i, s)| {
            let lo = i as u32 * cpus_per_node;
            format!("node,cpus={}-{},mem={}K", lo, lo + cpus_per_node - 1, s / 1024)
        }).collect();
        let max_cpus = sizes.len() as u32 * cpus_per_node;
        let backends = [];
        let machine = NumaMachine { ram_size: ram, max_cpus, cpus_per_socket: 1, backends: &backends, unassigned: UnassignedCpus::Reject };
        let topo = NumaConfig::parse(args.iter().map(String::as_str)).unwrap().resolve(&machine).unwrap();
        let layout = topo.layout().unwrap();
        prop_assert_eq!(layout.ram_size(), ram);
        for region in layout.regions() {
            let id = region.node.unwrap();
            prop_assert!(topo.nodes().iter().any(|n| n.id == id));
        }
        for node in topo.nodes() {
            prop_assert_eq!(layout.node_regions(node.id).map(|r| r.size).sum::<u64>(), node.size);
        }
        for cpu in 0..max_cpus {
            let owners = topo.nodes().iter().filter(|n| n.cpus.contains(&VcpuIndex(cpu))).count();
            prop_assert_eq!(owners, 1);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC*") {
        let _ = parse_numa(&s);
        let _ = parse_numa(&format!("node,{s}"));
        let _ = parse_numa(&format!("dist,{s}"));
    }
}

/// libvirt's `^` exclusions and `<sibling>` distances reach the same configuration as the
/// equivalent `-numa` options.
#[test]
fn cells_take_libvirt_cpusets_and_distances() {
    let json = r#"[
        {"id": 0, "cpus": "0-4,^2", "memory": 1, "unit": "GiB",
         "distances": [{"id": 0, "value": 10}, {"id": 1, "value": 21}]},
        {"id": 1, "cpus": "2,5-7", "memory": 1048576,
         "distances": [{"id": 0, "value": 21}, {"id": 1, "value": 10}]}
    ]"#;
    let cells: Vec<NumaCell> = serde_json::from_str(json).unwrap();
    let from_cells = NumaConfig::from_cells(&cells).unwrap();
    let from_cli = NumaConfig::parse([
        "node,nodeid=0,cpus=0-1,cpus=3-4,mem=1G",
        "node,nodeid=1,cpus=2,cpus=5-7,mem=1G",
        "dist,src=0,dst=0,val=10",
        "dist,src=0,dst=1,val=21",
        "dist,src=1,dst=0,val=21",
        "dist,src=1,dst=1,val=10",
    ])
    .unwrap();
    assert_eq!(from_cells, from_cli);

    let far: NumaCell = serde_json::from_str(
        r#"{"id": 0, "cpus": "0", "memory": 1, "distances": [{"id": 1, "value": 300}]}"#,
    )
    .unwrap();
    assert_eq!(
        NumaConfig::from_cells(&[far]).unwrap_err().to_string(),
        "NUMA cell 0: distance 300 to cell 1 is above 255"
    );
}

#[cfg(feature = "libvirt-xml")]
mod libvirt_xml {
    use super::*;
    use crate::numa::cells_from_libvirt_xml;

    /// A `virsh dumpxml`-shaped domain: the cells inside `<cpu><numa>` are found and
    /// everything around them is ignored.
    #[test]
    fn domain_xml_gives_the_cells() {
        let xml = r#"<domain type='kvm'>
  <name>guest</name>
  <memory unit='KiB'>2097152</memory>
  <vcpu placement='static'>8</vcpu>
  <cpu mode='host-passthrough'>
    <topology sockets='2' dies='1' cores='2' threads='2'/>
    <numa>
      <cell id='0' cpus='0-3' memory='1' unit='GiB' memAccess='shared'>
        <distances>
          <sibling id='0' value='10'/>
          <sibling id='1' value='21'/>
        </distances>
      </cell>
      <cell id='1' cpus='4-7' memory='1048576'>
        <distances>
          <sibling id='0' value='21'/>
          <sibling id='1' value='10'/>
        </distances>
      </cell>
    </numa>
  </cpu>
  <devices><disk type='file'/></devices>
</domain>"#;
        let cells = cells_from_libvirt_xml(xml).unwrap();
        assert_eq!(cells.len(), 2);
        assert_eq!(cells[0].unit.as_deref(), Some("GiB"));
        assert_eq!(cells[1].distances[0], NumaSibling { id: 0, value: 21 });
        let config = NumaConfig::from_cells(&cells).unwrap();
        let from_cli = NumaConfig::parse([
            "node,nodeid=0,cpus=0-3,mem=1G",
            "node,nodeid=1,cpus=4-7,mem=1G",
            "dist,src=0,dst=0,val=10",
            "dist,src=0,dst=1,val=21",
            "dist,src=1,dst=0,val=21",
            "dist,src=1,dst=1,val=10",
        ])
        .unwrap();
        assert_eq!(config, from_cli);
    }

    #[test]
    fn malformed_documents_are_one_line_errors() {
        let rows = [
            ("<numa><cell id='0' cpus='0'>", "libvirt XML: the root node was opened but never closed"),
            ("<domain/>", "libvirt XML: no <numa><cell> element found"),
            ("<numa><cell id='0' cpus='0'/></numa>", "libvirt XML: <cell id='0'>: no memory attribute"),
            ("<numa><cell id='x' memory='1'/></numa>", "libvirt XML: <cell> number 1: attribute id='x' is not a number"),
            (
                "<numa><cell id='0' memory='1'><distances><sibling id='1'/></distances></cell></numa>",
                "libvirt XML: <cell id='0'>: <sibling> needs id and value",
            ),
        ];
        for (xml, want) in rows {
            let err = cells_from_libvirt_xml(xml).unwrap_err().to_string();
            assert!(err.starts_with(want), "{xml}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    /// Cells as libvirt users write them: no `id` (numbered in order) and sizes that are
    /// not a multiple of 4 KiB, or given in decimal units (rounded up to 1 MiB, as libvirt).
    #[test]
    fn cells_without_ids_and_odd_sizes_are_taken_as_libvirt_takes_them() {
        let xml = "<domain><cpu><numa>\
            <cell cpus='0-1' memory='1000000'/>\
            <cell cpus='2-3' memory='500' unit='MB'/>\
            <cell cpus='4' memory='1023' unit='b'/>\
            <cell id='3' cpus='5' memory='1' unit='GiB'/>\
            </numa></cpu></domain>";
        let cells = cells_from_libvirt_xml(xml).unwrap();
        let ids: Vec<u32> = cells.iter().map(|c| c.id).collect();
        assert_eq!(ids, [0, 1, 2, 3]);
        let config = NumaConfig::from_cells(&cells).unwrap();
        let sizes: Vec<u64> = config
            .options
            .iter()
            .map(|o| match o {
                NumaOption::Node(NumaNodeOption {
                    memory: NodeMemory::Size(b),
                    ..
                }) => *b / MIB,
                other => panic!("{other:?}"),
            })
            .collect();
        // 1000000 KiB = 976.6 MiB; 500 MB = 476.8 MiB; 1023 bytes; 1 GiB.
        assert_eq!(sizes, [977, 477, 1, 1024]);
        let total = (977 + 477 + 1 + 1024) * MIB;
        let topology = config
            .resolve(&NumaMachine {
                ram_size: total,
                max_cpus: 6,
                cpus_per_socket: 1,
                backends: &[],
                unassigned: UnassignedCpus::Reject,
            })
            .unwrap();
        assert_eq!(topology.nodes()[2].cpus, [VcpuIndex(4)]);
        for (unit, bytes) in [
            ("k", 1024),
            ("KB", 1000),
            ("mib", MIB),
            ("TB", 1_000_000_000_000),
        ] {
            let cell = NumaCell {
                id: 0,
                cpus: String::new(),
                memory: 1,
                unit: Some(unit.into()),
                distances: Vec::new(),
            };
            let NumaOption::Node(node) = cell.to_option().unwrap() else {
                unreachable!()
            };
            assert_eq!(
                node.memory,
                NodeMemory::Size(bytes.next_multiple_of(MIB)),
                "{unit}"
            );
        }
        let bad = NumaCell {
            id: 0,
            cpus: String::new(),
            memory: 1,
            unit: Some("KiBs".into()),
            distances: Vec::new(),
        };
        assert_eq!(
            bad.to_option().unwrap_err().to_string(),
            "NUMA cell 0: unknown unit 'KiBs'"
        );
    }
}

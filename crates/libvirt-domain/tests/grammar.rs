//! Table tests: every element and attribute the crate reads, valid rows with what they
//! become, invalid rows with the exact message.

use libvirt_domain::{parse_domain, to_native, DomainConfig};

/// A domain with `body` after a name and 64 MiB of memory.
fn dom(body: &str) -> String {
    format!("<domain type='kvm'><name>t</name><memory unit='MiB'>64</memory>{body}</domain>")
}

fn parse(body: &str) -> DomainConfig {
    parse_domain(&dom(body)).unwrap_or_else(|e| panic!("{body}: {e}"))
}

/// The `--smp`/`--cpu`/... arguments after `--name t -m 64M`.
fn native(body: &str) -> String {
    let args = to_native(&parse(body), &Default::default()).args;
    args[4..].join(" ")
}

#[test]
fn valid_rows_and_what_they_become() {
    let rows: &[(&str, &str)] = &[
        // <vcpu>
        ("", "--smp 1"),
        ("<vcpu>4</vcpu>", "--smp 4"),
        ("<vcpu current='1'>4</vcpu>", "--smp 1,maxcpus=4"),
        ("<vcpu placement='static' cpuset='0-3,^1'>2</vcpu>", "--smp 2 --cpuset 0,2-3"),
        ("<vcpu cpuset=' 1 , 3 ,'>2</vcpu>", "--smp 2 --cpuset 1,3"),
        ("<vcpu placement='auto'>2</vcpu>", "--smp 2"),
        // <cputune>
        (
            "<vcpu>2</vcpu><cputune><vcpupin vcpu='1' cpuset='3'/><vcpupin vcpu='0' cpuset='2-3,^3'/></cputune>",
            "--smp 2 --vcpupin 0:2 --vcpupin 1:3",
        ),
        ("<cputune><emulatorpin cpuset='5'/></cputune>", "--smp 1 --emulatorpin 5"),
        // <cpu> modes and features
        ("<cpu mode='host-passthrough'/>", "--smp 1 --cpu host"),
        ("<cpu mode='maximum'/>", "--smp 1 --cpu max"),
        ("<cpu mode='host-model'/>", "--smp 1 --cpu host"),
        ("<cpu><model>Haswell</model></cpu>", "--smp 1 --cpu Haswell"),
        ("<cpu check='full'><model>Haswell</model></cpu>", "--smp 1 --cpu Haswell,enforce"),
        ("<cpu><model fallback='forbid'>Nehalem</model></cpu>", "--smp 1 --cpu Nehalem,enforce"),
        ("<cpu><model fallback='allow'>Nehalem</model></cpu>", "--smp 1 --cpu Nehalem"),
        ("<cpu><feature name='avx2'/></cpu>", "--smp 1 --cpu qemu64,+avx2"),
        (
            "<cpu><model>Westmere</model><feature policy='require' name='pclmuldq'/></cpu>",
            "--smp 1 --cpu Westmere,+pclmulqdq",
        ),
        ("<cpu><topology sockets='1' cores='1' threads='1'/></cpu>", "--smp 1,sockets=1,cores=1,threads=1"),
        (
            "<vcpu>16</vcpu><cpu><topology sockets='2' dies='2' cores='2' threads='2'/></cpu>",
            "--smp 16,sockets=2,dies=2,cores=2,threads=2",
        ),
        (
            "<vcpu>8</vcpu><cpu><topology sockets='2' clusters='2' cores='2' threads='1'/></cpu>",
            "--smp 8,sockets=2,clusters=2,cores=2,threads=1",
        ),
        // <cpu><numa>
        (
            "<vcpu>2</vcpu><cpu><numa><cell cpus='0' memory='32' unit='MiB'/><cell memory='32' unit='MiB'/></numa></cpu>",
            "--smp 2 --object memory-backend-ram,id=ram-node0,size=32M --numa node,nodeid=0,cpus=0,memdev=ram-node0 \
             --object memory-backend-ram,id=ram-node1,size=32M --numa node,nodeid=1,memdev=ram-node1",
        ),
        (
            "<cpu><numa><cell id='0' cpus='0' memory='1' unit='b'/></numa></cpu>",
            "--smp 1 --object memory-backend-ram,id=ram-node0,size=1M --numa node,nodeid=0,cpus=0,memdev=ram-node0",
        ),
        // <numatune> without cells
        (
            "<numatune><memory mode='interleave' nodeset='0-1'/></numatune>",
            "--smp 1 --object memory-backend-ram,id=ram-node0,size=64M,host-nodes=0-1,policy=interleave \
             --numa node,nodeid=0,memdev=ram-node0",
        ),
        // <os> and the serial console
        ("<os><type>hvm</type><kernel>/k</kernel></os>", "--smp 1 --kernel /k"),
        (
            "<os><kernel>/k</kernel></os><devices><serial type='file'><source path='/tmp/s.log'/></serial></devices>",
            "--smp 1 --kernel /k --serial file:/tmp/s.log",
        ),
        (
            "<os><kernel>/k</kernel></os><devices><serial type='unix'><source mode='bind' path='/tmp/s'/></serial></devices>",
            "--smp 1 --kernel /k --serial unix:/tmp/s,server,wait=off",
        ),
        (
            "<os><kernel>/k</kernel></os><devices><serial type='tcp'><source mode='bind' host='127.0.0.1' service='4555'/></serial></devices>",
            "--smp 1 --kernel /k --serial tcp:127.0.0.1:4555,server,wait=off",
        ),
        (
            "<os><kernel>/k</kernel></os><devices><console type='null'/></devices>",
            "--smp 1 --kernel /k --serial null",
        ),
        ("<devices><serial type='stdio'/></devices>", "--smp 1"),
    ];
    for (body, want) in rows {
        assert_eq!(native(body), *want, "{body}");
    }
}

#[test]
fn memory_in_every_unit() {
    let rows: &[(&str, u64)] = &[
        ("<memory>65536</memory>", 64 << 10),
        ("<memory unit='k'>65536</memory>", 64 << 10),
        ("<memory unit='KiB'>65536</memory>", 64 << 10),
        ("<memory unit='KB'>67000</memory>", 64 << 10),
        ("<memory unit='M'>64</memory>", 64 << 10),
        ("<memory unit='MiB'>64</memory>", 64 << 10),
        ("<memory unit='MB'>64</memory>", 62500 / 1024 * 1024 + 1024),
        ("<memory unit='b'>67108864</memory>", 64 << 10),
        ("<memory unit='bytes'>67108865</memory>", 65 << 10),
        ("<memory unit='G'>1</memory>", 1 << 20),
        ("<memory unit='GiB'>1</memory>", 1 << 20),
        ("<memory unit='GB'>1</memory>", 954 << 10),
        ("<memory unit='T'>1</memory>", 1 << 30),
        ("<memory unit='TiB'>1</memory>", 1 << 30),
        ("<memory unit='TB'>1</memory>", 953_675 << 10),
        ("<memory>1</memory>", 1024),
    ];
    for (element, kib) in rows {
        let xml = format!("<domain type='kvm'><name>t</name>{element}</domain>");
        let d = parse_domain(&xml).unwrap_or_else(|e| panic!("{element}: {e}"));
        assert_eq!(d.memory_kib, *kib, "{element}");
        assert_eq!(d.current_memory_kib, *kib, "{element}");
    }
}

#[test]
fn invalid_rows_and_their_messages() {
    let rows: &[(&str, &str)] = &[
        ("<vcpu>0</vcpu>", "<vcpu>: the vCPU count must be at least 1"),
        ("<vcpu>two</vcpu>", "<vcpu> text='two': expected a vCPU count from 1"),
        ("<vcpu current='5'>4</vcpu>", "<vcpu>: current='5' must be from 1 to the vCPU count 4"),
        ("<vcpu placement='best'>4</vcpu>", "<vcpu> placement='best': expected static or auto"),
        ("<vcpu cpuset='3-1'>1</vcpu>", "<vcpu> cpuset='3-1': reversed range `3-1`: the start is above the end"),
        ("<vcpu cpuset='^1-2'>1</vcpu>", "<vcpu> cpuset='^1-2': `^` removes a single CPU, not a range: `^1-2`"),
        ("<vcpu cpuset='1,^1'>1</vcpu>", "<vcpu> cpuset='1,^1': CPU set `1,^1` selects no CPU"),
        ("<cputune><vcpupin cpuset='1'/></cputune>", "<cputune/vcpupin>: attribute 'vcpu' is missing"),
        ("<cputune><vcpupin vcpu='0'/></cputune>", "<cputune/vcpupin>: attribute 'cpuset' is missing"),
        (
            "<cputune><vcpupin vcpu='1' cpuset='1'/></cputune>",
            "<cputune/vcpupin> vcpu: vCPU 1 does not exist (the domain has 1 vCPUs, 0-0)",
        ),
        (
            "<cputune><vcpupin vcpu='0' cpuset='1'/><vcpupin vcpu='0' cpuset='2'/></cputune>",
            "<cputune/vcpupin>: vcpu='0' is given more than once",
        ),
        ("<cputune><emulatorpin/></cputune>", "<cputune/emulatorpin>: attribute 'cpuset' is missing"),
        ("<cputune><vcpusched scheduler='fifo'/></cputune>", "<cputune/vcpusched>: attribute 'priority' is missing"),
        (
            "<cputune><vcpusched vcpus='3' scheduler='rr' priority='1'/></cputune>",
            "<cputune/vcpusched> vcpus: vCPU 3 does not exist (the domain has 1 vCPUs, 0-0)",
        ),
        ("<cputune><shares>-1</shares></cputune>", "<cputune/shares> text='-1': expected a non-negative integer"),
        ("<cpu mode='host'/>", "<cpu> mode='host': expected custom, host-model, host-passthrough or maximum"),
        ("<cpu match='loose'/>", "<cpu> match='loose': expected minimum, exact or strict"),
        ("<cpu check='some'/>", "<cpu> check='some': expected none, partial or full"),
        ("<cpu><model fallback='maybe'>Haswell</model></cpu>", "<cpu/model> fallback='maybe': expected allow or forbid"),
        ("<cpu><model/></cpu>", "<cpu/model>: the model name is missing"),
        ("<cpu><feature policy='want' name='avx'/></cpu>", "<cpu/feature> policy='want': expected force, require, optional, disable or forbid"),
        ("<cpu><feature policy='require'/></cpu>", "<cpu/feature>: attribute 'name' is missing"),
        (
            "<cpu><feature name='avx'/><feature policy='disable' name='avx'/></cpu>",
            "<cpu/feature>: name='avx' is given more than once",
        ),
        ("<cpu><topology sockets='0'/></cpu>", "<cpu/topology> sockets='0': expected a count from 1"),
        (
            "<vcpu>4</vcpu><cpu><topology sockets='4294967295' cores='2'/></cpu>",
            "<cpu/topology>: sockets*dies*clusters*cores*threads = overflow does not match the <vcpu> count 4",
        ),
        ("<cpu><numa><cell id='0' cpus='0'/></numa></cpu>", "<cpu/numa/cell>: attribute 'memory' is missing"),
        (
            "<cpu><numa><cell id='1' cpus='0' memory='1024'/></numa></cpu>",
            "<cpu/numa/cell>: id='1': cell ids must be 0-0 (one per cell, no gaps)",
        ),
        (
            "<vcpu>2</vcpu><cpu><numa><cell id='0' cpus='0' memory='1024'/><cell id='0' cpus='1' memory='1024'/></numa></cpu>",
            "<cpu/numa/cell>: id='0' is given more than once",
        ),
        (
            "<vcpu>2</vcpu><cpu><numa><cell cpus='0-1' memory='1024'/><cell cpus='1' memory='1024'/></numa></cpu>",
            "<cpu/numa/cell>: cells 0 and 1 share vCPU(s) 1",
        ),
        (
            "<cpu><numa><cell cpus='0-1' memory='1024'/></numa></cpu>",
            "<cpu/numa/cell> cpus: vCPU 1 does not exist (the domain has 1 vCPUs, 0-0)",
        ),
        (
            "<cpu><numa><cell cpus='0' memory='1' unit='parsec'/></numa></cpu>",
            "<cpu/numa/cell> unit='parsec': unknown unit (expected b, bytes, KB, k, KiB, MB, M, MiB, GB, G, GiB, TB, T, TiB, PB, P, PiB, EB, E, EiB)",
        ),
        (
            "<cpu><numa><cell cpus='0' memory='1'><distances><sibling id='0' value='20'/></distances></cell></numa></cpu>",
            "<cpu/numa/cell/distances/sibling>: value='20' from cell 0 to cell 0: 10 is a cell's distance to itself, 11-255 to another",
        ),
        (
            "<cpu><numa><cell cpus='0' memory='1'><distances><sibling id='4' value='20'/></distances></cell></numa></cpu>",
            "<cpu/numa/cell/distances/sibling>: id='4' names no cell",
        ),
        (
            "<cpu><numa><cell cpus='0' memory='1'><distances><sibling id='0' value='256'/></distances></cell></numa></cpu>",
            "<cpu/numa/cell/distances/sibling> value='256': expected a distance from 10 to 255",
        ),
        ("<numatune><memory mode='strict'/></numatune>", "<numatune/memory>: attribute 'nodeset' is missing"),
        ("<numatune><memory mode='bind' nodeset='0'/></numatune>", "<numatune/memory> mode='bind': expected strict, preferred, interleave or restrictive"),
        (
            "<numatune><memnode cellid='0' nodeset='0'/></numatune>",
            "<numatune/memnode>: cellid='0' names no <cpu><numa> cell (there are 0)",
        ),
        ("<os><type>xen</type></os>", "<os/type> text='xen': expected hvm"),
        ("<os><type arch='aarch64'>hvm</type></os>", "<os/type> arch='aarch64': expected x86_64"),
        ("<features><kvm><hidden state='yes'/></kvm></features>", "<features/kvm/hidden> state='yes': expected on or off"),
        ("<devices><serial type='spice'/></devices>", "<devices/serial> type='spice': expected pty, stdio, null, file, unix or tcp"),
        ("<devices><serial type='file'/></devices>", "<devices/serial/source>: attribute 'path' is missing"),
        (
            "<devices><serial type='tcp'><source host='h' service='http'/></serial></devices>",
            "<devices/serial/source> service='http': expected a TCP port from 1 to 65535",
        ),
        ("<uuid>1234</uuid>", "<uuid> text='1234': expected 32 hexadecimal digits (8-4-4-4-12)"),
        ("<currentMemory unit='x'>1</currentMemory>", "<currentMemory> unit='x': unknown unit (expected b, bytes, KB, k, KiB, MB, M, MiB, GB, G, GiB, TB, T, TiB, PB, P, PiB, EB, E, EiB)"),
    ];
    for (body, want) in rows {
        let e = parse_domain(&dom(body)).expect_err(body).to_string();
        assert_eq!(e, *want, "{body}");
    }
}

#[test]
fn document_level_errors() {
    let rows: &[(&str, &str)] = &[
        ("<vm/>", "the root element is <vm>, expected <domain>"),
        (
            "<domain><name>a</name></domain>",
            "<domain>: attribute 'type' is missing",
        ),
        (
            "<domain type='xen'><name>a</name></domain>",
            "<domain> type='xen': expected kvm or qemu",
        ),
        (
            "<domain type='kvm'><memory>1024</memory></domain>",
            "<domain>: element <name> is missing",
        ),
        (
            "<domain type='kvm'><name>a</name></domain>",
            "<memory>: a size (give <memory> or <cpu><numa> cells) is missing",
        ),
        (
            "<domain type='kvm'><name>a</name><memory unit='EiB'>16384</memory></domain>",
            "<memory>: size 16384 EiB is too large",
        ),
    ];
    for (xml, want) in rows {
        assert_eq!(
            parse_domain(xml).expect_err(xml).to_string(),
            *want,
            "{xml}"
        );
    }
    let e = parse_domain("<domain type='kvm'>").unwrap_err().to_string();
    assert!(e.starts_with("domain XML does not parse: "), "{e}");
}

#[test]
fn ignored_attributes_and_elements_are_listed_once_each() {
    let d = parse(
        "<vcpu>2</vcpu><cpu mode='host-passthrough'><cache mode='passthrough'/>\
         <numa><cell cpus='0-1' memory='64' unit='MiB' discard='yes'/></numa></cpu>\
         <cputune><iothreadpin iothread='1' cpuset='1'/><global_period>5</global_period></cputune>\
         <devices><disk/><disk/><disk/><serial type='pty'><log file='/x'/></serial></devices>",
    );
    let paths: Vec<(String, usize)> = d
        .ignored
        .iter()
        .map(|i| (i.path.clone(), i.count))
        .collect();
    let want: Vec<(String, usize)> = [
        ("cputune/iothreadpin", 1),
        ("cputune/global_period", 1),
        ("cpu/cache", 1),
        ("cpu/numa/cell@discard", 1),
        ("devices/disk", 3),
        ("devices/serial/log", 1),
    ]
    .iter()
    .map(|(p, n)| (p.to_string(), *n))
    .collect();
    let mut sorted = paths.clone();
    sorted.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(sorted, want_sorted);
    assert!(parse("").ignored_warning().is_none());
}

#[test]
fn command_line_options_override_the_file() {
    let d = parse(
        "<vcpu>2</vcpu><cputune><vcpupin vcpu='0' cpuset='1'/></cputune>\
         <cpu mode='host-passthrough'><numa><cell cpus='0-1' memory='64' unit='MiB'/></numa></cpu>",
    );
    let cmd = to_native(&d, &Default::default());
    let rows: &[(&[&str], &str)] = &[
        (
            &[],
            "--name t -m 64M --smp 2 --cpu host --object memory-backend-ram,id=ram-node0,size=64M \
               --numa node,nodeid=0,cpus=0-1,memdev=ram-node0 --vcpupin 0:1",
        ),
        (
            &["-m", "128"],
            "--name t --smp 2 --cpu host --object memory-backend-ram,id=ram-node0,size=64M \
               --numa node,nodeid=0,cpus=0-1,memdev=ram-node0 --vcpupin 0:1 -m 128",
        ),
        (
            &["--numa", "node"],
            "--name t -m 64M --smp 2 --cpu host --vcpupin 0:1 --numa node",
        ),
        (
            &["-cpu=max", "--vcpupin", "1:2"],
            "--name t -m 64M --smp 2 --object memory-backend-ram,id=ram-node0,size=64M \
               --numa node,nodeid=0,cpus=0-1,memdev=ram-node0 -cpu=max --vcpupin 1:2",
        ),
    ];
    for (user, want) in rows {
        let user: Vec<String> = user.iter().map(|s| s.to_string()).collect();
        assert_eq!(cmd.overridden_by(&user).join(" "), *want, "{user:?}");
    }
}

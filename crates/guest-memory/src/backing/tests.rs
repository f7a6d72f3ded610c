use super::*;
use crate::backend::parse_memory_backend;
use std::os::unix::fs::FileExt;
use vm_memory::{Bytes, MmapRegion};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn backend(text: &str) -> MemoryBackendConfig {
    parse_memory_backend(text).unwrap()
}

fn one_node(size: u64) -> MemoryLayout {
    MemoryLayout::x86_64_numa(&[(NodeId(0), size)]).unwrap()
}

/// A fresh empty directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "guest-memory-test-{tag}-{}-{n}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The policy field of the `/proc/self/numa_maps` line of the mapping holding `addr` (the
/// line with the highest start at or below it: numa_maps lists starts only).
fn numa_maps_policy(addr: usize) -> String {
    let maps = std::fs::read_to_string("/proc/self/numa_maps").unwrap();
    let line = maps
        .lines()
        .rev()
        .find(|l| {
            l.split_whitespace()
                .next()
                .and_then(|a| usize::from_str_radix(a, 16).ok())
                .is_some_and(|start| start <= addr)
        })
        .unwrap_or_else(|| panic!("no numa_maps line holds {addr:#x}"));
    line.split_whitespace().nth(1).unwrap().to_string()
}

/// `Rss` of the `/proc/self/smaps` block holding `addr`, in KiB.
fn smaps_rss_kib(addr: usize) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut in_block = false;
    for line in smaps.lines() {
        let head = line.split_whitespace().next().unwrap_or("");
        if let Some((lo, hi)) = head.split_once('-').filter(|_| !head.ends_with(':')) {
            if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                in_block = (lo..hi).contains(&addr);
            }
        }
        if in_block {
            if let Some(rest) = line.strip_prefix("Rss:") {
                return rest.trim().trim_end_matches("kB").trim().parse().unwrap();
            }
        }
    }
    panic!("no smaps block holds {addr:#x}");
}

#[test]
fn memfd_backend_has_the_size_and_share_on_is_visible_through_a_second_mapping() {
    let layout = one_node(8 * MIB);
    let b = backend("memory-backend-memfd,id=m0,size=8M");
    let ram = GuestRam::with_backends(&layout, &[(NodeId(0), &b)]).unwrap();
    let (file, offset) = backing_file_of(&ram, GuestAddress(0x1000)).unwrap();
    assert_eq!(offset, 0x1000);
    assert_eq!(file.metadata().unwrap().len(), 8 * MIB);
    // A second, independent mapping of the same memfd sees guest writes, and vice versa.
    let mapping =
        MmapRegion::<()>::from_file(FileOffset::new(file.try_clone().unwrap(), 0), 8 << 20)
            .unwrap();
    let second = GuestRegionMmap::new(mapping, GuestAddress(0)).unwrap();
    ram.memory()
        .write_obj(0x1122_3344_u32, GuestAddress(0x1000))
        .unwrap();
    assert_eq!(
        second
            .read_obj::<u32>(vm_memory::MemoryRegionAddress(0x1000))
            .unwrap(),
        0x1122_3344
    );
    second
        .write_obj(0x55u8, vm_memory::MemoryRegionAddress(0x7f_ffff))
        .unwrap();
    assert_eq!(
        ram.memory()
            .read_obj::<u8>(GuestAddress(0x7f_ffff))
            .unwrap(),
        0x55
    );
}

#[test]
fn memfd_share_off_keeps_guest_writes_private() {
    let layout = one_node(4 * MIB);
    let b = backend("memory-backend-memfd,id=m0,size=4M,share=off");
    let ram = GuestRam::with_backends(&layout, &[(NodeId(0), &b)]).unwrap();
    ram.memory()
        .write_obj(0xabu8, GuestAddress(0x2000))
        .unwrap();
    let (file, _) = backing_file_of(&ram, GuestAddress(0)).unwrap();
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, 0x2000).unwrap();
    assert_eq!(
        byte,
        [0],
        "a private mapping must not write through to the memfd"
    );
}

#[test]
fn file_backend_in_a_directory_uses_an_unlinked_temp_file() {
    let dir = TempDir::new("dir");
    let b = backend(&format!(
        "memory-backend-file,id=f0,size=4M,share=on,mem-path={}",
        dir.0.display()
    ));
    let ram = GuestRam::with_backends(&one_node(4 * MIB), &[(NodeId(0), &b)]).unwrap();
    assert_eq!(
        std::fs::read_dir(&dir.0).unwrap().count(),
        0,
        "temp file must be unlinked"
    );
    ram.memory()
        .write_obj(0x77u8, GuestAddress(0x3000))
        .unwrap();
    let (file, _) = backing_file_of(&ram, GuestAddress(0)).unwrap();
    assert_eq!(file.metadata().unwrap().len(), 4 * MIB);
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, 0x3000).unwrap();
    assert_eq!(byte, [0x77]);
}

#[test]
fn file_backend_on_a_named_file_writes_through_with_share_on() {
    let dir = TempDir::new("file");
    let path = dir.0.join("guest.ram");
    let b = backend(&format!(
        "memory-backend-file,id=f1,size=2M,share=on,mem-path={}",
        path.display()
    ));
    let ram = GuestRam::with_backends(&one_node(2 * MIB), &[(NodeId(0), &b)]).unwrap();
    ram.memory()
        .write_obj(0xfeed_u16, GuestAddress(0x10))
        .unwrap();
    drop(ram);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len() as u64, 2 * MIB);
    assert_eq!(&bytes[0x10..0x12], &0xfeed_u16.to_le_bytes());
}

#[test]
fn node_split_across_the_hole_maps_one_memfd_at_consecutive_offsets() {
    let layout = MemoryLayout::x86_64_numa(&[(NodeId(0), 2 * GIB), (NodeId(1), 2 * GIB)]).unwrap();
    let b1 = backend("memory-backend-memfd,id=n1,size=2G");
    let ram = GuestRam::with_backends(&layout, &[(NodeId(1), &b1)]).unwrap();
    assert!(
        backing_file_of(&ram, GuestAddress(0)).is_none(),
        "node 0 has no backend: anonymous"
    );
    let (_, low) = backing_file_of(&ram, GuestAddress(2 * GIB)).unwrap();
    let (file, high) = backing_file_of(&ram, GuestAddress(4 * GIB + 0x10)).unwrap();
    assert_eq!((low, high), (0, GIB + 0x10));
    ram.memory()
        .write_obj(0x5a_u8, GuestAddress(4 * GIB + 0x10))
        .unwrap();
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, GIB + 0x10).unwrap();
    assert_eq!(byte, [0x5a]);
}

#[test]
fn one_backend_for_all_ram_spans_the_hole() {
    let layout = MemoryLayout::x86_64(4 * GIB).unwrap();
    let b = backend("memory-backend-memfd,id=all,size=4G");
    let ram = GuestRam::with_backend(&layout, &b).unwrap();
    assert_eq!(ram.layout(), &layout);
    let (_, offset) = backing_file_of(&ram, GuestAddress(4 * GIB)).unwrap();
    assert_eq!(offset, 3 * GIB);
    let wrong = backend("memory-backend-memfd,id=small,size=1G");
    assert_eq!(
        GuestRam::with_backend(&layout, &wrong)
            .unwrap_err()
            .to_string(),
        "memory backend 'small' has size 1 GiB but backs 4 GiB of guest RAM"
    );
}

#[test]
fn prealloc_makes_every_page_resident() {
    for text in [
        "memory-backend-ram,id=p0,size=8M,prealloc=on",
        "memory-backend-memfd,id=p1,size=8M,prealloc=on",
    ] {
        let ram =
            GuestRam::with_backends(&one_node(8 * MIB), &[(NodeId(0), &backend(text))]).unwrap();
        let hva = ram.translate(GuestAddress(0), 1).unwrap();
        assert!(smaps_rss_kib(hva.0) >= 8 * 1024, "{text}: not preallocated");
    }
    let lazy = GuestRam::with_backends(
        &one_node(8 * MIB),
        &[(NodeId(0), &backend("memory-backend-memfd,id=p2,size=8M"))],
    )
    .unwrap();
    let hva = lazy.translate(GuestAddress(0), 1).unwrap();
    assert!(
        smaps_rss_kib(hva.0) < 1024,
        "without prealloc nothing is resident"
    );
}

#[test]
fn hugetlb_shortage_is_a_clear_error_never_a_fallback() {
    // Ask for one page more than the host has free, whatever its setting (this host: 0).
    let page = 2 * MIB;
    let dir = hugepages_dir(page);
    let free: u64 = std::fs::read_to_string(dir.join("free_hugepages"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let nr: u64 = std::fs::read_to_string("/proc/sys/vm/nr_hugepages")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let nr_2m: u64 = std::fs::read_to_string(dir.join("nr_hugepages"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let pages = free + 1;
    let b = backend(&format!(
        "memory-backend-memfd,id=h0,size={}M,hugetlb=on,hugetlbsize=2M",
        pages * 2
    ));
    let err = GuestRam::with_backends(&one_node(pages * page), &[(NodeId(0), &b)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "memory backend 'h0' needs {pages} huge pages of 2048 kB ({} MiB) but the host has {free} free; \
             reserve them with `echo {} > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages`",
            pages * 2,
            nr_2m + 1
        )
    );
    if nr == 0 {
        assert_eq!(pages, 1);
    }
    // Sizes that are not whole huge pages are refused before the host is asked.
    let b = backend("memory-backend-memfd,id=h1,size=3M,hugetlb=on,hugetlbsize=2M");
    assert_eq!(
        GuestRam::with_backends(&one_node(3 * MIB), &[(NodeId(0), &b)])
            .unwrap_err()
            .to_string(),
        "memory backend 'h1': size 3 MiB is not a multiple of its huge page size 2 MiB"
    );
    // A page size the host does not have.
    let b = backend("memory-backend-memfd,id=h2,size=64M,hugetlb=on,hugetlbsize=32M");
    assert_eq!(
        GuestRam::with_backends(&one_node(64 * MIB), &[(NodeId(0), &b)]).unwrap_err().to_string(),
        "memory backend 'h2': the host has no 32768 kB huge pages (/sys/kernel/mm/hugepages/hugepages-32768kB is missing)"
    );
}

#[test]
fn check_huge_pages_table() {
    let rows: &[(u64, u64, u64, Option<&str>)] = &[
        (4 * MIB, 2, 2, None),
        (4 * MIB, 5, 9, None),
        (4 * MIB, 0, 0, Some("memory backend 'x' needs 2 huge pages of 2048 kB (4 MiB) but the host has 0 free; reserve them with `echo 2 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages`")),
        (GIB, 100, 300, Some("memory backend 'x' needs 512 huge pages of 2048 kB (1 GiB) but the host has 100 free; reserve them with `echo 712 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages`")),
    ];
    for (size, free, nr, want) in rows {
        let got = check_huge_pages("x", *size, 2 * MIB, *free, *nr)
            .err()
            .map(|e| e.to_string());
        assert_eq!(got.as_deref(), *want);
    }
}

#[test]
fn mbind_policies_show_in_numa_maps() {
    let online = host_online_nodes().unwrap();
    let node = online[0];
    let rows = [
        ("bind", format!("bind:{node}")),
        ("interleave", format!("interleave:{node}")),
        ("preferred", format!("prefer:{node}")),
    ];
    for (policy, want) in rows {
        for kind in ["ram", "memfd"] {
            let b = backend(&format!(
                "memory-backend-{kind},id=b0,size=4M,policy={policy},host-nodes={node}"
            ));
            let ram = GuestRam::with_backends(&one_node(4 * MIB), &[(NodeId(0), &b)]).unwrap();
            let hva = ram.translate(GuestAddress(0), 1).unwrap();
            assert_eq!(numa_maps_policy(hva.0), want, "{kind} {policy}");
        }
    }
    // Prealloc after bind: the pages exist and the policy is still there.
    let b = backend(&format!(
        "memory-backend-ram,id=b1,size=4M,policy=bind,host-nodes={node},prealloc=on"
    ));
    let ram = GuestRam::with_backends(&one_node(4 * MIB), &[(NodeId(0), &b)]).unwrap();
    let hva = ram.translate(GuestAddress(0), 1).unwrap();
    assert_eq!(numa_maps_policy(hva.0), format!("bind:{node}"));
    // Without a policy the mapping keeps the default.
    let b = backend("memory-backend-ram,id=b2,size=4M");
    let ram = GuestRam::with_backends(&one_node(4 * MIB), &[(NodeId(0), &b)]).unwrap();
    let hva = ram.translate(GuestAddress(0), 1).unwrap();
    assert_eq!(numa_maps_policy(hva.0), "default");
}

#[test]
fn binding_to_a_node_the_host_lacks_is_refused_before_mapping() {
    let online = host_online_nodes().unwrap();
    let missing = online.last().unwrap() + 1;
    let b = backend(&format!(
        "memory-backend-ram,id=far,size=4M,policy=bind,host-nodes={missing}"
    ));
    let err = GuestRam::with_backends(&one_node(4 * MIB), &[(NodeId(0), &b)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "memory backend 'far': host-nodes {missing} do not exist on this host (online nodes: {})",
            format_node_list(&online)
        )
    );
    // The kernel agrees: mbind to that node fails (checked through the raw call).
    let ram = GuestRam::new(&one_node(4 * MIB)).unwrap();
    let hva = ram.translate(GuestAddress(0), 1).unwrap();
    let err =
        host_sys::mbind(hva.0, (4 * MIB) as usize, libc::MPOL_BIND, &[missing], 0).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
}

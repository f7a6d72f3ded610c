//! Loading the probe guest, its entry registers, and reading its results.

use std::sync::atomic::Ordering;

use cpu_topology::VcpuIndex;
use kvm_bindings::{kvm_regs, kvm_sregs};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory};
use x86_boot::long_mode::{long_mode_sregs, write_long_mode_tables};

use crate::abi::*;
use crate::{ProbeError, ProbeLayout, PROBE_CODE};

/// What every vCPU of the probe does after entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProbeMode {
    /// Execute CPUID for every query at CPL0, store the results, ring
    /// [`Doorbell::Report`] then [`Doorbell::Done`], then `cli; hlt`.
    #[default]
    Report,
    /// At CPL3, count `iterations` (0 = forever) into the progress counter,
    /// then ring [`Doorbell::Done`] and spin on `pause`.
    Spin {
        /// Loop iterations; 0 spins forever.
        iterations: u64,
    },
    /// At CPL3, `rounds` times: `work` empty loop iterations, then a barrier
    /// across all participants; the progress counter counts rounds. Then
    /// [`Doorbell::Done`] and spin on `pause`.
    Barrier {
        /// Barrier rounds.
        rounds: u64,
        /// Loop iterations of work before each barrier.
        work: u64,
    },
    /// At CPL3, ring [`Doorbell::Ping`] `count` times (one port-I/O exit each),
    /// then [`Doorbell::Done`]: the workload of exit-cost benchmarks.
    Exits {
        /// Ping exits before Done.
        count: u64,
    },
    /// `ud2` with no IDT: KVM reports `KVM_EXIT_SHUTDOWN`.
    TripleFault,
    /// Jump to [`BAD_FETCH_GPA`], inside the 32-bit MMIO hole: mapped by the
    /// page tables, backed by no RAM. See DESIGN.md for the resulting exit.
    BadFetch,
}

impl ProbeMode {
    /// (mode code, PARAM0, PARAM1) as stored in the control block.
    fn encode(self) -> (u32, u64, u64) {
        match self {
            ProbeMode::Report => (MODE_REPORT, 0, 0),
            ProbeMode::Spin { iterations } => (MODE_SPIN, iterations, 0),
            ProbeMode::Barrier { rounds, work } => (MODE_BARRIER, rounds, work),
            ProbeMode::Exits { count } => (MODE_EXITS, count, 0),
            ProbeMode::TripleFault => (MODE_TRIPLE_FAULT, 0, 0),
            ProbeMode::BadFetch => (MODE_BAD_FETCH, BAD_FETCH_GPA, 0),
        }
    }
}

/// A message the guest rang on [`DOORBELL_PORT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doorbell {
    /// The CPUID report of the ringing vCPU is in its area.
    Report,
    /// The ringing vCPU finished its mode; do not enter it again.
    Done,
    /// One exit of [`ProbeMode::Exits`]; carries nothing.
    Ping,
}

impl Doorbell {
    /// Decodes a port write (`KVM_EXIT_IO` out): `None` unless it is a 4-byte
    /// write of a known code to [`DOORBELL_PORT`].
    pub fn from_port_write(port: u16, data: &[u8]) -> Option<Self> {
        if port != DOORBELL_PORT {
            return None;
        }
        let bytes: [u8; 4] = data.try_into().ok()?;
        match u32::from_le_bytes(bytes) {
            DOORBELL_REPORT => Some(Doorbell::Report),
            DOORBELL_DONE => Some(Doorbell::Done),
            DOORBELL_PING => Some(Doorbell::Ping),
            _ => None,
        }
    }

    /// The 32-bit code the guest writes for this message.
    pub fn code(self) -> u32 {
        match self {
            Doorbell::Report => DOORBELL_REPORT,
            Doorbell::Done => DOORBELL_DONE,
            Doorbell::Ping => DOORBELL_PING,
        }
    }
}

/// One CPUID result as the guest saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeCpuid {
    /// Input EAX.
    pub leaf: u32,
    /// Input ECX.
    pub subleaf: u32,
    /// Output EAX.
    pub eax: u32,
    /// Output EBX.
    pub ebx: u32,
    /// Output ECX.
    pub ecx: u32,
    /// Output EDX.
    pub edx: u32,
}

/// The CPUID view of one vCPU, in query order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProbeReport {
    /// One entry per query the guest answered.
    pub entries: Vec<ProbeCpuid>,
}

impl ProbeReport {
    /// The result for (leaf, subleaf), if it was queried.
    pub fn get(&self, leaf: u32, subleaf: u32) -> Option<&ProbeCpuid> {
        self.entries
            .iter()
            .find(|e| e.leaf == leaf && e.subleaf == subleaf)
    }
}

/// The probe guest: its mode and memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeGuest {
    mode: ProbeMode,
    layout: ProbeLayout,
}

impl ProbeGuest {
    /// A probe running `mode` on every vCPU, laid out by `layout`.
    pub fn new(mode: ProbeMode, layout: ProbeLayout) -> Self {
        Self { mode, layout }
    }

    /// The mode.
    pub fn mode(&self) -> ProbeMode {
        self.mode
    }

    /// The memory map.
    pub fn layout(&self) -> &ProbeLayout {
        &self.layout
    }

    /// Writes code, GDT, page tables, control block and query list, and
    /// zeroes every per-vCPU area. `participants` is the number of vCPUs that
    /// will run (the barrier waits for that many), `1..=max_vcpus`.
    pub fn load<M: GuestMemory + ?Sized>(
        &self,
        mem: &M,
        queries: &[(u32, u32)],
        participants: u32,
    ) -> Result<(), ProbeError> {
        let max_vcpus = self.layout.max_vcpus();
        if participants == 0 || participants > max_vcpus {
            return Err(ProbeError::BadParticipants {
                participants,
                max_vcpus,
            });
        }
        let query_count = u32::try_from(queries.len())
            .ok()
            .filter(|&n| n <= MAX_QUERIES)
            .ok_or(ProbeError::TooManyQueries {
                count: queries.len(),
                max: MAX_QUERIES,
            })?;
        if self.mode == ProbeMode::BadFetch
            && mem.check_range(GuestAddress(BAD_FETCH_GPA), 1, vm_memory::Permissions::Read)
        {
            return Err(ProbeError::BadFetchTargetIsRam(BAD_FETCH_GPA));
        }

        write_long_mode_tables(mem, &self.layout.long_mode())
            .map_err(|source| ProbeError::LongMode { source })?;
        write(mem, self.layout.code(), PROBE_CODE)?;

        let list: Vec<u8> = queries
            .iter()
            .flat_map(|&(leaf, subleaf)| {
                let mut e = [0u8; 8];
                e[..4].copy_from_slice(&leaf.to_le_bytes());
                e[4..].copy_from_slice(&subleaf.to_le_bytes());
                e
            })
            .collect();
        write(mem, self.layout.query_list(), &list)?;

        let (mode, param0, param1) = self.mode.encode();
        let mut ctl = vec![0u8; CONTROL_SIZE as usize];
        put(&mut ctl, CTL_MODE, &mode.to_le_bytes());
        put(&mut ctl, CTL_PARTICIPANTS, &participants.to_le_bytes());
        put(&mut ctl, CTL_PARAM0, &param0.to_le_bytes());
        put(&mut ctl, CTL_PARAM1, &param1.to_le_bytes());
        put(&mut ctl, CTL_QUERY_LIST, &QUERY_LIST_GPA.to_le_bytes());
        put(&mut ctl, CTL_QUERY_COUNT, &query_count.to_le_bytes());
        write(mem, self.layout.control_block(), &ctl)?;

        let zero = vec![0u8; VCPU_AREA_SIZE as usize];
        for i in 0..max_vcpus {
            write(mem, self.layout.vcpu_area(VcpuIndex(i))?, &zero)?;
        }
        Ok(())
    }

    /// General registers for vCPU `index` at entry: RIP = entry point,
    /// RDI = index, RSI = its area, RDX = control block, RSP = its CPL0
    /// stack top, RFLAGS = 0x2.
    pub fn vcpu_regs(&self, index: VcpuIndex) -> Result<kvm_regs, ProbeError> {
        let area = self.layout.vcpu_area(index)?.0;
        Ok(kvm_regs {
            rip: CODE_GPA,
            rdi: u64::from(index.0),
            rsi: area,
            rdx: CONTROL_GPA,
            rsp: area + VA_KERNEL_STACK_TOP as u64,
            rflags: 0x2,
            ..Default::default()
        })
    }

    /// `base` (from `KVM_GET_SREGS`) changed to 64-bit CPL0 state over the
    /// probe's GDT and page tables.
    pub fn vcpu_sregs(&self, base: &kvm_sregs) -> kvm_sregs {
        long_mode_sregs(base, &self.layout.long_mode())
    }

    /// Reads the CPUID report of vCPU `index`. Guest memory is untrusted:
    /// a count above the number of queries is an error, never a panic.
    pub fn read_report<M: GuestMemory + ?Sized>(
        &self,
        mem: &M,
        index: VcpuIndex,
    ) -> Result<ProbeReport, ProbeError> {
        let area = self.layout.vcpu_area(index)?;
        let query_count: u32 = read(mem, self.layout.control_block(), CTL_QUERY_COUNT)?;
        let count: u32 = read(mem, area, VA_COUNT)?;
        let limit = query_count.min(MAX_QUERIES);
        if count > limit {
            return Err(ProbeError::BadReportCount {
                index,
                count,
                queries: limit,
            });
        }
        let n = count as usize;
        let mut queries = vec![0u8; n * QUERY_ENTRY_SIZE as usize];
        read_bytes(mem, self.layout.query_list(), &mut queries)?;
        let mut results = vec![0u8; n * RESULT_ENTRY_SIZE as usize];
        read_bytes(mem, offset(area, VA_RESULTS), &mut results)?;
        let word = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let entries = queries
            .chunks_exact(QUERY_ENTRY_SIZE as usize)
            .zip(results.chunks_exact(RESULT_ENTRY_SIZE as usize))
            .map(|(q, r)| ProbeCpuid {
                leaf: word(q, 0),
                subleaf: word(q, 4),
                eax: word(r, 0),
                ebx: word(r, 4),
                ecx: word(r, 8),
                edx: word(r, 12),
            })
            .collect();
        Ok(ProbeReport { entries })
    }

    /// The progress counter of vCPU `index` (spin iterations or barrier
    /// rounds so far). Safe to call while the guest runs.
    pub fn progress<M: GuestMemory + ?Sized>(
        &self,
        mem: &M,
        index: VcpuIndex,
    ) -> Result<u64, ProbeError> {
        let addr = offset(self.layout.vcpu_area(index)?, VA_PROGRESS);
        mem.load::<u64>(addr, Ordering::Acquire)
            .map_err(|source| ProbeError::ReadMemory {
                addr: addr.0,
                source,
            })
    }

    /// The doorbell vCPU `index` rang last (or is ringing), read from its
    /// area without an exit; `None` before its first doorbell or on garbage.
    pub fn stage<M: GuestMemory + ?Sized>(
        &self,
        mem: &M,
        index: VcpuIndex,
    ) -> Result<Option<Doorbell>, ProbeError> {
        let code = read(mem, self.layout.vcpu_area(index)?, VA_STAGE)?;
        Ok(Doorbell::from_port_write(
            DOORBELL_PORT,
            &code.to_le_bytes(),
        ))
    }

    /// The vCPU index the guest echoed from RDI, or 0 before it ran.
    pub fn echoed_index<M: GuestMemory + ?Sized>(
        &self,
        mem: &M,
        index: VcpuIndex,
    ) -> Result<u32, ProbeError> {
        read(mem, self.layout.vcpu_area(index)?, VA_INDEX)
    }
}

fn offset(base: GuestAddress, off: i32) -> GuestAddress {
    base.unchecked_add(off as u64)
}

fn put(buf: &mut [u8], off: i32, bytes: &[u8]) {
    let at = off as usize;
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

fn write<M: GuestMemory + ?Sized>(
    mem: &M,
    addr: GuestAddress,
    buf: &[u8],
) -> Result<(), ProbeError> {
    mem.write_slice(buf, addr)
        .map_err(|source| ProbeError::WriteMemory {
            addr: addr.0,
            len: buf.len(),
            source,
        })
}

fn read_bytes<M: GuestMemory + ?Sized>(
    mem: &M,
    addr: GuestAddress,
    buf: &mut [u8],
) -> Result<(), ProbeError> {
    mem.read_slice(buf, addr)
        .map_err(|source| ProbeError::ReadMemory {
            addr: addr.0,
            source,
        })
}

fn read<M: GuestMemory + ?Sized>(mem: &M, base: GuestAddress, off: i32) -> Result<u32, ProbeError> {
    let addr = offset(base, off);
    mem.read_obj::<u32>(addr)
        .map_err(|source| ProbeError::ReadMemory {
            addr: addr.0,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    const RAM: u64 = 16 << 20;

    fn setup(mode: ProbeMode, vcpus: u32, queries: &[(u32, u32)]) -> (GuestMemoryMmap, ProbeGuest) {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
        let probe = ProbeGuest::new(mode, ProbeLayout::new(vcpus, RAM).unwrap());
        probe.load(&mem, queries, vcpus).unwrap();
        (mem, probe)
    }

    fn area(probe: &ProbeGuest, i: u32) -> GuestAddress {
        probe.layout().vcpu_area(VcpuIndex(i)).unwrap()
    }

    /// Writes what the guest would after answering `results`.
    fn fake_guest_report(
        mem: &GuestMemoryMmap,
        probe: &ProbeGuest,
        i: u32,
        count: u32,
        results: &[[u32; 4]],
    ) {
        let a = area(probe, i);
        mem.write_obj(count, offset(a, VA_COUNT)).unwrap();
        for (n, r) in results.iter().enumerate() {
            mem.write_obj(*r, offset(a, VA_RESULTS).unchecked_add(n as u64 * 16))
                .unwrap();
        }
    }

    #[test]
    fn load_writes_control_block_and_query_list() {
        let (mem, _) = setup(
            ProbeMode::Barrier { rounds: 7, work: 9 },
            3,
            &[(0xb, 1), (0x8000_001e, 0)],
        );
        let ctl = GuestAddress(CONTROL_GPA);
        assert_eq!(
            mem.read_obj::<u32>(offset(ctl, CTL_MODE)).unwrap(),
            MODE_BARRIER
        );
        assert_eq!(
            mem.read_obj::<u32>(offset(ctl, CTL_PARTICIPANTS)).unwrap(),
            3
        );
        assert_eq!(mem.read_obj::<u64>(offset(ctl, CTL_PARAM0)).unwrap(), 7);
        assert_eq!(mem.read_obj::<u64>(offset(ctl, CTL_PARAM1)).unwrap(), 9);
        assert_eq!(
            mem.read_obj::<u64>(offset(ctl, CTL_QUERY_LIST)).unwrap(),
            QUERY_LIST_GPA
        );
        assert_eq!(
            mem.read_obj::<u32>(offset(ctl, CTL_QUERY_COUNT)).unwrap(),
            2
        );
        let q: [u32; 4] = mem.read_obj(GuestAddress(QUERY_LIST_GPA)).unwrap();
        assert_eq!(q, [0xb, 1, 0x8000_001e, 0]);
        let mut code = vec![0u8; PROBE_CODE.len()];
        mem.read_slice(&mut code, GuestAddress(CODE_GPA)).unwrap();
        assert_eq!(code, PROBE_CODE);
    }

    #[test]
    fn load_zeroes_stale_mailboxes() {
        let (mem, probe) = setup(ProbeMode::Report, 2, &[(0, 0)]);
        fake_guest_report(&mem, &probe, 1, 1, &[[1, 2, 3, 4]]);
        mem.write_obj(55u64, offset(area(&probe, 1), VA_PROGRESS))
            .unwrap();
        probe.load(&mem, &[(0, 0)], 2).unwrap();
        assert!(probe
            .read_report(&mem, VcpuIndex(1))
            .unwrap()
            .entries
            .is_empty());
        assert_eq!(probe.progress(&mem, VcpuIndex(1)).unwrap(), 0);
    }

    #[test]
    fn report_pairs_results_with_queries() {
        let (mem, probe) = setup(ProbeMode::Report, 2, &[(0, 0), (0xb, 1)]);
        fake_guest_report(&mem, &probe, 1, 2, &[[1, 2, 3, 4], [5, 6, 7, 8]]);
        let r = probe.read_report(&mem, VcpuIndex(1)).unwrap();
        assert_eq!(
            r.entries[1],
            ProbeCpuid {
                leaf: 0xb,
                subleaf: 1,
                eax: 5,
                ebx: 6,
                ecx: 7,
                edx: 8
            }
        );
        assert_eq!(r.get(0, 0).unwrap().eax, 1);
        assert!(r.get(0, 1).is_none());
    }

    #[test]
    fn garbage_counts_are_errors_not_panics() {
        let (mem, probe) = setup(ProbeMode::Report, 2, &[(0, 0), (1, 0)]);
        for count in [3u32, MAX_QUERIES, MAX_QUERIES + 1, u32::MAX] {
            fake_guest_report(&mem, &probe, 0, count, &[]);
            let err = probe.read_report(&mem, VcpuIndex(0)).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("vCPU 0 reported {count} CPUID results for 2 queries")
            );
        }
        // A guest that overwrote the query count cannot push reads past the list.
        mem.write_obj(u32::MAX, offset(GuestAddress(CONTROL_GPA), CTL_QUERY_COUNT))
            .unwrap();
        fake_guest_report(&mem, &probe, 0, MAX_QUERIES, &[]);
        assert_eq!(
            probe.read_report(&mem, VcpuIndex(0)).unwrap().entries.len(),
            512
        );
        fake_guest_report(&mem, &probe, 0, MAX_QUERIES + 1, &[]);
        assert!(probe.read_report(&mem, VcpuIndex(0)).is_err());
    }

    #[test]
    fn index_outside_layout_is_an_error() {
        let (mem, probe) = setup(ProbeMode::Report, 2, &[]);
        assert_eq!(
            probe
                .read_report(&mem, VcpuIndex(2))
                .unwrap_err()
                .to_string(),
            "vCPU index 2 is out of range (the probe has 2 slots)"
        );
        assert!(probe.progress(&mem, VcpuIndex(2)).is_err());
        assert!(probe.vcpu_regs(VcpuIndex(2)).is_err());
    }

    #[test]
    fn load_rejects_bad_arguments() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
        let probe = ProbeGuest::new(ProbeMode::Report, ProbeLayout::new(4, RAM).unwrap());
        let too_many = vec![(0, 0); MAX_QUERIES as usize + 1];
        for (queries, participants, text) in [
            (&[][..], 0, "barrier participants 0 not in 1..=4"),
            (&[][..], 5, "barrier participants 5 not in 1..=4"),
            (
                &too_many[..],
                4,
                "513 CPUID queries exceed the probe's maximum of 512",
            ),
        ] {
            assert_eq!(
                probe
                    .load(&mem, queries, participants)
                    .unwrap_err()
                    .to_string(),
                text
            );
        }
        // Guest memory smaller than the layout claims.
        let small = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x20_4000)]).unwrap();
        let err = probe.load(&small, &[], 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "writing 16384 bytes of the probe at 0x204000 failed"
        );
    }

    #[test]
    fn bad_fetch_refuses_ram_at_the_target() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[
            (GuestAddress(0), RAM as usize),
            (GuestAddress(BAD_FETCH_GPA), 0x1000),
        ])
        .unwrap();
        let probe = ProbeGuest::new(ProbeMode::BadFetch, ProbeLayout::new(1, RAM).unwrap());
        assert_eq!(
            probe.load(&mem, &[], 1).unwrap_err().to_string(),
            "bad-fetch target 0xd0000000 is guest RAM; the mode needs it unbacked"
        );
    }

    #[test]
    fn entry_registers_follow_the_contract() {
        let (_, probe) = setup(ProbeMode::Report, 8, &[]);
        let r = probe.vcpu_regs(VcpuIndex(5)).unwrap();
        let a = area(&probe, 5).0;
        assert_eq!((r.rip, r.rdi, r.rsi, r.rdx), (CODE_GPA, 5, a, CONTROL_GPA));
        assert_eq!((r.rsp, r.rflags), (a + 0x4000, 2));
        let s = probe.vcpu_sregs(&Default::default());
        assert_eq!((s.cs.selector, s.cs.l, s.cr3), (0x08, 1, PAGE_TABLES_GPA));
    }

    #[test]
    fn doorbell_decoding() {
        let rows: &[(u16, &[u8], Option<Doorbell>)] = &[
            (
                DOORBELL_PORT,
                &DOORBELL_REPORT.to_le_bytes(),
                Some(Doorbell::Report),
            ),
            (
                DOORBELL_PORT,
                &DOORBELL_DONE.to_le_bytes(),
                Some(Doorbell::Done),
            ),
            (DOORBELL_PORT + 1, &DOORBELL_DONE.to_le_bytes(), None),
            (DOORBELL_PORT, &DOORBELL_DONE.to_le_bytes()[..2], None),
            (DOORBELL_PORT, &[1, 0, 0, 0, 0], None),
            (DOORBELL_PORT, &0x5052_0004u32.to_le_bytes(), None),
            (0x3f8, b"A", None),
        ];
        for (port, data, want) in rows {
            assert_eq!(
                Doorbell::from_port_write(*port, data),
                *want,
                "{port:#x} {data:x?}"
            );
        }
        for d in [Doorbell::Report, Doorbell::Done, Doorbell::Ping] {
            assert_eq!(
                Doorbell::from_port_write(DOORBELL_PORT, &d.code().to_le_bytes()),
                Some(d)
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn reading_arbitrary_guest_memory_never_panics(
            query_count in proptest::prelude::any::<u32>(),
            count in proptest::prelude::any::<u32>(),
            junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
        ) {
            let (mem, probe) = setup(ProbeMode::Report, 1, &[]);
            mem.write_obj(query_count, offset(GuestAddress(CONTROL_GPA), CTL_QUERY_COUNT)).unwrap();
            mem.write_slice(&junk, GuestAddress(QUERY_LIST_GPA)).unwrap();
            mem.write_slice(&junk, offset(area(&probe, 0), VA_RESULTS)).unwrap();
            mem.write_obj(count, offset(area(&probe, 0), VA_COUNT)).unwrap();
            match probe.read_report(&mem, VcpuIndex(0)) {
                Ok(r) => {
                    proptest::prop_assert_eq!(r.entries.len() as u32, count);
                    proptest::prop_assert!(count <= query_count.min(MAX_QUERIES));
                }
                Err(ProbeError::BadReportCount { .. }) => {
                    proptest::prop_assert!(count > query_count.min(MAX_QUERIES));
                }
                Err(e) => proptest::prop_assert!(false, "unexpected error {e}"),
            }
        }
    }
}

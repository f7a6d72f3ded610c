// The binary interface between the probe guest's machine code and the VMM.
//
// This file is shared verbatim by build.rs (which assembles the guest) and the
// library (which loads it and reads its results), so both sides always agree.
// It holds constants only and uses nothing outside `core`.

/// I/O port the guest writes a doorbell message code to (`out dx, eax`).
pub const DOORBELL_PORT: u16 = 0x0510;
/// Doorbell code: the per-vCPU CPUID results are complete in guest memory.
pub const DOORBELL_REPORT: u32 = 0x5052_0001;
/// Doorbell code: the guest finished its mode; do not run the vCPU again.
pub const DOORBELL_DONE: u32 = 0x5052_0002;

/// Doorbell code: one round trip of the exits mode (no data).
pub const DOORBELL_PING: u32 = 0x5052_0003;

/// Mode code: report CPUID.
pub const MODE_REPORT: u32 = 0;
/// Mode code: spin at CPL3.
pub const MODE_SPIN: u32 = 1;
/// Mode code: barrier rounds at CPL3.
pub const MODE_BARRIER: u32 = 2;
/// Mode code: `ud2` without an IDT.
pub const MODE_TRIPLE_FAULT: u32 = 3;
/// Mode code: jump into unbacked guest-physical space.
pub const MODE_BAD_FETCH: u32 = 4;
/// Mode code: ring the ping doorbell N times at CPL3.
pub const MODE_EXITS: u32 = 5;

/// Guest-physical address of the first code byte and the entry point.
pub const CODE_GPA: u64 = 0x10_0000;
/// Bytes reserved for code at [`CODE_GPA`].
pub const CODE_SIZE: u64 = 0x4000;
/// Guest-physical address of the GDT page.
pub const GDT_GPA: u64 = 0x10_4000;
/// Guest-physical address of the control block page.
pub const CONTROL_GPA: u64 = 0x10_5000;
/// Bytes reserved for the control block.
pub const CONTROL_SIZE: u64 = 0x1000;
/// Guest-physical address of the query list.
pub const QUERY_LIST_GPA: u64 = 0x10_6000;
/// Guest-physical address of the PML4 (start of the page-table block).
pub const PAGE_TABLES_GPA: u64 = 0x10_8000;
/// Guest-physical address of the per-vCPU area of vCPU 0.
pub const VCPU_AREAS_GPA: u64 = 0x20_0000;
/// Bytes of one per-vCPU area.
pub const VCPU_AREA_SIZE: u64 = 0x4000;
/// Most (leaf, subleaf) queries one report can hold.
pub const MAX_QUERIES: u32 = 512;
/// Bytes of one query-list entry: leaf u32, subleaf u32.
pub const QUERY_ENTRY_SIZE: u64 = 8;
/// Bytes of one result entry: eax, ebx, ecx, edx (u32 each).
pub const RESULT_ENTRY_SIZE: u64 = 16;
/// Address the bad-fetch mode jumps to (32-bit MMIO hole, never RAM).
pub const BAD_FETCH_GPA: u64 = 0xd000_0000;
/// Bytes identity-mapped by the guest page tables.
pub const IDENTITY_MAP_SIZE: u64 = 4 << 30;

/// Control block: mode code (u32).
pub const CTL_MODE: i32 = 0x00;
/// Control block: number of vCPUs taking part in barriers (u32).
pub const CTL_PARTICIPANTS: i32 = 0x04;
/// Control block: first mode parameter (u64): spin iterations, barrier rounds, fetch target.
pub const CTL_PARAM0: i32 = 0x08;
/// Control block: second mode parameter (u64): barrier work per round.
pub const CTL_PARAM1: i32 = 0x10;
/// Control block: guest-physical address of the query list (u64).
pub const CTL_QUERY_LIST: i32 = 0x18;
/// Control block: number of queries (u32).
pub const CTL_QUERY_COUNT: i32 = 0x20;
/// Control block: barrier arrival counter (u32, own cache line).
pub const CTL_BARRIER_COUNT: i32 = 0x40;
/// Control block: barrier generation, bumped by the last arriver (u32, own cache line).
pub const CTL_BARRIER_GENERATION: i32 = 0x80;

/// Per-vCPU area: last doorbell code the guest rang or is about to ring (u32).
pub const VA_STAGE: i32 = 0x00;
/// Per-vCPU area: number of result entries written (u32).
pub const VA_COUNT: i32 = 0x04;
/// Per-vCPU area: the vCPU index the guest got in RDI, echoed (u32).
pub const VA_INDEX: i32 = 0x08;
/// Per-vCPU area: progress counter (u64): spin iterations or barrier rounds.
pub const VA_PROGRESS: i32 = 0x40;
/// Per-vCPU area: first result entry.
pub const VA_RESULTS: i32 = 0x100;
/// Per-vCPU area: initial CPL3 stack pointer.
pub const VA_USER_STACK_TOP: i32 = 0x3800;
/// Per-vCPU area: initial CPL0 stack pointer.
pub const VA_KERNEL_STACK_TOP: i32 = 0x4000;

/// Kernel (CPL0) 64-bit code selector.
pub const SEL_KERNEL_CODE: u16 = 0x08;
/// User (CPL3) data selector, RPL 3.
pub const SEL_USER_DATA: u16 = 0x1b;
/// User (CPL3) 64-bit code selector, RPL 3.
pub const SEL_USER_CODE: u16 = 0x23;
/// RFLAGS for CPL3: reserved bit 1, IF=0, IOPL=3 (so `out` works at CPL3).
pub const USER_RFLAGS: u64 = 0x3002;

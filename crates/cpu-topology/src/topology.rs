//! Topology shape, vCPU indices and the packed APIC-id layout.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Highest APIC id an xAPIC (8-bit id, 0xff = broadcast) can address.
/// Larger ids need x2APIC (MADT Local x2APIC entries; the MP table cannot describe them).
pub const MAX_XAPIC_ID: u32 = 254;

/// Index of a vCPU slot, `0..max_cpus`, in QEMU's `cpu-index` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VcpuIndex(pub u32);

impl fmt::Display for VcpuIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Initial (x2)APIC id of a vCPU, as reported in CPUID leaf 0xB EDX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ApicId(pub u32);

impl fmt::Display for ApicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a vCPU sits in the hierarchy. Ids are relative to the parent level
/// (`core` counts cores within the module), as QEMU's `query-cpus-fast` props do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct TopologyPosition {
    /// Package (socket) id.
    pub socket: u32,
    /// Die within the socket.
    pub die: u32,
    /// Module within the die.
    pub module: u32,
    /// Core within the module.
    pub core: u32,
    /// Thread within the core.
    pub thread: u32,
}

/// Errors from building or querying a topology.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// A level was given as zero.
    #[error("{level} must be greater than 0")]
    ZeroLevel {
        /// Name of the level (`sockets`, `cores`, ...).
        level: &'static str,
    },
    /// The product of the levels overflowed or does not equal maxcpus.
    #[error("product of the hierarchy must match maxcpus: {product_text} != maxcpus ({max_cpus})")]
    ProductMismatch {
        /// `sockets (2) * cores (2) * threads (1)` as QEMU prints it.
        product_text: String,
        /// The requested maxcpus.
        max_cpus: u64,
    },
    /// More present cpus than slots.
    #[error("maxcpus ({max_cpus}) must be equal to or greater than smp ({cpus})")]
    CpusAboveMax {
        /// Present CPUs.
        cpus: u32,
        /// Slots.
        max_cpus: u32,
    },
    /// A vCPU index outside `0..max_cpus`.
    #[error("vCPU index {index} is out of range (maxcpus is {max_cpus})")]
    IndexOutOfRange {
        /// The index asked for.
        index: u32,
        /// Number of slots.
        max_cpus: u32,
    },
    /// A position with a component outside its level's count.
    #[error("topology position {position:?} does not exist in this topology")]
    PositionOutOfRange {
        /// The position asked for.
        position: TopologyPosition,
    },
    /// The APIC id layout needs more than 32 bits.
    #[error("the APIC id layout needs {bits} bits; x2APIC ids have 32 and the package shift is at most 31")]
    ApicIdTooWide {
        /// Bits needed.
        bits: u32,
    },
}

/// The shape of a guest's CPUs: QEMU's x86 hierarchy, large to small
/// (sockets, dies, modules, cores, threads), plus present and possible counts.
///
/// Invariant (checked by [`CpuTopology::new`]): every level >= 1,
/// `sockets * dies * modules * cores * threads == max_cpus`, and `1 <= cpus <= max_cpus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CpuTopology {
    cpus: u32,
    max_cpus: u32,
    sockets: u32,
    dies: u32,
    modules: u32,
    cores: u32,
    threads: u32,
}

impl CpuTopology {
    /// Build a topology, checking the invariant. `cpus` is the number present at boot.
    pub fn new(
        sockets: u32,
        dies: u32,
        modules: u32,
        cores: u32,
        threads: u32,
        cpus: u32,
    ) -> Result<Self, TopologyError> {
        for (level, n) in [
            ("sockets", sockets),
            ("dies", dies),
            ("modules", modules),
            ("cores", cores),
            ("threads", threads),
            ("cpus", cpus),
        ] {
            if n == 0 {
                return Err(TopologyError::ZeroLevel { level });
            }
        }
        let product = u64::from(sockets)
            * u64::from(dies)
            * u64::from(modules)
            * u64::from(cores)
            * u64::from(threads);
        let max_cpus = u32::try_from(product).map_err(|_| TopologyError::ProductMismatch {
            product_text: format!(
                "sockets ({sockets}) * dies ({dies}) * modules ({modules}) * cores ({cores}) * threads ({threads})"
            ),
            max_cpus: product,
        })?;
        if cpus > max_cpus {
            return Err(TopologyError::CpusAboveMax { cpus, max_cpus });
        }
        // Every id must fit the 32-bit x2APIC id, and the package shift must fit the
        // 5-bit shift field of CPUID leaves 0xB/0x1F (EAX bits 4:0).
        let below_socket =
            level_width(threads) + level_width(cores) + level_width(modules) + level_width(dies);
        let bits = below_socket + level_width(sockets);
        if bits > 32 || below_socket > 31 {
            let bits = if bits > 32 { bits } else { below_socket + 1 };
            return Err(TopologyError::ApicIdTooWide { bits });
        }
        Ok(Self {
            sockets,
            dies,
            modules,
            cores,
            threads,
            cpus,
            max_cpus,
        })
    }

    /// `n` vCPUs as one socket of `n` single-threaded cores (QEMU's `-smp n`).
    pub fn flat(n: u32) -> Result<Self, TopologyError> {
        Self::new(1, 1, 1, n, 1, n)
    }

    /// Sockets (packages).
    pub fn sockets(&self) -> u32 {
        self.sockets
    }
    /// Dies per socket.
    pub fn dies(&self) -> u32 {
        self.dies
    }
    /// Modules per die.
    pub fn modules(&self) -> u32 {
        self.modules
    }
    /// Cores per module.
    pub fn cores(&self) -> u32 {
        self.cores
    }
    /// Threads per core.
    pub fn threads(&self) -> u32 {
        self.threads
    }
    /// vCPUs present at boot.
    pub fn cpus(&self) -> u32 {
        self.cpus
    }
    /// vCPU slots (present plus hot-pluggable).
    pub fn max_cpus(&self) -> u32 {
        self.max_cpus
    }
    /// Cores per die (all modules).
    pub fn cores_per_die(&self) -> u32 {
        self.modules * self.cores
    }
    /// Logical CPUs per die.
    pub fn threads_per_die(&self) -> u32 {
        self.modules * self.cores * self.threads
    }
    /// Logical CPUs per socket.
    pub fn threads_per_socket(&self) -> u32 {
        self.dies * self.threads_per_die()
    }
    /// Cores per socket.
    pub fn cores_per_socket(&self) -> u32 {
        self.dies * self.cores_per_die()
    }

    /// Indices of the vCPUs present at boot (`0..cpus`).
    pub fn present(&self) -> impl Iterator<Item = VcpuIndex> {
        (0..self.cpus).map(VcpuIndex)
    }

    /// Indices of every slot (`0..max_cpus`).
    pub fn slots(&self) -> impl Iterator<Item = VcpuIndex> {
        (0..self.max_cpus).map(VcpuIndex)
    }

    /// Position of a slot. Slots are numbered threads first, then cores, modules, dies,
    /// sockets, as QEMU numbers `cpu-index`.
    pub fn position(&self, index: VcpuIndex) -> Result<TopologyPosition, TopologyError> {
        if index.0 >= self.max_cpus {
            return Err(TopologyError::IndexOutOfRange {
                index: index.0,
                max_cpus: self.max_cpus,
            });
        }
        let mut i = index.0;
        let thread = i % self.threads;
        i /= self.threads;
        let core = i % self.cores;
        i /= self.cores;
        let module = i % self.modules;
        i /= self.modules;
        let die = i % self.dies;
        let socket = i / self.dies;
        Ok(TopologyPosition {
            socket,
            die,
            module,
            core,
            thread,
        })
    }

    /// Slot index of a position; the inverse of [`CpuTopology::position`].
    pub fn index_of(&self, p: TopologyPosition) -> Result<VcpuIndex, TopologyError> {
        if p.socket >= self.sockets
            || p.die >= self.dies
            || p.module >= self.modules
            || p.core >= self.cores
            || p.thread >= self.threads
        {
            return Err(TopologyError::PositionOutOfRange { position: p });
        }
        let i = (((p.socket * self.dies + p.die) * self.modules + p.module) * self.cores + p.core)
            * self.threads
            + p.thread;
        Ok(VcpuIndex(i))
    }

    /// The packed APIC-id layout of this topology.
    pub fn apic_layout(&self) -> ApicIdLayout {
        ApicIdLayout::new(self)
    }
}

/// Bits needed to hold `0..count`: `ceil(log2(count))`, 0 for a count of 1.
pub fn level_width(count: u32) -> u32 {
    if count <= 1 {
        0
    } else {
        32 - (count - 1).leading_zeros()
    }
}

/// QEMU's packed APIC-id layout (`include/hw/i386/topology.h`):
/// `id = thread | core << core_shift | module << module_shift | die << die_shift |
/// socket << socket_shift`, each level `ceil(log2(count))` bits wide. Non-power-of-two
/// counts leave holes in the id space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ApicIdLayout {
    /// Bits of the thread id (also the shift of the core id).
    pub thread_bits: u32,
    /// Bits of the core id.
    pub core_bits: u32,
    /// Bits of the module id.
    pub module_bits: u32,
    /// Bits of the die id.
    pub die_bits: u32,
    topo: CpuTopology,
}

impl ApicIdLayout {
    /// Layout for a topology.
    pub fn new(topo: &CpuTopology) -> Self {
        Self {
            thread_bits: level_width(topo.threads),
            core_bits: level_width(topo.cores),
            module_bits: level_width(topo.modules),
            die_bits: level_width(topo.dies),
            topo: *topo,
        }
    }
    /// Shift of the core id (= thread bits): CPUID 0xB subleaf 0 `EAX[4:0]`.
    pub fn core_shift(&self) -> u32 {
        self.thread_bits
    }
    /// Shift of the module id.
    pub fn module_shift(&self) -> u32 {
        self.core_shift() + self.core_bits
    }
    /// Shift of the die id.
    pub fn die_shift(&self) -> u32 {
        self.module_shift() + self.module_bits
    }
    /// Shift of the package id: CPUID 0xB last subleaf `EAX[4:0]`, AMD ApicIdSize.
    pub fn socket_shift(&self) -> u32 {
        self.die_shift() + self.die_bits
    }

    /// APIC id of a position. The position's components must be within the topology's
    /// counts (as [`CpuTopology::position`] returns them); larger ones alias other ids.
    pub fn apic_id_of(&self, p: TopologyPosition) -> ApicId {
        ApicId(
            p.thread
                | p.core << self.core_shift()
                | p.module << self.module_shift()
                | p.die << self.die_shift()
                | p.socket.checked_shl(self.socket_shift()).unwrap_or(0),
        )
    }

    /// APIC id of a slot.
    pub fn apic_id(&self, index: VcpuIndex) -> Result<ApicId, TopologyError> {
        Ok(self.apic_id_of(self.topo.position(index)?))
    }

    /// Position encoded in an APIC id, or an error for an id that falls in a hole of
    /// the layout or beyond the last socket.
    pub fn position_of(&self, id: ApicId) -> Result<TopologyPosition, TopologyError> {
        // Widths are at most 31 below the socket level (checked by CpuTopology::new).
        let mask = |bits: u32| ((1u64 << bits) - 1) as u32;
        let p = TopologyPosition {
            thread: id.0 & mask(self.thread_bits),
            core: (id.0 >> self.core_shift()) & mask(self.core_bits),
            module: (id.0 >> self.module_shift()) & mask(self.module_bits),
            die: (id.0 >> self.die_shift()) & mask(self.die_bits),
            socket: id.0.checked_shr(self.socket_shift()).unwrap_or(0),
        };
        self.topo.index_of(p)?;
        Ok(p)
    }

    /// Slot index of an APIC id.
    pub fn index_of(&self, id: ApicId) -> Result<VcpuIndex, TopologyError> {
        self.topo.index_of(self.position_of(id)?)
    }

    /// Largest APIC id of any slot (all levels at their last value).
    pub fn max_apic_id(&self) -> ApicId {
        let t = &self.topo;
        self.apic_id_of(TopologyPosition {
            socket: t.sockets - 1,
            die: t.dies - 1,
            module: t.modules - 1,
            core: t.cores - 1,
            thread: t.threads - 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths() {
        assert_eq!(
            [1, 2, 3, 4, 5, 8, 9].map(level_width),
            [0, 1, 2, 2, 3, 3, 4]
        );
    }

    #[test]
    fn qemu_sparse_ids_for_three_cores() {
        // -smp 12,sockets=2,dies=2,cores=3: ids 0-2, 4-6, 8-10, 12-14.
        let t = CpuTopology::new(2, 2, 1, 3, 1, 12).unwrap();
        let l = t.apic_layout();
        let ids: Vec<u32> = t.slots().map(|i| l.apic_id(i).unwrap().0).collect();
        assert_eq!(ids, [0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14]);
        assert!(l.index_of(ApicId(3)).is_err());
        assert_eq!(l.index_of(ApicId(13)).unwrap(), VcpuIndex(10));
    }

    #[test]
    fn round_trip_smt() {
        let t = CpuTopology::new(2, 1, 1, 2, 2, 8).unwrap();
        let l = t.apic_layout();
        for i in t.slots() {
            let id = l.apic_id(i).unwrap();
            assert_eq!(l.index_of(id).unwrap(), i);
        }
        assert_eq!(l.socket_shift(), 2);
    }

    #[test]
    fn layouts_wider_than_32_bits_are_refused() {
        // 17 + 16 bits below the socket level: no x2APIC id can hold them.
        assert_eq!(
            CpuTopology::new(1, 1, 1, 32769, 65537, 1),
            Err(TopologyError::ApicIdTooWide { bits: 33 })
        );
        let e = CpuTopology::new(65, 65, 65, 65, 65, 1).unwrap_err();
        assert_eq!(e, TopologyError::ApicIdTooWide { bits: 35 });
        // 31 bits below the socket level and one socket is the widest allowed.
        let t = CpuTopology::new(1, 1, 1, 1 << 16, 1 << 15, 1).unwrap();
        assert_eq!(t.apic_layout().socket_shift(), 31);
    }

    #[test]
    fn zero_level_is_an_error() {
        assert_eq!(
            CpuTopology::new(1, 1, 1, 0, 1, 1),
            Err(TopologyError::ZeroLevel { level: "cores" })
        );
    }
}

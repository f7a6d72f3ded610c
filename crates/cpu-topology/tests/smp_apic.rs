//! Property tests for QEMU's packed APIC-id layout over topologies the `-smp` parser
//! produces: index -> id -> index round trips, ordering, uniqueness, holes, and when ids
//! above the xAPIC range appear.

use std::collections::BTreeSet;

use cpu_topology::smp::parse_smp;
use cpu_topology::{ApicId, CpuTopology, VcpuIndex, MAX_XAPIC_ID};
use proptest::prelude::*;

/// Topologies up to a few thousand slots, including non-power-of-two levels.
fn topology() -> impl Strategy<Value = CpuTopology> {
    (1u32..=5, 1u32..=3, 1u32..=3, 1u32..=13, 1u32..=4)
        .prop_map(|(s, d, m, c, t)| CpuTopology::new(s, d, m, c, t, s * d * m * c * t).unwrap())
}

/// Bits QEMU gives a level of `n` entries.
fn width(n: u32) -> u32 {
    n.next_power_of_two().trailing_zeros()
}

fn ids(t: &CpuTopology) -> Vec<u32> {
    let l = t.apic_layout();
    t.slots().map(|i| l.apic_id(i).unwrap().0).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn index_to_id_to_index(t in topology()) {
        let l = t.apic_layout();
        for i in t.slots() {
            let id = l.apic_id(i).unwrap();
            prop_assert_eq!(l.index_of(id).unwrap(), i);
            prop_assert_eq!(l.position_of(id).unwrap(), t.position(i).unwrap());
        }
        prop_assert!(l.apic_id(VcpuIndex(t.max_cpus())).is_err());
    }

    #[test]
    fn ids_strictly_increase_and_are_unique(t in topology()) {
        let ids = ids(&t);
        prop_assert!(ids.windows(2).all(|w| w[0] < w[1]), "{:?}", ids);
        prop_assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len());
    }

    #[test]
    fn max_apic_id_is_the_last_and_largest(t in topology()) {
        let l = t.apic_layout();
        let ids = ids(&t);
        let last = *ids.last().unwrap();
        prop_assert_eq!(l.max_apic_id(), ApicId(last));
        prop_assert_eq!(ids.iter().max(), Some(&last));
        // x2APIC ids appear exactly when the layout's largest id needs them.
        prop_assert_eq!(
            ids.iter().any(|&id| id > MAX_XAPIC_ID),
            l.max_apic_id().0 > MAX_XAPIC_ID
        );
        // Packing never needs more than the rounded-up level sizes, and never fewer ids
        // than slots.
        let bits = width(t.sockets()) + width(t.dies()) + width(t.modules())
            + width(t.cores()) + width(t.threads());
        prop_assert!(u64::from(last) < 1u64 << bits || bits == 0);
        prop_assert!(last >= t.max_cpus() - 1);
        prop_assert_eq!(l.socket_shift(), bits - width(t.sockets()));
    }

    #[test]
    fn power_of_two_levels_give_dense_ids(
        s in 1u32..=8, d in 0u32..=2, m in 0u32..=1, c in 0u32..=5, th in 0u32..=1,
    ) {
        // Sockets need not be a power of two: they are the top level.
        let t = CpuTopology::new(s, 1 << d, 1 << m, 1 << c, 1 << th, 1).unwrap();
        prop_assert_eq!(ids(&t), (0..t.max_cpus()).collect::<Vec<_>>());
        // So ids above 254 appear only with more than 255 slots.
        prop_assert_eq!(t.apic_layout().max_apic_id().0 > MAX_XAPIC_ID, t.max_cpus() > 255);
    }

    #[test]
    fn position_of_rejects_holes(t in topology()) {
        let l = t.apic_layout();
        let valid: BTreeSet<u32> = ids(&t).into_iter().collect();
        // Every id up to a little past the end: valid ones map back, the rest are holes.
        for id in 0..=l.max_apic_id().0 + 4 {
            let r = l.index_of(ApicId(id));
            prop_assert_eq!(r.is_ok(), valid.contains(&id), "id {}: {:?}", id, r);
        }
        prop_assert!(l.position_of(ApicId(u32::MAX)).is_err());
    }
}

#[test]
fn qemu_example_with_holes() {
    // QEMU's documented layout for -smp 12,sockets=2,dies=2,cores=3.
    let t = parse_smp("12,sockets=2,dies=2,cores=3").unwrap();
    assert_eq!(ids(&t), [0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14]);
    let l = t.apic_layout();
    for hole in [3, 7, 11, 15, 16] {
        assert!(l.position_of(ApicId(hole)).is_err(), "{hole}");
    }
}

#[test]
fn x2apic_needed_only_past_254() {
    // 255 slots fit the xAPIC range; 3 sockets of 100 cores do not (cores take 7 bits).
    let t = parse_smp("255").unwrap();
    assert_eq!(t.apic_layout().max_apic_id(), ApicId(254));
    let t = parse_smp("sockets=3,cores=100").unwrap();
    assert_eq!(t.apic_layout().max_apic_id(), ApicId(2 * 128 + 99));
    let t = parse_smp("sockets=2,cores=100").unwrap();
    assert_eq!(t.apic_layout().max_apic_id(), ApicId(128 + 99));
}

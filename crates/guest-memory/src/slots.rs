//! KVM user memory slots for guest RAM: the only module of this crate with `unsafe` code.
//!
//! `KVM_SET_USER_MEMORY_REGION` gives the kernel a host-virtual address range; from then on
//! the guest reads and writes that range. If the process unmapped it while the slot still
//! existed, and later mapped something else there, the guest would write into unrelated
//! process memory. [`MemorySlots`] rules that out by construction:
//!
//! 1. It holds a reference (`Arc<MmapRegion>`) to every mapping it registered, so the
//!    mapping cannot be unmapped while the `MemorySlots` exists, whatever happens to the
//!    [`GuestRam`](crate::ram::GuestRam) it came from.
//! 2. It holds the VM (`Arc<VmFd>`), so its slots are deleted on the VM they were created
//!    on, and the VM cannot be closed underneath it.
//! 3. Its `Drop` deletes each slot (`memory_size = 0`) *before* releasing that slot's
//!    mapping. If the kernel refuses the deletion, the mapping is leaked on purpose: a leak
//!    costs memory, a dangling slot costs memory safety. `mem::forget` of a `MemorySlots`
//!    likewise leaks the mappings, which is safe.

use std::mem::ManuallyDrop;
use std::sync::Arc;

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Cap, VmFd};
use thiserror::Error;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, MmapRegion};

use crate::ram::HostAddress;

/// A KVM memory slot number (`kvm_userspace_memory_region.slot`, address space 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotId(pub u32);

/// Why registering or deleting a KVM memory slot failed.
#[derive(Debug, Error)]
pub enum SlotError {
    /// More slots than KVM_CAP_NR_MEMSLOTS allows.
    #[error("{count} memory slots from slot {first} exceed the VM's limit of {limit}")]
    TooManySlots {
        /// First slot asked for.
        first: u32,
        /// Slots needed.
        count: usize,
        /// KVM_CAP_NR_MEMSLOTS.
        limit: usize,
    },
    /// KVM_SET_USER_MEMORY_REGION failed when adding a slot.
    #[error("KVM_SET_USER_MEMORY_REGION for slot {slot} at guest-physical {gpa:#x} (size {size:#x}) failed")]
    Register {
        /// The slot.
        slot: u32,
        /// Its guest-physical start.
        gpa: u64,
        /// Its size.
        size: u64,
        /// The kernel's errno.
        #[source]
        source: kvm_ioctls::Error,
    },
}

/// One registered slot: what KVM was told, and the mapping it points into.
#[derive(Debug)]
struct Slot {
    region: kvm_userspace_memory_region,
    mapping: ManuallyDrop<Arc<MmapRegion>>,
}

/// Guest RAM registered with a VM as KVM memory slots. Deletes the slots when dropped, and
/// keeps the host mappings alive until then (see the module docs for why that matters).
#[derive(Debug)]
pub struct MemorySlots {
    vm: Arc<VmFd>,
    slots: Vec<Slot>,
}

/// Summary of one registered slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotInfo {
    /// The slot number.
    pub id: SlotId,
    /// First guest-physical address.
    pub gpa: GuestAddress,
    /// Size in bytes.
    pub size: u64,
    /// Host address the slot starts at.
    pub host: HostAddress,
}

impl MemorySlots {
    /// Registers every region of `memory` as slots `first..first + n`, in address order.
    /// On failure, slots registered so far are deleted again.
    pub(crate) fn register(
        vm: Arc<VmFd>,
        memory: &GuestMemoryMmap,
        first: SlotId,
    ) -> Result<Self, SlotError> {
        let count = memory.num_regions();
        let limit = usize::try_from(vm.check_extension_int(Cap::NrMemslots))
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or(32);
        if first.0 as usize + count > limit {
            return Err(SlotError::TooManySlots {
                first: first.0,
                count,
                limit,
            });
        }
        let mut registered = Self {
            vm,
            slots: Vec::with_capacity(count),
        };
        for (i, guest_region) in memory.iter().enumerate() {
            let mapping = guest_region.get_mmap();
            let region = kvm_userspace_memory_region {
                // `first + count <= limit` was checked above and `limit` is an i32.
                slot: first.0 + i as u32,
                flags: 0,
                guest_phys_addr: guest_region.start_addr().0,
                memory_size: guest_region.len(),
                userspace_addr: mapping.as_ptr() as u64,
            };
            // SAFETY: `userspace_addr..+memory_size` is exactly the live mapping `mapping`
            // (vm-memory sizes the MmapRegion to the guest region). The mapping outlives the
            // slot: the Arc is stored in `registered.slots` right below, before anything can
            // fail, and `Drop` deletes the slot before releasing the Arc (or leaks the Arc
            // if the deletion fails). Guest regions of one GuestMemoryMmap never overlap, and
            // KVM itself rejects (EEXIST) overlap with slots registered by others.
            let result = unsafe { registered.vm.set_user_memory_region(region) };
            if let Err(source) = result {
                // `registered` is dropped here and deletes the slots added so far.
                return Err(SlotError::Register {
                    slot: region.slot,
                    gpa: region.guest_phys_addr,
                    size: region.memory_size,
                    source,
                });
            }
            registered.slots.push(Slot {
                region,
                mapping: ManuallyDrop::new(mapping),
            });
        }
        Ok(registered)
    }

    /// The slot numbers, in address order.
    pub fn ids(&self) -> Vec<SlotId> {
        self.slots.iter().map(|s| SlotId(s.region.slot)).collect()
    }

    /// What each slot maps, in address order.
    pub fn iter(&self) -> impl Iterator<Item = SlotInfo> + '_ {
        self.slots.iter().map(|s| SlotInfo {
            id: SlotId(s.region.slot),
            gpa: GuestAddress(s.region.guest_phys_addr),
            size: s.region.memory_size,
            host: HostAddress(s.region.userspace_addr as usize),
        })
    }

    /// Number of registered slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no slot is registered.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The VM the slots belong to.
    pub fn vm(&self) -> &Arc<VmFd> {
        &self.vm
    }
}

impl Drop for MemorySlots {
    fn drop(&mut self) {
        for slot in self.slots.iter_mut().rev() {
            let delete = kvm_userspace_memory_region {
                memory_size: 0,
                ..slot.region
            };
            // SAFETY: a zero `memory_size` deletes the slot; KVM no longer accesses
            // `userspace_addr` afterwards, so no mapping has to stay valid for it.
            let result = unsafe { self.vm.set_user_memory_region(delete) };
            match result {
                // SAFETY: the slot is gone, so the mapping may be released; each Slot's
                // `mapping` is dropped exactly once, here.
                Ok(()) => unsafe { ManuallyDrop::drop(&mut slot.mapping) },
                Err(e) => log::error!(
                    "deleting KVM memory slot {} failed ({e}); leaking its mapping at {:#x}",
                    slot.region.slot,
                    slot.region.userspace_addr
                ),
            }
        }
    }
}

//! The one DMA seam: every device reaches guest memory through its [`DmaMemory`].
//!
//! - [`DmaAddressSpace`] says where a device's addresses point: guest-physical memory
//!   ([`GuestPhysical`]) or, for a device behind the virtio-iommu, its endpoint's domain.
//! - [`DeviceTlb`] is the device's IOTLB: translations cached until the IOMMU invalidates
//!   them, and the lock that pins a translation while its copy is in flight, so an
//!   invalidation returns only once no access translated before it can still land. The
//!   transport uses the same lock to pause a device's DMA (Bus Master Enable cleared) and to
//!   revoke it (reset), without waiting for the device's worker.
//! - [`DmaMemory`] is guest RAM as one activation of a device sees it: a `GuestMemory`, so
//!   virtio-queue and the device models use it as any other.
//!
//! Whether a device is translated is fixed when the VM is built ([`DeviceDma`]), never by
//! what its driver negotiates.
//!
//! # Locking
//!
//! - An access holds its device's IOTLB read lock for one bounded memcpy, and an interrupt
//!   holds it while it raises the MSI (which takes the MSI-X lock under it). Nothing that
//!   blocks (disk I/O, another device's lock) runs under it.
//! - A miss fills under the IOTLB write lock, and the virtio-iommu's fill takes its domains
//!   read lock under that: IOTLB, then domains.
//! - The virtio-iommu changes its domains under the domains write lock, releases it, and
//!   only then takes the IOTLB write locks of the endpoints it made stale. It never holds
//!   both, so the two orders cannot deadlock, and a fill that read the old state lands
//!   before the invalidation that removes it.
//! - The transport takes the IOTLB write lock under its function's lock (pause, resume,
//!   revoke); the worker never takes a function's lock.

mod entries;
mod memory;
mod space;
mod tlb;

use std::sync::Arc;

use vm_memory::GuestMemoryMmap;

pub use entries::{TlbEntries, TlbEntry};
pub use memory::DmaMemory;
pub use space::{DmaAddressSpace, GuestPhysical};
pub use tlb::{DeviceTlb, DmaRevoked};

/// Why a translation failed; the address space reports the fault to the guest itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DmaFault {
    #[error("IOVA {iova:#x} is not mapped")]
    Unmapped { iova: u64 },
    #[error("IOVA {iova:#x} is mapped without the needed permission")]
    Forbidden { iova: u64 },
    #[error("the endpoint is not attached to a domain and bypass is off")]
    Blocked { iova: u64 },
}

impl DmaFault {
    pub fn iova(&self) -> u64 {
        match *self {
            DmaFault::Unmapped { iova }
            | DmaFault::Forbidden { iova }
            | DmaFault::Blocked { iova } => iova,
        }
    }
}

/// How one device reaches guest memory, decided when the VM is built.
#[derive(Debug, Clone)]
pub struct DeviceDma {
    tlb: Arc<DeviceTlb>,
    /// None: guest-physical addresses.
    space: Option<Arc<dyn DmaAddressSpace>>,
}

impl DeviceDma {
    /// A device whose addresses are guest-physical.
    pub fn untranslated() -> Self {
        Self {
            tlb: DeviceTlb::new(),
            space: None,
        }
    }

    /// A device behind an IOMMU: `space` translates, `tlb` is what the IOMMU invalidates.
    pub fn translated(tlb: Arc<DeviceTlb>, space: Arc<dyn DmaAddressSpace>) -> Self {
        Self {
            tlb,
            space: Some(space),
        }
    }

    /// Whether the device sits behind an IOMMU (and so must negotiate ACCESS_PLATFORM).
    pub fn is_translated(&self) -> bool {
        self.space.is_some()
    }

    pub fn tlb(&self) -> &Arc<DeviceTlb> {
        &self.tlb
    }

    /// Memory for the device's current activation; it stops working at the next
    /// [`DeviceTlb::revoke`].
    pub fn memory(&self, ram: GuestMemoryMmap) -> DmaMemory {
        DmaMemory::new(ram, self.tlb.clone(), self.space.clone())
    }
}

/// Memory for a device whose addresses are guest-physical (tests, benchmarks).
pub fn guest_physical_memory(ram: GuestMemoryMmap) -> DmaMemory {
    DeviceDma::untranslated().memory(ram)
}

#[cfg(test)]
mod tests;

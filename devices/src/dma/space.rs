//! Where a device's DMA addresses point.

use std::fmt::Debug;

use vm_memory::Permissions;

use super::entries::TlbEntries;
use super::DmaFault;

/// The translations a device's IOTLB is filled from.
pub trait DmaAddressSpace: Send + Sync + Debug {
    /// Puts translations covering `[iova, iova + len)` for `access` into `tlb`, or returns
    /// why there are none (after reporting the fault to whoever must hear of it). Called with
    /// the device's IOTLB write-locked: the state read here cannot be invalidated before its
    /// entries land, because every invalidation takes that lock after changing the state.
    fn fill(
        &self,
        tlb: &mut TlbEntries,
        iova: u64,
        len: u64,
        access: Permissions,
    ) -> Result<(), DmaFault>;

    /// [`DmaAddressSpace::fill`] for a transaction that may carry a PASID. An address
    /// space that knows no PASIDs refuses every transaction that carries one.
    fn fill_pasid(
        &self,
        tlb: &mut TlbEntries,
        pasid: Option<u32>,
        iova: u64,
        len: u64,
        access: Permissions,
    ) -> Result<(), DmaFault> {
        match pasid {
            None => self.fill(tlb, iova, len, access),
            Some(_) => Err(DmaFault::Blocked { iova }),
        }
    }
}

/// Guest-physical addressing as an address space: identity over everything, for a device
/// that sits behind an IOMMU in bypass (tests). Untranslated devices skip the IOTLB.
#[derive(Debug)]
pub struct GuestPhysical;

impl DmaAddressSpace for GuestPhysical {
    fn fill(
        &self,
        tlb: &mut TlbEntries,
        iova: u64,
        len: u64,
        _: Permissions,
    ) -> Result<(), DmaFault> {
        if iova.checked_add(len).is_none() {
            return Err(DmaFault::Unmapped { iova });
        }
        tlb.insert(0, u64::MAX, 0, Permissions::ReadWrite);
        Ok(())
    }
}

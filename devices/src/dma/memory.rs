//! Guest memory as one activation of a device sees it.
//!
//! Every access pins the device's IOTLB (see [`DeviceTlb`]) from its lookup until its copy
//! is done: the pin lives in the slice iterator vm-memory's `Bytes` methods drive. A device
//! whose addresses are guest-physical skips the lookup but still pins, so the transport can
//! pause and revoke its DMA the same way.

use std::sync::Arc;

use vm_memory::bitmap::BS;
use vm_memory::guest_memory::{GuestMemoryBackendSliceIterator, GuestMemorySliceIterator};
use vm_memory::{
    GuestAddress, GuestMemory, GuestMemoryBackend, GuestMemoryError, GuestMemoryMmap,
    GuestMemoryResult, Permissions, VolatileSlice,
};

use super::tlb::TlbPin;
use super::{DeviceTlb, DmaAddressSpace, DmaFault, TlbEntry};

/// A lookup that misses is filled and looked up again; a second miss means the address
/// space changed in between, and the access fails.
const LOOKUPS: usize = 2;

#[derive(Debug, Clone)]
pub struct DmaMemory {
    ram: GuestMemoryMmap,
    tlb: Arc<DeviceTlb>,
    /// None: addresses are guest-physical.
    space: Option<Arc<dyn DmaAddressSpace>>,
    generation: u64,
    /// The PASID this view's transactions carry.
    pasid: Option<u32>,
}

fn refused(addr: GuestAddress, why: impl std::fmt::Display) -> GuestMemoryError {
    GuestMemoryError::IommuError(vm_memory::iommu::Error::CannotResolve {
        iova_range: vm_memory::iommu::IovaRange {
            base: addr,
            length: 0,
        },
        reason: why.to_string(),
    })
}

impl DmaMemory {
    pub(super) fn new(
        ram: GuestMemoryMmap,
        tlb: Arc<DeviceTlb>,
        space: Option<Arc<dyn DmaAddressSpace>>,
    ) -> Self {
        let generation = tlb.generation();
        Self {
            ram,
            tlb,
            space,
            generation,
            pasid: None,
        }
    }

    /// The same memory as transactions tagged with `pasid` see it (PCIe PASID prefix);
    /// only an address space that knows PASIDs translates them.
    pub fn with_pasid(&self, pasid: Option<u32>) -> Self {
        Self {
            pasid,
            ..self.clone()
        }
    }

    pub fn pasid(&self) -> Option<u32> {
        self.pasid
    }

    /// Runs `f` (an interrupt: a memory write too) only while this activation may still
    /// reach the guest; waits while its DMA is paused.
    pub fn while_live<R>(&self, f: impl FnOnce() -> R) -> Option<R> {
        self.tlb.while_live(self.generation, f)
    }

    /// Whether the device was reset since this memory was handed out.
    pub fn is_revoked(&self) -> bool {
        self.tlb.generation() != self.generation
    }

    /// Whether `[addr, addr + count)` translates for `access` now, the question of a PCIe
    /// ATS Translation Request: the IOTLB is filled as for an access, nothing is copied.
    pub fn translates(&self, addr: u64, count: u64, access: Permissions) -> bool {
        self.pin(addr, count, access).is_ok()
    }

    /// Pins the IOTLB with `[addr, addr + count)` translated for `access`; returns the one
    /// entry that holds it all, when one does.
    fn pin(
        &self,
        addr: u64,
        count: u64,
        access: Permissions,
    ) -> Result<(TlbPin<'_>, Option<TlbEntry>), GuestMemoryError> {
        let Some(space) = &self.space else {
            let pin = self.tlb.pin(self.generation);
            return pin
                .map(|p| (p, None))
                .map_err(|e| refused(GuestAddress(addr), e));
        };
        if addr.checked_add(count).is_none() {
            // Nothing ends past 2^64; the address space reports the fault.
            let fault = space.fill_pasid(&mut Default::default(), self.pasid, addr, count, access);
            let why = fault.err().unwrap_or(DmaFault::Unmapped { iova: addr });
            return Err(refused(GuestAddress(addr), why));
        }
        for _ in 0..LOOKUPS {
            let pinned = self
                .tlb
                .pin(self.generation)
                .map_err(|e| refused(GuestAddress(addr), e))?;
            if pinned.pasid() == self.pasid {
                if count > 0 {
                    if let Some(&entry) = pinned.entries().single(addr, count, access) {
                        return Ok((pinned, Some(entry)));
                    }
                }
                if pinned.entries().covers(addr, count, access) {
                    return Ok((pinned, None));
                }
            }
            drop(pinned);
            self.tlb
                .fill(self.generation, self.pasid, |entries| {
                    space.fill_pasid(entries, self.pasid, addr, count, access)
                })
                .map_err(|e| refused(GuestAddress(addr), e))?
                .map_err(|fault| refused(GuestAddress(addr), fault))?;
        }
        Err(refused(
            GuestAddress(addr),
            "the translation changed while it was filled",
        ))
    }
}

/// The slices of one access, holding its pin until the last one is copied.
pub struct DmaSlices<'a> {
    pin: Option<TlbPin<'a>>,
    translated: bool,
    /// The entry holding the whole access, found when it was pinned.
    whole: Option<TlbEntry>,
    ram: &'a GuestMemoryMmap,
    /// Next IOVA and bytes left to translate.
    iova: u64,
    left: u64,
    current: Option<GuestMemoryBackendSliceIterator<'a, GuestMemoryMmap>>,
}

impl<'a> Iterator for DmaSlices<'a> {
    type Item = GuestMemoryResult<VolatileSlice<'a, BS<'a, ()>>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.current.as_mut().and_then(Iterator::next) {
                if item.is_err() {
                    self.finish();
                }
                return Some(item);
            }
            if self.left == 0 {
                self.finish();
                return None;
            }
            let pin = self.pin.as_ref()?;
            let (gpa, len) = if let Some(entry) = self.whole.take() {
                (entry.gpa_of(self.iova), self.left)
            } else if self.translated {
                // Covered: checked when the access was pinned, and nothing can change it
                // while the pin is held.
                let entry = pin.entries().find(self.iova)?;
                let len = (entry.last - self.iova).saturating_add(1).min(self.left);
                (entry.gpa_of(self.iova), len)
            } else {
                (self.iova, self.left)
            };
            self.iova = self.iova.wrapping_add(len);
            self.left -= len;
            self.current = Some(GuestMemoryBackend::get_slices(
                self.ram,
                GuestAddress(gpa),
                len as usize,
            ));
        }
    }
}

impl DmaSlices<'_> {
    /// Ends the access: no more slices, and the pin goes.
    fn finish(&mut self) {
        self.left = 0;
        self.current = None;
        self.pin = None;
    }
}

impl std::iter::FusedIterator for DmaSlices<'_> {}

impl<'a> GuestMemorySliceIterator<'a, BS<'a, ()>> for DmaSlices<'a> {}

impl GuestMemory for DmaMemory {
    type PhysicalMemory = GuestMemoryMmap;
    type Bitmap = ();

    fn check_range(&self, addr: GuestAddress, count: usize, access: Permissions) -> bool {
        self.get_slices(addr, count, access)
            .is_ok_and(|mut slices| slices.all(|s| s.is_ok()))
    }

    fn get_slices<'a>(
        &'a self,
        addr: GuestAddress,
        count: usize,
        access: Permissions,
    ) -> GuestMemoryResult<impl GuestMemorySliceIterator<'a, BS<'a, ()>>> {
        let (pin, whole) = self.pin(addr.0, count as u64, access)?;
        Ok(DmaSlices {
            pin: Some(pin),
            translated: self.space.is_some(),
            whole,
            ram: &self.ram,
            iova: addr.0,
            left: count as u64,
            current: None,
        })
    }
}

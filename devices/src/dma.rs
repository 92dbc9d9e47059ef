//! The one DMA seam: every device reaches guest memory through [`DmaMemory`].
//!
//! `DmaMemory` is vm-memory's `IommuMemory` over the guest's RAM. For a device that is not
//! behind the virtio-iommu (or whose driver did not negotiate VIRTIO_F_ACCESS_PLATFORM) the
//! IOMMU is disabled and addresses are guest-physical. For an endpoint behind it, each access
//! is translated IOVA -> GPA by the endpoint's [`EndpointTranslate`] (its domain's mappings,
//! or identity in bypass), with the mapping's permissions enforced. Devices never see which.

use std::fmt::Debug;
use std::sync::Arc;

use vm_memory::iommu::{Error as IommuError, IotlbIterator, IovaRange};
use vm_memory::{GuestAddress, GuestMemoryMmap, Iommu, IommuMemory, Iotlb, Permissions};

/// One contiguous translated range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaMapping {
    pub iova: u64,
    pub gpa: u64,
    pub len: u64,
    pub access: Permissions,
}

/// Why a translation failed; the translator reports the fault to the guest itself.
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

/// Translates one endpoint's DMA; implemented by the virtio-iommu.
pub trait EndpointTranslate: Send + Sync + Debug {
    /// Mappings that together cover `[iova, iova + len)` for `access`, in IOVA order.
    fn translate(
        &self,
        iova: u64,
        len: u64,
        access: Permissions,
    ) -> Result<Vec<DmaMapping>, DmaFault>;
}

/// The `vm_memory::Iommu` of one device: its endpoint's translation, if it has one.
#[derive(Debug, Clone, Default)]
pub struct DmaTranslator {
    endpoint: Option<Arc<dyn EndpointTranslate>>,
}

impl DmaTranslator {
    pub fn new(endpoint: Option<Arc<dyn EndpointTranslate>>) -> Self {
        Self { endpoint }
    }
}

impl Iommu for DmaTranslator {
    // A private IOTLB per access holds exactly the mappings the access needs, so an UNMAP
    // never leaves a stale entry behind.
    type IotlbGuard<'a> = Box<Iotlb>;

    fn translate(
        &self,
        iova: GuestAddress,
        length: usize,
        access: Permissions,
    ) -> Result<IotlbIterator<Box<Iotlb>>, IommuError> {
        let range = IovaRange { base: iova, length };
        let endpoint = self
            .endpoint
            .as_ref()
            .ok_or_else(|| IommuError::IommuMisconfigured {
                reason: "device has no endpoint translation".into(),
            })?;
        let mappings = endpoint
            .translate(iova.0, length as u64, access)
            .map_err(|fault| IommuError::CannotResolve {
                iova_range: range.clone(),
                reason: fault.to_string(),
            })?;
        let mut tlb = Box::new(Iotlb::new());
        for m in mappings {
            tlb.set_mapping(
                GuestAddress(m.iova),
                GuestAddress(m.gpa),
                m.len as usize,
                m.access,
            )?;
        }
        Iotlb::lookup(tlb, iova, length, access).map_err(|_| IommuError::CannotResolve {
            iova_range: range,
            reason: "translation does not cover the access".into(),
        })
    }
}

/// Guest memory as one device sees it.
pub type DmaMemory = IommuMemory<GuestMemoryMmap, DmaTranslator>;

/// Memory for a device: translated through `endpoint` when it has one.
pub fn dma_memory(ram: GuestMemoryMmap, endpoint: Option<Arc<dyn EndpointTranslate>>) -> DmaMemory {
    let translated = endpoint.is_some();
    IommuMemory::new(ram, DmaTranslator::new(endpoint), translated, ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    /// Maps IOVA 0x10000..0x12000 to GPA 0x4000, read-only past 0x11000.
    #[derive(Debug)]
    struct TwoPages;

    impl EndpointTranslate for TwoPages {
        fn translate(
            &self,
            iova: u64,
            len: u64,
            _: Permissions,
        ) -> Result<Vec<DmaMapping>, DmaFault> {
            let end = iova + len;
            if iova < 0x10000 || end > 0x12000 {
                return Err(DmaFault::Unmapped { iova });
            }
            Ok(vec![
                DmaMapping {
                    iova: 0x10000,
                    gpa: 0x4000,
                    len: 0x1000,
                    access: Permissions::ReadWrite,
                },
                DmaMapping {
                    iova: 0x11000,
                    gpa: 0x5000,
                    len: 0x1000,
                    access: Permissions::Read,
                },
            ])
        }
    }

    fn ram() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap()
    }

    #[test]
    fn untranslated_memory_is_guest_physical() {
        let mem = dma_memory(ram(), None);
        mem.write_obj(0xabcdu32, GuestAddress(0x4000)).unwrap();
        assert_eq!(mem.read_obj::<u32>(GuestAddress(0x4000)).unwrap(), 0xabcd);
    }

    #[test]
    fn translated_access_spans_mappings_and_respects_permissions() {
        let ram = ram();
        let mem = dma_memory(ram.clone(), Some(Arc::new(TwoPages)));
        mem.write_obj(0x1122_3344u32, GuestAddress(0x10ffe))
            .unwrap_err(); // crosses into read-only
        mem.write_obj(0x1122u16, GuestAddress(0x10ff0)).unwrap();
        assert_eq!(ram.read_obj::<u16>(GuestAddress(0x4ff0)).unwrap(), 0x1122);
        ram.write_obj(0x55u8, GuestAddress(0x5000)).unwrap();
        let mut buf = [0u8; 0x20];
        mem.read_slice(&mut buf, GuestAddress(0x10ff0)).unwrap();
        assert_eq!(buf[0x10], 0x55);
        assert!(mem.read_obj::<u8>(GuestAddress(0x12000)).is_err());
        assert!(mem.read_obj::<u8>(GuestAddress(0x4000)).is_err());
    }
}

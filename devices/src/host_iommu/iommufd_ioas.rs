//! An iommufd I/O address space (IOAS) as a host IOMMU: the devices bound to the iommufd
//! and attached to this IOAS reach what it maps.

use std::io;
use std::sync::Arc;

use iommufd_bindings::iommufd::{
    iommu_ioas_map, iommu_ioas_unmap, iommufd_ioas_map_flags_IOMMU_IOAS_MAP_FIXED_IOVA,
    iommufd_ioas_map_flags_IOMMU_IOAS_MAP_READABLE,
    iommufd_ioas_map_flags_IOMMU_IOAS_MAP_WRITEABLE,
};
use iommufd_ioctls::{IommuFd, IommufdIoas};

use super::iommufd_os_error;

use super::iommufd_iova_ranges::ioas_iova_ranges;
use super::{DmaAccess, HostIommu, HostIommuError, IovaRange};

pub struct IommufdIoasIommu {
    iommufd: Arc<IommuFd>,
    ioas: Arc<IommufdIoas>,
}

impl std::fmt::Debug for IommufdIoasIommu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IommufdIoasIommu")
            .field("ioas", &self.ioas.id())
            .finish()
    }
}

impl IommufdIoasIommu {
    /// Allocates a fresh IOAS on `iommufd`.
    pub fn new(iommufd: Arc<IommuFd>) -> io::Result<Self> {
        let ioas = IommufdIoas::new(iommufd.clone()).map_err(iommufd_os_error)?;
        Ok(Self::with_ioas(iommufd, Arc::new(ioas)))
    }

    pub fn with_ioas(iommufd: Arc<IommuFd>, ioas: Arc<IommufdIoas>) -> Self {
        Self { iommufd, ioas }
    }

    pub fn ioas(&self) -> &Arc<IommufdIoas> {
        &self.ioas
    }
}

impl HostIommu for IommufdIoasIommu {
    unsafe fn map(
        &self,
        iova: u64,
        host_addr: u64,
        len: u64,
        access: DmaAccess,
    ) -> Result<(), HostIommuError> {
        // FIXED_IOVA: the guest chose the IOVA; the kernel must not pick another.
        let mut flags = iommufd_ioas_map_flags_IOMMU_IOAS_MAP_FIXED_IOVA;
        if access.read {
            flags |= iommufd_ioas_map_flags_IOMMU_IOAS_MAP_READABLE;
        }
        if access.write {
            flags |= iommufd_ioas_map_flags_IOMMU_IOAS_MAP_WRITEABLE;
        }
        let map = iommu_ioas_map {
            size: std::mem::size_of::<iommu_ioas_map>() as u32,
            flags,
            ioas_id: self.ioas.id(),
            __reserved: 0,
            user_va: host_addr,
            length: len,
            iova,
        };
        self.iommufd
            .map_iommu_ioas(&map)
            .map_err(|e| HostIommuError::Map {
                iova,
                len,
                source: iommufd_os_error(e),
            })
    }

    fn unmap(&self, iova: u64, len: u64) -> Result<(), HostIommuError> {
        let mut unmap = iommu_ioas_unmap {
            size: std::mem::size_of::<iommu_ioas_unmap>() as u32,
            ioas_id: self.ioas.id(),
            iova,
            length: len,
        };
        self.iommufd
            .unmap_iommu_ioas(&mut unmap)
            .map_err(|e| HostIommuError::Unmap {
                iova,
                len,
                source: iommufd_os_error(e),
            })?;
        // The kernel writes back how much it unmapped.
        if unmap.length != len {
            return Err(HostIommuError::PartialUnmap {
                iova,
                len,
                done: unmap.length,
            });
        }
        Ok(())
    }

    fn iova_ranges(&self) -> Result<Vec<IovaRange>, HostIommuError> {
        ioas_iova_ranges(&*self.iommufd, self.ioas.id()).map_err(HostIommuError::IovaRanges)
    }
}

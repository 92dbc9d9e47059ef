//! The legacy VFIO type1 container as a host IOMMU. vfio-ioctls opens the container and
//! binds groups to it; the DMA calls are made here, because its own map always grants
//! read and write, and it does not read the usable IOVA ranges.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use vfio_ioctls::VfioContainer;
use vmm_sys_util::ioctl::{ioctl_with_mut_ptr, ioctl_with_mut_ref, ioctl_with_ref};

use super::vfio_iommu_info::{
    parse_iova_ranges, DmaMap, DmaUnmap, IommuInfo, VFIO_DMA_MAP_FLAG_READ,
    VFIO_DMA_MAP_FLAG_WRITE, VFIO_IOMMU_GET_INFO, VFIO_IOMMU_MAP_DMA, VFIO_IOMMU_UNMAP_DMA,
};
use super::{DmaAccess, HostIommu, HostIommuError, IovaRange};

pub struct VfioContainerIommu {
    container: Arc<VfioContainer>,
}

impl std::fmt::Debug for VfioContainerIommu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VfioContainerIommu")
            .field("fd", &self.container.as_raw_fd())
            .finish()
    }
}

impl VfioContainerIommu {
    /// `container` must have a group bound, so that its type1 IOMMU is set.
    pub fn new(container: Arc<VfioContainer>) -> Self {
        Self { container }
    }

    /// The IOMMU info with every capability, asking again with the size the kernel wants.
    fn info(&self) -> io::Result<Vec<u8>> {
        let mut argsz = std::mem::size_of::<IommuInfo>();
        loop {
            // u64 words keep the buffer aligned for the kernel's 64-bit fields.
            let mut words = vec![0u64; argsz.div_ceil(8)];
            let header = IommuInfo {
                argsz: argsz as u32,
                ..IommuInfo::default()
            };
            // SAFETY: `words` is at least `argsz` bytes and 8-byte aligned, IommuInfo is
            // plain data no larger than that, and the kernel writes at most `argsz` bytes.
            let ret = unsafe {
                let info = words.as_mut_ptr() as *mut IommuInfo;
                info.write(header);
                ioctl_with_mut_ptr(&*self.container, VFIO_IOMMU_GET_INFO(), info)
            };
            if ret < 0 {
                return Err(io::Error::last_os_error());
            }
            let wanted = u32::from_le(words[0] as u32) as usize;
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            if wanted <= argsz {
                return Ok(bytes[..argsz].to_vec());
            }
            argsz = wanted;
        }
    }
}

impl HostIommu for VfioContainerIommu {
    unsafe fn map(
        &self,
        iova: u64,
        host_addr: u64,
        len: u64,
        access: DmaAccess,
    ) -> Result<(), HostIommuError> {
        let mut flags = 0;
        if access.read {
            flags |= VFIO_DMA_MAP_FLAG_READ;
        }
        if access.write {
            flags |= VFIO_DMA_MAP_FLAG_WRITE;
        }
        let map = DmaMap {
            argsz: std::mem::size_of::<DmaMap>() as u32,
            flags,
            vaddr: host_addr,
            iova,
            size: len,
        };
        // SAFETY: the kernel only reads `map`; what `host_addr` may be is the caller's
        // promise (see HostIommu::map).
        let ret = unsafe { ioctl_with_ref(&*self.container, VFIO_IOMMU_MAP_DMA(), &map) };
        if ret < 0 {
            return Err(HostIommuError::Map {
                iova,
                len,
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    fn unmap(&self, iova: u64, len: u64) -> Result<(), HostIommuError> {
        let mut unmap = DmaUnmap {
            argsz: std::mem::size_of::<DmaUnmap>() as u32,
            flags: 0,
            iova,
            size: len,
        };
        // SAFETY: the kernel reads `unmap` and writes back its `size`.
        let ret =
            unsafe { ioctl_with_mut_ref(&*self.container, VFIO_IOMMU_UNMAP_DMA(), &mut unmap) };
        if ret < 0 {
            return Err(HostIommuError::Unmap {
                iova,
                len,
                source: io::Error::last_os_error(),
            });
        }
        if unmap.size != len {
            return Err(HostIommuError::PartialUnmap {
                iova,
                len,
                done: unmap.size,
            });
        }
        Ok(())
    }

    fn iova_ranges(&self) -> Result<Vec<IovaRange>, HostIommuError> {
        let info = self.info().map_err(HostIommuError::IovaRanges)?;
        Ok(parse_iova_ranges(&info).unwrap_or_else(|| {
            vec![IovaRange {
                start: 0,
                last: u64::MAX,
            }]
        }))
    }
}

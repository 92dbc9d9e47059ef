//! Host IOMMU back-ends: how guest memory is made reachable by a host (passthrough) device's
//! DMA. The virtio-iommu reaches the host only through [`HostIommu`], so the legacy VFIO
//! container, an iommufd IOAS and the test fake are interchangeable.
//!
//! - [`vfio_container`]: the VFIO type1 container (`/dev/vfio/vfio`),
//! - [`iommufd_ioas`]: an iommufd I/O address space (`/dev/iommu`),
//! - [`iommufd_faults`]: iommufd's fault queue and vEVENTQ records, read and answered,
//! - [`iommufd_nesting`]: whether a device's host IOMMU can take a guest's SMMUv3 stage 1,
//! - [`iommufd_selftest`]: the kernel's iommufd test driver, to run iommufd code without an
//!   IOMMU that nests,
//! - [`fake`]: a back-end that records calls and fails on request, for tests,
//! - [`guest_ram`]: from guest-physical addresses to the host addresses a back-end maps,
//! - [`iommufd_nested`]: the iommufd objects of nested translation (vIOMMU, vDEVICEs, nested HWPTs),
//! - [`iommufd_smmuv3`]: SMMUv3 data in iommufd's uAPI form (nested STEs, commands, hw_info),
//! - [`nested`]: nested translation (guest stage 1, host stage 2) behind [`nested::NestedHostIommu`],
//! - [`smmuv3`]: a software ARM SMMUv3, the nested back-end on hosts without one.

pub mod fake;
pub mod guest_ram;
pub mod iommufd_faults;
pub mod iommufd_ioas;
mod iommufd_iova_ranges;
pub mod iommufd_nested;
pub mod iommufd_nesting;
pub mod iommufd_selftest;
pub mod iommufd_smmuv3;
pub mod nested;
pub mod smmuv3;
pub mod vfio_container;
mod vfio_iommu_info;

use std::fmt::Debug;
use std::io;

use iommufd_ioctls::IommufdError;

pub use fake::{FakeHostIommu, HostCall};
pub use guest_ram::GuestRam;
pub use iommufd_ioas::IommufdIoasIommu;
pub use vfio_container::VfioContainerIommu;

/// Which way a host device may move data through a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaAccess {
    /// The device may read the memory.
    pub read: bool,
    /// The device may write the memory.
    pub write: bool,
}

impl DmaAccess {
    pub const READ_WRITE: Self = Self {
        read: true,
        write: true,
    };
}

/// An inclusive range of IOVAs the host IOMMU can translate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IovaRange {
    pub start: u64,
    /// Inclusive.
    pub last: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum HostIommuError {
    #[error("host IOMMU map of {len:#x} bytes at IOVA {iova:#x} failed: {source}")]
    Map {
        iova: u64,
        len: u64,
        source: io::Error,
    },
    #[error("host IOMMU unmap of {len:#x} bytes at IOVA {iova:#x} failed: {source}")]
    Unmap {
        iova: u64,
        len: u64,
        source: io::Error,
    },
    #[error("host IOMMU unmapped {done:#x} of {len:#x} bytes at IOVA {iova:#x}")]
    PartialUnmap { iova: u64, len: u64, done: u64 },
    #[error("cannot read the host IOMMU's usable IOVA ranges: {0}")]
    IovaRanges(io::Error),
}

impl HostIommuError {
    /// The host ran out of room (memory, pinned-page limit, mapping slots) rather than
    /// refusing the request itself.
    pub fn is_out_of_memory(&self) -> bool {
        let errno = match self {
            Self::Map { source, .. } | Self::Unmap { source, .. } | Self::IovaRanges(source) => {
                source.raw_os_error()
            }
            Self::PartialUnmap { .. } => None,
        };
        matches!(errno, Some(libc::ENOMEM) | Some(libc::ENOSPC))
    }
}

/// One host IOMMU address space that a set of host devices' DMA goes through.
pub trait HostIommu: Debug + Send + Sync {
    /// Makes `[iova, iova + len)` reach `[host_addr, host_addr + len)` for the device.
    ///
    /// # Safety
    ///
    /// The device may read or write that memory at any time until it is unmapped, so it
    /// must be memory nothing in this process holds Rust references to and that stays
    /// mapped as long: guest RAM, as a [`GuestRam`] hands it out.
    unsafe fn map(
        &self,
        iova: u64,
        host_addr: u64,
        len: u64,
        access: DmaAccess,
    ) -> Result<(), HostIommuError>;

    /// Removes exactly the mappings that `[iova, iova + len)` covers; they were created by
    /// `map` calls lying wholly inside it.
    fn unmap(&self, iova: u64, len: u64) -> Result<(), HostIommuError>;

    /// The IOVA ranges the host can translate, ascending; anything else must stay unmapped.
    fn iova_ranges(&self) -> Result<Vec<IovaRange>, HostIommuError>;
}

/// iommufd-ioctls reports errors as its own type; callers here want the errno, which tells
/// a refusal from running out of memory, and names it in messages.
pub(crate) fn iommufd_os_error(e: IommufdError) -> io::Error {
    match e {
        IommufdError::OpenIommufd(e) => e,
        IommufdError::IommuDestroy(e)
        | IommufdError::IommuIoasAlloc(e)
        | IommufdError::IommuIoasMap(e)
        | IommufdError::IommuIoasMapFile(e)
        | IommufdError::IommuIoasUnmap(e)
        | IommufdError::IommuHwptAlloc(e)
        | IommufdError::IommuViommuAlloc(e)
        | IommufdError::IommuVdeviceAlloc(e)
        | IommufdError::IommuGetHwInfo(e)
        | IommufdError::IommuHwptInvalidate(e)
        | IommufdError::IommuVeventqAlloc(e) => io::Error::from_raw_os_error(e.errno()),
        other => io::Error::other(other.to_string()),
    }
}

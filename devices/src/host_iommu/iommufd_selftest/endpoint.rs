//! A mock device of the test driver as an endpoint of the nested back-end.

use std::io;
use std::sync::Arc;

use iommufd_ioctls::IommuFd;

use super::{replace, MockDevice};
use crate::host_iommu::iommufd_nested::NestedEndpoint;
use crate::host_iommu::iommufd_os_error;

/// A mock device, destroyed (unbound from the iommufd) when dropped.
pub struct MockEndpoint {
    iommufd: Arc<IommuFd>,
    pub device: MockDevice,
}

impl MockEndpoint {
    pub fn new(iommufd: Arc<IommuFd>, device: MockDevice) -> Self {
        Self { iommufd, device }
    }
}

impl std::fmt::Debug for MockEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockEndpoint")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl NestedEndpoint for MockEndpoint {
    fn dev_id(&self) -> u32 {
        self.device.idev_id
    }

    fn attach(&self, pt_id: u32) -> io::Result<()> {
        replace(&self.iommufd, &self.device, pt_id)
    }
}

impl Drop for MockEndpoint {
    fn drop(&mut self) {
        if let Err(e) = self
            .iommufd
            .destroy_iommu_object(self.device.stdev_id)
            .map_err(iommufd_os_error)
        {
            log::warn!("mock device {}: destroy: {e}", self.device.stdev_id);
        }
    }
}

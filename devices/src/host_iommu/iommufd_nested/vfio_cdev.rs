//! A passed-through device's VFIO cdev, bound to the iommufd, as an endpoint of the nested
//! back-end: attached by replacement (VFIO_DEVICE_ATTACH_IOMMUFD_PT) to the nest parent,
//! a nested HWPT, or back.

use std::io;
use std::sync::Arc;

use vfio_ioctls::{VfioDevice, VfioError};

use super::NestedEndpoint;

/// The device is shared with its PCI function: the cdev closes when both let go, so the
/// nested back-end always destroys the device's vDEVICE before the cdev closes.
pub struct VfioCdevEndpoint {
    device: Arc<VfioDevice>,
    dev_id: u32,
}

impl VfioCdevEndpoint {
    /// `None` when the device is not bound to an iommufd (the legacy container).
    pub fn new(device: Arc<VfioDevice>) -> Option<Self> {
        let dev_id = device.iommufd_dev_id()?;
        Some(Self { device, dev_id })
    }
}

impl std::fmt::Debug for VfioCdevEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VfioCdevEndpoint")
            .field("dev_id", &self.dev_id)
            .finish_non_exhaustive()
    }
}

/// The errno of a failed attach, so refusals and missing memory read as the kernel said.
fn attach_error(e: VfioError) -> io::Error {
    match e {
        VfioError::VfioDeviceAttachIommufdPt(e) => io::Error::from_raw_os_error(e.errno()),
        other => io::Error::other(other.to_string()),
    }
}

impl NestedEndpoint for VfioCdevEndpoint {
    fn dev_id(&self) -> u32 {
        self.dev_id
    }

    fn attach(&self, pt_id: u32) -> io::Result<()> {
        self.device.attach_hwpt(pt_id).map_err(attach_error)
    }
}

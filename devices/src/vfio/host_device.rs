//! [`VfioDeviceIo`] on a device opened through vfio-ioctls.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use vfio_bindings::bindings::vfio::{
    VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_MSIX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX,
    VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
};
use vfio_ioctls::VfioDevice;
use vmm_sys_util::eventfd::EventFd;

use super::device_io::{RegionInfo, VfioDeviceIo, BAR_REGIONS};

/// A host device and the sizes of its regions, read once at open. The device may be shared
/// with the nested back-end, which attaches its cdev to page tables.
pub struct HostVfioDevice {
    device: Arc<VfioDevice>,
    bars: [RegionInfo; BAR_REGIONS as usize],
}

impl HostVfioDevice {
    pub fn new(device: Arc<VfioDevice>) -> Self {
        let bars = std::array::from_fn(|index| {
            let index = index as u32;
            let flags = device.get_region_flags(index);
            RegionInfo {
                size: device.get_region_size(index),
                readable: flags & VFIO_REGION_INFO_FLAG_READ != 0,
                writable: flags & VFIO_REGION_INFO_FLAG_WRITE != 0,
                mappable: flags & VFIO_REGION_INFO_FLAG_MMAP != 0,
            }
        });
        Self { device, bars }
    }
}

impl VfioDeviceIo for HostVfioDevice {
    fn config_read(&self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        self.device
            .region_read(VFIO_PCI_CONFIG_REGION_INDEX, data, offset);
    }

    fn config_write(&self, offset: u64, data: &[u8]) {
        self.device
            .region_write(VFIO_PCI_CONFIG_REGION_INDEX, data, offset);
    }

    fn region(&self, index: u32) -> RegionInfo {
        self.bars.get(index as usize).copied().unwrap_or_default()
    }

    fn region_read(&self, index: u32, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if self.region(index).readable {
            self.device.region_read(index, data, offset);
        }
    }

    fn region_write(&self, index: u32, offset: u64, data: &[u8]) {
        if self.region(index).writable {
            self.device.region_write(index, data, offset);
        }
    }

    fn mmap_region(&self, index: u32, offset: u64, len: u64) -> io::Result<u64> {
        let file_offset = self.device.get_region_offset(index) + offset;
        let file_offset = libc::off_t::try_from(file_offset).map_err(io::Error::other)?;
        // SAFETY: a new shared mapping of the device fd chosen by the kernel; nothing in
        // this process aliases it, and it is never unmapped (see the trait).
        let host = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.device.as_raw_fd(),
                file_offset,
            )
        };
        if host == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(host as u64)
    }

    fn msix_vectors(&self) -> u32 {
        self.device
            .get_irq_info(VFIO_PCI_MSIX_IRQ_INDEX)
            .map_or(0, |irq| irq.count)
    }

    fn enable_msix(&self, fds: &[&EventFd]) -> io::Result<()> {
        self.device
            .enable_msix(fds.to_vec())
            .map_err(|e| io::Error::other(format!("enabling MSI-X: {e}")))
    }

    fn disable_msix(&self) -> io::Result<()> {
        self.device
            .disable_msix()
            .map_err(|e| io::Error::other(format!("disabling MSI-X: {e}")))
    }

    fn msi_vectors(&self) -> u32 {
        self.device
            .get_irq_info(VFIO_PCI_MSI_IRQ_INDEX)
            .map_or(0, |irq| irq.count)
    }

    fn enable_msi(&self, fds: &[&EventFd]) -> io::Result<()> {
        self.device
            .enable_msi(fds.to_vec())
            .map_err(|e| io::Error::other(format!("enabling MSI: {e}")))
    }

    fn disable_msi(&self) -> io::Result<()> {
        self.device
            .disable_msi()
            .map_err(|e| io::Error::other(format!("disabling MSI: {e}")))
    }

    fn reset(&self) {
        self.device.reset();
    }
}

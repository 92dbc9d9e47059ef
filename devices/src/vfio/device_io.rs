//! What the passthrough function needs from the host device, behind one small trait so the
//! emulation can be tested without /dev/vfio.

use std::io;

use vmm_sys_util::eventfd::EventFd;

/// The first six regions of a VFIO PCI device are its BARs, in order.
pub const BAR_REGIONS: u32 = 6;

/// What the host says about one region (a BAR).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegionInfo {
    /// Bytes; zero when the BAR is not implemented (or is the upper half of a 64-bit BAR).
    pub size: u64,
    pub readable: bool,
    pub writable: bool,
    /// The region can be mapped into this process.
    pub mappable: bool,
}

/// A host PCI function as VFIO exposes it. Every call is one syscall on the device fd
/// (pread, pwrite or an ioctl) and none waits on the guest.
pub trait VfioDeviceIo: Send {
    /// Reads the device's configuration space at `offset`; all-ones where it fails.
    fn config_read(&self, offset: u64, data: &mut [u8]);
    /// Writes the device's configuration space; the host kernel filters what it must.
    fn config_write(&self, offset: u64, data: &[u8]);
    /// BAR `index` (0..6), as the host reports it.
    fn region(&self, index: u32) -> RegionInfo;
    /// Reads BAR `index` at `offset`; all-ones where it fails.
    fn region_read(&self, index: u32, offset: u64, data: &mut [u8]);
    fn region_write(&self, index: u32, offset: u64, data: &[u8]);
    /// Maps `len` bytes at `offset` of BAR `index` into this process, shared with the
    /// device, for as long as the process lives; returns the host address.
    fn mmap_region(&self, index: u32, offset: u64, len: u64) -> io::Result<u64>;
    /// How many MSI-X vectors the host lets the device use (0: none).
    fn msix_vectors(&self) -> u32;
    /// Routes the device's MSI-X vectors to `fds`, in order (VFIO_DEVICE_SET_IRQS).
    fn enable_msix(&self, fds: &[&EventFd]) -> io::Result<()>;
    fn disable_msix(&self) -> io::Result<()>;
    /// How many MSI vectors the host lets the device use (0: none).
    fn msi_vectors(&self) -> u32;
    /// Routes the device's first `fds.len()` MSI vectors to `fds`.
    fn enable_msi(&self, fds: &[&EventFd]) -> io::Result<()>;
    fn disable_msi(&self) -> io::Result<()>;
    /// A function-level reset, when the device has one.
    fn reset(&self);
}

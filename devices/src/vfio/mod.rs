//! PCI passthrough: a host PCI function, opened through VFIO, as a function on nestor's
//! bus.
//!
//! - [`device_io`]: what the emulation needs from the host device, as a trait (tests use a
//!   fake), and [`host_device`] its implementation on vfio-ioctls;
//! - [`config`]: the configuration space the guest sees, [`capabilities`] its chain;
//! - [`msix`]: the MSI-X table, delivered through KVM irqfds the host kernel signals, and
//!   [`msi`] the same for a device without MSI-X;
//! - [`bar_mapping`]: mappable BARs as guest memory slots, following the BAR's placement;
//! - [`function`]: the [`crate::pci::PciDevice`] tying them together;
//! - [`dma`]: guest RAM mapped for the device's DMA when no IOMMU is in between;
//! - `testing` (tests, and the `testing` feature): fakes of the host device, memory slots
//!   and interrupt vectors, for unit tests and fuzz targets.

pub mod bar_mapping;
pub mod capabilities;
pub mod config;
pub mod device_io;
pub mod dma;
pub mod function;
pub mod host_device;
pub mod msi;
pub mod msix;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;

pub use bar_mapping::GuestMemorySlots;
pub use device_io::{RegionInfo, VfioDeviceIo};
pub use dma::map_guest_ram;
pub use function::{VfioFunctionError, VfioPciFunction};
pub use host_device::HostVfioDevice;

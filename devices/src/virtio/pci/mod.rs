//! The modern (virtio 1.x) virtio-pci transport.

pub mod capabilities;
pub mod common_cfg;
pub mod interrupt;
pub mod transport;

#[cfg(test)]
mod tests;

pub use transport::{TransportError, VirtioPciDevice};

/// BAR bytes every virtio-pci function needs.
pub const VIRTIO_PCI_BAR_SIZE: u64 = capabilities::BAR_SIZE;

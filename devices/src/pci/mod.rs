//! PCI: one host bridge on segment 0, bus 0; configuration access through the 0xcf8/0xcfc
//! ports and ECAM; memory BARs placed on the MMIO bus; MSI-X.

pub mod bar_allocator;
#[cfg(test)]
mod bar_tests;
pub mod config;
pub mod config_io;
pub mod device;
pub mod ecam;
pub mod extended;
pub mod host_bridge;
#[cfg(test)]
mod lock_tests;
pub mod msix;
pub mod placement;
pub mod root;
#[cfg(test)]
mod testing;

pub use bar_allocator::BarAllocator;
pub use config::{BarMove, BarRegionKind, PciConfiguration};
pub use config_io::PciConfigIo;
pub use device::{IoEventRegistry, PciBar, PciDevice};
pub use ecam::PciEcam;
pub use extended::ExtendedCapabilities;
pub use host_bridge::HostBridge;
pub use msix::{MsixEntryView, MsixSnapshot, MsixState, SharedMsix};
pub use root::{PciRoot, PciRootError};

/// Size of a function's configuration space reachable through CF8/CFC.
pub const CONFIG_SPACE_SIZE: usize = 256;
/// Size of a function's configuration space reachable through ECAM.
pub const EXTENDED_CONFIG_SPACE_SIZE: usize = 4096;
/// Devices on one bus.
pub const DEVICES_PER_BUS: u8 = 32;
/// Buses nestor's host bridge decodes: only bus 0.
pub const LAST_BUS: u8 = 0;
/// ECAM bytes per bus (32 devices x 8 functions x 4 KiB).
pub const ECAM_BYTES_PER_BUS: u64 = 1 << 20;

/// A bus/device/function address on segment 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl Bdf {
    pub fn new(bus: u8, device: u8, function: u8) -> Self {
        Self {
            bus,
            device: device & 0x1f,
            function: function & 0x7,
        }
    }

    /// `bus << 8 | device << 3 | function`: the PCI requester ID, also the virtio-iommu
    /// endpoint ID of the function.
    pub fn id(&self) -> u16 {
        u16::from(self.bus) << 8 | u16::from(self.device) << 3 | u16::from(self.function)
    }
}

impl std::fmt::Display for Bdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bdf_id_is_the_requester_id() {
        assert_eq!(Bdf::new(0, 3, 0).id(), 0x18);
        assert_eq!(Bdf::new(1, 31, 7).id(), 0x1ff);
        assert_eq!(Bdf::new(0, 2, 0).to_string(), "00:02.0");
    }
}

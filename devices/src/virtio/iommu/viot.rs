//! The ACPI VIOT table: where the virtio-iommu sits on PCI and which endpoints it translates.
//!
//! One virtio-pci IOMMU node, then one single-function PCI range node per protected device.
//! A range's `endpoint_start` is its BDF, so the endpoint ID the guest computes
//! (`(segment - segment_start) << 16 | bdf - bdf_start + endpoint_start`) is the device's BDF
//! on segment 0: register endpoints with [`endpoint_id`].

use acpi_tables::viot::{PciDevice, PciRange, VirtIoPciIommu, VIOT};
use acpi_tables::Aml;

/// A function on PCI segment 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciBdf {
    pub bus: u8,
    /// 0..32
    pub device: u8,
    /// 0..8
    pub function: u8,
}

impl PciBdf {
    pub fn new(bus: u8, device: u8, function: u8) -> Self {
        Self {
            bus,
            device: device & 0x1f,
            function: function & 0x7,
        }
    }

    pub fn as_u16(&self) -> u16 {
        u16::from(self.bus) << 8 | u16::from(self.device) << 3 | u16::from(self.function)
    }

    fn as_acpi(&self) -> PciDevice {
        PciDevice::new(0, self.bus, self.device, self.function)
    }
}

/// The endpoint ID a guest derives from the VIOT for the device at `bdf`.
pub fn endpoint_id(bdf: PciBdf) -> u32 {
    u32::from(bdf.as_u16())
}

/// The complete VIOT (header and checksum included), ready for `AcpiConfig::extra_tables`.
pub fn build_viot(
    oem_id: [u8; 6],
    oem_table_id: [u8; 8],
    oem_revision: u32,
    iommu: PciBdf,
    endpoints: &[PciBdf],
) -> Vec<u8> {
    let mut viot = VIOT::new(oem_id, oem_table_id, oem_revision);
    let handle = viot.add_virtio_pci_iommu(VirtIoPciIommu::new(iommu.as_acpi()));
    for endpoint in endpoints {
        viot.add_pci_range(PciRange::new(
            endpoint.as_acpi(),
            endpoint.as_acpi(),
            &handle,
        ));
    }
    let mut bytes = Vec::new();
    viot.to_aml_bytes(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn le16(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([b[at], b[at + 1]])
    }

    fn le32(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn viot_layout_has_the_iommu_node_then_one_range_per_endpoint() {
        let iommu = PciBdf::new(0, 3, 0);
        let disk = PciBdf::new(0, 1, 0);
        let rng = PciBdf::new(0, 2, 0);
        let t = build_viot(*b"NESTOR", *b"NESTORVM", 1, iommu, &[disk, rng]);
        assert_eq!(&t[0..4], b"VIOT");
        assert_eq!(le32(&t, 4) as usize, t.len());
        assert_eq!(t.len(), 48 + 16 + 2 * 24);
        assert_eq!(t.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        assert_eq!(le16(&t, 36), 3, "node count");
        assert_eq!(le16(&t, 38), 48, "node offset");
        // virtio-pci IOMMU node at 48.
        assert_eq!((t[48], le16(&t, 50)), (3, 16));
        assert_eq!(le16(&t, 52), 0, "segment");
        assert_eq!(le16(&t, 54), iommu.as_u16());
        // PCI range nodes point back at offset 48.
        for (i, ep) in [disk, rng].iter().enumerate() {
            let n = 64 + i * 24;
            assert_eq!((t[n], le16(&t, n + 2)), (1, 24));
            assert_eq!(le32(&t, n + 4), endpoint_id(*ep), "endpoint_start");
            assert_eq!((le16(&t, n + 8), le16(&t, n + 10)), (0, 0), "segments");
            assert_eq!(le16(&t, n + 12), ep.as_u16());
            assert_eq!(le16(&t, n + 14), ep.as_u16());
            assert_eq!(le16(&t, n + 16), 48, "output node");
        }
    }

    #[test]
    fn endpoint_id_is_the_bdf() {
        assert_eq!(endpoint_id(PciBdf::new(0, 1, 0)), 0x08);
        assert_eq!(endpoint_id(PciBdf::new(1, 31, 7)), 0x1ff);
    }
}

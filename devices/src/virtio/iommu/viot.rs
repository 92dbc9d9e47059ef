//! The ACPI VIOT table: where the virtio-iommu sits on PCI and which endpoints it translates.
//!
//! One virtio-pci IOMMU node, then one single-function PCI range node per protected device.
//! A range's `endpoint_start` is its BDF, so the endpoint ID the guest computes
//! (`(segment - segment_start) << 16 | bdf - bdf_start + endpoint_start`) is the device's BDF
//! on segment 0: register endpoints with [`endpoint_id`].

use acpi_tables::viot::{PciDevice, PciRange, VirtIoPciIommu, VIOT};
use acpi_tables::Aml;

use crate::pci::Bdf;

fn acpi_device(bdf: Bdf) -> PciDevice {
    PciDevice::new(0, bdf.bus, bdf.device, bdf.function)
}

/// The endpoint ID a guest derives from the VIOT for the device at `bdf`.
pub fn endpoint_id(bdf: Bdf) -> u32 {
    u32::from(bdf.id())
}

/// The complete VIOT (header and checksum included), ready for `AcpiConfig::extra_tables`.
pub fn build_viot(
    oem_id: [u8; 6],
    oem_table_id: [u8; 8],
    oem_revision: u32,
    iommu: Bdf,
    endpoints: &[Bdf],
) -> Vec<u8> {
    let mut viot = VIOT::new(oem_id, oem_table_id, oem_revision);
    let handle = viot.add_virtio_pci_iommu(VirtIoPciIommu::new(acpi_device(iommu)));
    for endpoint in endpoints {
        viot.add_pci_range(PciRange::new(
            acpi_device(*endpoint),
            acpi_device(*endpoint),
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
        let iommu = Bdf::new(0, 3, 0);
        let disk = Bdf::new(0, 1, 0);
        let rng = Bdf::new(0, 2, 0);
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
        assert_eq!(le16(&t, 54), iommu.id());
        // PCI range nodes point back at offset 48.
        for (i, ep) in [disk, rng].iter().enumerate() {
            let n = 64 + i * 24;
            assert_eq!((t[n], le16(&t, n + 2)), (1, 24));
            assert_eq!(le32(&t, n + 4), endpoint_id(*ep), "endpoint_start");
            assert_eq!((le16(&t, n + 8), le16(&t, n + 10)), (0, 0), "segments");
            assert_eq!(le16(&t, n + 12), ep.id());
            assert_eq!(le16(&t, n + 14), ep.id());
            assert_eq!(le16(&t, n + 16), 48, "output node");
        }
    }

    #[test]
    fn endpoint_id_is_the_bdf() {
        assert_eq!(endpoint_id(Bdf::new(0, 1, 0)), 0x08);
        assert_eq!(endpoint_id(Bdf::new(1, 31, 7)), 0x1ff);
    }
}

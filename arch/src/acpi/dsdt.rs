//! DSDT: the PCI root and its ECAM reservation (when there is PCI), COM1, the power button
//! and its event device, and the S5 sleep state.

use acpi_tables::aml::{
    self, AddressSpace, AddressSpaceCacheable, Device, EISAName, Interrupt, Memory32Fixed, Name,
    Package, Path, ResourceTemplate, Scope, IO,
};
use acpi_tables::sdt::Sdt;

use super::{
    power_button, to_bytes, AcpiConfig, PciRootDescription, OEM_ID, OEM_REVISION, OEM_TABLE_ID,
};

/// Matches devices::legacy::ports::ACPI_S5_SLEEP_TYPE.
const S5_SLEEP_TYPE: u8 = 5;

fn com1() -> Vec<u8> {
    let ports = IO::new(0x3f8, 0x3f8, 0, 8);
    let irq = Interrupt::new(true, true, false, false, 4);
    let crs = ResourceTemplate::new(vec![&ports, &irq]);
    to_bytes(&Device::new(
        "_SB_.COM1".into(),
        vec![
            &Name::new("_HID".into(), &EISAName::new("PNP0501")),
            &Name::new("_UID".into(), &aml::ZERO),
            &Name::new("_CRS".into(), &crs),
        ],
    ))
}

fn pci_root(pci: &PciRootDescription) -> Vec<u8> {
    let mmio_end = pci.mmio32_base + (pci.mmio32_size - 1);
    let buses = AddressSpace::new_bus_number(0u16, u16::from(pci.last_bus));
    let config_ports = IO::new(0xcf8, 0xcf8, 1, 8);
    let io_low = AddressSpace::new_io(0x0u16, 0xcf7, None);
    let io_high = AddressSpace::new_io(0xd00u16, 0xffff, None);
    let mmio32 = AddressSpace::new_memory(
        AddressSpaceCacheable::NotCacheable,
        true,
        pci.mmio32_base,
        mmio_end,
        None,
    );
    let crs = ResourceTemplate::new(vec![&buses, &config_ports, &io_low, &io_high, &mmio32]);
    to_bytes(&Device::new(
        "_SB_.PCI0".into(),
        vec![
            &Name::new("_HID".into(), &EISAName::new("PNP0A08")),
            &Name::new("_CID".into(), &EISAName::new("PNP0A03")),
            &Name::new("_ADR".into(), &aml::ZERO),
            &Name::new("_SEG".into(), &aml::ZERO),
            &Name::new("_UID".into(), &aml::ZERO),
            &Name::new("_BBN".into(), &aml::ZERO),
            &Name::new("_CRS".into(), &crs),
        ],
    ))
}

/// Each bus takes 1 MiB of ECAM (32 devices x 8 functions x 4 KiB).
const ECAM_BYTES_PER_BUS: u32 = 1 << 20;

/// A motherboard resource (PNP0C02) claiming the ECAM window. The PCI Firmware spec asks for
/// it, and Linux will not use an MCFG window that no PNP0C01/PNP0C02 `_CRS` reserves (it falls
/// back to port I/O, which cannot reach extended configuration space).
fn ecam_reservation(pci: &PciRootDescription) -> Vec<u8> {
    let size = (u32::from(pci.last_bus) + 1) * ECAM_BYTES_PER_BUS;
    // The layout puts ECAM below 4 GiB; a window above would need a QWord descriptor.
    let Ok(base) = u32::try_from(pci.ecam_base) else {
        return Vec::new();
    };
    let ecam = Memory32Fixed::new(true, base, size);
    let crs = ResourceTemplate::new(vec![&ecam]);
    to_bytes(&Device::new(
        "_SB_.MRES".into(),
        vec![
            &Name::new("_HID".into(), &EISAName::new("PNP0C02")),
            &Name::new("_UID".into(), &aml::ONE),
            &Name::new("_CRS".into(), &crs),
        ],
    ))
}

pub(super) fn build(config: &AcpiConfig) -> Vec<u8> {
    let mut body = to_bytes(&Scope::new(Path::new("_SB_"), vec![]));
    body.extend(com1());
    if let Some(pci) = &config.pci {
        body.extend(pci_root(pci));
        body.extend(ecam_reservation(pci));
    }
    if let Some(ged) = &config.ged {
        body.extend(power_button::build(ged));
    }
    body.extend(to_bytes(&Name::new(
        "_S5_".into(),
        &Package::new(vec![&S5_SLEEP_TYPE, &aml::ZERO, &aml::ZERO, &aml::ZERO]),
    )));
    let mut dsdt = Sdt::new(*b"DSDT", 36, 6, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    dsdt.append_slice(&body);
    dsdt.as_slice().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecam_window_is_reserved_as_a_motherboard_resource() {
        let pci = PciRootDescription {
            ecam_base: 0xe000_0000,
            last_bus: 1,
            mmio32_base: 0xc000_0000,
            mmio32_size: 0x2000_0000,
        };
        let aml = ecam_reservation(&pci);
        // Memory32Fixed descriptor: tag 0x86, length 9, read-write, base, length.
        let mut descriptor = vec![0x86, 0x09, 0x00, 0x01];
        descriptor.extend_from_slice(&0xe000_0000u32.to_le_bytes());
        descriptor.extend_from_slice(&(2u32 << 20).to_le_bytes());
        assert!(aml.windows(descriptor.len()).any(|w| w == descriptor));
        // EISA id PNP0C02, compressed.
        assert!(aml.windows(4).any(|w| w == [0x41, 0xd0, 0x0c, 0x02]));
    }
}

//! The engine's PCI Express capabilities, laid out as the PCIe Base Specification defines
//! them: the PCI Express capability (a Root Complex Integrated Endpoint, so the guest reads
//! extended configuration space) and the PASID, ATS and PRI extended capabilities.
//!
//! The guest can read them and write their control fields, which read back. In nested
//! translation (`iommu=nested`) PASID Enable lets jobs carry a PASID, and PRI Enable with
//! a non-zero allocation lets the engine ask for the pages its jobs miss (page_requests).
//! The engine never sends ATS translation requests: its DMA is translated inside nestor.

use crate::pci::config::{ConfigError, PciConfiguration};
use crate::pci::ExtendedCapabilities;

pub const PCI_EXPRESS_CAPABILITY_ID: u8 = 0x10;
/// Version 2 structure: up to Slot Status 2.
pub const PCI_EXPRESS_CAPABILITY_LEN: usize = 0x3c;
/// PCI Express Capabilities register: version 2, device/port type 1001b (RCiEP).
const PCIE_CAPABILITIES: u16 = 0x0092;
/// Device Capabilities: 128-byte max payload, role-based error reporting.
const DEVICE_CAPABILITIES: u32 = 1 << 15;
/// Device Control: 512-byte max read request and relaxed ordering, the reset values.
const DEVICE_CONTROL: u16 = 0x2010;
/// Every Device Control bit but Initiate FLR (no FLR is offered).
const DEVICE_CONTROL_WRITABLE: u16 = 0x7fff;

pub const ATS_CAPABILITY_ID: u16 = 0x000f;
pub const PRI_CAPABILITY_ID: u16 = 0x0013;
pub const PASID_CAPABILITY_ID: u16 = 0x001b;

/// PASID Capability register: Max PASID Width 20, no execute or privileged mode.
const PASID_CAPABILITY: u16 = 20 << 8;
pub const PASID_CONTROL_ENABLE: u16 = 1 << 0;
/// ATS Capability register: invalidate queue depth 0 (32), page aligned requests.
const ATS_CAPABILITY: u16 = 1 << 5;
/// ATS Control: Smallest Translation Unit (bits 4:0) and Enable (bit 15).
const ATS_CONTROL_WRITABLE: u16 = 0x801f;
pub const PRI_CONTROL_ENABLE: u16 = 1 << 0;
/// PRI Status: Stopped (no requests outstanding while disabled).
const PRI_STATUS_STOPPED: u16 = 1 << 8;
/// Outstanding page requests the engine can issue at once.
pub const PRI_REQUEST_CAPACITY: u32 = 256;
/// Where the PRI capability's registers are, from its header.
pub const PRI_CONTROL_OFFSET: usize = 4;
pub const PRI_ALLOCATION_OFFSET: usize = 0xc;

/// Where each capability landed in configuration space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcieCapabilityOffsets {
    pub express: usize,
    pub pasid: usize,
    pub ats: usize,
    pub pri: usize,
}

fn le16(v: u16) -> [u8; 2] {
    v.to_le_bytes()
}

/// Adds the PCI Express capability to `config` and the extended ones to `extended`.
pub fn add_pcie_capabilities(
    config: &mut PciConfiguration,
    extended: &mut ExtendedCapabilities,
) -> Result<PcieCapabilityOffsets, ConfigError> {
    let mut body = [0u8; PCI_EXPRESS_CAPABILITY_LEN];
    let mut writable = [0u8; PCI_EXPRESS_CAPABILITY_LEN];
    body[0] = PCI_EXPRESS_CAPABILITY_ID;
    body[2..4].copy_from_slice(&le16(PCIE_CAPABILITIES));
    body[4..8].copy_from_slice(&DEVICE_CAPABILITIES.to_le_bytes());
    body[8..10].copy_from_slice(&le16(DEVICE_CONTROL));
    writable[8..10].copy_from_slice(&le16(DEVICE_CONTROL_WRITABLE));
    let express = config.add_capability(&body, &writable)?;

    // Capability register, Control register.
    let pasid = extended.add(
        PASID_CAPABILITY_ID,
        1,
        &[le16(PASID_CAPABILITY), le16(0)].concat(),
        &[le16(0), le16(PASID_CONTROL_ENABLE)].concat(),
    )?;
    let ats = extended.add(
        ATS_CAPABILITY_ID,
        1,
        &[le16(ATS_CAPABILITY), le16(0)].concat(),
        &[le16(0), le16(ATS_CONTROL_WRITABLE)].concat(),
    )?;
    // Control, Status, Outstanding Page Request Capacity, ... Allocation.
    let pri_body = [
        &le16(0)[..],
        &le16(PRI_STATUS_STOPPED),
        &PRI_REQUEST_CAPACITY.to_le_bytes(),
        &0u32.to_le_bytes(),
    ]
    .concat();
    let pri_writable = [
        &le16(PRI_CONTROL_ENABLE)[..],
        &le16(0),
        &0u32.to_le_bytes(),
        &u32::MAX.to_le_bytes(),
    ]
    .concat();
    let pri = extended.add(PRI_CAPABILITY_ID, 1, &pri_body, &pri_writable)?;
    Ok(PcieCapabilityOffsets {
        express,
        pasid,
        ats,
        pri,
    })
}

//! The configuration space of a passthrough function as the guest sees it.
//!
//! Read from the device, except what nestor must own:
//! - the BARs: sized from the host's region info and placed by nestor; what the guest
//!   programs is validated and kept here and never written to the device (the host
//!   kernel decides where the BARs really are);
//! - the command register: kept here, with only I/O space, memory space and bus master
//!   forwarded (INTx stays disabled on the device: nestor has no INTx to deliver);
//! - the capability chain (see `capabilities`), MSI-X message control and the whole MSI
//!   capability;
//! - the expansion ROM, interrupt pin and extended configuration space, which read as
//!   absent.
//!
//! Everything else inside an exposed capability is forwarded as it is written.

use std::io;

use crate::pci::config::{ConfigError, PciIdentity, NUM_BARS};
use crate::pci::{BarMove, BarRegionKind, PciBar, PciConfiguration, CONFIG_SPACE_SIZE};

use super::capabilities::{CapabilityByte, CapabilityList, MSIX_CAPABILITY_ID, MSI_CAPABILITY_ID};
use super::device_io::VfioDeviceIo;
use super::msi::VfioMsi;
use super::msix::VfioMsix;

/// The interrupt capabilities nestor emulates, for the configuration accesses that reach
/// them.
#[derive(Default)]
pub struct InterruptCapabilities {
    pub msix: Option<VfioMsix>,
    pub msi: Option<VfioMsi>,
}

const COMMAND_STATUS_REG: usize = 1;
const BAR0_REG: usize = 4;
const EXPANSION_ROM_REG: usize = 12;
const CAPABILITY_POINTER_REG: usize = 13;
const RESERVED_REG: usize = 14;
const INTERRUPT_REG: usize = 15;
const FIRST_CAPABILITY_REG: usize = 16;
const LAST_REG: usize = CONFIG_SPACE_SIZE / 4 - 1;

/// Command bits the device gets: I/O space, memory space, bus master.
const COMMAND_FORWARDED: u16 = 0x0007;
const COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// Status bit: a capability list exists.
const STATUS_CAPABILITIES: u32 = 1 << 20;

const BAR_IO: u32 = 0x1;
const BAR_MEM_TYPE_64: u32 = 0x4;
const BAR_MEM_TYPE_MASK: u32 = 0x6;
const BAR_MEM_PREFETCHABLE: u32 = 0x8;

/// Offset of MSI-X message control within its capability: table size bits 0-7, then
/// table size bits 8-10, function mask and enable.
const MSIX_CONTROL: usize = 2;
/// Its upper byte, the one the guest may write (enable, function mask).
const MSIX_CONTROL_HIGH: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum VfioConfigError {
    #[error("BAR {bar}: {source}")]
    Bar { bar: usize, source: ConfigError },
    #[error("no room for BAR {bar} ({size:#x} bytes): {source}")]
    Place {
        bar: usize,
        size: u64,
        source: io::Error,
    },
}

/// Reads the first 256 bytes of the device's configuration space.
pub fn read_header(device: &dyn VfioDeviceIo) -> [u8; CONFIG_SPACE_SIZE] {
    let mut config = [0u8; CONFIG_SPACE_SIZE];
    for (reg, dword) in config.chunks_mut(4).enumerate() {
        device.config_read(reg as u64 * 4, dword);
    }
    config
}

fn dword(config: &[u8; CONFIG_SPACE_SIZE], reg: usize) -> u32 {
    u32::from_le_bytes(config[reg * 4..reg * 4 + 4].try_into().unwrap_or_default())
}

pub struct VfioConfigSpace {
    /// The BARs, the command register and the interrupt line as the guest wrote them.
    emulated: PciConfiguration,
    bars: Vec<usize>,
    capabilities: CapabilityList,
}

impl VfioConfigSpace {
    /// Declares the device's memory BARs at addresses `place(bar, size)` chooses. I/O
    /// BARs are left out: nestor's PCI bus decodes memory only.
    pub fn new(
        header: &[u8; CONFIG_SPACE_SIZE],
        device: &dyn VfioDeviceIo,
        capabilities: CapabilityList,
        place: &mut dyn FnMut(usize, u64) -> io::Result<u64>,
    ) -> Result<Self, VfioConfigError> {
        let id = dword(header, 0);
        let mut emulated = PciConfiguration::new(PciIdentity {
            vendor: id as u16,
            device: (id >> 16) as u16,
            class: dword(header, 2) >> 8,
            revision: header[8],
            subsystem_vendor: 0,
            subsystem: 0,
        });
        let mut bars = Vec::new();
        let mut bar = 0;
        while bar < NUM_BARS {
            let raw = dword(header, BAR0_REG + bar);
            let size = device.region(bar as u32).size;
            let is_64 = raw & BAR_IO == 0 && raw & BAR_MEM_TYPE_MASK == BAR_MEM_TYPE_64;
            let next = bar + if is_64 { 2 } else { 1 };
            if size == 0 {
                bar = next;
                continue;
            }
            if raw & BAR_IO != 0 {
                log::warn!("passthrough BAR {bar} is an I/O BAR; the guest will not see it");
                bar = next;
                continue;
            }
            let kind = if is_64 {
                BarRegionKind::Memory64
            } else {
                BarRegionKind::Memory32
            };
            let address =
                place(bar, size).map_err(|source| VfioConfigError::Place { bar, size, source })?;
            let prefetchable = raw & BAR_MEM_PREFETCHABLE != 0;
            emulated
                .add_memory_bar(bar, kind, size, address, prefetchable)
                .map_err(|source| VfioConfigError::Bar { bar, source })?;
            bars.push(bar);
            bar = next;
        }
        Ok(Self {
            emulated,
            bars,
            capabilities,
        })
    }

    pub fn capabilities(&self) -> &CapabilityList {
        &self.capabilities
    }

    /// The memory BARs at the addresses the guest programmed.
    pub fn bars(&self) -> Vec<PciBar> {
        self.bars
            .iter()
            .filter_map(|&index| {
                let (address, size) = self.emulated.bar(index)?;
                Some(PciBar {
                    index,
                    address,
                    size,
                })
            })
            .collect()
    }

    /// The command register the guest last wrote.
    pub fn command(&self) -> u16 {
        self.emulated.read_reg(COMMAND_STATUS_REG) as u16
    }

    /// Puts the device's command register where the guest's says, INTx disabled.
    pub fn sync_command(&self, device: &dyn VfioDeviceIo) {
        let command = self.command() & COMMAND_FORWARDED | COMMAND_INTX_DISABLE;
        device.config_write(COMMAND_STATUS_REG as u64 * 4, &command.to_le_bytes());
    }

    pub fn read(
        &self,
        reg: usize,
        device: &dyn VfioDeviceIo,
        interrupts: &InterruptCapabilities,
    ) -> u32 {
        let from_device = || {
            let mut bytes = [0u8; 4];
            device.config_read(reg as u64 * 4, &mut bytes);
            bytes
        };
        match reg {
            COMMAND_STATUS_REG => {
                let status = u32::from_le_bytes(from_device()) & !0xffff & !STATUS_CAPABILITIES;
                let capabilities = if self.capabilities.any_exposed() {
                    STATUS_CAPABILITIES
                } else {
                    0
                };
                status | capabilities | u32::from(self.command())
            }
            BAR0_REG..=9 => self.emulated.read_reg(reg),
            EXPANSION_ROM_REG | RESERVED_REG => 0,
            CAPABILITY_POINTER_REG => u32::from(self.capabilities.first()),
            // Interrupt pin 0: nestor has no INTx.
            INTERRUPT_REG => self.emulated.read_reg(reg) & 0xff,
            FIRST_CAPABILITY_REG..=LAST_REG => {
                let mut bytes = from_device();
                for (i, byte) in bytes.iter_mut().enumerate() {
                    let at = reg * 4 + i;
                    match self.capabilities.classify(at) {
                        CapabilityByte::Next(next) => *byte = next,
                        // Message control is nestor's: its table is as long as the host
                        // gives vectors for, and the enable and mask bits are the guest's
                        // (the device's own are the host kernel's business).
                        CapabilityByte::Body { id, offset }
                            if id == MSIX_CAPABILITY_ID
                                && (MSIX_CONTROL..=MSIX_CONTROL_HIGH).contains(&(at - offset)) =>
                        {
                            if let Some(msix) = &interrupts.msix {
                                let control = msix.control().to_le_bytes();
                                *byte = control[at - offset - MSIX_CONTROL];
                            }
                        }
                        CapabilityByte::Body { id, offset } if id == MSI_CAPABILITY_ID => {
                            let rel = at - offset;
                            if let Some(value) =
                                interrupts.msi.as_ref().and_then(|m| m.read_byte(rel))
                            {
                                *byte = value;
                            }
                        }
                        _ => {}
                    }
                }
                u32::from_le_bytes(bytes)
            }
            0..=LAST_REG => u32::from_le_bytes(from_device()),
            // Extended configuration space: no extended capabilities.
            _ => 0,
        }
    }

    /// A guest write of 1, 2 or 4 bytes at byte `offset` of register `reg`.
    pub fn write(
        &mut self,
        reg: usize,
        offset: usize,
        data: &[u8],
        device: &dyn VfioDeviceIo,
        interrupts: &mut InterruptCapabilities,
    ) -> Option<BarMove> {
        if data.is_empty() || offset + data.len() > 4 {
            return None;
        }
        match reg {
            COMMAND_STATUS_REG => {
                // Status bits are the device's; the guest clears none of them.
                let command = &data[..data.len().min(2usize.saturating_sub(offset))];
                if !command.is_empty() {
                    self.emulated.write_reg(reg, offset, command);
                    self.sync_command(device);
                }
                None
            }
            BAR0_REG..=9 => self.emulated.write_reg(reg, offset, data),
            INTERRUPT_REG => self.emulated.write_reg(reg, offset, data),
            FIRST_CAPABILITY_REG..=LAST_REG => {
                self.write_capabilities(reg * 4 + offset, data, device, interrupts);
                None
            }
            // The rest of the header is the device's identity and nestor's layout.
            _ => None,
        }
    }

    fn write_capabilities(
        &mut self,
        start: usize,
        data: &[u8],
        device: &dyn VfioDeviceIo,
        interrupts: &mut InterruptCapabilities,
    ) {
        let mut msi_written = false;
        let mut run: Option<(usize, Vec<u8>)> = None;
        let flush = |run: &mut Option<(usize, Vec<u8>)>| {
            if let Some((at, bytes)) = run.take() {
                device.config_write(at as u64, &bytes);
            }
        };
        for (i, &value) in data.iter().enumerate() {
            let at = start + i;
            match self.capabilities.classify(at) {
                CapabilityByte::Body { id, offset } if id == MSIX_CAPABILITY_ID => {
                    flush(&mut run);
                    // Only message control's upper byte (enable, function mask) is
                    // writable; table and PBA locations are read-only.
                    if at - offset == MSIX_CONTROL_HIGH {
                        if let Some(msix) = &mut interrupts.msix {
                            msix.set_control(u16::from(value) << 8, device);
                        }
                    }
                }
                // MSI is nestor's alone: nothing of it reaches the device.
                CapabilityByte::Body { id, offset } if id == MSI_CAPABILITY_ID => {
                    flush(&mut run);
                    if let Some(msi) = &mut interrupts.msi {
                        msi_written |= msi.write_byte(at - offset, value);
                    }
                }
                CapabilityByte::Body { .. } => match &mut run {
                    Some((_, bytes)) => bytes.push(value),
                    None => run = Some((at, vec![value])),
                },
                CapabilityByte::Id | CapabilityByte::Next(_) | CapabilityByte::Hidden => {
                    flush(&mut run);
                }
            }
        }
        flush(&mut run);
        if msi_written {
            if let Some(msi) = &mut interrupts.msi {
                msi.sync(device);
            }
        }
    }
}

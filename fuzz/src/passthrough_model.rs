//! A reference model of a passthrough function's configuration space: what every register
//! reads, and which writes reach the host device (as single-byte configuration writes and
//! interrupt calls, in order).
//!
//! The guest owns nothing on the device but the command register's I/O, memory and bus
//! master bits (INTx always disabled) and the bodies of the capabilities nestor does not
//! emulate. BARs, the capability chain, MSI-X message control and the whole of MSI are
//! nestor's, the expansion ROM, interrupt pin and extended space read as absent.

use devices::vfio::testing::DeviceCall;

use crate::capability_chain_model::{ChainModel, Owner, MSIX_ID, MSI_ID};
use crate::passthrough_msi_model::{Delivery, MsiModel, MsixModel};

const COMMAND_WRITABLE: u16 = 0x0407;
const COMMAND_FORWARDED: u16 = 0x0007;
const INTX_DISABLE: u16 = 0x0400;
const STATUS_CAPABILITIES: u32 = 1 << 20;

/// A memory BAR nestor declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarModel {
    pub index: usize,
    pub size: u64,
    pub is_64: bool,
}

pub struct PassthroughModel {
    /// The device's configuration space as it should be now.
    pub device: [u8; 256],
    pub command: u16,
    line: u8,
    pub bars: Vec<BarModel>,
    /// BAR registers 4..=9 as the guest reads them, and their writable bits.
    bar_regs: [u32; 6],
    bar_writable: [u32; 6],
    pub chain: ChainModel,
    pub msix: Option<MsixModel>,
    pub msi: Option<MsiModel>,
    /// What the interrupt group should have delivered since the last take.
    pub delivered: Vec<Delivery>,
}

/// A configuration write of several bytes, one call per byte, so runs compare however the
/// function splits them.
pub fn per_byte(calls: Vec<DeviceCall>) -> Vec<DeviceCall> {
    calls
        .into_iter()
        .flat_map(|call| match call {
            DeviceCall::ConfigWrite(offset, bytes) => bytes
                .iter()
                .enumerate()
                .map(|(i, &b)| DeviceCall::ConfigWrite(offset + i as u64, vec![b]))
                .collect(),
            other => vec![other],
        })
        .collect()
}

impl PassthroughModel {
    /// `bars`: the memory BARs with the addresses nestor placed them at.
    pub fn new(
        header: &[u8; 256],
        bars: &[(BarModel, u64, bool)],
        host_msix: u32,
        host_msi: u32,
    ) -> Self {
        let chain = ChainModel::new(header, host_msix > 0, host_msi > 0);
        let word = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().unwrap());
        let msix = chain.first_exposed(MSIX_ID).map(|at| {
            let control = u16::from_le_bytes([header[at + 2], header[at + 3]]);
            MsixModel::new(control, word(at + 4), word(at + 8), host_msix)
        });
        let msi = chain.first_exposed(MSI_ID).map(|at| {
            MsiModel::new(
                u16::from_le_bytes([header[at + 2], header[at + 3]]),
                host_msi,
            )
        });
        let mut bar_regs = [0u32; 6];
        let mut bar_writable = [0u32; 6];
        for &(bar, address, prefetchable) in bars {
            let mask = !(bar.size - 1);
            bar_regs[bar.index] =
                address as u32 | if bar.is_64 { 4 } else { 0 } | u32::from(prefetchable) << 3;
            bar_writable[bar.index] = mask as u32 & !0xf;
            if bar.is_64 {
                bar_regs[bar.index + 1] = (address >> 32) as u32;
                bar_writable[bar.index + 1] = (mask >> 32) as u32;
            }
        }
        let mut device = *header;
        // The function starts with decoding, bus mastering and INTx off on the device.
        device[4..6].copy_from_slice(&INTX_DISABLE.to_le_bytes());
        Self {
            device,
            command: 0,
            line: 0,
            bars: bars.iter().map(|b| b.0).collect(),
            bar_regs,
            bar_writable,
            chain,
            msix,
            msi,
            delivered: Vec::new(),
        }
    }

    /// The host device raises vector `v` of the function's interrupt group.
    pub fn raise(&mut self, v: usize) {
        if let Some(msix) = &mut self.msix {
            msix.raise(v, &mut self.delivered);
        } else if let Some(msi) = &self.msi {
            self.delivered.push((v as u16, msi.routes()[v]));
        }
    }

    /// The group's vectors.
    pub fn vectors(&self) -> usize {
        match (&self.msix, &self.msi) {
            (Some(msix), _) => usize::from(msix.vectors),
            (None, Some(msi)) => msi.vectors as usize,
            (None, None) => 0,
        }
    }

    pub fn memory_enabled(&self) -> bool {
        self.command & 0x2 != 0
    }

    /// The address BAR `bar` decodes at: its registers without the flag bits.
    pub fn bar_address(&self, bar: &BarModel) -> u64 {
        let high = if bar.is_64 {
            u64::from(self.bar_regs[bar.index + 1])
        } else {
            0
        };
        high << 32 | u64::from(self.bar_regs[bar.index] & !0xf)
    }

    fn device_dword(&self, reg: usize) -> u32 {
        u32::from_le_bytes(self.device[reg * 4..reg * 4 + 4].try_into().unwrap())
    }

    /// Register `reg` (0..1024) as the guest reads it.
    pub fn read(&self, reg: usize) -> u32 {
        match reg {
            1 => {
                let status = self.device_dword(1) & 0xffff_0000 & !STATUS_CAPABILITIES;
                let capabilities = if self.chain.any_exposed() {
                    STATUS_CAPABILITIES
                } else {
                    0
                };
                status | capabilities | u32::from(self.command)
            }
            4..=9 => self.bar_regs[reg - 4],
            12 | 14 => 0,
            13 => u32::from(self.chain.pointer()),
            15 => u32::from(self.line),
            16..=63 => u32::from_le_bytes([0, 1, 2, 3].map(|i| self.read_byte(reg * 4 + i))),
            0..=63 => self.device_dword(reg),
            _ => 0,
        }
    }

    fn read_byte(&self, at: usize) -> u8 {
        let device = self.device[at];
        match self.chain.owner(at) {
            Owner::Device => device,
            Owner::Next(next) => next,
            Owner::Body { cap, rel } if cap.id == MSIX_ID => match (&self.msix, rel) {
                (Some(msix), 2) => msix.control_low(),
                (Some(msix), 3) => msix.control_high(),
                _ => device,
            },
            Owner::Body { cap, rel } if cap.id == MSI_ID => self
                .msi
                .as_ref()
                .and_then(|msi| msi.read(rel))
                .unwrap_or(device),
            Owner::Body { .. } => device,
        }
    }

    /// A guest write of `data` at byte `offset` of register `reg`; returns the host calls it
    /// should make (configuration writes one byte each) and the BAR it moves, as (bar,
    /// old, new).
    pub fn write(
        &mut self,
        reg: usize,
        offset: usize,
        data: &[u8],
    ) -> (Vec<DeviceCall>, Option<(usize, u64, u64)>) {
        let mut calls = Vec::new();
        if data.is_empty() || offset + data.len() > 4 {
            return (calls, None);
        }
        let mut moved = None;
        match reg {
            1 => {
                let mut touched = false;
                for (i, &b) in data.iter().enumerate() {
                    let shift = (offset + i) * 8;
                    if shift < 16 {
                        let mask = COMMAND_WRITABLE & 0xff << shift;
                        self.command = self.command & !mask | u16::from(b) << shift & mask;
                        touched = true;
                    }
                }
                if touched {
                    let forwarded = self.command & COMMAND_FORWARDED | INTX_DISABLE;
                    self.device[4..6].copy_from_slice(&forwarded.to_le_bytes());
                    for (i, b) in forwarded.to_le_bytes().into_iter().enumerate() {
                        calls.push(DeviceCall::ConfigWrite(4 + i as u64, vec![b]));
                    }
                }
            }
            4..=9 => {
                let owner = self
                    .bars
                    .iter()
                    .copied()
                    .find(|b| b.index == reg - 4 || b.is_64 && b.index + 1 == reg - 4);
                let old = owner.map(|b| self.bar_address(&b));
                let r = reg - 4;
                for (i, &b) in data.iter().enumerate() {
                    let shift = (offset + i) * 8;
                    let mask = self.bar_writable[r] & 0xff << shift;
                    self.bar_regs[r] = self.bar_regs[r] & !mask | u32::from(b) << shift & mask;
                }
                if let (Some(bar), Some(old)) = (owner, old) {
                    let new = self.bar_address(&bar);
                    moved = (new != old).then_some((bar.index, old, new));
                }
            }
            15 if offset == 0 => self.line = data[0],
            16..=63 => self.write_capabilities(reg * 4 + offset, data, &mut calls),
            _ => {}
        }
        (calls, moved)
    }

    fn write_capabilities(&mut self, start: usize, data: &[u8], calls: &mut Vec<DeviceCall>) {
        let mut msi_written = false;
        for (i, &value) in data.iter().enumerate() {
            let at = start + i;
            match self.chain.owner(at) {
                Owner::Body { cap, rel } if cap.id == MSIX_ID => {
                    if let (Some(msix), 3) = (&mut self.msix, rel) {
                        msix.write_control_high(value, calls, &mut self.delivered);
                    }
                }
                Owner::Body { cap, rel } if cap.id == MSI_ID => {
                    if let Some(msi) = &mut self.msi {
                        msi_written |= msi.write(rel, value);
                    }
                }
                Owner::Body { .. } => {
                    self.device[at] = value;
                    calls.push(DeviceCall::ConfigWrite(at as u64, vec![value]));
                }
                Owner::Device | Owner::Next(_) => {}
            }
        }
        if msi_written {
            if let Some(msi) = &mut self.msi {
                msi.sync(calls);
            }
        }
    }
}

//! A reference model of one function's type-0 configuration space: each register's value
//! and the bits the guest may write, the MSI-X message control, and the virtio PCI
//! configuration access window, whose data register stands for a BAR access.

use crate::transport_model::{TransportModel, BAR_SIZE};

pub const COMMAND_REG: usize = 1;
const MEMORY_SPACE: u32 = 1 << 1;
const BUS_MASTER: u32 = 1 << 2;
const MSIX_CAP_ID: u8 = 0x11;
const VENDOR_CAP_ID: u8 = 0x09;
const CFG_TYPE_PCI: u8 = 5;

pub struct ConfigModel {
    pub regs: [u32; 64],
    writable: [u32; 64],
    /// The virtio transport behind the function, if it is one.
    pub transport: Option<TransportModel>,
    pub msix_reg: usize,
    pub pci_cfg_reg: usize,
}

/// Register index of the first capability with `id` (and, for vendor ones, `cfg_type`).
fn find_capability(regs: &[u32; 64], id: u8, cfg_type: Option<u8>) -> Option<usize> {
    let mut at = regs[13] as usize & 0xfc;
    while at != 0 {
        let head = regs[at / 4];
        if head as u8 == id && cfg_type.is_none_or(|t| (head >> 24) as u8 == t) {
            return Some(at / 4);
        }
        at = (head >> 8) as usize & 0xfc;
    }
    None
}

impl ConfigModel {
    /// A function whose registers read `regs` at reset: the command register, cache line
    /// size and latency timer, and the interrupt line are writable.
    pub fn new(regs: [u32; 64]) -> Self {
        let mut writable = [0u32; 64];
        writable[COMMAND_REG] = 0x0407;
        writable[3] = 0xffff;
        writable[15] = 0xff;
        Self {
            regs,
            writable,
            transport: None,
            msix_reg: usize::MAX,
            pci_cfg_reg: usize::MAX,
        }
    }

    /// A virtio-pci function: a 64-bit memory BAR 0 of BAR_SIZE bytes, MSI-X, and the PCI
    /// configuration access capability.
    pub fn virtio(regs: [u32; 64], transport: TransportModel) -> Self {
        let mut model = Self::new(regs);
        model.writable[4] = !(BAR_SIZE as u32 - 1) & !0xf;
        model.writable[5] = 0xffff_ffff;
        model.msix_reg = find_capability(&regs, MSIX_CAP_ID, None).expect("MSI-X capability");
        model.writable[model.msix_reg] = 0xc000_0000;
        model.pci_cfg_reg = find_capability(&regs, VENDOR_CAP_ID, Some(CFG_TYPE_PCI))
            .expect("PCI configuration access capability");
        model.writable[model.pci_cfg_reg + 1] = 0xff;
        for r in model.pci_cfg_reg + 2..model.pci_cfg_reg + 5 {
            model.writable[r] = 0xffff_ffff;
        }
        model.transport = Some(transport);
        model
    }

    pub fn memory_enabled(&self) -> bool {
        self.regs[COMMAND_REG] & MEMORY_SPACE != 0
    }

    /// The BAR's address and size, for a virtio function.
    pub fn bar(&self) -> Option<(u64, u64)> {
        self.transport.as_ref()?;
        Some((
            u64::from(self.regs[5]) << 32 | u64::from(self.regs[4] & !0xf),
            BAR_SIZE,
        ))
    }

    /// The BAR access the configuration access window stands for, if valid.
    fn window(&self) -> Option<(u64, usize)> {
        self.transport.as_ref()?;
        let bar = self.regs[self.pci_cfg_reg + 1] as u8;
        let offset = u64::from(self.regs[self.pci_cfg_reg + 2]);
        let len = self.regs[self.pci_cfg_reg + 3];
        (bar == 0
            && matches!(len, 1 | 2 | 4)
            && offset % u64::from(len) == 0
            && offset + u64::from(len) <= BAR_SIZE)
            .then_some((offset, len as usize))
    }

    /// A read of register `reg` (0..1024).
    pub fn read(&mut self, reg: usize) -> u32 {
        if self.transport.is_some() && reg == self.pci_cfg_reg + 4 {
            let value = match self.window() {
                Some((offset, len)) => {
                    let mut b = [0u8; 4];
                    let data = self.transport.as_mut().unwrap().read_bar(offset, len);
                    b[..len].copy_from_slice(&data);
                    u32::from_le_bytes(b)
                }
                None => 0,
            };
            self.regs[reg] = value;
            return value;
        }
        self.regs.get(reg).copied().unwrap_or(0)
    }

    /// A write of 1 to 4 bytes at byte `offset` of register `reg`.
    pub fn write(&mut self, reg: usize, offset: usize, data: &[u8]) {
        if reg >= 64 || data.is_empty() || offset + data.len() > 4 {
            return;
        }
        let (mut value, mut bytes) = (0u32, 0u32);
        for (i, &b) in data.iter().enumerate() {
            value |= u32::from(b) << ((offset + i) * 8);
            bytes |= 0xff << ((offset + i) * 8);
        }
        let mask = self.writable[reg] & bytes;
        self.regs[reg] = self.regs[reg] & !mask | value & mask;
        let window = self.window();
        let Some(transport) = self.transport.as_mut() else {
            return;
        };
        if reg == self.msix_reg {
            transport
                .msix
                .set_message_control((self.regs[reg] >> 16) as u16);
        }
        if reg == self.pci_cfg_reg + 4 {
            if let Some((offset, len)) = window {
                let data = self.regs[reg].to_le_bytes();
                transport.write_bar(offset, &data[..len]);
            }
        }
        if reg == COMMAND_REG {
            transport.set_bus_master(self.regs[reg] & BUS_MASTER != 0);
        }
    }
}

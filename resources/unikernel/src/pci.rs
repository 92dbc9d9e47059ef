//! PCI configuration space through mechanism #1 (ports 0xcf8/0xcfc).

use crate::io::{inl, outl};

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;

/// A bus/device/function address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bdf {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl Bdf {
    pub fn new(bus: u8, device: u8, function: u8) -> Bdf {
        Bdf {
            bus,
            device,
            function,
        }
    }

    fn config_address(&self, offset: u8) -> u32 {
        0x8000_0000
            | (self.bus as u32) << 16
            | (self.device as u32 & 0x1f) << 11
            | (self.function as u32 & 0x7) << 8
            | (offset as u32 & 0xfc)
    }

    /// The aligned dword at `offset` in this function's configuration space.
    pub fn read32(&self, offset: u8) -> u32 {
        outl(CONFIG_ADDRESS, self.config_address(offset));
        inl(CONFIG_DATA)
    }

    pub fn write32(&self, offset: u8, value: u32) {
        outl(CONFIG_ADDRESS, self.config_address(offset));
        outl(CONFIG_DATA, value);
    }

    pub fn read8(&self, offset: u8) -> u8 {
        (self.read32(offset & !3) >> ((offset & 3) * 8)) as u8
    }

    /// Sets `bits` in the command register (memory decoding, bus mastering).
    pub fn enable_command(&self, bits: u16) {
        let command = self.read32(COMMAND) & 0xffff;
        // The status half is write-one-to-clear: write zeros there.
        self.write32(COMMAND, command | u32::from(bits));
    }

    /// The address BAR `bar` holds (both halves of a 64-bit memory BAR).
    pub fn bar_address(&self, bar: u8) -> u64 {
        let offset = 0x10 + bar * 4;
        let low = self.read32(offset);
        let mut address = u64::from(low & !0xf);
        if (low >> 1) & 3 == 2 {
            address |= u64::from(self.read32(offset + 4)) << 32;
        }
        address
    }

    /// The offset of the first capability with `id`, if the function lists one.
    pub fn capability(&self, id: u8) -> Option<u8> {
        if self.read32(COMMAND) >> 16 & STATUS_CAPABILITIES == 0 {
            return None;
        }
        let mut at = self.read8(CAPABILITIES) & !3;
        // A list longer than config space holds is looping.
        for _ in 0..48 {
            if at < 0x40 {
                return None;
            }
            if self.read8(at) == id {
                return Some(at);
            }
            at = self.read8(at + 1) & !3;
        }
        None
    }

    /// Programs the MSI capability with one vector sending `data` to `address`, and
    /// enables it. `Err` when the function has no MSI capability.
    pub fn enable_msi(&self, address: u64, data: u16) -> Result<(), &'static str> {
        let cap = self.capability(CAP_MSI).ok_or("no MSI capability")?;
        let control = (self.read32(cap) >> 16) as u16;
        let data_at = if control & MSI_64BIT != 0 {
            self.write32(cap + 8, (address >> 32) as u32);
            cap + 12
        } else if address >> 32 != 0 {
            return Err("MSI address above 4 GiB for a 32-bit capability");
        } else {
            cap + 8
        };
        self.write32(cap + 4, address as u32);
        self.write32(data_at, u32::from(data));
        // One vector (Multiple Message Enable 0), then enable: header bytes are read-only.
        let control = control & !MSI_MULTIPLE_ENABLE | MSI_ENABLE;
        self.write32(cap, u32::from(control) << 16);
        Ok(())
    }

    /// Whether the MSI capability reads back enabled.
    pub fn msi_enabled(&self) -> bool {
        self.capability(CAP_MSI)
            .is_some_and(|cap| (self.read32(cap) >> 16) as u16 & MSI_ENABLE != 0)
    }
}

const COMMAND: u8 = 0x04;
const CAPABILITIES: u8 = 0x34;
const STATUS_CAPABILITIES: u32 = 1 << 4;
pub const COMMAND_MEMORY: u16 = 1 << 1;
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
const CAP_MSI: u8 = 0x05;
const MSI_ENABLE: u16 = 1;
const MSI_64BIT: u16 = 1 << 7;
const MSI_MULTIPLE_ENABLE: u16 = 0x7 << 4;

/// What identifies a present function.
#[derive(Clone, Copy, Debug)]
pub struct Function {
    pub bdf: Bdf,
    pub vendor: u16,
    pub device: u16,
    /// Class code, subclass, programming interface: 0xCCSSPP.
    pub class: u32,
    pub header_type: u8,
}

impl Function {
    /// The function at `bdf`, if one answers (vendor id not 0xffff).
    pub fn probe(bdf: Bdf) -> Option<Function> {
        let id = bdf.read32(0x00);
        let vendor = id as u16;
        if vendor == 0xffff || vendor == 0 {
            return None;
        }
        Some(Function {
            bdf,
            vendor,
            device: (id >> 16) as u16,
            class: bdf.read32(0x08) >> 8,
            header_type: (bdf.read32(0x0c) >> 16) as u8,
        })
    }

    pub fn is_multifunction(&self) -> bool {
        self.header_type & 0x80 != 0
    }
}

/// Calls `found` for every function on `bus`, in device/function order.
pub fn scan_bus(bus: u8, mut found: impl FnMut(Function)) {
    for device in 0..32 {
        let Some(first) = Function::probe(Bdf::new(bus, device, 0)) else {
            continue;
        };
        found(first);
        if first.is_multifunction() {
            for function in 1..8 {
                if let Some(f) = Function::probe(Bdf::new(bus, device, function)) {
                    found(f);
                }
            }
        }
    }
}

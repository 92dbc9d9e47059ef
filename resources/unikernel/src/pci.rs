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

    #[allow(dead_code)] // for probes that program devices
    pub fn write32(&self, offset: u8, value: u32) {
        outl(CONFIG_ADDRESS, self.config_address(offset));
        outl(CONFIG_DATA, value);
    }
}

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

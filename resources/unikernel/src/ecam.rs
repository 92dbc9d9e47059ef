//! PCI configuration space through ECAM, the MCFG's memory window: the only way to the
//! extended (PCIe) capabilities past offset 0x100.

use core::ptr::{read_volatile, write_volatile};

use crate::acpi::Acpi;
use crate::pci::Bdf;

/// The ECAM window of segment 0 as the MCFG describes it.
pub struct Ecam {
    base: u64,
    pub last_bus: u8,
}

impl Ecam {
    pub fn from_mcfg(acpi: &Acpi) -> Option<Ecam> {
        let mcfg = acpi.table(b"MCFG")?;
        // Header (36) + reserved (8), then 16-byte allocations: base, segment, start, end.
        let entry = mcfg.get(44..60)?;
        let base = u64::from_le_bytes(entry[0..8].try_into().ok()?);
        let segment = u16::from_le_bytes([entry[8], entry[9]]);
        (segment == 0 && entry[10] == 0 && base != 0).then_some(Ecam {
            base,
            last_bus: entry[11],
        })
    }

    fn address(&self, bdf: Bdf, offset: u16) -> u64 {
        self.base
            + (u64::from(bdf.bus) << 20)
            + (u64::from(bdf.device) << 15)
            + (u64::from(bdf.function) << 12)
            + u64::from(offset & 0xffc)
    }

    pub fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
        // SAFETY: the MCFG's ECAM window, identity mapped uncached.
        unsafe { read_volatile(self.address(bdf, offset) as *const u32) }
    }

    pub fn write32(&self, bdf: Bdf, offset: u16, value: u32) {
        // SAFETY: as above.
        unsafe { write_volatile(self.address(bdf, offset) as *mut u32, value) }
    }

    /// The extended capability `id` (offset 0x100 on), if the function has it.
    pub fn extended_capability(&self, bdf: Bdf, id: u16) -> Option<u16> {
        let mut offset = 0x100u16;
        // A hostile chain may loop: at most as many hops as dwords in extended space.
        for _ in 0..(0x1000 - 0x100) / 4 {
            let header = self.read32(bdf, offset);
            if header & 0xffff == u32::from(id) {
                return Some(offset);
            }
            let next = (header >> 20) as u16 & 0xffc;
            if next < 0x100 {
                return None;
            }
            offset = next;
        }
        None
    }
}

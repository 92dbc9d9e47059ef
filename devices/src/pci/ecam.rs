//! The memory-mapped configuration space (ECAM): 4 KiB per function, 1 MiB per bus, at
//! arch::layout::PCI_ECAM_START. Only the buses that exist are mapped.

use std::sync::Arc;

use super::root::PciRoot;
use super::{Bdf, ECAM_BYTES_PER_BUS, LAST_BUS};
use crate::bus::ConcurrentBusDevice;

/// Bytes of ECAM nestor decodes.
pub const ECAM_SIZE: u64 = (LAST_BUS as u64 + 1) * ECAM_BYTES_PER_BUS;

/// Splits an ECAM offset into the function and its byte offset.
pub fn decode(offset: u64) -> (Bdf, usize) {
    let bdf = Bdf::new(
        (offset >> 20) as u8,
        (offset >> 15) as u8,
        (offset >> 12) as u8,
    );
    (bdf, (offset & 0xfff) as usize)
}

/// Holds no lock across an access: the root finds the function without one.
pub struct PciEcam {
    root: Arc<PciRoot>,
}

impl PciEcam {
    pub fn new(root: Arc<PciRoot>) -> Self {
        Self { root }
    }
}

impl ConcurrentBusDevice for PciEcam {
    fn read(&self, offset: u64, data: &mut [u8]) {
        let root = &self.root;
        if data.len() == 8 && offset & 7 == 0 {
            let (low, high) = data.split_at_mut(4);
            let (bdf, reg) = decode(offset);
            root.config_read_bytes(bdf, reg, low);
            root.config_read_bytes(bdf, reg + 4, high);
        } else {
            let (bdf, reg) = decode(offset);
            root.config_read_bytes(bdf, reg, data);
        }
    }

    fn write(&self, offset: u64, data: &[u8]) {
        let root = &self.root;
        let (bdf, reg) = decode(offset);
        if data.len() == 8 && offset & 7 == 0 {
            root.config_write_bytes(bdf, reg, &data[..4]);
            root.config_write_bytes(bdf, reg + 4, &data[4..]);
        } else {
            root.config_write_bytes(bdf, reg, data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Bus;

    #[test]
    fn decodes_bus_device_function_and_register() {
        assert_eq!(decode(0x1_8000 + 0x3c), (Bdf::new(0, 3, 0), 0x3c));
        assert_eq!(decode(0xf_f000), (Bdf::new(0, 31, 7), 0));
        assert_eq!(decode(0x10_0004), (Bdf::new(1, 0, 0), 4));
        assert_eq!(ECAM_SIZE, 1 << 20);
    }

    #[test]
    fn same_view_as_the_io_ports() {
        let root = Arc::new(PciRoot::new(Arc::new(Bus::new()), None));
        let ecam = PciEcam::new(root);
        let mut dword = [0u8; 4];
        ecam.read(0, &mut dword);
        assert_eq!(u32::from_le_bytes(dword), 0x0d57_8086);
        let mut qword = [0u8; 8];
        ecam.read(0, &mut qword);
        assert_eq!(
            u32::from_le_bytes(qword[4..].try_into().unwrap()) & 0xffff,
            0
        );
        // Extended space past 256 bytes and absent functions.
        ecam.read(0x100, &mut dword);
        assert_eq!(dword, [0; 4]);
        ecam.read(0x8000, &mut dword);
        assert_eq!(dword, [0xff; 4]);
        ecam.read(0x3, &mut [0u8; 2]);
        ecam.write(0x4, &[0xff, 0xff]);
        ecam.read(0x4, &mut dword);
        assert_eq!(u32::from_le_bytes(dword) & 0xffff, 0x0407);
    }
}

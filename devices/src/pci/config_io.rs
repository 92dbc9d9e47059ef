//! PCI configuration mechanism #1: the address register at 0xcf8 and the data window at
//! 0xcfc-0xcff.
//!
//! The two are separate bus devices because the reset control register sits at 0xcf9,
//! between them. Only dword accesses reach the address register, as on real chipsets.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::root::PciRoot;
use super::Bdf;
use crate::bus::ConcurrentBusDevice;

pub const CONFIG_ADDRESS_PORT: u64 = 0xcf8;
pub const CONFIG_DATA_PORT: u64 = 0xcfc;
pub const CONFIG_DATA_LEN: u64 = 4;

const ENABLE: u32 = 1 << 31;

/// The decoded address register.
fn decode(address: u32) -> Option<(Bdf, usize)> {
    if address & ENABLE == 0 {
        return None;
    }
    let bdf = Bdf::new(
        (address >> 16) as u8,
        (address >> 11) as u8,
        (address >> 8) as u8,
    );
    Some((bdf, (address & 0xfc) as usize))
}

/// The address register both ports share. An atomic rather than a lock, so a vCPU waiting
/// on a slow function through 0xcfc does not hold up the others: like a real chipset's,
/// the register is one per machine, and guests serialise their CF8/CFC pairs themselves.
pub struct PciConfigIo;

impl PciConfigIo {
    /// The address port device (insert at 0xcf8, length 1) and the data port device
    /// (insert at 0xcfc, length 4).
    pub fn ports(root: Arc<PciRoot>) -> (Arc<ConfigAddressPort>, Arc<ConfigDataPort>) {
        let address = Arc::new(AtomicU32::new(0));
        (
            Arc::new(ConfigAddressPort(address.clone())),
            Arc::new(ConfigDataPort { root, address }),
        )
    }
}

pub struct ConfigAddressPort(Arc<AtomicU32>);

pub struct ConfigDataPort {
    root: Arc<PciRoot>,
    address: Arc<AtomicU32>,
}

impl ConcurrentBusDevice for ConfigAddressPort {
    fn read(&self, offset: u64, data: &mut [u8]) {
        if offset == 0 && data.len() == 4 {
            data.copy_from_slice(&self.0.load(Ordering::SeqCst).to_le_bytes());
        } else {
            data.fill(0xff);
        }
    }

    fn write(&self, offset: u64, data: &[u8]) {
        if let (0, Ok(bytes)) = (offset, <[u8; 4]>::try_from(data)) {
            // Bits 1:0 are reserved and read as zero.
            self.0
                .store(u32::from_le_bytes(bytes) & !0x7f00_0003, Ordering::SeqCst);
        }
    }
}

impl ConcurrentBusDevice for ConfigDataPort {
    fn read(&self, offset: u64, data: &mut [u8]) {
        match decode(self.address.load(Ordering::SeqCst)) {
            Some((bdf, reg)) => self
                .root
                .config_read_bytes(bdf, reg + offset as usize, data),
            None => data.fill(0xff),
        }
    }

    fn write(&self, offset: u64, data: &[u8]) {
        if let Some((bdf, reg)) = decode(self.address.load(Ordering::SeqCst)) {
            self.root
                .config_write_bytes(bdf, reg + offset as usize, data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Bus;

    fn ports() -> Bus {
        let root = Arc::new(PciRoot::new(Arc::new(Bus::new()), None));
        let (address, data) = PciConfigIo::ports(root);
        let pio = Bus::new();
        pio.insert_concurrent(address, CONFIG_ADDRESS_PORT, 1)
            .unwrap();
        pio.insert_concurrent(data, CONFIG_DATA_PORT, CONFIG_DATA_LEN)
            .unwrap();
        pio
    }

    fn select(pio: &Bus, address: u32) {
        assert!(pio.write(CONFIG_ADDRESS_PORT, &address.to_le_bytes()));
    }

    #[test]
    fn reads_the_host_bridge_in_every_width() {
        let pio = ports();
        select(&pio, 0x8000_0000);
        let mut dword = [0u8; 4];
        pio.read(CONFIG_DATA_PORT, &mut dword);
        assert_eq!(u32::from_le_bytes(dword), 0x0d57_8086);
        let mut word = [0u8; 2];
        pio.read(CONFIG_DATA_PORT + 2, &mut word);
        assert_eq!(u16::from_le_bytes(word), 0x0d57);
        let mut byte = [0u8; 1];
        pio.read(CONFIG_DATA_PORT + 1, &mut byte);
        assert_eq!(byte, [0x80]);
        // Class code at 0x08 through the offset bits of the address.
        select(&pio, 0x8000_0008);
        pio.read(CONFIG_DATA_PORT, &mut dword);
        assert_eq!(u32::from_le_bytes(dword) >> 8, 0x06_00_00);
        let mut back = [0u8; 4];
        pio.read(CONFIG_ADDRESS_PORT, &mut back);
        assert_eq!(u32::from_le_bytes(back), 0x8000_0008);
    }

    #[test]
    fn absent_functions_and_disabled_cycles_read_all_ones() {
        let pio = ports();
        let mut dword = [0u8; 4];
        for address in [0x0000_0000, 0x8000_0800, 0x8000_0100, 0x8001_0000] {
            select(&pio, address);
            pio.read(CONFIG_DATA_PORT, &mut dword);
            assert_eq!(dword, [0xff; 4], "{address:#x}");
        }
        // Non-dword accesses to the address register change nothing.
        select(&pio, 0x8000_0000);
        pio.write(CONFIG_ADDRESS_PORT, &[0]);
        pio.read(CONFIG_DATA_PORT, &mut dword);
        assert_eq!(u32::from_le_bytes(dword), 0x0d57_8086);
        // A 2-byte read at 0xcff crosses the dword: all-ones.
        let mut word = [0u8; 2];
        pio.read(CONFIG_DATA_PORT + 3, &mut word);
        assert_eq!(word, [0xff; 2]);
    }
}

//! PRI queue entries (16 bytes): PCIe page requests.

use super::{bit, bits, dwords_from_le, dwords_to_le};

pub const PRI_ENTRY_SIZE: usize = 16;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PriEntry(pub [u64; 2]);

impl PriEntry {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        sid: u32,
        ssid: Option<u32>,
        address: u64,
        group: u16,
        read: bool,
        write: bool,
        last: bool,
    ) -> Self {
        let mut d0 = u64::from(sid);
        if let Some(ssid) = ssid {
            d0 |= u64::from(ssid & 0xf_ffff) << 32 | 1 << 63;
        }
        d0 |= u64::from(read) << 60 | u64::from(write) << 61 | u64::from(last) << 62;
        let d1 = (address & !0xfff) | u64::from(group & 0x1ff);
        Self([d0, d1])
    }

    pub fn from_le_bytes(bytes: &[u8]) -> Option<Self> {
        dwords_from_le::<2>(bytes).map(Self)
    }

    pub fn to_le_bytes(&self) -> [u8; PRI_ENTRY_SIZE] {
        dwords_to_le(&self.0)
    }

    pub fn sid(&self) -> u32 {
        bits(self.0[0], 31, 0) as u32
    }
    pub fn ssid(&self) -> Option<u32> {
        bit(self.0[0], 63).then(|| bits(self.0[0], 51, 32) as u32)
    }
    pub fn read(&self) -> bool {
        bit(self.0[0], 60)
    }
    pub fn write(&self) -> bool {
        bit(self.0[0], 61)
    }
    pub fn last(&self) -> bool {
        bit(self.0[0], 62)
    }
    pub fn group(&self) -> u16 {
        bits(self.0[1], 8, 0) as u16
    }
    pub fn address(&self) -> u64 {
        self.0[1] & !0xfff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_request_fields() {
        let e = PriEntry::new(0x42, Some(7), 0x1234_5678, 0x1ab, true, false, true);
        assert_eq!(e.0[0], 0x42 | 7 << 32 | 1 << 63 | 1 << 60 | 1 << 62);
        assert_eq!(e.0[1], 0x1234_5000 | 0x1ab);
        let e = PriEntry::from_le_bytes(&e.to_le_bytes()).unwrap();
        assert_eq!(
            (e.sid(), e.ssid(), e.group(), e.address()),
            (0x42, Some(7), 0x1ab, 0x1234_5000)
        );
        assert!(e.read() && !e.write() && e.last());
    }
}

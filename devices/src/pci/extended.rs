//! PCI Express extended configuration space (bytes 0x100-0xfff, reached through ECAM): the
//! extended capability list.
//!
//! Each capability starts with a dword header (ID in bits 15:0, version in 19:16, the next
//! capability's offset in 31:20); the list starts at 0x100 and ends at a next offset of 0.
//! As in the standard header, every dword has a writable mask and a guest write changes only
//! writable bits. A function with no extended capabilities reads 0 at 0x100, which ends the
//! list.

use super::config::ConfigError;
use super::{CONFIG_SPACE_SIZE, EXTENDED_CONFIG_SPACE_SIZE};

const FIRST_REG: usize = CONFIG_SPACE_SIZE / 4;
const REGS: usize = (EXTENDED_CONFIG_SPACE_SIZE - CONFIG_SPACE_SIZE) / 4;
const HEADER_LEN: usize = 4;

/// The extended capabilities of one function.
#[derive(Debug, Clone)]
pub struct ExtendedCapabilities {
    regs: Vec<u32>,
    writable: Vec<u32>,
    /// Byte offset of the last capability's header.
    last: Option<usize>,
    next: usize,
}

impl Default for ExtendedCapabilities {
    fn default() -> Self {
        Self {
            regs: vec![0; REGS],
            writable: vec![0; REGS],
            last: None,
            next: CONFIG_SPACE_SIZE,
        }
    }
}

impl ExtendedCapabilities {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends capability `id` (version `version`) whose registers after the header are
    /// `body`; `writable` (same length or shorter) marks the bits the guest may change.
    /// Returns the capability's offset in configuration space.
    pub fn add(
        &mut self,
        id: u16,
        version: u8,
        body: &[u8],
        writable: &[u8],
    ) -> Result<usize, ConfigError> {
        let offset = self.next;
        let len = (HEADER_LEN + body.len()).next_multiple_of(4);
        if offset + len > EXTENDED_CONFIG_SPACE_SIZE {
            return Err(ConfigError::CapabilitySpace(body.len()));
        }
        self.regs[Self::index(offset)] = u32::from(id) | u32::from(version & 0xf) << 16;
        for (i, &byte) in body.iter().enumerate() {
            let mask = writable.get(i).copied().unwrap_or(0);
            self.set_byte(offset + HEADER_LEN + i, byte, mask);
        }
        if let Some(previous) = self.last {
            let header = &mut self.regs[Self::index(previous)];
            *header = *header & 0x000f_ffff | (offset as u32) << 20;
        }
        self.last = Some(offset);
        self.next = offset + len;
        Ok(offset)
    }

    fn index(offset: usize) -> usize {
        offset / 4 - FIRST_REG
    }

    fn set_byte(&mut self, offset: usize, value: u8, writable: u8) {
        let (reg, shift) = (Self::index(offset), (offset % 4) * 8);
        self.regs[reg] = self.regs[reg] & !(0xff << shift) | u32::from(value) << shift;
        self.writable[reg] = self.writable[reg] & !(0xff << shift) | u32::from(writable) << shift;
    }

    /// Whether register index `reg` (a dword of configuration space) is extended space.
    pub fn holds(reg: usize) -> bool {
        (FIRST_REG..FIRST_REG + REGS).contains(&reg)
    }

    /// The dword at register index `reg` (0 outside extended space).
    pub fn read_reg(&self, reg: usize) -> u32 {
        reg.checked_sub(FIRST_REG)
            .and_then(|i| self.regs.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// A guest write of `data` (1, 2 or 4 bytes) at byte `offset` of register `reg`.
    pub fn write_reg(&mut self, reg: usize, offset: usize, data: &[u8]) {
        let Some(i) = reg.checked_sub(FIRST_REG).filter(|&i| i < REGS) else {
            return;
        };
        if data.is_empty() || offset + data.len() > 4 {
            return;
        }
        let (mut value, mut bytes) = (0u32, 0u32);
        for (n, &b) in data.iter().enumerate() {
            let shift = (offset + n) * 8;
            value |= u32::from(b) << shift;
            bytes |= 0xff << shift;
        }
        let mask = self.writable[i] & bytes;
        self.regs[i] = self.regs[i] & !mask | value & mask;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_list_reads_zero_at_its_start() {
        let caps = ExtendedCapabilities::new();
        assert_eq!(caps.read_reg(0x100 / 4), 0);
        assert!(ExtendedCapabilities::holds(0x100 / 4));
        assert!(ExtendedCapabilities::holds(0xffc / 4));
        assert!(!ExtendedCapabilities::holds(0xfc / 4));
        assert!(!ExtendedCapabilities::holds(0x1000 / 4));
    }

    #[test]
    fn capabilities_chain_and_honour_their_masks() {
        let mut caps = ExtendedCapabilities::new();
        let first = caps
            .add(0x1b, 1, &[0x00, 0x14, 0, 0], &[0, 0, 0x07])
            .unwrap();
        let second = caps
            .add(0x0f, 1, &[0x20, 0, 0, 0], &[0, 0, 0x1f, 0x80])
            .unwrap();
        assert_eq!((first, second), (0x100, 0x108));
        assert_eq!(caps.read_reg(0x100 / 4), 0x1081_001b);
        assert_eq!(caps.read_reg(0x108 / 4), 0x0001_000f);
        caps.write_reg(0x104 / 4, 0, &u32::MAX.to_le_bytes());
        assert_eq!(caps.read_reg(0x104 / 4), 0x0007_1400);
        caps.write_reg(0x10c / 4, 2, &[0xff, 0xff]);
        assert_eq!(caps.read_reg(0x10c / 4), 0x801f_0020);
        // Headers are read-only.
        caps.write_reg(0x100 / 4, 0, &[0, 0, 0, 0]);
        assert_eq!(caps.read_reg(0x100 / 4), 0x1081_001b);
    }

    #[test]
    fn odd_writes_and_overflow_are_refused() {
        let mut caps = ExtendedCapabilities::new();
        caps.add(0x13, 1, &[0xff; 8], &[0xff; 8]).unwrap();
        caps.write_reg(0x104 / 4, 3, &[1, 2]);
        caps.write_reg(0x104 / 4, 0, &[]);
        caps.write_reg(0x1000 / 4, 0, &[1]);
        caps.write_reg(0x10 / 4, 0, &[1]);
        assert_eq!(caps.read_reg(0x104 / 4), u32::MAX);
        assert!(caps.add(0x13, 1, &[0; 4000], &[]).is_err());
    }
}

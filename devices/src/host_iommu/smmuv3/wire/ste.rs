//! Stream table entry (64 bytes) and the two-level stream table's level-1 descriptor.

use super::{bit, bits, dwords_from_le, dwords_to_le};

pub const STE_SIZE: usize = 64;

/// STE.Config values (three bits; 0b0xx other than these is treated as abort).
pub mod config {
    pub const ABORT: u8 = 0b000;
    pub const BYPASS: u8 = 0b100;
    pub const S1_TRANSLATE: u8 = 0b101;
    pub const S2_TRANSLATE: u8 = 0b110;
    pub const NESTED: u8 = 0b111;
}

/// Mask of STE.S1ContextPtr and S2TTB-like 52-bit addresses aligned to 64 and 16 bytes.
const ADDR_51_6: u64 = 0x000f_ffff_ffff_ffc0;
const ADDR_51_4: u64 = 0x000f_ffff_ffff_fff0;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ste(pub [u64; 8]);

impl Ste {
    pub fn from_le_bytes(bytes: &[u8]) -> Option<Self> {
        dwords_from_le::<8>(bytes).map(Self)
    }

    pub fn to_le_bytes(&self) -> [u8; STE_SIZE] {
        dwords_to_le(&self.0)
    }

    pub fn valid(&self) -> bool {
        bit(self.0[0], 0)
    }
    pub fn config(&self) -> u8 {
        bits(self.0[0], 3, 1) as u8
    }
    /// 0 linear CD table, 1 two-level with 4 KiB leaves, 2 two-level with 64 KiB leaves.
    pub fn s1_fmt(&self) -> u8 {
        bits(self.0[0], 5, 4) as u8
    }
    pub fn s1_context_ptr(&self) -> u64 {
        self.0[0] & ADDR_51_6
    }
    /// log2 of the number of CDs; 0: one CD and no substreams.
    pub fn s1_cd_max(&self) -> u8 {
        bits(self.0[0], 63, 59) as u8
    }

    pub fn s1_dss(&self) -> u8 {
        bits(self.0[1], 1, 0) as u8
    }
    pub fn s1_stall_disable(&self) -> bool {
        bit(self.0[1], 27)
    }
    pub fn eats(&self) -> u8 {
        bits(self.0[1], 29, 28) as u8
    }
    /// 0 NS-EL1, 2 EL2.
    pub fn strw(&self) -> u8 {
        bits(self.0[1], 31, 30) as u8
    }

    pub fn s2_vmid(&self) -> u16 {
        bits(self.0[2], 15, 0) as u16
    }
    pub fn s2_t0sz(&self) -> u8 {
        bits(self.0[2], 37, 32) as u8
    }
    pub fn s2_sl0(&self) -> u8 {
        bits(self.0[2], 39, 38) as u8
    }
    /// 0 4 KiB, 1 64 KiB, 2 16 KiB.
    pub fn s2_tg(&self) -> u8 {
        bits(self.0[2], 47, 46) as u8
    }
    /// The IPS encoding of stage 2's output size.
    pub fn s2_ps(&self) -> u8 {
        bits(self.0[2], 50, 48) as u8
    }
    pub fn s2_aa64(&self) -> bool {
        bit(self.0[2], 51)
    }
    pub fn s2_endi(&self) -> bool {
        bit(self.0[2], 52)
    }
    pub fn s2_affd(&self) -> bool {
        bit(self.0[2], 53)
    }
    pub fn s2_stall(&self) -> bool {
        bit(self.0[2], 57)
    }
    pub fn s2_record(&self) -> bool {
        bit(self.0[2], 58)
    }
    pub fn s2_ttb(&self) -> u64 {
        self.0[3] & ADDR_51_4
    }
}

/// A level-1 stream table descriptor (8 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L1StreamDescriptor(pub u64);

impl L1StreamDescriptor {
    /// The level-2 table holds 2^(span-1) STEs; 0 means the descriptor is invalid.
    pub fn span(&self) -> u8 {
        bits(self.0, 4, 0) as u8
    }
    pub fn l2_ptr(&self) -> u64 {
        self.0 & ADDR_51_6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_sit_where_the_architecture_puts_them() {
        let mut bytes = [0u8; STE_SIZE];
        // dword0: V, Config=0b101, S1Fmt=2, S1ContextPtr=0x1234_5640, S1CDMax=0x1f
        let d0: u64 = 1 | (0b101 << 1) | (2 << 4) | 0x1234_5640 | (0x1f << 59);
        let d2: u64 = 0xbeef | (24 << 32) | (1 << 38) | (2 << 46) | (5 << 48) | (1 << 51);
        bytes[0..8].copy_from_slice(&d0.to_le_bytes());
        bytes[8..16].copy_from_slice(&(2u64 | 1 << 27).to_le_bytes());
        bytes[16..24].copy_from_slice(&d2.to_le_bytes());
        bytes[24..32].copy_from_slice(&0x8_0000_1000u64.to_le_bytes());
        let ste = Ste::from_le_bytes(&bytes).unwrap();
        assert!(ste.valid());
        assert_eq!(ste.config(), config::S1_TRANSLATE);
        assert_eq!(ste.s1_fmt(), 2);
        assert_eq!(ste.s1_context_ptr(), 0x1234_5640);
        assert_eq!(ste.s1_cd_max(), 0x1f);
        assert_eq!(ste.s1_dss(), 2);
        assert!(ste.s1_stall_disable());
        assert_eq!(ste.s2_vmid(), 0xbeef);
        assert_eq!(ste.s2_t0sz(), 24);
        assert_eq!(ste.s2_sl0(), 1);
        assert_eq!(ste.s2_tg(), 2);
        assert_eq!(ste.s2_ps(), 5);
        assert!(ste.s2_aa64() && !ste.s2_endi());
        assert_eq!(ste.s2_ttb(), 0x8_0000_1000);
        assert_eq!(ste.to_le_bytes(), bytes);
        assert!(Ste::from_le_bytes(&bytes[..63]).is_none());
    }

    #[test]
    fn l1_descriptor_fields() {
        let d = L1StreamDescriptor(0x4_0000_2000 | 9);
        assert_eq!(d.span(), 9);
        assert_eq!(d.l2_ptr(), 0x4_0000_2000);
    }
}

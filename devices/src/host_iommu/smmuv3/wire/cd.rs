//! Context descriptor (64 bytes) and the two-level CD table's level-1 descriptor.

use super::{bit, bits, dwords_from_le, dwords_to_le};

pub const CD_SIZE: usize = 64;

const TTB_MASK: u64 = 0x000f_ffff_ffff_fff0;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cd(pub [u64; 8]);

impl Cd {
    pub fn from_le_bytes(bytes: &[u8]) -> Option<Self> {
        dwords_from_le::<8>(bytes).map(Self)
    }

    pub fn to_le_bytes(&self) -> [u8; CD_SIZE] {
        dwords_to_le(&self.0)
    }

    pub fn t0sz(&self) -> u8 {
        bits(self.0[0], 5, 0) as u8
    }
    /// 0 4 KiB, 1 64 KiB, 2 16 KiB.
    pub fn tg0(&self) -> u8 {
        bits(self.0[0], 7, 6) as u8
    }
    pub fn epd0(&self) -> bool {
        bit(self.0[0], 14)
    }
    pub fn endi(&self) -> bool {
        bit(self.0[0], 15)
    }
    pub fn t1sz(&self) -> u8 {
        bits(self.0[0], 21, 16) as u8
    }
    /// Encoded unlike TG0: 1 16 KiB, 2 4 KiB, 3 64 KiB.
    pub fn tg1(&self) -> u8 {
        bits(self.0[0], 23, 22) as u8
    }
    pub fn epd1(&self) -> bool {
        bit(self.0[0], 30)
    }
    pub fn valid(&self) -> bool {
        bit(self.0[0], 31)
    }
    pub fn ips(&self) -> u8 {
        bits(self.0[0], 34, 32) as u8
    }
    pub fn affd(&self) -> bool {
        bit(self.0[0], 35)
    }
    pub fn wxn(&self) -> bool {
        bit(self.0[0], 36)
    }
    /// Top-byte ignore for the TTB0 (bit 0) and TTB1 (bit 1) regions.
    pub fn tbi(&self) -> u8 {
        bits(self.0[0], 39, 38) as u8
    }
    pub fn aa64(&self) -> bool {
        bit(self.0[0], 41)
    }
    /// Faults stall (S) rather than terminate.
    pub fn stall(&self) -> bool {
        bit(self.0[0], 44)
    }
    /// Faults are recorded as events (R).
    pub fn record(&self) -> bool {
        bit(self.0[0], 45)
    }
    /// Terminated transactions abort (A); clear: reads as zero, writes ignored.
    pub fn abort(&self) -> bool {
        bit(self.0[0], 46)
    }
    pub fn asid(&self) -> u16 {
        bits(self.0[0], 63, 48) as u16
    }

    pub fn had0(&self) -> bool {
        bit(self.0[1], 1)
    }
    pub fn ttb0(&self) -> u64 {
        self.0[1] & TTB_MASK
    }
    pub fn had1(&self) -> bool {
        bit(self.0[2], 1)
    }
    pub fn ttb1(&self) -> u64 {
        self.0[2] & TTB_MASK
    }
}

/// A level-1 CD table descriptor (8 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L1CdDescriptor(pub u64);

impl L1CdDescriptor {
    pub fn valid(&self) -> bool {
        bit(self.0, 0)
    }
    pub fn l2_ptr(&self) -> u64 {
        self.0 & 0x000f_ffff_ffff_f000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_sit_where_the_architecture_puts_them() {
        let d0: u64 = 25
            | (2 << 6)
            | (1 << 14)
            | (33 << 16)
            | (3 << 22)
            | (1 << 30)
            | (1 << 31)
            | (5 << 32)
            | (1 << 35)
            | (2 << 38)
            | (1 << 41)
            | (1 << 44)
            | (1 << 45)
            | (1 << 46)
            | (0xabcd << 48);
        let cd = Cd([d0, 0x1_2345_6000 | 2, 0x7000, 0x44, 0, 0, 0, 0]);
        assert_eq!(cd.t0sz(), 25);
        assert_eq!(cd.tg0(), 2);
        assert!(cd.epd0() && !cd.endi());
        assert_eq!(cd.t1sz(), 33);
        assert_eq!(cd.tg1(), 3);
        assert!(cd.epd1() && cd.valid() && cd.affd() && cd.aa64());
        assert_eq!(cd.ips(), 5);
        assert_eq!(cd.tbi(), 2);
        assert!(cd.stall() && cd.record() && cd.abort());
        assert_eq!(cd.asid(), 0xabcd);
        assert!(cd.had0() && !cd.had1());
        assert_eq!(cd.ttb0(), 0x1_2345_6000);
        assert_eq!(cd.ttb1(), 0x7000);
        assert_eq!(Cd::from_le_bytes(&cd.to_le_bytes()), Some(cd));
        assert!(Cd::from_le_bytes(&[0; 65]).is_none());
    }
}

//! Translation granules and the VMSAv8-64 level geometry they imply.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granule {
    K4,
    K16,
    K64,
}

impl Granule {
    /// TG0 and STE.S2TG encoding: 0 4 KiB, 1 64 KiB, 2 16 KiB.
    pub fn from_tg0(tg: u8) -> Option<Self> {
        match tg {
            0 => Some(Self::K4),
            1 => Some(Self::K64),
            2 => Some(Self::K16),
            _ => None,
        }
    }

    /// TG1 encoding: 1 16 KiB, 2 4 KiB, 3 64 KiB.
    pub fn from_tg1(tg: u8) -> Option<Self> {
        match tg {
            1 => Some(Self::K16),
            2 => Some(Self::K4),
            3 => Some(Self::K64),
            _ => None,
        }
    }

    /// log2 of the granule size.
    pub const fn bits(self) -> u32 {
        match self {
            Self::K4 => 12,
            Self::K16 => 14,
            Self::K64 => 16,
        }
    }

    /// Input-address bits one table level resolves.
    pub const fn stride(self) -> u32 {
        self.bits() - 3
    }

    /// The lowest input-address bit a level's index resolves (levels 0..=3).
    pub const fn level_shift(self, level: u32) -> u32 {
        self.bits() + (3 - level) * self.stride()
    }

    /// Whether a block descriptor is allowed at `level` (without 52-bit addressing).
    pub const fn block_allowed(self, level: u32) -> bool {
        match self {
            Self::K4 => level == 1 || level == 2,
            Self::K16 | Self::K64 => level == 2,
        }
    }

    /// The level a stage-1 walk of an `input_bits`-bit address space starts at: the one
    /// whose table resolves the top bits left after the levels below.
    pub fn stage1_start_level(self, input_bits: u32) -> u32 {
        let levels = (input_bits - self.bits()).div_ceil(self.stride());
        4 - levels
    }

    /// The start level STE.S2SL0 selects, if it is not reserved.
    pub fn stage2_start_level(self, sl0: u8) -> Option<u32> {
        match (self, sl0) {
            (Self::K4, 0..=2) => Some(2 - u32::from(sl0)),
            (Self::K16 | Self::K64, 0..=2) => Some(3 - u32::from(sl0)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_kib_levels() {
        let g = Granule::K4;
        assert_eq!([0, 1, 2, 3].map(|l| g.level_shift(l)), [39, 30, 21, 12]);
        // T0SZ 16..=24 start at level 0, 25..=33 at 1, 34..=39 at 2.
        assert_eq!(g.stage1_start_level(48), 0);
        assert_eq!(g.stage1_start_level(40), 0);
        assert_eq!(g.stage1_start_level(39), 1);
        assert_eq!(g.stage1_start_level(31), 1);
        assert_eq!(g.stage1_start_level(30), 2);
        assert_eq!(g.stage1_start_level(25), 2);
        assert_eq!(g.stage2_start_level(0), Some(2));
        assert_eq!(g.stage2_start_level(2), Some(0));
        assert_eq!(g.stage2_start_level(3), None);
    }

    #[test]
    fn larger_granules() {
        assert_eq!(Granule::K64.level_shift(3), 16);
        assert_eq!(Granule::K64.level_shift(1), 42);
        assert_eq!(Granule::K64.stage1_start_level(48), 1);
        assert_eq!(Granule::K64.stage1_start_level(42), 2);
        assert_eq!(Granule::K16.level_shift(2), 25);
        assert_eq!(Granule::K16.stage1_start_level(48), 0);
        assert_eq!(Granule::K16.stage1_start_level(47), 1);
        assert_eq!(Granule::K16.stage2_start_level(1), Some(2));
        assert_eq!(Granule::from_tg1(2), Some(Granule::K4));
        assert_eq!(Granule::from_tg0(3), None);
    }
}

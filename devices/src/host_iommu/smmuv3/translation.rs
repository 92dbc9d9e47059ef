//! The result of translating one address: a range of input addresses that maps, as a
//! whole, to a range of output addresses with one set of permissions (what a TLB caches
//! and an IOTLB is filled with).

use super::access::{Access, AllowedAccesses};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    /// First input address of the range (aligned to its size).
    pub start: u64,
    /// Last input address of the range, inclusive.
    pub last: u64,
    /// The output address of `start`.
    pub output: u64,
    pub allowed: AllowedAccesses,
}

impl Translation {
    /// A range of `2^size_bits` bytes containing `input`, which maps to `output`.
    pub fn around(input: u64, output: u64, size_bits: u32, allowed: AllowedAccesses) -> Self {
        let offset_mask = if size_bits >= 64 {
            u64::MAX
        } else {
            (1u64 << size_bits) - 1
        };
        Self {
            start: input & !offset_mask,
            last: input | offset_mask,
            output: output & !offset_mask,
            allowed,
        }
    }

    pub fn contains(&self, input: u64) -> bool {
        self.start <= input && input <= self.last
    }

    pub fn permits(&self, access: Access) -> bool {
        self.allowed.permits(access)
    }

    /// The output address of `input`, which must be in the range.
    pub fn output_of(&self, input: u64) -> u64 {
        self.output.wrapping_add(input - self.start)
    }

    /// log2 of the range's size (ranges are power-of-two sized and aligned).
    pub fn size_bits(&self) -> u32 {
        (self.last - self.start)
            .checked_add(1)
            .map_or(64, u64::trailing_zeros)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_aligned_to_their_size() {
        let t = Translation::around(0x1234_5678, 0xab4_5678, 21, AllowedAccesses::ALL);
        assert_eq!(
            (t.start, t.last, t.output),
            (0x1220_0000, 0x123f_ffff, 0xaa0_0000)
        );
        assert_eq!(t.output_of(0x1234_5678), 0xab4_5678);
        assert_eq!(t.size_bits(), 21);
        let all = Translation::around(5, 5, 64, AllowedAccesses::ALL);
        assert_eq!((all.start, all.last, all.size_bits()), (0, u64::MAX, 64));
        assert!(all.contains(u64::MAX));
    }
}

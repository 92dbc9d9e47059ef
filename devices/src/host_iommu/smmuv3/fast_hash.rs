//! A hasher for the model's small integer keys (StreamIDs, CD indexes, VMIDs and ASIDs):
//! a multiply per word, where SipHash costs more than the lookup it serves. The maps it
//! backs are bounded (they start over when full), so a guest choosing colliding keys can
//! slow its own lookups, not grow them without limit.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

const K: u64 = 0x9e37_79b9_7f4a_7c15;

#[derive(Debug, Default, Clone, Copy)]
pub struct IntHasher(u64);

impl Hasher for IntHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b.into());
        }
    }

    #[inline]
    fn write_u8(&mut self, v: u8) {
        self.write_u64(v.into());
    }

    #[inline]
    fn write_u16(&mut self, v: u16) {
        self.write_u64(v.into());
    }

    #[inline]
    fn write_u32(&mut self, v: u32) {
        self.write_u64(v.into());
    }

    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(26) ^ v).wrapping_mul(K);
    }

    #[inline]
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // Fold the well-mixed high half down: the table indexes by the low bits.
        self.0 ^ self.0 >> 32
    }
}

pub type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_keys_spread_over_low_bits() {
        let mut low = std::collections::HashSet::new();
        for k in 0u32..256 {
            let mut h = IntHasher::default();
            h.write_u32(k);
            low.insert(h.finish() & 0xff);
        }
        assert!(low.len() > 128, "{} distinct of 256", low.len());
        let mut map: IntMap<(u32, u32), u32> = IntMap::default();
        map.insert((1, 2), 3);
        assert_eq!(map.get(&(1, 2)), Some(&3));
        assert_eq!(map.get(&(2, 1)), None);
    }
}

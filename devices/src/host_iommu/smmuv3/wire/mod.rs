//! The SMMUv3 wire formats, parsed in one place: stream table entries and their level-1
//! descriptors, context descriptors and theirs, VMSAv8-64 translation table descriptors,
//! commands, event records and PRI queue entries. Each is its little-endian dwords with a
//! size check on the way in and named accessors for the fields; nothing here validates a
//! field's value against the SMMU's configuration (that is the job of the code using it).

pub mod cd;
pub mod command;
pub mod descriptor;
pub mod event;
pub mod pri;
pub mod ste;

pub use cd::{Cd, L1CdDescriptor, CD_SIZE};
pub use command::{opcode, Command, COMMAND_SIZE};
pub use descriptor::Descriptor;
pub use event::{event_id, EventRecord, FaultClass, EVENT_SIZE};
pub use pri::{PriEntry, PRI_ENTRY_SIZE};
pub use ste::{L1StreamDescriptor, Ste, STE_SIZE};

/// Bits `[hi:lo]` of `value`, shifted down.
#[inline]
pub(crate) const fn bits(value: u64, hi: u32, lo: u32) -> u64 {
    (value >> lo) & (u64::MAX >> (63 - (hi - lo)))
}

#[inline]
pub(crate) const fn bit(value: u64, n: u32) -> bool {
    value >> n & 1 == 1
}

/// `value` with bits `[hi:lo]` replaced by `field` (truncated to the width).
#[inline]
pub(crate) const fn with_bits(value: u64, hi: u32, lo: u32, field: u64) -> u64 {
    let mask = (u64::MAX >> (63 - (hi - lo))) << lo;
    (value & !mask) | ((field << lo) & mask)
}

/// `N` little-endian dwords from exactly `N * 8` bytes; `None` for any other length.
pub(crate) fn dwords_from_le<const N: usize>(bytes: &[u8]) -> Option<[u64; N]> {
    if bytes.len() != N * 8 {
        return None;
    }
    let mut dwords = [0u64; N];
    for (dword, chunk) in dwords.iter_mut().zip(bytes.chunks_exact(8)) {
        *dword = u64::from_le_bytes(chunk.try_into().ok()?);
    }
    Some(dwords)
}

pub(crate) fn dwords_to_le<const N: usize, const B: usize>(dwords: &[u64; N]) -> [u8; B] {
    const { assert!(N * 8 == B) };
    let mut bytes = [0u8; B];
    for (chunk, dword) in bytes.chunks_exact_mut(8).zip(dwords) {
        chunk.copy_from_slice(&dword.to_le_bytes());
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_accessors_cover_their_ranges_only() {
        assert_eq!(bits(0xf0, 7, 4), 0xf);
        assert_eq!(bits(u64::MAX, 63, 0), u64::MAX);
        assert_eq!(bits(1 << 63, 63, 63), 1);
        assert_eq!(with_bits(0, 7, 4, 0x1f), 0xf0);
        assert_eq!(with_bits(u64::MAX, 63, 0, 5), 5);
        assert!(bit(0b100, 2) && !bit(0b100, 1));
    }

    #[test]
    fn dwords_round_trip_and_refuse_other_sizes() {
        let bytes: [u8; 16] = dwords_to_le(&[0x0102_0304_0506_0708u64, 9]);
        assert_eq!(bytes[0], 0x08);
        assert_eq!(bytes[8], 9);
        assert_eq!(
            dwords_from_le::<2>(&bytes),
            Some([0x0102_0304_0506_0708, 9])
        );
        assert_eq!(dwords_from_le::<2>(&bytes[..15]), None);
        assert_eq!(dwords_from_le::<1>(&bytes), None);
    }
}

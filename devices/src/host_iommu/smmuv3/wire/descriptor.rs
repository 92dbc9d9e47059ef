//! VMSAv8-64 translation table descriptors (8 bytes), stage 1 and stage 2.

use super::{bit, bits};

/// Output-address bits a descriptor can hold: \[51:0\]; a granule masks off its low bits.
/// Bits \[51:48\] are only meaningful with 52-bit addresses, so with a smaller output size
/// any of them set is an address size fault.
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_ffff;

/// Table descriptor attribute bits \[63:59\]: NSTable, APTable, XNTable, PXNTable.
pub const TABLE_ATTRS: u64 = 0x1f << 59;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor(pub u64);

impl Descriptor {
    pub fn from_le(raw: u64) -> Self {
        Self(u64::from_le(raw))
    }

    pub fn valid(&self) -> bool {
        bit(self.0, 0)
    }
    /// Bit 1: table (levels 0-2) or page (level 3); clear: block (levels 0-2) or reserved
    /// (level 3).
    pub fn table_or_page(&self) -> bool {
        bit(self.0, 1)
    }
    /// The address field for a granule of `2^granule_bits` bytes, bits `[51:granule_bits]`.
    pub fn address(&self, granule_bits: u32) -> u64 {
        self.0 & ADDRESS_MASK & !((1u64 << granule_bits) - 1)
    }

    // Table descriptors.
    pub fn pxn_table(&self) -> bool {
        bit(self.0, 59)
    }
    pub fn xn_table(&self) -> bool {
        bit(self.0, 60)
    }
    /// APTable\[0\] (bit 61): no unprivileged access below.
    pub fn ap_table_no_unprivileged(&self) -> bool {
        bit(self.0, 61)
    }
    /// APTable\[1\] (bit 62): read-only below.
    pub fn ap_table_read_only(&self) -> bool {
        bit(self.0, 62)
    }

    // Stage-1 block and page descriptors.
    pub fn attr_index(&self) -> u8 {
        bits(self.0, 4, 2) as u8
    }
    /// AP\[1\] (bit 6): unprivileged accesses allowed.
    pub fn ap_unprivileged(&self) -> bool {
        bit(self.0, 6)
    }
    /// AP\[2\] (bit 7): read-only.
    pub fn ap_read_only(&self) -> bool {
        bit(self.0, 7)
    }
    pub fn access_flag(&self) -> bool {
        bit(self.0, 10)
    }
    /// nG (bit 11): the translation belongs to the ASID; clear: global.
    pub fn not_global(&self) -> bool {
        bit(self.0, 11)
    }
    pub fn pxn(&self) -> bool {
        bit(self.0, 53)
    }
    pub fn uxn(&self) -> bool {
        bit(self.0, 54)
    }

    // Stage-2 block and page descriptors.
    /// S2AP\[0\] (bit 6).
    pub fn s2_read(&self) -> bool {
        bit(self.0, 6)
    }
    /// S2AP\[1\] (bit 7).
    pub fn s2_write(&self) -> bool {
        bit(self.0, 7)
    }
    /// XN\[1\] (bit 54): no instruction fetches.
    pub fn s2_execute_never(&self) -> bool {
        bit(self.0, 54)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage1_and_table_fields() {
        let d = Descriptor((1 << 62) | (1 << 61) | (1 << 60) | (1 << 59) | 0xf_1234_5000 | 3);
        assert!(d.valid() && d.table_or_page());
        assert!(d.ap_table_read_only() && d.ap_table_no_unprivileged());
        assert!(d.xn_table() && d.pxn_table());
        assert_eq!(d.address(12), 0xf_1234_5000);
        assert_eq!(d.address(16), 0xf_1234_0000);
        let leaf =
            Descriptor(0x4000_0000 | (1 << 54) | (1 << 11) | (1 << 10) | (3 << 6) | (5 << 2) | 1);
        assert!(leaf.valid() && !leaf.table_or_page());
        assert!(leaf.uxn() && !leaf.pxn() && leaf.not_global() && leaf.access_flag());
        assert!(leaf.ap_read_only() && leaf.ap_unprivileged());
        assert!(leaf.s2_read() && leaf.s2_write() && leaf.s2_execute_never());
        assert_eq!(leaf.attr_index(), 5);
        assert_eq!(Descriptor::from_le(u64::to_le(7)).0, 7);
    }

    #[test]
    fn high_address_bits_stay_in_the_field_so_they_can_be_checked() {
        assert_eq!(Descriptor(1 << 50 | 3).address(12), 1 << 50);
        assert_eq!(Descriptor(1 << 52 | 3).address(12), 0);
    }
}

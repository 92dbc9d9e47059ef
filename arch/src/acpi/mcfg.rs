//! MCFG: where the PCI ECAM is, so guests use memory-mapped configuration access.

use acpi_tables::mcfg::MCFG;

use super::{to_bytes, OEM_ID, OEM_REVISION, OEM_TABLE_ID};

/// The MCFG for one ECAM window of segment 0 covering buses 0..=`last_bus`.
pub fn build_mcfg(ecam_base: u64, last_bus: u8) -> Vec<u8> {
    let mut mcfg = MCFG::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    mcfg.add_ecam(ecam_base, 0, 0, last_bus);
    to_bytes(&mcfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_allocation_entry() {
        let table = build_mcfg(0xe000_0000, 0);
        assert_eq!(&table[..4], b"MCFG");
        assert_eq!(table.len(), 44 + 16);
        assert_eq!(
            u64::from_le_bytes(table[44..52].try_into().unwrap()),
            0xe000_0000
        );
        assert_eq!(&table[52..56], &[0, 0, 0, 0]);
        assert_eq!(table.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
    }
}

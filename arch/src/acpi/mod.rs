//! ACPI tables, built with `acpi_tables` and placed in the BIOS area from 0xe0000.
//!
//! RSDP first (guests scan for it there), then the DSDT, FADT, MADT, any tables the devices
//! contribute (MCFG, VIOT), and the XSDT that lists them.

mod dsdt;
mod fadt;
mod madt;
mod mcfg;
mod power_button;

pub use mcfg::build_mcfg;

use acpi_tables::{rsdp::Rsdp, xsdt::XSDT, Aml};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::layout::{ACPI_END, ACPI_START};

pub const OEM_ID: [u8; 6] = *b"NESTOR";
pub const OEM_TABLE_ID: [u8; 8] = *b"NESTORVM";
pub const OEM_REVISION: u32 = 1;

/// The PCI host bridge as the DSDT describes it.
#[derive(Debug, Clone)]
pub struct PciRootDescription {
    pub ecam_base: u64,
    pub last_bus: u8,
    pub mmio32_base: u32,
    pub mmio32_size: u32,
}

/// The Generic Event Device as the DSDT describes it: its event register and interrupt.
#[derive(Debug, Clone)]
pub struct GedDescription {
    pub register: u64,
    pub gsi: u32,
}

/// What the tables describe.
#[derive(Default)]
pub struct AcpiConfig {
    pub cpus: u8,
    pub pci: Option<PciRootDescription>,
    /// A power button behind a Generic Event Device.
    pub ged: Option<GedDescription>,
    /// Further tables (MCFG, VIOT, ...), complete with header and checksum.
    pub extra_tables: Vec<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    #[error("the ACPI tables need {needed} bytes but only {room} fit below 1 MiB")]
    TooBig { needed: u64, room: u64 },
    #[error("cannot write the ACPI tables to guest memory: {0}")]
    Memory(String),
}

fn to_bytes(table: &dyn Aml) -> Vec<u8> {
    let mut bytes = Vec::new();
    table.to_aml_bytes(&mut bytes);
    bytes
}

/// Places the next table 8-byte aligned after the previous one.
struct Placer<'a> {
    mem: &'a GuestMemoryMmap,
    next: u64,
}

impl Placer<'_> {
    fn place(&mut self, bytes: &[u8]) -> Result<u64, AcpiError> {
        let addr = self.next.next_multiple_of(8);
        let end = addr + bytes.len() as u64;
        if end > ACPI_END {
            return Err(AcpiError::TooBig {
                needed: end - ACPI_START,
                room: ACPI_END - ACPI_START,
            });
        }
        self.mem
            .write_slice(bytes, GuestAddress(addr))
            .map_err(|e| AcpiError::Memory(e.to_string()))?;
        self.next = end;
        Ok(addr)
    }
}

/// Writes all tables and returns the RSDP's address.
pub fn create_acpi_tables(
    mem: &GuestMemoryMmap,
    config: &AcpiConfig,
) -> Result<GuestAddress, AcpiError> {
    let rsdp_addr = ACPI_START;
    let mut placer = Placer {
        mem,
        next: rsdp_addr + Rsdp::len() as u64,
    };
    let dsdt = placer.place(&dsdt::build(config))?;
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    xsdt.add_entry(placer.place(&fadt::build(dsdt))?);
    xsdt.add_entry(placer.place(&madt::build(config.cpus))?);
    for table in &config.extra_tables {
        xsdt.add_entry(placer.place(table)?);
    }
    let xsdt_addr = placer.place(&to_bytes(&xsdt))?;
    let rsdp = Rsdp::new(OEM_ID, xsdt_addr);
    mem.write_slice(&to_bytes(&rsdp), GuestAddress(rsdp_addr))
        .map_err(|e| AcpiError::Memory(e.to_string()))?;
    Ok(GuestAddress(rsdp_addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checksum_ok(table: &[u8]) -> bool {
        table.iter().fold(0u8, |a, b| a.wrapping_add(*b)) == 0
    }

    fn read_table(mem: &GuestMemoryMmap, addr: u64) -> Vec<u8> {
        let len: u32 = mem.read_obj(GuestAddress(addr + 4)).unwrap();
        let mut table = vec![0u8; len as usize];
        mem.read_slice(&mut table, GuestAddress(addr)).unwrap();
        table
    }

    #[test]
    fn tables_are_reachable_from_the_rsdp_with_valid_checksums() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
        let config = AcpiConfig {
            cpus: 2,
            pci: Some(PciRootDescription {
                ecam_base: 0xe000_0000,
                last_bus: 0,
                mmio32_base: 0xc000_0000,
                mmio32_size: 0x2000_0000,
            }),
            ged: None,
            extra_tables: vec![],
        };
        let rsdp = create_acpi_tables(&mem, &config).unwrap();
        let mut rsdp_bytes = [0u8; 36];
        mem.read_slice(&mut rsdp_bytes, rsdp).unwrap();
        assert_eq!(&rsdp_bytes[..8], b"RSD PTR ");
        assert!(checksum_ok(&rsdp_bytes[..20]));
        assert!(checksum_ok(&rsdp_bytes));
        let xsdt_addr = u64::from_le_bytes(rsdp_bytes[24..32].try_into().unwrap());
        let xsdt = read_table(&mem, xsdt_addr);
        assert!(checksum_ok(&xsdt));
        let mut signatures = Vec::new();
        for entry in xsdt[36..].chunks(8) {
            let table = read_table(&mem, u64::from_le_bytes(entry.try_into().unwrap()));
            assert!(checksum_ok(&table));
            signatures.push(String::from_utf8_lossy(&table[..4]).into_owned());
            if &table[..4] == b"FACP" {
                let dsdt_addr = u64::from_le_bytes(table[140..148].try_into().unwrap());
                let dsdt = read_table(&mem, dsdt_addr);
                assert_eq!(&dsdt[..4], b"DSDT");
                assert!(checksum_ok(&dsdt));
            }
        }
        assert_eq!(signatures, ["FACP", "APIC"]);
    }
}

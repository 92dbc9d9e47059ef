//! Identity page tables for the first 1 GiB, with 2 MiB pages (the 64-bit Linux entry needs
//! paging on; the kernel replaces them at once).

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::CpuError;
use crate::layout::{PDE_START, PDPTE_START, PML4_START};

const PRESENT_WRITABLE: u64 = 0x03;
const PAGE_SIZE_2M: u64 = 0x80;

/// Writes the tables and returns the value for CR3.
pub fn write_identity_tables(mem: &GuestMemoryMmap) -> Result<u64, CpuError> {
    let write = |value: u64, addr: u64| {
        mem.write_obj(value, GuestAddress(addr))
            .map_err(|e| CpuError::Memory(e.to_string()))
    };
    write(PDPTE_START | PRESENT_WRITABLE, PML4_START)?;
    write(PDE_START | PRESENT_WRITABLE, PDPTE_START)?;
    for i in 0..512u64 {
        write(
            (i << 21) | PAGE_SIZE_2M | PRESENT_WRITABLE,
            PDE_START + i * 8,
        )?;
    }
    Ok(PML4_START)
}

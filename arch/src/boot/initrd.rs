//! Placing the initrd: as high in RAM below 4 GiB (and below the kernel's limit) as it fits.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{BootError, Initrd, InitrdPlacement};
use crate::layout::{HIMEM_START, MMIO_HOLE_START};

const PAGE_SIZE: u64 = 4096;

pub(super) fn place(
    mem: &GuestMemoryMmap,
    initrd: Initrd<'_>,
    memory_size: u64,
    max_addr: u64,
) -> Result<InitrdPlacement, BootError> {
    let size = initrd.size;
    let top = memory_size
        .min(MMIO_HOLE_START)
        .min(max_addr.saturating_add(1));
    let addr = top
        .checked_sub(size)
        .map(|a| a & !(PAGE_SIZE - 1))
        .filter(|&a| a >= HIMEM_START)
        .ok_or(BootError::InitrdTooBig { size })?;
    let len = usize::try_from(size).map_err(|_| BootError::InitrdTooBig { size })?;
    mem.read_exact_volatile_from(GuestAddress(addr), initrd.image, len)
        .map_err(|e| BootError::InitrdRead(std::io::Error::other(e.to_string())))?;
    Ok(InitrdPlacement {
        addr: GuestAddress(addr),
        size,
    })
}

//! How the model reads its tables from guest memory: whole naturally aligned dwords and
//! 64-byte structures, any failure an external abort for the caller to report.

use std::sync::atomic::Ordering;

use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryBackend};

/// One 64-bit descriptor, read single-copy atomically as the architecture reads it.
#[inline]
pub fn read_descriptor<M: GuestMemory + ?Sized>(memory: &M, address: u64) -> Option<u64> {
    if !address.is_multiple_of(8) {
        return None;
    }
    let value = match memory.physical_memory() {
        // Straight to the region: the generic path builds a slice iterator per read.
        Some(ram) => {
            let (region, offset) = ram.to_region_addr(GuestAddress(address))?;
            region.load::<u64>(offset, Ordering::Relaxed).ok()?
        }
        None => memory
            .load::<u64>(GuestAddress(address), Ordering::Relaxed)
            .ok()?,
    };
    Some(u64::from_le(value))
}

/// A 64-byte STE or CD.
pub fn read_64<M: GuestMemory + ?Sized>(memory: &M, address: u64) -> Option<[u8; 64]> {
    if !address.is_multiple_of(64) {
        return None;
    }
    let mut bytes = [0u8; 64];
    memory
        .read_slice(&mut bytes, GuestAddress(address))
        .ok()
        .map(|()| bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    #[test]
    fn reads_inside_ram_only() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0x1000), 0x1000)]).unwrap();
        mem.write_obj(0x1122_3344_5566_7788u64.to_le(), GuestAddress(0x1ff8))
            .unwrap();
        assert_eq!(read_descriptor(&mem, 0x1ff8), Some(0x1122_3344_5566_7788));
        assert_eq!(read_descriptor(&mem, 0x2000), None);
        assert_eq!(read_descriptor(&mem, 0x1ffc), None);
        assert_eq!(read_descriptor(&mem, u64::MAX - 7), None);
        assert!(read_64(&mem, 0x1fc0).is_some());
        assert!(read_64(&mem, 0x1fe0).is_none());
        assert!(read_64(&mem, 0x2000).is_none());
    }
}

//! Places memory BARs in the 32-bit PCI MMIO window.

use vm_allocator::{AddressAllocator, AllocPolicy};

#[derive(Debug, thiserror::Error)]
pub enum BarAllocError {
    #[error("a BAR of {0:#x} bytes is not a power of two of at least 4 KiB")]
    BadSize(u64),
    #[error("no room for a BAR of {size:#x} bytes in the PCI MMIO window: {reason}")]
    Exhausted { size: u64, reason: String },
}

/// Hands out naturally aligned ranges of the MMIO window, first fit.
#[derive(Debug)]
pub struct BarAllocator {
    window: AddressAllocator,
}

impl BarAllocator {
    pub fn new(base: u64, size: u64) -> Result<Self, vm_allocator::Error> {
        Ok(Self {
            window: AddressAllocator::new(base, size)?,
        })
    }

    /// A range of `size` bytes aligned to `size`, as BAR decoding requires.
    pub fn allocate(&mut self, size: u64) -> Result<u64, BarAllocError> {
        if !size.is_power_of_two() || size < 0x1000 {
            return Err(BarAllocError::BadSize(size));
        }
        self.window
            .allocate(size, size, AllocPolicy::FirstMatch)
            .map(|range| range.start())
            .map_err(|e| BarAllocError::Exhausted {
                size,
                reason: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_aligned_and_disjoint() {
        let mut alloc = BarAllocator::new(0xc000_0000, 0x10_0000).unwrap();
        let a = alloc.allocate(0x1000).unwrap();
        let b = alloc.allocate(0x8000).unwrap();
        let c = alloc.allocate(0x1000).unwrap();
        assert_eq!(a, 0xc000_0000);
        assert_eq!(b % 0x8000, 0);
        assert!(b >= a + 0x1000 && (c + 0x1000 <= b || c >= b + 0x8000));
        assert!(alloc.allocate(0x3000).is_err());
        assert!(alloc.allocate(0x20_0000).is_err());
    }
}

//! Where guest RAM lives in this process: a host IOMMU maps host addresses, the guest
//! speaks of guest-physical ones.

use std::fmt::Debug;

use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// # Safety
///
/// What `host_address` returns is handed to host devices for DMA (see
/// [`super::HostIommu::map`]): it must be guest RAM, mapped for as long as the VM lives
/// and accessed by this process only through volatile copies, never Rust references.
pub unsafe trait GuestRam: Debug + Send + Sync {
    /// The host address of `[gpa, gpa + len)`, if all of it is RAM in one contiguous host
    /// mapping (a MAP straddling two memory regions, or of MMIO, has none).
    fn host_address(&self, gpa: u64, len: u64) -> Option<u64>;

    /// Guest RAM as (guest-physical start, length) pieces, each with one host mapping: what
    /// a host device in bypass reaches.
    fn ram_regions(&self) -> Vec<(u64, u64)>;
}

// SAFETY: guest memory regions are mapped for the VM's lifetime, and vm-memory reaches
// them through volatile slices only.
unsafe impl GuestRam for GuestMemoryMmap {
    fn host_address(&self, gpa: u64, len: u64) -> Option<u64> {
        let (region, offset) = self.to_region_addr(GuestAddress(gpa))?;
        if offset.0.checked_add(len)? > region.len() {
            return None;
        }
        region.get_host_address(offset).ok().map(|p| p as u64)
    }

    fn ram_regions(&self) -> Vec<(u64, u64)> {
        self.iter().map(|r| (r.start_addr().0, r.len())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_translates_within_one_region_only() {
        let mem = GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), 0x10_0000),
            (GuestAddress(0x10_0000), 0x1000),
        ])
        .unwrap();
        let base = mem.host_address(0, 1).unwrap();
        assert_eq!(mem.host_address(0x1000, 0x1000), Some(base + 0x1000));
        assert_eq!(mem.host_address(0xf_f000, 0x1000), Some(base + 0xf_f000));
        // Crosses into the next region, whose host mapping is elsewhere.
        assert_eq!(mem.host_address(0xf_f000, 0x2000), None);
        assert_eq!(mem.host_address(0x20_0000, 0x1000), None);
    }
}

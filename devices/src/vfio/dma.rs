//! DMA without an IOMMU in the guest: the device sees guest-physical addresses, so all of
//! guest RAM is mapped at IOVA = GPA before the guest runs, and stays mapped.

use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::host_iommu::{DmaAccess, GuestRam, HostIommu, HostIommuError};

/// Maps every region of `mem` at its guest-physical address.
pub fn map_guest_ram(iommu: &dyn HostIommu, mem: &GuestMemoryMmap) -> Result<(), HostIommuError> {
    for region in mem.iter() {
        let gpa = region.start_addr().0;
        let len = region.len();
        let Some(host) = mem.host_address(gpa, len) else {
            continue;
        };
        // SAFETY: `host` is guest RAM, which GuestRam promises stays mapped for the VM's
        // lifetime and is reached by this process through volatile copies only.
        unsafe { iommu.map(gpa, host, len, DmaAccess::READ_WRITE)? };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host_iommu::{FakeHostIommu, HostCall};
    use vm_memory::GuestAddress;

    #[test]
    fn every_ram_region_is_mapped_at_its_guest_address() {
        let mem = GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), 0x10_0000),
            (GuestAddress(0x1_0000_0000), 0x2000),
        ])
        .unwrap();
        let iommu = FakeHostIommu::new();
        map_guest_ram(&iommu, &mem).unwrap();
        assert_eq!(iommu.mapped(), [(0, 0x10_0000), (0x1_0000_0000, 0x2000)]);
        assert!(matches!(
            iommu.calls()[0],
            HostCall::Map {
                access: DmaAccess::READ_WRITE,
                ..
            }
        ));
    }
}

//! Guest RAM: anonymous mappings, registered with KVM one slot per region.

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use super::error::{kvm_err, VmmError};

pub fn create_guest_memory(vm: &VmFd, size: u64) -> Result<GuestMemoryMmap, VmmError> {
    let regions = arch::layout::ram_regions(size);
    let mem = GuestMemoryMmap::from_ranges(&regions).map_err(|e| VmmError::Memory {
        size: size >> 20,
        reason: e.to_string(),
    })?;
    for (slot, region) in mem.iter().enumerate() {
        let host = mem
            .get_host_address(region.start_addr())
            .map_err(|e| VmmError::Memory {
                size: size >> 20,
                reason: e.to_string(),
            })?;
        let kvm_region = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
        };
        // SAFETY: the mapping lives in `mem`, which outlives the VM: the caller keeps it in
        // the Vm for as long as the VmFd exists.
        unsafe { vm.set_user_memory_region(kvm_region) }
            .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
    }
    Ok(mem)
}

//! A KVM VM together with the guest RAM registered in its memory slots.
//!
//! KVM reads and writes guest RAM through the host addresses given in each slot, for as long
//! as the VM exists. The mappings must therefore outlive the VM: unmapped first, the
//! addresses could be reused by an unrelated allocation that the guest would then see and
//! write. This type makes that hold by construction: whoever can reach the VM fd keeps the
//! RAM mapped too, since both live here, and fields drop in declaration order, so the fd
//! closes before the mappings go. vCPU fds also keep the VM alive in the kernel; their
//! threads hold an `Arc<GuestVm>` for the same reason.

use std::ops::Deref;

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use super::error::{kvm_err, VmmError};

pub struct GuestVm {
    /// Declared first: dropped (closed) before `memory`.
    fd: VmFd,
    memory: GuestMemoryMmap,
}

impl GuestVm {
    /// Maps `size` bytes of guest RAM and registers it with `fd`, one slot per region.
    pub fn new(fd: VmFd, size: u64) -> Result<Self, VmmError> {
        let memory_err = |e: &dyn std::fmt::Display| VmmError::Memory {
            size: size >> 20,
            reason: e.to_string(),
        };
        let regions = arch::layout::ram_regions(size);
        let memory = GuestMemoryMmap::from_ranges(&regions).map_err(|e| memory_err(&e))?;
        for (slot, region) in memory.iter().enumerate() {
            let host = memory
                .get_host_address(region.start_addr())
                .map_err(|e| memory_err(&e))?;
            let kvm_region = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: host as u64,
            };
            // SAFETY: the region is mapped for `region.len()` bytes at `host`, and it stays
            // mapped for as long as the VM exists: `memory` is owned next to `fd` and dropped
            // after it (see the module comment).
            unsafe { fd.set_user_memory_region(kvm_region) }
                .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
        }
        Ok(Self { fd, memory })
    }

    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.memory
    }
}

impl Deref for GuestVm {
    type Target = VmFd;

    fn deref(&self) -> &VmFd {
        &self.fd
    }
}

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

/// What takes guest RAM into its memory slots: the KVM VM, or a test's stand-in that checks
/// the RAM is still mapped when it goes.
pub trait MemorySlotOwner {
    /// # Safety
    ///
    /// The region's host memory must stay mapped for as long as `self` exists.
    unsafe fn set_user_memory_region(
        &self,
        region: kvm_userspace_memory_region,
    ) -> Result<(), kvm_ioctls::Error>;
}

impl MemorySlotOwner for VmFd {
    unsafe fn set_user_memory_region(
        &self,
        region: kvm_userspace_memory_region,
    ) -> Result<(), kvm_ioctls::Error> {
        // SAFETY: the caller keeps the region mapped while the VM exists.
        unsafe { VmFd::set_user_memory_region(self, region) }
    }
}

pub struct GuestVm<V: MemorySlotOwner = VmFd> {
    /// Declared first: dropped (closed) before `memory`.
    fd: V,
    memory: GuestMemoryMmap,
}

impl<V: MemorySlotOwner> GuestVm<V> {
    /// Maps `size` bytes of guest RAM and registers it with `fd`, one slot per region.
    pub fn new(fd: V, size: u64) -> Result<Self, VmmError> {
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
            // after it (see the module comment and `ram_is_still_mapped_when_the_vm_goes`).
            unsafe { fd.set_user_memory_region(kvm_region) }
                .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
        }
        Ok(Self { fd, memory })
    }

    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.memory
    }
}

impl<V: MemorySlotOwner> Deref for GuestVm<V> {
    type Target = V;

    fn deref(&self) -> &V {
        &self.fd
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn mapped(host: u64, len: u64) -> bool {
        // SAFETY: msync only inspects the range; it fails with ENOMEM where nothing is
        // mapped.
        unsafe { libc::msync(host as *mut libc::c_void, len as usize, libc::MS_ASYNC) == 0 }
    }

    /// Records the regions it is given and, when dropped, whether each is still mapped.
    struct SlotProbe {
        regions: Mutex<Vec<(u64, u64)>>,
        mapped_when_dropped: Arc<Mutex<Vec<bool>>>,
    }

    impl MemorySlotOwner for SlotProbe {
        unsafe fn set_user_memory_region(
            &self,
            region: kvm_userspace_memory_region,
        ) -> Result<(), kvm_ioctls::Error> {
            let mut regions = self.regions.lock().unwrap();
            regions.push((region.userspace_addr, region.memory_size));
            Ok(())
        }
    }

    impl Drop for SlotProbe {
        fn drop(&mut self) {
            let regions = self.regions.lock().unwrap();
            let mut seen = self.mapped_when_dropped.lock().unwrap();
            seen.extend(regions.iter().map(|&(host, len)| mapped(host, len)));
        }
    }

    #[test]
    fn ram_is_still_mapped_when_the_vm_goes() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let probe = SlotProbe {
            regions: Mutex::new(Vec::new()),
            mapped_when_dropped: seen.clone(),
        };
        let vm = GuestVm::new(probe, 16 << 20).unwrap();
        let regions = vm.regions.lock().unwrap().clone();
        assert_eq!(regions.len(), vm.memory().num_regions());
        assert!(regions.iter().all(|&(host, len)| mapped(host, len)));
        drop(vm);
        assert_eq!(*seen.lock().unwrap(), vec![true; regions.len()]);
        // The probe can tell: the RAM is gone now.
        assert!(regions.iter().all(|&(host, len)| !mapped(host, len)));
    }
}

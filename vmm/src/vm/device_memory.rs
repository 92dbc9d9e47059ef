//! Passthrough BARs as KVM memory slots, numbered after guest RAM's.
//!
//! Like the interrupt handle, this does not keep the VM alive: the VM must be able to
//! close once no vCPU runs, while the devices are left to the process exit.
//!
//! The slots also say where a passthrough BAR is in the guest-physical space, which a
//! virtio-iommu MAP of it (peer-to-peer DMA) needs: [`DmaTargets`].

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, Weak};

use devices::host_iommu::GuestRam;
use devices::vfio::GuestMemorySlots;
use kvm_bindings::kvm_userspace_memory_region;
use vm_memory::GuestMemoryMmap;

use super::GuestVm;

/// The most slots x86 KVM has offered since long ago (KVM_USER_MEM_SLOTS was 509).
const MAX_SLOTS: u32 = 509;

struct SlotNumbers {
    next: u32,
    free: Vec<u32>,
    /// Each live slot's guest-physical start, host address and length.
    live: HashMap<u32, (u64, u64, u64)>,
}

pub struct KvmDeviceMemory {
    vm: Weak<GuestVm>,
    slots: Mutex<SlotNumbers>,
}

impl KvmDeviceMemory {
    /// Slots from `first` on are free (guest RAM holds those below).
    pub fn new(vm: Weak<GuestVm>, first: u32) -> Self {
        Self {
            vm,
            slots: Mutex::new(SlotNumbers {
                next: first,
                free: Vec::new(),
                live: HashMap::new(),
            }),
        }
    }

    fn vm(&self) -> io::Result<std::sync::Arc<GuestVm>> {
        self.vm
            .upgrade()
            .ok_or_else(|| io::Error::other("the VM has ended"))
    }

    fn set(&self, slot: u32, gpa: u64, host: u64, len: u64) -> io::Result<()> {
        let region = kvm_userspace_memory_region {
            slot,
            flags: 0,
            guest_phys_addr: gpa,
            memory_size: len,
            userspace_addr: host,
        };
        // SAFETY: for a new slot, the caller of `add` promises `host` stays mapped until
        // the slot is removed; a removal (len 0) makes KVM forget the slot.
        unsafe { self.vm()?.set_user_memory_region(region) }
            .map_err(|e| io::Error::from_raw_os_error(e.errno()))
    }
}

impl GuestMemorySlots for KvmDeviceMemory {
    unsafe fn add(&self, gpa: u64, host: u64, len: u64) -> io::Result<u32> {
        let mut slots = self.slots.lock().unwrap();
        let slot = match slots.free.pop() {
            Some(slot) => slot,
            None if slots.next < MAX_SLOTS => {
                slots.next += 1;
                slots.next - 1
            }
            None => return Err(io::Error::other("out of KVM memory slots")),
        };
        if let Err(e) = self.set(slot, gpa, host, len) {
            slots.free.push(slot);
            return Err(e);
        }
        slots.live.insert(slot, (gpa, host, len));
        Ok(slot)
    }

    fn remove(&self, slot: u32) -> io::Result<()> {
        self.set(slot, 0, 0, 0)?;
        let mut slots = self.slots.lock().unwrap();
        slots.live.remove(&slot);
        slots.free.push(slot);
        Ok(())
    }
}

impl KvmDeviceMemory {
    /// The host address of `[gpa, gpa + len)` if a device slot holds all of it.
    fn host_address(&self, gpa: u64, len: u64) -> Option<u64> {
        let slots = self.slots.lock().unwrap();
        slots
            .live
            .values()
            .find_map(|&(start, host, size)| window_host_address(start, host, size, gpa, len))
    }
}

/// Where `[gpa, gpa + len)` is in a window of `size` bytes at guest-physical `start`,
/// host address `host`, if wholly inside it.
fn window_host_address(start: u64, host: u64, size: u64, gpa: u64, len: u64) -> Option<u64> {
    let offset = gpa.checked_sub(start)?;
    (offset.checked_add(len)? <= size).then_some(host + offset)
}

/// What a host device's DMA may be pointed at through the virtio-iommu: guest RAM, and
/// the passthrough BARs mapped where the guest decodes them now (peer-to-peer).
#[derive(Clone)]
pub struct DmaTargets {
    pub ram: GuestMemoryMmap,
    pub bars: Arc<KvmDeviceMemory>,
}

impl std::fmt::Debug for DmaTargets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DmaTargets").finish_non_exhaustive()
    }
}

// SAFETY: RAM as `GuestMemoryMmap`'s own impl says. A BAR slot's host memory is the
// device's mmap, which is never unmapped (`GuestMemorySlots::add`) and which this process
// never references: a mapping left on the host IOMMU after the BAR moves still reaches
// only that device's memory.
unsafe impl GuestRam for DmaTargets {
    fn host_address(&self, gpa: u64, len: u64) -> Option<u64> {
        self.ram
            .host_address(gpa, len)
            .or_else(|| self.bars.host_address(gpa, len))
    }

    /// RAM only: bypass gives a device guest memory, not the other devices' BARs.
    fn ram_regions(&self) -> Vec<(u64, u64)> {
        self.ram.ram_regions()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_is_in_a_window_only_whole() {
        let (start, host, size) = (0xc000_0000, 0x7f00_0000_0000, 0x4000);
        let at = |gpa, len| window_host_address(start, host, size, gpa, len);
        assert_eq!(at(0xc000_0000, 0x4000), Some(host));
        assert_eq!(at(0xc000_1000, 0x1000), Some(host + 0x1000));
        assert_eq!(at(0xc000_3000, 0x2000), None);
        assert_eq!(at(0xbfff_f000, 0x2000), None);
        assert_eq!(at(0xc000_1000, u64::MAX), None);
    }
}

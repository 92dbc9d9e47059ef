//! Passthrough BARs as KVM memory slots, numbered after guest RAM's.
//!
//! Like the interrupt handle, this does not keep the VM alive: the VM must be able to
//! close once no vCPU runs, while the devices are left to the process exit.

use std::io;
use std::sync::{Mutex, Weak};

use devices::vfio::GuestMemorySlots;
use kvm_bindings::kvm_userspace_memory_region;

use super::GuestVm;

/// The most slots x86 KVM has offered since long ago (KVM_USER_MEM_SLOTS was 509).
const MAX_SLOTS: u32 = 509;

struct SlotNumbers {
    next: u32,
    free: Vec<u32>,
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
        Ok(slot)
    }

    fn remove(&self, slot: u32) -> io::Result<()> {
        self.set(slot, 0, 0, 0)?;
        self.slots.lock().unwrap().free.push(slot);
        Ok(())
    }
}

//! BAR 0 of the engine: register offsets, bits and the ring configuration they hold
//! (docs/dma-engine.md is the reference).

use super::descriptor::{MAX_JOB_LEN, SLOT_SIZE};

/// The one memory BAR (32-bit, non-prefetchable).
pub const BAR_INDEX: usize = 0;
pub const BAR_SIZE: u64 = 0x4000;
/// Registers occupy the first page; the rest of it reads as zero.
pub const REGISTERS_LEN: u64 = 0x1000;
pub const MSIX_TABLE_OFFSET: u64 = 0x2000;
pub const MSIX_PBA_OFFSET: u64 = 0x3000;
/// One vector: job completion (and the engine halting).
pub const MSIX_VECTORS: u16 = 1;
pub const COMPLETION_VECTOR: u16 = 0;

/// "NDMA": read-only identification.
pub const MAGIC: u64 = 0x00;
pub const MAGIC_VALUE: u32 = u32::from_le_bytes(*b"NDMA");
/// Read-only interface version.
pub const VERSION: u64 = 0x04;
pub const VERSION_VALUE: u32 = 1;
/// Read-only: the largest ring, in slots.
pub const MAX_RING_SLOTS: u64 = 0x08;
/// Read-only: the longest job, in bytes.
pub const MAX_JOB_BYTES: u64 = 0x0c;
/// Read-write: ENABLE; write-only: RESET.
pub const CONTROL: u64 = 0x10;
/// Read-only: ENABLED, HALTED, IDLE.
pub const STATUS: u64 = 0x14;
/// Read-only: why the engine halted ([`HaltReason`]), 0 while it has not.
pub const ERROR: u64 = 0x18;
/// Ring base address (64-byte aligned) and size in slots (a power of two); writable only
/// while ENABLE is clear.
pub const RING_BASE_LO: u64 = 0x20;
pub const RING_BASE_HI: u64 = 0x24;
pub const RING_SLOTS: u64 = 0x28;
/// Written: the driver's new tail (free-running job count); read: the last tail written.
pub const DOORBELL: u64 = 0x30;
/// Read-only: the engine's head (free-running count of jobs completed).
pub const HEAD: u64 = 0x34;

pub const CONTROL_ENABLE: u32 = 1 << 0;
pub const CONTROL_RESET: u32 = 1 << 1;

pub const STATUS_ENABLED: u32 = 1 << 0;
pub const STATUS_HALTED: u32 = 1 << 1;
pub const STATUS_IDLE: u32 = 1 << 2;

pub const RING_SLOTS_MAX: u32 = 4096;
pub const RING_ALIGN: u64 = SLOT_SIZE;
pub const MAX_JOB_BYTES_VALUE: u32 = MAX_JOB_LEN as u32;
const _: () = assert!(MAX_JOB_LEN <= u32::MAX as u64);

/// Why the engine stopped taking jobs; cleared by disabling or resetting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum HaltReason {
    /// ENABLE was set with a ring base that is not 64-byte aligned, a size that is not a
    /// power of two from 1 to [`RING_SLOTS_MAX`], or a ring that ends past 2^64.
    BadRing = 1,
    /// The doorbell put the tail more than a ring's worth of jobs past the head.
    BadDoorbell = 2,
    /// A ring slot could not be read or its completion written (a translation or memory
    /// fault on the ring itself).
    RingFault = 3,
    /// The engine could not start its work (a host failure).
    Internal = 4,
}

/// The ring as the driver configured it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingConfig {
    pub base: u64,
    pub slots: u32,
}

impl RingConfig {
    /// Whether the engine can run this ring.
    pub fn validate(&self) -> Result<(), HaltReason> {
        if !self.slots.is_power_of_two() || self.slots > RING_SLOTS_MAX {
            return Err(HaltReason::BadRing);
        }
        let last = u64::from(self.slots) * SLOT_SIZE - 1;
        if !self.base.is_multiple_of(RING_ALIGN) || self.base.checked_add(last).is_none() {
            return Err(HaltReason::BadRing);
        }
        Ok(())
    }

    /// The address of the slot job number `index` occupies.
    pub fn slot_address(&self, index: u32) -> u64 {
        self.base + u64::from(index & (self.slots - 1)) * SLOT_SIZE
    }
}

/// The dword offsets within the register page a guest access at `offset` of `len` bytes
/// touches: aligned dwords and qwords (a qword is two dwords, low first); anything else
/// touches nothing.
pub fn dword_offsets(offset: u64, len: usize) -> Option<impl Iterator<Item = u64>> {
    let aligned = (len == 4 || len == 8) && offset.is_multiple_of(len as u64);
    let inside = offset
        .checked_add(len as u64)
        .is_some_and(|end| end <= REGISTERS_LEN);
    (aligned && inside).then(|| (0..len as u64 / 4).map(move |i| offset + 4 * i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_validation() {
        let ok = |base, slots| RingConfig { base, slots }.validate().is_ok();
        assert!(ok(0x1000, 1));
        assert!(ok(0x40, 4096));
        assert!(ok(u64::MAX - 63, 1));
        assert!(!ok(0x1000, 0));
        assert!(!ok(0x1000, 3));
        assert!(!ok(0x1000, 8192));
        assert!(!ok(0x1020, 4));
        assert!(!ok(u64::MAX - 63, 2));
        let ring = RingConfig {
            base: 0x1000,
            slots: 4,
        };
        assert_eq!(ring.slot_address(0), 0x1000);
        assert_eq!(ring.slot_address(5), 0x1040);
        assert_eq!(ring.slot_address(u32::MAX), 0x10c0);
    }

    #[test]
    fn only_aligned_dwords_and_qwords_reach_registers() {
        let offsets = |o, l| dword_offsets(o, l).map(|i| i.collect::<Vec<_>>());
        assert_eq!(offsets(0x10, 4), Some(vec![0x10]));
        assert_eq!(offsets(0x20, 8), Some(vec![0x20, 0x24]));
        assert_eq!(offsets(0x24, 8), None);
        assert_eq!(offsets(0x11, 4), None);
        assert_eq!(offsets(0x10, 2), None);
        assert_eq!(offsets(0x10, 1), None);
        assert_eq!(offsets(0x10, 3), None);
        assert_eq!(offsets(0xffc, 4), Some(vec![0xffc]));
        assert_eq!(offsets(0x1000, 4), None);
        assert_eq!(offsets(u64::MAX - 3, 4), None);
    }
}

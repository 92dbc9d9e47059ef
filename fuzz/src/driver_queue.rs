//! The driver's side of one split virtqueue: raw descriptors and the available ring as the
//! fuzz input writes them, at fixed places in guest RAM.

use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::guest::poke;

pub const DESC_F_NEXT: u16 = 1;
pub const DESC_F_WRITE: u16 = 2;
pub const DESC_F_INDIRECT: u16 = 4;

/// Bytes from a queue's base to the end of its rings (for queues of up to 256 entries).
pub const QUEUE_FOOTPRINT: u64 = 0x3000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawDesc {
    pub addr: u64,
    pub len: u32,
    pub flags: u16,
    pub next: u16,
}

impl RawDesc {
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[12..14].copy_from_slice(&self.flags.to_le_bytes());
        b[14..16].copy_from_slice(&self.next.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; 16]) -> Self {
        Self {
            addr: u64::from_le_bytes(b[0..8].try_into().unwrap()),
            len: u32::from_le_bytes(b[8..12].try_into().unwrap()),
            flags: u16::from_le_bytes([b[12], b[13]]),
            next: u16::from_le_bytes([b[14], b[15]]),
        }
    }
}

/// Where one queue's rings are.
#[derive(Debug, Clone, Copy)]
pub struct Rings {
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
}

impl Rings {
    /// The descriptor table at `base`, the available ring a page up, the used ring two.
    pub fn at(base: u64, size: u16) -> Self {
        Self {
            size,
            desc: base,
            avail: base + 0x1000,
            used: base + 0x2000,
        }
    }

    /// Bytes of the used ring the device writes.
    pub fn used_len(&self) -> u64 {
        6 + 8 * u64::from(self.size)
    }
}

pub struct DriverQueue {
    pub rings: Rings,
    /// The available index as the driver last wrote it.
    pub avail_idx: u16,
}

impl DriverQueue {
    pub fn new(rings: Rings) -> Self {
        Self {
            rings,
            avail_idx: 0,
        }
    }

    /// The device's side: a ready queue on these rings, without event indices.
    pub fn device_queue(&self) -> Queue {
        let mut q = Queue::new(256).expect("queue");
        q.try_set_size(self.rings.size).expect("queue size");
        q.try_set_desc_table_address(GuestAddress(self.rings.desc))
            .expect("aligned descriptor table");
        q.try_set_avail_ring_address(GuestAddress(self.rings.avail))
            .expect("aligned available ring");
        q.try_set_used_ring_address(GuestAddress(self.rings.used))
            .expect("aligned used ring");
        q.set_ready(true);
        q
    }

    pub fn write_desc(&self, ram: &GuestMemoryMmap, index: u16, desc: RawDesc) {
        let at = self.rings.desc + 16 * u64::from(index % self.rings.size);
        poke(ram, at, &desc.to_bytes());
    }

    /// Puts `head` in the next available slot and advances the available index.
    pub fn publish(&mut self, ram: &GuestMemoryMmap, head: u16) {
        let slot = self.rings.avail + 4 + 2 * u64::from(self.avail_idx % self.rings.size);
        poke(ram, slot, &head.to_le_bytes());
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.write_avail_idx(ram, self.avail_idx);
    }

    /// Writes the available index as is (a driver may write nonsense there).
    pub fn write_avail_idx(&mut self, ram: &GuestMemoryMmap, idx: u16) {
        self.avail_idx = idx;
        poke(ram, self.rings.avail + 2, &idx.to_le_bytes());
    }
}

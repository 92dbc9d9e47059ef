//! The driver side of a split virtqueue in guest memory, for tests and benchmarks that
//! drive devices without a guest.

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemory};

pub const DESC_F_NEXT: u16 = 1;
pub const DESC_F_WRITE: u16 = 2;

/// One descriptor as the driver writes it (struct virtq_desc, little-endian).
#[derive(Debug, Clone, Copy, Default)]
pub struct RawDesc {
    pub addr: u64,
    pub len: u32,
    pub flags: u16,
    pub next: u16,
}

impl RawDesc {
    pub const SIZE: u64 = 16;

    pub fn to_le_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[12..14].copy_from_slice(&self.flags.to_le_bytes());
        b[14..16].copy_from_slice(&self.next.to_le_bytes());
        b
    }
}

/// A buffer of a chain: address, length, device-writable.
#[derive(Debug, Clone, Copy)]
pub struct Buffer {
    pub addr: u64,
    pub len: u32,
    pub writable: bool,
}

impl Buffer {
    pub fn readable(addr: u64, len: u32) -> Self {
        Self {
            addr,
            len,
            writable: false,
        }
    }

    pub fn writable(addr: u64, len: u32) -> Self {
        Self {
            addr,
            len,
            writable: true,
        }
    }
}

/// Descriptor table, avail ring and used ring laid out from `base`.
pub struct DriverQueue {
    pub size: u16,
    pub desc_table: u64,
    pub avail_ring: u64,
    pub used_ring: u64,
    next_desc: u16,
    avail_idx: u16,
}

impl DriverQueue {
    /// Needs `size * 16 + 6 + 2 * size + 4 + 6 + 8 * size` bytes (rounded to 4 KiB pages) at `base`.
    pub fn new(base: u64, size: u16) -> Self {
        let desc_table = base;
        let avail_ring = desc_table + RawDesc::SIZE * u64::from(size);
        let used_ring = (avail_ring + 6 + 2 * u64::from(size)).next_multiple_of(4096);
        Self {
            size,
            desc_table,
            avail_ring,
            used_ring,
            next_desc: 0,
            avail_idx: 0,
        }
    }

    /// Bytes from `base` the rings occupy.
    pub fn footprint(&self) -> u64 {
        self.used_ring + 6 + 8 * u64::from(self.size) - self.desc_table
    }

    /// The device side: a ready `Queue` pointing at these rings.
    pub fn device_queue(&self) -> Queue {
        let mut q = Queue::new(self.size).expect("power-of-two queue size");
        q.set_size(self.size);
        q.try_set_desc_table_address(GuestAddress(self.desc_table))
            .unwrap();
        q.try_set_avail_ring_address(GuestAddress(self.avail_ring))
            .unwrap();
        q.try_set_used_ring_address(GuestAddress(self.used_ring))
            .unwrap();
        q.set_ready(true);
        q
    }

    /// Writes descriptor `index` as is (for malformed chains).
    pub fn write_desc<M: GuestMemory>(&self, mem: &M, index: u16, desc: RawDesc) {
        let at = self.desc_table + RawDesc::SIZE * u64::from(index);
        mem.write_slice(&desc.to_le_bytes(), GuestAddress(at))
            .unwrap();
    }

    /// Makes the chain starting at `head` available to the device.
    pub fn publish<M: GuestMemory>(&mut self, mem: &M, head: u16) {
        let slot = self.avail_ring + 4 + 2 * u64::from(self.avail_idx % self.size);
        mem.write_obj(head.to_le(), GuestAddress(slot)).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem.write_obj(self.avail_idx.to_le(), GuestAddress(self.avail_ring + 2))
            .unwrap();
    }

    /// Writes `buffers` as a linked chain in the next free descriptors and publishes it.
    pub fn add_chain<M: GuestMemory>(&mut self, mem: &M, buffers: &[Buffer]) -> u16 {
        let head = self.next_desc;
        for (i, b) in buffers.iter().enumerate() {
            let index = self.next_desc;
            self.next_desc = (self.next_desc + 1) % self.size;
            let last = i + 1 == buffers.len();
            let mut flags = if b.writable { DESC_F_WRITE } else { 0 };
            if !last {
                flags |= DESC_F_NEXT;
            }
            self.write_desc(
                mem,
                index,
                RawDesc {
                    addr: b.addr,
                    len: b.len,
                    flags,
                    next: self.next_desc,
                },
            );
        }
        self.publish(mem, head);
        head
    }

    /// The used ring's index.
    pub fn used_idx<M: GuestMemory>(&self, mem: &M) -> u16 {
        u16::from_le(mem.read_obj(GuestAddress(self.used_ring + 2)).unwrap())
    }

    /// Used element `n`: (descriptor head, length).
    pub fn used_elem<M: GuestMemory>(&self, mem: &M, n: u16) -> (u32, u32) {
        let at = self.used_ring + 4 + 8 * u64::from(n % self.size);
        let id: u32 = mem.read_obj(GuestAddress(at)).unwrap();
        let len: u32 = mem.read_obj(GuestAddress(at + 4)).unwrap();
        (u32::from_le(id), u32::from_le(len))
    }

    /// Starts reusing descriptors from 0 (after the device consumed everything).
    pub fn recycle(&mut self) {
        self.next_desc = 0;
    }
}

//! A minimal modern virtio-pci driver: find the capability structures, negotiate features,
//! set up split virtqueues in caller-owned memory, notify, and poll the used ring.
//! No interrupts: every queue is polled.

use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{fence, Ordering};

use crate::clock::Deadline;
use crate::pci::{scan_bus, Bdf, COMMAND_BUS_MASTER, COMMAND_MEMORY};

pub const VENDOR: u16 = 0x1af4;
/// Modern virtio-pci device IDs are 0x1040 + the virtio device type.
pub const fn device_id(virtio_type: u16) -> u16 {
    0x1040 + virtio_type
}

pub const F_VERSION_1: u64 = 1 << 32;
pub const F_ACCESS_PLATFORM: u64 = 1 << 33;

const CAP_VENDOR: u8 = 0x09;
const CAP_COMMON: u8 = 1;
const CAP_NOTIFY: u8 = 2;
const CAP_DEVICE: u8 = 4;

// struct virtio_pci_common_cfg offsets.
const DEVICE_FEATURE_SELECT: u64 = 0x00;
const DEVICE_FEATURE: u64 = 0x04;
const DRIVER_FEATURE_SELECT: u64 = 0x08;
const DRIVER_FEATURE: u64 = 0x0c;
const DEVICE_STATUS: u64 = 0x14;
const QUEUE_SELECT: u64 = 0x16;
const QUEUE_SIZE: u64 = 0x18;
const QUEUE_MSIX_VECTOR: u64 = 0x1a;
const QUEUE_ENABLE: u64 = 0x1c;
const QUEUE_NOTIFY_OFF: u64 = 0x1e;
const QUEUE_DESC: u64 = 0x20;
const QUEUE_DRIVER: u64 = 0x28;
const QUEUE_DEVICE: u64 = 0x30;

const STATUS_ACKNOWLEDGE: u8 = 1;
const STATUS_DRIVER: u8 = 2;
const STATUS_DRIVER_OK: u8 = 4;
const STATUS_FEATURES_OK: u8 = 8;

pub const DESC_F_NEXT: u16 = 1;
pub const DESC_F_WRITE: u16 = 2;

/// Entries per queue; small, since probes keep few requests in flight.
pub const QUEUE_LEN: u16 = 8;

/// One virtio-pci function's register windows (guest-physical, identity mapped).
pub struct VirtioPci {
    common: u64,
    notify: u64,
    notify_multiplier: u32,
    device: u64,
}

/// The first function on bus 0 with this vendor/device ID.
pub fn find(device: u16) -> Option<Bdf> {
    let mut found = None;
    scan_bus(0, |f| {
        if found.is_none() && f.vendor == VENDOR && f.device == device {
            found = Some(f.bdf);
        }
    });
    found
}

impl VirtioPci {
    /// Enables memory decoding and bus mastering and locates the capability structures.
    pub fn open(bdf: Bdf) -> Option<VirtioPci> {
        bdf.enable_command(COMMAND_MEMORY | COMMAND_BUS_MASTER);
        let (mut common, mut notify, mut device, mut notify_multiplier) = (0, 0, 0, 0);
        let mut cap = bdf.read8(0x34) & !3;
        let mut hops = 0;
        while cap != 0 && hops < 48 {
            if bdf.read8(cap) == CAP_VENDOR {
                let kind = bdf.read8(cap + 3);
                let bar = bdf.read8(cap + 4);
                let at = bdf.bar_address(bar) + u64::from(bdf.read32(cap + 8));
                match kind {
                    CAP_COMMON => common = at,
                    CAP_NOTIFY => {
                        notify = at;
                        notify_multiplier = bdf.read32(cap + 16);
                    }
                    CAP_DEVICE => device = at,
                    _ => {}
                }
            }
            cap = bdf.read8(cap + 1) & !3;
            hops += 1;
        }
        if common == 0 || notify == 0 {
            return None;
        }
        Some(VirtioPci {
            common,
            notify,
            notify_multiplier,
            device,
        })
    }

    fn w8(&self, offset: u64, v: u8) {
        // SAFETY: the common configuration structure is MMIO this driver owns.
        unsafe { write_volatile((self.common + offset) as *mut u8, v) }
    }
    fn r8(&self, offset: u64) -> u8 {
        // SAFETY: as above.
        unsafe { read_volatile((self.common + offset) as *const u8) }
    }
    fn w16(&self, offset: u64, v: u16) {
        // SAFETY: as above.
        unsafe { write_volatile((self.common + offset) as *mut u16, v) }
    }
    fn r16(&self, offset: u64) -> u16 {
        // SAFETY: as above.
        unsafe { read_volatile((self.common + offset) as *const u16) }
    }
    fn w32(&self, offset: u64, v: u32) {
        // SAFETY: as above.
        unsafe { write_volatile((self.common + offset) as *mut u32, v) }
    }
    fn r32(&self, offset: u64) -> u32 {
        // SAFETY: as above.
        unsafe { read_volatile((self.common + offset) as *const u32) }
    }
    fn w64(&self, offset: u64, v: u64) {
        self.w32(offset, v as u32);
        self.w32(offset + 4, (v >> 32) as u32);
    }

    /// Resets the device and negotiates `wanted & offered`; returns the offered features,
    /// or `None` when the device refuses FEATURES_OK.
    pub fn negotiate(&self, wanted: u64) -> Option<u64> {
        self.w8(DEVICE_STATUS, 0);
        while self.r8(DEVICE_STATUS) != 0 {}
        self.w8(DEVICE_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        let mut offered = 0u64;
        for half in 0..2u32 {
            self.w32(DEVICE_FEATURE_SELECT, half);
            offered |= u64::from(self.r32(DEVICE_FEATURE)) << (32 * half);
        }
        let accepted = offered & wanted;
        for half in 0..2u32 {
            self.w32(DRIVER_FEATURE_SELECT, half);
            self.w32(DRIVER_FEATURE, (accepted >> (32 * half)) as u32);
        }
        let status = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK;
        self.w8(DEVICE_STATUS, status);
        if self.r8(DEVICE_STATUS) & STATUS_FEATURES_OK == 0 {
            return None;
        }
        Some(offered)
    }

    /// Points queue `index` at `ring` (addresses as the device must use them) and enables it.
    pub fn setup_queue(&self, index: u16, ring: &mut Ring, device_address: u64) -> Option<Queue> {
        self.w16(QUEUE_SELECT, index);
        if self.r16(QUEUE_SIZE) < QUEUE_LEN {
            return None;
        }
        self.w16(QUEUE_SIZE, QUEUE_LEN);
        self.w16(QUEUE_MSIX_VECTOR, 0xffff);
        let base = device_address;
        self.w64(QUEUE_DESC, base + Ring::DESC_OFFSET);
        self.w64(QUEUE_DRIVER, base + Ring::AVAIL_OFFSET);
        self.w64(QUEUE_DEVICE, base + Ring::USED_OFFSET);
        let notify_off = self.r16(QUEUE_NOTIFY_OFF);
        self.w16(QUEUE_ENABLE, 1);
        *ring = Ring::ZERO;
        Some(Queue {
            ring: ring as *mut Ring,
            notify: self.notify + u64::from(notify_off) * u64::from(self.notify_multiplier),
            index,
            next_avail: 0,
            last_used: 0,
        })
    }

    pub fn driver_ok(&self) {
        let status = self.r8(DEVICE_STATUS);
        self.w8(DEVICE_STATUS, status | STATUS_DRIVER_OK);
    }

    pub fn device_config32(&self, offset: u64) -> u32 {
        // SAFETY: the device configuration structure is MMIO this driver owns.
        unsafe { read_volatile((self.device + offset) as *const u32) }
    }

    pub fn device_config8(&self, offset: u64) -> u8 {
        // SAFETY: as above.
        unsafe { read_volatile((self.device + offset) as *const u8) }
    }

    pub fn write_device_config8(&self, offset: u64, v: u8) {
        // SAFETY: as above.
        unsafe { write_volatile((self.device + offset) as *mut u8, v) }
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Descriptor {
    pub addr: u64,
    pub len: u32,
    pub flags: u16,
    pub next: u16,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct UsedElem {
    id: u32,
    len: u32,
}

/// One split virtqueue's memory: descriptor table, available ring, used ring, in one page.
#[repr(C, align(4096))]
pub struct Ring {
    desc: [Descriptor; QUEUE_LEN as usize],
    _pad0: [u8; 0x100 - 16 * QUEUE_LEN as usize],
    avail_flags: u16,
    avail_idx: u16,
    avail_ring: [u16; QUEUE_LEN as usize],
    _pad1: [u8; 0x100 - 4 - 2 * QUEUE_LEN as usize],
    used_flags: u16,
    used_idx: u16,
    used_ring: [UsedElem; QUEUE_LEN as usize],
    _pad2: [u8; 0x1000 - 0x204 - 8 * QUEUE_LEN as usize],
}

impl Ring {
    const DESC_OFFSET: u64 = 0;
    const AVAIL_OFFSET: u64 = 0x100;
    const USED_OFFSET: u64 = 0x200;
    pub const ZERO: Ring = Ring {
        desc: [Descriptor {
            addr: 0,
            len: 0,
            flags: 0,
            next: 0,
        }; QUEUE_LEN as usize],
        _pad0: [0; 0x100 - 16 * QUEUE_LEN as usize],
        avail_flags: 0,
        avail_idx: 0,
        avail_ring: [0; QUEUE_LEN as usize],
        _pad1: [0; 0x100 - 4 - 2 * QUEUE_LEN as usize],
        used_flags: 0,
        used_idx: 0,
        used_ring: [UsedElem { id: 0, len: 0 }; QUEUE_LEN as usize],
        _pad2: [0; 0x1000 - 0x204 - 8 * QUEUE_LEN as usize],
    };
}

/// A buffer of a chain: `(address as the device sees it, length, device-writable)`.
pub type Buffer = (u64, u32, bool);

pub struct Queue {
    ring: *mut Ring,
    notify: u64,
    index: u16,
    next_avail: u16,
    last_used: u16,
}

impl Queue {
    /// Posts one chain made of `buffers` (at most QUEUE_LEN) using descriptors from 0 up;
    /// callers keep one chain in flight at a time, except on the eventq.
    pub fn post(&mut self, first_desc: u16, buffers: &[Buffer]) {
        // SAFETY: the ring is a static page this queue owns; the device only reads the
        // descriptors and the available ring.
        let ring = unsafe { &mut *self.ring };
        for (i, &(addr, len, writable)) in buffers.iter().enumerate() {
            let i = i as u16 + first_desc;
            let last = usize::from(i - first_desc) + 1 == buffers.len();
            ring.desc[usize::from(i)] = Descriptor {
                addr,
                len,
                flags: if writable { DESC_F_WRITE } else { 0 } | if last { 0 } else { DESC_F_NEXT },
                next: i + 1,
            };
        }
        let slot = usize::from(self.next_avail % QUEUE_LEN);
        // SAFETY: plain stores into the owned ring, ordered before the index update.
        unsafe { write_volatile(&mut ring.avail_ring[slot], first_desc) };
        self.next_avail = self.next_avail.wrapping_add(1);
        fence(Ordering::SeqCst);
        // SAFETY: as above.
        unsafe { write_volatile(&mut ring.avail_idx, self.next_avail) };
        fence(Ordering::SeqCst);
    }

    pub fn kick(&self) {
        // SAFETY: the notify register of this queue.
        unsafe { write_volatile(self.notify as *mut u16, self.index) }
    }

    /// The next used entry `(descriptor id, length)`, if the device returned one.
    pub fn take_used(&mut self) -> Option<(u32, u32)> {
        // SAFETY: the device writes the used ring; it is only read, volatile.
        let ring = unsafe { &*self.ring };
        // SAFETY: as above.
        let used_idx = unsafe { read_volatile(&ring.used_idx) };
        if used_idx == self.last_used {
            return None;
        }
        fence(Ordering::SeqCst);
        let slot = usize::from(self.last_used % QUEUE_LEN);
        // SAFETY: as above.
        let entry = unsafe { read_volatile(&ring.used_ring[slot]) };
        self.last_used = self.last_used.wrapping_add(1);
        Some((entry.id, entry.len))
    }

    /// Polls for the next used entry until `ms` of TSC time passed.
    pub fn wait_used(&mut self, ms: u64) -> Option<(u32, u32)> {
        let deadline = Deadline::after_ms(ms);
        loop {
            if let Some(entry) = self.take_used() {
                return Some(entry);
            }
            if deadline.passed() {
                return None;
            }
            core::hint::spin_loop();
        }
    }
}

const _: () = assert!(core::mem::size_of::<Ring>() == 4096);
const _: () = assert!(core::mem::offset_of!(Ring, avail_flags) == 0x100);
const _: () = assert!(core::mem::offset_of!(Ring, used_flags) == 0x200);

/// A page of memory a probe hands to devices.
#[repr(C, align(4096))]
pub struct Page(pub [u8; 4096]);

impl Page {
    pub const ZERO: Page = Page([0; 4096]);

    pub fn address(&self) -> u64 {
        self.0.as_ptr() as u64
    }
}

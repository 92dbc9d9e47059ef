use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::tempfile::TempFile;

use super::*;
use crate::dma::{guest_physical_memory, DmaMemory};
use crate::io_counters::IoCounts;
use crate::virtio::device::VirtioInterrupt;
use crate::virtio::testing::{Buffer, DriverQueue, RawDesc, DESC_F_NEXT, DESC_F_WRITE};

const DISK_BYTES: u64 = 64 * 1024;
const HEADER: u64 = 0x10_0000;
const DATA: u64 = 0x11_0000;
const STATUS: u64 = 0x12_0000;
const MEM_BYTES: usize = 0x20_0000;

#[derive(Default)]
struct CountingInterrupt(Mutex<Vec<u16>>);

impl VirtioInterrupt for CountingInterrupt {
    fn notify_queue(&self, queue_index: u16) {
        self.0.lock().unwrap().push(queue_index);
    }
    fn notify_config(&self) {}
}

struct Rig {
    ram: GuestMemoryMmap,
    mem: DmaMemory,
    driver: DriverQueue,
    handler: BlockHandler,
    file: TempFile,
    interrupt: Arc<CountingInterrupt>,
    counters: Arc<IoCounters>,
}

fn rig(read_only: bool) -> Rig {
    let ram = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_BYTES)]).unwrap();
    let mem = guest_physical_memory(ram.clone());
    let file = TempFile::new().unwrap();
    file.as_file().set_len(DISK_BYTES).unwrap();
    let driver = DriverQueue::new(0x1000, 16);
    let disk = Arc::new(Disk {
        file: file.as_file().try_clone().unwrap(),
        size: DISK_BYTES,
        read_only,
        id: *b"nestor-test-disk\0\0\0\0",
    });
    let interrupt = Arc::new(CountingInterrupt::default());
    let counters = Arc::new(IoCounters::default());
    let handler = BlockHandler::new(
        mem.clone(),
        disk,
        driver.device_queue(),
        0,
        interrupt.clone(),
    )
    .counting(counters.clone());
    Rig {
        ram,
        mem,
        driver,
        handler,
        file,
        interrupt,
        counters,
    }
}

fn header(ram: &GuestMemoryMmap, request_type: u32, sector: u64) {
    let mut raw = [0u8; 16];
    raw[0..4].copy_from_slice(&request_type.to_le_bytes());
    raw[8..16].copy_from_slice(&sector.to_le_bytes());
    ram.write_slice(&raw, GuestAddress(HEADER)).unwrap();
    ram.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
}

impl Rig {
    /// Submits one chain and runs the device; returns (status byte, used length).
    fn submit(&mut self, buffers: &[Buffer]) -> (u8, u32) {
        let before = self.driver.used_idx(&self.ram);
        self.driver.add_chain(&self.ram, buffers);
        self.handler.drain();
        assert_eq!(self.driver.used_idx(&self.ram), before.wrapping_add(1));
        let (_, len) = self.driver.used_elem(&self.ram, before);
        (self.ram.read_obj(GuestAddress(STATUS)).unwrap(), len)
    }

    fn request(&mut self, request_type: u32, sector: u64, data: Option<Buffer>) -> (u8, u32) {
        header(&self.ram, request_type, sector);
        let mut chain = vec![Buffer::readable(HEADER, 16)];
        chain.extend(data);
        chain.push(Buffer::writable(STATUS, 1));
        self.submit(&chain)
    }

    fn file_bytes(&self) -> Vec<u8> {
        let mut f = self.file.as_file();
        let mut v = Vec::new();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut v).unwrap();
        v
    }
}

#[test]
fn write_then_read_back() {
    let mut r = rig(false);
    let pattern: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
    r.ram.write_slice(&pattern, GuestAddress(DATA)).unwrap();
    assert_eq!(
        r.request(REQUEST_OUT, 3, Some(Buffer::readable(DATA, 4096))),
        (STATUS_OK, 1)
    );
    assert_eq!(&r.file_bytes()[3 * 512..3 * 512 + 4096], &pattern[..]);
    r.ram.write_slice(&[0u8; 4096], GuestAddress(DATA)).unwrap();
    assert_eq!(
        r.request(REQUEST_IN, 3, Some(Buffer::writable(DATA, 4096))),
        (STATUS_OK, 4097)
    );
    let mut back = vec![0u8; 4096];
    r.ram.read_slice(&mut back, GuestAddress(DATA)).unwrap();
    assert_eq!(back, pattern);
    assert_eq!(r.request(REQUEST_FLUSH, 0, None), (STATUS_OK, 1));
    assert!(!r.interrupt.0.lock().unwrap().is_empty());
}

#[test]
fn counters_follow_requests_bytes_and_errors() {
    let mut r = rig(false);
    r.request(REQUEST_OUT, 0, Some(Buffer::readable(DATA, 1024)));
    r.request(REQUEST_IN, 0, Some(Buffer::writable(DATA, 512)));
    r.request(REQUEST_FLUSH, 0, None);
    // Past the end of the disk, and a type the device does not know.
    r.request(
        REQUEST_IN,
        DISK_BYTES / 512,
        Some(Buffer::writable(DATA, 512)),
    );
    r.request(0xdead, 0, None);
    assert_eq!(
        r.counters.snapshot(),
        IoCounts {
            requests: 5,
            read_bytes: 512,
            written_bytes: 1024,
            errors: 2,
        }
    );
}

#[test]
fn data_may_span_descriptors_and_share_the_status_buffer() {
    let mut r = rig(false);
    r.file.as_file().write_all(&[0x5a; 1024]).unwrap();
    header(&r.ram, REQUEST_IN, 0);
    // 512 bytes, then 512 bytes followed by the status byte in one buffer.
    let (_, len) = r.submit(&[
        Buffer::readable(HEADER, 16),
        Buffer::writable(DATA, 512),
        Buffer::writable(DATA + 0x1000, 513),
    ]);
    assert_eq!(len, 1025);
    assert_eq!(
        r.ram
            .read_obj::<u8>(GuestAddress(DATA + 0x1000 + 511))
            .unwrap(),
        0x5a
    );
    assert_eq!(
        r.ram
            .read_obj::<u8>(GuestAddress(DATA + 0x1000 + 512))
            .unwrap(),
        STATUS_OK
    );
}

#[test]
fn read_only_disk_refuses_writes() {
    let mut r = rig(true);
    r.ram.write_slice(&[0xaa; 512], GuestAddress(DATA)).unwrap();
    assert_eq!(
        r.request(REQUEST_OUT, 0, Some(Buffer::readable(DATA, 512))),
        (STATUS_IOERR, 1)
    );
    assert!(r.file_bytes().iter().all(|&b| b == 0));
    assert_eq!(
        r.request(REQUEST_IN, 0, Some(Buffer::writable(DATA, 512))),
        (STATUS_OK, 513)
    );
}

#[test]
fn out_of_range_and_misaligned_requests_fail() {
    let mut r = rig(false);
    let last = DISK_BYTES / 512;
    let cases = [
        (REQUEST_IN, last, 512),
        (REQUEST_IN, last - 1, 1024),
        (REQUEST_OUT, last, 512),
        (REQUEST_IN, u64::MAX, 512),
        (REQUEST_IN, u64::MAX / 512 + 1, 512),
        (REQUEST_IN, 0, 100),
    ];
    for (t, sector, len) in cases {
        let data = if t == REQUEST_IN {
            Buffer::writable(DATA, len)
        } else {
            Buffer::readable(DATA, len)
        };
        assert_eq!(
            r.request(t, sector, Some(data)).0,
            STATUS_IOERR,
            "{t} {sector} {len}"
        );
    }
    assert_eq!(
        r.request(REQUEST_IN, last - 1, Some(Buffer::writable(DATA, 512))),
        (STATUS_OK, 513)
    );
}

#[test]
fn unsupported_types_and_get_id() {
    let mut r = rig(false);
    assert_eq!(r.request(11, 0, None).0, STATUS_UNSUPP);
    assert_eq!(r.request(0xdead, 0, None).0, STATUS_UNSUPP);
    assert_eq!(
        r.request(REQUEST_GET_ID, 0, Some(Buffer::writable(DATA, 20))),
        (STATUS_OK, 21)
    );
    let mut id = [0u8; 20];
    r.ram.read_slice(&mut id, GuestAddress(DATA)).unwrap();
    assert_eq!(&id[..16], b"nestor-test-disk");
    // A short ID buffer gets what fits.
    assert_eq!(
        r.request(REQUEST_GET_ID, 0, Some(Buffer::writable(DATA, 6))),
        (STATUS_OK, 7)
    );
}

#[test]
fn short_or_unreadable_headers_fail() {
    let mut r = rig(false);
    header(&r.ram, REQUEST_IN, 0);
    assert_eq!(
        r.submit(&[Buffer::readable(HEADER, 8), Buffer::writable(STATUS, 1)])
            .0,
        STATUS_IOERR
    );
    // Header split over two descriptors is fine.
    assert_eq!(
        r.submit(&[
            Buffer::readable(HEADER, 8),
            Buffer::readable(HEADER + 8, 8),
            Buffer::writable(STATUS, 1)
        ])
        .0,
        STATUS_OK
    );
    // Header outside guest memory.
    assert_eq!(
        r.submit(&[
            Buffer::readable(MEM_BYTES as u64 - 8, 16),
            Buffer::writable(STATUS, 1)
        ])
        .0,
        STATUS_IOERR
    );
    // No header at all, only a status.
    assert_eq!(r.submit(&[Buffer::writable(STATUS, 1)]).0, STATUS_IOERR);
}

#[test]
fn data_outside_guest_memory_fails() {
    let mut r = rig(false);
    let outside = Buffer::writable(MEM_BYTES as u64 - 512, 1024);
    assert_eq!(r.request(REQUEST_IN, 0, Some(outside)).0, STATUS_IOERR);
    let wraps = Buffer::readable(u64::MAX - 511, 1024);
    assert_eq!(r.request(REQUEST_OUT, 0, Some(wraps)).0, STATUS_IOERR);
}

#[test]
fn wrong_directions_fail_or_drop() {
    let mut r = rig(false);
    // Readable data after a writable one: a malformed chain, returned untouched.
    header(&r.ram, REQUEST_OUT, 0);
    let (status, len) = r.submit(&[
        Buffer::readable(HEADER, 16),
        Buffer::writable(DATA, 512),
        Buffer::readable(DATA + 512, 512),
        Buffer::writable(STATUS, 1),
    ]);
    assert_eq!((status, len), (0xff, 0));
    // Status not writable: nothing is written, the chain comes back with length 0.
    header(&r.ram, REQUEST_IN, 0);
    let (status, len) = r.submit(&[Buffer::readable(HEADER, 16), Buffer::readable(STATUS, 1)]);
    assert_eq!((status, len), (0xff, 0));
    // Zero-length status buffer.
    let (status, len) = r.submit(&[Buffer::readable(HEADER, 16), Buffer::writable(STATUS, 0)]);
    assert_eq!((status, len), (0xff, 0));
    // Header marked device-writable.
    let (status, _) = r.submit(&[Buffer::writable(HEADER, 16), Buffer::writable(STATUS, 1)]);
    assert_eq!(status, STATUS_IOERR);
}

#[test]
fn looping_and_dangling_chains_are_dropped() {
    let mut r = rig(false);
    header(&r.ram, REQUEST_IN, 0);
    let link = |addr, flags, next| RawDesc {
        addr,
        len: 16,
        flags,
        next,
    };
    // 0 -> 1 -> 0 -> ...: longer than the queue.
    r.driver.write_desc(&r.ram, 0, link(HEADER, DESC_F_NEXT, 1));
    r.driver
        .write_desc(&r.ram, 1, link(STATUS, DESC_F_NEXT | DESC_F_WRITE, 0));
    r.driver.publish(&r.ram, 0);
    r.handler.drain();
    assert_eq!(r.driver.used_elem(&r.ram, 0), (0, 0));
    // A next index past the table.
    r.driver
        .write_desc(&r.ram, 2, link(HEADER, DESC_F_NEXT, 200));
    r.driver.publish(&r.ram, 2);
    r.handler.drain();
    assert_eq!(r.driver.used_elem(&r.ram, 1), (2, 0));
    assert_eq!(r.ram.read_obj::<u8>(GuestAddress(STATUS)).unwrap(), 0xff);
    // A head index past the table is not even popped.
    r.driver.publish(&r.ram, 999);
    r.handler.drain();
    assert_eq!(r.ram.read_obj::<u8>(GuestAddress(STATUS)).unwrap(), 0xff);
}

#[test]
fn huge_lengths_do_not_allocate_or_overrun() {
    let mut r = rig(false);
    header(&r.ram, REQUEST_IN, 0);
    let (status, _) = r.submit(&[
        Buffer::readable(HEADER, 16),
        Buffer::writable(DATA, u32::MAX - 0x1000),
        Buffer::writable(STATUS, 1),
    ]);
    assert_eq!(status, STATUS_IOERR);
}

#[test]
fn device_offers_ro_and_flush() {
    let file = TempFile::new().unwrap();
    file.as_file().set_len(1 << 20).unwrap();
    let ro = Block::open(file.as_path(), true, "x", WorkerSpec::unconfined("t")).unwrap();
    assert_ne!(ro.features() & FEATURE_RO, 0);
    assert_ne!(ro.features() & FEATURE_FLUSH, 0);
    let mut cap = [0u8; 8];
    ro.read_config(0, &mut cap);
    assert_eq!(u64::from_le_bytes(cap), 2048);
    let rw = Block::open(file.as_path(), false, "x", WorkerSpec::unconfined("t")).unwrap();
    assert_eq!(rw.features() & FEATURE_RO, 0);
    let mut past = [1u8; 4];
    rw.read_config(0x100, &mut past);
    assert_eq!(past, [0; 4]);
}

#[test]
fn unused_dma_memory_helper_is_consistent() {
    // The DmaMemory the handler uses is the RAM itself when there is no IOMMU.
    let r = rig(false);
    r.mem.write_obj(7u8, GuestAddress(DATA)).unwrap();
    assert_eq!(r.ram.read_obj::<u8>(GuestAddress(DATA)).unwrap(), 7);
}

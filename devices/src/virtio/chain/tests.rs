use virtio_queue::QueueOwnedT;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::dma::guest_physical_memory;
use crate::virtio::testing::{Buffer, DriverQueue, RawDesc, DESC_F_NEXT, DESC_F_WRITE};

const QUEUE: u16 = 8;
const RAM: usize = 0x10_0000;
/// VIRTQ_DESC_F_INDIRECT.
const DESC_F_INDIRECT: u16 = 4;

struct Rig {
    ram: GuestMemoryMmap,
    driver: DriverQueue,
    queue: virtio_queue::Queue,
    reader: ChainReader,
}

fn rig() -> Rig {
    let ram = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM)]).unwrap();
    let driver = DriverQueue::new(0x1000, QUEUE);
    let queue = driver.device_queue();
    Rig {
        ram,
        driver,
        queue,
        reader: ChainReader::new(QUEUE),
    }
}

impl Rig {
    /// Pops the next chain and reads it: (readable, writable, reachable) or the error.
    fn read_next(&mut self) -> Result<(Vec<Segment>, Vec<Segment>, bool), MalformedChain> {
        let mem = guest_physical_memory(self.ram.clone());
        let chain = self.queue.iter(&mem).unwrap().next().expect("a chain");
        self.reader.read(&mem, chain).map(|c| {
            (
                c.readable.to_vec(),
                c.writable.to_vec(),
                c.unreachable.is_none(),
            )
        })
    }
}

fn seg(addr: u64, len: u32) -> Segment {
    Segment {
        addr: GuestAddress(addr),
        len,
    }
}

#[test]
fn readable_then_writable_is_read_in_order() {
    let mut r = rig();
    r.driver.add_chain(
        &r.ram,
        &[
            Buffer::readable(0x10000, 16),
            Buffer::readable(0x11000, 8),
            Buffer::writable(0x12000, 1),
        ],
    );
    let (readable, writable, reachable) = r.read_next().unwrap();
    assert_eq!(readable, vec![seg(0x10000, 16), seg(0x11000, 8)]);
    assert_eq!(writable, vec![seg(0x12000, 1)]);
    assert!(reachable);
}

#[test]
fn readable_after_writable_is_malformed() {
    let mut r = rig();
    r.driver.add_chain(
        &r.ram,
        &[Buffer::writable(0x10000, 16), Buffer::readable(0x11000, 8)],
    );
    assert_eq!(r.read_next(), Err(MalformedChain::ReadableAfterWritable));
}

#[test]
fn a_chain_cut_short_is_malformed_not_shorter() {
    let mut r = rig();
    // The second descriptor points past the table: virtio-queue just stops there.
    let desc = |addr, flags, next| RawDesc {
        addr,
        len: 16,
        flags,
        next,
    };
    r.driver
        .write_desc(&r.ram, 0, desc(0x10000, DESC_F_NEXT, 1));
    r.driver
        .write_desc(&r.ram, 1, desc(0x11000, DESC_F_NEXT | DESC_F_WRITE, 200));
    r.driver.publish(&r.ram, 0);
    assert_eq!(r.read_next(), Err(MalformedChain::CutShort));
    // A loop: 2 -> 3 -> 2.
    r.driver
        .write_desc(&r.ram, 2, desc(0x10000, DESC_F_NEXT, 3));
    r.driver
        .write_desc(&r.ram, 3, desc(0x11000, DESC_F_NEXT, 2));
    r.driver.publish(&r.ram, 2);
    assert!(matches!(
        r.read_next(),
        Err(MalformedChain::CutShort | MalformedChain::TooLong(_))
    ));
    // A head past the table reads nothing.
    r.driver.publish(&r.ram, 999);
    assert_eq!(r.read_next(), Err(MalformedChain::Empty));
}

#[test]
fn indirect_tables_are_followed_and_checked() {
    let mut r = rig();
    let table = 0x20000u64;
    for (i, (addr, len, flags)) in [
        (0x10000u64, 16u32, DESC_F_NEXT),
        (0x11000, 512, DESC_F_NEXT | DESC_F_WRITE),
        (0x12000, 1, DESC_F_WRITE),
    ]
    .into_iter()
    .enumerate()
    {
        let raw = RawDesc {
            addr,
            len,
            flags,
            next: i as u16 + 1,
        };
        r.ram
            .write_slice(&raw.to_le_bytes(), GuestAddress(table + 16 * i as u64))
            .unwrap();
    }
    let indirect = RawDesc {
        addr: table,
        len: 48,
        flags: DESC_F_INDIRECT,
        next: 0,
    };
    r.driver.write_desc(&r.ram, 0, indirect);
    r.driver.publish(&r.ram, 0);
    let (readable, writable, _) = r.read_next().unwrap();
    assert_eq!(readable, vec![seg(0x10000, 16)]);
    assert_eq!(writable, vec![seg(0x11000, 512), seg(0x12000, 1)]);
    // A table whose length is not a multiple of 16 is refused.
    r.driver.write_desc(
        &r.ram,
        1,
        RawDesc {
            len: 40,
            ..indirect
        },
    );
    r.driver.publish(&r.ram, 1);
    assert_eq!(r.read_next(), Err(MalformedChain::Empty));
}

#[test]
fn unreachable_buffers_are_known_before_anything_runs() {
    let mut r = rig();
    r.driver.add_chain(
        &r.ram,
        &[
            Buffer::readable(0x10000, 16),
            Buffer::writable(RAM as u64 - 4, 8),
        ],
    );
    let (_, _, reachable) = r.read_next().unwrap();
    assert!(!reachable);
}

#[test]
fn streams_are_read_and_written_across_segments_never_past_their_end() {
    let ram: GuestMemoryMmap = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM)]).unwrap();
    let segments = [seg(0x1000, 3), seg(0x2000, 5)];
    write_stream(&ram, &segments, 1, b"abcdef").unwrap();
    let mut back = [0u8; 8];
    read_stream(&ram, &segments, 0, &mut back).unwrap();
    assert_eq!(&back[1..7], b"abcdef");
    assert_eq!(
        write_stream(&ram, &segments, 4, b"xyzw!"),
        Err(MalformedChain::PastEnd)
    );
    // Nothing was written by the refused access.
    read_stream(&ram, &segments, 0, &mut back).unwrap();
    assert_eq!(&back[4..7], b"def");
    assert_eq!(total_len(&segments), 8);
}

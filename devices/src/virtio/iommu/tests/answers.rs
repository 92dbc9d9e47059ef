//! The request path decides whether it can answer before it executes, and signals every
//! request it completed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use vm_memory::{Bytes, GuestAddress};

use super::rig::*;
use crate::virtio::iommu::protocol::{Status, MAP_F_READ, MAP_F_WRITE};
use crate::virtio::iommu::queues::serve_requests;
use crate::virtio::queue_server::QueueServer;
use crate::virtio::testing::{Buffer, DriverQueue};
use crate::virtio::VirtioInterrupt;

const OK: Option<Status> = Some(Status::Ok);
const RW: u32 = MAP_F_READ | MAP_F_WRITE;
const REQUEST_AT: u64 = 0x30000;
const TAIL_AT: u64 = 0x31000;
/// The rig's guest memory ends here.
const RAM_END: u64 = 0x100_0000;

fn raw(addr: u64, len: u32, flags: u32, next: u16) -> RawDescriptor {
    RawDescriptor::from(SplitDescriptor::new(addr, len, flags as u16, next))
}

fn mapped(rig: &Rig) -> usize {
    rig.state.domains().mapping_count(1).unwrap()
}

#[test]
fn a_map_whose_tail_is_outside_ram_is_not_executed() {
    let rig = Rig::new();
    assert_eq!(rig.attach(1, DISK), OK);
    let request = map(1, 0x1000, 0x1fff, 0x4000, RW);
    rig.mem
        .write_slice(&request, GuestAddress(REQUEST_AT))
        .unwrap();
    for tail in [RAM_END - 2, RAM_END, u64::MAX - 1] {
        let used = rig.run_request_chain(&[
            (REQUEST_AT, request.len() as u32, 0),
            (tail, 4, VRING_DESC_F_WRITE as u16),
        ]);
        assert_eq!(used, 0, "tail at {tail:#x}");
        // The driver reads used length 0 as failure: no mapping may be left behind.
        assert_eq!(mapped(&rig), 0, "tail at {tail:#x}");
    }
    // The same request with a reachable tail runs.
    assert_eq!(rig.map(1, 0x1000, 0x1fff, 0x4000, RW), OK);
    assert_eq!(mapped(&rig), 1);
}

#[test]
fn a_chain_cut_short_is_refused_not_answered() {
    let rig = Rig::new();
    assert_eq!(rig.attach(1, DISK), OK);
    let request = map(1, 0x1000, 0x1fff, 0x4000, RW);
    rig.mem
        .write_slice(&request, GuestAddress(REQUEST_AT))
        .unwrap();
    rig.mem
        .write_slice(&[SENTINEL; 4], GuestAddress(TAIL_AT))
        .unwrap();
    // The tail says a third descriptor follows, at an index past the table: virtio-queue
    // stops there as if the chain had ended.
    let used = rig.run_raw_chain(&[
        raw(REQUEST_AT, request.len() as u32, VRING_DESC_F_NEXT, 1),
        raw(TAIL_AT, 4, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 200),
    ]);
    assert_eq!(used, 0);
    assert_eq!(mapped(&rig), 0);
    let mut tail = [0u8; 4];
    rig.mem
        .read_slice(&mut tail, GuestAddress(TAIL_AT))
        .unwrap();
    assert_eq!(tail, [SENTINEL; 4], "nothing written");
}

#[derive(Default)]
struct CountingInterrupt(AtomicUsize);

impl VirtioInterrupt for CountingInterrupt {
    fn notify_queue(&self, _: u16) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn notify_config(&self) {}
}

#[test]
fn a_bad_head_index_does_not_hide_the_completions_around_it() {
    let rig = Rig::new();
    let mut driver = DriverQueue::new(0x40000, 16);
    let requests = [attach(1, DISK, 0, 0), map(1, 0x1000, 0x1fff, 0x4000, RW)];
    for (i, request) in requests.iter().enumerate() {
        let at = 0x50000 + 0x1000 * i as u64;
        rig.mem.write_slice(request, GuestAddress(at)).unwrap();
        driver.add_chain(
            &rig.mem,
            &[
                Buffer::readable(at, request.len() as u32),
                Buffer::writable(at + 0x800, 4),
            ],
        );
        if i == 0 {
            driver.publish(&rig.mem, 999);
        }
    }
    let interrupt = Arc::new(CountingInterrupt::default());
    let mut server = QueueServer::new(driver.device_queue(), 0);
    serve_requests(
        &rig.state,
        ALL_FEATURES,
        &rig.own_memory(),
        &mut server,
        interrupt.as_ref(),
        usize::MAX,
    );
    assert_eq!(driver.used_idx(&rig.mem), 2, "both good requests completed");
    assert_eq!(mapped(&rig), 1);
    assert_eq!(interrupt.0.load(Ordering::SeqCst), 1, "and signalled");
}

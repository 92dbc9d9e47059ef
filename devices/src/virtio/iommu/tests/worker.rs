//! The device activated as the transport does it: its worker serves the requestq when
//! notified, delivers faults to the eventq on its own, and stops on reset.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::rig::{attach, ALL_FEATURES, DISK};

use crate::virtio::iommu::{Iommu, IommuConfig};
use crate::virtio::{ActivateContext, ActiveQueue, VirtioDevice, VirtioInterrupt, WorkerSpec};

struct RecordingInterrupt(Mutex<Sender<u16>>);

impl VirtioInterrupt for RecordingInterrupt {
    fn notify_queue(&self, queue_index: u16) {
        let _ = self.0.lock().unwrap().send(queue_index);
    }
    fn notify_config(&self) {}
}

const REQUESTQ_AT: u64 = 0x0;
const EVENTQ_AT: u64 = 0x4000;
const REQUEST_AT: u64 = 0x10000;
const STATUS_AT: u64 = 0x11000;
const EVENT_AT: u64 = 0x12000;

fn raw(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
    RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next))
}

/// An activated device with one ATTACH queued on the requestq and one eventq buffer.
fn activated() -> (Iommu, GuestMemoryMmap, Vec<EventFd>, Receiver<u16>) {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
    let mut dev = Iommu::new(IommuConfig::default(), WorkerSpec::unconfined("viommu-t")).unwrap();
    dev.add_endpoint(DISK);
    let requestq = MockSplitQueue::create(&mem, GuestAddress(REQUESTQ_AT), 16);
    mem.write_slice(&attach(1, DISK, 0, 0), GuestAddress(REQUEST_AT))
        .unwrap();
    requestq
        .add_desc_chains(
            &[
                raw(REQUEST_AT, 20, VRING_DESC_F_NEXT as u16, 1),
                raw(STATUS_AT, 4, VRING_DESC_F_WRITE as u16, 0),
            ],
            0,
        )
        .unwrap();
    let eventq = MockSplitQueue::create(&mem, GuestAddress(EVENTQ_AT), 16);
    eventq
        .add_desc_chains(&[raw(EVENT_AT, 24, VRING_DESC_F_WRITE as u16, 0)], 0)
        .unwrap();
    let notifiers: Vec<EventFd> = (0..2)
        .map(|_| EventFd::new(libc::EFD_NONBLOCK).unwrap())
        .collect();
    let queues = vec![
        ActiveQueue {
            index: 0,
            queue: requestq.create_queue().unwrap(),
            notifier: Arc::new(notifiers[0].try_clone().unwrap()),
        },
        ActiveQueue {
            index: 1,
            queue: eventq.create_queue().unwrap(),
            notifier: Arc::new(notifiers[1].try_clone().unwrap()),
        },
    ];
    // The worker serves the queued ATTACH as soon as it starts: mark its status first.
    mem.write_obj(0xffu8, GuestAddress(STATUS_AT)).unwrap();
    let (tx, rx) = channel();
    dev.activate(ActivateContext {
        mem: crate::dma::guest_physical_memory(mem.clone()),
        queues,
        interrupt: Arc::new(RecordingInterrupt(Mutex::new(tx))),
        acked_features: ALL_FEATURES,
    })
    .unwrap();
    (dev, mem, notifiers, rx)
}

#[test]
fn the_worker_answers_a_notified_request_and_interrupts() {
    let (mut dev, mem, notifiers, rx) = activated();
    notifiers[0].write(1).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(0));
    assert_eq!(mem.read_obj::<u8>(GuestAddress(STATUS_AT)).unwrap(), 0);
    assert_eq!(dev.state().domains().domain_of(DISK), Some(1));
    dev.reset();
    assert_eq!(dev.state().domains().domain_count(), 0);
}

#[test]
fn the_worker_delivers_a_fault_without_being_notified() {
    let (mut dev, mem, _notifiers, rx) = activated();
    let disk = dev.add_endpoint(DISK);
    assert!(disk
        .memory(mem.clone())
        .read_obj::<u32>(GuestAddress(0x7000))
        .is_err());
    // The worker also answers the queued ATTACH (queue 0) when it starts.
    let eventq_interrupt = rx.iter().take(2).find(|&queue| queue == 1);
    assert_eq!(eventq_interrupt, Some(1));
    let endpoint: u32 = mem.read_obj(GuestAddress(EVENT_AT + 8)).unwrap();
    let address: u64 = mem.read_obj(GuestAddress(EVENT_AT + 16)).unwrap();
    assert_eq!((endpoint, address), (DISK, 0x7000));
    assert_eq!(dev.fault_counters().delivered, 1);
    dev.reset();
}

#[test]
fn activation_without_the_eventq_is_refused() {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
    let mut dev = Iommu::new(IommuConfig::default(), WorkerSpec::unconfined("viommu-t")).unwrap();
    let requestq = MockSplitQueue::create(&mem, GuestAddress(REQUESTQ_AT), 16);
    let (tx, _rx) = channel();
    let result = dev.activate(ActivateContext {
        mem: crate::dma::guest_physical_memory(mem.clone()),
        queues: vec![ActiveQueue {
            index: 0,
            queue: requestq.create_queue().unwrap(),
            notifier: Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap()),
        }],
        interrupt: Arc::new(RecordingInterrupt(Mutex::new(tx))),
        acked_features: ALL_FEATURES,
    });
    assert!(result.is_err());
}

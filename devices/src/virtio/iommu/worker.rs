//! The virtio-iommu worker thread: wakes on requestq and eventq notifications and on newly
//! queued fault records, and stops when told to.

use std::sync::Arc;

use log::{error, warn};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::protocol::{EVENT_QUEUE, REQUEST_QUEUE};
use super::queues::{deliver_faults, process_requests};
use super::shared::Shared;
use crate::dma::DmaMemory;
use crate::virtio::worker_thread::JobHandle;
use crate::virtio::{ActiveQueue, VirtioInterrupt, WorkerSpec};

const TOKEN_REQUESTS: u64 = 0;
const TOKEN_EVENTS: u64 = 1;
const TOKEN_FAULTS: u64 = 2;
const TOKEN_STOP: u64 = 3;

/// A running worker; dropping it without [`Worker::stop`] leaves the thread running.
pub struct Worker {
    stop: EventFd,
    handle: JobHandle,
}

impl Worker {
    pub fn start(
        spec: &WorkerSpec,
        shared: Arc<Shared>,
        negotiated: u64,
        mem: DmaMemory,
        queues: Vec<ActiveQueue>,
        interrupt: Arc<dyn VirtioInterrupt>,
    ) -> std::io::Result<Self> {
        let stop = EventFd::new(libc::EFD_NONBLOCK)?;
        let state = WorkerState {
            shared,
            negotiated,
            mem,
            queues,
            interrupt,
            stop: stop.try_clone()?,
            epoll: Epoll::new()?,
        };
        state.register()?;
        let handle = spec.thread.run(move || state.run())?;
        Ok(Self { stop, handle })
    }

    pub fn stop(self) {
        if self.stop.write(1).is_err() {
            error!("virtio-iommu: cannot signal the worker to stop");
            return;
        }
        if self.handle.join().is_err() {
            error!("virtio-iommu: the worker panicked");
        }
    }
}

struct WorkerState {
    shared: Arc<Shared>,
    negotiated: u64,
    mem: DmaMemory,
    queues: Vec<ActiveQueue>,
    interrupt: Arc<dyn VirtioInterrupt>,
    stop: EventFd,
    epoll: Epoll,
}

impl WorkerState {
    fn register(&self) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let add = |fd: i32, token: u64| {
            self.epoll.ctl(
                ControlOperation::Add,
                fd,
                EpollEvent::new(EventSet::IN, token),
            )
        };
        add(
            self.queues[REQUEST_QUEUE].notifier.as_raw_fd(),
            TOKEN_REQUESTS,
        )?;
        add(self.queues[EVENT_QUEUE].notifier.as_raw_fd(), TOKEN_EVENTS)?;
        add(self.shared.fault_event().as_raw_fd(), TOKEN_FAULTS)?;
        add(self.stop.as_raw_fd(), TOKEN_STOP)
    }

    fn run(mut self) {
        let mut events = [EpollEvent::default(); 4];
        // Faults may have been queued before the driver was ready.
        self.serve_events();
        loop {
            let n = match self.epoll.wait(-1, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    error!("virtio-iommu: epoll failed: {e}");
                    return;
                }
            };
            for event in &events[..n] {
                match event.data() {
                    TOKEN_REQUESTS => {
                        let _ = self.queues[REQUEST_QUEUE].notifier.read();
                        self.serve_requests();
                    }
                    TOKEN_EVENTS => {
                        let _ = self.queues[EVENT_QUEUE].notifier.read();
                        self.serve_events();
                    }
                    TOKEN_FAULTS => {
                        let _ = self.shared.fault_event().read();
                        self.serve_events();
                    }
                    _ => return,
                }
            }
        }
    }

    fn serve_requests(&mut self) {
        let queue = &mut self.queues[REQUEST_QUEUE].queue;
        match process_requests(&self.shared, self.negotiated, &self.mem, queue) {
            Ok(true) => self.interrupt.notify_queue(REQUEST_QUEUE as u16),
            Ok(false) => {}
            Err(e) => warn!("virtio-iommu: requestq: {e}"),
        }
    }

    fn serve_events(&mut self) {
        let queue = &mut self.queues[EVENT_QUEUE].queue;
        match deliver_faults(&self.shared, &self.mem, queue) {
            Ok(true) => self.interrupt.notify_queue(EVENT_QUEUE as u16),
            Ok(false) => {}
            Err(e) => warn!("virtio-iommu: eventq: {e}"),
        }
    }
}

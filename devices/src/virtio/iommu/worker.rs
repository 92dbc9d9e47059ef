//! The virtio-iommu's queues. The requestq is served inline, on the vCPU that notified it:
//! Linux spins on each request with interrupts off until it is answered, and waking a worker
//! thread for it costs far more than the request (in a nested guest, where the spinning vCPU
//! may hold the CPU the worker needs, milliseconds). The eventq and the fault eventfd that
//! says records are waiting are served by the generic device worker.

use std::os::fd::AsRawFd;
use std::sync::Arc;

use vmm_sys_util::eventfd::EventFd;

use super::queues::{deliver_faults, serve_requests};
use super::state::IommuState;
use crate::dma::DmaMemory;
use crate::virtio::queue_server::QueueServer;
use crate::virtio::worker::{QueueHandler, Worker, BUDGET};
use crate::virtio::{ActiveQueue, VirtioInterrupt, WorkerSpec};

pub struct IommuQueues {
    state: Arc<IommuState>,
    negotiated: u64,
    mem: DmaMemory,
    events: QueueServer,
    interrupt: Arc<dyn VirtioInterrupt>,
}

/// The requestq, served by whoever notifies it.
pub struct InlineRequests {
    state: Arc<IommuState>,
    negotiated: u64,
    mem: DmaMemory,
    requests: QueueServer,
    interrupt: Arc<dyn VirtioInterrupt>,
}

impl InlineRequests {
    /// Serves every available request. Unbounded on purpose: notifications stay off while
    /// requests are served, so a request left behind would wait for a kick that never comes;
    /// what a guest can add meanwhile is bounded by its own vCPUs.
    pub fn serve(&mut self) {
        serve_requests(
            &self.state,
            self.negotiated,
            &self.mem,
            &mut self.requests,
            self.interrupt.as_ref(),
            usize::MAX,
        );
    }
}

impl IommuQueues {
    /// Splits the requestq and the eventq (`queues`, in that order, checked by the caller)
    /// into the inline requests and the worker's part.
    pub fn new(
        state: Arc<IommuState>,
        negotiated: u64,
        mem: DmaMemory,
        queues: Vec<ActiveQueue>,
        interrupt: Arc<dyn VirtioInterrupt>,
    ) -> (InlineRequests, Self, Arc<EventFd>) {
        let mut queues = queues.into_iter();
        let (Some(requestq), Some(eventq)) = (queues.next(), queues.next()) else {
            unreachable!("the caller checked for both queues");
        };
        let requests = InlineRequests {
            state: state.clone(),
            negotiated,
            mem: mem.clone(),
            requests: QueueServer::new(requestq.queue, requestq.index),
            interrupt: interrupt.clone(),
        };
        let events = Self {
            state,
            negotiated,
            mem,
            events: QueueServer::new(eventq.queue, eventq.index),
            interrupt,
        };
        (requests, events, eventq.notifier)
    }

    /// Starts serving the eventq on `spec`'s thread.
    pub fn start(self, spec: &WorkerSpec, eventq: Arc<EventFd>) -> std::io::Result<Worker> {
        let fault_fd = self.state.fault_event().as_raw_fd();
        Worker::spawn(spec, vec![eventq], vec![fault_fd], self)
    }

    fn serve_events(&mut self, budget: usize) -> bool {
        deliver_faults(
            &self.state,
            self.negotiated,
            &self.mem,
            &mut self.events,
            self.interrupt.as_ref(),
            budget,
        )
    }
}

impl QueueHandler for IommuQueues {
    /// The worker watches only the eventq.
    fn process_queue(&mut self, _position: usize, budget: usize) -> bool {
        self.serve_events(budget)
    }

    /// Fault records were queued.
    fn process_input(&mut self, _index: usize) -> bool {
        let _ = self.state.fault_event().read();
        while self.serve_events(BUDGET) {}
        true
    }
}

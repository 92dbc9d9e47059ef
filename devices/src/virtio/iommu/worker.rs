//! The virtio-iommu's queue handler, run by the generic device worker: the requestq, the
//! eventq, and the fault eventfd that says records are waiting.

use std::os::fd::AsRawFd;
use std::sync::Arc;

use super::protocol::{EVENT_QUEUE, REQUEST_QUEUE};
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
    requests: QueueServer,
    events: QueueServer,
    interrupt: Arc<dyn VirtioInterrupt>,
}

impl IommuQueues {
    /// `queues` are the requestq and the eventq, in that order (checked by the caller).
    pub fn new(
        state: Arc<IommuState>,
        negotiated: u64,
        mem: DmaMemory,
        queues: Vec<ActiveQueue>,
        interrupt: Arc<dyn VirtioInterrupt>,
    ) -> (Self, Vec<Arc<vmm_sys_util::eventfd::EventFd>>) {
        let mut notifiers = Vec::new();
        let mut servers = queues.into_iter().map(|q| {
            notifiers.push(q.notifier);
            QueueServer::new(q.queue, q.index)
        });
        let requests = servers.next().expect("the requestq");
        let events = servers.next().expect("the eventq");
        drop(servers);
        (
            Self {
                state,
                negotiated,
                mem,
                requests,
                events,
                interrupt,
            },
            notifiers,
        )
    }

    /// Starts serving on `spec`'s thread.
    pub fn start(
        self,
        spec: &WorkerSpec,
        notifiers: Vec<Arc<vmm_sys_util::eventfd::EventFd>>,
    ) -> std::io::Result<Worker> {
        let fault_fd = self.state.fault_event().as_raw_fd();
        Worker::spawn(spec, notifiers, vec![fault_fd], self)
    }

    fn serve_events(&mut self, budget: usize) -> bool {
        deliver_faults(
            &self.state,
            &self.mem,
            &mut self.events,
            self.interrupt.as_ref(),
            budget,
        )
    }
}

impl QueueHandler for IommuQueues {
    fn process_queue(&mut self, position: usize, budget: usize) -> bool {
        match position {
            REQUEST_QUEUE => serve_requests(
                &self.state,
                self.negotiated,
                &self.mem,
                &mut self.requests,
                self.interrupt.as_ref(),
                budget,
            ),
            EVENT_QUEUE => self.serve_events(budget),
            _ => false,
        }
    }

    /// Fault records were queued.
    fn process_input(&mut self, _index: usize) -> bool {
        let _ = self.state.fault_event().read();
        while self.serve_events(BUDGET) {}
        true
    }
}

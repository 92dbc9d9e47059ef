//! The virtio-blk worker's queue handler: pop, run, complete, interrupt.

use std::sync::Arc;

use virtio_queue::{Queue, QueueT};

use super::request::{Disk, RequestRunner};
use crate::dma::DmaMemory;
use crate::virtio::device::VirtioInterrupt;
use crate::virtio::worker::QueueHandler;

pub struct BlockHandler {
    pub mem: DmaMemory,
    pub disk: Arc<Disk>,
    pub queue: Queue,
    pub queue_index: u16,
    pub interrupt: Arc<dyn VirtioInterrupt>,
    runner: RequestRunner,
}

impl BlockHandler {
    pub fn new(
        mem: DmaMemory,
        disk: Arc<Disk>,
        queue: Queue,
        queue_index: u16,
        interrupt: Arc<dyn VirtioInterrupt>,
    ) -> Self {
        let runner = RequestRunner::new(queue.size());
        Self {
            mem,
            disk,
            queue,
            queue_index,
            interrupt,
            runner,
        }
    }

    /// Runs every available request; returns how many completed.
    pub fn drain(&mut self) -> usize {
        let mut completed = 0;
        while let Some(chain) = self.queue.pop_descriptor_chain(&self.mem) {
            let head = chain.head_index();
            let used = self.runner.run(&self.disk, &self.mem, chain);
            // Writes reached the file (pwrite returned) before the used ring says so.
            if let Err(e) = self.queue.add_used(&self.mem, head, used) {
                log::warn!("virtio-blk: cannot complete request {head}: {e}");
                break;
            }
            completed += 1;
        }
        if completed > 0 {
            self.interrupt.notify_queue(self.queue_index);
        }
        completed
    }
}

impl QueueHandler for BlockHandler {
    fn process_queue(&mut self, _index: usize) {
        self.drain();
    }
}

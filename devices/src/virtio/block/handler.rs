//! The virtio-blk worker's queue handler.

use std::sync::Arc;

use virtio_queue::Queue;

use super::request::{Disk, RequestRunner};
use crate::dma::DmaMemory;
use crate::io_counters::IoCounters;
use crate::virtio::device::VirtioInterrupt;
use crate::virtio::queue_server::{QueueServer, Served};
use crate::virtio::worker::{QueueHandler, BUDGET};

pub struct BlockHandler {
    mem: DmaMemory,
    disk: Arc<Disk>,
    server: QueueServer,
    interrupt: Arc<dyn VirtioInterrupt>,
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
        Self {
            mem,
            disk,
            server: QueueServer::new(queue, queue_index),
            interrupt,
            runner: RequestRunner::new(),
        }
    }

    /// Counts what this handler serves in `counters`.
    pub fn counting(mut self, counters: Arc<IoCounters>) -> Self {
        self.runner = RequestRunner::counting(counters);
        self
    }

    /// Runs at most `budget` available requests; returns whether any are left.
    pub fn serve(&mut self, budget: usize) -> bool {
        let Self {
            mem,
            disk,
            server,
            interrupt,
            runner,
        } = self;
        // Writes reach the file (pwrite returned) before the used ring says so.
        server.serve(mem, interrupt.as_ref(), budget, |chain| {
            Served::Used(match chain {
                Ok(chain) => runner.run(disk, mem, &chain),
                Err(e) => {
                    log::debug!("virtio-blk: {e}");
                    0
                }
            })
        })
    }

    /// Runs every available request (tests and benchmarks).
    pub fn drain(&mut self) {
        while self.serve(BUDGET) {}
    }
}

impl QueueHandler for BlockHandler {
    fn process_queue(&mut self, _position: usize, budget: usize) -> bool {
        self.serve(budget)
    }
}

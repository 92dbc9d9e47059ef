//! Serving one virtqueue: pop, check (the one chain reader), hand to the device, complete,
//! and interrupt the driver when it asked for it (VIRTIO_RING_F_EVENT_IDX or not).

use virtio_queue::{Queue, QueueOwnedT, QueueT};

use super::chain::{Chain, ChainReader, MalformedChain};
use super::device::VirtioInterrupt;
use crate::dma::DmaMemory;

/// What a device did with one chain.
pub enum Served {
    /// Completed, with this many bytes written to the driver's buffers.
    Used(u32),
    /// The device had nothing for it (an input queue with no input): leave it for later.
    Declined,
}

pub struct QueueServer {
    pub queue: Queue,
    /// The virtio queue index, for the interrupt.
    pub index: u16,
    reader: ChainReader,
}

impl QueueServer {
    pub fn new(queue: Queue, index: u16) -> Self {
        let reader = ChainReader::new(queue.size());
        Self {
            queue,
            index,
            reader,
        }
    }

    /// Serves at most `budget` chains with `serve`; returns whether chains are left.
    ///
    /// A malformed chain reaches `serve` as an error, and the device completes it with used
    /// length 0. A head index past the descriptor table cannot be completed at all: it is
    /// skipped, and the chains completed around it are still signalled.
    pub fn serve(
        &mut self,
        mem: &DmaMemory,
        interrupt: &dyn VirtioInterrupt,
        budget: usize,
        mut serve: impl FnMut(Result<Chain<'_>, MalformedChain>) -> Served,
    ) -> bool {
        let mut completed = false;
        let mut served = 0;
        let left = 'serving: loop {
            // Errors here mean the rings are unreachable; popping fails next and ends this.
            let _ = self.queue.disable_notification(mem);
            while let Some(chain) = self.queue.pop_descriptor_chain(mem) {
                let head = chain.head_index();
                let used = match serve(self.reader.read(mem, chain)) {
                    Served::Used(len) => len,
                    Served::Declined => {
                        self.queue.go_to_previous_position();
                        let _ = self.queue.enable_notification(mem);
                        break 'serving false;
                    }
                };
                match self.queue.add_used(mem, head, used) {
                    Ok(()) => completed = true,
                    Err(e) => log::debug!("queue {}: chain {head} not completed: {e}", self.index),
                }
                served += 1;
                if served == budget {
                    break 'serving true;
                }
            }
            match self.queue.enable_notification(mem) {
                // More chains arrived while notifications were off.
                Ok(true) => continue,
                _ => break false,
            }
        };
        if completed && self.queue.needs_notification(mem).unwrap_or(true) {
            interrupt.notify_queue(self.index);
        }
        left
    }
}

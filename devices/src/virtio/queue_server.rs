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
    ///
    /// An available index the queue cannot pop from (more than the queue size ahead, or a
    /// ring at address 0) ends the call: the driver's next notification tries again.
    pub fn serve(
        &mut self,
        mem: &DmaMemory,
        interrupt: &dyn VirtioInterrupt,
        budget: usize,
        mut serve: impl FnMut(Result<Chain<'_>, MalformedChain>) -> Served,
    ) -> bool {
        let mut completed = false;
        let mut served = 0;
        // Passes in a row that popped nothing. One is a chain published just before
        // notifications came back on; a second means the available index is one the queue
        // refuses to pop from, and retrying would spin forever.
        let mut empty_passes = 0;
        let left = 'serving: loop {
            // Errors here mean the rings are unreachable; popping fails next and ends this.
            let _ = self.queue.disable_notification(mem);
            let mut popped = false;
            while let Some(chain) = self.queue.pop_descriptor_chain(mem) {
                popped = true;
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
            empty_passes = if popped { 0 } else { empty_passes + 1 };
            match self.queue.enable_notification(mem) {
                // More chains arrived while notifications were off.
                Ok(true) if empty_passes < 2 => continue,
                Ok(true) => {
                    log::debug!("queue {}: the available index cannot be popped", self.index);
                    break false;
                }
                _ => break false,
            }
        };
        if completed && self.queue.needs_notification(mem).unwrap_or(true) {
            interrupt.notify_queue(self.index);
        }
        left
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    use super::*;
    use crate::dma::guest_physical_memory;
    use crate::virtio::testing::{Buffer, DriverQueue};

    struct NoInterrupt;

    impl VirtioInterrupt for NoInterrupt {
        fn notify_queue(&self, _: u16) {}
        fn notify_config(&self) {}
    }

    /// Serves `queue` on another thread; fails if that does not return within seconds.
    fn serve_returns(ram: GuestMemoryMmap, queue: Queue) -> usize {
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            let mut server = QueueServer::new(queue, 0);
            let mut chains = 0;
            server.serve(&guest_physical_memory(ram), &NoInterrupt, 64, |_| {
                chains += 1;
                Served::Used(0)
            });
            let _ = done.send(chains);
        });
        finished
            .recv_timeout(Duration::from_secs(10))
            .expect("serve() never returned")
    }

    #[test]
    fn an_available_index_too_far_ahead_ends_the_call() {
        let ram = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x1_0000)]).unwrap();
        let mut driver = DriverQueue::new(0x1000, 8);
        driver.add_chain(&ram, &[Buffer::writable(0x8000, 16)]);
        // Nine chains ahead of the device on an eight-entry ring: nothing can be popped.
        ram.write_obj(9u16, GuestAddress(driver.avail_ring + 2))
            .unwrap();
        assert_eq!(serve_returns(ram, driver.device_queue()), 0);
    }

    #[test]
    fn an_available_ring_at_address_zero_ends_the_call() {
        let ram = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x1_0000)]).unwrap();
        let driver = DriverQueue::new(0x1000, 8);
        let mut queue = driver.device_queue();
        queue.try_set_avail_ring_address(GuestAddress(0)).unwrap();
        ram.write_obj(1u16, GuestAddress(2)).unwrap();
        assert_eq!(serve_returns(ram, queue), 0);
    }
}

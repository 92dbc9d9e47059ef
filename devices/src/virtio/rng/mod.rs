//! virtio-rng (entropy device): fills the driver's buffers from the host's getrandom.

use std::sync::Arc;

use virtio_bindings::virtio_ids::VIRTIO_ID_RNG;
use virtio_queue::{Queue, QueueT};
use vm_memory::Bytes;

use super::device::{ActivateContext, ActivateError, VirtioDevice, VirtioInterrupt, WorkerSpec};
use super::worker::{QueueHandler, Worker};
use crate::dma::DmaMemory;

pub const QUEUE_SIZE: u16 = 64;
/// Entropy handed out per request at most, however large the driver's buffers.
const MAX_PER_REQUEST: usize = 4096;

pub struct Rng {
    spec: WorkerSpec,
    worker: Option<Worker>,
}

impl Rng {
    pub fn new(spec: WorkerSpec) -> Self {
        Self { spec, worker: None }
    }
}

fn getrandom(buf: &mut [u8]) -> bool {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        filled += n as usize;
    }
    true
}

pub struct RngHandler {
    mem: DmaMemory,
    queue: Queue,
    interrupt: Arc<dyn VirtioInterrupt>,
    buffer: Vec<u8>,
}

impl RngHandler {
    pub fn new(mem: DmaMemory, queue: Queue, interrupt: Arc<dyn VirtioInterrupt>) -> Self {
        Self {
            mem,
            queue,
            interrupt,
            buffer: vec![0; MAX_PER_REQUEST],
        }
    }

    /// Answers every available request; returns how many.
    pub fn drain(&mut self) -> usize {
        let mut completed = 0;
        while let Some(chain) = self.queue.pop_descriptor_chain(&self.mem) {
            let head = chain.head_index();
            let mut written = 0usize;
            for desc in chain.writable() {
                let room = MAX_PER_REQUEST - written;
                let n = (desc.len() as usize).min(room);
                if n == 0 {
                    break;
                }
                let buf = &mut self.buffer[..n];
                if !getrandom(buf) || self.mem.write_slice(buf, desc.addr()).is_err() {
                    break;
                }
                written += n;
            }
            if self
                .queue
                .add_used(&self.mem, head, written as u32)
                .is_err()
            {
                break;
            }
            completed += 1;
        }
        if completed > 0 {
            self.interrupt.notify_queue(0);
        }
        completed
    }
}

impl QueueHandler for RngHandler {
    fn process_queue(&mut self, _index: usize) {
        self.drain();
    }
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_RNG
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        0
    }

    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}

    fn activate(&mut self, mut ctx: ActivateContext) -> Result<(), ActivateError> {
        let q = ctx.take_single_queue("virtio-rng")?;
        let handler = RngHandler::new(ctx.mem, q.queue, ctx.interrupt);
        self.worker = Some(Worker::spawn(
            &self.spec,
            vec![q.notifier],
            vec![],
            handler,
        )?);
        Ok(())
    }

    fn reset(&mut self) {
        // Dropping the worker stops it.
        self.worker = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dma::dma_memory;
    use crate::virtio::testing::{Buffer, DriverQueue};
    use vm_memory::{GuestAddress, GuestMemoryMmap};

    struct NoInterrupt;
    impl VirtioInterrupt for NoInterrupt {
        fn notify_queue(&self, _: u16) {}
        fn notify_config(&self) {}
    }

    #[test]
    fn fills_writable_buffers_up_to_the_cap() {
        let ram = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40000)]).unwrap();
        let mut driver = DriverQueue::new(0x1000, 8);
        let mut handler = RngHandler::new(
            dma_memory(ram.clone(), None),
            driver.device_queue(),
            Arc::new(NoInterrupt),
        );
        driver.add_chain(&ram, &[Buffer::writable(0x10000, 64)]);
        driver.add_chain(&ram, &[Buffer::readable(0x11000, 64)]);
        driver.add_chain(&ram, &[Buffer::writable(0x20000, 0x10000)]);
        driver.add_chain(&ram, &[Buffer::writable(0x3ff00, 0x1000)]);
        assert_eq!(handler.drain(), 4);
        assert_eq!(driver.used_elem(&ram, 0).1, 64);
        assert_eq!(driver.used_elem(&ram, 1).1, 0);
        assert_eq!(driver.used_elem(&ram, 2).1, MAX_PER_REQUEST as u32);
        assert_eq!(driver.used_elem(&ram, 3).1, 0);
        let mut bytes = [0u8; 64];
        ram.read_slice(&mut bytes, GuestAddress(0x10000)).unwrap();
        assert!(bytes.iter().any(|&b| b != bytes[0]));
    }
}

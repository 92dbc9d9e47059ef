//! virtio-rng (entropy device): fills the driver's buffers from the host's getrandom.

use std::sync::Arc;

use virtio_bindings::virtio_ids::VIRTIO_ID_RNG;
use virtio_queue::Queue;

use super::chain::{total_len, write_stream};
use super::device::{ActivateContext, ActivateError, VirtioDevice, VirtioInterrupt, WorkerSpec};
use super::queue_server::{QueueServer, Served};
use super::worker::{QueueHandler, Worker};
use crate::dma::DmaMemory;
use crate::io_counters::IoCounters;

pub const QUEUE_SIZE: u16 = 64;
/// Entropy handed out per request at most, however large the driver's buffers.
const MAX_PER_REQUEST: usize = 4096;

pub struct Rng {
    spec: WorkerSpec,
    worker: Option<Worker>,
    counters: Arc<IoCounters>,
}

impl Rng {
    pub fn new(spec: WorkerSpec) -> Self {
        Self {
            spec,
            worker: None,
            counters: Arc::default(),
        }
    }

    /// Requests answered, entropy bytes given (`read_bytes`), and chains answered empty
    /// because they were malformed or could not be filled (`errors`).
    pub fn counters(&self) -> Arc<IoCounters> {
        self.counters.clone()
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
    server: QueueServer,
    interrupt: Arc<dyn VirtioInterrupt>,
    buffer: Vec<u8>,
    counters: Arc<IoCounters>,
}

impl RngHandler {
    pub fn new(mem: DmaMemory, queue: Queue, interrupt: Arc<dyn VirtioInterrupt>) -> Self {
        Self {
            mem,
            server: QueueServer::new(queue, 0),
            interrupt,
            buffer: vec![0; MAX_PER_REQUEST],
            counters: Arc::default(),
        }
    }

    /// Counts what this handler serves in `counters`.
    pub fn counting(mut self, counters: Arc<IoCounters>) -> Self {
        self.counters = counters;
        self
    }

    /// Answers at most `budget` requests; returns whether any are left.
    pub fn serve(&mut self, budget: usize) -> bool {
        let Self {
            mem,
            server,
            interrupt,
            buffer,
            counters,
        } = self;
        server.serve(mem, interrupt.as_ref(), budget, |chain| {
            let Some(chain) = chain.ok().filter(|c| c.unreachable.is_none()) else {
                counters.request(false);
                return Served::Used(0);
            };
            let n = (total_len(chain.writable) as usize).min(MAX_PER_REQUEST);
            let buf = &mut buffer[..n];
            if !getrandom(buf) || write_stream(mem, chain.writable, 0, buf).is_err() {
                counters.request(false);
                return Served::Used(0);
            }
            counters.request(true);
            counters.read(n as u64);
            Served::Used(n as u32)
        })
    }
}

impl QueueHandler for RngHandler {
    fn process_queue(&mut self, _position: usize, budget: usize) -> bool {
        self.serve(budget)
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
        let handler =
            RngHandler::new(ctx.mem, q.queue, ctx.interrupt).counting(self.counters.clone());
        self.worker = Some(Worker::spawn(
            &self.spec,
            vec![q.notifier],
            vec![],
            handler,
        )?);
        Ok(())
    }

    fn reset(&mut self) {
        // Dropping the worker stops it, without waiting for it.
        self.worker = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dma::guest_physical_memory;
    use crate::virtio::testing::{Buffer, DriverQueue};
    use crate::virtio::worker::BUDGET;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    struct NoInterrupt;
    impl VirtioInterrupt for NoInterrupt {
        fn notify_queue(&self, _: u16) {}
        fn notify_config(&self) {}
    }

    #[test]
    fn fills_writable_buffers_up_to_the_cap() {
        let ram = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40000)]).unwrap();
        let mut driver = DriverQueue::new(0x1000, 8);
        let counters = Arc::new(IoCounters::default());
        let mut handler = RngHandler::new(
            guest_physical_memory(ram.clone()),
            driver.device_queue(),
            Arc::new(NoInterrupt),
        )
        .counting(counters.clone());
        driver.add_chain(&ram, &[Buffer::writable(0x10000, 64)]);
        driver.add_chain(&ram, &[Buffer::readable(0x11000, 64)]);
        driver.add_chain(&ram, &[Buffer::writable(0x20000, 0x10000)]);
        driver.add_chain(&ram, &[Buffer::writable(0x3ff00, 0x1000)]);
        assert!(!handler.serve(BUDGET));
        assert_eq!(driver.used_idx(&ram), 4);
        assert_eq!(driver.used_elem(&ram, 0).1, 64);
        assert_eq!(driver.used_elem(&ram, 1).1, 0);
        assert_eq!(driver.used_elem(&ram, 2).1, MAX_PER_REQUEST as u32);
        assert_eq!(driver.used_elem(&ram, 3).1, 0);
        let counts = counters.snapshot();
        assert_eq!(counts.requests, 4);
        assert_eq!(counts.read_bytes, 64 + MAX_PER_REQUEST as u64);
        assert_eq!((counts.written_bytes, counts.errors), (0, 1));
        let mut bytes = [0u8; 64];
        ram.read_slice(&mut bytes, GuestAddress(0x10000)).unwrap();
        assert!(bytes.iter().any(|&b| b != bytes[0]));
    }
}

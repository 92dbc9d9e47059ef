//! virtio-console with one port (hvc0 in Linux): output to a host writer, input from an
//! optional host file descriptor (the VMM's stdin when it is a terminal).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use virtio_bindings::virtio_ids::VIRTIO_ID_CONSOLE;

use super::chain::{read_stream, total_len, write_stream};
use super::device::{
    read_config_bytes, ActivateContext, ActivateError, VirtioDevice, VirtioInterrupt, WorkerSpec,
};
use super::queue_server::{QueueServer, Served};
use super::worker::{QueueHandler, Worker, BUDGET};
use crate::dma::DmaMemory;
use crate::io_counters::IoCounters;

pub const QUEUE_SIZE: u16 = 64;
const RECEIVE_QUEUE: usize = 0;
const TRANSMIT_QUEUE: usize = 1;
/// Input kept while the driver has no receive buffers; more is dropped.
const MAX_PENDING_INPUT: usize = 4096;
/// Output taken from one transmit buffer chain at most.
const MAX_OUTPUT_PER_CHAIN: usize = 64 << 10;

/// struct virtio_console_config: cols, rows, max_nr_ports, emerg_wr (little-endian).
const CONFIG_LEN: usize = 12;

pub type ConsoleOutput = Box<dyn Write + Send>;

pub struct Console {
    config: [u8; CONFIG_LEN],
    // Shared with the worker, so a reset (which ends the worker) keeps them.
    output: Arc<Mutex<ConsoleOutput>>,
    input: Option<Arc<File>>,
    spec: WorkerSpec,
    worker: Option<Worker>,
    counters: Arc<IoCounters>,
}

impl Console {
    pub fn new(output: ConsoleOutput, input: Option<File>, spec: WorkerSpec) -> Self {
        let mut config = [0u8; CONFIG_LEN];
        config[4..8].copy_from_slice(&1u32.to_le_bytes());
        Self {
            config,
            output: Arc::new(Mutex::new(output)),
            input: input.map(Arc::new),
            spec,
            worker: None,
            counters: Arc::default(),
        }
    }

    /// Buffer chains served on both queues, bytes the guest sent (`written_bytes`) and was
    /// given (`read_bytes`), and chains that were malformed or unreachable (`errors`).
    pub fn counters(&self) -> Arc<IoCounters> {
        self.counters.clone()
    }
}

pub struct ConsoleHandler {
    mem: DmaMemory,
    receive: Option<QueueServer>,
    transmit: Option<QueueServer>,
    interrupt: Arc<dyn VirtioInterrupt>,
    /// Virtio queue index of each queue the worker watches, by position.
    queue_indices: Vec<usize>,
    output: Arc<Mutex<ConsoleOutput>>,
    input: Option<Arc<File>>,
    pending: VecDeque<u8>,
    buffer: Vec<u8>,
    counters: Arc<IoCounters>,
}

impl ConsoleHandler {
    /// Serves the queues given (the receive queue is position 0 of the worker's queue list
    /// when present, the transmit queue the next), writing output to `output` and taking
    /// input from `input`.
    pub fn new(
        mem: DmaMemory,
        receive: Option<QueueServer>,
        transmit: Option<QueueServer>,
        interrupt: Arc<dyn VirtioInterrupt>,
        output: Arc<Mutex<ConsoleOutput>>,
        input: Option<Arc<File>>,
    ) -> Self {
        let queue_indices = receive
            .iter()
            .map(|_| RECEIVE_QUEUE)
            .chain(transmit.iter().map(|_| TRANSMIT_QUEUE))
            .collect();
        Self {
            mem,
            receive,
            transmit,
            interrupt,
            queue_indices,
            output,
            input,
            pending: VecDeque::new(),
            buffer: vec![0; MAX_OUTPUT_PER_CHAIN],
            counters: Arc::default(),
        }
    }

    /// Counts what this handler serves in `counters`.
    pub fn counting(mut self, counters: Arc<IoCounters>) -> Self {
        self.counters = counters;
        self
    }

    fn transmit(&mut self, budget: usize) -> bool {
        let Some(server) = self.transmit.as_mut() else {
            return false;
        };
        let mut output = self.output.lock().unwrap_or_else(|e| e.into_inner());
        let counters = &self.counters;
        let left = server.serve(&self.mem, self.interrupt.as_ref(), budget, |chain| {
            let mut sent = false;
            if let Some(chain) = chain.ok().filter(|c| c.unreachable.is_none()) {
                let n = (total_len(chain.readable) as usize).min(MAX_OUTPUT_PER_CHAIN);
                let buf = &mut self.buffer[..n];
                if read_stream(&self.mem, chain.readable, 0, buf).is_ok() {
                    let _ = output.write_all(buf);
                    counters.written(n as u64);
                    sent = true;
                }
            }
            counters.request(sent);
            Served::Used(0)
        });
        let _ = output.flush();
        left
    }

    fn deliver_input(&mut self, budget: usize) -> bool {
        let Some(server) = self.receive.as_mut() else {
            return false;
        };
        let pending = &mut self.pending;
        let mem = &self.mem;
        let counters = &self.counters;
        server.serve(mem, self.interrupt.as_ref(), budget, |chain| {
            if pending.is_empty() {
                return Served::Declined;
            }
            let Some(chain) = chain.ok().filter(|c| c.unreachable.is_none()) else {
                counters.request(false);
                return Served::Used(0);
            };
            let n = (total_len(chain.writable) as usize).min(pending.len());
            let bytes: Vec<u8> = pending.iter().take(n).copied().collect();
            if write_stream(mem, chain.writable, 0, &bytes).is_err() {
                counters.request(false);
                return Served::Used(0);
            }
            pending.drain(..n);
            counters.request(true);
            counters.read(n as u64);
            Served::Used(n as u32)
        })
    }
}

impl QueueHandler for ConsoleHandler {
    fn process_queue(&mut self, position: usize, budget: usize) -> bool {
        match self
            .queue_indices
            .get(position)
            .copied()
            .unwrap_or(usize::MAX)
        {
            RECEIVE_QUEUE => self.deliver_input(budget),
            _ => self.transmit(budget),
        }
    }

    fn process_input(&mut self, _index: usize) -> bool {
        let Some(input) = self.input.as_ref() else {
            return false;
        };
        let mut chunk = [0u8; 256];
        match (&**input).read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                let room = MAX_PENDING_INPUT - self.pending.len();
                self.pending.extend(&chunk[..n.min(room)]);
                while self.deliver_input(BUDGET) {}
                true
            }
        }
    }
}

impl VirtioDevice for Console {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_CONSOLE
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        0
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        let (mut receive, mut transmit) = (None, None);
        let (mut receive_fd, mut transmit_fd) = (None, None);
        for q in ctx.queues {
            match usize::from(q.index) {
                RECEIVE_QUEUE => {
                    receive = Some(QueueServer::new(q.queue, q.index));
                    receive_fd = Some(q.notifier);
                }
                TRANSMIT_QUEUE => {
                    transmit = Some(QueueServer::new(q.queue, q.index));
                    transmit_fd = Some(q.notifier);
                }
                _ => {}
            }
        }
        // In the handler's queue positions: receive first.
        let fds = receive_fd.into_iter().chain(transmit_fd).collect();
        let input_fds = self.input.iter().map(|f| f.as_raw_fd()).collect();
        let handler = ConsoleHandler::new(
            ctx.mem,
            receive,
            transmit,
            ctx.interrupt,
            self.output.clone(),
            self.input.clone(),
        )
        .counting(self.counters.clone());
        self.worker = Some(Worker::spawn(&self.spec, fds, input_fds, handler)?);
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
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    struct NoInterrupt;
    impl VirtioInterrupt for NoInterrupt {
        fn notify_queue(&self, _: u16) {}
        fn notify_config(&self) {}
    }

    #[test]
    fn output_goes_to_the_writer_and_input_to_receive_buffers() {
        let ram = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40000)]).unwrap();
        let mut rx = DriverQueue::new(0x1000, 8);
        let mut tx = DriverQueue::new(0x4000, 8);
        let captured = Captured::default();
        let mut handler = ConsoleHandler {
            mem: guest_physical_memory(ram.clone()),
            receive: Some(QueueServer::new(rx.device_queue(), 0)),
            transmit: Some(QueueServer::new(tx.device_queue(), 1)),
            interrupt: Arc::new(NoInterrupt),
            queue_indices: vec![RECEIVE_QUEUE, TRANSMIT_QUEUE],
            output: Arc::new(Mutex::new(Box::new(captured.clone()))),
            input: None,
            pending: VecDeque::new(),
            buffer: vec![0; MAX_OUTPUT_PER_CHAIN],
            counters: Arc::default(),
        };
        ram.write_slice(b"hello ", GuestAddress(0x10000)).unwrap();
        ram.write_slice(b"hvc0\n", GuestAddress(0x10100)).unwrap();
        tx.add_chain(
            &ram,
            &[Buffer::readable(0x10000, 6), Buffer::readable(0x10100, 5)],
        );
        // A writable buffer on the transmit queue is skipped, and a chain out of RAM too.
        tx.add_chain(&ram, &[Buffer::writable(0x10200, 4)]);
        tx.add_chain(&ram, &[Buffer::readable(0x3ff00, 0x1000)]);
        handler.process_queue(1, BUDGET);
        assert_eq!(&captured.0.lock().unwrap()[..], b"hello hvc0\n");
        assert_eq!(tx.used_idx(&ram), 3);

        handler.pending.extend(b"abc");
        handler.process_queue(0, BUDGET);
        assert_eq!(rx.used_idx(&ram), 0);
        rx.add_chain(&ram, &[Buffer::writable(0x20000, 2)]);
        rx.add_chain(&ram, &[Buffer::writable(0x20100, 8)]);
        handler.process_queue(0, BUDGET);
        assert_eq!(rx.used_elem(&ram, 0).1, 2);
        assert_eq!(rx.used_elem(&ram, 1).1, 1);
        assert_eq!(ram.read_obj::<u8>(GuestAddress(0x20100)).unwrap(), b'c');
        let counts = handler.counters.snapshot();
        assert_eq!((counts.requests, counts.errors), (5, 1));
        assert_eq!((counts.written_bytes, counts.read_bytes), (11, 3));
    }
}

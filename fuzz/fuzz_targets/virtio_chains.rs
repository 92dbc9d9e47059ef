//! Descriptor chains, as a hostile driver writes them, served by every virtio device's real
//! queue handler (virtio-blk, virtio-rng, both virtio-console queues, the virtio-iommu
//! requestq), checked against a reference model of the chain reader and of each device:
//! - every chain the driver makes available is answered exactly once, with the used length
//!   the model gives, and an interrupt follows every batch that completed a chain;
//! - guest memory changes exactly where the model's device writes: only device-writable
//!   buffers of well-formed chains, and the used ring;
//! - the disk holds what the model's writes put there; the console's output is the
//!   model's; the IOMMU's domains are the model's.
#![no_main]

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::sync::{Arc, Mutex};

use devices::dma::{guest_physical_memory, DeviceTlb, DmaMemory};
use devices::virtio::block::protocol::{STATUS_IOERR, STATUS_OK, STATUS_UNSUPP};
use devices::virtio::block::{BlockHandler, Disk};
use devices::virtio::console::{ConsoleHandler, ConsoleOutput};
use devices::virtio::iommu::queues::serve_requests;
use devices::virtio::iommu::state::IommuState;
use devices::virtio::iommu::{FaultRateLimit, IommuConfig};
use devices::virtio::queue_server::QueueServer;
use devices::virtio::rng::RngHandler;
use devices::virtio::worker::QueueHandler;
use libfuzzer_sys::fuzz_target;
use nestor_fuzz::chain_model::*;
use nestor_fuzz::driver_queue::{DriverQueue, RawDesc, Rings};
use nestor_fuzz::guest::{poke, ram, reachable, Shadow, RAM_END};
use nestor_fuzz::input::Input;
use nestor_fuzz::interrupts::CountingInterrupt;
use nestor_fuzz::iommu_model::IommuModel;
use vm_memory::GuestMemoryMmap;

const DISK_ID: [u8; 20] = *b"nestor-fuzz-disk\0\0\0\0";
/// The console handler's budget when input arrives.
const INPUT_BUDGET: usize = 32;
const MAX_PENDING_INPUT: usize = 4096;
const ENDPOINTS: [u32; 2] = [0x08, 0x10];

/// The output a console writes, kept for comparison.
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

enum Device {
    Block {
        handler: BlockHandler,
        file: File,
        disk: Vec<u8>,
        read_only: bool,
    },
    Rng(RngHandler),
    Console {
        handler: ConsoleHandler,
        output: Captured,
        expected_output: Vec<u8>,
        input_pipe: File,
        pending: VecDeque<u8>,
    },
    Iommu {
        state: Arc<IommuState>,
        server: QueueServer,
        model: IommuModel,
        mem: DmaMemory,
    },
}

struct Rig {
    ram: GuestMemoryMmap,
    device: Device,
    interrupt: Arc<CountingInterrupt>,
    queues: Vec<(DriverQueue, QueueModel)>,
}

fn memfd(len: u64) -> File {
    // SAFETY: a fresh anonymous file; the descriptor is owned by the File from here on.
    let fd = unsafe { libc::memfd_create(c"nestor-fuzz-disk".as_ptr(), 0) };
    assert!(fd >= 0, "memfd_create");
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(len).expect("disk size");
    file
}

/// A non-blocking pipe: (read end, write end).
fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors, owned by the Files from here on.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2");
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

impl Rig {
    fn new(input: &mut Input) -> Self {
        let ram = ram();
        let kind = input.u8() % 5;
        let max = if matches!(kind, 2 | 3) { 64 } else { 256 };
        let size = (1u16 << input.below(9)).min(max);
        let queue = |base| {
            let rings = Rings::at(base, size);
            (DriverQueue::new(rings), QueueModel::new(rings))
        };
        let mut queues = vec![queue(0x1000)];
        let interrupt = Arc::new(CountingInterrupt::default());
        let mem = guest_physical_memory(ram.clone());
        let device = match kind {
            0 | 1 => {
                let sectors = input.below(9) as u64;
                let file = memfd(sectors * 512);
                let disk = Disk {
                    file: file.try_clone().unwrap(),
                    size: sectors * 512,
                    read_only: kind == 1,
                    id: DISK_ID,
                };
                let handler = BlockHandler::new(
                    mem,
                    Arc::new(disk),
                    queues[0].0.device_queue(),
                    0,
                    interrupt.clone(),
                );
                Device::Block {
                    handler,
                    file,
                    disk: vec![0; sectors as usize * 512],
                    read_only: kind == 1,
                }
            }
            2 => Device::Rng(RngHandler::new(
                mem,
                queues[0].0.device_queue(),
                interrupt.clone(),
            )),
            3 => {
                queues.push(queue(0x4000));
                let output = Captured::default();
                let (read_end, write_end) = pipe();
                let boxed: ConsoleOutput = Box::new(output.clone());
                let handler = ConsoleHandler::new(
                    mem,
                    Some(QueueServer::new(queues[0].0.device_queue(), 0)),
                    Some(QueueServer::new(queues[1].0.device_queue(), 1)),
                    interrupt.clone(),
                    Arc::new(Mutex::new(boxed)),
                    Some(Arc::new(read_end)),
                );
                Device::Console {
                    handler,
                    output,
                    expected_output: Vec::new(),
                    input_pipe: write_end,
                    pending: VecDeque::new(),
                }
            }
            _ => {
                let config = IommuConfig::default();
                let rate = FaultRateLimit {
                    burst: u32::MAX,
                    per_second: 0,
                    max_pending: 4,
                };
                let state = Arc::new(IommuState::new(config.clone(), rate).unwrap());
                for e in ENDPOINTS {
                    state.add_endpoint(e, DeviceTlb::new());
                }
                Device::Iommu {
                    state,
                    server: QueueServer::new(queues[0].0.device_queue(), 0),
                    model: IommuModel::new(config, u64::MAX, &ENDPOINTS, 4),
                    mem,
                }
            }
        };
        Self {
            ram,
            device,
            interrupt,
            queues,
        }
    }

    fn pick_queue(&self, input: &mut Input) -> usize {
        input.below(self.queues.len())
    }

    fn write_desc(&mut self, input: &mut Input) {
        let q = self.pick_queue(input);
        let index = input.u8() as u16;
        let flags = input.u8();
        let next = if flags & 0x80 != 0 {
            input.u16()
        } else {
            u16::from(input.u8())
        };
        let addr = if flags & 0x40 != 0 {
            input.u64()
        } else {
            0x8000 + u64::from(input.u16()) * 4
        };
        let len = match flags & 0x30 {
            0x30 => input.u32(),
            0x10 => u32::from(input.u8()),
            _ => u32::from(input.u16()),
        };
        let desc = RawDesc {
            addr,
            len,
            flags: u16::from(flags & 7),
            next,
        };
        self.queues[q].0.write_desc(&self.ram, index, desc);
    }

    fn write_data(&mut self, input: &mut Input) {
        let addr = u64::from(input.u16()) * 4;
        let data = input.bytes(64);
        if reachable(addr, data.len() as u64) && addr + (data.len() as u64) <= RAM_END {
            poke(&self.ram, addr, &data);
        }
    }

    /// Serves `queue` with `budget` on the real device and the model, and compares.
    fn serve(&mut self, queue: usize, budget: usize) {
        let mut shadow = Shadow::of(&self.ram);
        let interrupts = self.interrupt.queue_count();
        let model = &mut self.queues[queue].1;
        let (expected, left, random): (ServeOutcome, bool, Vec<(u64, usize)>) =
            match &mut self.device {
                Device::Block {
                    handler,
                    disk,
                    read_only,
                    ..
                } => {
                    let expected = model.serve(&mut shadow, budget, |shadow, chain| {
                        block_answer(shadow, chain, disk, *read_only)
                    });
                    (expected, handler.serve(budget), Vec::new())
                }
                Device::Rng(handler) => {
                    // Random bytes cannot be predicted: one chain at a time, and the model takes
                    // over what the device wrote where it may write.
                    let mut random = Vec::new();
                    let expected = model.serve(&mut shadow, 1, |_, chain| {
                        match chain.filter(|c| !c.unreachable) {
                            None => ModelServed::Used(0),
                            Some(c) => {
                                let n = (c.writable_len() as usize).min(4096);
                                let mut left = n;
                                for s in &c.writable {
                                    let take = left.min(s.len as usize);
                                    if take > 0 {
                                        random.push((s.addr, take));
                                    }
                                    left -= take;
                                }
                                ModelServed::Used(n as u32)
                            }
                        }
                    });
                    (expected, handler.serve(1), random)
                }
                Device::Console {
                    handler,
                    expected_output,
                    pending,
                    ..
                } => {
                    let expected = if queue == 0 {
                        model.serve(&mut shadow, budget, |shadow, chain| {
                            receive_answer(shadow, chain, pending)
                        })
                    } else {
                        model.serve(&mut shadow, budget, |shadow, chain| {
                            if let Some(c) = chain.filter(|c| !c.unreachable) {
                                let n = (c.readable_len() as usize).min(64 << 10);
                                expected_output.extend(read_stream(shadow, &c.readable, 0, n));
                            }
                            ModelServed::Used(0)
                        })
                    };
                    (expected, handler.process_queue(queue, budget), Vec::new())
                }
                Device::Iommu {
                    state,
                    server,
                    model: iommu,
                    mem,
                } => {
                    let expected = model.serve(&mut shadow, budget, |shadow, chain| {
                        iommu_answer(shadow, chain, iommu)
                    });
                    let left = serve_requests(
                        state,
                        u64::MAX,
                        mem,
                        server,
                        self.interrupt.as_ref(),
                        budget,
                    );
                    (expected, left, Vec::new())
                }
            };
        let actual = Shadow::of(&self.ram);
        for (addr, n) in random {
            shadow.write(addr, &actual.bytes[addr as usize..addr as usize + n]);
        }
        shadow.assert_matches(&actual, &[], "served chains");
        assert_eq!(
            left, expected.left,
            "chains left (model served {:?})",
            expected.served
        );
        let raised = self.interrupt.queue_count() - interrupts;
        assert_eq!(raised, usize::from(expected.completed > 0), "interrupts");
        self.check_device();
    }

    fn check_device(&self) {
        match &self.device {
            Device::Block { file, disk, .. } => {
                let mut actual = vec![0u8; disk.len()];
                std::os::unix::fs::FileExt::read_exact_at(file, &mut actual, 0).unwrap();
                assert!(actual == *disk, "disk contents differ from the model's");
            }
            Device::Console {
                output,
                expected_output,
                ..
            } => {
                assert!(
                    *output.0.lock().unwrap() == *expected_output,
                    "console output differs"
                );
            }
            Device::Iommu { state, model, .. } => {
                let domains = state.domains();
                for e in ENDPOINTS {
                    assert_eq!(domains.domain_of(e), model.domain_of(e), "domain of {e:#x}");
                }
                assert_eq!(domains.total_mappings(), model.total_mappings(), "mappings");
            }
            Device::Rng(_) => {}
        }
    }

    /// Console input arrives: the handler takes it and fills receive buffers.
    fn console_input(&mut self, input: &mut Input) {
        let bytes = input.bytes(200);
        let Device::Console {
            handler,
            input_pipe,
            pending,
            ..
        } = &mut self.device
        else {
            return;
        };
        if bytes.is_empty() {
            return;
        }
        input_pipe.write_all(&bytes).expect("pipe has room");
        let room = MAX_PENDING_INPUT - pending.len();
        pending.extend(&bytes[..bytes.len().min(room)]);
        let mut shadow = Shadow::of(&self.ram);
        let interrupts = self.interrupt.queue_count();
        let mut notifying_calls = 0;
        loop {
            let outcome = self.queues[0]
                .1
                .serve(&mut shadow, INPUT_BUDGET, |shadow, chain| {
                    receive_answer(shadow, chain, pending)
                });
            notifying_calls += usize::from(outcome.completed > 0);
            if !outcome.left {
                break;
            }
        }
        assert!(handler.process_input(0), "console input not taken");
        shadow.assert_matches(&Shadow::of(&self.ram), &[], "console input");
        let raised = self.interrupt.queue_count() - interrupts;
        assert_eq!(raised, notifying_calls, "interrupts after console input");
    }
}

fn receive_answer(
    shadow: &mut Shadow,
    chain: Option<ModelChain>,
    pending: &mut VecDeque<u8>,
) -> ModelServed {
    if pending.is_empty() {
        return ModelServed::Declined;
    }
    let Some(c) = chain.filter(|c| !c.unreachable) else {
        return ModelServed::Used(0);
    };
    let n = (c.writable_len() as usize).min(pending.len());
    let bytes: Vec<u8> = pending.drain(..n).collect();
    write_stream(shadow, &c.writable, 0, &bytes);
    ModelServed::Used(n as u32)
}

/// virtio-blk (virtio 1.x, 5.2.6): header and data out readable, data in and the status
/// byte (the last writable byte) writable.
fn block_answer(
    shadow: &mut Shadow,
    chain: Option<ModelChain>,
    disk: &mut [u8],
    read_only: bool,
) -> ModelServed {
    let Some(c) = chain else {
        return ModelServed::Used(0);
    };
    let Some(last) = c.writable.last().copied().filter(|s| s.len > 0) else {
        return ModelServed::Used(0);
    };
    let Some(status_at) = last.addr.checked_add(u64::from(last.len) - 1) else {
        return ModelServed::Used(0);
    };
    let data_in_len = c.writable_len() - 1;
    let (status, written) = if c.unreachable || c.readable_len() < 16 {
        (STATUS_IOERR, 0)
    } else {
        let header = read_stream(shadow, &c.readable, 0, 16);
        let kind = u32::from_le_bytes(header[0..4].try_into().unwrap());
        let sector = u64::from_le_bytes(header[8..16].try_into().unwrap());
        let range = |len: u32| {
            let offset = sector.checked_mul(512)?;
            let end = offset.checked_add(u64::from(len))?;
            (len % 512 == 0 && end <= disk.len() as u64).then_some(offset as usize)
        };
        let data_out_len = c.readable_len() - 16;
        match kind {
            0 => match range(data_in_len) {
                Some(at) => {
                    write_stream(shadow, &c.writable, 0, &disk[at..at + data_in_len as usize]);
                    (STATUS_OK, data_in_len)
                }
                None => (STATUS_IOERR, 0),
            },
            1 => match range(data_out_len).filter(|_| !read_only) {
                Some(at) => {
                    let data = read_stream(shadow, &c.readable, 16, data_out_len as usize);
                    disk[at..at + data.len()].copy_from_slice(&data);
                    (STATUS_OK, 0)
                }
                None => (STATUS_IOERR, 0),
            },
            4 => (STATUS_OK, 0),
            8 => {
                let n = data_in_len.min(20);
                write_stream(shadow, &c.writable, 0, &DISK_ID[..n as usize]);
                (STATUS_OK, n)
            }
            _ => (STATUS_UNSUPP, 0),
        }
    };
    if !reachable(status_at, 1) {
        return ModelServed::Used(0);
    }
    shadow.write(status_at, &[status]);
    ModelServed::Used(written + 1)
}

fn iommu_answer(
    shadow: &mut Shadow,
    chain: Option<ModelChain>,
    model: &mut IommuModel,
) -> ModelServed {
    let Some(c) = chain.filter(|c| !c.unreachable) else {
        return ModelServed::Used(0);
    };
    let request = read_stream(shadow, &c.readable, 0, c.readable_len().min(72) as usize);
    let writable_len = c.writable_len();
    let Some(answer) = model.execute(&request, writable_len) else {
        return ModelServed::Used(0);
    };
    if let Some(p) = answer.properties {
        write_stream(shadow, &c.writable, 0, &p);
    }
    write_stream(
        shadow,
        &c.writable,
        u64::from(writable_len) - 4,
        &[answer.status, 0, 0, 0],
    );
    ModelServed::Used(writable_len)
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mut rig = Rig::new(&mut input);
    while !input.is_empty() {
        match input.u8() % 8 {
            0..=2 => rig.write_desc(&mut input),
            3 => rig.write_data(&mut input),
            4 => {
                let q = rig.pick_queue(&mut input);
                let head = if input.bool() {
                    input.u16()
                } else {
                    u16::from(input.u8())
                };
                let ram = rig.ram.clone();
                rig.queues[q].0.publish(&ram, head);
            }
            5 => {
                let q = rig.pick_queue(&mut input);
                let budget = [1, 2, 32, usize::MAX][input.below(4)];
                rig.serve(q, budget);
            }
            6 => {
                let q = rig.pick_queue(&mut input);
                let idx = input.u16();
                let ram = rig.ram.clone();
                rig.queues[q].0.write_avail_idx(&ram, idx);
            }
            _ => rig.console_input(&mut input),
        }
    }
    for q in 0..rig.queues.len() {
        rig.serve(q, usize::MAX);
    }
});

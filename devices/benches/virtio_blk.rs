//! virtio-blk request throughput through the device model, no guest: 4 KiB IN and OUT
//! requests as three-descriptor chains (header, data, status) on a split queue in guest
//! memory, run by the worker's handler against a 16 MiB temporary file. Each iteration
//! posts a batch of 32 requests and drains them; throughput is in requests per second.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use devices::dma::dma_memory;
use devices::virtio::block::protocol::{REQUEST_IN, REQUEST_OUT};
use devices::virtio::block::{BlockHandler, Disk};
use devices::virtio::testing::{Buffer, DriverQueue};
use devices::virtio::VirtioInterrupt;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::tempfile::TempFile;

const BATCH: u16 = 32;
const REQUEST_BYTES: u32 = 4096;
const DISK_BYTES: u64 = 16 << 20;
const HEADERS: u64 = 0x10_0000;
const DATA: u64 = 0x20_0000;

struct NoInterrupt;

impl VirtioInterrupt for NoInterrupt {
    fn notify_queue(&self, _: u16) {}
    fn notify_config(&self) {}
}

struct Rig {
    ram: GuestMemoryMmap,
    driver: DriverQueue,
    handler: BlockHandler,
    next_sector: u64,
    _file: TempFile,
}

impl Rig {
    fn new() -> Self {
        let ram = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
        let file = TempFile::new().unwrap();
        file.as_file().set_len(DISK_BYTES).unwrap();
        let disk = Arc::new(Disk {
            file: file.as_file().try_clone().unwrap(),
            size: DISK_BYTES,
            read_only: false,
            id: [0; 20],
        });
        let driver = DriverQueue::new(0x1000, 256);
        let handler = BlockHandler::new(
            dma_memory(ram.clone(), None),
            disk,
            driver.device_queue(),
            0,
            Arc::new(NoInterrupt),
        );
        Self {
            ram,
            driver,
            handler,
            next_sector: 0,
            _file: file,
        }
    }

    fn batch(&mut self, request_type: u32) {
        self.driver.recycle();
        let sectors = u64::from(REQUEST_BYTES / 512);
        for i in 0..u64::from(BATCH) {
            let header = HEADERS + i * 32;
            let mut raw = [0u8; 16];
            raw[..4].copy_from_slice(&request_type.to_le_bytes());
            raw[8..].copy_from_slice(&self.next_sector.to_le_bytes());
            self.ram.write_slice(&raw, GuestAddress(header)).unwrap();
            self.next_sector = (self.next_sector + sectors) % (DISK_BYTES / 512);
            let data = DATA + i * u64::from(REQUEST_BYTES);
            let data = if request_type == REQUEST_IN {
                Buffer::writable(data, REQUEST_BYTES)
            } else {
                Buffer::readable(data, REQUEST_BYTES)
            };
            self.driver.add_chain(
                &self.ram,
                &[
                    Buffer::readable(header, 16),
                    data,
                    Buffer::writable(header + 16, 1),
                ],
            );
        }
        assert_eq!(self.handler.drain(), usize::from(BATCH));
    }
}

fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("virtio_blk_4k");
    group.throughput(Throughput::Elements(u64::from(BATCH)));
    for (name, request_type) in [("read", REQUEST_IN), ("write", REQUEST_OUT)] {
        let mut rig = Rig::new();
        group.bench_function(name, |b| b.iter(|| rig.batch(request_type)));
    }
    group.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);

//! virtio-blk request throughput through the device model, no guest: 4 KiB IN and OUT
//! requests as three-descriptor chains (header, data, status) on a split queue in guest
//! memory, run by the worker's handler against a 16 MiB temporary file. Each iteration
//! posts a batch of 32 requests and drains them; throughput is in requests per second.
//!
//! Each is run untranslated and translated: the device behind the virtio-iommu, its rings,
//! headers and buffers mapped as 4 KiB pages (IOVA = GPA) in a domain that also holds
//! 50,000 other mappings.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use devices::dma::{guest_physical_memory, DmaMemory};
use devices::virtio::block::protocol::{REQUEST_IN, REQUEST_OUT};
use devices::virtio::block::{BlockHandler, Disk};
use devices::virtio::iommu::config::IommuConfig;
use devices::virtio::iommu::protocol::{Map, MAP_F_READ, MAP_F_WRITE};
use devices::virtio::iommu::Iommu;
use devices::virtio::testing::{Buffer, DriverQueue};
use devices::virtio::VirtioInterrupt;
use devices::virtio::WorkerSpec;
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

const RAM: u64 = 4 << 20;
const DOMAIN: u32 = 1;
const ENDPOINT: u32 = 8;
const OTHER_MAPPINGS: u64 = 50_000;

struct Rig {
    ram: GuestMemoryMmap,
    driver: DriverQueue,
    handler: BlockHandler,
    next_sector: u64,
    _file: TempFile,
    _iommu: Option<Iommu>,
}

/// The device behind a virtio-iommu whose domain maps all of RAM page by page.
fn translated(ram: &GuestMemoryMmap) -> (Iommu, DmaMemory) {
    let iommu = Iommu::new(
        IommuConfig::default(),
        WorkerSpec::unconfined("bench-iommu"),
    )
    .unwrap();
    let device = iommu.add_endpoint(ENDPOINT);
    {
        let mut domains = iommu.state().domains_mut();
        domains.attach(DOMAIN, ENDPOINT, false).unwrap();
        let page = |iova: u64, gpa: u64| Map {
            domain: DOMAIN,
            virt_start: iova,
            virt_end: iova + 0xfff,
            phys_start: gpa,
            flags: MAP_F_READ | MAP_F_WRITE,
        };
        for gpa in (0..RAM).step_by(4096) {
            domains.map(&page(gpa, gpa)).unwrap();
        }
        for i in 0..OTHER_MAPPINGS {
            domains.map(&page((1 << 40) + i * 0x10000, 0)).unwrap();
        }
    }
    let mem = device.memory(ram.clone());
    (iommu, mem)
}

impl Rig {
    fn new(translate: bool) -> Self {
        let ram = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
        let file = TempFile::new().unwrap();
        file.as_file().set_len(DISK_BYTES).unwrap();
        let disk = Arc::new(Disk {
            file: file.as_file().try_clone().unwrap(),
            size: DISK_BYTES,
            read_only: false,
            id: [0; 20],
        });
        let driver = DriverQueue::new(0x1000, 256);
        let (iommu, mem) = if translate {
            let (iommu, mem) = translated(&ram);
            (Some(iommu), mem)
        } else {
            (None, guest_physical_memory(ram.clone()))
        };
        let handler = BlockHandler::new(mem, disk, driver.device_queue(), 0, Arc::new(NoInterrupt));
        Self {
            ram,
            driver,
            handler,
            next_sector: 0,
            _file: file,
            _iommu: iommu,
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
            self.ram
                .write_obj(0xffu8, GuestAddress(header + 16))
                .unwrap();
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
        let before = self.driver.used_idx(&self.ram);
        self.handler.drain();
        assert_eq!(self.driver.used_idx(&self.ram), before.wrapping_add(BATCH));
        // Every request succeeded: a translated run that failed would be faster, not valid.
        for i in 0..u64::from(BATCH) {
            let status: u8 = self
                .ram
                .read_obj(GuestAddress(HEADERS + i * 32 + 16))
                .unwrap();
            assert_eq!(status, 0);
        }
    }
}

fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("virtio_blk_4k");
    group.throughput(Throughput::Elements(u64::from(BATCH)));
    for (name, request_type) in [("read", REQUEST_IN), ("write", REQUEST_OUT)] {
        for (mode, translate) in [("untranslated", false), ("translated", true)] {
            let mut rig = Rig::new(translate);
            group.bench_function(format!("{name}/{mode}"), |b| {
                b.iter(|| rig.batch(request_type))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);

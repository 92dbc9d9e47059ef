//! virtio-iommu MAP and UNMAP throughput, driving the device model directly: each request is
//! a descriptor chain in guest memory on a split requestq, served by `process_requests`.
//!
//! Shapes: one 4 KiB range, one 2 MiB range, and 256 adjacent 4 KiB ranges (256 MAPs, one
//! UNMAP that removes them all), each with 10 and with 50,000 other mappings in the domain.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use devices::dma::{guest_physical_memory, DmaMemory};
use devices::virtio::iommu::config::IommuConfig;
use devices::virtio::iommu::protocol::{features, request_type, Map, MAP_F_READ, MAP_F_WRITE};
use devices::virtio::iommu::queues::serve_requests;
use devices::virtio::iommu::state::IommuState;
use devices::virtio::iommu::{FaultRateLimit, OFFERED_FEATURES};
use devices::virtio::queue_server::QueueServer;
use devices::virtio::VirtioInterrupt;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const QUEUE_SIZE: u16 = 256;
const DESC_TABLE: u64 = 0x0;
const AVAIL_RING: u64 = 0x1000;
const USED_RING: u64 = 0x2000;
const REQUEST_AT: u64 = 0x10000;
const STATUS_AT: u64 = 0x11000;
const DOMAIN: u32 = 1;
const ENDPOINT: u32 = 8;
/// Pre-existing mappings are 4 KiB each, one every 4 MiB; benchmarked ranges go in the free
/// 2 MiB-aligned window half-way through the table.
const STRIDE: u64 = 4 << 20;
const NEGOTIATED: u64 = OFFERED_FEATURES | features::VERSION_1;

/// The driver side of one requestq: one two-descriptor chain, re-posted for every request.
struct Driver {
    mem: GuestMemoryMmap,
    dma: DmaMemory,
    server: QueueServer,
    avail_idx: u16,
}

struct NoInterrupt;

impl VirtioInterrupt for NoInterrupt {
    fn notify_queue(&self, _: u16) {}
    fn notify_config(&self) {}
}

impl Driver {
    fn new() -> Self {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let mut queue = Queue::new(QUEUE_SIZE).unwrap();
        queue.set_size(QUEUE_SIZE);
        queue.set_desc_table_address(Some(DESC_TABLE as u32), Some(0));
        queue.set_avail_ring_address(Some(AVAIL_RING as u32), Some(0));
        queue.set_used_ring_address(Some(USED_RING as u32), Some(0));
        queue.set_ready(true);
        // Descriptor 0: the request (readable, NEXT=1); descriptor 1: the tail (WRITE=2).
        write_desc(&mem, 0, REQUEST_AT, 36, 1, 1);
        write_desc(&mem, 1, STATUS_AT, 4, 2, 0);
        Self {
            dma: guest_physical_memory(mem.clone()),
            mem,
            server: QueueServer::new(queue, 0),
            avail_idx: 0,
        }
    }

    fn send(&mut self, shared: &IommuState, request: &[u8]) -> u8 {
        self.mem
            .write_slice(request, GuestAddress(REQUEST_AT))
            .unwrap();
        self.mem
            .write_obj(request.len() as u32, GuestAddress(DESC_TABLE + 8))
            .unwrap();
        let slot = u64::from(self.avail_idx % QUEUE_SIZE);
        self.mem
            .write_obj(0u16, GuestAddress(AVAIL_RING + 4 + 2 * slot))
            .unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.mem
            .write_obj(self.avail_idx, GuestAddress(AVAIL_RING + 2))
            .unwrap();
        serve_requests(
            shared,
            NEGOTIATED,
            &self.dma,
            &mut self.server,
            &NoInterrupt,
            usize::MAX,
        );
        self.mem.read_obj(GuestAddress(STATUS_AT)).unwrap()
    }
}

fn write_desc(mem: &GuestMemoryMmap, index: u64, addr: u64, len: u32, flags: u16, next: u16) {
    let at = DESC_TABLE + 16 * index;
    mem.write_obj(addr, GuestAddress(at)).unwrap();
    mem.write_obj(len, GuestAddress(at + 8)).unwrap();
    mem.write_obj(flags, GuestAddress(at + 12)).unwrap();
    mem.write_obj(next, GuestAddress(at + 14)).unwrap();
}

fn map_request(start: u64, len: u64) -> Vec<u8> {
    let mut b = vec![request_type::MAP, 0, 0, 0];
    b.extend_from_slice(&DOMAIN.to_le_bytes());
    b.extend_from_slice(&start.to_le_bytes());
    b.extend_from_slice(&(start + len - 1).to_le_bytes());
    b.extend_from_slice(&0x40_0000u64.to_le_bytes());
    b.extend_from_slice(&(MAP_F_READ | MAP_F_WRITE).to_le_bytes());
    b
}

fn unmap_request(start: u64, len: u64) -> Vec<u8> {
    let mut b = vec![request_type::UNMAP, 0, 0, 0];
    b.extend_from_slice(&DOMAIN.to_le_bytes());
    b.extend_from_slice(&start.to_le_bytes());
    b.extend_from_slice(&(start + len - 1).to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b
}

/// A domain holding `table` 4 KiB mappings, and the free window benchmarks use.
fn setup(table: u64) -> (IommuState, u64) {
    let shared = IommuState::new(IommuConfig::default(), FaultRateLimit::default()).unwrap();
    let mut domains = shared.domains_mut();
    domains.add_endpoint(ENDPOINT);
    domains.attach(DOMAIN, ENDPOINT, false).unwrap();
    for i in 0..table {
        domains
            .map(&Map {
                domain: DOMAIN,
                virt_start: i * STRIDE,
                virt_end: i * STRIDE + 0xfff,
                phys_start: 0x40_0000,
                flags: MAP_F_READ | MAP_F_WRITE,
            })
            .unwrap();
    }
    drop(domains);
    (shared, (table / 2) * STRIDE + (2 << 20))
}

/// A shape: how many MAPs of how many bytes, then one UNMAP over all of them.
struct Shape {
    name: &'static str,
    maps: u64,
    bytes: u64,
}

const SHAPES: [Shape; 3] = [
    Shape {
        name: "4KiB",
        maps: 1,
        bytes: 4 << 10,
    },
    Shape {
        name: "2MiB",
        maps: 1,
        bytes: 2 << 20,
    },
    Shape {
        name: "256x4KiB",
        maps: 256,
        bytes: 4 << 10,
    },
];

/// Times only the MAP requests (or only the UNMAP) of each round; the other half of the
/// round runs untimed so the table size stays fixed.
fn round(
    driver: &mut Driver,
    shared: &IommuState,
    base: u64,
    shape: &Shape,
    time_maps: bool,
) -> Duration {
    let started = Instant::now();
    for k in 0..shape.maps {
        let status = driver.send(shared, &map_request(base + k * shape.bytes, shape.bytes));
        assert_eq!(status, 0);
    }
    let mapped = started.elapsed();
    let started = Instant::now();
    let status = driver.send(shared, &unmap_request(base, shape.maps * shape.bytes));
    assert_eq!(status, 0);
    if time_maps {
        mapped
    } else {
        started.elapsed()
    }
}

fn bench(c: &mut Criterion) {
    for table in [10u64, 50_000] {
        let (shared, base) = setup(table);
        let mut driver = Driver::new();
        let mut group = c.benchmark_group(format!("viommu/table={table}"));
        for shape in &SHAPES {
            for (op, time_maps) in [("map", true), ("unmap", false)] {
                let id = BenchmarkId::new(op, shape.name);
                group.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        (0..iters)
                            .map(|_| round(&mut driver, &shared, base, shape, time_maps))
                            .sum()
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = bench
}
criterion_main!(benches);

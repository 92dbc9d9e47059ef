//! What translation adds to one DMA access: a 4 KiB copy and an 8-byte read through a device's
//! `DmaMemory`, untranslated and through a virtio-iommu domain holding 50,000 4 KiB mappings.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use devices::dma::dma_memory;
use devices::virtio::iommu::config::IommuConfig;
use devices::virtio::iommu::protocol::{Map, MAP_F_READ, MAP_F_WRITE};
use devices::virtio::iommu::Iommu;
use devices::virtio::WorkerSpec;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const DOMAIN: u32 = 1;
const ENDPOINT: u32 = 8;
const OTHER_MAPPINGS: u64 = 50_000;
const RAM: usize = 16 << 20;
const BUFFER: u64 = 0x10_0000;

fn accesses(c: &mut Criterion) {
    let ram = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM)]).unwrap();
    let iommu = Iommu::new(
        IommuConfig::default(),
        WorkerSpec::unconfined("bench-iommu"),
    )
    .unwrap();
    let endpoint = iommu.add_endpoint(ENDPOINT);
    {
        let mut domains = iommu.shared().domains_mut();
        domains.attach(DOMAIN, ENDPOINT, false).unwrap();
        let map = |iova: u64, gpa: u64| Map {
            domain: DOMAIN,
            virt_start: iova,
            virt_end: iova + 0xfff,
            phys_start: gpa,
            flags: MAP_F_READ | MAP_F_WRITE,
        };
        for i in 0..OTHER_MAPPINGS {
            domains.map(&map((1 << 40) + i * 0x10000, 0)).unwrap();
        }
        domains.map(&map(BUFFER, BUFFER)).unwrap();
    }
    let untranslated = dma_memory(ram.clone(), None);
    let translated = dma_memory(ram.clone(), Some(endpoint));
    let page = vec![0x5au8; 4096];
    let mut group = c.benchmark_group("dma_access");
    for (name, mem) in [("untranslated", &untranslated), ("translated", &translated)] {
        group.bench_function(format!("{name}/write_4k"), |b| {
            b.iter(|| mem.write_slice(&page, GuestAddress(BUFFER)).unwrap())
        });
        group.bench_function(format!("{name}/read_u64"), |b| {
            b.iter(|| mem.read_obj::<u64>(GuestAddress(BUFFER + 8)).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, accesses);
criterion_main!(benches);

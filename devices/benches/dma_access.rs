//! What translation adds to one DMA access, and what a huge UNMAP elsewhere does to it.
//!
//! - `dma_access`: an 8-byte read and a 4 KiB write through a device's `DmaMemory`,
//!   untranslated and through a virtio-iommu domain holding 50,000 4 KiB mappings (IOTLB
//!   warm: the steady state of a device reusing its buffers), and the 8-byte read with the
//!   IOTLB invalidated first (every access misses and walks the domain).
//! - `dma_during_unmap`: the cold 8-byte read on one endpoint, alone and while another
//!   thread keeps mapping 262,144 4 KiB pages in another domain and removing them with one
//!   UNMAP request through the request path.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use devices::dma::{guest_physical_memory, DeviceDma, DmaMemory};
use devices::virtio::iommu::config::IommuConfig;
use devices::virtio::iommu::protocol::{features, request_type, Map, MAP_F_READ, MAP_F_WRITE};
use devices::virtio::iommu::request::execute;
use devices::virtio::iommu::state::IommuState;
use devices::virtio::iommu::{Iommu, Limits, OFFERED_FEATURES};
use devices::virtio::WorkerSpec;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const DOMAIN: u32 = 1;
const ENDPOINT: u32 = 8;
const OTHER_DOMAIN: u32 = 2;
const OTHER_ENDPOINT: u32 = 16;
const OTHER_MAPPINGS: u64 = 50_000;
const HUGE_UNMAP: u64 = 262_144;
const RAM: usize = 16 << 20;
const BUFFER: u64 = 0x10_0000;

fn map(domain: u32, iova: u64, gpa: u64) -> Map {
    Map {
        domain,
        virt_start: iova,
        virt_end: iova + 0xfff,
        phys_start: gpa,
        flags: MAP_F_READ | MAP_F_WRITE,
    }
}

struct Setup {
    iommu: Iommu,
    ram: GuestMemoryMmap,
    device: DeviceDma,
}

fn setup() -> Setup {
    let ram = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM)]).unwrap();
    let config = IommuConfig {
        limits: Limits {
            max_mappings_per_domain: 1 << 20,
            max_total_mappings: 1 << 20,
            ..Limits::default()
        },
        ..IommuConfig::default()
    };
    let iommu = Iommu::new(config, WorkerSpec::unconfined("bench-iommu")).unwrap();
    let device = iommu.add_endpoint(ENDPOINT);
    let _other = iommu.add_endpoint(OTHER_ENDPOINT);
    {
        let mut domains = iommu.state().domains_mut();
        domains.attach(DOMAIN, ENDPOINT, false).unwrap();
        domains.attach(OTHER_DOMAIN, OTHER_ENDPOINT, false).unwrap();
        for i in 0..OTHER_MAPPINGS {
            domains
                .map(&map(DOMAIN, (1 << 40) + i * 0x10000, 0))
                .unwrap();
        }
        domains.map(&map(DOMAIN, BUFFER, BUFFER)).unwrap();
    }
    Setup { iommu, ram, device }
}

fn accesses(c: &mut Criterion) {
    let s = setup();
    let untranslated = guest_physical_memory(s.ram.clone());
    let translated = s.device.memory(s.ram.clone());
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
    group.bench_function("translated/read_u64_iotlb_miss", |b| {
        b.iter(|| cold_read(&s.device, &translated))
    });
    group.finish();
}

fn cold_read(device: &DeviceDma, mem: &DmaMemory) -> u64 {
    device.tlb().invalidate_all();
    mem.read_obj::<u64>(GuestAddress(BUFFER + 8)).unwrap()
}

/// Maps `HUGE_UNMAP` pages in the other domain, then removes them with one UNMAP request.
fn churn(state: &IommuState) {
    // As MAP requests do: the outer lock only for reading, the domain's own for writing.
    for i in 0..HUGE_UNMAP {
        state.domains().map(&map(OTHER_DOMAIN, i << 12, 0)).unwrap();
    }
    let mut unmap = vec![request_type::UNMAP, 0, 0, 0];
    unmap.extend_from_slice(&OTHER_DOMAIN.to_le_bytes());
    unmap.extend_from_slice(&0u64.to_le_bytes());
    unmap.extend_from_slice(&((HUGE_UNMAP << 12) - 1).to_le_bytes());
    unmap.extend_from_slice(&0u32.to_le_bytes());
    execute(state, OFFERED_FEATURES | features::VERSION_1, &unmap, 4);
}

fn during_unmap(c: &mut Criterion) {
    let s = setup();
    let mem = s.device.memory(s.ram.clone());
    let mut group = c.benchmark_group("dma_during_unmap");
    group.bench_function("idle", |b| b.iter(|| cold_read(&s.device, &mem)));
    let running = Arc::new(AtomicBool::new(true));
    let state = s.iommu.state().clone();
    let keep_going = running.clone();
    let unmapper = std::thread::spawn(move || {
        let mut rounds = 0u64;
        while keep_going.load(Ordering::Relaxed) {
            churn(&state);
            rounds += 1;
        }
        rounds
    });
    group.bench_function("while_unmapping_256k", |b| {
        b.iter(|| cold_read(&s.device, &mem))
    });
    running.store(false, Ordering::Relaxed);
    let rounds = unmapper.join().unwrap();
    eprintln!("dma_during_unmap: {rounds} rounds of 262,144 MAPs and one UNMAP ran meanwhile");
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = accesses, during_unmap
}
criterion_main!(benches);

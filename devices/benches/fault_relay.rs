//! A page request's round trip through the fault relay, with the software SMMUv3 as the
//! host IOMMU: a device's PCIe page request enters the model, the relay thread wakes and
//! hands it to the guest side, a guest thread answers it (PAGE_RESP's path: the group's
//! cookie, the model's PRI_RESP), and the device is told (the model's device notifier).
//!
//! - `round_trip`: one request at a time, from the device's request to its response;
//! - `sustained`: 64 requests in flight, as requests per second;
//! - `engine_round_trip`: from the DMA engine's miss to its resumed access (engine.rs);
//! - `engine_sustained`: the engine's 64 requests in flight (eight groups at eight PASIDs).
//!
//! Before criterion's figures, the breakdowns of 2,000 single round trips (medians): relay
//! wake-up (request to the guest side being called), delivery (to the guest thread),
//! guest to response (the answer through the cookie to the device); and the engine's, with
//! the guest's handling and the engine's own wake-up apart.

#[path = "fault_relay/engine.rs"]
mod engine;

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use devices::fault_relay::{FaultRelay, FaultRelayState, GroupKey, GroupLimits, GuestFaultSink};
use devices::host_iommu::nested::{NestedEvent, PageRequest};
use devices::host_iommu::smmuv3::commands::DeviceEffect;
use devices::host_iommu::smmuv3::wire::PriEntry;
use devices::host_iommu::smmuv3::{Smmuv3, Smmuv3Caps};
use vm_memory::{GuestAddress, GuestMemoryMmap};

const SID: u32 = 3;

/// The device: told each PRI_RESP, with when.
struct Device(Mutex<Sender<Instant>>);

impl devices::host_iommu::smmuv3::DeviceNotifier for Device {
    fn notify(&self, effect: DeviceEffect) {
        if let DeviceEffect::PageResponse { .. } = effect {
            let _ = self.0.lock().unwrap().send(Instant::now());
        }
    }
}

/// The guest side: the relay calls it; a guest thread answers.
struct Guest(Mutex<Sender<(PageRequest, Instant)>>);

impl GuestFaultSink for Guest {
    fn routes(&self, _: u32) -> bool {
        true
    }
    fn page_request(&self, request: &PageRequest) -> bool {
        self.0
            .lock()
            .unwrap()
            .send((*request, Instant::now()))
            .is_ok()
    }
    fn event(&self, _: &NestedEvent) {}
}

struct Setup {
    smmu: Arc<Smmuv3<GuestMemoryMmap>>,
    responses: Receiver<Instant>,
    /// When the guest thread took each request, for the breakdown.
    taken: Receiver<(Instant, Instant)>,
    _relay: FaultRelay,
}

fn setup() -> Setup {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
    let (device_tx, responses) = channel();
    let caps = Smmuv3Caps {
        pri_queue_depth: 256,
        ..Smmuv3Caps::default()
    };
    let smmu = Arc::new(
        Smmuv3::new(mem, caps)
            .unwrap()
            .with_notifier(Arc::new(Device(Mutex::new(device_tx)))),
    );
    let limits = GroupLimits {
        max_outstanding: 256,
        answer_within: Duration::from_secs(60),
    };
    let state = FaultRelayState::new(smmu.clone(), limits);
    let (guest_tx, guest_rx) = channel::<(PageRequest, Instant)>();
    let (taken_tx, taken) = channel();
    let answering: Arc<OnceLock<Arc<FaultRelayState>>> = Arc::new(OnceLock::new());
    answering.set(state.clone()).ok();
    std::thread::spawn(move || {
        while let Ok((request, called)) = guest_rx.recv() {
            let got = Instant::now();
            let state = answering.get().unwrap();
            state.answer(GroupKey::of(&request), true).unwrap();
            let _ = taken_tx.send((called, got));
        }
    });
    let relay = FaultRelay::start(
        state,
        Arc::new(Guest(Mutex::new(guest_tx))),
        Arc::new(|| {}),
    )
    .unwrap();
    Setup {
        smmu,
        responses,
        taken,
        _relay: relay,
    }
}

fn request(group: u16) -> PriEntry {
    PriEntry::new(
        SID,
        Some(1),
        0x1000 * u64::from(group),
        group,
        true,
        false,
        true,
    )
}

fn one_round(s: &Setup, group: u16) -> Duration {
    let start = Instant::now();
    s.smmu.page_request(request(group));
    let done = s.responses.recv().unwrap();
    let _ = s.taken.recv().unwrap();
    done - start
}

fn median_us(v: &mut [Duration]) -> f64 {
    v.sort_unstable();
    v[v.len() / 2].as_secs_f64() * 1e6
}

fn breakdown(s: &Setup) {
    let (mut wake, mut delivery, mut response, mut total) = (vec![], vec![], vec![], vec![]);
    for i in 0..2000u32 {
        let start = Instant::now();
        s.smmu.page_request(request((i % 256) as u16));
        let done = s.responses.recv().unwrap();
        let (called, got) = s.taken.recv().unwrap();
        wake.push(called - start);
        delivery.push(got - called);
        response.push(done - got);
        total.push(done - start);
    }
    eprintln!(
        "fault_relay breakdown (medians of 2000): round trip {:.1} us = relay wake-up {:.1} us + delivery to the guest thread {:.1} us + answer to device {:.1} us",
        median_us(&mut total),
        median_us(&mut wake),
        median_us(&mut delivery),
        median_us(&mut response)
    );
}

fn bench(c: &mut Criterion) {
    let s = setup();
    breakdown(&s);
    let e = engine::Engine::new();
    engine::breakdown(&e);
    let mut group = c.benchmark_group("fault_relay");
    let mut next = 0u16;
    group.bench_function("round_trip", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    next = (next + 1) % 256;
                    one_round(&s, next)
                })
                .sum()
        })
    });
    const IN_FLIGHT: u16 = 64;
    group.throughput(Throughput::Elements(u64::from(IN_FLIGHT)));
    group.bench_function("sustained", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                for g in 0..IN_FLIGHT {
                    s.smmu.page_request(request(g));
                }
                for _ in 0..IN_FLIGHT {
                    s.responses.recv().unwrap();
                    s.taken.recv().unwrap();
                }
            }
            start.elapsed()
        })
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("engine_round_trip", |b| {
        b.iter_custom(|iters| engine::round_trip(&e, iters))
    });
    group.throughput(Throughput::Elements(
        u64::from(engine::SUSTAINED_JOBS) * engine::SUSTAINED_PAGES,
    ));
    group.bench_function("engine_sustained", |b| {
        b.iter_custom(|iters| engine::sustained(&e, iters))
    });
    group.finish();
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

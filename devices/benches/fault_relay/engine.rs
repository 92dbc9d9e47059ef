//! The DMA engine's side: from its miss to its resumed access. The engine's page
//! requester finds the page missing and sends the request into the software SMMUv3's PRI
//! queue; the relay thread wakes and hands it to the guest side; a guest thread maps the
//! page (its address space's table) and answers through PAGE_RESP's path (the group's
//! cookie, the model's PRI_RESP); the response router wakes the engine, which retries the
//! access.

use std::collections::HashSet;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use devices::dma::{DeviceDma, DeviceTlb, DmaAddressSpace, DmaFault, DmaMemory, TlbEntries};
use devices::dma_engine::descriptor::Job;
use devices::dma_engine::page_requests::{PageRequester, WaitingJob};
use devices::fault_relay::{FaultRelay, FaultRelayState, GroupKey, GroupLimits, GuestFaultSink};
use devices::host_iommu::nested::{NestedEvent, PageRequest};
use devices::host_iommu::smmuv3::{Smmuv3, Smmuv3Caps};
use devices::pri::{PageResponseRouter, PriLink};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, Permissions};

const SID: u32 = 0x18;
const IOVA: u64 = 0x4000_0000;
const RAM: u64 = 0x10_0000;

/// The guest's tables: the (PASID, page) pairs mapped, each IOVA page onto GPA page
/// `page % 256`.
#[derive(Debug, Default)]
struct Tables(Mutex<HashSet<(Option<u32>, u64)>>);

impl DmaAddressSpace for Tables {
    fn fill(
        &self,
        tlb: &mut TlbEntries,
        iova: u64,
        len: u64,
        a: Permissions,
    ) -> Result<(), DmaFault> {
        self.fill_pasid(tlb, None, iova, len, a)
    }

    fn fill_pasid(
        &self,
        tlb: &mut TlbEntries,
        pasid: Option<u32>,
        iova: u64,
        len: u64,
        _: Permissions,
    ) -> Result<(), DmaFault> {
        let mapped = self.0.lock().unwrap();
        let mut page = iova & !0xfff;
        while page < iova + len {
            if !mapped.contains(&(pasid, page)) {
                return Err(DmaFault::Unmapped { iova: page });
            }
            let gpa = ((page >> 12) % (RAM >> 12)) << 12;
            tlb.insert(page, page + 0xfff, gpa, Permissions::ReadWrite);
            page += 0x1000;
        }
        Ok(())
    }
}

/// When the guest side saw a group's last request: relay called it, guest thread took
/// it, page mapped, answer given.
type Times = (Instant, Instant, Instant, Instant);

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

pub struct Engine {
    tables: Arc<Tables>,
    tlb: Arc<DeviceTlb>,
    mem: DmaMemory,
    requester: PageRequester,
    answered: Receiver<Times>,
    _relay: FaultRelay,
}

impl Engine {
    pub fn new() -> Self {
        let ram = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
        let router = PageResponseRouter::new();
        let caps = Smmuv3Caps {
            pri_queue_depth: 256,
            ..Smmuv3Caps::default()
        };
        let smmu = Arc::new(
            Smmuv3::new(ram.clone(), caps)
                .unwrap()
                .with_notifier(router.clone()),
        );
        let limits = GroupLimits {
            max_outstanding: 256,
            answer_within: Duration::from_secs(60),
        };
        let state = FaultRelayState::new(smmu.clone(), limits);
        let tables = Arc::new(Tables::default());
        let (guest_tx, guest_rx) = channel::<(PageRequest, Instant)>();
        let (answered_tx, answered) = channel();
        let (guest_state, guest_tables) = (state.clone(), tables.clone());
        std::thread::spawn(move || {
            while let Ok((request, called)) = guest_rx.recv() {
                let got = Instant::now();
                let page = request.address & !0xfff;
                guest_tables.0.lock().unwrap().insert((request.pasid, page));
                let mapped = Instant::now();
                if request.last {
                    guest_state.answer(GroupKey::of(&request), true).unwrap();
                    let _ = answered_tx.send((called, got, mapped, Instant::now()));
                }
            }
        });
        let relay = FaultRelay::start(
            state,
            Arc::new(Guest(Mutex::new(guest_tx))),
            Arc::new(|| {}),
        )
        .unwrap();
        let tlb = DeviceTlb::new();
        let mem = DeviceDma::translated(tlb.clone(), tables.clone()).memory(ram);
        let link = PriLink {
            port: smmu,
            stream: SID,
            responses: router.attach(SID),
            wait_limit: Duration::from_secs(60),
        };
        Self {
            tables,
            tlb,
            mem,
            requester: PageRequester::new(link, 256).unwrap(),
            answered,
            _relay: relay,
        }
    }

    /// The guest takes its pages back, and the engine forgets them.
    fn unmap_all(&self) {
        self.tables.0.lock().unwrap().clear();
        self.tlb.invalidate_all();
    }

    /// `jobs` fills of `pages` pages each, at PASIDs 1 on.
    fn jobs(jobs: u32, pages: u64) -> Vec<WaitingJob> {
        (0..jobs)
            .map(|i| {
                let job = Job::Fill {
                    destination: IOVA,
                    length: pages << 12,
                    pattern: 0,
                };
                (i, job, Some(i + 1))
            })
            .collect()
    }

    /// One page missed, asked for, answered, and written: (miss to resumed access,
    /// engine woken, and the guest side's times).
    fn one(&self) -> (Instant, Instant, Instant, Times) {
        self.unmap_all();
        let jobs = Self::jobs(1, 1);
        let start = Instant::now();
        let refused = self.requester.fault_in(&self.mem, &jobs).unwrap();
        let woken = Instant::now();
        assert!(refused.is_empty());
        self.mem
            .with_pasid(Some(1))
            .write_slice(&[1u8; 64], GuestAddress(IOVA))
            .unwrap();
        let resumed = Instant::now();
        (start, woken, resumed, self.answered.recv().unwrap())
    }

    /// `jobs` x `pages` page requests in flight at once, all answered and written.
    fn burst(&self, jobs: u32, pages: u64) {
        self.unmap_all();
        let waiting = Self::jobs(jobs, pages);
        let refused = self.requester.fault_in(&self.mem, &waiting).unwrap();
        assert!(refused.is_empty());
        for _ in 0..jobs {
            self.answered.recv().unwrap();
        }
    }
}

fn median_us(v: &mut [Duration]) -> f64 {
    v.sort_unstable();
    v[v.len() / 2].as_secs_f64() * 1e6
}

/// The medians of 2,000 single round trips, printed before criterion's figures.
pub fn breakdown(e: &Engine) {
    let mut parts: [Vec<Duration>; 7] = Default::default();
    for _ in 0..2000 {
        let (start, woken, resumed, (called, got, mapped, answered)) = e.one();
        let steps = [
            called - start,
            got - called,
            mapped - got,
            answered - mapped,
            woken.max(answered) - answered,
            resumed - woken,
            resumed - start,
        ];
        for (part, step) in parts.iter_mut().zip(steps) {
            part.push(step);
        }
    }
    let [mut wake, mut delivery, mut handling, mut answer, mut device, mut retry, mut total] =
        parts;
    eprintln!(
        "fault_relay engine breakdown (medians of 2000): miss to resumed access {:.1} us; miss and request to relay wake-up {:.1} us, delivery to the guest thread {:.1} us, guest handling {:.1} us, response (PAGE_RESP to PRI_RESP) {:.1} us, engine wake-up {:.1} us, retried access {:.1} us",
        median_us(&mut total),
        median_us(&mut wake),
        median_us(&mut delivery),
        median_us(&mut handling),
        median_us(&mut answer),
        median_us(&mut device),
        median_us(&mut retry),
    );
}

pub fn round_trip(e: &Engine, iters: u64) -> Duration {
    (0..iters)
        .map(|_| {
            let (start, _, resumed, _) = e.one();
            resumed - start
        })
        .sum()
}

/// Eight jobs at eight PASIDs, eight pages each.
pub const SUSTAINED_JOBS: u32 = 8;
pub const SUSTAINED_PAGES: u64 = 8;

pub fn sustained(e: &Engine, iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        e.burst(SUSTAINED_JOBS, SUSTAINED_PAGES);
    }
    start.elapsed()
}

//! The engine's page requests (PRI) against an IOMMU played by the test: granted,
//! refused, unanswered, cut short by a reset, and bounded by the allocation.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, Permissions};

use super::descriptor::{JobStatus, FAULT_WRITE};
use super::registers::*;
use super::tests::{fill, Harness, Mappings, DST, RING};
use crate::dma::{DeviceDma, DeviceTlb};
use crate::host_iommu::smmuv3::wire::PriEntry;
use crate::pci::PciDevice;
use crate::pri::{PageRequestPort, PageResponses, PriLink};

const STREAM: u32 = 0x18;
/// Unmapped until the IOMMU grants it; then onto DST.
const IOVA: u64 = 0x8000_0000;

/// How the test's IOMMU answers a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Maps each requested page onto DST onwards, then SUCCESS.
    Grant,
    Deny,
    Silent,
}

/// The IOMMU: sees each page request, answers each group when its last page arrives.
struct Iommu {
    mode: Mode,
    maps: Arc<Mappings>,
    responses: Arc<PageResponses>,
    seen: Mutex<Vec<PriEntry>>,
    /// Page requests sent and not answered, and the most there ever were.
    in_flight: Mutex<(usize, usize)>,
}

impl PageRequestPort for Iommu {
    fn page_request(&self, entry: PriEntry) {
        self.seen.lock().unwrap().push(entry);
        let mut in_flight = self.in_flight.lock().unwrap();
        in_flight.0 += 1;
        in_flight.1 = in_flight.1.max(in_flight.0);
        if self.mode == Mode::Grant {
            let gpa = DST + (entry.address() - IOVA);
            self.maps.0.lock().unwrap().push((
                entry.address(),
                0x1000,
                gpa,
                Permissions::ReadWrite,
            ));
        }
        if !entry.last() || self.mode == Mode::Silent {
            return;
        }
        in_flight.0 = 0;
        drop(in_flight);
        self.responses
            .respond(entry.ssid(), entry.group(), self.mode == Mode::Grant);
    }
}

struct Rig {
    h: Harness,
    iommu: Arc<Iommu>,
}

/// Config-space registers of the PRI capability's Control and Allocation.
fn pri_registers(h: &mut Harness) -> (usize, usize) {
    let mut offset = 0x100;
    loop {
        let header = h.engine.read_config_register(offset / 4);
        if header & 0xffff == u32::from(super::capabilities::PRI_CAPABILITY_ID) {
            return (offset / 4 + 1, offset / 4 + 3);
        }
        offset = (header >> 20) as usize;
        assert_ne!(offset, 0, "no PRI capability");
    }
}

impl Rig {
    /// The engine in nested translation with the ring mapped, PRI enabled with
    /// `allocation` (none: PRI left disabled), enabled and mastering.
    fn new(mode: Mode, allocation: Option<u32>, wait_limit: Duration) -> Self {
        let maps = Arc::new(Mappings::default());
        maps.0
            .lock()
            .unwrap()
            .push((RING, 0x1000, RING, Permissions::ReadWrite));
        let responses = PageResponses::new();
        let iommu = Arc::new(Iommu {
            mode,
            maps: maps.clone(),
            responses: responses.clone(),
            seen: Mutex::default(),
            in_flight: Mutex::default(),
        });
        let dma = DeviceDma::translated(DeviceTlb::new(), maps);
        let link = PriLink {
            port: iommu.clone(),
            stream: STREAM,
            responses,
            wait_limit,
        };
        let mut h = Harness::with_translation(dma, true).map_engine(|e| e.with_page_requests(link));
        if let Some(allocation) = allocation {
            let (control, allocation_reg) = pri_registers(&mut h);
            h.config_write(allocation_reg, allocation);
            h.config_write(control, 1);
        }
        h.bring_up();
        h.enable();
        Self { h, iommu }
    }

    fn run(&mut self, job: super::descriptor::JobDescriptor) -> super::descriptor::Completion {
        self.h.post(0, job);
        self.h.write(DOORBELL, 1);
        self.h.wait_head(1);
        self.h.completion(0)
    }

    fn seen(&self) -> Vec<PriEntry> {
        self.iommu.seen.lock().unwrap().clone()
    }
}

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn missing_pages_are_requested_in_one_group_and_the_job_retried() {
    let mut rig = Rig::new(Mode::Grant, Some(16), 5 * SECOND);
    let done = rig.run(fill(IOVA + 0x800, 0x1800, 0x0101_0101_0101_0101));
    assert_eq!(done.status, JobStatus::Ok as u32, "{done:?}");
    let seen = rig.seen();
    assert_eq!(seen.len(), 2);
    for (i, entry) in seen.iter().enumerate() {
        assert_eq!(
            (entry.sid(), entry.ssid(), entry.write(), entry.read()),
            (STREAM, None, true, false)
        );
        assert_eq!(entry.group(), seen[0].group(), "one group");
        assert_eq!(entry.last(), i == 1, "LAST on the group's last page");
    }
    assert_eq!(
        (seen[0].address(), seen[1].address()),
        (IOVA, IOVA + 0x1000)
    );
    let mut landed = [0u8; 0x1800];
    rig.h
        .ram
        .read_slice(&mut landed, GuestAddress(DST + 0x800))
        .unwrap();
    assert!(landed.iter().all(|&b| b == 1));
}

#[test]
fn a_refused_group_fails_the_job_and_writes_nothing() {
    let mut rig = Rig::new(Mode::Deny, Some(16), 5 * SECOND);
    // The job's first page is mapped: it must stay untouched too.
    rig.iommu
        .maps
        .0
        .lock()
        .unwrap()
        .push((IOVA - 0x1000, 0x1000, DST, Permissions::ReadWrite));
    rig.h
        .ram
        .write_slice(&[0xa5; 0x1000], GuestAddress(DST))
        .unwrap();
    let done = rig.run(fill(IOVA - 0x1000, 0x3000, 0));
    assert_eq!(
        (
            done.status,
            done.fault_flags,
            done.bytes_done,
            done.fault_address
        ),
        (JobStatus::PageRequestFailed as u32, FAULT_WRITE, 0, IOVA)
    );
    assert_eq!(rig.seen().len(), 2);
    let mut kept = [0u8; 0x1000];
    rig.h.ram.read_slice(&mut kept, GuestAddress(DST)).unwrap();
    assert!(kept.iter().all(|&b| b == 0xa5), "nothing written");
    // The engine goes on: a job on the mapped page runs.
    rig.h.post(1, fill(IOVA - 0x1000, 8, 0x0202_0202_0202_0202));
    rig.h.write(DOORBELL, 2);
    rig.h.wait_head(2);
    assert_eq!(rig.h.completion(1).status, JobStatus::Ok as u32);
}

#[test]
fn an_unanswered_group_fails_the_job_at_the_wait_limit() {
    let limit = Duration::from_millis(100);
    let mut rig = Rig::new(Mode::Silent, Some(16), limit);
    let start = Instant::now();
    let done = rig.run(fill(IOVA, 8, 0));
    assert!(start.elapsed() >= limit, "{:?}", start.elapsed());
    assert_eq!(done.status, JobStatus::PageRequestFailed as u32);
    // The group's index stays taken until the IOMMU answers it, however late.
    let responses = rig.iommu.responses.clone();
    assert_eq!(responses.outstanding(), 1);
    let group = rig.seen()[0].group();
    responses.respond(None, group, true);
    assert_eq!(responses.outstanding(), 0);
    assert_eq!(responses.unexpected_responses(), 0);
}

#[test]
fn a_reset_while_waiting_returns_at_once_and_the_job_writes_nothing() {
    let mut rig = Rig::new(Mode::Silent, Some(16), 60 * SECOND);
    rig.h.post(0, fill(IOVA, 8, 0));
    rig.h.write(DOORBELL, 1);
    let deadline = Instant::now() + 5 * SECOND;
    while rig.seen().is_empty() {
        assert!(Instant::now() < deadline, "no page request");
        std::thread::sleep(Duration::from_millis(1));
    }
    let start = Instant::now();
    rig.h.write(CONTROL, CONTROL_RESET);
    assert!(start.elapsed() < 5 * SECOND, "{:?}", start.elapsed());
    // The worker gives up its wait at once (not at its 60 s limit) and, revoked,
    // completes nothing; the index stays taken for the late answer.
    let abandoned = Instant::now() + 5 * SECOND;
    while rig.iommu.responses.waiting() > 0 {
        assert!(Instant::now() < abandoned, "the worker still waits");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(rig.iommu.responses.outstanding(), 1);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(rig.h.completion(0).status, 0);
    assert_eq!(rig.h.read(HEAD), 0);
    // A new enabling gets a fresh group index and its own answer.
    rig.h.enable();
    rig.h.post(0, fill(IOVA, 8, 0));
    rig.h.write(DOORBELL, 1);
    let deadline = Instant::now() + 5 * SECOND;
    while rig.seen().len() < 2 {
        assert!(Instant::now() < deadline, "no second page request");
        std::thread::sleep(Duration::from_millis(1));
    }
    let seen = rig.seen();
    assert_ne!(
        seen[0].group(),
        seen[1].group(),
        "the orphaned index is not reused"
    );
    rig.iommu.responses.respond(None, seen[1].group(), false);
    rig.h.wait_head(1);
    assert_eq!(
        rig.h.completion(0).status,
        JobStatus::PageRequestFailed as u32
    );
}

#[test]
fn requests_in_flight_stay_within_the_allocation() {
    let mut rig = Rig::new(Mode::Grant, Some(2), 5 * SECOND);
    let done = rig.run(fill(IOVA, 0x5000, 0x0303_0303_0303_0303));
    assert_eq!(done.status, JobStatus::Ok as u32);
    assert_eq!(rig.seen().len(), 5);
    assert_eq!(rig.iommu.in_flight.lock().unwrap().1, 2);
}

#[test]
fn without_pri_enabled_a_miss_is_a_translation_fault() {
    for allocation in [None, Some(0)] {
        let mut rig = Rig::new(Mode::Grant, allocation, 5 * SECOND);
        if allocation == Some(0) {
            // Enable set, nothing allocated: still no requests.
            let (control, _) = pri_registers(&mut rig.h);
            assert_eq!(rig.h.engine.read_config_register(control) & 1, 1);
        }
        let done = rig.run(fill(IOVA, 8, 0));
        assert_eq!(done.status, JobStatus::TranslationFault as u32);
        assert!(rig.seen().is_empty());
    }
}

//! `nestor-iommufd-selftest`: nestor's iommufd fault code against the real kernel, through
//! the kernel's iommufd test driver (CONFIG_IOMMUFD_TEST), which stands in for IOMMU
//! hardware that reports page requests and events. Built for the nested rig; needs
//! /dev/iommu and the test driver.
//!
//! Prints `iommufd-selftest: NAME ok [figures]` or `iommufd-selftest: NAME FAIL why` per
//! check, and exits 0 only if every check passed (2 if the test driver is absent).

use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use devices::fault_relay::{FaultRelay, FaultRelayState, GroupKey, GroupLimits, GuestFaultSink};
use devices::host_iommu::iommufd_faults::{
    alloc_fault_queue, pgfault_perm, FaultQueue, FaultQueueError, IommufdPageRequests, Vevent,
    VeventQueue,
};
use devices::host_iommu::iommufd_selftest::{
    self as selftest, MockDevice, HWPT_DATA_SELFTEST, IOTLB_DEFAULT, VEVENTQ_TYPE_SELFTEST,
    VEVENT_SELFTEST_SIZE, VIOMMU_TYPE_SELFTEST,
};
use devices::host_iommu::nested::{
    Command, FaultNotifiers, InvalidateError, NestedError, NestedEvent, NestedHostIommu,
    PageRequest, PageResponseCode,
};
use iommufd_bindings::iommufd::{
    iommu_hwpt_alloc, iommu_ioas_alloc, iommu_vdevice_alloc, iommu_veventq_alloc,
    iommu_viommu_alloc, iommufd_hwpt_alloc_flags_IOMMU_HWPT_ALLOC_NEST_PARENT as NEST_PARENT,
    iommufd_hwpt_alloc_flags_IOMMU_HWPT_FAULT_ID_VALID as FAULT_ID_VALID,
};
use iommufd_ioctls::IommuFd;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

type Check = Result<String, String>;
/// A named check.
type NamedCheck = (&'static str, fn() -> Check);

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// A mock device attached to a nested HWPT whose faults go to a fault queue.
struct Rig {
    iommufd: IommuFd,
    device: MockDevice,
    parent: u32,
    nested: u32,
    fault_fd: Option<File>,
}

fn hwpt(
    iommufd: &IommuFd,
    dev_id: u32,
    pt_id: u32,
    flags: u32,
    fault_id: u32,
) -> Result<u32, String> {
    let data = IOTLB_DEFAULT;
    let nested = flags & NEST_PARENT == 0;
    let mut alloc = iommu_hwpt_alloc {
        size: std::mem::size_of::<iommu_hwpt_alloc>() as u32,
        flags,
        dev_id,
        pt_id,
        fault_id,
        ..Default::default()
    };
    if nested {
        alloc.data_type = HWPT_DATA_SELFTEST;
        alloc.data_len = 4;
        alloc.data_uptr = &data as *const u32 as u64;
    }
    iommufd
        .alloc_iommu_hwpt(&mut alloc)
        .map_err(|e| err("HWPT_ALLOC", format!("{e:?}")))?;
    Ok(alloc.out_hwpt_id)
}

impl Rig {
    fn new() -> Result<Self, String> {
        let iommufd = IommuFd::new().map_err(|e| err("open /dev/iommu", format!("{e:?}")))?;
        let mut ioas = iommu_ioas_alloc {
            size: std::mem::size_of::<iommu_ioas_alloc>() as u32,
            ..Default::default()
        };
        iommufd
            .alloc_iommu_ioas(&mut ioas)
            .map_err(|e| err("IOAS_ALLOC", format!("{e:?}")))?;
        let device = selftest::mock_device(&iommufd, ioas.out_ioas_id)
            .map_err(|e| err("the test driver's MOCK_DOMAIN", e))?;
        let parent = hwpt(&iommufd, device.idev_id, ioas.out_ioas_id, NEST_PARENT, 0)?;
        let (fault_id, fault_fd) =
            alloc_fault_queue(&iommufd).map_err(|e| err("FAULT_QUEUE_ALLOC", e))?;
        let nested = hwpt(&iommufd, device.idev_id, parent, FAULT_ID_VALID, fault_id)?;
        selftest::replace(&iommufd, &device, nested).map_err(|e| err("MOCK_DOMAIN_REPLACE", e))?;
        Ok(Self {
            iommufd,
            device,
            parent,
            nested,
            fault_fd: Some(fault_fd),
        })
    }

    fn trigger(&self, grpid: u32, addr: u64) -> Result<(), String> {
        selftest::trigger_page_request(
            &self.iommufd,
            &self.device,
            5,
            grpid,
            pgfault_perm::READ | pgfault_perm::WRITE,
            addr,
        )
        .map_err(|e| err("TRIGGER_IOPF", e))
    }
}

/// One page request from the kernel, its fields, its answer, and a second answer refused.
fn fault_queue() -> Check {
    let mut rig = Rig::new()?;
    let mut queue = FaultQueue::new(rig.fault_fd.take().unwrap());
    rig.trigger(2, 0xdead_b000)?;
    let records = queue.read(true).map_err(|e| err("read", e))?;
    let [r] = records.as_slice() else {
        return Err(format!("read {} records, want 1", records.len()));
    };
    if r.dev_id != rig.device.idev_id || r.grpid != 2 || r.addr != 0xdead_b000 || !r.is_last() {
        return Err(format!("unexpected record {r:?}"));
    }
    if r.perm != pgfault_perm::READ | pgfault_perm::WRITE {
        return Err(format!("perm {:#x}, want READ|WRITE", r.perm));
    }
    queue
        .respond(r.cookie, PageResponseCode::Success)
        .map_err(|e| err("respond", e))?;
    match queue.respond(r.cookie, PageResponseCode::Success) {
        Err(FaultQueueError::UnknownCookie(_)) => {}
        other => return Err(format!("a second answer gave {other:?}, want EINVAL")),
    }
    if !queue.read(false).map_err(|e| err("read", e))?.is_empty() {
        return Err("the queue is not empty after the answer".into());
    }
    Ok(format!("pasid={} cookie={}", r.pasid, r.cookie))
}

/// Groups pending when the HWPT is replaced are answered by the kernel: ours are refused.
fn fault_detach() -> Check {
    let mut rig = Rig::new()?;
    let mut queue = FaultQueue::new(rig.fault_fd.take().unwrap());
    for g in 0..3 {
        rig.trigger(g, 0x1000 * u64::from(g + 1))?;
    }
    let mut records = Vec::new();
    while records.len() < 3 {
        let got = queue.read(true).map_err(|e| err("read", e))?;
        if got.is_empty() {
            return Err(format!("only {} of 3 records arrived", records.len()));
        }
        records.extend(got);
    }
    selftest::replace(&rig.iommufd, &rig.device, rig.parent)
        .map_err(|e| err("MOCK_DOMAIN_REPLACE to the parent", e))?;
    for r in &records {
        match queue.respond(r.cookie, PageResponseCode::Success) {
            Err(FaultQueueError::UnknownCookie(_)) => {}
            other => return Err(format!("answer after detach gave {other:?}, want EINVAL")),
        }
    }
    let _ = rig.iommufd.destroy_iommu_object(rig.nested);
    Ok("3 pending groups answered by the kernel at replace".into())
}

/// The fault side of a nested back-end on the test driver: page requests only.
#[derive(Debug)]
struct MockNested {
    requests: IommufdPageRequests,
    no_events: EventFd,
    answers: Mutex<Vec<Result<(), String>>>,
}

impl NestedHostIommu for MockNested {
    fn hw_info(&self) -> [u32; 6] {
        [0; 6]
    }
    fn install_ste(&self, _: u32, _: [u64; 2]) -> Result<(), NestedError> {
        Err(NestedError::Io(std::io::Error::other("not in this test")))
    }
    fn remove_ste(&self, _: u32) -> Result<(), NestedError> {
        Ok(())
    }
    fn invalidate(&self, _: &[Command]) -> Result<(), InvalidateError> {
        Ok(())
    }
    fn fault_notifiers(&self) -> FaultNotifiers<'_> {
        FaultNotifiers {
            // SAFETY: the eventfd lives as long as `self`.
            events: unsafe { BorrowedFd::borrow_raw(self.no_events.as_raw_fd()) },
            page_requests: self.requests.notifier(),
        }
    }
    fn read_events(&self, _: usize) -> Result<Vec<NestedEvent>, NestedError> {
        Ok(Vec::new())
    }
    fn read_page_requests(&self, _: usize) -> Result<Vec<PageRequest>, NestedError> {
        self.requests
            .read()
            .map_err(|e| NestedError::Io(std::io::Error::other(e.to_string())))
    }
    fn page_response(&self, cookie: u32, code: PageResponseCode) -> Result<(), NestedError> {
        let result = self.requests.respond(cookie, code);
        self.answers
            .lock()
            .unwrap()
            .push(result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        result.map_err(|e| NestedError::Io(std::io::Error::other(e.to_string())))
    }
}

/// The guest side: hands each page request to the test, which answers like a guest.
struct Responder(Mutex<mpsc::Sender<(PageRequest, Instant)>>);

impl GuestFaultSink for Responder {
    fn routes(&self, stream: u32) -> bool {
        stream == STREAM
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

const STREAM: u32 = 0x42;
const RELAY_ROUNDS: u32 = 200;

/// Page requests from the kernel through nestor's relay thread to a responder and back,
/// each accepted by the kernel; the round trip timed.
fn relay() -> Check {
    let mut rig = Rig::new()?;
    let requests = IommufdPageRequests::new(rig.fault_fd.take().unwrap());
    requests.route(rig.device.idev_id, STREAM);
    let host = Arc::new(MockNested {
        requests,
        no_events: EventFd::new(EFD_NONBLOCK).map_err(|e| err("eventfd", e))?,
        answers: Mutex::new(Vec::new()),
    });
    let state = FaultRelayState::new(host.clone(), GroupLimits::default());
    let (tx, rx) = mpsc::channel();
    let relay = FaultRelay::start(
        state.clone(),
        Arc::new(Responder(Mutex::new(tx))),
        Arc::new(|| {}),
    )
    .map_err(|e| err("start the relay", e))?;
    let mut round_trips = Vec::new();
    let mut deliveries = Vec::new();
    for round in 0..RELAY_ROUNDS {
        let grpid = round % 512;
        let start = Instant::now();
        rig.trigger(grpid, 0x10_0000 + 0x1000 * u64::from(round))?;
        let (request, delivered) = rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| format!("round {round}: no page request reached the responder"))?;
        if request.group != grpid || request.stream != STREAM || !request.last {
            return Err(format!("round {round}: unexpected request {request:?}"));
        }
        state
            .answer(GroupKey::of(&request), true)
            .map_err(|e| err("answer", e))?;
        round_trips.push(start.elapsed());
        deliveries.push(delivered - start);
    }
    if state
        .answer(
            GroupKey {
                stream: STREAM,
                pasid: Some(5),
                group: 0,
            },
            true,
        )
        .is_ok()
    {
        return Err("a second answer to an answered group was taken".into());
    }
    relay.stop();
    let answers = host.answers.lock().unwrap().clone();
    let refused: Vec<&String> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    if answers.len() != RELAY_ROUNDS as usize || !refused.is_empty() {
        return Err(format!(
            "{} answers reached the kernel, {} refused ({:?})",
            answers.len(),
            refused.len(),
            refused.first()
        ));
    }
    round_trips.sort_unstable();
    deliveries.sort_unstable();
    let median = |v: &[Duration]| v[v.len() / 2].as_secs_f64() * 1e6;
    Ok(format!(
        "rounds={RELAY_ROUNDS} round_trip_median_us={:.1} to_responder_median_us={:.1}",
        median(&round_trips),
        median(&deliveries)
    ))
}

/// vEVENTQ: events for a vDEVICE, and an overflow reported as LOST_EVENTS.
fn vevents() -> Check {
    let rig = Rig::new()?;
    let mut viommu = iommu_viommu_alloc {
        size: std::mem::size_of::<iommu_viommu_alloc>() as u32,
        type_: VIOMMU_TYPE_SELFTEST,
        dev_id: rig.device.idev_id,
        hwpt_id: rig.parent,
        ..Default::default()
    };
    rig.iommufd
        .alloc_iommu_viommu(&mut viommu)
        .map_err(|e| err("VIOMMU_ALLOC", format!("{e:?}")))?;
    let mut veventq = iommu_veventq_alloc {
        size: std::mem::size_of::<iommu_veventq_alloc>() as u32,
        viommu_id: viommu.out_viommu_id,
        type_: VEVENTQ_TYPE_SELFTEST,
        veventq_depth: 2,
        ..Default::default()
    };
    let (_, veventq_fd) = rig
        .iommufd
        .alloc_veventq(&mut veventq)
        .map_err(|e| err("VEVENTQ_ALLOC", format!("{e:?}")))?;
    let mut vdevice = iommu_vdevice_alloc {
        size: std::mem::size_of::<iommu_vdevice_alloc>() as u32,
        viommu_id: viommu.out_viommu_id,
        dev_id: rig.device.idev_id,
        virt_id: u64::from(STREAM),
        ..Default::default()
    };
    rig.iommufd
        .alloc_iommu_vdevice(&mut vdevice)
        .map_err(|e| err("VDEVICE_ALLOC", format!("{e:?}")))?;
    let nested = hwpt(&rig.iommufd, rig.device.idev_id, viommu.out_viommu_id, 0, 0)?;
    selftest::replace(&rig.iommufd, &rig.device, nested)
        .map_err(|e| err("MOCK_DOMAIN_REPLACE to the vIOMMU's HWPT", e))?;
    for _ in 0..3 {
        selftest::trigger_vevent(&rig.iommufd, &rig.device)
            .map_err(|e| err("TRIGGER_VEVENT", e))?;
    }
    let mut queue = VeventQueue::new(veventq_fd, VEVENT_SELFTEST_SIZE);
    let events = queue.read(8).map_err(|e| err("read the vEVENTQ", e))?;
    let virt_id = STREAM.to_le_bytes().to_vec();
    match events.as_slice() {
        [Vevent::Record { data: a, .. }, Vevent::Record { data: b, .. }, Vevent::Lost { .. }]
            if *a == virt_id && *b == virt_id => {}
        other => {
            return Err(format!(
                "read {other:?}, want two events for virt_id {STREAM:#x} and LOST_EVENTS"
            ))
        }
    }
    Ok("depth=2 triggers=3: 2 events then LOST_EVENTS".into())
}

fn main() {
    if !std::path::Path::new("/sys/bus/iommufd_mock").exists() {
        eprintln!(
            "nestor-iommufd-selftest: this kernel has no iommufd test driver (CONFIG_IOMMUFD_TEST); run it in the nested rig"
        );
        std::process::exit(2);
    }
    let checks: [NamedCheck; 4] = [
        ("fault-queue", fault_queue),
        ("fault-detach", fault_detach),
        ("relay", relay),
        ("vevents", vevents),
    ];
    let only: Vec<String> = std::env::args().skip(1).collect();
    let mut failed = 0;
    for (name, check) in checks {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        match check() {
            Ok(detail) => println!("iommufd-selftest: {name} ok {detail}"),
            Err(why) => {
                failed += 1;
                println!("iommufd-selftest: {name} FAIL {why}");
            }
        }
    }
    std::process::exit(if failed == 0 { 0 } else { 1 });
}

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::groups::RecordAction;
use super::*;
use crate::host_iommu::nested::{
    Command, EventRecord, FaultNotifiers, InvalidateError, NestedError, NestedEvent,
    NestedHostIommu, PagePermissions, PageRequest, PageResponseCode,
};

fn request(stream: u32, pasid: Option<u32>, group: u32, last: bool, cookie: u32) -> PageRequest {
    PageRequest {
        stream,
        pasid,
        group,
        permissions: PagePermissions {
            read: true,
            ..Default::default()
        },
        address: 0x1000 * u64::from(cookie),
        last,
        cookie,
    }
}

fn key(stream: u32, pasid: Option<u32>, group: u32) -> GroupKey {
    GroupKey {
        stream,
        pasid,
        group,
    }
}

fn limits(max_outstanding: usize, answer_within: Duration) -> GroupLimits {
    GroupLimits {
        max_outstanding,
        answer_within,
    }
}

const LONG: Duration = Duration::from_secs(3600);

#[test]
fn a_group_is_delivered_in_order_and_answered_under_its_last_cookie() {
    let mut groups = PageRequestGroups::new(GroupLimits::default());
    let now = Instant::now();
    for (i, last) in [(1, false), (2, false), (3, true)] {
        let r = request(5, Some(9), 0x1ff, last, i);
        assert_eq!(groups.on_record(&r, true, now), RecordAction::Deliver);
    }
    assert_eq!(groups.on_answer(key(5, Some(9), 0x1ff)), Ok(3));
    // One answer per group.
    assert_eq!(
        groups.on_answer(key(5, Some(9), 0x1ff)),
        Err(AnswerError::NoSuchGroup)
    );
    let c = groups.counters();
    assert_eq!((c.records, c.delivered, c.answered), (3, 3, 1));
    assert_eq!(c.unknown_answers, 1);
}

#[test]
fn answers_to_unknown_or_incomplete_groups_are_refused() {
    let mut groups = PageRequestGroups::new(GroupLimits::default());
    assert_eq!(
        groups.on_answer(key(1, None, 1)),
        Err(AnswerError::NoSuchGroup)
    );
    groups.on_record(&request(1, None, 1, false, 7), true, Instant::now());
    assert_eq!(
        groups.on_answer(key(1, None, 1)),
        Err(AnswerError::Incomplete)
    );
    // PASID and stream are part of the group's name.
    groups.on_record(&request(1, None, 1, true, 8), true, Instant::now());
    assert_eq!(
        groups.on_answer(key(1, Some(0), 1)),
        Err(AnswerError::NoSuchGroup)
    );
    assert_eq!(
        groups.on_answer(key(2, None, 1)),
        Err(AnswerError::NoSuchGroup)
    );
    assert_eq!(groups.on_answer(key(1, None, 1)), Ok(8));
}

#[test]
fn past_the_outstanding_limit_a_group_is_failed_at_its_last_record() {
    let mut groups = PageRequestGroups::new(limits(2, LONG));
    let now = Instant::now();
    for g in 0..2 {
        assert_eq!(
            groups.on_record(&request(1, None, g, true, g), true, now),
            RecordAction::Deliver
        );
    }
    assert_eq!(
        groups.on_record(&request(1, None, 7, false, 70), true, now),
        RecordAction::Drop
    );
    assert_eq!(
        groups.on_record(&request(1, None, 7, true, 71), true, now),
        RecordAction::Fail { cookie: 71 }
    );
    assert_eq!(groups.counters().refused_full, 1);
    // An answer frees a slot.
    assert_eq!(groups.on_answer(key(1, None, 0)), Ok(0));
    assert_eq!(
        groups.on_record(&request(1, None, 8, true, 80), true, now),
        RecordAction::Deliver
    );
}

#[test]
fn a_group_the_guest_cannot_be_given_is_failed() {
    let mut groups = PageRequestGroups::new(GroupLimits::default());
    let now = Instant::now();
    let first = request(1, Some(2), 3, false, 30);
    assert_eq!(groups.on_record(&first, true, now), RecordAction::Deliver);
    // The event queue had no room for it: the rest of the group is dropped, the last
    // record answered INVALID.
    assert_eq!(groups.undeliverable(&first), None);
    assert_eq!(
        groups.on_record(&request(1, Some(2), 3, false, 31), true, now),
        RecordAction::Drop
    );
    assert_eq!(
        groups.on_record(&request(1, Some(2), 3, true, 32), true, now),
        RecordAction::Fail { cookie: 32 }
    );
    // A one-record group that cannot be delivered is failed at once.
    let single = request(1, Some(2), 4, true, 40);
    assert_eq!(groups.on_record(&single, true, now), RecordAction::Deliver);
    assert_eq!(groups.undeliverable(&single), Some(40));
    assert_eq!(groups.counters().refused_undeliverable, 2);
    assert_eq!(groups.outstanding(), 0);
}

#[test]
fn unrouted_streams_and_reused_group_indices_are_failed() {
    let mut groups = PageRequestGroups::new(GroupLimits::default());
    let now = Instant::now();
    assert_eq!(
        groups.on_record(&request(9, None, 1, true, 5), false, now),
        RecordAction::Fail { cookie: 5 }
    );
    assert_eq!(groups.counters().refused_unrouted, 1);
    // A device reusing a group index the guest has not answered yet: the new group fails,
    // the old one still takes its answer.
    groups.on_record(&request(1, None, 2, true, 20), true, now);
    assert_eq!(
        groups.on_record(&request(1, None, 2, true, 21), true, now),
        RecordAction::Fail { cookie: 21 }
    );
    assert_eq!(groups.counters().refused_duplicate, 1);
    assert_eq!(groups.on_answer(key(1, None, 2)), Ok(20));
    // A group whose endpoint stops being routed mid-way is failed from there on.
    groups.on_record(&request(3, None, 1, false, 30), true, now);
    assert_eq!(
        groups.on_record(&request(3, None, 1, true, 31), false, now),
        RecordAction::Fail { cookie: 31 }
    );
    assert_eq!(groups.outstanding(), 0);
    assert_eq!(
        groups.on_answer(key(3, None, 1)),
        Err(AnswerError::NoSuchGroup)
    );
}

#[test]
fn unanswered_groups_fail_at_their_deadline_and_not_before() {
    let mut groups = PageRequestGroups::new(limits(16, Duration::from_millis(100)));
    let t0 = Instant::now();
    groups.on_record(&request(1, None, 1, true, 11), true, t0);
    groups.on_record(
        &request(1, None, 2, true, 12),
        true,
        t0 + Duration::from_millis(50),
    );
    // An incomplete group has no deadline yet.
    groups.on_record(&request(1, None, 3, false, 13), true, t0);
    assert_eq!(
        groups.next_deadline(),
        Some(t0 + Duration::from_millis(100))
    );
    assert!(groups.expire(t0 + Duration::from_millis(99)).is_empty());
    assert_eq!(groups.expire(t0 + Duration::from_millis(100)), vec![11]);
    assert_eq!(
        groups.next_deadline(),
        Some(t0 + Duration::from_millis(150))
    );
    assert_eq!(groups.expire(t0 + Duration::from_secs(1)), vec![12]);
    assert_eq!(groups.counters().timed_out, 2);
    // A late answer changes nothing.
    assert_eq!(
        groups.on_answer(key(1, None, 1)),
        Err(AnswerError::NoSuchGroup)
    );
}

#[test]
fn a_detach_or_reset_forgets_groups_the_host_already_failed() {
    let mut groups = PageRequestGroups::new(GroupLimits::default());
    let now = Instant::now();
    groups.on_record(&request(1, None, 1, true, 1), true, now);
    groups.on_record(&request(1, Some(4), 2, false, 2), true, now);
    groups.on_record(&request(2, None, 1, true, 3), true, now);
    assert_eq!(groups.forget_stream(1), 2);
    assert_eq!(
        groups.on_answer(key(1, None, 1)),
        Err(AnswerError::NoSuchGroup)
    );
    assert_eq!(groups.outstanding(), 1);
    assert_eq!(groups.forget_all(), 1);
    assert_eq!(
        groups.on_answer(key(2, None, 1)),
        Err(AnswerError::NoSuchGroup)
    );
    assert_eq!(groups.counters().dropped, 3);
}

/// A nested back-end whose fault sources the test fills.
#[derive(Debug)]
struct FakeNested {
    page_requests: Mutex<VecDeque<PageRequest>>,
    events: Mutex<VecDeque<NestedEvent>>,
    page_requests_ready: EventFd,
    events_ready: EventFd,
    responses: Mutex<Vec<(u32, PageResponseCode)>>,
}

impl FakeNested {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            page_requests: Mutex::default(),
            events: Mutex::default(),
            page_requests_ready: EventFd::new(EFD_NONBLOCK).unwrap(),
            events_ready: EventFd::new(EFD_NONBLOCK).unwrap(),
            responses: Mutex::default(),
        })
    }

    fn push_requests(&self, requests: &[PageRequest]) {
        self.page_requests.lock().unwrap().extend(requests);
        self.page_requests_ready.write(1).unwrap();
    }

    fn push_event(&self, event: NestedEvent) {
        self.events.lock().unwrap().push_back(event);
        self.events_ready.write(1).unwrap();
    }

    fn responses(&self) -> Vec<(u32, PageResponseCode)> {
        self.responses.lock().unwrap().clone()
    }
}

fn take<T>(queue: &Mutex<VecDeque<T>>, ready: &EventFd, max: usize) -> Vec<T> {
    let _ = ready.read();
    let mut queue = queue.lock().unwrap();
    let n = queue.len().min(max);
    let out: Vec<T> = queue.drain(..n).collect();
    if !queue.is_empty() {
        ready.write(1).unwrap();
    }
    out
}

impl NestedHostIommu for FakeNested {
    fn hw_info(&self) -> [u32; 6] {
        [0; 6]
    }
    fn install_ste(&self, _: u32, _: [u64; 2]) -> Result<(), NestedError> {
        Ok(())
    }
    fn remove_ste(&self, _: u32) -> Result<(), NestedError> {
        Ok(())
    }
    fn invalidate(&self, _: &[Command]) -> Result<(), InvalidateError> {
        Ok(())
    }
    fn fault_notifiers(&self) -> FaultNotifiers<'_> {
        // SAFETY: both eventfds live as long as `self`.
        unsafe {
            FaultNotifiers {
                events: BorrowedFd::borrow_raw(self.events_ready.as_raw_fd()),
                page_requests: BorrowedFd::borrow_raw(self.page_requests_ready.as_raw_fd()),
            }
        }
    }
    fn read_events(&self, max: usize) -> Result<Vec<NestedEvent>, NestedError> {
        Ok(take(&self.events, &self.events_ready, max))
    }
    fn read_page_requests(&self, max: usize) -> Result<Vec<PageRequest>, NestedError> {
        Ok(take(&self.page_requests, &self.page_requests_ready, max))
    }
    fn page_response(&self, cookie: u32, code: PageResponseCode) -> Result<(), NestedError> {
        self.responses.lock().unwrap().push((cookie, code));
        Ok(())
    }
}

/// The guest side: records what reached it; refuses page requests past `room`.
#[derive(Default)]
struct Guest {
    page_requests: Mutex<Vec<PageRequest>>,
    events: Mutex<Vec<NestedEvent>>,
    room: usize,
}

impl GuestFaultSink for Guest {
    fn routes(&self, stream: u32) -> bool {
        stream != 0xdead
    }
    fn page_request(&self, request: &PageRequest) -> bool {
        let mut got = self.page_requests.lock().unwrap();
        if got.len() >= self.room {
            return false;
        }
        got.push(*request);
        true
    }
    fn event(&self, event: &NestedEvent) {
        self.events.lock().unwrap().push(*event);
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn start(
    host: &Arc<FakeNested>,
    guest: &Arc<Guest>,
    limits: GroupLimits,
) -> (Arc<FaultRelayState>, FaultRelay) {
    let state = FaultRelayState::new(host.clone(), limits);
    let relay = FaultRelay::start(state.clone(), guest.clone(), Arc::new(|| {})).unwrap();
    (state, relay)
}

#[test]
fn the_relay_thread_delivers_page_requests_and_the_guest_answer_reaches_the_host() {
    let host = FakeNested::new();
    let guest = Arc::new(Guest {
        room: 100,
        ..Default::default()
    });
    let (state, relay) = start(&host, &guest, limits(16, LONG));
    host.push_requests(&[
        request(1, Some(3), 7, false, 100),
        request(1, Some(3), 7, true, 101),
        request(0xdead, None, 1, true, 102),
    ]);
    wait_for("the group", || {
        guest.page_requests.lock().unwrap().len() == 2
    });
    // The unrouted stream's group was failed without reaching the guest.
    wait_for("the refusal", || {
        host.responses() == vec![(102, PageResponseCode::Invalid)]
    });
    state.answer(key(1, Some(3), 7), true).unwrap();
    assert_eq!(
        host.responses(),
        vec![
            (102, PageResponseCode::Invalid),
            (101, PageResponseCode::Success)
        ]
    );
    assert_eq!(
        state.answer(key(1, Some(3), 7), true),
        Err(AnswerError::NoSuchGroup)
    );
    relay.stop();
}

#[test]
fn the_relay_fails_what_the_guest_cannot_take_or_does_not_answer() {
    let host = FakeNested::new();
    let guest = Arc::new(Guest {
        room: 1,
        ..Default::default()
    });
    let (state, _relay) = start(&host, &guest, limits(16, Duration::from_millis(50)));
    host.push_requests(&[request(1, None, 1, true, 1), request(1, None, 2, true, 2)]);
    // The second found the event queue full: failed at once. The first times out.
    wait_for("both failures", || host.responses().len() == 2);
    assert_eq!(
        host.responses(),
        vec![
            (2, PageResponseCode::Invalid),
            (1, PageResponseCode::Invalid)
        ]
    );
    let c = state.counters();
    assert_eq!((c.refused_undeliverable, c.timed_out), (1, 1));
    // The guest's late answer changes nothing on the host.
    assert_eq!(
        state.answer(key(1, None, 1), true),
        Err(AnswerError::NoSuchGroup)
    );
    assert_eq!(host.responses().len(), 2);
}

#[test]
fn the_relay_forwards_unrecoverable_events_with_their_losses() {
    let host = FakeNested::new();
    let guest = Arc::new(Guest::default());
    let (_state, relay) = start(&host, &guest, GroupLimits::default());
    let event = NestedEvent {
        record: EventRecord::new(0x10, 4),
        lost_before: 3,
    };
    host.push_event(event);
    wait_for("the event", || guest.events.lock().unwrap().len() == 1);
    assert_eq!(guest.events.lock().unwrap()[0], event);
    drop(relay);
}

#[test]
fn a_burst_larger_than_one_batch_loses_nothing_and_answers_each_group_once() {
    let host = FakeNested::new();
    let guest = Arc::new(Guest {
        room: 10_000,
        ..Default::default()
    });
    let (state, relay) = start(&host, &guest, limits(1000, LONG));
    let requests: Vec<PageRequest> = (0..500)
        .map(|i| request(1 + i % 4, Some(i % 7), i, true, 1000 + i))
        .collect();
    host.push_requests(&requests);
    wait_for("all 500", || {
        guest.page_requests.lock().unwrap().len() == 500
    });
    for r in &requests {
        state.answer(GroupKey::of(r), r.cookie % 2 == 0).unwrap();
    }
    let responses = host.responses();
    assert_eq!(responses.len(), 500);
    let mut cookies: Vec<u32> = responses.iter().map(|(c, _)| *c).collect();
    cookies.sort_unstable();
    cookies.dedup();
    assert_eq!(cookies.len(), 500);
    assert!(responses
        .iter()
        .all(|&(cookie, code)| (cookie % 2 == 0) == (code == PageResponseCode::Success)));
    relay.stop();
}

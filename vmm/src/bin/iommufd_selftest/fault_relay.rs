//! Page requests and unrecoverable events from the kernel (the test driver injects them)
//! through nestor's fault relay thread and the real virtio-iommu eventq to a driver-side
//! responder, whose PAGE_RESP goes back through the requestq to the kernel's fault queue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use devices::fault_relay::{FaultRelay, GroupLimits};
use devices::host_iommu::iommufd_faults::pgfault_perm;
use devices::host_iommu::iommufd_selftest as selftest;
use devices::host_iommu::nested::{NestedError, NestedHostIommu, PageResponseCode};
use devices::virtio::iommu::driver_harness::{attach_table, detach, page_resp};
use devices::virtio::iommu::nested_protocol::{
    fault_reason, FAULT_F_LAST_PAGE, NESTED_FAULT_RECORD_SIZE,
};
use devices::virtio::iommu::page_requests::GuestEventq;
use devices::virtio::iommu::protocol::{Status, FAULT_F_PASID, FAULT_R_UNKNOWN};
use vm_memory::{Bytes, GuestAddress};

use crate::nested_vm::{expect, NestedVm, SID_A};
use crate::{err, Check};

const STE: u64 = 1 | 0b101 << 1 | 0x40_0000 | 2 << 59;
const PASID: u32 = 5;
const ROUNDS: u32 = 200;
/// Requests left pending when the endpoint is detached.
const PENDING: u32 = 3;
/// A vEVENTQ this small overflows on the third event nobody read.
const VEVENT_DEPTH: u32 = 2;
/// Where the driver posts its eventq buffers.
const EVENTS_AT: u64 = 0x30_000;
const WAIT: Duration = Duration::from_secs(10);

/// One eventq record, as the driver reads it.
#[derive(Debug, Clone, Copy)]
struct Record {
    reason: u8,
    flags: u32,
    endpoint: u32,
    pasid: u32,
    address: u64,
    group: u32,
}

impl Record {
    fn parse(b: &[u8; NESTED_FAULT_RECORD_SIZE]) -> Self {
        let le32 = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        Self {
            reason: b[0],
            flags: le32(4),
            endpoint: le32(8),
            pasid: le32(12),
            address: u64::from_le_bytes(b[16..24].try_into().unwrap()),
            group: le32(24),
        }
    }
}

/// The driver's side of the eventq: posts buffers until `count` records came back.
fn wait_records(vm: &NestedVm, count: usize) -> Result<Vec<Record>, String> {
    let start = Instant::now();
    let mut records = Vec::new();
    while records.len() < count {
        if start.elapsed() > WAIT {
            return Err(format!(
                "{} of {count} eventq records arrived within {WAIT:?}: {records:?}",
                records.len()
            ));
        }
        let used = vm
            .rig
            .deliver_into(EVENTS_AT, &[NESTED_FAULT_RECORD_SIZE as u32; 4]);
        if used.is_empty() {
            std::thread::sleep(Duration::from_micros(20));
        }
        for (id, len) in used {
            if len as usize != NESTED_FAULT_RECORD_SIZE {
                return Err(format!("an eventq record of {len} bytes"));
            }
            let mut bytes = [0u8; NESTED_FAULT_RECORD_SIZE];
            let at = EVENTS_AT + u64::from(id) * NESTED_FAULT_RECORD_SIZE as u64;
            vm.rig
                .mem
                .read_slice(&mut bytes, GuestAddress(at))
                .map_err(|e| err("read the eventq buffer", e))?;
            records.push(Record::parse(&bytes));
        }
    }
    Ok(records)
}

fn trigger_page_request(vm: &NestedVm, grpid: u32, address: u64) -> Result<(), String> {
    let perm = pgfault_perm::READ | pgfault_perm::WRITE;
    selftest::trigger_page_request(&vm.iommufd, &vm.a, PASID, grpid, perm, address)
        .map_err(|e| err("TRIGGER_IOPF", e))
}

fn trigger_vevent(vm: &NestedVm) -> Result<(), String> {
    selftest::trigger_vevent(&vm.iommufd, &vm.a).map_err(|e| err("TRIGGER_VEVENT", e))
}

pub fn check() -> Check {
    let limits = GroupLimits {
        max_outstanding: 64,
        answer_within: Duration::from_secs(60),
    };
    let mut vm = NestedVm::new(VEVENT_DEPTH, Some(limits))?;
    expect(
        "ATTACH_TABLE a",
        vm.send(&attach_table(1, SID_A, STE, 0)),
        Status::Ok,
    )?;
    vm.hwpt_of(SID_A)?;
    // Three events before anything reads the depth-2 queue: the third is lost.
    for _ in 0..3 {
        trigger_vevent(&vm)?;
    }
    let state = vm.relay.clone().ok_or("no fault relay")?;
    let relay = FaultRelay::start(
        state,
        Arc::new(GuestEventq(vm.rig.state.clone())),
        Arc::new(|| {}),
    )
    .map_err(|e| err("start the fault relay", e))?;
    let result = exercise(&vm);
    relay.stop();
    let detail = result?;
    vm.finish()?;
    Ok(detail)
}

fn exercise(vm: &NestedVm) -> Check {
    let events = events(vm)?;
    let (median, answers) = page_requests(vm)?;
    let detach = detach_with_pending(vm)?;
    Ok(format!(
        "{events}; rounds={ROUNDS} answers_accepted={answers} \
         round_trip_median_us={median:.1}; {detach}"
    ))
}

/// vEVENTQ events arrive as fault records of the endpoint; the overflow's loss comes as
/// a lost-events record before the next event.
fn events(vm: &NestedVm) -> Check {
    let first = wait_records(vm, 2)?;
    let bad_config = |r: &Record| r.reason == fault_reason::BAD_CONFIG && r.endpoint == SID_A;
    if !first.iter().all(bad_config) {
        return Err(format!("events arrived as {first:?}"));
    }
    trigger_vevent(vm)?;
    let next = wait_records(vm, 2)?;
    match next.as_slice() {
        [lost, event]
            if lost.reason == FAULT_R_UNKNOWN && lost.endpoint == SID_A && bad_config(event) => {}
        other => {
            return Err(format!(
                "after the overflow: {other:?}, want a lost-events record, then the event"
            ))
        }
    }
    Ok("vevents: depth=2 triggers=3+1 records=2+lost+1".into())
}

/// Page requests through the relay to the responder, each answered SUCCESS through
/// PAGE_RESP and accepted by the kernel; the round trip timed.
fn page_requests(vm: &NestedVm) -> Result<(f64, usize), String> {
    let mut round_trips = Vec::with_capacity(ROUNDS as usize);
    for round in 0..ROUNDS {
        let group = round % 512;
        let address = 0x10_0000 + 0x1000 * u64::from(round);
        let start = Instant::now();
        trigger_page_request(vm, group, address)?;
        let [r] = wait_records(vm, 1)?[..] else {
            return Err(format!("round {round}: more than one record"));
        };
        let want_flags = FAULT_F_PASID | FAULT_F_LAST_PAGE;
        if r.reason != fault_reason::PAGE_REQUEST
            || r.endpoint != SID_A
            || r.pasid != PASID
            || r.group != group
            || r.address != address
            || r.flags & want_flags != want_flags
        {
            return Err(format!("round {round}: record {r:?}"));
        }
        let status = vm.send(&page_resp(SID_A, Some(PASID), group, 0));
        round_trips.push(start.elapsed());
        expect(&format!("round {round}: PAGE_RESP"), status, Status::Ok)?;
    }
    let again = vm.send(&page_resp(SID_A, Some(PASID), 0, 0));
    expect("a second PAGE_RESP for a group", again, Status::NoEnt)?;
    let answers = vm.host.answers.lock().unwrap().clone();
    let refused: Vec<&String> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    if answers.len() != ROUNDS as usize || !refused.is_empty() {
        return Err(format!(
            "{} answers reached the kernel, {} refused ({:?})",
            answers.len(),
            refused.len(),
            refused.first()
        ));
    }
    round_trips.sort_unstable();
    let median = round_trips[round_trips.len() / 2].as_secs_f64() * 1e6;
    Ok((median, answers.len()))
}

/// Requests pending when the endpoint is detached: the kernel answers them INVALID on
/// its own (their cookies are no longer outstanding), and the relay forgets them, so the
/// guest's late answers change nothing.
fn detach_with_pending(vm: &NestedVm) -> Check {
    let state = vm.relay.as_ref().ok_or("no fault relay")?;
    let before = state.counters();
    let cookies_before = vm.host.cookies.lock().unwrap().len();
    for g in 0..PENDING {
        trigger_page_request(vm, 400 + g, 0x20_0000 + 0x1000 * u64::from(g))?;
    }
    wait_records(vm, PENDING as usize)?;
    let pending: Vec<u32> = vm.host.cookies.lock().unwrap()[cookies_before..].to_vec();
    if pending.len() != PENDING as usize {
        return Err(format!("{} cookies read, want {PENDING}", pending.len()));
    }
    expect("DETACH a", vm.send(&detach(1, SID_A, 0)), Status::Ok)?;
    let after = state.counters();
    let dropped = after.dropped - before.dropped;
    if dropped != u64::from(PENDING) {
        return Err(format!(
            "the relay dropped {dropped} groups at detach, want {PENDING}"
        ));
    }
    for g in 0..PENDING {
        let late = vm.send(&page_resp(SID_A, Some(PASID), 400 + g, 0));
        expect("a late PAGE_RESP after DETACH", late, Status::NoEnt)?;
    }
    let answers = vm.host.answers.lock().unwrap().len();
    if answers != ROUNDS as usize {
        return Err(format!(
            "{} answers went to the kernel after DETACH",
            answers - ROUNDS as usize
        ));
    }
    // The kernel answered them itself: it knows none of the cookies any more.
    for &cookie in &pending {
        match vm.nested.page_response(cookie, PageResponseCode::Success) {
            Err(NestedError::UnknownCookie(_)) => {}
            other => {
                return Err(format!(
                    "cookie {cookie} after DETACH: {other:?}, want the kernel's EINVAL"
                ))
            }
        }
    }
    Ok(format!(
        "detach: pending={PENDING} answered_by_kernel={PENDING} dropped_by_relay={dropped}"
    ))
}

use std::thread;
use std::time::{Duration, Instant};

use super::*;
use crate::host_iommu::smmuv3::{DeviceEffect, DeviceNotifier, PriResponse};

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

#[test]
fn an_answered_group_frees_its_index() {
    let r = PageResponses::new();
    let g = r.reserve(Some(3)).unwrap();
    r.respond(Some(3), g, true);
    assert_eq!(r.wait(&[g], soon(), r.epoch()), [GroupOutcome::Success]);
    assert_eq!(r.outstanding(), 0);
    r.respond(Some(3), g, true);
    assert_eq!(r.unexpected_responses(), 1, "answered once");
}

#[test]
fn a_response_for_another_pasid_is_unexpected() {
    let r = PageResponses::new();
    let g = r.reserve(Some(1)).unwrap();
    r.respond(Some(2), g, true);
    r.respond(None, g, false);
    assert_eq!(r.unexpected_responses(), 2);
    let outcome = r.wait(&[g], Instant::now(), r.epoch());
    assert_eq!(outcome, [GroupOutcome::TimedOut]);
}

#[test]
fn a_timed_out_index_stays_taken_until_its_late_answer() {
    let r = PageResponses::new();
    let g = r.reserve(None).unwrap();
    let outcome = r.wait(&[g], Instant::now() + Duration::from_millis(5), r.epoch());
    assert_eq!(outcome, [GroupOutcome::TimedOut]);
    assert_eq!(r.outstanding(), 1);
    for _ in 1..PRG_INDICES {
        assert_ne!(r.reserve(None), Some(g));
    }
    assert_eq!(r.reserve(None), None, "every index outstanding");
    r.respond(None, g, true);
    assert_eq!(r.reserve(None), Some(g));
}

#[test]
fn abandon_ends_a_wait_at_once() {
    let r = PageResponses::new();
    let g = r.reserve(None).unwrap();
    let epoch = r.epoch();
    let waiter = {
        let r = r.clone();
        thread::spawn(move || {
            let start = Instant::now();
            (
                r.wait(&[g], Instant::now() + Duration::from_secs(30), epoch),
                start.elapsed(),
            )
        })
    };
    thread::sleep(Duration::from_millis(20));
    r.abandon();
    let (outcome, took) = waiter.join().unwrap();
    assert_eq!(outcome, [GroupOutcome::Abandoned]);
    assert!(took < Duration::from_secs(10), "{took:?}");
    // A wait of the old epoch ends at once too.
    let h = r.reserve(None).unwrap();
    assert_eq!(r.wait(&[h], soon(), epoch), [GroupOutcome::Abandoned]);
}

#[test]
fn the_router_hands_each_response_to_its_stream() {
    let router = PageResponseRouter::new();
    let a = router.attach(8);
    let b = router.attach(9);
    let ga = a.reserve(Some(1)).unwrap();
    let gb = b.reserve(Some(1)).unwrap();
    router.notify(DeviceEffect::PageResponse {
        sid: 9,
        ssid: Some(1),
        group: gb,
        response: PriResponse::Deny,
    });
    router.notify(DeviceEffect::PageResponse {
        sid: 8,
        ssid: Some(1),
        group: ga,
        response: PriResponse::Success,
    });
    assert_eq!(b.wait(&[gb], soon(), b.epoch()), [GroupOutcome::Failure]);
    assert_eq!(a.wait(&[ga], soon(), a.epoch()), [GroupOutcome::Success]);
    router.notify(DeviceEffect::PageResponse {
        sid: 10,
        ssid: None,
        group: 0,
        response: PriResponse::Success,
    });
}

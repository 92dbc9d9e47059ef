//! Fault records waiting for the eventq, rate-limited so a guest that keeps faulting cannot
//! flood itself (or the VMM) with events.
//!
//! A token bucket admits bursts of `burst` records and then `per_second` records a second;
//! admitted records wait in a queue of at most `max_pending` until the driver posts eventq
//! buffers. Everything refused on the way is counted.

use std::collections::VecDeque;
use std::time::Instant;

use super::protocol::FaultRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultRateLimit {
    pub burst: u32,
    pub per_second: u32,
    pub max_pending: usize,
}

impl Default for FaultRateLimit {
    fn default() -> Self {
        Self {
            burst: 64,
            per_second: 1000,
            max_pending: 256,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FaultCounters {
    pub reported: u64,
    pub delivered: u64,
    /// Refused by the token bucket.
    pub rate_limited: u64,
    /// Refused because the pending queue was full.
    pub overflowed: u64,
}

#[derive(Debug)]
pub struct FaultQueue {
    limit: FaultRateLimit,
    tokens: f64,
    refilled_at: Instant,
    pending: VecDeque<FaultRecord>,
    counters: FaultCounters,
}

impl FaultQueue {
    pub fn new(limit: FaultRateLimit) -> Self {
        Self::new_at(limit, Instant::now())
    }

    pub fn new_at(limit: FaultRateLimit, now: Instant) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.burst),
            refilled_at: now,
            pending: VecDeque::new(),
            counters: FaultCounters::default(),
        }
    }

    /// Queues `record` if the rate allows; returns whether it was queued.
    pub fn report(&mut self, record: FaultRecord) -> bool {
        self.report_at(record, Instant::now())
    }

    pub fn report_at(&mut self, record: FaultRecord, now: Instant) -> bool {
        self.counters.reported += 1;
        self.refill(now);
        if self.tokens < 1.0 {
            self.counters.rate_limited += 1;
            return false;
        }
        if self.pending.len() >= self.limit.max_pending {
            self.counters.overflowed += 1;
            return false;
        }
        self.tokens -= 1.0;
        self.pending.push_back(record);
        true
    }

    /// Queues a page-request record if the pending queue has room; returns whether it was
    /// queued. Not rate-limited: the device's PRI allocation and the relay's limit on
    /// outstanding groups bound them, and one refused fails its group.
    pub fn report_page_request(&mut self, record: FaultRecord) -> bool {
        self.counters.reported += 1;
        if self.pending.len() >= self.limit.max_pending {
            self.counters.overflowed += 1;
            return false;
        }
        self.pending.push_back(record);
        true
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.refilled_at = now.max(self.refilled_at);
        self.tokens = (self.tokens + elapsed * f64::from(self.limit.per_second))
            .min(f64::from(self.limit.burst));
    }

    pub fn pop(&mut self) -> Option<FaultRecord> {
        let record = self.pending.pop_front()?;
        self.counters.delivered += 1;
        Some(record)
    }

    /// Puts back a record that found no buffer, keeping its place at the front.
    pub fn unpop(&mut self, record: FaultRecord) {
        self.counters.delivered -= 1;
        self.pending.push_front(record);
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    pub fn counters(&self) -> FaultCounters {
        self.counters
    }

    pub fn clear(&mut self) {
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn record(address: u64) -> FaultRecord {
        FaultRecord {
            reason: 2,
            flags: 0,
            endpoint: 1,
            address,
            pasid: None,
            group: None,
        }
    }

    #[test]
    fn a_burst_is_admitted_then_the_rest_is_rate_limited_and_counted() {
        let t0 = Instant::now();
        let limit = FaultRateLimit {
            burst: 4,
            per_second: 10,
            max_pending: 100,
        };
        let mut q = FaultQueue::new_at(limit, t0);
        let admitted = (0..1000).filter(|&i| q.report_at(record(i), t0)).count();
        assert_eq!(admitted, 4);
        assert_eq!(q.counters().rate_limited, 996);
        // 100 ms later one more token has arrived.
        let later = t0 + Duration::from_millis(100);
        assert!(q.report_at(record(9), later));
        assert!(!q.report_at(record(10), later));
        assert_eq!(q.pending(), 5);
    }

    #[test]
    fn tokens_never_exceed_the_burst() {
        let t0 = Instant::now();
        let limit = FaultRateLimit {
            burst: 2,
            per_second: 1000,
            max_pending: 100,
        };
        let mut q = FaultQueue::new_at(limit, t0);
        let later = t0 + Duration::from_secs(3600);
        let admitted = (0..10).filter(|&i| q.report_at(record(i), later)).count();
        assert_eq!(admitted, 2);
    }

    #[test]
    fn page_requests_pass_the_rate_limit_but_not_the_pending_bound() {
        let t0 = Instant::now();
        let limit = FaultRateLimit {
            burst: 1,
            per_second: 0,
            max_pending: 5,
        };
        let mut q = FaultQueue::new_at(limit, t0);
        assert!(q.report_at(record(0), t0));
        assert!(!q.report_at(record(1), t0), "rate-limited");
        let queued = (2..10)
            .filter(|&i| q.report_page_request(record(i)))
            .count();
        assert_eq!(queued, 4);
        assert_eq!(q.counters().overflowed, 4);
        assert_eq!(q.pending(), 5);
    }

    #[test]
    fn the_pending_queue_is_bounded() {
        let t0 = Instant::now();
        let limit = FaultRateLimit {
            burst: 100,
            per_second: 0,
            max_pending: 3,
        };
        let mut q = FaultQueue::new_at(limit, t0);
        let admitted = (0..10).filter(|&i| q.report_at(record(i), t0)).count();
        assert_eq!(admitted, 3);
        assert_eq!(q.counters().overflowed, 7);
        assert_eq!(q.pop(), Some(record(0)));
        q.unpop(record(0));
        assert_eq!(q.pop(), Some(record(0)));
        assert_eq!(q.counters().delivered, 1);
    }
}

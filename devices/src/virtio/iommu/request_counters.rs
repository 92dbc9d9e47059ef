//! The virtio-iommu's requests by type and by the status they were answered with, for the
//! VMM's metrics: counted by the request path with relaxed atomic adds, read from any
//! thread.

use std::sync::atomic::{AtomicU64, Ordering};

use super::protocol::{request_type, Status};
use super::request::Answer;

/// The request types counted, by the head's type byte; anything else is `other`.
pub const KINDS: [&str; 6] = ["attach", "detach", "map", "unmap", "probe", "other"];
/// The statuses counted, in the spec's order; `unanswered` is a request the device could
/// not answer at all (no room for the tail, or an unreadable head).
pub const STATUSES: [&str; 10] = [
    "ok",
    "ioerr",
    "unsupp",
    "deverr",
    "inval",
    "range",
    "noent",
    "fault",
    "nomem",
    "unanswered",
];

#[derive(Debug, Default)]
pub struct RequestCounters {
    by_kind: [AtomicU64; KINDS.len()],
    by_status: [AtomicU64; STATUSES.len()],
}

/// The counters at one moment, in the orders of [`KINDS`] and [`STATUSES`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub by_kind: [u64; KINDS.len()],
    pub by_status: [u64; STATUSES.len()],
}

fn kind_index(kind: Option<u8>) -> usize {
    match kind {
        Some(request_type::ATTACH) => 0,
        Some(request_type::DETACH) => 1,
        Some(request_type::MAP) => 2,
        Some(request_type::UNMAP) => 3,
        Some(request_type::PROBE) => 4,
        _ => 5,
    }
}

fn status_index(answer: &Answer) -> usize {
    match answer {
        Answer::Status { status, .. } => match status {
            Status::Ok => 0,
            Status::IoErr => 1,
            Status::Unsupp => 2,
            Status::DevErr => 3,
            Status::Inval => 4,
            Status::Range => 5,
            Status::NoEnt => 6,
            Status::Fault => 7,
            Status::NoMem => 8,
        },
        Answer::Nothing => 9,
    }
}

impl RequestCounters {
    /// Counts one request whose head's type byte is `kind` (none when it had no head).
    pub fn count(&self, kind: Option<u8>, answer: &Answer) {
        self.by_kind[kind_index(kind)].fetch_add(1, Ordering::Relaxed);
        self.by_status[status_index(answer)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> RequestCounts {
        RequestCounts {
            by_kind: self.by_kind.each_ref().map(|c| c.load(Ordering::Relaxed)),
            by_status: self.by_status.each_ref().map(|c| c.load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_request_counts_once_by_type_and_once_by_status() {
        let counters = RequestCounters::default();
        let ok = Answer::Status {
            status: Status::Ok,
            properties: None,
        };
        let range = Answer::Status {
            status: Status::Range,
            properties: None,
        };
        counters.count(Some(request_type::MAP), &ok);
        counters.count(Some(request_type::MAP), &range);
        counters.count(Some(request_type::PROBE), &ok);
        counters.count(Some(0x7f), &Answer::Nothing);
        counters.count(None, &Answer::Nothing);
        let counts = counters.snapshot();
        assert_eq!(counts.by_kind, [0, 0, 2, 0, 1, 2]);
        assert_eq!(counts.by_status, [2, 0, 0, 0, 0, 1, 0, 0, 0, 2]);
    }
}

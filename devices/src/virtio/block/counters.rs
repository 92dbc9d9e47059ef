//! What a virtio-blk device has done, for the VMM's metrics: written by the device's worker
//! with relaxed atomic adds, read from any thread.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct BlockCounters {
    requests: AtomicU64,
    read_bytes: AtomicU64,
    written_bytes: AtomicU64,
    /// Requests answered with an error status, or not answerable at all.
    errors: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockCounts {
    pub requests: u64,
    pub read_bytes: u64,
    pub written_bytes: u64,
    pub errors: u64,
}

impl BlockCounters {
    pub(super) fn request(&self, ok: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn read(&self, bytes: u32) {
        self.read_bytes
            .fetch_add(u64::from(bytes), Ordering::Relaxed);
    }

    pub(super) fn written(&self, bytes: u32) {
        self.written_bytes
            .fetch_add(u64::from(bytes), Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> BlockCounts {
        BlockCounts {
            requests: self.requests.load(Ordering::Relaxed),
            read_bytes: self.read_bytes.load(Ordering::Relaxed),
            written_bytes: self.written_bytes.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

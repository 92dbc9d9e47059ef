//! What a device has done, for the VMM's metrics: requests, bytes each way and errors,
//! written by the device's worker with relaxed atomic adds, read from any thread.
//!
//! What counts as a request and which way bytes go is each device's to say: for virtio-blk
//! `read_bytes` come from the image and `written_bytes` go to it; for virtio-rng and the
//! virtio-console's receive queue `read_bytes` are what the guest was given; for the
//! console's transmit queue `written_bytes` are what the guest sent; for the DMA engine
//! they are what its jobs read from and wrote to guest memory.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct IoCounters {
    requests: AtomicU64,
    read_bytes: AtomicU64,
    written_bytes: AtomicU64,
    /// Requests answered with an error, or not answerable at all.
    errors: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounts {
    pub requests: u64,
    pub read_bytes: u64,
    pub written_bytes: u64,
    pub errors: u64,
}

impl IoCounters {
    pub fn request(&self, ok: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn read(&self, bytes: u64) {
        self.read_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn written(&self, bytes: u64) {
        self.written_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> IoCounts {
        IoCounts {
            requests: self.requests.load(Ordering::Relaxed),
            read_bytes: self.read_bytes.load(Ordering::Relaxed),
            written_bytes: self.written_bytes.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up() {
        let counters = IoCounters::default();
        counters.request(true);
        counters.request(false);
        counters.read(512);
        counters.written(4096);
        counters.written(1);
        assert_eq!(
            counters.snapshot(),
            IoCounts {
                requests: 2,
                read_bytes: 512,
                written_bytes: 4097,
                errors: 1,
            }
        );
    }
}

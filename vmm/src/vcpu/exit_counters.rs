//! How many exits of each kind every vCPU has taken, for the API's metrics. One relaxed
//! atomic add per exit: the vCPU thread is the only writer of its row.

use std::sync::atomic::{AtomicU64, Ordering};

use super::flight_recorder::ExitKind;

pub struct ExitCounters {
    /// One row per vCPU, one counter per [`ExitKind::ALL`] entry.
    rows: Vec<[AtomicU64; ExitKind::ALL.len()]>,
}

impl ExitCounters {
    pub fn new(vcpus: usize) -> Self {
        Self {
            rows: (0..vcpus)
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
        }
    }

    pub fn count(&self, vcpu: usize, kind: ExitKind) {
        if let Some(row) = self.rows.get(vcpu) {
            row[kind.index()].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Per vCPU, each kind's name and count.
    pub fn snapshot(&self) -> Vec<Vec<(&'static str, u64)>> {
        self.rows
            .iter()
            .map(|row| {
                ExitKind::ALL
                    .iter()
                    .map(|kind| (kind.name(), row[kind.index()].load(Ordering::Relaxed)))
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_kind_of_each_vcpu_apart() {
        let counters = ExitCounters::new(2);
        counters.count(0, ExitKind::IoOut);
        counters.count(0, ExitKind::IoOut);
        counters.count(1, ExitKind::MmioRead);
        counters.count(7, ExitKind::MmioRead);
        let snapshot = counters.snapshot();
        assert_eq!(snapshot.len(), 2);
        let get = |vcpu: usize, name: &str| {
            snapshot[vcpu]
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, c)| *c)
        };
        assert_eq!(get(0, "io-out"), Some(2));
        assert_eq!(get(0, "mmio-read"), Some(0));
        assert_eq!(get(1, "mmio-read"), Some(1));
    }
}

//! A host IOMMU that only records what it is asked, for tests of the code above it.

use std::io;
use std::sync::Mutex;

use super::{DmaAccess, HostIommu, HostIommuError, IovaRange};

/// One call a [`FakeHostIommu`] received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostCall {
    Map {
        iova: u64,
        host_addr: u64,
        len: u64,
        access: DmaAccess,
    },
    Unmap {
        iova: u64,
        len: u64,
    },
}

#[derive(Debug, Default)]
struct Record {
    calls: Vec<HostCall>,
    maps_seen: usize,
}

#[derive(Debug)]
pub struct FakeHostIommu {
    ranges: Vec<IovaRange>,
    /// The 1-based number of the `map` call that fails, if any.
    fail_map: Option<usize>,
    record: Mutex<Record>,
}

impl FakeHostIommu {
    /// A back-end translating every 48-bit IOVA.
    pub fn new() -> Self {
        Self::with_ranges(vec![IovaRange {
            start: 0,
            last: (1 << 48) - 1,
        }])
    }

    pub fn with_ranges(ranges: Vec<IovaRange>) -> Self {
        Self {
            ranges,
            fail_map: None,
            record: Mutex::new(Record::default()),
        }
    }

    /// The `n`th `map` call (counting from 1) fails with ENOMEM, and records nothing.
    pub fn failing_map(mut self, n: usize) -> Self {
        self.fail_map = Some(n);
        self
    }

    pub fn calls(&self) -> Vec<HostCall> {
        self.record.lock().unwrap().calls.clone()
    }

    /// What is mapped now, as (iova, len) pairs in IOVA order, from the calls so far.
    pub fn mapped(&self) -> Vec<(u64, u64)> {
        let mut mapped: Vec<(u64, u64)> = Vec::new();
        for call in self.calls() {
            match call {
                HostCall::Map { iova, len, .. } => mapped.push((iova, len)),
                HostCall::Unmap { iova, len } => {
                    let last = iova + (len - 1);
                    mapped.retain(|&(s, l)| s > last || s + (l - 1) < iova);
                }
            }
        }
        mapped.sort_unstable();
        mapped
    }
}

impl Default for FakeHostIommu {
    fn default() -> Self {
        Self::new()
    }
}

impl HostIommu for FakeHostIommu {
    unsafe fn map(
        &self,
        iova: u64,
        host_addr: u64,
        len: u64,
        access: DmaAccess,
    ) -> Result<(), HostIommuError> {
        let mut record = self.record.lock().unwrap();
        record.maps_seen += 1;
        if Some(record.maps_seen) == self.fail_map {
            return Err(HostIommuError::Map {
                iova,
                len,
                source: io::Error::from_raw_os_error(libc::ENOMEM),
            });
        }
        record.calls.push(HostCall::Map {
            iova,
            host_addr,
            len,
            access,
        });
        Ok(())
    }

    fn unmap(&self, iova: u64, len: u64) -> Result<(), HostIommuError> {
        self.record
            .lock()
            .unwrap()
            .calls
            .push(HostCall::Unmap { iova, len });
        Ok(())
    }

    fn iova_ranges(&self) -> Result<Vec<IovaRange>, HostIommuError> {
        Ok(self.ranges.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nth_map_fails_and_unmaps_clear_what_they_cover() {
        let fake = FakeHostIommu::new().failing_map(2);
        // SAFETY (all three): the fake only records the addresses.
        unsafe { fake.map(0x1000, 0xa000, 0x1000, DmaAccess::READ_WRITE) }.unwrap();
        let err = unsafe { fake.map(0x2000, 0xb000, 0x1000, DmaAccess::READ_WRITE) }.unwrap_err();
        assert!(err.is_out_of_memory());
        unsafe { fake.map(0x3000, 0xc000, 0x1000, DmaAccess::READ_WRITE) }.unwrap();
        assert_eq!(fake.mapped(), vec![(0x1000, 0x1000), (0x3000, 0x1000)]);
        fake.unmap(0, 0x2000).unwrap();
        assert_eq!(fake.mapped(), vec![(0x3000, 0x1000)]);
    }
}

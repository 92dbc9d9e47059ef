//! The translations a device's IOTLB holds: non-overlapping IOVA ranges, each with its
//! guest-physical start and permissions, in an ordered map.
//!
//! vm-memory's `Iotlb` answers a lookup with three range-map searches and allocates on a
//! miss. Here a small direct-mapped cache by 4 KiB page, in front of the map, answers the
//! common access (one buffer inside one mapping) with one comparison, and a miss costs one
//! map search; that is what makes translated DMA cost what untranslated DMA costs. The cache
//! is written only when entries change, so lookups stay read-only under the IOTLB's read
//! lock. The map (not a sorted array) keeps inserts and removals O(log n) when a guest keeps
//! thousands of mappings live, as Linux's lazy mode does.

use std::collections::BTreeMap;

use vm_memory::Permissions;

/// One cached translation: `[start, last]` -> `gpa`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlbEntry {
    pub start: u64,
    /// Inclusive.
    pub last: u64,
    pub gpa: u64,
    pub access: Permissions,
}

impl TlbEntry {
    /// The guest-physical address of `iova`, which the entry must contain.
    pub fn gpa_of(&self, iova: u64) -> u64 {
        self.gpa.wrapping_add(iova - self.start)
    }
}

/// Entries after which the IOTLB starts over, so a guest with many mappings cannot grow it
/// without bound.
const MAX_ENTRIES: usize = 4096;
const CACHE_SLOTS: usize = 256;
const PAGE_SHIFT: u32 = 12;

/// `Permissions::allow`, which vm-memory does not inline across crates.
#[inline]
fn allows(granted: Permissions, wanted: Permissions) -> bool {
    granted as u8 & wanted as u8 == wanted as u8
}

/// Fibonacci hashing of the page number: rings and buffers at power-of-two distances (page
/// 1 and page 0x201, say) would share a slot if the page number were used as is.
#[inline]
fn slot(iova: u64) -> usize {
    ((iova >> PAGE_SHIFT).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - CACHE_SLOTS.ilog2()))
        as usize
}

#[derive(Debug)]
pub struct TlbEntries {
    /// By `start`; no two overlap.
    by_start: BTreeMap<u64, TlbEntry>,
    /// Slot `slot(page)` may hold the entry containing that page.
    cache: [Option<TlbEntry>; CACHE_SLOTS],
}

impl Default for TlbEntries {
    fn default() -> Self {
        Self {
            by_start: BTreeMap::new(),
            cache: [None; CACHE_SLOTS],
        }
    }
}

impl TlbEntries {
    /// The one entry holding all of `[iova, iova + len)` (len > 0, no overflow) with
    /// `access`, if there is one: the common case, answered from the cache when it can be.
    #[inline]
    pub fn single(&self, iova: u64, len: u64, access: Permissions) -> Option<&TlbEntry> {
        let last = iova + (len - 1);
        let fits = |e: &&TlbEntry| e.start <= iova && e.last >= last && allows(e.access, access);
        if let Some(e) = self.cache[slot(iova)].as_ref().filter(fits) {
            return Some(e);
        }
        self.find(iova).filter(fits)
    }

    /// The entry containing `iova`, if any.
    #[inline]
    pub fn find(&self, iova: u64) -> Option<&TlbEntry> {
        self.by_start
            .range(..=iova)
            .next_back()
            .map(|(_, e)| e)
            .filter(|e| e.last >= iova)
    }

    /// Whether `[iova, iova + len)` is covered for `access`; `iova + len` must not overflow.
    pub fn covers(&self, iova: u64, len: u64, access: Permissions) -> bool {
        if len == 0 {
            return true;
        }
        let last = iova + (len - 1);
        let mut cursor = iova;
        loop {
            let Some(e) = self.find(cursor) else {
                return false;
            };
            if !allows(e.access, access) {
                return false;
            }
            if e.last >= last {
                return true;
            }
            cursor = e.last + 1;
        }
    }

    /// Adds `[start, last] -> gpa`, replacing whatever overlapped it.
    pub fn insert(&mut self, start: u64, last: u64, gpa: u64, access: Permissions) {
        if start > last {
            return;
        }
        if self.by_start.len() >= MAX_ENTRIES {
            self.clear();
        }
        self.remove(start, last);
        let entry = TlbEntry {
            start,
            last,
            gpa,
            access,
        };
        self.by_start.insert(start, entry);
        let pages = (last >> PAGE_SHIFT) - (start >> PAGE_SHIFT);
        if pages >= CACHE_SLOTS as u64 {
            self.cache = [Some(entry); CACHE_SLOTS];
        } else {
            for page in (start >> PAGE_SHIFT)..=(last >> PAGE_SHIFT) {
                self.cache[slot(page << PAGE_SHIFT)] = Some(entry);
            }
        }
    }

    /// Drops every entry overlapping `[start, last]`.
    pub fn remove(&mut self, start: u64, last: u64) {
        // Entries do not overlap: those overlapping the range are the ones starting at or
        // before `last`, walking down while they still reach `start`.
        let doomed: Vec<u64> = self
            .by_start
            .range(..=last)
            .rev()
            .take_while(|(_, e)| e.last >= start)
            .map(|(&s, _)| s)
            .collect();
        if doomed.is_empty() {
            return;
        }
        for s in doomed {
            self.by_start.remove(&s);
        }
        for cached in &mut self.cache {
            if cached.is_some_and(|e| e.start <= last && e.last >= start) {
                *cached = None;
            }
        }
    }

    pub fn clear(&mut self) {
        self.by_start.clear();
        self.cache = [None; CACHE_SLOTS];
    }

    pub fn len(&self) -> usize {
        self.by_start.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_start.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW: Permissions = Permissions::ReadWrite;

    #[test]
    fn lookups_coverage_and_replacement() {
        let mut t = TlbEntries::default();
        t.insert(0x1000, 0x1fff, 0x8000, RW);
        t.insert(0x2000, 0x2fff, 0x4000, Permissions::Read);
        assert_eq!(t.find(0x1800).unwrap().gpa_of(0x1800), 0x8800);
        assert!(t.find(0xfff).is_none() && t.find(0x3000).is_none());
        assert!(t.covers(0x1ff0, 0x20, Permissions::Read));
        assert!(!t.covers(0x1ff0, 0x20, Permissions::Write));
        assert!(!t.covers(0x2ff0, 0x20, Permissions::Read));
        assert!(t.covers(0x5000, 0, Permissions::Write));
        assert_eq!(t.single(0x1ff0, 0x10, RW).map(|e| e.gpa), Some(0x8000));
        assert_eq!(t.single(0x1ff0, 0x20, Permissions::Read), None);
        // An overlapping insert replaces both it overlaps, in the cache too.
        t.insert(0x1800, 0x27ff, 0, RW);
        assert_eq!(t.len(), 1);
        assert_eq!(t.single(0x1000, 1, Permissions::Read), None);
        assert_eq!(t.single(0x2000, 8, RW).map(|e| e.start), Some(0x1800));
        t.remove(0x2700, 0x2700);
        assert!(t.is_empty());
        assert_eq!(t.single(0x2000, 8, Permissions::Read), None);
        // Pages that share a cache slot: the binary search still finds both.
        t.insert(0x1000, 0x1fff, 0x1000, RW);
        t.insert(0x41000, 0x41fff, 0x2000, RW);
        assert_eq!(t.single(0x1008, 8, RW).map(|e| e.gpa), Some(0x1000));
        assert_eq!(t.single(0x41008, 8, RW).map(|e| e.gpa), Some(0x2000));
        t.clear();
        t.insert(0, u64::MAX, 0, RW);
        assert!(t.covers(u64::MAX - 1, 1, RW));
        t.remove(u64::MAX, u64::MAX);
        assert!(t.is_empty());
    }
}

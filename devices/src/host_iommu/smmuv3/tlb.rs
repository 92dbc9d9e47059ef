//! The TLB: translations tagged as the architecture tags them (VMID, ASID or global, and
//! which stages made them), so each invalidation command removes exactly what it names
//! (or more, which the architecture allows, never less).
//!
//! Translations live in one ordered map per tag; a small direct-mapped cache by tag and
//! 4 KiB page in front answers repeated lookups (a nested walk asks stage 2 for the same
//! table pages over and over) without the ordered map's range search. A cache slot copies
//! an entry of one map and remembers the map's epoch; every removal from a map gives it a
//! new epoch (never reused), so a slot never answers with what its map no longer holds,
//! and an invalidation costs no scan of the cache.

use std::collections::BTreeMap;

use super::fast_hash::IntMap;
use super::translation::Translation;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlbTag {
    /// Made by stage 1 (alone or followed by stage 2): NH invalidations. `asid` is `None`
    /// for global (nG = 0) translations, which match every ASID.
    Stage1 { asid: Option<u16>, nested: bool },
    /// A stage-2 translation of an IPA (for stage-2-only streams and for nested walks).
    Stage2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    vmid: u16,
    tag: TlbTag,
}

const CACHE_SLOTS: usize = 512;

#[derive(Debug, Clone, Copy)]
struct CacheSlot {
    key: Key,
    page: u64,
    /// The epoch of the key's map when the slot was filled.
    epoch: u64,
    translation: Translation,
}

#[derive(Debug, Default)]
struct Set {
    /// By range start; ranges never overlap.
    entries: BTreeMap<u64, Translation>,
    /// Changes whenever an entry is removed.
    epoch: u64,
}

#[inline]
fn cache_slot(key: Key, page: u64) -> usize {
    let tag = match key.tag {
        TlbTag::Stage2 => 0x1_0001,
        TlbTag::Stage1 { asid, nested } => {
            u64::from(asid.unwrap_or(0)) << 2 | u64::from(asid.is_some()) << 1 | u64::from(nested)
        }
    };
    let mixed = page ^ (tag << 20).rotate_left(13) ^ u64::from(key.vmid) << 44;
    (mixed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - CACHE_SLOTS.ilog2())) as usize
}

#[derive(Debug)]
pub struct Tlb {
    sets: IntMap<Key, Set>,
    /// The next epoch to hand out.
    next_epoch: u64,
    len: usize,
    capacity: usize,
    cache: Box<[Option<CacheSlot>; CACHE_SLOTS]>,
}

impl Tlb {
    pub fn new(capacity: usize) -> Self {
        Self {
            sets: IntMap::default(),
            next_epoch: 1,
            len: 0,
            capacity: capacity.max(1),
            cache: Box::new([None; CACHE_SLOTS]),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn find(&mut self, key: Key, address: u64) -> Option<Translation> {
        let set = self.sets.get(&key)?;
        let page = address >> 12;
        let slot = cache_slot(key, page);
        if let Some(c) = &self.cache[slot] {
            if c.key == key && c.page == page && c.epoch == set.epoch {
                return Some(c.translation);
            }
        }
        let (_, t) = set.entries.range(..=address).next_back()?;
        let t = *t;
        if !t.contains(address) {
            return None;
        }
        self.cache[slot] = Some(CacheSlot {
            key,
            page,
            epoch: set.epoch,
            translation: t,
        });
        Some(t)
    }

    /// A stage-1 (or nested) translation of `va` for `asid`, or a global one.
    pub fn lookup_stage1(
        &mut self,
        vmid: u16,
        asid: u16,
        nested: bool,
        va: u64,
    ) -> Option<Translation> {
        let tag = |asid| TlbTag::Stage1 { asid, nested };
        self.find(
            Key {
                vmid,
                tag: tag(Some(asid)),
            },
            va,
        )
        .or_else(|| {
            self.find(
                Key {
                    vmid,
                    tag: tag(None),
                },
                va,
            )
        })
    }

    pub fn lookup_stage2(&mut self, vmid: u16, ipa: u64) -> Option<Translation> {
        self.find(
            Key {
                vmid,
                tag: TlbTag::Stage2,
            },
            ipa,
        )
    }

    fn new_epoch(next_epoch: &mut u64) -> u64 {
        let epoch = *next_epoch;
        *next_epoch += 1;
        epoch
    }

    /// Caches `t`, replacing whatever overlaps it under the same tag.
    pub fn insert(&mut self, vmid: u16, tag: TlbTag, t: Translation) {
        if self.len >= self.capacity {
            self.clear();
        }
        let next_epoch = &mut self.next_epoch;
        let set = self.sets.entry(Key { vmid, tag }).or_insert_with(|| Set {
            entries: BTreeMap::new(),
            epoch: Self::new_epoch(next_epoch),
        });
        let replaced = remove_overlapping(&mut set.entries, t.start, t.last);
        if replaced > 0 {
            set.epoch = Self::new_epoch(next_epoch);
        }
        set.entries.insert(t.start, t);
        self.len = self.len - replaced + 1;
    }

    /// Removes every translation under a matching tag that overlaps `[start, last]`.
    pub fn invalidate_range(
        &mut self,
        matches: impl Fn(u16, TlbTag) -> bool,
        start: u64,
        last: u64,
    ) {
        for (key, set) in self.sets.iter_mut() {
            if matches(key.vmid, key.tag) {
                let removed = remove_overlapping(&mut set.entries, start, last);
                if removed > 0 {
                    self.len -= removed;
                    set.epoch = Self::new_epoch(&mut self.next_epoch);
                }
            }
        }
    }

    /// Removes every translation under a matching tag. (A map that comes back later gets a
    /// new epoch, so slots filled from the old one stay dead.)
    pub fn invalidate(&mut self, matches: impl Fn(u16, TlbTag) -> bool) {
        let len = &mut self.len;
        self.sets.retain(|key, set| {
            let keep = !matches(key.vmid, key.tag);
            if !keep {
                *len -= set.entries.len();
            }
            keep
        });
    }

    pub fn clear(&mut self) {
        self.sets.clear();
        self.len = 0;
    }
}

/// Removes the entries of `set` overlapping `[start, last]`; returns how many.
fn remove_overlapping(set: &mut BTreeMap<u64, Translation>, start: u64, last: u64) -> usize {
    let mut removed = 0;
    if let Some((&s, t)) = set.range(..start).next_back() {
        if t.last >= start {
            set.remove(&s);
            removed += 1;
        }
    }
    while let Some((&s, _)) = set.range(start..=last).next() {
        set.remove(&s);
        removed += 1;
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host_iommu::smmuv3::access::AllowedAccesses;

    fn page(start: u64, output: u64) -> Translation {
        Translation::around(start, output, 12, AllowedAccesses::ALL)
    }

    const ASID: TlbTag = TlbTag::Stage1 {
        asid: Some(1),
        nested: false,
    };
    const GLOBAL: TlbTag = TlbTag::Stage1 {
        asid: None,
        nested: false,
    };

    #[test]
    fn lookups_respect_tags_and_globals() {
        let mut tlb = Tlb::new(16);
        tlb.insert(0, ASID, page(0x1000, 0xa000));
        tlb.insert(0, GLOBAL, page(0x2000, 0xb000));
        tlb.insert(1, TlbTag::Stage2, page(0x1000, 0xc000));
        assert_eq!(
            tlb.lookup_stage1(0, 1, false, 0x1fff).unwrap().output,
            0xa000
        );
        assert!(tlb.lookup_stage1(0, 2, false, 0x1000).is_none());
        assert_eq!(
            tlb.lookup_stage1(0, 2, false, 0x2000).unwrap().output,
            0xb000
        );
        assert!(tlb.lookup_stage1(0, 1, true, 0x1000).is_none());
        assert!(tlb.lookup_stage1(1, 1, false, 0x1000).is_none());
        assert_eq!(tlb.lookup_stage2(1, 0x1000).unwrap().output, 0xc000);
        assert!(tlb.lookup_stage2(0, 0x1000).is_none());
        assert_eq!(tlb.len(), 3);
    }

    #[test]
    fn inserts_replace_overlaps_and_ranges_invalidate_overlaps() {
        let mut tlb = Tlb::new(16);
        tlb.insert(0, ASID, page(0x1000, 0xa000));
        tlb.insert(0, ASID, page(0x3000, 0xa000));
        tlb.insert(
            0,
            ASID,
            Translation::around(0, 0x20_0000, 21, AllowedAccesses::ALL),
        );
        assert_eq!(tlb.len(), 1);
        tlb.insert(0, ASID, page(0x40_0000, 0));
        assert_eq!(
            tlb.lookup_stage1(0, 1, false, 0x1000)
                .unwrap()
                .output_of(0x1000),
            0x20_1000
        );
        tlb.invalidate_range(|_, t| t == ASID, 0x1f_f000, 0x1f_f000);
        assert_eq!(tlb.len(), 1);
        assert!(
            tlb.lookup_stage1(0, 1, false, 0x1000).is_none(),
            "not from the cache either"
        );
        assert!(tlb.lookup_stage1(0, 1, false, 0x40_0000).is_some());
        tlb.invalidate(|vmid, _| vmid == 0);
        assert!(tlb.is_empty());
        assert!(tlb.lookup_stage1(0, 1, false, 0x40_0000).is_none());
    }

    #[test]
    fn the_cache_in_front_never_outlives_its_entry() {
        let mut tlb = Tlb::new(16);
        tlb.insert(0, ASID, page(0x1000, 0xa000));
        assert_eq!(
            tlb.lookup_stage1(0, 1, false, 0x1000).unwrap().output,
            0xa000
        );
        // Replaced by an overlapping insert.
        tlb.insert(0, ASID, page(0x1000, 0xb000));
        assert_eq!(
            tlb.lookup_stage1(0, 1, false, 0x1000).unwrap().output,
            0xb000
        );
        // Its whole map removed, then the map made again with other contents.
        tlb.invalidate(|_, _| true);
        tlb.insert(0, ASID, page(0x5000, 0xc000));
        assert!(tlb.lookup_stage1(0, 1, false, 0x1000).is_none());
        // Cleared.
        assert!(tlb.lookup_stage1(0, 1, false, 0x5000).is_some());
        tlb.clear();
        tlb.insert(0, ASID, page(0x9000, 0));
        assert!(tlb.lookup_stage1(0, 1, false, 0x5000).is_none());
    }

    #[test]
    fn a_full_tlb_starts_over() {
        let mut tlb = Tlb::new(2);
        for i in 0..3 {
            tlb.insert(0, ASID, page(i << 12, 0));
        }
        assert_eq!(tlb.len(), 1);
    }
}

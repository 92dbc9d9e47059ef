//! The TLB: translations tagged as the architecture tags them (VMID, ASID or global, and
//! which stages made them), so each invalidation command removes exactly what it names
//! (or more, which the architecture allows, never less).

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

#[derive(Debug)]
pub struct Tlb {
    /// Per tag, by range start; ranges in one map never overlap.
    sets: IntMap<Key, BTreeMap<u64, Translation>>,
    len: usize,
    capacity: usize,
}

impl Tlb {
    pub fn new(capacity: usize) -> Self {
        Self {
            sets: IntMap::default(),
            len: 0,
            capacity: capacity.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn find(&self, key: Key, address: u64) -> Option<&Translation> {
        let (_, t) = self.sets.get(&key)?.range(..=address).next_back()?;
        t.contains(address).then_some(t)
    }

    /// A stage-1 (or nested) translation of `va` for `asid`, or a global one.
    pub fn lookup_stage1(
        &self,
        vmid: u16,
        asid: u16,
        nested: bool,
        va: u64,
    ) -> Option<&Translation> {
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

    pub fn lookup_stage2(&self, vmid: u16, ipa: u64) -> Option<&Translation> {
        self.find(
            Key {
                vmid,
                tag: TlbTag::Stage2,
            },
            ipa,
        )
    }

    /// Caches `t`, replacing whatever overlaps it under the same tag.
    pub fn insert(&mut self, vmid: u16, tag: TlbTag, t: Translation) {
        if self.len >= self.capacity {
            self.clear();
        }
        let set = self.sets.entry(Key { vmid, tag }).or_default();
        self.len -= remove_overlapping(set, t.start, t.last);
        set.insert(t.start, t);
        self.len += 1;
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
                self.len -= remove_overlapping(set, start, last);
            }
        }
    }

    /// Removes every translation under a matching tag.
    pub fn invalidate(&mut self, matches: impl Fn(u16, TlbTag) -> bool) {
        let len = &mut self.len;
        self.sets.retain(|key, set| {
            let keep = !matches(key.vmid, key.tag);
            if !keep {
                *len -= set.len();
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
        tlb.invalidate_range(|_, t| t == ASID, 0x1f_f000, 0x1f_f000);
        assert_eq!(tlb.len(), 1);
        assert!(tlb.lookup_stage1(0, 1, false, 0x1000).is_none());
        tlb.invalidate(|vmid, _| vmid == 0);
        assert!(tlb.is_empty());
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

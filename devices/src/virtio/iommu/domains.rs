//! Domains, endpoints and mappings, with the spec's rules for each request.
//!
//! Mappings of a domain live in a `BTreeMap` keyed by IOVA start. Mappings never overlap, so
//! the only mapping that can contain an address (or overlap a range ending at `end`) is the
//! last one starting at or before it: every lookup is O(log n).
//!
//! Each domain's mappings have their own lock. Which domains exist and which endpoint is
//! attached where sit under the outer lock (`IommuState`'s), which MAP and UNMAP only read:
//! a huge UNMAP in one domain holds off nobody's DMA but that domain's endpoints', and
//! theirs only one chunk at a time.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use vm_memory::Permissions;

use super::config::Limits;
use super::nested_protocol::VirtualSte;
use super::protocol::{Map, Status, MAP_F_READ, MAP_F_WRITE};
use crate::dma::DmaFault;

/// One contiguous piece of a translated range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaMapping {
    pub iova: u64,
    pub gpa: u64,
    pub len: u64,
    pub access: Permissions,
}

/// The region created by one MAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// Inclusive.
    pub end: u64,
    pub phys: u64,
    pub flags: u32,
}

impl Mapping {
    fn allows(&self, access: Permissions) -> bool {
        let needs_read = matches!(access, Permissions::Read | Permissions::ReadWrite);
        let needs_write = matches!(access, Permissions::Write | Permissions::ReadWrite);
        (!needs_read || self.flags & MAP_F_READ != 0)
            && (!needs_write || self.flags & MAP_F_WRITE != 0)
    }

    pub fn permissions(&self) -> Permissions {
        match (self.flags & MAP_F_READ != 0, self.flags & MAP_F_WRITE != 0) {
            (true, true) => Permissions::ReadWrite,
            (true, false) => Permissions::Read,
            (false, true) => Permissions::Write,
            (false, false) => Permissions::No,
        }
    }
}

type MappingTree = BTreeMap<u64, Mapping>;

#[derive(Debug, Default)]
struct Domain {
    bypass: bool,
    /// Table mode (nestor's extension): the guest's stage-1 configuration every endpoint
    /// of the domain shares; such a domain has no mappings.
    table: Option<VirtualSte>,
    endpoints: Vec<u32>,
    mappings: Arc<RwLock<MappingTree>>,
}

// A panic while holding a mapping lock cannot leave the tree unsafe to use.
fn read(tree: &RwLock<MappingTree>) -> RwLockReadGuard<'_, MappingTree> {
    tree.read().unwrap_or_else(|e| e.into_inner())
}

fn write(tree: &RwLock<MappingTree>) -> RwLockWriteGuard<'_, MappingTree> {
    tree.write().unwrap_or_else(|e| e.into_inner())
}

/// How an endpoint's DMA is routed right now.
#[derive(Debug)]
pub enum Route<'a> {
    /// Not an endpoint of this IOMMU.
    Unknown,
    /// Not attached to any domain.
    Unattached,
    /// Attached to a bypass domain.
    Bypass,
    /// Attached to a table-mode domain: the guest's stage 1 translates.
    Table,
    /// Attached to a domain with these mappings (read-locked while this lives).
    Mapped(RwLockReadGuard<'a, MappingTree>),
}

#[derive(Debug)]
pub struct Domains {
    limits: Limits,
    domains: HashMap<u32, Domain>,
    /// Every endpoint this IOMMU translates, and the domain it is attached to.
    endpoints: HashMap<u32, Option<u32>>,
    /// Changed by MAP and UNMAP under only the outer read lock.
    total_mappings: AtomicUsize,
}

impl Domains {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            domains: HashMap::new(),
            endpoints: HashMap::new(),
            total_mappings: AtomicUsize::new(0),
        }
    }

    pub fn add_endpoint(&mut self, endpoint: u32) {
        self.endpoints.entry(endpoint).or_insert(None);
    }

    /// Every endpoint, attached or not, in ascending order.
    pub fn endpoint_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.endpoints.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    pub fn has_endpoint(&self, endpoint: u32) -> bool {
        self.endpoints.contains_key(&endpoint)
    }

    pub fn domain_count(&self) -> usize {
        self.domains.len()
    }

    pub fn total_mappings(&self) -> usize {
        self.total_mappings.load(Ordering::Relaxed)
    }

    /// Each domain and how many mappings it holds, by domain id.
    pub fn mapping_counts(&self) -> Vec<(u32, usize)> {
        let mut counts: Vec<_> = self
            .domains
            .iter()
            .map(|(&id, d)| (id, read(&d.mappings).len()))
            .collect();
        counts.sort_unstable();
        counts
    }

    pub fn mapping_count(&self, domain: u32) -> Option<usize> {
        self.domains.get(&domain).map(|d| read(&d.mappings).len())
    }

    pub fn domain_of(&self, endpoint: u32) -> Option<u32> {
        self.endpoints.get(&endpoint).copied().flatten()
    }

    /// Forgets every domain and attachment (device reset); endpoints stay known.
    pub fn reset(&mut self) {
        self.domains.clear();
        self.total_mappings.store(0, Ordering::Relaxed);
        for domain in self.endpoints.values_mut() {
            *domain = None;
        }
    }

    /// What [`Domains::attach`] would answer, changing nothing: `Ok(true)` if it would
    /// move the endpoint, `Ok(false)` if it is already there.
    pub fn check_attach(&self, domain: u32, endpoint: u32, bypass: bool) -> Result<bool, Status> {
        let current = *self.endpoints.get(&endpoint).ok_or(Status::NoEnt)?;
        match self.domains.get(&domain) {
            Some(existing) if existing.bypass != bypass => Err(Status::Inval),
            Some(_) if current == Some(domain) => Ok(false),
            Some(_) => Ok(true),
            None => {
                let old_dies = current
                    .and_then(|old| self.domains.get(&old))
                    .is_some_and(|old| old.endpoints.len() == 1);
                if self.domains.len() - old_dies as usize >= self.limits.max_domains {
                    return Err(Status::NoMem);
                }
                Ok(true)
            }
        }
    }

    /// Attaches `endpoint` to `domain`, creating the domain, and moving the endpoint out of
    /// the domain it was in (which dies if that was its last endpoint).
    pub fn attach(&mut self, domain: u32, endpoint: u32, bypass: bool) -> Result<(), Status> {
        if !self.check_attach(domain, endpoint, bypass)? {
            return Ok(());
        }
        if let Some(old) = self.domain_of(endpoint) {
            self.leave(old, endpoint);
        }
        let entry = self.domains.entry(domain).or_insert_with(|| Domain {
            bypass,
            ..Domain::default()
        });
        entry.endpoints.push(endpoint);
        self.endpoints.insert(endpoint, Some(domain));
        Ok(())
    }

    /// Detaches `endpoint` from `domain`; INVAL when it is not attached there.
    pub fn detach(&mut self, domain: u32, endpoint: u32) -> Result<(), Status> {
        let current = *self.endpoints.get(&endpoint).ok_or(Status::NoEnt)?;
        if current != Some(domain) {
            return Err(Status::Inval);
        }
        self.leave(domain, endpoint);
        self.endpoints.insert(endpoint, None);
        Ok(())
    }

    /// `endpoint` leaves `domain`; the last one takes the domain and its mappings along.
    fn leave(&mut self, domain: u32, endpoint: u32) {
        let Some(d) = self.domains.get_mut(&domain) else {
            return;
        };
        d.endpoints.retain(|&e| e != endpoint);
        if d.endpoints.is_empty() {
            let gone = self.domains.remove(&domain).unwrap();
            let count = read(&gone.mappings).len();
            self.total_mappings.fetch_sub(count, Ordering::Relaxed);
        }
    }

    fn mappable(&self, domain: u32) -> Result<&Domain, Status> {
        let d = self.domains.get(&domain).ok_or(Status::NoEnt)?;
        if d.bypass || d.table.is_some() {
            return Err(Status::Inval);
        }
        Ok(d)
    }

    /// Adds a mapping; INVAL if it overlaps an existing one, NOMEM past a limit. Needs only
    /// the outer read lock: requests are served one at a time, so nothing else maps.
    pub fn map(&self, map: &Map) -> Result<(), Status> {
        let limits = self.limits;
        let total = self.total_mappings();
        let d = self.mappable(map.domain)?;
        let mut mappings = write(&d.mappings);
        let overlaps = mappings
            .range(..=map.virt_end)
            .next_back()
            .is_some_and(|(_, m)| m.end >= map.virt_start);
        if overlaps {
            return Err(Status::Inval);
        }
        if mappings.len() >= limits.max_mappings_per_domain || total >= limits.max_total_mappings {
            return Err(Status::NoMem);
        }
        mappings.insert(
            map.virt_start,
            Mapping {
                end: map.virt_end,
                phys: map.phys_start,
                flags: map.flags,
            },
        );
        self.total_mappings.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Removes every mapping inside `[start, end]` and returns how many. RANGE, removing
    /// nothing, if a mapping straddles either edge.
    pub fn unmap(&self, domain: u32, start: u64, end: u64) -> Result<usize, Status> {
        self.unmap_some(domain, start, end, usize::MAX)
            .map(|(removed, _)| removed)
    }

    /// Like [`Domains::unmap`], removing at most `max` mappings; says how many it removed and
    /// whether the range is now empty. The caller can release the lock between calls, so a
    /// huge UNMAP does not hold off other domains' DMA.
    pub fn unmap_some(
        &self,
        domain: u32,
        start: u64,
        end: u64,
        max: usize,
    ) -> Result<(usize, bool), Status> {
        self.unmap_some_with(domain, start, end, max, |_, _| {})
    }

    /// Like [`Domains::unmap_some`], handing each removed mapping and its start to
    /// `removed`, so a host IOMMU can drop exactly what the guest's did.
    pub fn unmap_some_with(
        &self,
        domain: u32,
        start: u64,
        end: u64,
        max: usize,
        mut removed: impl FnMut(u64, &Mapping),
    ) -> Result<(usize, bool), Status> {
        let d = self.mappable(domain)?;
        let mut mappings = write(&d.mappings);
        let straddles_start = mappings
            .range(..start)
            .next_back()
            .is_some_and(|(_, m)| m.end >= start);
        let straddles_end = mappings
            .range(start..=end)
            .next_back()
            .is_some_and(|(_, m)| m.end > end);
        if straddles_start || straddles_end {
            return Err(Status::Range);
        }
        let doomed: Vec<u64> = mappings
            .range(start..=end)
            .map(|(&s, _)| s)
            .take(max)
            .collect();
        for s in &doomed {
            if let Some(m) = mappings.remove(s) {
                removed(*s, &m);
            }
        }
        let done = mappings.range(start..=end).next().is_none();
        self.total_mappings
            .fetch_sub(doomed.len(), Ordering::Relaxed);
        Ok((doomed.len(), done))
    }

    /// Every mapping of `domain` with its start, in IOVA order (none for a bypass domain).
    pub fn mappings(&self, domain: u32) -> Vec<(u64, Mapping)> {
        self.domains.get(&domain).map_or_else(Vec::new, |d| {
            read(&d.mappings).iter().map(|(&s, m)| (s, *m)).collect()
        })
    }

    /// The IDs of every domain that exists.
    pub fn domain_ids(&self) -> Vec<u32> {
        self.domains.keys().copied().collect()
    }

    /// The endpoints attached to `domain`.
    pub fn endpoints_of(&self, domain: u32) -> Vec<u32> {
        self.domains
            .get(&domain)
            .map_or_else(Vec::new, |d| d.endpoints.clone())
    }

    /// What [`Domains::attach_table`] would answer, changing nothing: `Ok(true)` if it
    /// changes something. The extension's rules (section 3.1, 3.3): a bypass domain or one
    /// holding mappings cannot become a table-mode domain, and a domain other endpoints
    /// share keeps its configuration (theirs would change under them).
    pub fn check_attach_table(
        &self,
        domain: u32,
        endpoint: u32,
        ste: VirtualSte,
    ) -> Result<bool, Status> {
        let current = *self.endpoints.get(&endpoint).ok_or(Status::NoEnt)?;
        let Some(existing) = self.domains.get(&domain) else {
            return self.check_attach(domain, endpoint, false);
        };
        if existing.bypass || !read(&existing.mappings).is_empty() {
            return Err(Status::Inval);
        }
        let others = existing.endpoints.iter().any(|&e| e != endpoint);
        match existing.table {
            Some(words) if words == ste => Ok(current != Some(domain)),
            _ if others => Err(Status::Inval),
            _ => Ok(true),
        }
    }

    /// Puts `endpoint` in the table-mode `domain` with the configuration `ste`, creating
    /// the domain (or turning an empty map-mode one it alone holds into one).
    pub fn attach_table(
        &mut self,
        domain: u32,
        endpoint: u32,
        ste: VirtualSte,
    ) -> Result<(), Status> {
        if !self.check_attach_table(domain, endpoint, ste)? {
            return Ok(());
        }
        if let Some(old) = self.domain_of(endpoint).filter(|&d| d != domain) {
            self.leave(old, endpoint);
        }
        let entry = self.domains.entry(domain).or_default();
        entry.table = Some(ste);
        if !entry.endpoints.contains(&endpoint) {
            entry.endpoints.push(endpoint);
        }
        self.endpoints.insert(endpoint, Some(domain));
        Ok(())
    }

    /// The configuration of a table-mode domain: NOENT if it does not exist, INVAL if it
    /// is in map mode.
    pub fn table(&self, domain: u32) -> Result<VirtualSte, Status> {
        self.domains
            .get(&domain)
            .ok_or(Status::NoEnt)?
            .table
            .ok_or(Status::Inval)
    }

    /// The table-mode configuration `endpoint` translates with, if it is in such a domain.
    pub fn table_of_endpoint(&self, endpoint: u32) -> Option<VirtualSte> {
        self.domain_of(endpoint)
            .and_then(|d| self.domains.get(&d))
            .and_then(|d| d.table)
    }

    /// Every endpoint attached to a table-mode domain.
    pub fn table_endpoints(&self) -> Vec<u32> {
        self.domains
            .values()
            .filter(|d| d.table.is_some())
            .flat_map(|d| d.endpoints.iter().copied())
            .collect()
    }

    pub fn route(&self, endpoint: u32) -> Route<'_> {
        match self.endpoints.get(&endpoint) {
            None => Route::Unknown,
            Some(None) => Route::Unattached,
            Some(Some(domain)) => match self.domains.get(domain) {
                Some(d) if d.bypass => Route::Bypass,
                Some(d) if d.table.is_some() => Route::Table,
                Some(d) => Route::Mapped(read(&d.mappings)),
                None => Route::Unattached,
            },
        }
    }
}

/// The mappings that together cover `[iova, iova + len)`, each allowing `access`, in IOVA
/// order, with their start. Costs O(log n + mappings).
pub fn covering_mappings(
    mappings: &BTreeMap<u64, Mapping>,
    iova: u64,
    len: u64,
    access: Permissions,
) -> Result<Vec<(u64, Mapping)>, DmaFault> {
    let mut found = Vec::new();
    if len == 0 {
        return Ok(found);
    }
    let last = iova
        .checked_add(len - 1)
        .ok_or(DmaFault::Unmapped { iova })?;
    let mut cursor = iova;
    loop {
        let (&start, m) = mappings
            .range(..=cursor)
            .next_back()
            .filter(|(_, m)| m.end >= cursor)
            .ok_or(DmaFault::Unmapped { iova: cursor })?;
        if !m.allows(access) {
            return Err(DmaFault::Forbidden { iova: cursor });
        }
        found.push((start, *m));
        if m.end >= last {
            return Ok(found);
        }
        cursor = m.end + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Translates `[iova, iova + len)` through `mappings`, requiring `access` everywhere, and
    /// returns the pieces clipped to the range.
    pub fn translate_mapped(
        mappings: &BTreeMap<u64, Mapping>,
        iova: u64,
        len: u64,
        access: Permissions,
    ) -> Result<Vec<DmaMapping>, DmaFault> {
        let last = iova.wrapping_add(len.wrapping_sub(1));
        Ok(covering_mappings(mappings, iova, len, access)?
            .into_iter()
            .map(|(start, m)| {
                let from = start.max(iova);
                let to = m.end.min(last);
                DmaMapping {
                    iova: from,
                    gpa: m.phys + (from - start),
                    len: to - from + 1,
                    access: m.permissions(),
                }
            })
            .collect())
    }

    const RW: u32 = MAP_F_READ | MAP_F_WRITE;

    fn domains() -> Domains {
        let mut d = Domains::new(Limits::default());
        d.add_endpoint(1);
        d.add_endpoint(2);
        d
    }

    fn map_req(domain: u32, start: u64, end: u64, flags: u32) -> Map {
        Map {
            domain,
            virt_start: start,
            virt_end: end,
            phys_start: start + 0x10_0000,
            flags,
        }
    }

    /// A domain with endpoint 1 attached, as every spec example starts.
    fn attached() -> Domains {
        let mut d = domains();
        d.attach(1, 1, false).unwrap();
        d
    }

    fn map(d: &mut Domains, start: u64, end: u64) {
        d.map(&map_req(1, start, end, RW)).unwrap();
    }

    fn starts(d: &Domains) -> Vec<u64> {
        match d.route(1) {
            Route::Mapped(m) => m.keys().copied().collect(),
            other => panic!("not mapped: {other:?}"),
        }
    }

    #[test]
    fn mapping_counts_follow_maps_unmaps_and_the_domains_end() {
        let mut d = attached();
        d.attach(7, 2, false).unwrap();
        assert_eq!(d.mapping_counts(), [(1, 0), (7, 0)]);
        map(&mut d, 0, 9);
        map(&mut d, 10, 19);
        d.map(&map_req(7, 0, 9, RW)).unwrap();
        assert_eq!(d.mapping_counts(), [(1, 2), (7, 1)]);
        d.unmap(1, 0, 9).unwrap();
        assert_eq!(d.mapping_counts(), [(1, 1), (7, 1)]);
        d.detach(7, 2).unwrap();
        assert_eq!(d.mapping_counts(), [(1, 1)]);
    }

    // The seven UNMAP examples of the spec, with its literal addresses (the domain layer
    // does not check alignment).

    #[test]
    fn spec_unmap_of_nothing_succeeds() {
        let d = attached();
        assert_eq!(d.unmap(1, 0, 4), Ok(0));
    }

    #[test]
    fn spec_unmap_exact_mapping() {
        let mut d = attached();
        map(&mut d, 0, 9);
        assert_eq!(d.unmap(1, 0, 9), Ok(1));
        assert!(starts(&d).is_empty());
    }

    #[test]
    fn spec_unmap_two_adjacent_mappings_at_once() {
        let mut d = attached();
        map(&mut d, 0, 4);
        map(&mut d, 5, 9);
        assert_eq!(d.unmap(1, 0, 9), Ok(2));
        assert!(starts(&d).is_empty());
    }

    #[test]
    fn spec_unmap_that_would_split_fails_and_removes_nothing() {
        let mut d = attached();
        map(&mut d, 0, 9);
        assert_eq!(d.unmap(1, 0, 4), Err(Status::Range));
        assert_eq!(starts(&d), vec![0]);
    }

    #[test]
    fn spec_unmap_first_of_two_mappings() {
        let mut d = attached();
        map(&mut d, 0, 4);
        map(&mut d, 5, 9);
        assert_eq!(d.unmap(1, 0, 4), Ok(1));
        assert_eq!(starts(&d), vec![5]);
    }

    #[test]
    fn spec_unmap_larger_than_the_mapping() {
        let mut d = attached();
        map(&mut d, 0, 4);
        assert_eq!(d.unmap(1, 0, 9), Ok(1));
        assert!(starts(&d).is_empty());
    }

    #[test]
    fn spec_unmap_across_a_hole() {
        let mut d = attached();
        map(&mut d, 0, 4);
        map(&mut d, 10, 14);
        assert_eq!(d.unmap(1, 0, 14), Ok(2));
        assert!(starts(&d).is_empty());
    }

    #[test]
    fn unmap_straddling_the_start_fails_and_removes_nothing() {
        let mut d = attached();
        map(&mut d, 0, 9);
        map(&mut d, 10, 19);
        assert_eq!(d.unmap(1, 5, 19), Err(Status::Range));
        assert_eq!(starts(&d), vec![0, 10]);
        assert_eq!(d.total_mappings(), 2);
    }

    #[test]
    fn map_over_an_existing_mapping_is_inval() {
        let mut d = attached();
        map(&mut d, 0x1000, 0x2fff);
        for (s, e) in [(0x1000, 0x1fff), (0, 0x1000), (0x2fff, 0x3fff), (0, 0xffff)] {
            assert_eq!(d.map(&map_req(1, s, e, RW)), Err(Status::Inval), "{s:#x}");
        }
        assert_eq!(d.map(&map_req(1, 0x3000, 0x3fff, RW)), Ok(()));
        assert_eq!(d.map(&map_req(1, 0, 0xfff, RW)), Ok(()));
    }

    #[test]
    fn map_and_unmap_on_missing_domain_is_noent() {
        let d = domains();
        assert_eq!(d.map(&map_req(5, 0, 0xfff, RW)), Err(Status::NoEnt));
        assert_eq!(d.unmap(5, 0, 0xfff), Err(Status::NoEnt));
    }

    #[test]
    fn map_and_unmap_on_bypass_domain_is_inval() {
        let mut d = domains();
        d.attach(3, 1, true).unwrap();
        assert_eq!(d.map(&map_req(3, 0, 0xfff, RW)), Err(Status::Inval));
        assert_eq!(d.unmap(3, 0, 0xfff), Err(Status::Inval));
        assert!(matches!(d.route(1), Route::Bypass));
    }

    #[test]
    fn attach_with_inconsistent_bypass_flag_is_inval() {
        let mut d = domains();
        d.attach(3, 1, true).unwrap();
        assert_eq!(d.attach(3, 2, false), Err(Status::Inval));
        assert_eq!(d.domain_of(2), None);
    }

    #[test]
    fn attach_unknown_endpoint_is_noent() {
        let mut d = domains();
        assert_eq!(d.attach(1, 99, false), Err(Status::NoEnt));
        assert_eq!(d.detach(1, 99), Err(Status::NoEnt));
        assert!(matches!(d.route(99), Route::Unknown));
    }

    #[test]
    fn attach_moves_the_endpoint_and_the_old_domain_dies_with_its_mappings() {
        let mut d = attached();
        map(&mut d, 0, 0xfff);
        d.attach(2, 1, false).unwrap();
        assert_eq!(d.domain_of(1), Some(2));
        assert_eq!(d.mapping_count(1), None);
        assert_eq!(d.total_mappings(), 0);
        // Re-created empty: the old mappings are gone for good.
        d.attach(1, 1, false).unwrap();
        assert_eq!(d.mapping_count(1), Some(0));
    }

    #[test]
    fn shared_domain_survives_until_its_last_endpoint_leaves() {
        let mut d = attached();
        d.attach(1, 2, false).unwrap();
        map(&mut d, 0, 0xfff);
        d.detach(1, 1).unwrap();
        assert_eq!(d.mapping_count(1), Some(1));
        d.detach(1, 2).unwrap();
        assert_eq!(d.mapping_count(1), None);
        assert!(matches!(d.route(2), Route::Unattached));
    }

    #[test]
    fn reattach_to_the_same_domain_keeps_its_mappings() {
        let mut d = attached();
        map(&mut d, 0, 0xfff);
        d.attach(1, 1, false).unwrap();
        assert_eq!(d.mapping_count(1), Some(1));
    }

    #[test]
    fn detach_from_the_wrong_domain_is_inval() {
        let mut d = attached();
        assert_eq!(d.detach(2, 1), Err(Status::Inval));
        assert_eq!(d.detach(1, 2), Err(Status::Inval));
        assert_eq!(d.domain_of(1), Some(1));
    }

    #[test]
    fn domain_limit_answers_nomem_but_a_move_that_frees_one_succeeds() {
        let mut d = Domains::new(Limits {
            max_domains: 1,
            ..Limits::default()
        });
        d.add_endpoint(1);
        d.add_endpoint(2);
        d.attach(1, 1, false).unwrap();
        assert_eq!(d.attach(2, 2, false), Err(Status::NoMem));
        d.attach(2, 1, false).unwrap();
        assert_eq!(d.domain_count(), 1);
    }

    #[test]
    fn mapping_limits_answer_nomem() {
        let mut d = Domains::new(Limits {
            max_domains: 8,
            max_mappings_per_domain: 2,
            max_total_mappings: 3,
        });
        d.add_endpoint(1);
        d.add_endpoint(2);
        d.attach(1, 1, false).unwrap();
        d.attach(2, 2, false).unwrap();
        d.map(&map_req(1, 0, 0xfff, RW)).unwrap();
        d.map(&map_req(1, 0x1000, 0x1fff, RW)).unwrap();
        assert_eq!(d.map(&map_req(1, 0x2000, 0x2fff, RW)), Err(Status::NoMem));
        d.map(&map_req(2, 0, 0xfff, RW)).unwrap();
        assert_eq!(d.map(&map_req(2, 0x1000, 0x1fff, RW)), Err(Status::NoMem));
        d.unmap(1, 0, 0xfff).unwrap();
        d.map(&map_req(2, 0x1000, 0x1fff, RW)).unwrap();
    }

    #[test]
    fn translation_spans_adjacent_mappings() {
        let d = attached();
        d.map(&Map {
            domain: 1,
            virt_start: 0x1000,
            virt_end: 0x1fff,
            phys_start: 0x8000,
            flags: RW,
        })
        .unwrap();
        d.map(&Map {
            domain: 1,
            virt_start: 0x2000,
            virt_end: 0x2fff,
            phys_start: 0x4000,
            flags: MAP_F_READ,
        })
        .unwrap();
        let Route::Mapped(m) = d.route(1) else {
            panic!()
        };
        let pieces = translate_mapped(&m, 0x1ff0, 0x20, Permissions::Read).unwrap();
        assert_eq!(
            pieces,
            vec![
                DmaMapping {
                    iova: 0x1ff0,
                    gpa: 0x8ff0,
                    len: 0x10,
                    access: Permissions::ReadWrite
                },
                DmaMapping {
                    iova: 0x2000,
                    gpa: 0x4000,
                    len: 0x10,
                    access: Permissions::Read
                },
            ]
        );
        assert_eq!(
            translate_mapped(&m, 0x1ff0, 0x20, Permissions::Write),
            Err(DmaFault::Forbidden { iova: 0x2000 })
        );
        assert_eq!(
            translate_mapped(&m, 0x2ff0, 0x20, Permissions::Read),
            Err(DmaFault::Unmapped { iova: 0x3000 })
        );
        assert_eq!(
            translate_mapped(&m, 0xff0, 0x20, Permissions::Read),
            Err(DmaFault::Unmapped { iova: 0xff0 })
        );
        assert_eq!(
            translate_mapped(&m, u64::MAX, 2, Permissions::Read),
            Err(DmaFault::Unmapped { iova: u64::MAX })
        );
    }

    #[test]
    fn write_only_and_no_access_mappings_are_enforced() {
        let d = attached();
        d.map(&map_req(1, 0, 0xfff, MAP_F_WRITE)).unwrap();
        d.map(&map_req(1, 0x1000, 0x1fff, 0)).unwrap();
        let Route::Mapped(m) = d.route(1) else {
            panic!()
        };
        assert!(translate_mapped(&m, 0, 8, Permissions::Write).is_ok());
        assert!(translate_mapped(&m, 0, 8, Permissions::Read).is_err());
        assert!(translate_mapped(&m, 0x1000, 8, Permissions::Read).is_err());
        assert!(translate_mapped(&m, 0x1000, 8, Permissions::Write).is_err());
    }

    #[test]
    fn lookups_stay_fast_with_many_mappings() {
        let mut d = attached();
        for i in 0..50_000u64 {
            map(&mut d, i * 0x2000, i * 0x2000 + 0xfff);
        }
        let Route::Mapped(m) = d.route(1) else {
            panic!()
        };
        let pieces = translate_mapped(&m, 49_999 * 0x2000 + 8, 8, Permissions::Read).unwrap();
        assert_eq!(pieces[0].gpa, 49_999 * 0x2000 + 0x10_0008);
        // The route read-locks the domain's mappings: let go before changing them.
        drop(m);
        assert_eq!(d.unmap(1, 0, 100 * 0x2000 - 1), Ok(100));
        assert_eq!(d.total_mappings(), 49_900);
    }
}

//! Endpoints that are host (passthrough) devices, and keeping their host IOMMU in step with
//! their domain.
//!
//! The VMM translates an emulated endpoint's DMA through the domain's mapping tree; a host
//! device's DMA goes through the host IOMMU, which must therefore hold the same mappings:
//! ATTACH replays the domain's mappings onto the endpoint's back-end, MAP and UNMAP follow
//! on the back-end of every host endpoint attached, and DETACH (or a move, or the domain
//! dying with its last endpoint) removes them. Each host call completes before the guest is
//! answered; a MAP the host refuses is undone everywhere and answered with an error.
//!
//! A back-end is one address space. Endpoints sharing it (say, one IOMMU group) are mapped
//! once, and can only be in one domain at a time: an ATTACH that would split them is INVAL.
//!
//! An endpoint in bypass (attached to a bypass domain, or unattached while the config
//! `bypass` byte is set) reaches guest RAM at IOVA = GPA: its back-end then holds all of RAM
//! that way, the identity map, and only then. It is taken down before a domain's mappings
//! go up, since they may overlap it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use log::{error, warn};

use super::domains::{Domains, Mapping, Route};
use super::protocol::{Map, Status, MAP_F_READ, MAP_F_WRITE};
use super::state::{IommuState, Stale};
use crate::host_iommu::{DmaAccess, GuestRam, HostIommu, HostIommuError, IovaRange};

/// Mappings one UNMAP removes per hold of the domains lock (see `request.rs`).
const UNMAP_CHUNK: usize = 1024;

#[derive(Debug)]
pub struct HostEndpoints {
    backends: HashMap<u32, Arc<dyn HostIommu>>,
    ram: Arc<dyn GuestRam>,
    /// The back-ends holding the identity map now.
    identity: Mutex<Vec<Arc<dyn HostIommu>>>,
}

fn same(a: &Arc<dyn HostIommu>, b: &Arc<dyn HostIommu>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}

/// NOMEM when the host ran out of room, which the guest may cure by unmapping; IOERR for
/// anything else the host refused.
fn status_of(e: &HostIommuError) -> Status {
    if e.is_out_of_memory() {
        Status::NoMem
    } else {
        Status::IoErr
    }
}

/// What the device may do through `m`; `None` for a mapping that allows nothing, which the
/// host need not hold (absent, it blocks the same accesses).
fn access_of(m: &Mapping) -> Option<DmaAccess> {
    let access = DmaAccess {
        read: m.flags & MAP_F_READ != 0,
        write: m.flags & MAP_F_WRITE != 0,
    };
    (access.read || access.write).then_some(access)
}

/// Length of the mapping starting at `start`; `None` for one spanning all 2^64 addresses.
fn len_of(start: u64, m: &Mapping) -> Option<u64> {
    (m.end - start).checked_add(1)
}

impl HostEndpoints {
    /// No host endpoints yet; `ram` translates guest-physical addresses for the back-ends.
    pub fn new(ram: Arc<dyn GuestRam>) -> Self {
        Self {
            backends: HashMap::new(),
            ram,
            identity: Mutex::new(Vec::new()),
        }
    }

    /// `endpoint` is a host device whose DMA goes through `backend`.
    pub fn add(&mut self, endpoint: u32, backend: Arc<dyn HostIommu>) {
        self.backends.insert(endpoint, backend);
    }

    pub fn endpoints(&self) -> impl Iterator<Item = u32> + '_ {
        self.backends.keys().copied()
    }

    pub fn backend(&self, endpoint: u32) -> Option<&Arc<dyn HostIommu>> {
        self.backends.get(&endpoint)
    }

    /// The IOVAs every back-end can translate (see [`common_iova_ranges`]).
    pub fn iova_ranges(&self) -> Result<Option<Vec<IovaRange>>, HostIommuError> {
        common_iova_ranges(self.backends.values())
    }

    /// The distinct back-ends of the host endpoints among `endpoints`.
    fn backends_among(&self, endpoints: &[u32]) -> Vec<Arc<dyn HostIommu>> {
        let mut found: Vec<Arc<dyn HostIommu>> = Vec::new();
        for b in endpoints.iter().filter_map(|e| self.backends.get(e)) {
            if !found.iter().any(|f| same(f, b)) {
                found.push(b.clone());
            }
        }
        found
    }

    /// The domains that the other endpoints on `endpoint`'s back-end are attached to.
    fn sibling_domains(
        &self,
        domains: &Domains,
        endpoint: u32,
        backend: &Arc<dyn HostIommu>,
    ) -> Vec<u32> {
        self.backends
            .iter()
            .filter(|&(&e, b)| e != endpoint && same(b, backend))
            .filter_map(|(&e, _)| domains.domain_of(e))
            .collect()
    }

    fn map_on(&self, backend: &dyn HostIommu, start: u64, m: &Mapping) -> Result<(), Status> {
        let Some(access) = access_of(m) else {
            return Ok(());
        };
        let len = len_of(start, m).ok_or(Status::Range)?;
        // A host device can reach only RAM this process maps, in one piece.
        let host_addr = self.ram.host_address(m.phys, len).ok_or(Status::Inval)?;
        // SAFETY: `GuestRam` hands out guest RAM only, as `HostIommu::map` requires.
        unsafe { backend.map(start, host_addr, len, access) }.map_err(|e| {
            warn!("virtio-iommu: {e}");
            status_of(&e)
        })
    }

    fn unmap_on(&self, backend: &dyn HostIommu, start: u64, m: &Mapping) -> Result<(), Status> {
        if access_of(m).is_none() {
            return Ok(());
        }
        let len = len_of(start, m).ok_or(Status::Range)?;
        backend.unmap(start, len).map_err(|e| {
            // The device may still reach memory the guest gave up: worth shouting about.
            error!("virtio-iommu: {e}");
            status_of(&e)
        })
    }

    fn identity(&self) -> MutexGuard<'_, Vec<Arc<dyn HostIommu>>> {
        self.identity.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn holds_identity(&self, backend: &Arc<dyn HostIommu>) -> bool {
        self.identity().iter().any(|b| same(b, backend))
    }

    /// Puts the identity map on `backend` (all of it, or nothing on failure) or takes it
    /// off.
    fn set_identity(&self, backend: &Arc<dyn HostIommu>, on: bool) -> Result<(), Status> {
        let mut held = self.identity();
        if held.iter().any(|b| same(b, backend)) == on {
            return Ok(());
        }
        let regions = self.ram.ram_regions();
        if on {
            for (i, &(gpa, len)) in regions.iter().enumerate() {
                let mapped = match self.ram.host_address(gpa, len) {
                    // SAFETY: `GuestRam` hands out guest RAM only, as `HostIommu::map`
                    // requires.
                    Some(host) => unsafe { backend.map(gpa, host, len, DmaAccess::READ_WRITE) }
                        .map_err(|e| {
                            warn!("virtio-iommu: bypass: {e}");
                            status_of(&e)
                        }),
                    None => Err(Status::DevErr),
                };
                if let Err(status) = mapped {
                    for &(gpa, len) in &regions[..i] {
                        let _ = backend.unmap(gpa, len);
                    }
                    return Err(status);
                }
            }
            held.push(backend.clone());
            // Mapping all of RAM takes a while on some hosts; say why.
            log::info!("virtio-iommu: a passthrough device bypasses: all guest RAM mapped for it");
        } else {
            let mut outcome = Ok(());
            for &(gpa, len) in &regions {
                if let Err(e) = backend.unmap(gpa, len) {
                    error!("virtio-iommu: leaving bypass: {e}");
                    outcome = Err(status_of(&e));
                }
            }
            held.retain(|b| !same(b, backend));
            log::info!("virtio-iommu: a passthrough device leaves bypass");
            outcome?;
        }
        Ok(())
    }

    /// Whether every endpoint on `backend` is in bypass, with the config byte at `bypass`.
    fn wants_identity(
        &self,
        domains: &Domains,
        backend: &Arc<dyn HostIommu>,
        bypass: bool,
    ) -> bool {
        self.backends
            .iter()
            .filter(|(_, b)| same(b, backend))
            .all(|(&e, _)| match domains.route(e) {
                Route::Bypass => true,
                Route::Unattached => bypass,
                _ => false,
            })
    }

    /// Brings every back-end's identity map in line with its endpoints' state; a back-end
    /// that cannot take it stays blocked, which is said.
    pub fn sync_identity(&self, domains: &Domains, bypass: bool) {
        let mut backends: Vec<&Arc<dyn HostIommu>> = Vec::new();
        for b in self.backends.values() {
            if !backends.iter().any(|f| same(f, b)) {
                backends.push(b);
            }
        }
        for backend in backends {
            let want = self.wants_identity(domains, backend, bypass);
            if self.set_identity(backend, want).is_err() {
                error!("virtio-iommu: a host device could not be put in bypass; it stays blocked");
            }
        }
    }

    /// Maps all of `mappings` on `backend`, or none of them.
    fn replay(&self, backend: &dyn HostIommu, mappings: &[(u64, Mapping)]) -> Result<(), Status> {
        for (i, (start, m)) in mappings.iter().enumerate() {
            if let Err(status) = self.map_on(backend, *start, m) {
                let _ = self.unmap_all(backend, &mappings[..i]);
                return Err(status);
            }
        }
        Ok(())
    }

    /// Unmaps every one of `mappings`, going on past failures; answers the first.
    fn unmap_all(
        &self,
        backend: &dyn HostIommu,
        mappings: &[(u64, Mapping)],
    ) -> Result<(), Status> {
        let mut first = Ok(());
        for (start, m) in mappings {
            first = first.and(self.unmap_on(backend, *start, m));
        }
        first
    }

    /// ATTACH of host endpoint `endpoint`: its back-end drops the old domain's mappings (or
    /// the identity map) and takes the new one's (or the identity map, for a bypass
    /// domain). On failure the endpoint stays where it was, mappings and all.
    pub fn attach(
        &self,
        shared: &IommuState,
        domain: u32,
        endpoint: u32,
        bypass: bool,
    ) -> Result<Stale, Status> {
        let backend = self.backends.get(&endpoint).ok_or(Status::NoEnt)?;
        let mut domains = shared.domains_mut();
        if !domains.check_attach(domain, endpoint, bypass)? {
            return Ok(Stale::Endpoints(vec![endpoint]));
        }
        let siblings = self.sibling_domains(&domains, endpoint, backend);
        if siblings.iter().any(|&d| d != domain) {
            return Err(Status::Inval);
        }
        let leaving = domains
            .domain_of(endpoint)
            .map_or_else(Vec::new, |old| domains.mappings(old));
        // Siblings already in the domain have put its mappings on the shared back-end.
        let joining = if siblings.is_empty() && !bypass {
            domains.mappings(domain)
        } else {
            Vec::new()
        };
        let had_identity = self.holds_identity(backend);
        self.unmap_all(backend.as_ref(), &leaving)?;
        if !bypass {
            self.set_identity(backend, false)?;
        }
        let joined = if bypass {
            self.set_identity(backend, true)
        } else {
            self.replay(backend.as_ref(), &joining)
        };
        if let Err(status) = joined {
            let restored = self
                .replay(backend.as_ref(), &leaving)
                .and_then(|()| self.set_identity(backend, had_identity));
            if restored.is_err() {
                error!("virtio-iommu: endpoint {endpoint:#x} lost host mappings of its domain");
            }
            return Err(status);
        }
        domains.attach(domain, endpoint, bypass)?;
        Ok(Stale::Endpoints(vec![endpoint]))
    }

    /// DETACH of host endpoint `endpoint`: its back-end drops the domain's mappings, unless
    /// a sibling still in the domain needs them.
    pub fn detach(&self, shared: &IommuState, domain: u32, endpoint: u32) -> Result<Stale, Status> {
        let backend = self.backends.get(&endpoint).ok_or(Status::NoEnt)?;
        let mut domains = shared.domains_mut();
        let leaving = if domains.domain_of(endpoint) == Some(domain)
            && self.sibling_domains(&domains, endpoint, backend).is_empty()
        {
            domains.mappings(domain)
        } else {
            Vec::new()
        };
        domains.detach(domain, endpoint)?;
        let unmapped = self.unmap_all(backend.as_ref(), &leaving);
        // Unattached now: in bypass if the config byte says so.
        self.sync_identity(&domains, shared.bypass());
        unmapped?;
        Ok(Stale::Endpoints(vec![endpoint]))
    }

    /// MAP: into the domain, then onto the back-end of every host endpoint attached. If one
    /// refuses, the mapping leaves the domain and every back-end that took it.
    pub fn map(&self, shared: &IommuState, map: &Map) -> Result<Stale, Status> {
        let domains = shared.domains();
        domains.map(map)?;
        let mapping = Mapping {
            end: map.virt_end,
            phys: map.phys_start,
            flags: map.flags,
        };
        let backends = self.backends_among(&domains.endpoints_of(map.domain));
        for (i, backend) in backends.iter().enumerate() {
            if let Err(status) = self.map_on(backend.as_ref(), map.virt_start, &mapping) {
                for done in &backends[..i] {
                    let _ = self.unmap_on(done.as_ref(), map.virt_start, &mapping);
                }
                // Nothing else maps meanwhile: requests are served one at a time.
                let _ = domains.unmap(map.domain, map.virt_start, map.virt_end);
                // An emulated endpoint of the domain may have cached the mapping already.
                let stale = Stale::Range {
                    endpoints: domains.endpoints_of(map.domain),
                    start: map.virt_start,
                    last: map.virt_end,
                };
                drop(domains);
                shared.invalidate(&stale);
                return Err(status);
            }
        }
        Ok(Stale::Nothing)
    }

    /// UNMAP: out of the domain a chunk at a time, and each removed mapping off every host
    /// back-end attached. The whole range goes even if the host fails on a part, which is
    /// then answered.
    pub fn unmap(
        &self,
        shared: &IommuState,
        domain: u32,
        start: u64,
        last: u64,
    ) -> Result<Stale, Status> {
        let mut outcome = Ok(());
        loop {
            let domains = shared.domains();
            let mut removed = Vec::new();
            let (_, done) = domains.unmap_some_with(domain, start, last, UNMAP_CHUNK, |s, m| {
                removed.push((s, *m))
            })?;
            for backend in self.backends_among(&domains.endpoints_of(domain)) {
                outcome = outcome.and(self.unmap_all(backend.as_ref(), &removed));
            }
            if done {
                return outcome.map(|()| Stale::Range {
                    endpoints: domains.endpoints_of(domain),
                    start,
                    last,
                });
            }
        }
    }

    /// Device reset: every back-end drops the mappings of the domain it serves.
    pub fn forget_all(&self, domains: &Domains) {
        for domain in domains.domain_ids() {
            let backends = self.backends_among(&domains.endpoints_of(domain));
            if backends.is_empty() {
                continue;
            }
            let mappings = domains.mappings(domain);
            for backend in backends {
                let _ = self.unmap_all(backend.as_ref(), &mappings);
            }
        }
    }
}

/// The IOVAs every one of `backends` can translate: the intersection of their ranges,
/// ascending. `None` when there are no back-ends, so nothing narrows.
pub fn common_iova_ranges<'a>(
    backends: impl IntoIterator<Item = &'a Arc<dyn HostIommu>>,
) -> Result<Option<Vec<IovaRange>>, HostIommuError> {
    let mut common: Option<Vec<IovaRange>> = None;
    for backend in backends {
        let mut ranges = backend.iova_ranges()?;
        ranges.sort_unstable_by_key(|r| r.start);
        common = Some(match common {
            None => ranges,
            Some(c) => intersect(&c, &ranges),
        });
    }
    Ok(common)
}

/// The IOVAs in both `a` and `b`, each ascending and without overlaps.
fn intersect(a: &[IovaRange], b: &[IovaRange]) -> Vec<IovaRange> {
    let mut out = Vec::new();
    for x in a {
        for y in b {
            let start = x.start.max(y.start);
            let last = x.last.min(y.last);
            if start <= last {
                out.push(IovaRange { start, last });
            }
        }
    }
    out.sort_unstable_by_key(|r| r.start);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, last: u64) -> IovaRange {
        IovaRange { start, last }
    }

    #[test]
    fn intersection_keeps_what_both_translate() {
        let a = [r(0, 0xfedf_ffff), r(0xfef0_0000, 0xffff_ffff_ffff)];
        let b = [r(0x1000, 0x7fff_ffff_ffff)];
        assert_eq!(
            intersect(&a, &b),
            vec![r(0x1000, 0xfedf_ffff), r(0xfef0_0000, 0x7fff_ffff_ffff)]
        );
        assert!(intersect(&a, &[r(0xfee0_0000, 0xfeef_ffff)]).is_empty());
    }
}

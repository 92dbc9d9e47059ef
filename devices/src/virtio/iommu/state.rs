//! State the request path and the DMA path share: domains, the `bypass` byte, pending fault
//! records, and the IOTLB of every endpoint, which the request path invalidates.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use vm_memory::Permissions;
use vmm_sys_util::eventfd::EventFd;

use super::config::IommuConfig;
use std::collections::BTreeMap;

use super::domains::{covering_mappings, Domains, Mapping, Route};
use super::faults::{FaultQueue, FaultRateLimit};
use super::hardware_routes;
use super::host_endpoints::HostEndpoints;
use super::nested::{forget_stream_commands, NestedBackend};
use super::nested_protocol::SMMUV3_PROPERTY_SIZE;
use super::protocol::{
    FaultRecord, FAULT_F_ADDRESS, FAULT_F_READ, FAULT_F_WRITE, FAULT_R_DOMAIN, FAULT_R_MAPPING,
    FAULT_R_UNKNOWN,
};
use super::request_counters::RequestCounters;
use crate::dma::{DeviceTlb, DmaFault, TlbEntries};

#[derive(Debug)]
pub struct IommuState {
    pub config: IommuConfig,
    domains: RwLock<Domains>,
    /// The config space `bypass` byte.
    bypass: AtomicBool,
    faults: Mutex<FaultQueue>,
    /// Written whenever a fault record is queued, so the eventq gets served.
    fault_event: EventFd,
    /// The IOTLB of each endpoint's device, registered when the VM is built.
    tlbs: RwLock<HashMap<u32, Arc<DeviceTlb>>>,
    /// Endpoints that are host devices, set once when the VM is built; unset, requests
    /// touch no host IOMMU at all.
    host: OnceLock<HostEndpoints>,
    /// Requests served, by type and status.
    pub request_counters: RequestCounters,
    /// Nested mode: the back-end table-mode domains are served by, set once when the VM
    /// is built; unset, the extension is not offered.
    nested: OnceLock<NestedBackend>,
}

/// Whose cached translations a request made stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stale {
    Nothing,
    /// Every translation of these endpoints.
    Endpoints(Vec<u32>),
    /// Translations of `[start, last]` in these endpoints.
    Range {
        endpoints: Vec<u32>,
        start: u64,
        last: u64,
    },
}

impl IommuState {
    pub fn new(config: IommuConfig, rate: FaultRateLimit) -> std::io::Result<Self> {
        Ok(Self {
            domains: RwLock::new(Domains::new(config.limits)),
            bypass: AtomicBool::new(config.default_bypass),
            faults: Mutex::new(FaultQueue::new(rate)),
            fault_event: EventFd::new(libc::EFD_NONBLOCK)?,
            tlbs: RwLock::new(HashMap::new()),
            host: OnceLock::new(),
            request_counters: RequestCounters::default(),
            nested: OnceLock::new(),
            config,
        })
    }

    // A panic elsewhere while holding a lock cannot leave `Domains` half-updated in a way that
    // breaks memory safety, so a poisoned lock is used as is rather than propagating panics.
    pub fn domains(&self) -> RwLockReadGuard<'_, Domains> {
        self.domains.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn domains_mut(&self) -> RwLockWriteGuard<'_, Domains> {
        self.domains.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn faults(&self) -> MutexGuard<'_, FaultQueue> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `endpoint` known and remembers the IOTLB of its device.
    pub fn add_endpoint(&self, endpoint: u32, tlb: Arc<DeviceTlb>) {
        self.domains_mut().add_endpoint(endpoint);
        self.tlbs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(endpoint, tlb);
    }

    /// Makes the endpoints of `host` known as host devices; once only, before the guest
    /// runs. Gives `host` back if already set.
    pub fn set_host_endpoints(&self, host: HostEndpoints) -> Result<(), HostEndpoints> {
        let endpoints: Vec<u32> = host.endpoints().collect();
        self.host.set(host)?;
        let mut domains = self.domains_mut();
        endpoints.into_iter().for_each(|e| domains.add_endpoint(e));
        if let Some(host) = self.host.get() {
            host.sync_identity(&domains, self.bypass());
        }
        Ok(())
    }

    pub fn host_endpoints(&self) -> Option<&HostEndpoints> {
        self.host.get()
    }

    /// Turns nested mode on; once only, before the guest runs. Gives `backend` back if
    /// already set.
    /// Endpoints its host IOMMU translates get the route they have now.
    pub fn set_nested(&self, backend: NestedBackend) -> Result<(), NestedBackend> {
        self.nested.set(backend)?;
        if let Some(nested) = self.nested.get() {
            hardware_routes::sync_all(self, nested, &self.domains());
        }
        Ok(())
    }

    pub fn nested(&self) -> Option<&NestedBackend> {
        self.nested.get()
    }

    /// The config space's `probe_size`: room for every property PROBE may write.
    pub fn probe_size(&self) -> u32 {
        let nested = if self.nested().is_some() {
            SMMUV3_PROPERTY_SIZE as u32
        } else {
            0
        };
        self.config.probe_size() + nested
    }

    /// Drops what `stale` names from the endpoints' IOTLBs; returns once no access
    /// translated through it is still copying. Call without holding the domains lock.
    pub fn invalidate(&self, stale: &Stale) {
        let tlbs = self.tlbs.read().unwrap_or_else(|e| e.into_inner());
        match stale {
            Stale::Nothing => {}
            Stale::Endpoints(endpoints) => endpoints
                .iter()
                .filter_map(|e| tlbs.get(e))
                .for_each(|tlb| tlb.invalidate_all()),
            Stale::Range {
                endpoints,
                start,
                last,
            } => endpoints
                .iter()
                .filter_map(|e| tlbs.get(e))
                .for_each(|tlb| tlb.invalidate_range(*start, *last)),
        }
    }

    fn invalidate_every_endpoint(&self) {
        let tlbs = self.tlbs.read().unwrap_or_else(|e| e.into_inner());
        tlbs.values().for_each(|tlb| tlb.invalidate_all());
    }

    /// Device reset: every domain and mapping goes, and with them every cached translation.
    pub fn reset(&self) {
        let mut domains = self.domains_mut();
        if let Some(host) = self.host.get() {
            host.forget_all(&domains);
        }
        let table_endpoints = domains.table_endpoints();
        domains.reset();
        if let Some(nested) = self.nested.get() {
            // Endpoints the host translates take the route of an unattached endpoint.
            hardware_routes::sync_all(self, nested, &domains);
            for endpoint in table_endpoints {
                // Removing a configuration cannot fail in a way the reset could answer.
                if !hardware_routes::is_hardware(nested, endpoint) {
                    let _ = nested.host().remove_ste(endpoint);
                }
                let _ = nested.host().invalidate(&forget_stream_commands(endpoint));
                nested.forget_stream(endpoint);
            }
        }
        if let Some(host) = self.host.get() {
            // Every endpoint is unattached now: in bypass as the config byte, kept across
            // the reset, says.
            host.sync_identity(&domains, self.bypass());
        }
        drop(domains);
        self.invalidate_every_endpoint();
        self.faults().clear();
    }

    pub fn bypass(&self) -> bool {
        self.bypass.load(Ordering::Acquire)
    }

    /// The driver wrote the `bypass` byte: unattached endpoints change what they reach.
    pub fn set_bypass(&self, on: bool) {
        // Under the domains lock, so no ATTACH or DETACH of a host endpoint interleaves.
        let domains = self.domains_mut();
        if self.bypass.swap(on, Ordering::AcqRel) != on {
            if let Some(host) = self.host.get() {
                host.sync_identity(&domains, on);
            }
            if let Some(nested) = self.nested.get() {
                hardware_routes::sync_unattached(self, nested, &domains);
            }
            drop(domains);
            self.invalidate_every_endpoint();
        }
    }

    pub fn fault_event(&self) -> &EventFd {
        &self.fault_event
    }

    pub(super) fn report(&self, record: FaultRecord) {
        self.report_checked(record);
    }

    /// Queues `record` for the eventq; false if the rate limit or a full queue refused it.
    pub(super) fn report_checked(&self, record: FaultRecord) -> bool {
        let queued = self.faults().report(record);
        if queued {
            // A full eventfd counter already means "wake up"; nothing is lost.
            let _ = self.fault_event.write(1);
        }
        queued
    }

    /// Queues a page-request record for the eventq, past the rate limit; false if the
    /// pending queue is full.
    pub(super) fn report_page_request(&self, record: FaultRecord) -> bool {
        let queued = self.faults().report_page_request(record);
        if queued {
            let _ = self.fault_event.write(1);
        }
        queued
    }

    fn msi_window_for(&self, iova: u64, len: u64) -> Option<(u64, u64)> {
        self.config.msi_window().filter(|&(start, end)| {
            iova >= start && len > 0 && iova.checked_add(len - 1).is_some_and(|l| l <= end)
        })
    }

    fn fill_from(
        &self,
        route: Route<'_>,
        tlb: &mut TlbEntries,
        iova: u64,
        len: u64,
        access: Permissions,
    ) -> Result<(), (u8, DmaFault)> {
        match route {
            Route::Unknown => Err((FAULT_R_UNKNOWN, DmaFault::Blocked { iova })),
            Route::Unattached if self.bypass() => identity(tlb),
            Route::Unattached => Err((FAULT_R_DOMAIN, DmaFault::Blocked { iova })),
            Route::Bypass => identity(tlb),
            // Served by `fill_table` before it gets here.
            Route::Table => Err((FAULT_R_UNKNOWN, DmaFault::Blocked { iova })),
            Route::Mapped(mappings) => match self.msi_window_for(iova, len) {
                // MSI writes pass untranslated, as the RESV_MEM MSI property promises.
                Some((start, end)) if access == Permissions::Write => {
                    tlb.insert(start, end, start, Permissions::Write);
                    Ok(())
                }
                _ => fill_mapped(&mappings, tlb, iova, len, access),
            },
        }
    }

    /// Fills `tlb` with the translations `endpoint` has for `[iova, iova + len)` in
    /// transactions carrying `pasid`, reporting a fault record when there are none. Only
    /// table-mode domains translate PASIDs; elsewhere a transaction with one faults.
    pub fn fill(
        &self,
        endpoint: u32,
        pasid: Option<u32>,
        tlb: &mut TlbEntries,
        iova: u64,
        len: u64,
        access: Permissions,
    ) -> Result<(), DmaFault> {
        let result = if iova.checked_add(len).is_none() {
            // vm-memory ranges are half-open u64 ranges: one ending past 2^64 cannot exist.
            Err((FAULT_R_MAPPING, DmaFault::Unmapped { iova }))
        } else {
            let domains = self.domains();
            let result = match domains.route(endpoint) {
                // The back-end reports its own faults.
                Route::Table => return self.fill_table(endpoint, pasid, tlb, iova, len, access),
                _ if pasid.is_some() => Err((FAULT_R_MAPPING, DmaFault::Unmapped { iova })),
                route => self.fill_from(route, tlb, iova, len, access),
            };
            result
        };
        result.map_err(|(reason, fault)| {
            self.report(FaultRecord {
                reason,
                flags: access_flags(access) | FAULT_F_ADDRESS,
                endpoint,
                address: fault.iova(),
                pasid,
                group: None,
            });
            fault
        })
    }
}

/// Whole mappings go into the IOTLB, so the next access to the same buffer hits.
fn fill_mapped(
    mappings: &BTreeMap<u64, Mapping>,
    tlb: &mut TlbEntries,
    iova: u64,
    len: u64,
    access: Permissions,
) -> Result<(), (u8, DmaFault)> {
    for (start, mapping) in
        covering_mappings(mappings, iova, len, access).map_err(|f| (FAULT_R_MAPPING, f))?
    {
        tlb.insert(start, mapping.end, mapping.phys, mapping.permissions());
    }
    Ok(())
}

/// Bypass: every address is itself.
fn identity(tlb: &mut TlbEntries) -> Result<(), (u8, DmaFault)> {
    tlb.insert(0, u64::MAX, 0, Permissions::ReadWrite);
    Ok(())
}

fn access_flags(access: Permissions) -> u32 {
    match access {
        Permissions::No => 0,
        Permissions::Read => FAULT_F_READ,
        Permissions::Write => FAULT_F_WRITE,
        Permissions::ReadWrite => FAULT_F_READ | FAULT_F_WRITE,
    }
}

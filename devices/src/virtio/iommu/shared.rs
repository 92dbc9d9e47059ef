//! State the request path and the DMA path share, and the per-endpoint translator that the
//! DMA path calls through [`EndpointTranslate`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use vm_memory::Permissions;
use vmm_sys_util::eventfd::EventFd;

use super::config::IommuConfig;
use super::domains::{translate_mapped, Domains, Route};
use super::faults::{FaultQueue, FaultRateLimit};
use super::protocol::{
    FaultRecord, FAULT_F_ADDRESS, FAULT_F_READ, FAULT_F_WRITE, FAULT_R_DOMAIN, FAULT_R_MAPPING,
    FAULT_R_UNKNOWN,
};
use crate::dma::{DmaFault, DmaMapping, EndpointTranslate};

#[derive(Debug)]
pub struct Shared {
    pub config: IommuConfig,
    domains: RwLock<Domains>,
    /// The config space `bypass` byte.
    bypass: AtomicBool,
    faults: Mutex<FaultQueue>,
    /// Written whenever a fault record is queued, so the eventq gets served.
    fault_event: EventFd,
}

impl Shared {
    pub fn new(config: IommuConfig, rate: FaultRateLimit) -> std::io::Result<Self> {
        Ok(Self {
            domains: RwLock::new(Domains::new(config.limits)),
            bypass: AtomicBool::new(config.default_bypass),
            faults: Mutex::new(FaultQueue::new(rate)),
            fault_event: EventFd::new(libc::EFD_NONBLOCK)?,
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

    pub fn bypass(&self) -> bool {
        self.bypass.load(Ordering::Acquire)
    }

    pub fn set_bypass(&self, on: bool) {
        self.bypass.store(on, Ordering::Release);
    }

    pub fn fault_event(&self) -> &EventFd {
        &self.fault_event
    }

    fn report(&self, record: FaultRecord) {
        if self.faults().report(record) {
            // A full eventfd counter already means "wake up"; nothing is lost.
            let _ = self.fault_event.write(1);
        }
    }

    fn in_msi_window(&self, iova: u64, len: u64) -> bool {
        self.config.msi_window().is_some_and(|(start, end)| {
            iova >= start && len > 0 && iova.checked_add(len - 1).is_some_and(|l| l <= end)
        })
    }

    /// Translates one DMA access of `endpoint`, reporting a fault record when it fails.
    pub fn translate(
        &self,
        endpoint: u32,
        iova: u64,
        len: u64,
        access: Permissions,
    ) -> Result<Vec<DmaMapping>, DmaFault> {
        let result = if iova.checked_add(len).is_none() {
            // vm-memory ranges are half-open u64 ranges: one ending past 2^64 cannot exist.
            Err((FAULT_R_MAPPING, DmaFault::Unmapped { iova }))
        } else {
            let domains = self.domains();
            match domains.route(endpoint) {
                Route::Unknown => Err((FAULT_R_UNKNOWN, DmaFault::Blocked { iova })),
                Route::Unattached if self.bypass() => Ok(identity(iova, len)),
                Route::Unattached => Err((FAULT_R_DOMAIN, DmaFault::Blocked { iova })),
                Route::Bypass => Ok(identity(iova, len)),
                // MSI writes pass untranslated, as the RESV_MEM MSI property promises.
                Route::Mapped(_)
                    if access == Permissions::Write && self.in_msi_window(iova, len) =>
                {
                    Ok(identity(iova, len))
                }
                Route::Mapped(mappings) => translate_mapped(mappings, iova, len, access)
                    .map_err(|fault| (FAULT_R_MAPPING, fault)),
            }
        };
        result.map_err(|(reason, fault)| {
            self.report(FaultRecord {
                reason,
                flags: access_flags(access) | FAULT_F_ADDRESS,
                endpoint,
                address: fault.iova(),
            });
            fault
        })
    }
}

/// `iova + len` must not overflow (checked by the caller).
fn identity(iova: u64, len: u64) -> Vec<DmaMapping> {
    if len == 0 {
        return Vec::new();
    }
    vec![DmaMapping {
        iova,
        gpa: iova,
        len,
        access: Permissions::ReadWrite,
    }]
}

fn access_flags(access: Permissions) -> u32 {
    match access {
        Permissions::No => 0,
        Permissions::Read => FAULT_F_READ,
        Permissions::Write => FAULT_F_WRITE,
        Permissions::ReadWrite => FAULT_F_READ | FAULT_F_WRITE,
    }
}

/// One endpoint's view of the virtio-iommu: what its device's `DmaMemory` translates with.
#[derive(Debug, Clone)]
pub struct EndpointTranslator {
    endpoint: u32,
    shared: Arc<Shared>,
}

impl EndpointTranslator {
    pub(super) fn new(endpoint: u32, shared: Arc<Shared>) -> Self {
        Self { endpoint, shared }
    }

    pub fn endpoint(&self) -> u32 {
        self.endpoint
    }
}

impl EndpointTranslate for EndpointTranslator {
    fn translate(
        &self,
        iova: u64,
        len: u64,
        access: Permissions,
    ) -> Result<Vec<DmaMapping>, DmaFault> {
        self.shared.translate(self.endpoint, iova, len, access)
    }
}

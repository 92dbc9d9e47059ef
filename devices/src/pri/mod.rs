//! PCIe page requests (PRI) between an emulated device and the IOMMU in front of it.
//!
//! - [`PageRequestPort`]: where the device's Page Request Messages go (the software
//!   SMMUv3's PRI queue);
//! - [`PageResponses`]: the device's page request groups waiting for their PRG Response;
//! - [`PageResponseRouter`]: the IOMMU's PRI_RESP commands, routed to the device by StreamID.

mod responses;
mod router;

use std::sync::Arc;
use std::time::Duration;

use vm_memory::GuestMemory;

use crate::host_iommu::smmuv3::wire::PriEntry;
use crate::host_iommu::smmuv3::Smmuv3;

pub use responses::{GroupOutcome, PageResponses, PRG_INDICES};
pub use router::PageResponseRouter;

/// Where a device's page requests go: the IOMMU's PRI queue.
pub trait PageRequestPort: Send + Sync {
    /// One Page Request Message.
    fn page_request(&self, entry: PriEntry);
}

impl<M: GuestMemory + Send + Sync> PageRequestPort for Smmuv3<M> {
    fn page_request(&self, entry: PriEntry) {
        Smmuv3::page_request(self, entry);
    }
}

/// What a device needs to issue page requests: the port, its StreamID, where its
/// responses arrive, and how long it waits for one at most.
#[derive(Clone)]
pub struct PriLink {
    pub port: Arc<dyn PageRequestPort>,
    pub stream: u32,
    pub responses: Arc<PageResponses>,
    /// The IOMMU answers every group within its own timeout; this bounds the wait should
    /// it not.
    pub wait_limit: Duration,
}

impl std::fmt::Debug for PriLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PriLink")
            .field("stream", &self.stream)
            .field("wait_limit", &self.wait_limit)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;

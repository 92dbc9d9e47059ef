//! The fault relay: host IOMMU faults and page requests to the guest, the guest's page
//! responses back.
//!
//! - [`groups`]: the page-request group bookkeeping (delivery, the answer's cookie,
//!   deadlines, failing what the guest cannot answer);
//! - [`relay`]: the relay thread, which waits on the nested back-end's fault sources, and
//!   the guest-answer path the virtio-iommu's PAGE_RESP takes.
//!
//! The back-end is any [`crate::host_iommu::nested::NestedHostIommu`]: the software SMMUv3
//! model or iommufd; the guest side is a [`GuestFaultSink`].

pub mod groups;
mod relay;

pub use groups::{AnswerError, GroupCounters, GroupKey, GroupLimits, PageRequestGroups};
pub use relay::{FaultRelay, FaultRelayState, GuestFaultSink};

#[cfg(test)]
mod tests;

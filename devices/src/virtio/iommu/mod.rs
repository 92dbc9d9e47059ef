//! The virtio-iommu (virtio device 23): a paravirtual IOMMU for the devices behind it.
//!
//! - [`protocol`]: the wire format and request parsing,
//! - [`nested_protocol`]: the same for nestor's extension for guest-owned stage 1
//!   (docs/virtio-iommu-nested.md),
//! - [`nested`]: the nested back-end table-mode domains are served by; `nested_dma` and
//!   `table_requests`: their DMA and their requests,
//! - [`config`]: the VMM's choices (granule, ranges, reserved regions, limits) and the
//!   checks against them,
//! - [`domains`]: domains, endpoints and the mapping tree,
//! - [`state`]: state shared by the request path and the DMA path, including every
//!   endpoint's IOTLB, which requests invalidate before they are answered,
//! - [`endpoint`]: [`IommuEndpoint`], the address space each protected device's IOTLB is
//!   filled from,
//! - [`faults`]: rate-limited fault records for the eventq,
//! - [`host_endpoints`]: endpoints that are host devices, whose host IOMMU mirrors their
//!   domain; `hardware_routes`: those the nested back-end's host IOMMU translates, whose
//!   bypass or abort it installs,
//! - [`queues`], [`request`]: serving the virtqueues, [`request_counters`]: what they served,
//! - [`device`], [`worker`]: the `VirtioDevice` and its thread,
//! - [`viot`]: the ACPI VIOT table describing the IOMMU and its endpoints,
//! - `driver_harness` (tests, feature `driver-harness`): a driver's side of the requestq
//!   and eventq over a small guest memory.

pub mod config;
pub mod device;
pub mod domains;
#[cfg(any(test, feature = "driver-harness"))]
pub mod driver_harness;
pub mod endpoint;
pub mod faults;
mod hardware_routes;
pub mod host_endpoints;
pub mod nested;
mod nested_dma;
pub mod nested_protocol;
pub mod page_requests;
pub mod protocol;
pub mod queues;
pub mod request;
pub mod request_counters;
pub mod state;
mod table_requests;
pub mod viot;
pub mod worker;

#[cfg(test)]
mod tests;

pub use config::{IommuConfig, Limits, ReservedRegion};
pub use device::{Iommu, OFFERED_FEATURES};
pub use endpoint::IommuEndpoint;
pub use faults::{FaultCounters, FaultRateLimit};
pub use host_endpoints::{common_iova_ranges, HostEndpoints};
pub use nested::NestedBackend;
pub use request_counters::{RequestCounters, RequestCounts};

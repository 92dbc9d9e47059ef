//! The virtio-iommu (virtio device 23): a paravirtual IOMMU for the devices behind it.
//!
//! - [`protocol`]: the wire format and request parsing,
//! - [`config`]: the VMM's choices (granule, ranges, reserved regions, limits) and the
//!   checks against them,
//! - [`domains`]: domains, endpoints and the mapping tree,
//! - [`shared`]: state shared by the request path and the DMA path, and the per-endpoint
//!   [`EndpointTranslator`] behind each protected device's `DmaMemory`,
//! - [`faults`]: rate-limited fault records for the eventq,
//! - [`queues`], [`chain`], [`request`]: serving the virtqueues,
//! - [`device`], [`worker`]: the `VirtioDevice` and its thread,
//! - [`viot`]: the ACPI VIOT table describing the IOMMU and its endpoints.

pub mod chain;
pub mod config;
pub mod device;
pub mod domains;
pub mod faults;
pub mod protocol;
pub mod queues;
pub mod request;
pub mod shared;
pub mod viot;
pub mod worker;

#[cfg(test)]
mod tests;

pub use config::{IommuConfig, Limits, ReservedRegion};
pub use device::{Iommu, OFFERED_FEATURES};
pub use faults::{FaultCounters, FaultRateLimit};
pub use shared::EndpointTranslator;

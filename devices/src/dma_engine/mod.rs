//! An emulated PCIe DMA engine: a test device for IOMMUs (docs/dma-engine.md is its spec).
//!
//! The driver puts copy and fill jobs in a ring of 64-byte slots in guest memory and rings a
//! doorbell; the engine runs them on its worker thread, every access through the DMA seam
//! (`crate::dma`), so behind the virtio-iommu each one is translated and isolated like a
//! virtio device's. Each job's status is written back into its slot, and an MSI-X interrupt
//! tells the driver. PASID and PRI are honoured in nested translation; ATS is advertised
//! only.
//!
//! - `descriptor`: the slot's wire format and job validation;
//! - `job`: running one job in bounded chunks;
//! - `page_requests`: asking the IOMMU for the pages waiting jobs miss (PRI);
//! - `ring`: the worker's loop over the ring;
//! - `registers`: BAR 0's layout;
//! - `capabilities`: PCI Express, PASID, ATS, PRI;
//! - `function`: the PCI function tying them together.

pub mod capabilities;
pub mod descriptor;
pub mod function;
pub mod job;
pub mod page_requests;
pub mod registers;
pub mod ring;

pub use function::{DmaEngine, DmaEngineError, DEVICE_ID, VENDOR_ID};

#[cfg(test)]
mod page_request_tests;
#[cfg(test)]
mod tests;

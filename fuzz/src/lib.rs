//! Shared parts of nestor's fuzz targets: how fuzz bytes become a driver's actions, the
//! driver's side of a split virtqueue, and reference models the targets check the real code
//! against (the chain reader's rules, the virtio-iommu's domains, MSI-X, the DMA engine's
//! ring, a passthrough function's configuration space).
//!
//! Every target checks invariants, not only that nothing panics: a violated one panics with
//! a message saying which, and libFuzzer keeps the input as a crash.

pub mod capability_chain_model;
pub mod chain_model;
pub mod config_model;
pub mod dma_engine_model;
pub mod driver_queue;
pub mod guest;
pub mod input;
pub mod interrupts;
pub mod iommu_model;
pub mod iommu_nested_model;
pub mod msix_model;
pub mod observed;
pub mod passthrough_model;
pub mod passthrough_msi_model;
pub mod transport_model;

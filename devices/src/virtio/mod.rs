//! Virtio 1.x devices over the modern virtio-pci transport.

pub mod block;
pub mod chain;
pub mod console;
pub mod device;
pub mod iommu;
pub mod pci;
pub mod queue_server;
pub mod rng;
pub mod testing;
pub mod worker;
pub mod worker_thread;

pub use device::{
    ActivateContext, ActivateError, ActiveQueue, ThreadSetupHook, VirtioDevice, VirtioInterrupt,
    WorkerSpec,
};

/// Feature bit numbers shared by every device type.
pub mod features {
    use virtio_bindings::virtio_config;

    use virtio_bindings::virtio_ring;

    pub const VERSION_1: u64 = 1 << virtio_config::VIRTIO_F_VERSION_1;
    pub const ACCESS_PLATFORM: u64 = 1 << virtio_config::VIRTIO_F_ACCESS_PLATFORM;
    pub const RING_INDIRECT_DESC: u64 = 1 << virtio_ring::VIRTIO_RING_F_INDIRECT_DESC;
    pub const RING_EVENT_IDX: u64 = 1 << virtio_ring::VIRTIO_RING_F_EVENT_IDX;
}

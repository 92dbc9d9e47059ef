//! Everything a nestor guest can touch.
//!
//! Devices know nothing of KVM: they see a [`bus::Bus`] of PIO or MMIO ranges, guest memory
//! (through `vm_memory::GuestMemory`, the one DMA seam), and interrupt and notification
//! handles (eventfds). The KVM wiring lives in the `vmm` crate.

pub mod bus;
pub mod dma;
pub mod dma_engine;
pub mod fault_relay;
pub mod host_iommu;
pub mod host_output;
pub mod interrupt;
pub mod io_counters;
pub mod legacy;
pub mod pci;
pub mod pending_thread;
pub mod pri;
pub mod vfio;
pub mod virtio;
pub mod vm_control;

pub use bus::{Bus, BusDevice, BusError};
pub use host_output::HostOutput;
pub use pending_thread::PendingThread;
pub use vm_control::{VmControl, VmExitReason};

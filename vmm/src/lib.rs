//! The nestor VMM: configuration, VM construction, vCPU threads, the event loop.

pub mod cli;
pub mod config;
mod event_loop;
pub mod logging;
pub mod seccomp;
mod unikernel;
mod vcpu;
mod vm;
#[allow(dead_code)] // wired into the VM builder with the virtio-pci devices
mod viommu;

pub use vm::{run_vm, VmmError};

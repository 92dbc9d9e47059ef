//! The nestor VMM: configuration, VM construction, vCPU threads, the event loop.

mod api;
pub mod cli;
pub mod config;
pub mod config_file;
pub mod device_options;
pub mod disk_image;
mod event_loop;
mod interrupts;
pub mod logging;
pub mod seccomp;
mod unikernel;
mod vcpu;
pub mod vfio_host_checks;
pub mod vfio_options;
pub mod viommu;
mod vm;

pub use vm::{run_vm, HeadStart, Start, VmmError};

/// The API socket's HTTP request parser, public for its fuzz target.
pub mod api_http {
    pub use crate::api::http::{parse_request, Request, Response, MAX_BODY, MAX_HEAD};
}

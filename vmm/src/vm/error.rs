//! Everything that can stop nestor before or while it runs a guest.

use arch::acpi::AcpiError;
use arch::boot::BootError;
use arch::cpu::CpuError;

use crate::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("cannot open /dev/kvm: {0}; nestor needs KVM (load kvm_intel or kvm_amd and check the permissions of /dev/kvm)")]
    KvmOpen(#[source] kvm_ioctls::Error),
    #[error("this KVM lacks {0}, which nestor needs")]
    KvmCapability(&'static str),
    #[error("KVM refused {what}: {source}")]
    Kvm {
        what: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("cannot allocate {size} MiB of guest memory: {reason}")]
    Memory { size: u64, reason: String },
    #[error("{0}")]
    Boot(#[from] BootError),
    #[error("{0}")]
    Cpu(#[from] CpuError),
    #[error("{0}")]
    Acpi(#[from] AcpiError),
    #[error("cannot open {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    DiskImage(#[from] crate::disk_image::DiskImageError),
    #[error("{0}")]
    Device(String),
    /// The host cannot do what the user asked of a device (e.g. nested=require on an IOMMU
    /// that cannot nest).
    #[error("{0}")]
    HostRefuses(String),
    #[error("cannot start a thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("seccomp: {0}")]
    Seccomp(String),
    #[error("event loop failed: {0}")]
    EventLoop(String),
}

impl VmmError {
    /// 2 for what the user can fix on the command line, 1 for everything else.
    pub fn exit_status(&self) -> u8 {
        match self {
            VmmError::Config(_)
            | VmmError::Boot(_)
            | VmmError::File { .. }
            | VmmError::DiskImage(_)
            | VmmError::HostRefuses(_) => 2,
            _ => 1,
        }
    }
}

pub(crate) fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmmError {
    move |source| VmmError::Kvm { what, source }
}

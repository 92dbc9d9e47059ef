//! Per-thread seccomp filters.
//!
//! Each kind of nestor thread has its own allow-list in `resources/seccomp/<kind>.json`,
//! compiled to BPF at build time. A thread installs its filter itself, before it touches
//! anything the guest controls. Filters stack: a thread started by a filtered thread runs
//! under its parent's filter as well as its own.

#[cfg(not(target_arch = "x86_64"))]
compile_error!("the seccomp policies are written for x86_64 syscalls and ioctls");

mod filters;
mod thread_setup;

use seccompiler::BpfProgramRef;

pub use thread_setup::{device_worker_setup, filtered_thread_setup};

/// What to do with a thread's filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeccompMode {
    /// A forbidden syscall kills nestor with SIGSYS.
    On,
    /// A forbidden syscall is allowed and logged by the kernel's audit subsystem.
    Log,
    /// No filters.
    Off,
}

impl SeccompMode {
    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "on" => Ok(SeccompMode::On),
            "log" => Ok(SeccompMode::Log),
            "off" => Ok(SeccompMode::Off),
            _ => Err("expected on, log or off".into()),
        }
    }
}

/// The kinds of thread nestor runs; each has its own filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadKind {
    /// The main thread: builds the VM, then runs the event loop.
    Vmm,
    Vcpu,
    /// A virtio device's queue worker (`dev-<kind><n>`).
    DeviceWorker,
    /// Relays host IOMMU faults and page requests to the guest.
    FaultRelay,
    /// Writes guest output to a host file (`out-stdout`, `out-serial`).
    HostOutput,
    /// Serves the HTTP API on `--api-socket` (`api`).
    Api,
}

impl ThreadKind {
    pub const ALL: [ThreadKind; 6] = [
        ThreadKind::Vmm,
        ThreadKind::Vcpu,
        ThreadKind::DeviceWorker,
        ThreadKind::FaultRelay,
        ThreadKind::HostOutput,
        ThreadKind::Api,
    ];

    /// The policy's name: its file is `resources/seccomp/<name>.json`.
    pub fn name(self) -> &'static str {
        match self {
            ThreadKind::Vmm => "vmm",
            ThreadKind::Vcpu => "vcpu",
            ThreadKind::DeviceWorker => "device-worker",
            ThreadKind::FaultRelay => "fault-relay",
            ThreadKind::HostOutput => "host-output",
            ThreadKind::Api => "api",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("cannot install the {} seccomp filter: {reason}", kind.name())]
    Install { kind: ThreadKind, reason: String },
}

/// The BPF program `kind` installs under `mode`; `None` when filters are off.
pub fn filter_for(kind: ThreadKind, mode: SeccompMode) -> Option<BpfProgramRef<'static>> {
    filters::program(kind, mode)
}

/// Installs the filter for `kind` on the calling thread (and sets PR_SET_NO_NEW_PRIVS).
pub fn install(kind: ThreadKind, mode: SeccompMode) -> Result<(), SeccompError> {
    let Some(program) = filter_for(kind, mode) else {
        return Ok(());
    };
    seccompiler::apply_filter(program).map_err(|e| SeccompError::Install {
        kind,
        reason: e.to_string(),
    })
}

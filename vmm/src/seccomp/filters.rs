//! The BPF programs compiled from `resources/seccomp/*.json` by the build script.

use seccompiler::sock_filter;

use super::{SeccompMode, ThreadKind};

include!(concat!(env!("OUT_DIR"), "/seccomp_filters.rs"));

/// The program `kind` installs under `mode`; `None` when filters are off.
pub fn program(kind: ThreadKind, mode: SeccompMode) -> Option<&'static [sock_filter]> {
    let (on, log) = match kind {
        ThreadKind::Vmm => (VMM_ON, VMM_LOG),
        ThreadKind::Vcpu => (VCPU_ON, VCPU_LOG),
        ThreadKind::DeviceWorker => (DEVICE_WORKER_ON, DEVICE_WORKER_LOG),
        ThreadKind::FaultRelay => (FAULT_RELAY_ON, FAULT_RELAY_LOG),
        ThreadKind::HostOutput => (HOST_OUTPUT_ON, HOST_OUTPUT_LOG),
        ThreadKind::Api => (API_ON, API_LOG),
    };
    match mode {
        SeccompMode::On => Some(on),
        SeccompMode::Log => Some(log),
        SeccompMode::Off => None,
    }
}

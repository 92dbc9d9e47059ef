//! What `nestor run` starts before clap parses its command line: the boot vCPU's thread,
//! which first fetches the CPUID KVM supports (every vCPU's CPUID starts from it). Fetching
//! it is about 0.1 ms of the kernel's work and needs nothing of the VM's configuration, and
//! the thread is one the VM needs anyway, so nothing is spent on a thread of its own (see
//! docs/startup.md).
//!
//! The thread opens `/dev/kvm` for itself; if it cannot, the VM's construction fetches the
//! CPUID on its own `/dev/kvm`, after opening it as before, so an error opening `/dev/kvm` is
//! reported as it always was, and only where a VM is built. Until the VM's construction
//! assigns it (right after KVM_CREATE_VM, as it starts the other vCPU threads), the thread
//! runs without a seccomp filter; it installs its own then, before it gets its vCPU, so
//! before the guest runs. It makes no file, so it does not mind the umask that binding the
//! API socket sets for a moment.

use std::sync::mpsc::{sync_channel, Receiver};

use arch::cpu::CpuError;
use kvm_bindings::CpuId;
use kvm_ioctls::Kvm;

use crate::vcpu::{self, UnassignedVcpuThread};

/// KVM's supported CPUID as the boot vCPU's thread fetched it: none if it could not open
/// `/dev/kvm`.
type FetchedCpuid = Option<Result<CpuId, CpuError>>;

/// The boot vCPU's thread and the CPUID it fetches, when started ahead.
pub struct HeadStart(Option<(UnassignedVcpuThread, Receiver<FetchedCpuid>)>);

impl HeadStart {
    /// Starts the boot vCPU's thread, fetching the CPUID; if no thread can be started, both
    /// are left to the VM's construction.
    pub fn begin() -> Self {
        let (fetched, cpuid) = sync_channel(1);
        let thread = vcpu::spawn_unassigned_vcpu(0, move || {
            let _ = fetched.send(Kvm::new().ok().map(|kvm| arch::cpu::supported_cpuid(&kvm)));
        });
        Self(thread.ok().map(|thread| (thread, cpuid)))
    }

    /// Nothing started ahead: the VM's construction does it all.
    pub fn none() -> Self {
        Self(None)
    }

    /// The boot vCPU's thread, if started, and the CPUID, once fetched, or fetched now
    /// through `kvm`.
    pub(super) fn take(self, kvm: &Kvm) -> (Option<UnassignedVcpuThread>, Result<CpuId, CpuError>) {
        let (thread, fetched) = match self.0 {
            Some((thread, cpuid)) => (Some(thread), cpuid.recv().ok().flatten()),
            None => (None, None),
        };
        let cpuid = fetched.unwrap_or_else(|| arch::cpu::supported_cpuid(kvm));
        (thread, cpuid)
    }
}

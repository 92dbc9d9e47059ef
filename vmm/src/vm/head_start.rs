//! What `nestor run` does before it knows its configuration. The boot vCPU's thread starts
//! first and parses the command line, then fetches the CPUID KVM supports (every vCPU's
//! CPUID starts from it); meanwhile the VMM thread has KVM make the VM. None of it needs
//! the configuration, and the parse, mostly the first run of clap's code, no longer stands
//! before KVM_CREATE_VM, nor the CPUID's fetch before anything (see docs/startup.md). The
//! thread is one the VM needs anyway.
//!
//! The VM is still made in one place, by the VMM thread, only earlier. What fails ahead is
//! done again in its place by the VM's construction, which reports it as it always did: an
//! error opening `/dev/kvm`, making the VM or fetching the CPUID comes after the command
//! line's own errors, and only where a VM is wanted. Until the VM's construction assigns it
//! (right after the VM is at hand, as it starts the other vCPU threads), the thread runs
//! without a seccomp filter; it installs its own then, before it gets its vCPU, so before
//! the guest runs. It makes no file, so it does not mind the umask that binding the API
//! socket sets for a moment.

use std::sync::mpsc::{sync_channel, Receiver};

use arch::cpu::CpuError;
use kvm_bindings::CpuId;
use kvm_ioctls::{Kvm, VmFd};

use super::Start;
use crate::vcpu::{self, UnassignedVcpuThread};

/// KVM's supported CPUID as the boot vCPU's thread fetched it: none if it could not open
/// `/dev/kvm`.
type FetchedCpuid = Option<Result<CpuId, CpuError>>;

/// The boot vCPU's thread and the VM, when made ahead; the VM's construction takes them.
pub struct HeadStart {
    pub(super) boot_vcpu_thread: Option<UnassignedVcpuThread>,
    /// `/dev/kvm` and a new VM on it; none if either failed.
    pub(super) vm: Option<(Kvm, VmFd)>,
    /// When the VM was at hand, for `--boot-timer`.
    pub(super) made: Option<Start>,
    pub(super) cpuid: AheadCpuid,
}

/// The CPUID the boot vCPU's thread fetches after the parse, if it was started.
pub(super) struct AheadCpuid(Option<Receiver<FetchedCpuid>>);

impl AheadCpuid {
    /// The CPUID the thread fetched, waiting for it if need be, or fetched now through `kvm`
    /// where the thread did not.
    pub fn get(self, kvm: &Kvm) -> Result<CpuId, CpuError> {
        self.0
            .and_then(|fetched| fetched.recv().ok().flatten())
            .unwrap_or_else(|| arch::cpu::supported_cpuid(kvm))
    }
}

impl HeadStart {
    /// Starts the boot vCPU's thread, which runs `parse` and then fetches the CPUID, and
    /// meanwhile makes the VM; returns what `parse` returned. If no thread can be started,
    /// `parse` runs here, after the VM is made.
    pub fn begin<T: Send + 'static>(parse: fn() -> T) -> (Self, T) {
        let (parsed, parse_result) = sync_channel(1);
        let (fetched, cpuid) = sync_channel(1);
        let thread = vcpu::spawn_unassigned_vcpu(0, move || {
            let _ = parsed.send(parse());
            let _ = fetched.send(Kvm::new().ok().map(|kvm| arch::cpu::supported_cpuid(&kvm)));
        })
        .ok();
        let vm = Kvm::new()
            .ok()
            .and_then(|kvm| kvm.create_vm().ok().map(|fd| (kvm, fd)));
        let made = vm.is_some().then(Start::now);
        // A thread that ended without sending (it could not be started, or panicked)
        // leaves the parse to this one.
        let result = parse_result.recv().unwrap_or_else(|_| parse());
        let head_start = Self {
            boot_vcpu_thread: thread,
            vm,
            made,
            cpuid: AheadCpuid(Some(cpuid)),
        };
        (head_start, result)
    }

    /// Nothing made ahead: the VM's construction does it all.
    pub fn none() -> Self {
        Self {
            boot_vcpu_thread: None,
            vm: None,
            made: None,
            cpuid: AheadCpuid(None),
        }
    }
}

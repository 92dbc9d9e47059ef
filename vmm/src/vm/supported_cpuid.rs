//! The CPUID KVM supports, which every vCPU's CPUID starts from. Fetching it is about 0.1 ms
//! of the kernel's work and needs nothing of the VM's configuration, so `nestor run` fetches
//! it on a thread of its own while clap parses the command line (see docs/startup.md).
//!
//! The thread opens `/dev/kvm` for itself; if it cannot, the VM's construction fetches the
//! CPUID on its own `/dev/kvm` instead, after opening it as before, so an error opening
//! `/dev/kvm` is reported as it always was, and only where a VM is built. The thread installs
//! no seccomp filter: the VM's construction joins it right after KVM_CREATE_VM, before any
//! thread installs a filter, and it makes no file, so it does not mind the umask that binding
//! the API socket sets for a moment.

use std::thread::JoinHandle;

use arch::cpu::CpuError;
use kvm_bindings::CpuId;
use kvm_ioctls::Kvm;

/// The thread's stack: it makes a few system calls, and a small stack costs less to set up.
const THREAD_STACK: usize = 64 << 10;

/// KVM's supported CPUID: being fetched ahead, or to be fetched when it is wanted.
pub struct SupportedCpuid(Option<JoinHandle<Option<Result<CpuId, CpuError>>>>);

impl SupportedCpuid {
    /// Starts fetching it on a thread of its own; without a thread, it is fetched when taken.
    pub fn fetch_ahead() -> Self {
        let thread = std::thread::Builder::new()
            .name("kvm-cpuid".into())
            .stack_size(THREAD_STACK)
            .spawn(|| Kvm::new().ok().map(|kvm| arch::cpu::supported_cpuid(&kvm)));
        Self(thread.ok())
    }

    /// Fetches it when taken, on the thread that takes it.
    pub fn on_demand() -> Self {
        Self(None)
    }

    /// The CPUID, once the thread fetching it has ended, or fetched now through `kvm`.
    pub(super) fn take(self, kvm: &Kvm) -> Result<CpuId, CpuError> {
        let fetched = self.0.and_then(|thread| {
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
        fetched.unwrap_or_else(|| arch::cpu::supported_cpuid(kvm))
    }
}

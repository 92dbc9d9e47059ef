//! Putting a vCPU in the state a boot protocol expects.

mod cpuid;
mod gdt;
mod lapic;
mod msrs;
mod paging;
mod regs;

pub use cpuid::{setup_cpuid, supported_cpuid};
pub use lapic::setup_lapic;
pub use msrs::setup_msrs;
pub use regs::setup_boot_cpu;

#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    #[error("KVM refused the vCPU setup ({what}): {source}")]
    Kvm {
        what: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("cannot write boot tables to guest memory: {0}")]
    Memory(String),
    #[error("KVM accepted only {set} of {wanted} boot MSRs")]
    Msrs { set: usize, wanted: usize },
}

pub(crate) fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> CpuError {
    move |source| CpuError::Kvm { what, source }
}

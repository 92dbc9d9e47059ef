//! CPUID: what KVM supports, with each vCPU's topology and the hypervisor bit filled in.

use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuFd};

use super::{kvm_err, CpuError};

const LEAF_FEATURES: u32 = 0x1;
const LEAF_EXT_FEATURES: u32 = 0x8000_0001;
const ECX_VMX: u32 = 1 << 5;
const EXT_ECX_SVM: u32 = 1 << 2;
const LEAF_EXTENDED_TOPOLOGY: u32 = 0xb;
const LEAF_V2_EXTENDED_TOPOLOGY: u32 = 0x1f;
const ECX_HYPERVISOR: u32 = 1 << 31;
const EDX_HTT: u32 = 1 << 28;

/// The host-supported CPUID, fetched once per VM and shared by its vCPUs.
pub fn supported_cpuid(kvm: &Kvm) -> Result<CpuId, CpuError> {
    kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm_err("get_supported_cpuid"))
}

/// Gives vCPU `index` of `count` its APIC ID and one-core-per-CPU topology. Hardware
/// virtualization (VMX/SVM) is offered only when `nested`: a guest that sees it initialises
/// its own KVM, which costs boot time for nothing when it will not run guests.
pub fn setup_cpuid(
    vcpu: &VcpuFd,
    base: &CpuId,
    index: u8,
    count: u8,
    nested: bool,
) -> Result<(), CpuError> {
    let mut cpuid = base.clone();
    patch_cpuid(&mut cpuid, index, count, nested);
    vcpu.set_cpuid2(&cpuid).map_err(kvm_err("set_cpuid2"))
}

pub(crate) fn patch_cpuid(cpuid: &mut CpuId, index: u8, count: u8, nested: bool) {
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            LEAF_FEATURES => {
                entry.ecx |= ECX_HYPERVISOR;
                if !nested {
                    entry.ecx &= !ECX_VMX;
                }
                // EBX[31:24] initial APIC ID, EBX[23:16] logical processors per package.
                entry.ebx = (entry.ebx & 0x0000_ffff)
                    | (u32::from(index) << 24)
                    | (u32::from(count.max(1)) << 16);
                if count > 1 {
                    entry.edx |= EDX_HTT;
                }
            }
            LEAF_EXTENDED_TOPOLOGY | LEAF_V2_EXTENDED_TOPOLOGY => {
                entry.edx = u32::from(index);
            }
            LEAF_EXT_FEATURES if !nested => {
                entry.ecx &= !EXT_ECX_SVM;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    #[test]
    fn apic_id_and_hypervisor_bit() {
        let mut cpuid = CpuId::from_entries(&[
            kvm_cpuid_entry2 {
                function: LEAF_FEATURES,
                ebx: 0xff00_1234,
                ecx: ECX_VMX,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: LEAF_EXT_FEATURES,
                ecx: EXT_ECX_SVM,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: LEAF_EXTENDED_TOPOLOGY,
                ..Default::default()
            },
        ])
        .unwrap();
        let mut nested = cpuid.clone();
        patch_cpuid(&mut cpuid, 3, 4, false);
        let leaves = cpuid.as_slice();
        assert_eq!(leaves[0].ebx, 0x0304_1234);
        assert_ne!(leaves[0].ecx & ECX_HYPERVISOR, 0);
        assert_ne!(leaves[0].edx & EDX_HTT, 0);
        assert_eq!(leaves[0].ecx & ECX_VMX, 0);
        assert_eq!(leaves[1].ecx & EXT_ECX_SVM, 0);
        assert_eq!(leaves[2].edx, 3);

        patch_cpuid(&mut nested, 3, 4, true);
        assert_ne!(nested.as_slice()[0].ecx & ECX_VMX, 0);
        assert_ne!(nested.as_slice()[1].ecx & EXT_ECX_SVM, 0);
    }
}

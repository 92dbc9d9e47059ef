//! Whether a passed-through device's host IOMMU can take a guest's SMMUv3 stage 1 through
//! iommufd, asked of the kernel the way nesting would use it: the device's hardware info
//! (an ARM SMMUv3?), a nest-parent HWPT over its IOAS, and an SMMUv3 vIOMMU over that, made
//! and destroyed through the nested back-end's own object calls.
//! The first call the kernel refuses is the answer, named, with what nesting needs.

use std::fmt;
use std::sync::Arc;

use iommufd_bindings::iommufd::{
    iommu_hw_info_arm_smmuv3, iommu_hw_info_type_IOMMU_HW_INFO_TYPE_AMD as TYPE_AMD,
    iommu_hw_info_type_IOMMU_HW_INFO_TYPE_ARM_SMMUV3 as TYPE_ARM_SMMUV3,
    iommu_hw_info_type_IOMMU_HW_INFO_TYPE_INTEL_VTD as TYPE_INTEL_VTD,
    iommu_hw_info_type_IOMMU_HW_INFO_TYPE_NONE as TYPE_NONE,
    iommu_hw_info_type_IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV as TYPE_TEGRA241_CMDQV,
    iommu_viommu_type_IOMMU_VIOMMU_TYPE_ARM_SMMUV3 as VIOMMU_ARM_SMMUV3,
};
use iommufd_ioctls::{IommuFd, IommufdHwInfoData};

use super::iommufd_nested::{IommufdObjects, KernelIommufd};
use super::iommufd_os_error;
use super::iommufd_smmuv3::HwInfoArmSmmuv3;

/// A host IOMMU that can nest: its SMMU as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NestingCapable {
    pub info: HwInfoArmSmmuv3,
}

/// The call the kernel refused, and why nesting needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NestingRefused {
    pub call: &'static str,
    pub reason: String,
}

impl fmt::Display for NestingRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.call, self.reason)
    }
}

/// The hardware-info type's name, for messages.
pub fn hw_info_type_name(kind: u32) -> &'static str {
    match kind {
        TYPE_NONE => "an IOMMU whose driver reports no hardware info",
        TYPE_INTEL_VTD => "an Intel VT-d IOMMU",
        TYPE_ARM_SMMUV3 => "an ARM SMMUv3",
        TYPE_TEGRA241_CMDQV => "an NVIDIA Tegra241 CMDQV SMMUv3",
        TYPE_AMD => "an AMD IOMMU",
        _ => "an IOMMU of a type this nestor does not know",
    }
}

/// Asks the kernel whether device `dev_id` (bound to `iommufd`, attached to IOAS `ioas_id`)
/// can have a guest-owned SMMUv3 stage 1. Leaves nothing allocated.
pub fn probe(
    iommufd: &Arc<IommuFd>,
    dev_id: u32,
    ioas_id: u32,
) -> Result<NestingCapable, NestingRefused> {
    let mut data = IommufdHwInfoData::Smmuv3(iommu_hw_info_arm_smmuv3::default());
    let info = iommufd
        .device_hw_info(dev_id, &mut data)
        .map_err(|e| NestingRefused {
            call: "IOMMU_GET_HW_INFO",
            reason: format!("failed: {}", iommufd_os_error(e)),
        })?;
    // SAFETY: both members of the union are the same u32, which the kernel filled.
    let kind = unsafe { info.__bindgen_anon_1.out_data_type };
    if kind != TYPE_ARM_SMMUV3 {
        return Err(NestingRefused {
            call: "IOMMU_GET_HW_INFO",
            reason: format!(
                "reports {} (type {kind}); nestor's nested mode hands the guest an SMMUv3 stage 1, which needs an ARM SMMUv3 host IOMMU",
                hw_info_type_name(kind)
            ),
        });
    }
    let IommufdHwInfoData::Smmuv3(smmu) = data;
    let objects = KernelIommufd(iommufd.clone());
    let parent = objects
        .alloc_nest_parent(dev_id, ioas_id)
        .map_err(|e| NestingRefused {
            call: "IOMMU_HWPT_ALLOC (NEST_PARENT)",
            reason: format!("failed: {e}; the SMMU needs stage 2 (S2P) and nesting support"),
        })?;
    let viommu = objects.alloc_viommu(VIOMMU_ARM_SMMUV3, dev_id, parent);
    if let Ok(id) = viommu {
        let _ = objects.destroy(id);
    }
    let _ = objects.destroy(parent);
    viommu.map_err(|e| NestingRefused {
        call: "IOMMU_VIOMMU_ALLOC (ARM SMMUv3)",
        reason: format!(
            "failed: {e}; the SMMU needs FEAT_NESTING and S2FWB, or CANWBS for the device in the IORT"
        ),
    })?;
    Ok(NestingCapable {
        info: HwInfoArmSmmuv3::new(smmu.flags, smmu.idr),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_call_and_the_host_iommu() {
        let r = NestingRefused {
            call: "IOMMU_GET_HW_INFO",
            reason: format!("reports {} (type {TYPE_AMD})", hw_info_type_name(TYPE_AMD)),
        };
        assert_eq!(
            r.to_string(),
            "IOMMU_GET_HW_INFO reports an AMD IOMMU (type 4)"
        );
        assert_eq!(hw_info_type_name(TYPE_INTEL_VTD), "an Intel VT-d IOMMU");
        assert!(hw_info_type_name(99).contains("does not know"));
    }
}

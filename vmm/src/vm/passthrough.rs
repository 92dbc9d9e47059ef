//! Host PCI devices passed through over the legacy VFIO container, without an IOMMU in
//! the guest: every device shares one container, which maps all of guest RAM at IOVA =
//! GPA once the first device's group has set its IOMMU up.

use std::path::Path;
use std::sync::Arc;

use devices::host_iommu::VfioContainerIommu;
use devices::vfio::{map_guest_ram, GuestMemorySlots, HostVfioDevice};
use kvm_bindings::{kvm_create_device, kvm_device_type_KVM_DEV_TYPE_VFIO};
use vfio_ioctls::{VfioContainer, VfioDevice, VfioDeviceFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap};

use super::device_memory::KvmDeviceMemory;

use super::error::VmmError;
use super::GuestVm;

fn passthrough_err(path: &Path, what: impl std::fmt::Display) -> VmmError {
    VmmError::Device(format!("--vfio {}: {what}", path.display()))
}

/// The container the passthrough devices share, created with the first of them, and
/// the memory slots their BARs take.
pub struct Passthrough {
    container: Option<Arc<VfioContainer>>,
    slots: Arc<KvmDeviceMemory>,
}

impl Passthrough {
    pub fn new(vm: &Arc<GuestVm>) -> Self {
        let ram_slots = vm.memory().num_regions() as u32;
        Self {
            container: None,
            slots: Arc::new(KvmDeviceMemory::new(Arc::downgrade(vm), ram_slots)),
        }
    }

    pub fn memory_slots(&self) -> Arc<dyn GuestMemorySlots> {
        self.slots.clone()
    }

    /// Opens the device at `path` (its sysfs directory) through the container; the
    /// first device maps guest RAM for all.
    pub fn open(
        &mut self,
        vm: &GuestVm,
        mem: &GuestMemoryMmap,
        path: &Path,
    ) -> Result<HostVfioDevice, VmmError> {
        let (container, first) = match &self.container {
            Some(container) => (container.clone(), false),
            None => (Arc::new(new_container(vm, path)?), true),
        };
        let device = VfioDevice::new(path, container.clone(), false)
            .map_err(|e| passthrough_err(path, format!("cannot open the device: {e}")))?;
        if first {
            let iommu = VfioContainerIommu::new(container.clone());
            map_guest_ram(&iommu, mem)
                .map_err(|e| passthrough_err(path, format!("cannot map guest RAM for DMA: {e}")))?;
            self.container = Some(container);
        }
        Ok(HostVfioDevice::new(device))
    }
}

/// A container that tells KVM about its groups (the KVM VFIO device), so KVM honours
/// the guest's cache attributes for a device whose DMA does not snoop.
fn new_container(vm: &GuestVm, path: &Path) -> Result<VfioContainer, VmmError> {
    let mut request = kvm_create_device {
        type_: kvm_device_type_KVM_DEV_TYPE_VFIO,
        fd: 0,
        flags: 0,
    };
    let kvm_vfio = vm
        .create_device(&mut request)
        .map_err(|e| passthrough_err(path, format!("cannot create the KVM VFIO device: {e}")))?;
    VfioContainer::new(Some(Arc::new(VfioDeviceFd::new_from_kvm(kvm_vfio))))
        .map_err(|e| passthrough_err(path, format!("cannot open the VFIO container: {e}")))
}

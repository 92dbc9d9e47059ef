//! Host PCI devices passed through over VFIO, and the host I/O address spaces their DMA
//! goes through.
//!
//! A device without the virtio-iommu (`iommu=off`) sees guest-physical addresses: such
//! devices share one address space per back-end, holding all of guest RAM at IOVA = GPA
//! from before the guest runs. A device behind the virtio-iommu (`iommu=on`) gets an
//! address space of its own (one per IOMMU group, which the host cannot split), empty
//! until the guest maps into the domain it attaches the device to; the virtio-iommu fills
//! it through [`HostIommu`].
//!
//! Back-ends: the legacy VFIO container (an address space is a container, the groups in
//! it its members) and iommufd (an address space is an IOAS of the one `/dev/iommu` fd,
//! the devices' cdevs attached to it).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use devices::host_iommu::iommufd_nested::VfioCdevEndpoint;
use devices::host_iommu::iommufd_nesting::{self, NestingCapable};
use devices::host_iommu::{HostIommu, IommufdIoasIommu, VfioContainerIommu};
use devices::vfio::{map_guest_ram, GuestMemorySlots, HostVfioDevice};
use iommufd_ioctls::{IommuFd, IommufdIoas};
use kvm_bindings::{kvm_create_device, kvm_device_type_KVM_DEV_TYPE_VFIO};
use vfio_ioctls::{VfioContainer, VfioDevice, VfioDeviceFd, VfioIommufd, VfioOps};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use super::device_memory::{DmaTargets, KvmDeviceMemory};
use super::error::VmmError;
use super::nested_passthrough::NestedPassthrough;
use super::GuestVm;
use crate::vfio_options::{NestedPolicy, VfioBackend, VfioOptions};

fn passthrough_err(path: &Path, what: impl std::fmt::Display) -> VmmError {
    VmmError::Device(format!("--vfio {}: {what}", path.display()))
}

/// One host I/O address space and what VFIO needs to add devices to it.
struct AddressSpace {
    /// What `VfioDevice::new` binds a device through.
    ops: Arc<dyn VfioOps>,
    /// The same address space, for mapping.
    iommu: Arc<dyn HostIommu>,
    /// The IOAS, on the iommufd back-end.
    ioas_id: Option<u32>,
}

/// Which address space a device joins: the shared one of its back-end, or the one of its
/// IOMMU group behind the virtio-iommu.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum SpaceKey {
    GuestPhysical(VfioBackend),
    Group(VfioBackend, String),
}

/// A host device opened for passthrough.
pub struct OpenedDevice {
    pub device: HostVfioDevice,
    /// The address space the virtio-iommu fills, for an `iommu=on` device (and a nested
    /// device's, should its StreamID be refused under `nested=prefer`).
    pub behind_iommu: Option<Arc<dyn HostIommu>>,
    /// The device's cdev for the nested back-end, when its stage 1 is to be the guest's.
    pub nested: Option<(VfioCdevEndpoint, NestedPolicy)>,
}

/// The address spaces the passthrough devices share and the memory slots their BARs take.
pub struct Passthrough {
    /// The KVM VFIO device, created with the first address space (KVM allows one).
    kvm_vfio: Option<Arc<VfioDeviceFd>>,
    iommufd: Option<Arc<IommuFd>>,
    spaces: HashMap<SpaceKey, AddressSpace>,
    /// The address space each IOMMU group joined.
    groups: HashMap<String, SpaceKey>,
    slots: Arc<KvmDeviceMemory>,
    /// The nested back-end, made for the first device that can nest.
    nested: Option<Arc<NestedPassthrough>>,
    /// The VM's virtio-iommu serves emulated devices in nested mode (the software SMMUv3).
    emulated_nested: bool,
}

impl Passthrough {
    /// `emulated_nested`: the virtio-iommu's nested mode serves emulated devices through
    /// the software SMMUv3, so passed-through devices cannot have it too.
    pub fn new(vm: &Arc<GuestVm>, emulated_nested: bool) -> Self {
        let ram_slots = vm.memory().num_regions() as u32;
        Self {
            kvm_vfio: None,
            iommufd: None,
            spaces: HashMap::new(),
            groups: HashMap::new(),
            slots: Arc::new(KvmDeviceMemory::new(Arc::downgrade(vm), ram_slots)),
            nested: None,
            emulated_nested,
        }
    }

    /// The nested back-end, if a device's stage 1 is the guest's.
    pub fn nested(&self) -> Option<&Arc<NestedPassthrough>> {
        self.nested.as_ref()
    }

    pub fn memory_slots(&self) -> Arc<dyn GuestMemorySlots> {
        self.slots.clone()
    }

    /// Guest RAM and the passthrough BARs, as the virtio-iommu may map them for a device.
    pub fn dma_targets(&self, ram: &GuestMemoryMmap) -> DmaTargets {
        DmaTargets {
            ram: ram.clone(),
            bars: self.slots.clone(),
        }
    }

    /// Opens the device `options` names into the address space it belongs to, creating
    /// that on first use; the first device of the guest-physical space maps guest RAM.
    pub fn open(
        &mut self,
        vm: &GuestVm,
        mem: &GuestMemoryMmap,
        options: &VfioOptions,
    ) -> Result<OpenedDevice, VmmError> {
        let path = options.path.as_path();
        let backend = options.backend.unwrap_or_default();
        let group = iommu_group(path)?;
        let key = if options.iommu {
            SpaceKey::Group(backend, group.clone())
        } else {
            SpaceKey::GuestPhysical(backend)
        };
        self.check_group_not_split(&key, &group, path)?;
        let created = !self.spaces.contains_key(&key);
        if created {
            let space = self.new_space(vm, backend, path)?;
            self.spaces.insert(key.clone(), space);
        }
        let space = &self.spaces[&key];
        let device = VfioDevice::new(path, space.ops.clone(), true)
            .map(Arc::new)
            .map_err(|e| passthrough_err(path, format!("cannot open the device: {e}")))?;
        let mut nested = None;
        if let Some(policy) = options.nested {
            let ioas_id = space.ioas_id;
            if let Some(host) = self.check_nesting(&device, ioas_id, policy, options)? {
                nested = self
                    .nested_endpoint(&device, &host, mem, policy, options)?
                    .map(|endpoint| (endpoint, policy));
            }
        }
        let space = &self.spaces[&key];
        if created && !options.iommu {
            let started = Instant::now();
            map_guest_ram(space.iommu.as_ref(), mem)
                .map_err(|e| passthrough_err(path, format!("cannot map guest RAM for DMA: {e}")))?;
            log::info!(
                "vfio: guest RAM ({} MiB) mapped for DMA in {} us",
                mem.iter().map(|r| r.len()).sum::<u64>() >> 20,
                started.elapsed().as_micros()
            );
        }
        Ok(OpenedDevice {
            device: HostVfioDevice::new(device),
            behind_iommu: options.iommu.then(|| space.iommu.clone()),
            nested,
        })
    }

    /// The device's cdev as an endpoint of the nested back-end, made with the first one.
    /// A back-end the kernel refuses stops `require` and is done without under `prefer`.
    fn nested_endpoint(
        &mut self,
        device: &Arc<VfioDevice>,
        host: &NestingCapable,
        mem: &GuestMemoryMmap,
        policy: NestedPolicy,
        options: &VfioOptions,
    ) -> Result<Option<VfioCdevEndpoint>, VmmError> {
        let bdf = options.bdf();
        let (Some(iommufd), Some(endpoint)) =
            (&self.iommufd, VfioCdevEndpoint::new(device.clone()))
        else {
            return Ok(None);
        };
        if self.nested.is_none() {
            match NestedPassthrough::new(iommufd, &endpoint, host, mem) {
                Ok(nested) => self.nested = Some(Arc::new(nested)),
                Err(why) => {
                    return nested_fallback(&bdf, policy, &format!("the nested back-end: {why}"))
                        .map(|()| None)
                }
            }
        }
        log::info!("--vfio {bdf}: the guest owns the device's stage 1 (nested translation on the host SMMUv3)");
        Ok(Some(endpoint))
    }

    /// `nested=`: asks the kernel whether the device's host IOMMU can take a guest's SMMUv3
    /// stage 1: the host's SMMU if it can (and the VM's nested mode is free for it), else
    /// `require` stops here and `prefer` goes on behind MAP and UNMAP with a warning that
    /// says why.
    fn check_nesting(
        &self,
        device: &VfioDevice,
        ioas_id: Option<u32>,
        policy: NestedPolicy,
        options: &VfioOptions,
    ) -> Result<Option<NestingCapable>, VmmError> {
        let bdf = options.bdf();
        let (Some(iommufd), Some(dev_id), Some(ioas_id)) =
            (&self.iommufd, device.iommufd_dev_id(), ioas_id)
        else {
            return Err(VmmError::HostRefuses(format!(
                "--vfio {bdf}: nested= needs the device bound to iommufd (backend=iommufd)"
            )));
        };
        let why = match iommufd_nesting::probe(iommufd, dev_id, ioas_id) {
            Err(refused) => format!("the host IOMMU cannot nest: {refused}"),
            // One virtio-iommu has one nested back-end: the software SMMUv3 translating
            // emulated devices, or the host's SMMU translating its own.
            Ok(_) if self.emulated_nested => "the host IOMMU can nest, but the virtio-iommu's nested mode serves --dma-engine iommu=nested through the software SMMUv3, and one VM has one nested back-end".into(),
            Ok(host) => return Ok(Some(host)),
        };
        nested_fallback(&bdf, policy, &why).map(|()| None)
    }

    /// A group is in one address space only: the host cannot give part of it guest RAM
    /// and part of it the virtio-iommu's domains, or split it between back-ends.
    fn check_group_not_split(
        &mut self,
        key: &SpaceKey,
        group: &str,
        path: &Path,
    ) -> Result<(), VmmError> {
        match self.groups.get(group) {
            Some(joined) if joined != key => Err(passthrough_err(
                path,
                format!(
                    "another device of IOMMU group {group} is passed through with other \
                     iommu= or backend= options; give every device of a group the same"
                ),
            )),
            Some(_) => Ok(()),
            None => {
                self.groups.insert(group.to_string(), key.clone());
                Ok(())
            }
        }
    }

    fn kvm_vfio(&mut self, vm: &GuestVm, path: &Path) -> Result<Arc<VfioDeviceFd>, VmmError> {
        if let Some(fd) = &self.kvm_vfio {
            return Ok(fd.clone());
        }
        let mut request = kvm_create_device {
            type_: kvm_device_type_KVM_DEV_TYPE_VFIO,
            fd: 0,
            flags: 0,
        };
        let device = vm.create_device(&mut request).map_err(|e| {
            passthrough_err(path, format!("cannot create the KVM VFIO device: {e}"))
        })?;
        let fd = Arc::new(VfioDeviceFd::new_from_kvm(device));
        self.kvm_vfio = Some(fd.clone());
        Ok(fd)
    }

    /// A new, empty address space. Its devices are known to KVM (the KVM VFIO device), so
    /// KVM honours the guest's cache attributes for a device whose DMA does not snoop.
    fn new_space(
        &mut self,
        vm: &GuestVm,
        backend: VfioBackend,
        path: &Path,
    ) -> Result<AddressSpace, VmmError> {
        let kvm_vfio = self.kvm_vfio(vm, path)?;
        match backend {
            VfioBackend::Container => {
                let container = Arc::new(VfioContainer::new(Some(kvm_vfio)).map_err(|e| {
                    passthrough_err(path, format!("cannot open the VFIO container: {e}"))
                })?);
                Ok(AddressSpace {
                    iommu: Arc::new(VfioContainerIommu::new(container.clone())),
                    ops: container,
                    ioas_id: None,
                })
            }
            VfioBackend::Iommufd => {
                let iommufd = match &self.iommufd {
                    Some(fd) => fd.clone(),
                    None => {
                        let fd = Arc::new(IommuFd::new().map_err(|e| {
                            passthrough_err(path, format!("cannot open /dev/iommu: {e}"))
                        })?);
                        self.iommufd = Some(fd.clone());
                        fd
                    }
                };
                let ioas = Arc::new(IommufdIoas::new(iommufd.clone()).map_err(|e| {
                    passthrough_err(path, format!("cannot allocate an iommufd IOAS: {e}"))
                })?);
                let ops = VfioIommufd::new(iommufd.clone(), Some(ioas.clone()), Some(kvm_vfio))
                    .map_err(|e| passthrough_err(path, format!("iommufd: {e}")))?;
                Ok(AddressSpace {
                    ioas_id: Some(ioas.id()),
                    iommu: Arc::new(IommufdIoasIommu::with_ioas(iommufd, ioas)),
                    ops: Arc::new(ops),
                })
            }
        }
    }
}

/// A device that cannot have nested translation, for `why`: `require` stops nestor (exit
/// 2), `prefer` warns and the device maps through the virtio-iommu's MAP and UNMAP.
pub fn nested_fallback(bdf: &str, policy: NestedPolicy, why: &str) -> Result<(), VmmError> {
    match policy {
        NestedPolicy::Require => Err(VmmError::HostRefuses(format!(
            "--vfio {bdf}: nested=require: {why}; use nested=prefer to map through the virtio-iommu instead"
        ))),
        NestedPolicy::Prefer => {
            log::warn!(
                "--vfio {bdf}: nested=prefer: {why}; the device maps through the virtio-iommu's MAP and UNMAP"
            );
            Ok(())
        }
    }
}

/// The name of the device's IOMMU group (checked present when the options were).
fn iommu_group(path: &Path) -> Result<String, VmmError> {
    std::fs::read_link(path.join("iommu_group"))
        .ok()
        .and_then(|g| g.file_name().map(|n| n.to_string_lossy().into_owned()))
        .ok_or_else(|| passthrough_err(path, "no IOMMU group"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_stops_with_one_line_and_exit_2_prefer_goes_on() {
        let why = "the host IOMMU can nest, but the virtio-iommu's nested mode serves --dma-engine iommu=nested";
        let err = nested_fallback("0000:00:04.0", NestedPolicy::Require, why).unwrap_err();
        assert_eq!(err.exit_status(), 2);
        let message = err.to_string();
        assert_eq!(message.lines().count(), 1, "{message}");
        assert!(
            message.contains("--vfio 0000:00:04.0: nested=require: the host IOMMU can nest"),
            "{message}"
        );
        assert!(message.ends_with("use nested=prefer to map through the virtio-iommu instead"));
        assert!(nested_fallback("0000:00:04.0", NestedPolicy::Prefer, why).is_ok());
    }
}

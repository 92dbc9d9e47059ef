//! The iommufd objects behind nested translation, and their lifecycle: a vIOMMU over a
//! nest-parent stage-2 HWPT, a vDEVICE per endpoint carrying its guest StreamID, a nested
//! HWPT per installed guest STE (attached by replacement), invalidations through the
//! vIOMMU with the kernel's `entry_num` checked, and teardown in the order the kernel
//! needs (endpoints back on the parent, nested HWPTs, vDEVICEs, then the vIOMMU and the
//! parent).
//!
//! Two seams keep it independent of what it runs on: [`NestedFormat`], the
//! hardware-specific data (SMMUv3 STEs and commands, or the test driver's own types), and
//! [`IommufdObjects`], the ioctls (the kernel's, or a recording fake in tests). How an
//! endpoint is attached ([`NestedEndpoint`]) is the device's: a VFIO cdev, or a mock
//! device of the test driver.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;

use iommufd_bindings::iommufd::{
    iommu_hwpt_alloc, iommu_hwpt_invalidate, iommu_vdevice_alloc, iommu_viommu_alloc,
    iommufd_hwpt_alloc_flags_IOMMU_HWPT_ALLOC_NEST_PARENT,
};
use iommufd_ioctls::IommuFd;

use super::iommufd_os_error;
use super::nested::{Command, InvalidateError, NestedError};

/// The hardware-specific data a nested back-end hands the kernel.
pub trait NestedFormat: Debug + Send + Sync {
    /// VIOMMU_ALLOC's `type`.
    fn viommu_type(&self) -> u32;
    /// HWPT_ALLOC's `data_type` for a nested HWPT.
    fn hwpt_data_type(&self) -> u32;
    /// The nested HWPT data for a guest STE (dwords 0 and 1), or why the host refuses it.
    fn hwpt_data(&self, stream: u32, vste: [u64; 2]) -> Result<Vec<u8>, NestedError>;
    /// HWPT_INVALIDATE's `data_type` on the vIOMMU.
    fn invalidate_data_type(&self) -> u32;
    /// Bytes per invalidation entry.
    fn invalidate_entry_len(&self) -> u32;
    /// The entries for `commands`, up to the first the host would refuse: the bytes, and
    /// that command's index and opcode.
    fn invalidate_entries(&self, commands: &[Command]) -> (Vec<u8>, Option<(usize, u8)>);
}

/// The iommufd ioctls the lifecycle uses; object ids are iommufd's.
pub trait IommufdObjects: Debug + Send + Sync {
    /// HWPT_ALLOC with `IOMMU_HWPT_ALLOC_NEST_PARENT` on an IOAS.
    fn alloc_nest_parent(&self, dev_id: u32, ioas_id: u32) -> io::Result<u32>;
    fn alloc_viommu(&self, viommu_type: u32, dev_id: u32, parent_id: u32) -> io::Result<u32>;
    fn alloc_vdevice(&self, viommu_id: u32, dev_id: u32, virt_id: u64) -> io::Result<u32>;
    /// HWPT_ALLOC of a nested HWPT on the vIOMMU.
    fn alloc_nested_hwpt(
        &self,
        dev_id: u32,
        viommu_id: u32,
        data_type: u32,
        data: &[u8],
    ) -> io::Result<u32>;
    /// HWPT_INVALIDATE on the vIOMMU: the entries the kernel handled, and its error if it
    /// stopped early.
    fn invalidate(
        &self,
        viommu_id: u32,
        data_type: u32,
        entry_len: u32,
        entries: &[u8],
    ) -> (u32, Option<io::Error>);
    fn destroy(&self, id: u32) -> io::Result<()>;
}

/// A device bound to the iommufd, as the nested back-end drives it.
pub trait NestedEndpoint: Debug + Send + Sync {
    /// Its iommufd device id.
    fn dev_id(&self) -> u32;
    /// Attaches it to `pt_id`, replacing what it was attached to.
    fn attach(&self, pt_id: u32) -> io::Result<()>;
}

#[derive(Debug, thiserror::Error)]
pub enum NestedSetupError {
    #[error("{call} failed: {source}")]
    Call {
        call: &'static str,
        source: io::Error,
    },
    #[error("guest StreamID {0:#x} already has an endpoint")]
    DuplicateStream(u32),
}

fn call(call: &'static str) -> impl FnOnce(io::Error) -> NestedSetupError {
    move |source| NestedSetupError::Call { call, source }
}

#[derive(Debug)]
struct Endpoint {
    device: Box<dyn NestedEndpoint>,
    vdevice_id: u32,
    /// The nested HWPT the device is attached to; `None`: the parent (no guest STE).
    nested_hwpt: Option<u32>,
}

/// The nested objects of one vIOMMU.
#[derive(Debug)]
pub struct IommufdNested<F: NestedFormat, O: IommufdObjects> {
    format: F,
    objects: O,
    parent_id: u32,
    viommu_id: u32,
    endpoints: BTreeMap<u32, Endpoint>,
}

impl<F: NestedFormat, O: IommufdObjects> IommufdNested<F, O> {
    /// A nest parent on `ioas_id` (the IOAS that maps all guest RAM) and a vIOMMU over it,
    /// both allocated for `first`, a device on the host IOMMU instance they serve. Attach
    /// `first` with [`Self::add_endpoint`] afterwards.
    pub fn new(
        format: F,
        objects: O,
        first: &dyn NestedEndpoint,
        ioas_id: u32,
    ) -> Result<Self, NestedSetupError> {
        let parent_id = objects
            .alloc_nest_parent(first.dev_id(), ioas_id)
            .map_err(call("IOMMU_HWPT_ALLOC (nest parent)"))?;
        let viommu_id = match objects.alloc_viommu(format.viommu_type(), first.dev_id(), parent_id)
        {
            Ok(id) => id,
            Err(e) => {
                let _ = objects.destroy(parent_id);
                return Err(call("IOMMU_VIOMMU_ALLOC")(e));
            }
        };
        Ok(Self {
            format,
            objects,
            parent_id,
            viommu_id,
            endpoints: BTreeMap::new(),
        })
    }

    pub fn parent_id(&self) -> u32 {
        self.parent_id
    }

    pub fn viommu_id(&self) -> u32 {
        self.viommu_id
    }

    /// The vDEVICE and nested HWPT of a guest StreamID (for checks).
    pub fn endpoint_objects(&self, stream: u32) -> Option<(u32, Option<u32>)> {
        self.endpoints
            .get(&stream)
            .map(|e| (e.vdevice_id, e.nested_hwpt))
    }

    /// Gives `device` the guest StreamID `stream` (a vDEVICE) and attaches it to the
    /// parent: guest IPAs translate through stage 2 only until the guest installs an STE.
    pub fn add_endpoint(
        &mut self,
        stream: u32,
        device: Box<dyn NestedEndpoint>,
    ) -> Result<(), NestedSetupError> {
        if self.endpoints.contains_key(&stream) {
            return Err(NestedSetupError::DuplicateStream(stream));
        }
        let vdevice_id = self
            .objects
            .alloc_vdevice(self.viommu_id, device.dev_id(), stream.into())
            .map_err(call("IOMMU_VDEVICE_ALLOC"))?;
        if let Err(e) = device.attach(self.parent_id) {
            let _ = self.objects.destroy(vdevice_id);
            return Err(call("attach to the nest parent")(e));
        }
        self.endpoints.insert(
            stream,
            Endpoint {
                device,
                vdevice_id,
                nested_hwpt: None,
            },
        );
        Ok(())
    }

    fn endpoint(&mut self, stream: u32) -> Result<&mut Endpoint, NestedError> {
        self.endpoints
            .get_mut(&stream)
            .ok_or(NestedError::IllegalSte {
                stream,
                reason: "no endpoint has this StreamID",
            })
    }

    /// A nested HWPT for the guest's STE, attached in place of the stream's current one,
    /// which is then destroyed.
    pub fn install_ste(&mut self, stream: u32, vste: [u64; 2]) -> Result<(), NestedError> {
        let data = self.format.hwpt_data(stream, vste)?;
        let (data_type, viommu_id) = (self.format.hwpt_data_type(), self.viommu_id);
        let objects = &self.objects;
        let endpoint = self
            .endpoints
            .get_mut(&stream)
            .ok_or(NestedError::IllegalSte {
                stream,
                reason: "no endpoint has this StreamID",
            })?;
        let hwpt =
            objects.alloc_nested_hwpt(endpoint.device.dev_id(), viommu_id, data_type, &data)?;
        if let Err(e) = endpoint.device.attach(hwpt) {
            let _ = objects.destroy(hwpt);
            return Err(e.into());
        }
        if let Some(old) = endpoint.nested_hwpt.replace(hwpt) {
            objects.destroy(old)?;
        }
        Ok(())
    }

    /// The stream's guest STE removed: its device goes back to an abort configuration
    /// (a nested HWPT from an STE with V = 1, Config = abort).
    pub fn remove_ste(&mut self, stream: u32) -> Result<(), NestedError> {
        self.endpoint(stream)?;
        self.install_ste(stream, [1, 0])
    }

    /// Sends the guest's invalidation commands through the vIOMMU; the kernel reports how
    /// many it handled, and a shortfall names the command it stopped at.
    pub fn invalidate(&self, commands: &[Command]) -> Result<(), InvalidateError> {
        let (entries, refused) = self.format.invalidate_entries(commands);
        let entry_len = self.format.invalidate_entry_len();
        let sent = entries.len() / entry_len as usize;
        if sent > 0 {
            let (done, err) = self.objects.invalidate(
                self.viommu_id,
                self.format.invalidate_data_type(),
                entry_len,
                &entries,
            );
            let done = done as usize;
            if done < sent || err.is_some() {
                // An error with every entry counted still failed somewhere: blame the last.
                let at = done.min(sent - 1);
                return Err(InvalidateError {
                    done: at,
                    opcode: commands[at].opcode(),
                });
            }
        }
        match refused {
            Some((index, opcode)) => Err(InvalidateError {
                done: index,
                opcode,
            }),
            None => Ok(()),
        }
    }

    /// Takes an endpoint out: back on the parent, its nested HWPT and vDEVICE destroyed
    /// (before the caller closes the device, or the vDEVICE's id would stay taken).
    pub fn remove_endpoint(&mut self, stream: u32) -> Option<Box<dyn NestedEndpoint>> {
        let endpoint = self.endpoints.remove(&stream)?;
        self.release(&endpoint);
        Some(endpoint.device)
    }

    fn release(&self, endpoint: &Endpoint) {
        if let Some(hwpt) = endpoint.nested_hwpt {
            // A HWPT a device is attached to cannot be destroyed.
            if let Err(e) = endpoint.device.attach(self.parent_id) {
                log::warn!("nested teardown: attach to the parent: {e}");
            }
            if let Err(e) = self.objects.destroy(hwpt) {
                log::warn!("nested teardown: destroy HWPT {hwpt}: {e}");
            }
        }
        if let Err(e) = self.objects.destroy(endpoint.vdevice_id) {
            log::warn!(
                "nested teardown: destroy vDEVICE {}: {e}",
                endpoint.vdevice_id
            );
        }
    }
}

impl<F: NestedFormat, O: IommufdObjects> Drop for IommufdNested<F, O> {
    fn drop(&mut self) {
        // Each endpoint's device is dropped (closed, which detaches it from the parent)
        // right after its vDEVICE is destroyed.
        for endpoint in std::mem::take(&mut self.endpoints).into_values() {
            self.release(&endpoint);
        }
        // The vIOMMU holds the parent: it goes first.
        for id in [self.viommu_id, self.parent_id] {
            if let Err(e) = self.objects.destroy(id) {
                log::warn!("nested teardown: destroy {id}: {e}");
            }
        }
    }
}

/// The kernel's iommufd.
#[derive(Clone)]
pub struct KernelIommufd(pub std::sync::Arc<IommuFd>);

impl Debug for KernelIommufd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "KernelIommufd(fd {})",
            std::os::fd::AsRawFd::as_raw_fd(&*self.0)
        )
    }
}

impl IommufdObjects for KernelIommufd {
    fn alloc_nest_parent(&self, dev_id: u32, ioas_id: u32) -> io::Result<u32> {
        let mut alloc = iommu_hwpt_alloc {
            size: size_of::<iommu_hwpt_alloc>() as u32,
            flags: iommufd_hwpt_alloc_flags_IOMMU_HWPT_ALLOC_NEST_PARENT,
            dev_id,
            pt_id: ioas_id,
            ..Default::default()
        };
        self.0
            .alloc_iommu_hwpt(&mut alloc)
            .map_err(iommufd_os_error)?;
        Ok(alloc.out_hwpt_id)
    }

    fn alloc_viommu(&self, viommu_type: u32, dev_id: u32, parent_id: u32) -> io::Result<u32> {
        let mut alloc = iommu_viommu_alloc {
            size: size_of::<iommu_viommu_alloc>() as u32,
            type_: viommu_type,
            dev_id,
            hwpt_id: parent_id,
            ..Default::default()
        };
        self.0
            .alloc_iommu_viommu(&mut alloc)
            .map_err(iommufd_os_error)?;
        Ok(alloc.out_viommu_id)
    }

    fn alloc_vdevice(&self, viommu_id: u32, dev_id: u32, virt_id: u64) -> io::Result<u32> {
        let mut alloc = iommu_vdevice_alloc {
            size: size_of::<iommu_vdevice_alloc>() as u32,
            viommu_id,
            dev_id,
            virt_id,
            ..Default::default()
        };
        self.0
            .alloc_iommu_vdevice(&mut alloc)
            .map_err(iommufd_os_error)?;
        Ok(alloc.out_vdevice_id)
    }

    fn alloc_nested_hwpt(
        &self,
        dev_id: u32,
        viommu_id: u32,
        data_type: u32,
        data: &[u8],
    ) -> io::Result<u32> {
        let mut alloc = iommu_hwpt_alloc {
            size: size_of::<iommu_hwpt_alloc>() as u32,
            dev_id,
            pt_id: viommu_id,
            data_type,
            data_len: data.len() as u32,
            data_uptr: data.as_ptr() as u64,
            ..Default::default()
        };
        self.0
            .alloc_iommu_hwpt(&mut alloc)
            .map_err(iommufd_os_error)?;
        Ok(alloc.out_hwpt_id)
    }

    fn invalidate(
        &self,
        viommu_id: u32,
        data_type: u32,
        entry_len: u32,
        entries: &[u8],
    ) -> (u32, Option<io::Error>) {
        let mut request = iommu_hwpt_invalidate {
            size: size_of::<iommu_hwpt_invalidate>() as u32,
            hwpt_id: viommu_id,
            data_uptr: entries.as_ptr() as u64,
            data_type,
            entry_len,
            entry_num: (entries.len() / entry_len.max(1) as usize) as u32,
            ..Default::default()
        };
        // The kernel writes entry_num back on failure too.
        let err = self
            .0
            .invalidate_hwpt(&mut request)
            .err()
            .map(iommufd_os_error);
        (request.entry_num, err)
    }

    fn destroy(&self, id: u32) -> io::Result<()> {
        self.0.destroy_iommu_object(id).map_err(iommufd_os_error)
    }
}

/// iommufd-ioctls' errors carry the errno: keep it (EIO is a refusal of the data, ENOMEM
/// running out, EBUSY an object still in use).
#[cfg(test)]
mod tests;

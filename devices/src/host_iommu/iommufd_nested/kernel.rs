//! [`IommufdObjects`] as the kernel's ioctls.

use std::fmt::Debug;
use std::fs::File;
use std::io;
use std::sync::Arc;

use iommufd_bindings::iommufd::{
    iommu_hwpt_alloc, iommu_hwpt_invalidate, iommu_vdevice_alloc, iommu_veventq_alloc,
    iommu_viommu_alloc, iommufd_hwpt_alloc_flags_IOMMU_HWPT_ALLOC_NEST_PARENT,
    iommufd_hwpt_alloc_flags_IOMMU_HWPT_FAULT_ID_VALID,
};
use iommufd_ioctls::IommuFd;

use super::IommufdObjects;
use crate::host_iommu::iommufd_faults::alloc_fault_queue;
use crate::host_iommu::iommufd_os_error;

/// The kernel's iommufd.
#[derive(Clone)]
pub struct KernelIommufd(pub Arc<IommuFd>);

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
        fault_id: Option<u32>,
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
        if let Some(fault_id) = fault_id {
            alloc.flags |= iommufd_hwpt_alloc_flags_IOMMU_HWPT_FAULT_ID_VALID;
            alloc.fault_id = fault_id;
        }
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

    fn alloc_fault_queue(&self) -> io::Result<(u32, File)> {
        alloc_fault_queue(&self.0)
    }

    fn alloc_veventq(
        &self,
        viommu_id: u32,
        veventq_type: u32,
        depth: u32,
    ) -> io::Result<(u32, File)> {
        let mut alloc = iommu_veventq_alloc {
            size: size_of::<iommu_veventq_alloc>() as u32,
            viommu_id,
            type_: veventq_type,
            veventq_depth: depth,
            ..Default::default()
        };
        self.0.alloc_veventq(&mut alloc).map_err(iommufd_os_error)
    }

    fn destroy(&self, id: u32) -> io::Result<()> {
        self.0.destroy_iommu_object(id).map_err(iommufd_os_error)
    }
}

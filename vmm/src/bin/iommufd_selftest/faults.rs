//! iommufd's fault queue as nestor reads and answers it, against the test driver's
//! injected page requests: the kernel's own rules for cookies and pending groups.

use std::fs::File;

use devices::host_iommu::iommufd_faults::{
    alloc_fault_queue, pgfault_perm, FaultQueue, FaultQueueError,
};
use devices::host_iommu::iommufd_selftest::{
    self as selftest, MockDevice, HWPT_DATA_SELFTEST, IOTLB_DEFAULT,
};
use devices::host_iommu::nested::PageResponseCode;
use iommufd_bindings::iommufd::{
    iommu_hwpt_alloc, iommu_ioas_alloc,
    iommufd_hwpt_alloc_flags_IOMMU_HWPT_ALLOC_NEST_PARENT as NEST_PARENT,
    iommufd_hwpt_alloc_flags_IOMMU_HWPT_FAULT_ID_VALID as FAULT_ID_VALID,
};
use iommufd_ioctls::IommuFd;

use crate::{err, Check};

/// A mock device attached to a nested HWPT whose faults go to a fault queue.
struct Rig {
    iommufd: IommuFd,
    device: MockDevice,
    parent: u32,
    nested: u32,
    fault_fd: Option<File>,
}

fn hwpt(
    iommufd: &IommuFd,
    dev_id: u32,
    pt_id: u32,
    flags: u32,
    fault_id: u32,
) -> Result<u32, String> {
    let data = IOTLB_DEFAULT;
    let nested = flags & NEST_PARENT == 0;
    let mut alloc = iommu_hwpt_alloc {
        size: std::mem::size_of::<iommu_hwpt_alloc>() as u32,
        flags,
        dev_id,
        pt_id,
        fault_id,
        ..Default::default()
    };
    if nested {
        alloc.data_type = HWPT_DATA_SELFTEST;
        alloc.data_len = 4;
        alloc.data_uptr = &data as *const u32 as u64;
    }
    iommufd
        .alloc_iommu_hwpt(&mut alloc)
        .map_err(|e| err("HWPT_ALLOC", format!("{e:?}")))?;
    Ok(alloc.out_hwpt_id)
}

impl Rig {
    fn new() -> Result<Self, String> {
        let iommufd = IommuFd::new().map_err(|e| err("open /dev/iommu", format!("{e:?}")))?;
        let mut ioas = iommu_ioas_alloc {
            size: std::mem::size_of::<iommu_ioas_alloc>() as u32,
            ..Default::default()
        };
        iommufd
            .alloc_iommu_ioas(&mut ioas)
            .map_err(|e| err("IOAS_ALLOC", format!("{e:?}")))?;
        let device = selftest::mock_device(&iommufd, ioas.out_ioas_id)
            .map_err(|e| err("the test driver's MOCK_DOMAIN", e))?;
        let parent = hwpt(&iommufd, device.idev_id, ioas.out_ioas_id, NEST_PARENT, 0)?;
        let (fault_id, fault_fd) =
            alloc_fault_queue(&iommufd).map_err(|e| err("FAULT_QUEUE_ALLOC", e))?;
        let nested = hwpt(&iommufd, device.idev_id, parent, FAULT_ID_VALID, fault_id)?;
        selftest::replace(&iommufd, &device, nested).map_err(|e| err("MOCK_DOMAIN_REPLACE", e))?;
        Ok(Self {
            iommufd,
            device,
            parent,
            nested,
            fault_fd: Some(fault_fd),
        })
    }

    fn trigger(&self, grpid: u32, addr: u64) -> Result<(), String> {
        selftest::trigger_page_request(
            &self.iommufd,
            &self.device,
            5,
            grpid,
            pgfault_perm::READ | pgfault_perm::WRITE,
            addr,
        )
        .map_err(|e| err("TRIGGER_IOPF", e))
    }
}

/// One page request from the kernel, its fields, its answer, and a second answer refused.
pub fn fault_queue() -> Check {
    let mut rig = Rig::new()?;
    let mut queue = FaultQueue::new(rig.fault_fd.take().unwrap());
    rig.trigger(2, 0xdead_b000)?;
    let records = queue.read(true).map_err(|e| err("read", e))?;
    let [r] = records.as_slice() else {
        return Err(format!("read {} records, want 1", records.len()));
    };
    if r.dev_id != rig.device.idev_id || r.grpid != 2 || r.addr != 0xdead_b000 || !r.is_last() {
        return Err(format!("unexpected record {r:?}"));
    }
    if r.perm != pgfault_perm::READ | pgfault_perm::WRITE {
        return Err(format!("perm {:#x}, want READ|WRITE", r.perm));
    }
    queue
        .respond(r.cookie, PageResponseCode::Success)
        .map_err(|e| err("respond", e))?;
    match queue.respond(r.cookie, PageResponseCode::Success) {
        Err(FaultQueueError::UnknownCookie(_)) => {}
        other => return Err(format!("a second answer gave {other:?}, want EINVAL")),
    }
    if !queue.read(false).map_err(|e| err("read", e))?.is_empty() {
        return Err("the queue is not empty after the answer".into());
    }
    Ok(format!("pasid={} cookie={}", r.pasid, r.cookie))
}

/// Groups pending when the HWPT is replaced are answered by the kernel: ours are refused.
pub fn fault_detach() -> Check {
    let mut rig = Rig::new()?;
    let mut queue = FaultQueue::new(rig.fault_fd.take().unwrap());
    for g in 0..3 {
        rig.trigger(g, 0x1000 * u64::from(g + 1))?;
    }
    let mut records = Vec::new();
    while records.len() < 3 {
        let got = queue.read(true).map_err(|e| err("read", e))?;
        if got.is_empty() {
            return Err(format!("only {} of 3 records arrived", records.len()));
        }
        records.extend(got);
    }
    selftest::replace(&rig.iommufd, &rig.device, rig.parent)
        .map_err(|e| err("MOCK_DOMAIN_REPLACE to the parent", e))?;
    for r in &records {
        match queue.respond(r.cookie, PageResponseCode::Success) {
            Err(FaultQueueError::UnknownCookie(_)) => {}
            other => return Err(format!("answer after detach gave {other:?}, want EINVAL")),
        }
    }
    let _ = rig.iommufd.destroy_iommu_object(rig.nested);
    Ok("3 pending groups answered by the kernel at replace".into())
}

//! The iommufd objects behind nested translation, and their lifecycle: a vIOMMU over a
//! nest-parent stage-2 HWPT, a vDEVICE per endpoint carrying its guest StreamID, a nested
//! HWPT per installed guest STE (attached by replacement), invalidations through the
//! vIOMMU with the kernel's `entry_num` checked, the fault sources (a fault queue every
//! nested HWPT reports page requests to, a vEVENTQ), and teardown in the order the kernel
//! needs (endpoints back on the parent, nested HWPTs, vDEVICEs, the fault queue, the
//! vEVENTQ's fd then the vEVENTQ, then the vIOMMU and the parent).
//!
//! Two seams keep it independent of what it runs on: [`NestedFormat`], the
//! hardware-specific data (SMMUv3 STEs and commands, or the test driver's own types), and
//! [`IommufdObjects`], the ioctls (the kernel's, or a recording fake in tests). How an
//! endpoint is attached ([`NestedEndpoint`]) is the device's: a VFIO cdev
//! ([`VfioCdevEndpoint`]), or a mock device of the test driver. [`host`] makes the whole a [`NestedHostIommu`].
//!
//! [`NestedHostIommu`]: super::nested::NestedHostIommu

mod host;
mod kernel;
mod vfio_cdev;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::File;
use std::io;
use std::sync::{Mutex, MutexGuard};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::iommufd_faults::{IommufdPageRequests, VeventQueue};
use super::nested::{Command, EventRecord, InvalidateError, NestedError, ABORT_VSTE};

pub use kernel::KernelIommufd;
pub use vfio_cdev::VfioCdevEndpoint;

/// What a run of guest commands becomes for the vIOMMU.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InvalidateEntries {
    /// The entries, `invalidate_entry_len` bytes each.
    pub bytes: Vec<u8>,
    /// For each entry, the index of the command it came from (a command may need no
    /// entry on a host that caches nothing it names).
    pub sources: Vec<usize>,
    /// The first command the host would refuse: its index and opcode; nothing from it on
    /// is encoded.
    pub refused: Option<(usize, u8)>,
}

/// The hardware-specific data a nested back-end hands the kernel and reads from it.
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
    /// The entries for `commands`, up to the first the host would refuse.
    fn invalidate_entries(&self, commands: &[Command]) -> InvalidateEntries;
    /// SMMU_IDR0..5 the guest's SMMU is described with.
    fn guest_idr(&self) -> [u32; 6];
    /// VEVENTQ_ALLOC's `type`.
    fn veventq_type(&self) -> u32;
    /// Bytes of one vEVENTQ record after its header.
    fn vevent_size(&self) -> usize;
    /// A vEVENTQ record as an SMMUv3 event for the guest (StreamID the guest's);
    /// `None` if it is malformed.
    fn event_record(&self, data: &[u8]) -> Option<EventRecord>;
}

/// The iommufd ioctls the lifecycle uses; object ids are iommufd's.
pub trait IommufdObjects: Debug + Send + Sync {
    /// HWPT_ALLOC with `IOMMU_HWPT_ALLOC_NEST_PARENT` on an IOAS.
    fn alloc_nest_parent(&self, dev_id: u32, ioas_id: u32) -> io::Result<u32>;
    fn alloc_viommu(&self, viommu_type: u32, dev_id: u32, parent_id: u32) -> io::Result<u32>;
    fn alloc_vdevice(&self, viommu_id: u32, dev_id: u32, virt_id: u64) -> io::Result<u32>;
    /// HWPT_ALLOC of a nested HWPT on the vIOMMU, its page requests going to the fault
    /// queue `fault_id` if there is one.
    fn alloc_nested_hwpt(
        &self,
        dev_id: u32,
        viommu_id: u32,
        data_type: u32,
        data: &[u8],
        fault_id: Option<u32>,
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
    /// FAULT_QUEUE_ALLOC: the fault object's id and its fd.
    fn alloc_fault_queue(&self) -> io::Result<(u32, File)>;
    /// VEVENTQ_ALLOC: the queue's id and its (non-blocking) fd.
    fn alloc_veventq(
        &self,
        viommu_id: u32,
        veventq_type: u32,
        depth: u32,
    ) -> io::Result<(u32, File)>;
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

/// The fault queue every nested HWPT reports to: page requests that need an answer.
#[derive(Debug)]
struct PageRequestSource {
    fault_id: u32,
    requests: IommufdPageRequests,
}

/// The vEVENTQ: unrecoverable events, and how many were lost before the next one.
#[derive(Debug)]
struct EventSource {
    veventq_id: u32,
    queue: Mutex<VeventQueue<File>>,
    /// Losses seen (LOST_EVENTS markers) and not yet reported with an event.
    lost_pending: Mutex<u32>,
}

/// The nested objects of one vIOMMU.
#[derive(Debug)]
pub struct IommufdNested<F: NestedFormat, O: IommufdObjects> {
    format: F,
    objects: O,
    parent_id: u32,
    viommu_id: u32,
    endpoints: Mutex<BTreeMap<u32, Endpoint>>,
    page_requests: Option<PageRequestSource>,
    events: Option<EventSource>,
    /// Never readable: stands in for a fault source this back-end was built without.
    quiet: EventFd,
}

impl<F: NestedFormat, O: IommufdObjects> IommufdNested<F, O> {
    /// A nest parent on `ioas_id` (the IOAS that maps all guest RAM) and a vIOMMU over it,
    /// both allocated for `first`, a device on the host IOMMU instance they serve. Add the
    /// fault sources, then attach `first` with [`Self::add_endpoint`].
    pub fn new(
        format: F,
        objects: O,
        first: &dyn NestedEndpoint,
        ioas_id: u32,
    ) -> Result<Self, NestedSetupError> {
        let quiet = EventFd::new(EFD_NONBLOCK).map_err(call("eventfd"))?;
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
            endpoints: Mutex::new(BTreeMap::new()),
            page_requests: None,
            events: None,
            quiet,
        })
    }

    /// A fault queue for the nested HWPTs made from now on: their page requests reach
    /// [`super::nested::NestedHostIommu::read_page_requests`].
    pub fn with_page_requests(mut self) -> Result<Self, NestedSetupError> {
        let (fault_id, fd) = self
            .objects
            .alloc_fault_queue()
            .map_err(call("IOMMU_FAULT_QUEUE_ALLOC"))?;
        self.page_requests = Some(PageRequestSource {
            fault_id,
            requests: IommufdPageRequests::new(fd),
        });
        Ok(self)
    }

    /// A vEVENTQ of `depth` events on the vIOMMU: unrecoverable events of its vDEVICEs
    /// reach [`super::nested::NestedHostIommu::read_events`].
    pub fn with_events(mut self, depth: u32) -> Result<Self, NestedSetupError> {
        self.add_events(depth)?;
        Ok(self)
    }

    /// [`Self::with_events`] on a back-end kept whatever the kernel answers (a kernel
    /// before 6.15 has no vEVENTQ, and nesting works without it).
    pub fn add_events(&mut self, depth: u32) -> Result<(), NestedSetupError> {
        let (veventq_id, fd) = self
            .objects
            .alloc_veventq(self.viommu_id, self.format.veventq_type(), depth)
            .map_err(call("IOMMU_VEVENTQ_ALLOC"))?;
        self.events = Some(EventSource {
            veventq_id,
            queue: Mutex::new(VeventQueue::new(fd, self.format.vevent_size())),
            lost_pending: Mutex::new(0),
        });
        Ok(())
    }

    pub fn parent_id(&self) -> u32 {
        self.parent_id
    }

    pub fn viommu_id(&self) -> u32 {
        self.viommu_id
    }

    /// The fault queue's object id, if there is one.
    pub fn fault_id(&self) -> Option<u32> {
        self.page_requests.as_ref().map(|p| p.fault_id)
    }

    /// The vEVENTQ's object id, if there is one.
    pub fn veventq_id(&self) -> Option<u32> {
        self.events.as_ref().map(|e| e.veventq_id)
    }

    fn endpoints(&self) -> MutexGuard<'_, BTreeMap<u32, Endpoint>> {
        self.endpoints.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The vDEVICE and nested HWPT of a guest StreamID (for checks).
    pub fn endpoint_objects(&self, stream: u32) -> Option<(u32, Option<u32>)> {
        self.endpoints()
            .get(&stream)
            .map(|e| (e.vdevice_id, e.nested_hwpt))
    }

    /// Gives `device` the guest StreamID `stream` (a vDEVICE) and attaches it to the
    /// parent: guest IPAs translate through stage 2 only until the guest installs an STE.
    pub fn add_endpoint(
        &self,
        stream: u32,
        device: Box<dyn NestedEndpoint>,
    ) -> Result<(), NestedSetupError> {
        let mut endpoints = self.endpoints();
        if endpoints.contains_key(&stream) {
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
        if let Some(p) = &self.page_requests {
            p.requests.route(device.dev_id(), stream);
        }
        endpoints.insert(
            stream,
            Endpoint {
                device,
                vdevice_id,
                nested_hwpt: None,
            },
        );
        Ok(())
    }

    /// A nested HWPT for the guest's STE, attached in place of the stream's current one,
    /// which is then destroyed.
    pub fn install_ste(&self, stream: u32, vste: [u64; 2]) -> Result<(), NestedError> {
        let data = self.format.hwpt_data(stream, vste)?;
        let mut endpoints = self.endpoints();
        let endpoint = endpoints.get_mut(&stream).ok_or(NestedError::IllegalSte {
            stream,
            reason: "no endpoint has this StreamID",
        })?;
        let hwpt = self.objects.alloc_nested_hwpt(
            endpoint.device.dev_id(),
            self.viommu_id,
            self.format.hwpt_data_type(),
            &data,
            self.fault_id(),
        )?;
        if let Err(e) = endpoint.device.attach(hwpt) {
            let _ = self.objects.destroy(hwpt);
            return Err(e.into());
        }
        if let Some(old) = endpoint.nested_hwpt.replace(hwpt) {
            self.objects.destroy(old)?;
        }
        Ok(())
    }

    /// The stream's guest STE removed: its device goes back to an abort configuration
    /// (a nested HWPT from an STE with V = 1, Config = abort).
    pub fn remove_ste(&self, stream: u32) -> Result<(), NestedError> {
        self.install_ste(stream, ABORT_VSTE)
    }

    /// Sends the guest's invalidation commands through the vIOMMU; the kernel reports how
    /// many it handled, and a shortfall names the command it stopped at.
    pub fn invalidate(&self, commands: &[Command]) -> Result<(), InvalidateError> {
        let entries = self.format.invalidate_entries(commands);
        let entry_len = self.format.invalidate_entry_len();
        let sent = entries.sources.len();
        if sent > 0 {
            let (done, err) = self.objects.invalidate(
                self.viommu_id,
                self.format.invalidate_data_type(),
                entry_len,
                &entries.bytes,
            );
            let done = done as usize;
            if done < sent || err.is_some() {
                // An error with every entry counted still failed somewhere: blame the last.
                let at = entries.sources[done.min(sent - 1)];
                return Err(InvalidateError {
                    done: at,
                    opcode: commands[at].opcode(),
                });
            }
        }
        match entries.refused {
            Some((index, opcode)) => Err(InvalidateError {
                done: index,
                opcode,
            }),
            None => Ok(()),
        }
    }

    /// Takes an endpoint out: back on the parent, its nested HWPT and vDEVICE destroyed
    /// (before the caller closes the device, or the vDEVICE's id would stay taken).
    pub fn remove_endpoint(&self, stream: u32) -> Option<Box<dyn NestedEndpoint>> {
        let endpoint = self.endpoints().remove(&stream)?;
        self.release(&endpoint);
        Some(endpoint.device)
    }

    fn release(&self, endpoint: &Endpoint) {
        if let Some(p) = &self.page_requests {
            p.requests.unroute(endpoint.device.dev_id());
        }
        if let Some(hwpt) = endpoint.nested_hwpt {
            // A HWPT a device is attached to cannot be destroyed.
            if let Err(e) = endpoint.device.attach(self.parent_id) {
                log::warn!("nested teardown: attach to the parent: {e}");
            }
            self.destroy("HWPT", hwpt);
        }
        self.destroy("vDEVICE", endpoint.vdevice_id);
    }

    fn destroy(&self, what: &str, id: u32) {
        if let Err(e) = self.objects.destroy(id) {
            log::warn!("nested teardown: destroy {what} {id}: {e}");
        }
    }
}

impl<F: NestedFormat, O: IommufdObjects> Drop for IommufdNested<F, O> {
    fn drop(&mut self) {
        // Each endpoint's device is dropped (closed, which detaches it from the parent)
        // right after its vDEVICE is destroyed.
        for endpoint in std::mem::take(&mut *self.endpoints()).into_values() {
            self.release(&endpoint);
        }
        // No HWPT refers to the fault queue any more; its fd goes before the object.
        if let Some(PageRequestSource { fault_id, requests }) = self.page_requests.take() {
            drop(requests);
            self.destroy("fault queue", fault_id);
        }
        // The vEVENTQ holds the vIOMMU: its fd, then it, go first.
        if let Some(EventSource {
            veventq_id, queue, ..
        }) = self.events.take()
        {
            drop(queue);
            self.destroy("vEVENTQ", veventq_id);
        }
        // The vIOMMU holds the parent.
        self.destroy("vIOMMU", self.viommu_id);
        self.destroy("nest parent", self.parent_id);
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_through_requests;

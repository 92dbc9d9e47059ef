//! The iommufd objects as a [`NestedHostIommu`]: what the virtio-iommu's table-mode
//! requests and the fault relay use, the same whether the kernel drives an SMMUv3 or the
//! iommufd test driver's mock IOMMU.

use std::os::fd::{AsRawFd, BorrowedFd};

use super::{IommufdNested, IommufdObjects, NestedFormat};
use crate::host_iommu::iommufd_faults::{FaultQueueError, Vevent};
use crate::host_iommu::nested::{
    Command, FaultNotifiers, InvalidateError, NestedError, NestedEvent, NestedHostIommu,
    PageRequest, PageResponseCode,
};

fn fault_queue_error(e: FaultQueueError) -> NestedError {
    match e {
        FaultQueueError::UnknownCookie(cookie) => NestedError::UnknownCookie(cookie),
        FaultQueueError::Io(e) => NestedError::Io(e),
        torn @ FaultQueueError::Torn(_) => NestedError::Io(std::io::Error::other(torn)),
    }
}

impl<F: NestedFormat, O: IommufdObjects> NestedHostIommu for IommufdNested<F, O> {
    fn hw_info(&self) -> [u32; 6] {
        self.format.guest_idr()
    }

    fn translates_in_hardware(&self, stream: u32) -> bool {
        self.endpoint_objects(stream).is_some()
    }

    fn install_ste(&self, stream: u32, vste: [u64; 2]) -> Result<(), NestedError> {
        IommufdNested::install_ste(self, stream, vste)
    }

    fn remove_ste(&self, stream: u32) -> Result<(), NestedError> {
        IommufdNested::remove_ste(self, stream)
    }

    fn invalidate(&self, commands: &[Command]) -> Result<(), InvalidateError> {
        IommufdNested::invalidate(self, commands)
    }

    fn fault_notifiers(&self) -> FaultNotifiers<'_> {
        let events = match &self.events {
            Some(source) => {
                let queue = source.queue.lock().unwrap_or_else(|e| e.into_inner());
                // SAFETY: the queue's fd is closed only when `self` is dropped.
                unsafe { BorrowedFd::borrow_raw(queue.fd().as_raw_fd()) }
            }
            // SAFETY: the eventfd lives as long as `self`.
            None => unsafe { BorrowedFd::borrow_raw(self.quiet.as_raw_fd()) },
        };
        let page_requests = match &self.page_requests {
            Some(source) => source.requests.notifier(),
            // SAFETY: the eventfd lives as long as `self`.
            None => unsafe { BorrowedFd::borrow_raw(self.quiet.as_raw_fd()) },
        };
        FaultNotifiers {
            events,
            page_requests,
        }
    }

    /// A LOST_EVENTS marker has no event of its own: the loss (at least one event) is
    /// reported with the next event read.
    fn read_events(&self, max: usize) -> Result<Vec<NestedEvent>, NestedError> {
        let Some(source) = &self.events else {
            return Ok(Vec::new());
        };
        let items = source
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .read(max)?;
        let mut lost = source
            .lost_pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Vevent::Lost { .. } => *lost = lost.saturating_add(1),
                Vevent::Record {
                    lost_before, data, ..
                } => match self.format.event_record(&data) {
                    Some(record) => out.push(NestedEvent {
                        record,
                        lost_before: std::mem::take(&mut *lost).saturating_add(lost_before),
                    }),
                    None => {
                        log::warn!("vEVENTQ: a record of {} bytes is malformed", data.len());
                        *lost = lost.saturating_add(1 + lost_before);
                    }
                },
            }
        }
        Ok(out)
    }

    fn read_page_requests(&self, _max: usize) -> Result<Vec<PageRequest>, NestedError> {
        // The kernel hands over whole groups only; they are read whole.
        match &self.page_requests {
            Some(source) => source.requests.read().map_err(fault_queue_error),
            None => Ok(Vec::new()),
        }
    }

    fn page_response(&self, cookie: u32, code: PageResponseCode) -> Result<(), NestedError> {
        match &self.page_requests {
            Some(source) => source
                .requests
                .respond(cookie, code)
                .map_err(fault_queue_error),
            None => Err(NestedError::UnknownCookie(cookie)),
        }
    }
}

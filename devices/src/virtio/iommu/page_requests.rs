//! The virtio-iommu's side of the fault relay (the extension's PAGE_REQUEST, feature bit
//! 21): page requests and unrecoverable events of the nested back-end become eventq
//! records, and a PAGE_RESP answers a group through the relay, on the vCPU that carries it.

use std::sync::Arc;

use super::domains::Route;
use super::nested_dma::records_for;
use super::nested_protocol::{
    fault_reason, PageResp, PageRespCode, FAULT_F_EXEC, FAULT_F_LAST_PAGE, FAULT_F_PRIV,
};
use super::protocol::{FaultRecord, Status, FAULT_F_ADDRESS, FAULT_F_READ, FAULT_F_WRITE};
use super::state::IommuState;
use crate::fault_relay::{AnswerError, FaultRelayState, GroupKey, GuestFaultSink};
use crate::host_iommu::nested::{NestedEvent, PageRequest};

/// The eventq record for one page of a page request.
pub fn page_request_record(r: &PageRequest) -> FaultRecord {
    let p = r.permissions;
    let flags = [
        (p.read, FAULT_F_READ),
        (p.write, FAULT_F_WRITE),
        (p.execute, FAULT_F_EXEC),
        (p.privileged, FAULT_F_PRIV),
        (r.last, FAULT_F_LAST_PAGE),
    ]
    .iter()
    .filter(|(set, _)| *set)
    .fold(FAULT_F_ADDRESS, |acc, (_, bit)| acc | bit);
    FaultRecord {
        reason: fault_reason::PAGE_REQUEST,
        flags,
        endpoint: r.stream,
        address: r.address,
        pasid: r.pasid,
        group: Some(r.group),
    }
}

/// Where the relay thread hands the guest its records: this virtio-iommu's eventq.
pub struct GuestEventq(pub Arc<IommuState>);

impl GuestFaultSink for GuestEventq {
    /// Only an endpoint in a table-mode domain has tables the guest can fix.
    fn routes(&self, stream: u32) -> bool {
        matches!(self.0.domains().route(stream), Route::Table)
    }

    fn page_request(&self, request: &PageRequest) -> bool {
        self.0.report_page_request(page_request_record(request))
    }

    fn event(&self, event: &NestedEvent) {
        for record in records_for(event) {
            self.0.report(record);
        }
    }
}

/// PAGE_RESP: the group's single answer goes to the host; a group the relay is not
/// waiting on is NOENT, one whose last page request was not delivered yet INVAL.
pub fn answer(relay: &FaultRelayState, response: &PageResp) -> Status {
    let key = GroupKey {
        stream: response.endpoint,
        pasid: response.pasid,
        group: response.grpid,
    };
    match relay.answer(key, response.code == PageRespCode::Success) {
        Ok(()) => Status::Ok,
        Err(AnswerError::NoSuchGroup) => Status::NoEnt,
        Err(AnswerError::Incomplete) => Status::Inval,
    }
}

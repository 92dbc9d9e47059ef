//! Requests of nestor's extension (ATTACH_TABLE, INVALIDATE, PAGE_RESP) and what plain
//! ATTACH and DETACH do to table-mode domains: each endpoint's configuration is installed
//! on the nested back-end before its domain routes DMA through it, and removed after the
//! domain stopped doing so; the caller then invalidates the seam's IOTLBs, so no access
//! translated under the old configuration lands after the answer.

use super::nested::{forget_stream_commands, smmu_commands, NestedBackend};
use super::nested_protocol::{
    is_negotiated, parse_nested_request, readable_size, AttachTable, Invalidate, InvalidateCommand,
    NestedRequest, VirtualSte,
};
use super::protocol::{Attach, RequestError, Status};
use super::state::{IommuState, Stale};
use super::{hardware_routes, page_requests};

/// Answers an extension request (`readable` starts with its type) in nested mode.
pub fn execute(
    shared: &IommuState,
    nested: &NestedBackend,
    negotiated: u64,
    readable: &[u8],
) -> Status {
    let kind = readable[0];
    if !is_negotiated(kind, negotiated) {
        return Status::Unsupp;
    }
    if readable_size(kind).is_none_or(|needed| readable.len() < needed) {
        return Status::Inval;
    }
    let request = match parse_nested_request(readable) {
        Ok(request) => request,
        Err(RequestError::Status(status)) => return status,
        Err(RequestError::Unanswerable) => return Status::Inval,
    };
    let result = match request {
        NestedRequest::AttachTable(a) => attach_table(shared, nested, &a),
        NestedRequest::Invalidate(i) => invalidate(shared, nested, &i),
        // PAGE_RESP is negotiated only where a relay reports page requests.
        NestedRequest::PageResp(response) => match nested.fault_relay() {
            Some(relay) => match page_requests::answer(relay, &response) {
                Status::Ok => Ok(Stale::Nothing),
                status => Err(refuse(status)),
            },
            None => Err(refuse(Status::NoEnt)),
        },
    };
    match result {
        Ok(stale) => {
            shared.invalidate(&stale);
            Status::Ok
        }
        Err((status, stale)) => {
            shared.invalidate(&stale);
            status
        }
    }
}

fn is_host_endpoint(shared: &IommuState, endpoint: u32) -> bool {
    shared
        .host_endpoints()
        .is_some_and(|h| h.backend(endpoint).is_some())
}

type Outcome = Result<Stale, (Status, Stale)>;

fn refuse(status: Status) -> (Status, Stale) {
    (status, Stale::Nothing)
}

fn attach_table(shared: &IommuState, nested: &NestedBackend, a: &AttachTable) -> Outcome {
    shared.config.check_domain(a.domain).map_err(refuse)?;
    let mut domains = shared.domains_mut();
    if !domains.has_endpoint(a.endpoint) {
        return Err(refuse(Status::NoEnt));
    }
    // Host devices translate on their own IOMMU, which this back-end does not program.
    if is_host_endpoint(shared, a.endpoint) {
        return Err(refuse(Status::Unsupp));
    }
    nested.check_ste(&a.ste).map_err(refuse)?;
    if !domains
        .check_attach_table(a.domain, a.endpoint, a.ste)
        .map_err(refuse)?
    {
        return Ok(Stale::Nothing);
    }
    nested
        .host()
        .install_ste(a.endpoint, [a.ste.ste0, a.ste.ste1])
        .map_err(|_| refuse(Status::Inval))?;
    nested.forget_stream(a.endpoint);
    domains
        .attach_table(a.domain, a.endpoint, a.ste)
        .map_err(refuse)?;
    Ok(Stale::Endpoints(vec![a.endpoint]))
}

/// CFGI and ATC commands name a stream: one per endpoint. TLBIs name the VM's ASIDs or
/// addresses, shared by every endpoint: one for the domain.
fn is_per_stream(command: &InvalidateCommand) -> bool {
    matches!(
        command,
        InvalidateCommand::CfgiCd { .. }
            | InvalidateCommand::CfgiCdAll
            | InvalidateCommand::AtcInv { .. }
    )
}

fn invalidate(shared: &IommuState, nested: &NestedBackend, i: &Invalidate) -> Outcome {
    shared.config.check_domain(i.domain).map_err(refuse)?;
    let endpoints = {
        let domains = shared.domains();
        domains.table(i.domain).map_err(refuse)?;
        domains.endpoints_of(i.domain)
    };
    let mut commands = Vec::new();
    for command in &i.commands {
        if is_per_stream(command) {
            for &endpoint in &endpoints {
                commands.extend(smmu_commands(command, endpoint));
            }
        } else if let Some(&endpoint) = endpoints.first() {
            commands.extend(smmu_commands(command, endpoint));
        }
    }
    // Whatever the back-end did, the seam's IOTLBs hold translations from the old
    // tables: they go either way.
    let stale = Stale::Endpoints(endpoints);
    match nested.host().invalidate(&commands) {
        Ok(()) => Ok(stale),
        Err(_) => Err((Status::DevErr, stale)),
    }
}

/// A plain ATTACH to a table-mode domain: the endpoint joins with the domain's
/// configuration. `None` when the domain is not in table mode.
pub fn attach_to_table(
    shared: &IommuState,
    nested: &NestedBackend,
    a: &Attach,
) -> Option<Result<Stale, Status>> {
    let ste = shared.domains().table(a.domain).ok()?;
    Some(attach_to_table_with(shared, nested, a, ste))
}

fn attach_to_table_with(
    shared: &IommuState,
    nested: &NestedBackend,
    a: &Attach,
    ste: VirtualSte,
) -> Result<Stale, Status> {
    shared.config.check_domain(a.domain)?;
    let mut domains = shared.domains_mut();
    if is_host_endpoint(shared, a.endpoint) && domains.has_endpoint(a.endpoint) {
        return Err(Status::Unsupp);
    }
    if !domains.check_attach(a.domain, a.endpoint, a.bypass)? {
        return Ok(Stale::Nothing);
    }
    nested
        .host()
        .install_ste(a.endpoint, [ste.ste0, ste.ste1])
        .map_err(|_| Status::Inval)?;
    nested.forget_stream(a.endpoint);
    domains.attach(a.domain, a.endpoint, a.bypass)?;
    Ok(Stale::Endpoints(vec![a.endpoint]))
}

/// After an ATTACH or DETACH took `endpoint` out of a table-mode domain (`was_table`):
/// its configuration goes from the back-end, now that no fill routes through it (an
/// endpoint the host translates gets its new route there instead), and then what the
/// SMMU cached from it.
pub fn left_table(shared: &IommuState, nested: &NestedBackend, endpoint: u32, was_table: bool) {
    let domains = shared.domains();
    if was_table && domains.table_of_endpoint(endpoint).is_none() {
        if hardware_routes::is_hardware(nested, endpoint) {
            // A refusal is logged there; the answer stands, as for the model below.
            let _ = hardware_routes::sync(shared, nested, &domains, endpoint);
        } else {
            // The model's removal cannot fail.
            let _ = nested.host().remove_ste(endpoint);
        }
        let _ = nested.host().invalidate(&forget_stream_commands(endpoint));
        nested.forget_stream(endpoint);
    }
}

//! Executing one requestq request against the shared state.

use super::host_endpoints::HostEndpoints;
use super::nested_protocol::{self, features as nested_features};
use super::protocol::{
    parse_request, resv_mem_property, Request, RequestError, Status, HEAD_SIZE, TAIL_SIZE,
};
use super::state::{IommuState, Stale};
use super::{hardware_routes, table_requests};

/// Longest device-readable part any request needs (ATTACH_TABLE).
pub const MAX_READABLE: usize = HEAD_SIZE + 120;

/// How much of an oversized PROBE properties area is zero-filled; the rest is left alone.
const MAX_PROPERTY_FILL: usize = 64 << 10;

/// What the device writes back.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Write nothing, used length 0.
    Nothing,
    /// Write `properties` (if any) at the start of the writable part and `status` in the
    /// tail at its end.
    Status {
        status: Status,
        properties: Option<Vec<u8>>,
    },
}

impl Answer {
    fn status(status: Status) -> Self {
        Answer::Status {
            status,
            properties: None,
        }
    }
}

/// Mappings one UNMAP removes per hold of the domains lock, so a huge UNMAP does not hold
/// off the DMA of other endpoints (which fill their IOTLBs under the read lock).
const UNMAP_CHUNK: usize = 1024;

/// Answers the request in `readable`, given `writable_len` bytes to answer into. Whatever
/// the request made stale is invalidated before this returns: once the driver sees the
/// answer, no DMA translated under the old state can still land.
pub fn execute(shared: &IommuState, negotiated: u64, readable: &[u8], writable_len: u32) -> Answer {
    let answer = answer(shared, negotiated, readable, writable_len);
    shared
        .request_counters
        .count(readable.first().copied(), &answer);
    answer
}

fn answer(shared: &IommuState, negotiated: u64, readable: &[u8], writable_len: u32) -> Answer {
    if (writable_len as usize) < TAIL_SIZE {
        return Answer::Nothing;
    }
    if let (Some(nested), Some(&kind)) = (shared.nested(), readable.first()) {
        if nested_protocol::readable_size(kind).is_some() {
            return Answer::status(table_requests::execute(
                shared, nested, negotiated, readable,
            ));
        }
    }
    let request = match parse_request(readable, negotiated) {
        Ok(request) => request,
        Err(RequestError::Unanswerable) => return Answer::Nothing,
        Err(RequestError::Status(status)) => return Answer::status(status),
    };
    let properties_len = writable_len as usize - TAIL_SIZE;
    if let Request::Probe(p) = request {
        return probe(shared, negotiated, p.endpoint, properties_len);
    }
    let result = match shared.nested() {
        None => execute_standard(shared, request),
        Some(nested) => execute_nested_mode(shared, nested, request),
    };
    Answer::status(match result {
        Ok(stale) => {
            shared.invalidate(&stale);
            Status::Ok
        }
        Err(status) => status,
    })
}

fn execute_standard(shared: &IommuState, request: Request) -> Result<Stale, Status> {
    match shared.host_endpoints() {
        None => execute_emulated(shared, request),
        Some(host) => execute_with_host(shared, host, request),
    }
}

/// A standard request in nested mode: MAP and UNMAP refuse table-mode domains (the
/// domain layer says INVAL), ATTACH to one installs the endpoint's configuration, and an
/// endpoint leaving one has it removed. An endpoint the host IOMMU translates gets its
/// new route installed there.
fn execute_nested_mode(
    shared: &IommuState,
    nested: &super::nested::NestedBackend,
    request: Request,
) -> Result<Stale, Status> {
    let moved = match request {
        Request::Attach(a) => {
            if let Some(result) = table_requests::attach_to_table(shared, nested, &a) {
                return result;
            }
            hardware_routes::check_attach(nested, &a)?;
            Some(a.endpoint)
        }
        Request::Detach(d) => Some(d.endpoint),
        _ => None,
    };
    let was_table = moved.is_some_and(|e| shared.domains().table_of_endpoint(e).is_some());
    let result = execute_standard(shared, request);
    if let (Ok(_), Some(endpoint)) = (&result, moved) {
        if was_table {
            table_requests::left_table(shared, nested, endpoint, was_table);
        } else {
            hardware_routes::sync(shared, nested, &shared.domains(), endpoint)?;
        }
    }
    result
}

/// A request when no endpoint is a host device: only the domain state changes.
fn execute_emulated(shared: &IommuState, request: Request) -> Result<Stale, Status> {
    match request {
        Request::Attach(a) => shared
            .config
            .check_domain(a.domain)
            .and_then(|()| shared.domains_mut().attach(a.domain, a.endpoint, a.bypass))
            .map(|()| Stale::Endpoints(vec![a.endpoint])),
        Request::Detach(d) => shared
            .config
            .check_domain(d.domain)
            .and_then(|()| shared.domains_mut().detach(d.domain, d.endpoint))
            .map(|()| Stale::Endpoints(vec![d.endpoint])),
        // A new mapping makes nothing stale: IOTLBs hold no negative entries.
        Request::Map(m) => shared
            .config
            .check_map(&m)
            .and_then(|()| shared.domains().map(&m))
            .map(|()| Stale::Nothing),
        Request::Unmap(u) => shared
            .config
            .check_unmap(&u)
            .and_then(|()| unmap(shared, u.domain, u.virt_start, u.virt_end)),
        // Answered by `probe` before it gets here: it changes no state.
        Request::Probe(_) => Ok(Stale::Nothing),
    }
}

/// A request when some endpoints are host devices: their host IOMMUs follow the domains.
fn execute_with_host(
    shared: &IommuState,
    host: &HostEndpoints,
    request: Request,
) -> Result<Stale, Status> {
    match request {
        Request::Attach(a) if host.backend(a.endpoint).is_some() => shared
            .config
            .check_domain(a.domain)
            .and_then(|()| host.attach(shared, a.domain, a.endpoint, a.bypass)),
        Request::Detach(d) if host.backend(d.endpoint).is_some() => shared
            .config
            .check_domain(d.domain)
            .and_then(|()| host.detach(shared, d.domain, d.endpoint)),
        Request::Map(m) => shared
            .config
            .check_map(&m)
            .and_then(|()| host.map(shared, &m)),
        Request::Unmap(u) => shared
            .config
            .check_unmap(&u)
            .and_then(|()| host.unmap(shared, u.domain, u.virt_start, u.virt_end)),
        other => execute_emulated(shared, other),
    }
}

/// Removes the mappings of `[start, last]` a chunk at a time; returns what went stale.
fn unmap(shared: &IommuState, domain: u32, start: u64, last: u64) -> Result<Stale, Status> {
    loop {
        // The outer lock only for reading: other domains' fills go on meanwhile.
        let domains = shared.domains();
        let (_, done) = domains.unmap_some(domain, start, last, UNMAP_CHUNK)?;
        if done {
            return Ok(Stale::Range {
                endpoints: domains.endpoints_of(domain),
                start,
                last,
            });
        }
    }
}

fn probe(shared: &IommuState, negotiated: u64, endpoint: u32, properties_len: usize) -> Answer {
    if !shared.domains().has_endpoint(endpoint) {
        return Answer::status(Status::NoEnt);
    }
    if properties_len < shared.probe_size() as usize {
        return Answer::status(Status::Inval);
    }
    let mut properties = vec![0u8; properties_len.min(MAX_PROPERTY_FILL)];
    let resv_len = shared.config.reserved_regions.len() * super::protocol::RESV_MEM_SIZE;
    for (slot, region) in properties[..resv_len]
        .chunks_exact_mut(super::protocol::RESV_MEM_SIZE)
        .zip(&shared.config.reserved_regions)
    {
        slot.copy_from_slice(&resv_mem_property(region.subtype, region.start, region.end));
    }
    // The SMMU's capabilities, for a driver that will hand over tables in its format.
    let wants_table = negotiated & nested_features::ATTACH_TABLE != 0;
    let is_host = shared
        .host_endpoints()
        .is_some_and(|h| h.backend(endpoint).is_some());
    if let (true, false, Some(nested)) = (wants_table, is_host, shared.nested()) {
        let property = nested.property();
        properties[resv_len..resv_len + property.len()].copy_from_slice(&property);
    }
    Answer::Status {
        status: Status::Ok,
        properties: Some(properties),
    }
}

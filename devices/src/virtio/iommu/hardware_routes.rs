//! Endpoints the nested back-end's host IOMMU translates itself (passed-through devices
//! on iommufd's nested objects): none of their DMA passes nestor's seam, so whatever
//! route the guest gives them outside table mode is installed on the host too. A bypass
//! domain, or no domain while the config `bypass` byte is set, is an STE whose stage 1
//! bypasses (stage 2 maps guest RAM at IPA = GPA); anything else is an aborting STE. A
//! domain of MAP and UNMAP is not theirs: the host holds no mappings for them, so an
//! ATTACH to one is refused (UNSUPP).

use log::error;

use super::domains::{Domains, Route};
use super::nested::NestedBackend;
use super::protocol::{Attach, Status};
use super::state::IommuState;
use crate::host_iommu::nested::{ABORT_VSTE, BYPASS_VSTE};

pub fn is_hardware(nested: &NestedBackend, endpoint: u32) -> bool {
    nested.host().translates_in_hardware(endpoint)
}

/// A plain ATTACH (not to a table-mode domain) of a hardware endpoint: only a bypass
/// domain can be served.
pub fn check_attach(nested: &NestedBackend, a: &Attach) -> Result<(), Status> {
    if is_hardware(nested, a.endpoint) && !a.bypass {
        return Err(Status::Unsupp);
    }
    Ok(())
}

/// Installs on the host the route `endpoint` has in `domains` (nothing for table mode,
/// whose STE is installed when it is entered, or for an endpoint nestor translates).
/// A host that refuses leaves the device where it was; that is said, and DEVERR.
pub fn sync(
    shared: &IommuState,
    nested: &NestedBackend,
    domains: &Domains,
    endpoint: u32,
) -> Result<(), Status> {
    if !is_hardware(nested, endpoint) {
        return Ok(());
    }
    let vste = match domains.route(endpoint) {
        Route::Table | Route::Unknown => return Ok(()),
        Route::Bypass => BYPASS_VSTE,
        Route::Unattached if shared.bypass() => BYPASS_VSTE,
        Route::Unattached | Route::Mapped(_) => ABORT_VSTE,
    };
    // The old configuration's page requests were failed by the host.
    nested.forget_stream(endpoint);
    nested.host().install_ste(endpoint, vste).map_err(|e| {
        error!("virtio-iommu: endpoint {endpoint:#x}: the host keeps its old route: {e}");
        Status::DevErr
    })
}

/// [`sync`] for every endpoint (a reset, the start).
pub fn sync_all(shared: &IommuState, nested: &NestedBackend, domains: &Domains) {
    for endpoint in domains.endpoint_ids() {
        let _ = sync(shared, nested, domains, endpoint);
    }
}

/// [`sync`] for every unattached endpoint: the config `bypass` byte changed.
pub fn sync_unattached(shared: &IommuState, nested: &NestedBackend, domains: &Domains) {
    for endpoint in domains.endpoint_ids() {
        if matches!(domains.route(endpoint), Route::Unattached) {
            let _ = sync(shared, nested, domains, endpoint);
        }
    }
}

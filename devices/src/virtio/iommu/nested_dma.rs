//! DMA of an endpoint in a table-mode domain: translated by the nested back-end through
//! the guest's stage 1 (StreamID = endpoint ID, SubstreamID = the transaction's PASID),
//! and how the back-end's events become eventq records with the PASID. The fault relay
//! thread is their one reader: a faulting fill only leaves its event in the back-end,
//! whose eventfd wakes the relay.

use vm_memory::Permissions;

use super::nested_protocol::fault_reason;
use super::protocol::{
    FaultRecord, FAULT_F_ADDRESS, FAULT_F_READ, FAULT_F_WRITE, FAULT_R_DOMAIN, FAULT_R_UNKNOWN,
};
use super::state::IommuState;
use crate::dma::{DmaFault, TlbEntries};
use crate::host_iommu::nested::{Access, EventRecord, Fault, NestedEvent};
use crate::host_iommu::smmuv3::wire::event_id;

impl IommuState {
    /// Fills `tlb` for `[iova, iova + len)` from the guest's stage 1, one translated
    /// range (a page or a block) at a time.
    pub(super) fn fill_table(
        &self,
        endpoint: u32,
        pasid: Option<u32>,
        tlb: &mut TlbEntries,
        iova: u64,
        len: u64,
        access: Permissions,
    ) -> Result<(), DmaFault> {
        let Some(translator) = self.nested().and_then(|n| n.translator()) else {
            // A back-end that cannot translate emulated devices: nothing reaches memory.
            self.report(FaultRecord {
                reason: FAULT_R_DOMAIN,
                flags: dma_flags(access) | FAULT_F_ADDRESS,
                endpoint,
                address: iova,
                pasid,
                group: None,
            });
            return Err(DmaFault::Blocked { iova });
        };
        if len == 0 {
            return Ok(());
        }
        let last = iova + (len - 1);
        let wanted = Access::from_permissions(access);
        let mut cursor = iova;
        loop {
            match translator.translate(endpoint, pasid, cursor, wanted) {
                Ok(t) => {
                    tlb.insert(t.start, t.last, t.output, t.allowed.dma_permissions());
                    if t.last >= last {
                        return Ok(());
                    }
                    cursor = t.last + 1;
                }
                Err(fault) => return Err(dma_fault(&fault, cursor)),
            }
        }
    }
}

fn dma_flags(access: Permissions) -> u32 {
    match access {
        Permissions::No => 0,
        Permissions::Read => FAULT_F_READ,
        Permissions::Write => FAULT_F_WRITE,
        Permissions::ReadWrite => FAULT_F_READ | FAULT_F_WRITE,
    }
}

/// How the seam reports a faulted translation to the device.
fn dma_fault(fault: &Fault, iova: u64) -> DmaFault {
    match fault.event_id() {
        None => DmaFault::Blocked { iova },
        Some(event_id::F_PERMISSION) => DmaFault::Forbidden { iova },
        Some(_) => DmaFault::Unmapped { iova },
    }
}

/// The extension's fault reason for an SMMU event (section 4).
pub fn fault_reason_of(id: u8) -> u8 {
    match id {
        event_id::C_BAD_STE
        | event_id::C_BAD_CD
        | event_id::C_BAD_SUBSTREAMID
        | event_id::C_BAD_STREAMID
        | event_id::F_STREAM_DISABLED
        | event_id::F_STE_FETCH
        | event_id::F_CD_FETCH => fault_reason::BAD_CONFIG,
        event_id::F_TRANSLATION | event_id::F_WALK_EABT => fault_reason::TRANSLATION,
        event_id::F_ADDR_SIZE => fault_reason::ADDRESS_SIZE,
        event_id::F_ACCESS => fault_reason::ACCESS,
        event_id::F_PERMISSION => fault_reason::PERMISSION,
        _ => FAULT_R_UNKNOWN,
    }
}

/// Whether the event describes one access, with its address and direction.
fn is_access_fault(id: u8) -> bool {
    matches!(
        id,
        event_id::F_TRANSLATION
            | event_id::F_ADDR_SIZE
            | event_id::F_ACCESS
            | event_id::F_PERMISSION
            | event_id::F_WALK_EABT
    )
}

/// The eventq records for one back-end event: a lost-events record first if events were
/// lost before it (reason UNKNOWN, no address), then the event's.
pub fn records_for(event: &NestedEvent) -> Vec<FaultRecord> {
    let mut records = Vec::with_capacity(2);
    let r: &EventRecord = &event.record;
    if event.lost_before > 0 {
        records.push(FaultRecord {
            reason: FAULT_R_UNKNOWN,
            flags: 0,
            endpoint: r.sid(),
            address: 0,
            pasid: None,
            group: None,
        });
    }
    let (flags, address) = if is_access_fault(r.id()) {
        let direction = if r.read() {
            FAULT_F_READ
        } else {
            FAULT_F_WRITE
        };
        (direction | FAULT_F_ADDRESS, r.input_address())
    } else {
        (0, 0)
    };
    records.push(FaultRecord {
        reason: fault_reason_of(r.id()),
        flags,
        endpoint: r.sid(),
        address,
        pasid: r.ssid(),
        group: None,
    });
    records
}

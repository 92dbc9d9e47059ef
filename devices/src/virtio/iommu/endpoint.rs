//! One endpoint's address space: what its device's IOTLB is filled from.

use std::sync::Arc;

use vm_memory::Permissions;

use super::domains::DmaMapping;
use super::state::IommuState;
use crate::dma::{DmaAddressSpace, DmaFault, TlbEntries};

#[derive(Debug, Clone)]
pub struct IommuEndpoint {
    id: u32,
    state: Arc<IommuState>,
}

impl IommuEndpoint {
    pub fn new(id: u32, state: Arc<IommuState>) -> Self {
        Self { id, state }
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    /// What `[iova, iova + len)` reaches through this endpoint now, as its device's IOTLB
    /// would be filled for `access` (a failure is reported as a fault, as for a DMA).
    pub fn translate(
        &self,
        iova: u64,
        len: u64,
        access: Permissions,
    ) -> Result<Vec<DmaMapping>, DmaFault> {
        let mut tlb = TlbEntries::default();
        self.state
            .fill(self.id, None, &mut tlb, iova, len, access)?;
        let mut pieces = Vec::new();
        let mut cursor = iova;
        let mut left = len;
        while left > 0 {
            let entry = tlb
                .find(cursor)
                .ok_or(DmaFault::Unmapped { iova: cursor })?;
            let n = (entry.last - cursor).saturating_add(1).min(left);
            pieces.push(DmaMapping {
                iova: cursor,
                gpa: entry.gpa_of(cursor),
                len: n,
                access,
            });
            cursor = cursor.wrapping_add(n);
            left -= n;
        }
        Ok(pieces)
    }
}

impl DmaAddressSpace for IommuEndpoint {
    fn fill(
        &self,
        tlb: &mut TlbEntries,
        iova: u64,
        len: u64,
        access: Permissions,
    ) -> Result<(), DmaFault> {
        self.state.fill(self.id, None, tlb, iova, len, access)
    }

    fn fill_pasid(
        &self,
        tlb: &mut TlbEntries,
        pasid: Option<u32>,
        iova: u64,
        len: u64,
        access: Permissions,
    ) -> Result<(), DmaFault> {
        self.state.fill(self.id, pasid, tlb, iova, len, access)
    }
}

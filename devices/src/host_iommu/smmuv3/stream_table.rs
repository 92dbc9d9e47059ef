//! Finding a stream's STE: a linear stream table or a two-level one.

use super::wire::{L1StreamDescriptor, STE_SIZE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamTableFormat {
    Linear,
    /// StreamID bits [SPLIT-1:0] index a level-2 table.
    TwoLevel {
        split: u32,
    },
}

/// SMMU_STRTAB_BASE and SMMU_STRTAB_BASE_CFG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamTableConfig {
    pub base: u64,
    /// log2 of the number of StreamIDs the table covers.
    pub log2_size: u32,
    pub format: StreamTableFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocateError {
    /// Beyond the table, or in a level-2 table that is absent or too short
    /// (C_BAD_STREAMID).
    BadStreamId,
    /// Reading the level-1 descriptor at this address failed (F_STE_FETCH).
    Fetch(u64),
}

impl StreamTableConfig {
    /// The address of `sid`'s STE; `read` fetches a level-1 descriptor.
    pub fn ste_address(
        &self,
        sid: u32,
        sid_bits: u32,
        read: impl FnOnce(u64) -> Option<u64>,
    ) -> Result<u64, LocateError> {
        let sid = u64::from(sid);
        if sid >> self.log2_size.min(sid_bits) != 0 {
            return Err(LocateError::BadStreamId);
        }
        match self.format {
            StreamTableFormat::Linear => Ok(self.base + sid * STE_SIZE as u64),
            StreamTableFormat::TwoLevel { split } => {
                let l1 = self.base + (sid >> split) * 8;
                let desc = L1StreamDescriptor(read(l1).ok_or(LocateError::Fetch(l1))?);
                let span = u32::from(desc.span());
                // SPAN 0 is invalid; a span beyond SPLIT+1 is ILLEGAL.
                if span == 0 || span > split + 1 {
                    return Err(LocateError::BadStreamId);
                }
                let index = sid & ((1 << split) - 1);
                if index >> (span - 1) != 0 {
                    return Err(LocateError::BadStreamId);
                }
                Ok(desc.l2_ptr() + index * STE_SIZE as u64)
            }
        }
    }
}

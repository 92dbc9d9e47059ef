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
        // Shifts and sums use checked arithmetic: the fields may come from a guest.
        if sid.checked_shr(self.log2_size.min(sid_bits)).unwrap_or(0) != 0 {
            return Err(LocateError::BadStreamId);
        }
        let entry = |base: u64, index: u64| {
            base.checked_add(index * STE_SIZE as u64)
                .ok_or(LocateError::BadStreamId)
        };
        match self.format {
            StreamTableFormat::Linear => entry(self.base, sid),
            StreamTableFormat::TwoLevel { split } => {
                if split > 31 {
                    return Err(LocateError::BadStreamId);
                }
                let l1 = self
                    .base
                    .checked_add((sid >> split) * 8)
                    .ok_or(LocateError::BadStreamId)?;
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
                entry(desc.l2_ptr(), index)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_fields_are_bad_stream_ids_not_overflows() {
        let table = |base, log2_size, format| StreamTableConfig {
            base,
            log2_size,
            format,
        };
        let linear = StreamTableFormat::Linear;
        let none = |_| None;
        assert_eq!(
            table(!63, 8, linear).ste_address(3, 16, none),
            Err(LocateError::BadStreamId)
        );
        assert_eq!(
            table(0x1000, 8, linear).ste_address(3, 16, none),
            Ok(0x10c0)
        );
        assert_eq!(table(0, 99, linear).ste_address(3, 99, none), Ok(0xc0));
        assert_eq!(
            table(0, 8, linear).ste_address(256, 16, none),
            Err(LocateError::BadStreamId)
        );
        let two = |split| StreamTableFormat::TwoLevel { split };
        assert_eq!(
            table(0, 16, two(40)).ste_address(3, 16, none),
            Err(LocateError::BadStreamId)
        );
        assert_eq!(
            table(!7, 16, two(4)).ste_address(0x30, 16, none),
            Err(LocateError::BadStreamId)
        );
        assert_eq!(
            table(0x2000, 16, two(4)).ste_address(0x35, 16, |_| Some(0x8000 | 5)),
            Ok(0x8000 + 5 * 64)
        );
    }
}

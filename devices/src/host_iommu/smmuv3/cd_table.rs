//! Finding the CD a transaction uses: which substream (S1DSS and S1CDMax decide for
//! transactions with and without one) and where its CD is in a linear or two-level table.

use super::stream::Stage1Stream;
use super::wire::{L1CdDescriptor, CD_SIZE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Substream {
    /// Translate with this CD.
    Cd(u32),
    /// The transaction bypasses stage 1 (S1DSS = bypass).
    BypassStage1,
    /// The transaction is terminated and F_STREAM_DISABLED recorded (S1DSS = terminate).
    Disabled,
}

/// C_BAD_SUBSTREAMID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadSubstream;

/// Which CD, if any, a transaction with substream `ssid` uses.
pub fn select(stream: &Stage1Stream, ssid: Option<u32>) -> Result<Substream, BadSubstream> {
    if stream.cd_max_bits == 0 {
        return match ssid {
            None => Ok(Substream::Cd(0)),
            Some(_) => Err(BadSubstream),
        };
    }
    match ssid {
        Some(ssid) if ssid >> stream.cd_max_bits != 0 => Err(BadSubstream),
        // With S1DSS = substream 0, CD 0 belongs to untagged traffic only.
        Some(0) if stream.default_substream == 2 => Err(BadSubstream),
        Some(ssid) => Ok(Substream::Cd(ssid)),
        None => match stream.default_substream {
            0 => Ok(Substream::Disabled),
            1 => Ok(Substream::BypassStage1),
            2 => Ok(Substream::Cd(0)),
            _ => Err(BadSubstream),
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CdLocateError<E> {
    /// The level-1 descriptor is invalid.
    BadSubstream,
    /// Fetching the level-1 descriptor at this address failed.
    Fetch { address: u64, error: E },
}

/// The address of CD `index`; `read` fetches a level-1 descriptor (through stage 2 when
/// it translates).
pub fn cd_address<E>(
    stream: &Stage1Stream,
    index: u32,
    read: impl FnOnce(u64) -> Result<u64, E>,
) -> Result<u64, CdLocateError<E>> {
    let index = u64::from(index);
    match stream.leaf_bits {
        None => Ok(stream.context_table + index * CD_SIZE as u64),
        Some(leaf_bits) => {
            let address = stream.context_table + (index >> leaf_bits) * 8;
            let desc = L1CdDescriptor(
                read(address).map_err(|error| CdLocateError::Fetch { address, error })?,
            );
            if !desc.valid() {
                return Err(CdLocateError::BadSubstream);
            }
            Ok(desc.l2_ptr() + (index & ((1 << leaf_bits) - 1)) * CD_SIZE as u64)
        }
    }
}

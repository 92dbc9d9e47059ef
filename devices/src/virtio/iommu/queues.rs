//! Serving the two virtqueues: requests on the requestq, fault records on the eventq.

use super::nested_protocol::{features as nested_features, NESTED_FAULT_RECORD_SIZE};
use super::protocol::{FAULT_RECORD_SIZE, TAIL_SIZE};
use super::request::{execute, Answer, MAX_READABLE};
use super::state::IommuState;
use crate::dma::DmaMemory;
use crate::virtio::chain::{read_stream, total_len, write_stream, Chain, MalformedChain};
use crate::virtio::device::VirtioInterrupt;
use crate::virtio::queue_server::{QueueServer, Served};

/// Answers one request chain (already checked by the chain reader, so every buffer it writes
/// is writable before anything executes) and returns its used length: 0 when the device
/// writes nothing, otherwise the whole writable length (which is what Linux checks).
pub fn answer_chain(
    state: &IommuState,
    negotiated: u64,
    mem: &DmaMemory,
    chain: Result<Chain<'_>, MalformedChain>,
) -> u32 {
    // Every buffer must be reachable before the request runs: a request executed and then
    // answered with used length 0 (which the driver reads as failure) would leave its
    // effect in place while the driver believes it failed.
    let Ok(chain) = chain.and_then(|c| match c.unreachable {
        Some(at) => Err(MalformedChain::Unreachable(at.0)),
        None => Ok(c),
    }) else {
        return 0;
    };
    let readable_len = (total_len(chain.readable) as usize).min(MAX_READABLE);
    let mut readable = [0u8; MAX_READABLE];
    if read_stream(mem, chain.readable, 0, &mut readable[..readable_len]).is_err() {
        return 0;
    }
    let writable_len = total_len(chain.writable);
    let Answer::Status { status, properties } =
        execute(state, negotiated, &readable[..readable_len], writable_len)
    else {
        return 0;
    };
    let tail_at = u64::from(writable_len) - TAIL_SIZE as u64;
    let written = properties
        .map_or(Ok(()), |p| write_stream(mem, chain.writable, 0, &p))
        .and_then(|()| write_stream(mem, chain.writable, tail_at, &[status as u8, 0, 0, 0]));
    match written {
        Ok(()) => writable_len,
        Err(_) => 0,
    }
}

/// Serves at most `budget` requests; returns whether any are left.
pub fn serve_requests(
    state: &IommuState,
    negotiated: u64,
    mem: &DmaMemory,
    requests: &mut QueueServer,
    interrupt: &dyn VirtioInterrupt,
    budget: usize,
) -> bool {
    requests.serve(mem, interrupt, budget, |chain| {
        Served::Used(answer_chain(state, negotiated, mem, chain))
    })
}

/// Moves pending fault records into eventq buffers the driver posted; records wait when
/// there is no buffer. Returns whether buffers and records are both left.
pub fn deliver_faults(
    state: &IommuState,
    negotiated: u64,
    mem: &DmaMemory,
    events: &mut QueueServer,
    interrupt: &dyn VirtioInterrupt,
    budget: usize,
) -> bool {
    // With the extension's PAGE_REQUEST, every record is its 32-byte form.
    let nested_records = negotiated & nested_features::PAGE_REQUEST != 0;
    let record_size = if nested_records {
        NESTED_FAULT_RECORD_SIZE
    } else {
        FAULT_RECORD_SIZE
    };
    events.serve(mem, interrupt, budget, |chain| {
        // Not held across the write: the DMA path reports faults under the same lock.
        let next = state.faults().pop();
        let Some(record) = next else {
            return Served::Declined;
        };
        // A chain with a buffer the device cannot reach is returned before anything is
        // written: the record could land in its first buffers and then fail, leaving a
        // partial record in a buffer returned as empty.
        let nested_bytes;
        let bytes: &[u8] = if nested_records {
            nested_bytes = record.to_nested_bytes();
            &nested_bytes
        } else {
            &record.to_bytes()
        };
        let written = chain.is_ok_and(|chain| {
            chain.unreachable.is_none()
                && total_len(chain.writable) as usize >= record_size
                && write_stream(mem, chain.writable, 0, bytes).is_ok()
        });
        if written {
            Served::Used(record_size as u32)
        } else {
            // A buffer too small (or unwritable) is returned empty; the record waits.
            state.faults().unpop(record);
            Served::Used(0)
        }
    })
}

//! Serving the two virtqueues: requests on the requestq, fault records on the eventq.

use virtio_queue::{Error as QueueError, QueueT};
use vm_memory::GuestMemory;

use super::chain::ChainBuffers;
use super::protocol::{FAULT_RECORD_SIZE, TAIL_SIZE};
use super::request::{execute, Answer, MAX_READABLE};
use super::shared::Shared;

/// Answers one request chain and returns its used length: 0 when the device writes
/// nothing, otherwise the whole writable length (which is what Linux checks).
pub fn answer_chain<M, T>(
    shared: &Shared,
    negotiated: u64,
    mem: &M,
    chain: virtio_queue::DescriptorChain<T>,
) -> u32
where
    M: GuestMemory + ?Sized,
    T: std::ops::Deref,
    T::Target: GuestMemory,
{
    let Ok(buffers) = ChainBuffers::collect(mem, chain, MAX_READABLE) else {
        return 0;
    };
    let Answer::Status { status, properties } =
        execute(shared, negotiated, &buffers.readable, buffers.writable_len)
    else {
        return 0;
    };
    let tail_at = buffers.writable_len - TAIL_SIZE as u32;
    let written = properties
        .map_or(Ok(()), |p| buffers.write_at(mem, 0, &p))
        .and_then(|()| buffers.write_at(mem, tail_at, &[status as u8, 0, 0, 0]));
    match written {
        Ok(()) => buffers.writable_len,
        Err(_) => 0,
    }
}

/// Serves every available request; returns whether the driver must be notified.
pub fn process_requests<M, Q>(
    shared: &Shared,
    negotiated: u64,
    mem: &M,
    queue: &mut Q,
) -> Result<bool, QueueError>
where
    M: GuestMemory,
    Q: QueueT,
{
    let mut used_any = false;
    while let Some(chain) = queue.pop_descriptor_chain(mem) {
        let head = chain.head_index();
        let used_len = answer_chain(shared, negotiated, mem, chain);
        queue.add_used(mem, head, used_len)?;
        used_any = true;
    }
    Ok(used_any && queue.needs_notification(mem)?)
}

/// Moves pending fault records into eventq buffers the driver posted; records wait when
/// there is no buffer. Returns whether the driver must be notified.
pub fn deliver_faults<M, Q>(shared: &Shared, mem: &M, queue: &mut Q) -> Result<bool, QueueError>
where
    M: GuestMemory,
    Q: QueueT,
{
    let mut used_any = false;
    loop {
        // Not in the loop condition: its lock guard would live through the body.
        let next = shared.faults().pop();
        let Some(record) = next else {
            break;
        };
        let Some(chain) = queue.pop_descriptor_chain(mem) else {
            shared.faults().unpop(record);
            break;
        };
        let head = chain.head_index();
        let written = ChainBuffers::collect(mem, chain, 0)
            .ok()
            .filter(|b| b.writable_len as usize >= FAULT_RECORD_SIZE)
            .is_some_and(|b| b.write_at(mem, 0, &record.to_bytes()).is_ok());
        if written {
            queue.add_used(mem, head, FAULT_RECORD_SIZE as u32)?;
        } else {
            // A buffer too small (or unwritable) is returned empty; the record waits.
            queue.add_used(mem, head, 0)?;
            shared.faults().unpop(record);
        }
        used_any = true;
    }
    Ok(used_any && queue.needs_notification(mem)?)
}

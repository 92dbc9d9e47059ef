//! The one descriptor-chain reader: every device reads its chains by the same rules, and
//! checks them before it executes anything.
//!
//! - Driver-readable descriptors come first, device-writable ones after them.
//! - A chain has at most `max_descriptors` descriptors (the queue size; an indirect table
//!   counts its entries) and at most 2^32 - 1 bytes.
//! - A chain that virtio-queue cut short (a next index past the table, a loop, an unreadable
//!   or malformed indirect table: its iterator just stops) is malformed, not shorter.
//! - Whether every buffer lies where the device may access it in its direction (through the
//!   IOMMU for a device behind it) is known before the device executes anything: a device
//!   fails a request with unreachable buffers instead of running it and then finding it
//!   cannot answer.
//!
//! A malformed chain is returned to the driver with used length 0 and nothing written.

use std::ops::Deref;

use virtio_queue::DescriptorChain;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, Permissions};

/// One buffer: a descriptor's address and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub addr: GuestAddress,
    pub len: u32,
}

/// Why a chain (or an access to its buffers) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MalformedChain {
    #[error("the chain is empty")]
    Empty,
    #[error("the chain has more than {0} descriptors")]
    TooLong(usize),
    #[error("the chain was cut short (bad next index, loop or bad indirect table)")]
    CutShort,
    #[error("a driver-readable descriptor follows a device-writable one")]
    ReadableAfterWritable,
    #[error("the chain is longer than 2^32 - 1 bytes")]
    TooManyBytes,
    #[error("a buffer at {0:#x} is outside what the device may access")]
    Unreachable(u64),
    #[error("an access past the end of the chain's buffers")]
    PastEnd,
}

/// Reads chains into reusable segment lists, so reading one allocates nothing.
#[derive(Debug)]
pub struct ChainReader {
    max_descriptors: usize,
    readable: Vec<Segment>,
    writable: Vec<Segment>,
}

/// A chain that passed every rule.
#[derive(Debug, Clone, Copy)]
pub struct Chain<'a> {
    pub head: u16,
    pub readable: &'a [Segment],
    pub writable: &'a [Segment],
    /// The first buffer the device cannot reach in its direction, if any.
    pub unreachable: Option<GuestAddress>,
}

impl ChainReader {
    /// `max_descriptors` is the queue size.
    pub fn new(max_descriptors: u16) -> Self {
        let max = usize::from(max_descriptors);
        Self {
            max_descriptors: max,
            readable: Vec::with_capacity(max),
            writable: Vec::with_capacity(max),
        }
    }

    /// Reads and checks `chain`, whose buffers the device reaches through `mem`.
    pub fn read<M, T>(
        &mut self,
        mem: &M,
        chain: DescriptorChain<T>,
    ) -> Result<Chain<'_>, MalformedChain>
    where
        M: GuestMemory + ?Sized,
        T: Deref,
        T::Target: GuestMemory,
    {
        self.readable.clear();
        self.writable.clear();
        let head = chain.head_index();
        let mut count = 0usize;
        let mut total = 0u32;
        let mut ended = false;
        for desc in chain {
            count += 1;
            if count > self.max_descriptors {
                return Err(MalformedChain::TooLong(self.max_descriptors));
            }
            total = total
                .checked_add(desc.len())
                .ok_or(MalformedChain::TooManyBytes)?;
            let segment = Segment {
                addr: desc.addr(),
                len: desc.len(),
            };
            if desc.is_write_only() {
                self.writable.push(segment);
            } else if self.writable.is_empty() {
                self.readable.push(segment);
            } else {
                return Err(MalformedChain::ReadableAfterWritable);
            }
            ended = !desc.has_next();
        }
        if count == 0 {
            return Err(MalformedChain::Empty);
        }
        if !ended {
            return Err(MalformedChain::CutShort);
        }
        let readable = self.readable.iter().map(|s| (s, Permissions::Read));
        let writable = self.writable.iter().map(|s| (s, Permissions::Write));
        let unreachable = readable
            .chain(writable)
            .find(|(s, access)| !mem.check_range(s.addr, s.len as usize, *access))
            .map(|(s, _)| s.addr);
        Ok(Chain {
            head,
            readable: &self.readable,
            writable: &self.writable,
            unreachable,
        })
    }
}

/// Total bytes of `segments`.
pub fn total_len(segments: &[Segment]) -> u32 {
    // A chain's bytes fit in u32 (checked when it was read).
    segments.iter().map(|s| s.len).sum()
}

/// Calls `f(address, length, offset into buf)` for the pieces of `segments` that hold
/// bytes `[offset, offset + len)` of their stream.
fn for_each_piece(
    segments: &[Segment],
    offset: u64,
    len: usize,
    mut f: impl FnMut(GuestAddress, usize, usize) -> Result<(), MalformedChain>,
) -> Result<(), MalformedChain> {
    // Checked first, so an access that does not fit touches nothing.
    let end = offset
        .checked_add(len as u64)
        .ok_or(MalformedChain::PastEnd)?;
    if end > u64::from(total_len(segments)) {
        return Err(MalformedChain::PastEnd);
    }
    let mut skip = offset;
    let mut done = 0usize;
    for s in segments {
        if done == len {
            break;
        }
        let seg_len = u64::from(s.len);
        if skip >= seg_len {
            skip -= seg_len;
            continue;
        }
        let n = ((seg_len - skip) as usize).min(len - done);
        let at = s.addr.checked_add(skip).ok_or(MalformedChain::PastEnd)?;
        f(at, n, done)?;
        done += n;
        skip = 0;
    }
    if done < len {
        return Err(MalformedChain::PastEnd);
    }
    Ok(())
}

/// Copies bytes `[offset, offset + buf.len())` of the stream `segments` into `buf`.
pub fn read_stream<M: GuestMemory + ?Sized>(
    mem: &M,
    segments: &[Segment],
    offset: u64,
    buf: &mut [u8],
) -> Result<(), MalformedChain> {
    for_each_piece(segments, offset, buf.len(), |at, n, into| {
        mem.read_slice(&mut buf[into..into + n], at)
            .map_err(|_| MalformedChain::Unreachable(at.0))
    })
}

/// Copies `bytes` to `[offset, offset + bytes.len())` of the stream `segments`; never past
/// its end.
pub fn write_stream<M: GuestMemory + ?Sized>(
    mem: &M,
    segments: &[Segment],
    offset: u64,
    bytes: &[u8],
) -> Result<(), MalformedChain> {
    for_each_piece(segments, offset, bytes.len(), |at, n, from| {
        mem.write_slice(&bytes[from..from + n], at)
            .map_err(|_| MalformedChain::Unreachable(at.0))
    })
}

#[cfg(test)]
mod tests;

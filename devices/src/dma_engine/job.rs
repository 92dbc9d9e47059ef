//! Running one validated job against the engine's view of guest memory.
//!
//! Data moves in chunks of at most [`CHUNK`] bytes, each one access of the DMA seam: it is
//! translated and pinned as a whole, so an IOMMU invalidation waits for at most one chunk's
//! copy, and a chunk whose translation fails writes nothing. A job stops at its first fault;
//! `bytes_done` counts the bytes of the chunks before it, all of which landed.

use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryError};

use super::descriptor::{Completion, Job, JobStatus, FAULT_WRITE};

/// The most one access of a job moves.
pub const CHUNK: usize = 64 * 1024;

/// Scratch space a worker keeps across jobs, so a job allocates nothing.
pub struct JobBuffers {
    chunk: Vec<u8>,
}

impl Default for JobBuffers {
    fn default() -> Self {
        Self {
            chunk: vec![0; CHUNK],
        }
    }
}

fn fault_status(error: &GuestMemoryError) -> JobStatus {
    match error {
        GuestMemoryError::IommuError(_) => JobStatus::TranslationFault,
        _ => JobStatus::MemoryFault,
    }
}

fn fault(error: &GuestMemoryError, write: bool, done: u64, address: u64) -> Completion {
    Completion {
        status: fault_status(error) as u32,
        fault_flags: if write { FAULT_WRITE } else { 0 },
        bytes_done: done,
        fault_address: address,
    }
}

/// Runs `job` through `mem`; returns the completion to write back.
pub fn run_job<M: GuestMemory>(mem: &M, job: &Job, buffers: &mut JobBuffers) -> Completion {
    match *job {
        Job::Copy {
            source,
            destination,
            length,
        } => copy(mem, source, destination, length, &mut buffers.chunk),
        Job::Fill {
            destination,
            length,
            pattern,
        } => fill(mem, destination, length, pattern, &mut buffers.chunk),
    }
}

fn done(length: u64) -> Completion {
    Completion {
        status: JobStatus::Ok as u32,
        bytes_done: length,
        ..Default::default()
    }
}

fn copy<M: GuestMemory>(
    mem: &M,
    source: u64,
    destination: u64,
    length: u64,
    chunk: &mut [u8],
) -> Completion {
    let mut moved = 0u64;
    while moved < length {
        let n = (length - moved).min(chunk.len() as u64) as usize;
        // Validation keeps both ranges below 2^64.
        let (from, to) = (source + moved, destination + moved);
        if let Err(e) = mem.read_slice(&mut chunk[..n], GuestAddress(from)) {
            return fault(&e, false, moved, from);
        }
        if let Err(e) = mem.write_slice(&chunk[..n], GuestAddress(to)) {
            return fault(&e, true, moved, to);
        }
        moved += n as u64;
    }
    done(length)
}

fn fill<M: GuestMemory>(
    mem: &M,
    destination: u64,
    length: u64,
    pattern: u64,
    chunk: &mut [u8],
) -> Completion {
    // Chunks are a multiple of 8 bytes long, so the pattern repeats from each chunk's start.
    let bytes = pattern.to_le_bytes();
    for (i, b) in chunk.iter_mut().enumerate() {
        *b = bytes[i % 8];
    }
    let mut written = 0u64;
    while written < length {
        let n = (length - written).min(chunk.len() as u64) as usize;
        let to = destination + written;
        if let Err(e) = mem.write_slice(&chunk[..n], GuestAddress(to)) {
            return fault(&e, true, written, to);
        }
        written += n as u64;
    }
    done(length)
}

const _: () = assert!(CHUNK.is_multiple_of(8));

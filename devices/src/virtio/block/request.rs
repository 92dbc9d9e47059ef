//! One virtio-blk request: parse the descriptor chain defensively, run it against the disk
//! file, and say how many bytes went to the driver.
//!
//! The chain comes from the guest: every length and address is checked, nothing outside
//! the chain's buffers is touched, and a chain that cannot carry a status byte is returned
//! with nothing written.

use std::fs::File;
use std::ops::Deref;
use std::os::unix::fs::FileExt;

use virtio_queue::desc::split::Descriptor;
use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestAddress, GuestMemory};

use super::protocol::*;

/// Data moves between the file and guest memory in pieces of at most this size.
const CHUNK: usize = 64 << 10;

/// The backing file as the request path sees it.
pub struct Disk {
    pub file: File,
    /// Bytes addressable by the driver (whole sectors).
    pub size: u64,
    pub read_only: bool,
    pub id: [u8; ID_BYTES],
}

/// A guest buffer: one descriptor's address and length.
#[derive(Debug, Clone, Copy)]
struct Segment {
    addr: GuestAddress,
    len: u64,
}

/// Why a request got IOERR rather than running.
#[derive(Debug)]
enum Failure {
    IoErr,
    Unsupported,
}

/// Runs one request; returns the used length to report (0 for a dropped chain).
pub struct RequestRunner {
    buffer: Vec<u8>,
    max_descriptors: usize,
}

impl RequestRunner {
    /// `max_descriptors` is the queue size: longer chains are malformed.
    pub fn new(max_descriptors: u16) -> Self {
        Self {
            buffer: vec![0; CHUNK],
            max_descriptors: usize::from(max_descriptors),
        }
    }

    pub fn run<M>(&mut self, disk: &Disk, mem: &M::Target, chain: DescriptorChain<M>) -> u32
    where
        M: Deref,
        M::Target: GuestMemory,
    {
        let mut descriptors: Vec<Descriptor> = Vec::new();
        for desc in chain {
            if descriptors.len() == self.max_descriptors {
                return 0;
            }
            descriptors.push(desc);
        }
        // The iterator stops early (without an error) on loops, bad indices and unreadable
        // descriptors; a last descriptor that still points further means it did.
        let Some(last) = descriptors.last() else {
            return 0;
        };
        if last.has_next() || !last.is_write_only() || last.len() == 0 {
            return 0;
        }
        let Some(status_addr) = last.addr().0.checked_add(u64::from(last.len()) - 1) else {
            return 0;
        };
        let status_addr = GuestAddress(status_addr);
        let (status, written) = match self.execute(disk, mem, &descriptors) {
            Ok(written) => (STATUS_OK, written),
            Err(Failure::IoErr) => (STATUS_IOERR, 0),
            Err(Failure::Unsupported) => (STATUS_UNSUPP, 0),
        };
        if mem.write_obj(status, status_addr).is_err() {
            return 0;
        }
        written.saturating_add(1)
    }

    /// Returns the data bytes written to the driver's buffers.
    fn execute<M: GuestMemory + ?Sized>(
        &mut self,
        disk: &Disk,
        mem: &M,
        descriptors: &[Descriptor],
    ) -> Result<u32, Failure> {
        let first_writable = descriptors
            .iter()
            .position(|d| d.is_write_only())
            .unwrap_or(descriptors.len());
        // Driver-readable buffers must all come before the device-writable ones.
        if descriptors[first_writable..]
            .iter()
            .any(|d| !d.is_write_only())
        {
            return Err(Failure::IoErr);
        }
        let segment = |d: &Descriptor| Segment {
            addr: d.addr(),
            len: u64::from(d.len()),
        };
        let readable: Vec<Segment> = descriptors[..first_writable].iter().map(segment).collect();
        let mut writable: Vec<Segment> =
            descriptors[first_writable..].iter().map(segment).collect();
        // The status byte is the last writable byte; it is not data.
        if let Some(last) = writable.last_mut() {
            last.len -= 1;
        }

        let mut raw = [0u8; RequestHeader::SIZE];
        let data_out = gather(mem, &readable, &mut raw)?;
        let header = RequestHeader::parse(&raw);
        match header.request_type {
            REQUEST_IN => {
                let len = total(&writable);
                let offset = checked_range(disk, header.sector, len)?;
                self.read_into_guest(disk, mem, &writable, offset)?;
                u32::try_from(len).map_err(|_| Failure::IoErr)
            }
            REQUEST_OUT => {
                if disk.read_only {
                    return Err(Failure::IoErr);
                }
                let len = total(&data_out);
                let offset = checked_range(disk, header.sector, len)?;
                self.write_from_guest(disk, mem, &data_out, offset)?;
                Ok(0)
            }
            REQUEST_FLUSH => {
                disk.file.sync_data().map_err(|_| Failure::IoErr)?;
                Ok(0)
            }
            REQUEST_GET_ID => {
                let mut remaining = &disk.id[..];
                for seg in &writable {
                    let n = remaining.len().min(seg.len as usize);
                    mem.write_slice(&remaining[..n], seg.addr)
                        .map_err(|_| Failure::IoErr)?;
                    remaining = &remaining[n..];
                }
                Ok((ID_BYTES - remaining.len()) as u32)
            }
            _ => Err(Failure::Unsupported),
        }
    }

    fn read_into_guest<M: GuestMemory + ?Sized>(
        &mut self,
        disk: &Disk,
        mem: &M,
        segments: &[Segment],
        mut offset: u64,
    ) -> Result<(), Failure> {
        for seg in segments {
            let mut done = 0;
            while done < seg.len {
                let n = (seg.len - done).min(CHUNK as u64) as usize;
                let buf = &mut self.buffer[..n];
                disk.file
                    .read_exact_at(buf, offset)
                    .map_err(|_| Failure::IoErr)?;
                mem.write_slice(buf, guest_offset(seg.addr, done)?)
                    .map_err(|_| Failure::IoErr)?;
                done += n as u64;
                offset += n as u64;
            }
        }
        Ok(())
    }

    fn write_from_guest<M: GuestMemory + ?Sized>(
        &mut self,
        disk: &Disk,
        mem: &M,
        segments: &[Segment],
        mut offset: u64,
    ) -> Result<(), Failure> {
        for seg in segments {
            let mut done = 0;
            while done < seg.len {
                let n = (seg.len - done).min(CHUNK as u64) as usize;
                let buf = &mut self.buffer[..n];
                mem.read_slice(buf, guest_offset(seg.addr, done)?)
                    .map_err(|_| Failure::IoErr)?;
                disk.file
                    .write_all_at(buf, offset)
                    .map_err(|_| Failure::IoErr)?;
                done += n as u64;
                offset += n as u64;
            }
        }
        Ok(())
    }
}

fn guest_offset(addr: GuestAddress, by: u64) -> Result<GuestAddress, Failure> {
    addr.0
        .checked_add(by)
        .map(GuestAddress)
        .ok_or(Failure::IoErr)
}

fn total(segments: &[Segment]) -> u64 {
    segments.iter().map(|s| s.len).sum()
}

/// The byte offset of `len` bytes at `sector`, if they are whole sectors inside the disk.
fn checked_range(disk: &Disk, sector: u64, len: u64) -> Result<u64, Failure> {
    if len & (SECTOR_SIZE - 1) != 0 {
        return Err(Failure::IoErr);
    }
    let offset = sector.checked_mul(SECTOR_SIZE).ok_or(Failure::IoErr)?;
    let end = offset.checked_add(len).ok_or(Failure::IoErr)?;
    if end > disk.size {
        return Err(Failure::IoErr);
    }
    Ok(offset)
}

/// Copies the first `header.len()` readable bytes into `header` and returns the readable
/// segments after them (the OUT data).
fn gather<M: GuestMemory + ?Sized>(
    mem: &M,
    readable: &[Segment],
    header: &mut [u8],
) -> Result<Vec<Segment>, Failure> {
    let mut filled = 0;
    let mut rest = Vec::new();
    for seg in readable {
        let want = (header.len() - filled).min(seg.len as usize);
        if want > 0 {
            mem.read_slice(&mut header[filled..filled + want], seg.addr)
                .map_err(|_| Failure::IoErr)?;
            filled += want;
        }
        if seg.len > want as u64 {
            rest.push(Segment {
                addr: guest_offset(seg.addr, want as u64)?,
                len: seg.len - want as u64,
            });
        }
    }
    if filled < header.len() {
        return Err(Failure::IoErr);
    }
    Ok(rest)
}

//! One virtio-blk request: run a chain the chain reader accepted against the disk file, and
//! say how many bytes went to the driver.
//!
//! Layout: a 16-byte header and the OUT data in the driver-readable part; the IN data and
//! the status byte (the last writable byte) in the device-writable part.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress, GuestMemory};

use super::protocol::*;
use crate::io_counters::IoCounters;
use crate::virtio::chain::{read_stream, total_len, write_stream, Chain, Segment};

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

/// Why a request got IOERR rather than running.
#[derive(Debug)]
enum Failure {
    IoErr,
    Unsupported,
}

/// Runs one request (a chain the chain reader accepted); returns the used length to report.
pub struct RequestRunner {
    buffer: Vec<u8>,
    counters: Arc<IoCounters>,
}

impl Default for RequestRunner {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestRunner {
    pub fn new() -> Self {
        Self::counting(Arc::default())
    }

    /// A runner that counts its requests, bytes and errors in `counters`.
    pub fn counting(counters: Arc<IoCounters>) -> Self {
        Self {
            buffer: vec![0; CHUNK],
            counters,
        }
    }

    pub fn run<M: GuestMemory + ?Sized>(&mut self, disk: &Disk, mem: &M, chain: &Chain) -> u32 {
        let (status, used) = self.answer(disk, mem, chain);
        self.counters.request(status == Some(STATUS_OK));
        used
    }

    /// The status the request got (none if it could not be answered) and the used length.
    fn answer<M: GuestMemory + ?Sized>(
        &mut self,
        disk: &Disk,
        mem: &M,
        chain: &Chain,
    ) -> (Option<u8>, u32) {
        // The status byte is the last writable byte; a chain without one cannot be answered.
        let Some(&last) = chain.writable.last() else {
            return (None, 0);
        };
        if last.len == 0 {
            return (None, 0);
        }
        let Some(status_addr) = last.addr.0.checked_add(u64::from(last.len) - 1) else {
            return (None, 0);
        };
        let data_in_len = total_len(chain.writable) - 1;
        let result = match chain.unreachable {
            // Checked before anything runs: a request that cannot move its data fails whole.
            Some(_) => Err(Failure::IoErr),
            None => self.execute(disk, mem, chain, data_in_len),
        };
        let (status, written) = match result {
            Ok(written) => (STATUS_OK, written),
            Err(Failure::IoErr) => (STATUS_IOERR, 0),
            Err(Failure::Unsupported) => (STATUS_UNSUPP, 0),
        };
        if mem.write_obj(status, GuestAddress(status_addr)).is_err() {
            return (None, 0);
        }
        (Some(status), written.saturating_add(1))
    }

    /// Returns the data bytes written to the driver's buffers.
    fn execute<M: GuestMemory + ?Sized>(
        &mut self,
        disk: &Disk,
        mem: &M,
        chain: &Chain,
        data_in_len: u32,
    ) -> Result<u32, Failure> {
        let mut raw = [0u8; RequestHeader::SIZE];
        if total_len(chain.readable) < RequestHeader::SIZE as u32 {
            return Err(Failure::IoErr);
        }
        read_stream(mem, chain.readable, 0, &mut raw).map_err(|_| Failure::IoErr)?;
        let header = RequestHeader::parse(&raw);
        let data_out_len = total_len(chain.readable) - RequestHeader::SIZE as u32;
        match header.request_type {
            REQUEST_IN => {
                let offset = checked_range(disk, header.sector, u64::from(data_in_len))?;
                self.read_into_guest(disk, mem, chain.writable, data_in_len, offset)?;
                self.counters.read(data_in_len.into());
                Ok(data_in_len)
            }
            REQUEST_OUT => {
                if disk.read_only {
                    return Err(Failure::IoErr);
                }
                let offset = checked_range(disk, header.sector, u64::from(data_out_len))?;
                self.write_from_guest(disk, mem, chain.readable, data_out_len, offset)?;
                self.counters.written(data_out_len.into());
                Ok(0)
            }
            REQUEST_FLUSH => {
                disk.file.sync_data().map_err(|_| Failure::IoErr)?;
                Ok(0)
            }
            REQUEST_GET_ID => {
                let n = (ID_BYTES as u32).min(data_in_len) as usize;
                write_stream(mem, chain.writable, 0, &disk.id[..n]).map_err(|_| Failure::IoErr)?;
                Ok(n as u32)
            }
            _ => Err(Failure::Unsupported),
        }
    }

    /// File bytes from `offset` into the first `len` bytes of the `writable` stream.
    fn read_into_guest<M: GuestMemory + ?Sized>(
        &mut self,
        disk: &Disk,
        mem: &M,
        writable: &[Segment],
        len: u32,
        offset: u64,
    ) -> Result<(), Failure> {
        let mut done = 0u64;
        while done < u64::from(len) {
            let n = (u64::from(len) - done).min(CHUNK as u64) as usize;
            let buf = &mut self.buffer[..n];
            // The file read happens before, not during, the guest access: nothing slow runs
            // while a translation is pinned.
            disk.file
                .read_exact_at(buf, offset + done)
                .map_err(|_| Failure::IoErr)?;
            write_stream(mem, writable, done, buf).map_err(|_| Failure::IoErr)?;
            done += n as u64;
        }
        Ok(())
    }

    /// The `readable` stream after the header (`len` bytes) to the file at `offset`.
    fn write_from_guest<M: GuestMemory + ?Sized>(
        &mut self,
        disk: &Disk,
        mem: &M,
        readable: &[Segment],
        len: u32,
        offset: u64,
    ) -> Result<(), Failure> {
        let mut done = 0u64;
        while done < u64::from(len) {
            let n = (u64::from(len) - done).min(CHUNK as u64) as usize;
            let buf = &mut self.buffer[..n];
            read_stream(mem, readable, RequestHeader::SIZE as u64 + done, buf)
                .map_err(|_| Failure::IoErr)?;
            disk.file
                .write_all_at(buf, offset + done)
                .map_err(|_| Failure::IoErr)?;
            done += n as u64;
        }
        Ok(())
    }
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

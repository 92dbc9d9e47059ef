//! The two streams on which iommufd reports faults to a nested VMM, decoded:
//!
//! - the fault queue (`IOMMU_FAULT_QUEUE_ALLOC`): page-request groups that need an answer,
//!   40-byte `iommu_hwpt_pgfault` records read whole groups at a time, answered with 8-byte
//!   `iommu_hwpt_page_response` writes naming the cookie of the group's last record;
//! - a vEVENTQ (`IOMMU_VEVENTQ_ALLOC`): unrecoverable events, each an 8-byte
//!   `iommufd_vevent_header` (flags, sequence) and a record of the queue type's size, with a
//!   header flagged LOST_EVENTS and no record when the queue overflowed.
//!
//! Both work on any file descriptor, so tests drive them through a pipe carrying records in
//! the uAPI layout.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};

use iommufd_bindings::iommufd::{iommu_fault_alloc, IOMMUFD_CMD_FAULT_QUEUE_ALLOC, IOMMUFD_TYPE};
use iommufd_ioctls::IommuFd;

use super::nested::{PagePermissions, PageRequest, PageResponseCode};

/// `sizeof(struct iommu_hwpt_pgfault)`.
pub const PGFAULT_SIZE: usize = 40;
/// `sizeof(struct iommu_hwpt_page_response)`.
pub const PAGE_RESPONSE_SIZE: usize = 8;
/// `sizeof(struct iommufd_vevent_header)`.
pub const VEVENT_HEADER_SIZE: usize = 8;
/// `sizeof(struct iommu_vevent_arm_smmuv3)`.
pub const VEVENT_ARM_SMMUV3_SIZE: usize = 32;

/// `iommu_hwpt_pgfault.flags`.
pub mod pgfault_flags {
    pub const PASID_VALID: u32 = 1 << 0;
    pub const LAST_PAGE: u32 = 1 << 1;
}

/// `iommu_hwpt_pgfault.perm`.
pub mod pgfault_perm {
    pub const READ: u32 = 1 << 0;
    pub const WRITE: u32 = 1 << 1;
    pub const EXEC: u32 = 1 << 2;
    pub const PRIV: u32 = 1 << 3;
}

/// `iommufd_vevent_header.flags`.
pub const VEVENT_LOST_EVENTS: u32 = 1 << 0;

/// The largest sequence number before it wraps to 0 (`INT_MAX`).
const SEQUENCE_MAX: u32 = i32::MAX as u32;

/// Records one read asks for at first; a group larger than this is read with a larger
/// buffer, up to [`MAX_GROUP_RECORDS`].
const READ_RECORDS: usize = 32;
/// A group the kernel cannot hand over in this many records is never read (and so never
/// answered by us: the kernel answers it when the HWPT goes).
const MAX_GROUP_RECORDS: usize = 1024;

/// One `struct iommu_hwpt_pgfault`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PgFault {
    pub flags: u32,
    /// The iommufd device ID (not a BDF or a guest StreamID).
    pub dev_id: u32,
    pub pasid: u32,
    pub grpid: u32,
    pub perm: u32,
    pub addr: u64,
    pub length: u32,
    /// Assigned by the kernel when the record is read; names the group in the response.
    pub cookie: u32,
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn le64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

impl PgFault {
    pub fn from_le_bytes(bytes: &[u8; PGFAULT_SIZE]) -> Self {
        Self {
            flags: le32(bytes, 0),
            dev_id: le32(bytes, 4),
            pasid: le32(bytes, 8),
            grpid: le32(bytes, 12),
            perm: le32(bytes, 16),
            // 20..24: __reserved
            addr: le64(bytes, 24),
            length: le32(bytes, 32),
            cookie: le32(bytes, 36),
        }
    }

    pub fn to_le_bytes(&self) -> [u8; PGFAULT_SIZE] {
        let mut b = [0u8; PGFAULT_SIZE];
        b[0..4].copy_from_slice(&self.flags.to_le_bytes());
        b[4..8].copy_from_slice(&self.dev_id.to_le_bytes());
        b[8..12].copy_from_slice(&self.pasid.to_le_bytes());
        b[12..16].copy_from_slice(&self.grpid.to_le_bytes());
        b[16..20].copy_from_slice(&self.perm.to_le_bytes());
        b[24..32].copy_from_slice(&self.addr.to_le_bytes());
        b[32..36].copy_from_slice(&self.length.to_le_bytes());
        b[36..40].copy_from_slice(&self.cookie.to_le_bytes());
        b
    }

    pub fn pasid(&self) -> Option<u32> {
        (self.flags & pgfault_flags::PASID_VALID != 0).then_some(self.pasid)
    }

    pub fn is_last(&self) -> bool {
        self.flags & pgfault_flags::LAST_PAGE != 0
    }
}

/// One `struct iommu_hwpt_page_response` (code: 0 SUCCESS, 1 INVALID).
pub fn page_response_bytes(cookie: u32, code: PageResponseCode) -> [u8; PAGE_RESPONSE_SIZE] {
    let code: u32 = match code {
        PageResponseCode::Success => 0,
        PageResponseCode::Invalid => 1,
    };
    let mut b = [0u8; PAGE_RESPONSE_SIZE];
    b[0..4].copy_from_slice(&cookie.to_le_bytes());
    b[4..8].copy_from_slice(&code.to_le_bytes());
    b
}

fn read_fd(fd: &impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for writes of its length for the duration of the call.
        let n = unsafe { libc::read(fd.as_fd().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(0),
            _ => return Err(e),
        }
    }
}

fn write_fd(fd: &impl AsFd, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for reads of its length for the duration of the call.
        let n = unsafe { libc::write(fd.as_fd().as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FaultQueueError {
    #[error("the fault queue returned {0} bytes, not a whole number of records")]
    Torn(usize),
    #[error("the kernel knows no outstanding group under cookie {0}")]
    UnknownCookie(u32),
    #[error("fault queue: {0}")]
    Io(#[from] io::Error),
}

/// The fault queue's fd: page requests in, page responses out.
#[derive(Debug)]
pub struct FaultQueue<F> {
    fd: F,
    /// Records per read; grows when a group does not fit.
    capacity: usize,
}

impl<F: AsFd> FaultQueue<F> {
    pub fn new(fd: F) -> Self {
        Self {
            fd,
            capacity: READ_RECORDS,
        }
    }

    pub fn fd(&self) -> &F {
        &self.fd
    }

    /// Reads the groups waiting, whole; empty when none is. The kernel hands over only
    /// whole groups and returns nothing when the first does not fit, so a read that
    /// returns nothing while the fd polls readable is retried with a larger buffer.
    pub fn read(&mut self, readable: bool) -> Result<Vec<PgFault>, FaultQueueError> {
        loop {
            let mut buf = vec![0u8; self.capacity * PGFAULT_SIZE];
            let n = read_fd(&self.fd, &mut buf)?;
            if n % PGFAULT_SIZE != 0 {
                return Err(FaultQueueError::Torn(n));
            }
            if n == 0 && readable && self.capacity < MAX_GROUP_RECORDS {
                self.capacity = (self.capacity * 2).min(MAX_GROUP_RECORDS);
                continue;
            }
            return Ok(buf[..n]
                .chunks_exact(PGFAULT_SIZE)
                .map(|r| PgFault::from_le_bytes(r.try_into().unwrap()))
                .collect());
        }
    }

    /// Answers the group whose last record carried `cookie`.
    pub fn respond(&self, cookie: u32, code: PageResponseCode) -> Result<(), FaultQueueError> {
        match write_fd(&self.fd, &page_response_bytes(cookie, code)) {
            Ok(PAGE_RESPONSE_SIZE) => Ok(()),
            Ok(n) => Err(FaultQueueError::Torn(n)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                Err(FaultQueueError::UnknownCookie(cookie))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// `IOMMU_FAULT_QUEUE_ALLOC`, which iommufd-ioctls does not wrap: a fault object and the fd
/// its page requests are read from. Returns the object's id (for a HWPT's `fault_id`) and
/// the fd.
pub fn alloc_fault_queue(iommufd: &IommuFd) -> io::Result<(u32, File)> {
    let mut alloc = iommu_fault_alloc {
        size: std::mem::size_of::<iommu_fault_alloc>() as u32,
        flags: 0,
        out_fault_id: 0,
        out_fault_fd: 0,
    };
    let request = iommufd_ioctl(IOMMUFD_CMD_FAULT_QUEUE_ALLOC);
    // SAFETY: the kernel reads and writes `alloc`, a struct of the size it is told.
    let ret = unsafe { libc::ioctl(iommufd.as_raw_fd(), request as _, &mut alloc) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just installed this fd for us; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(alloc.out_fault_fd as i32) };
    Ok((alloc.out_fault_id, File::from(fd)))
}

/// `_IO(IOMMUFD_TYPE, nr)`: iommufd's ioctls carry their size in the struct, not the number.
pub(crate) fn iommufd_ioctl(nr: u32) -> u64 {
    (u64::from(IOMMUFD_TYPE) << 8) | u64::from(nr)
}

/// One item of a vEVENTQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vevent {
    /// An event, with how many were lost just before it (a gap in the sequence).
    Record {
        sequence: u32,
        lost_before: u32,
        data: Vec<u8>,
    },
    /// The queue overflowed after the previous event: an unknown number (at least one) of
    /// events were lost.
    Lost { sequence: u32 },
}

/// A vEVENTQ's fd, with the sequence number it expects next.
#[derive(Debug)]
pub struct VeventQueue<F> {
    fd: F,
    record_size: usize,
    next_sequence: Option<u32>,
    /// Bytes of an item a read cut in two (the kernel hands over whole items; kept for
    /// safety).
    carry: Vec<u8>,
}

fn next_after(sequence: u32) -> u32 {
    if sequence >= SEQUENCE_MAX {
        0
    } else {
        sequence + 1
    }
}

/// Events between `expected` and `got`, sequence numbers running 0..=INT_MAX.
fn gap(expected: u32, got: u32) -> u32 {
    if got >= expected {
        got - expected
    } else {
        (SEQUENCE_MAX - expected) + got + 1
    }
}

impl<F: AsFd> VeventQueue<F> {
    /// `record_size`: the size of the queue type's record
    /// ([`VEVENT_ARM_SMMUV3_SIZE`] for SMMUv3).
    pub fn new(fd: F, record_size: usize) -> Self {
        Self {
            fd,
            record_size,
            next_sequence: None,
            carry: Vec::new(),
        }
    }

    pub fn fd(&self) -> &F {
        &self.fd
    }

    /// Reads what is waiting, at most about `max` items.
    pub fn read(&mut self, max: usize) -> io::Result<Vec<Vevent>> {
        let item = VEVENT_HEADER_SIZE + self.record_size;
        let mut buf = vec![0u8; max.max(1) * item];
        let n = read_fd(&self.fd, &mut buf)?;
        self.carry.extend_from_slice(&buf[..n]);
        let mut out = Vec::new();
        let mut at = 0;
        while self.carry.len() - at >= VEVENT_HEADER_SIZE {
            let flags = le32(&self.carry, at);
            let sequence = le32(&self.carry, at + 4);
            if flags & VEVENT_LOST_EVENTS != 0 {
                at += VEVENT_HEADER_SIZE;
                // The next event's number is unknown: do not count a gap before it.
                self.next_sequence = None;
                out.push(Vevent::Lost { sequence });
                continue;
            }
            if self.carry.len() - at < item {
                break;
            }
            let lost_before = self
                .next_sequence
                .map_or(0, |expected| gap(expected, sequence));
            self.next_sequence = Some(next_after(sequence));
            let start = at + VEVENT_HEADER_SIZE;
            out.push(Vevent::Record {
                sequence,
                lost_before,
                data: self.carry[start..start + self.record_size].to_vec(),
            });
            at += item;
        }
        self.carry.drain(..at);
        Ok(out)
    }
}

/// The fault side of an iommufd nested back-end: the fault queue, with each iommufd device
/// id known by its guest StreamID, so records become [`PageRequest`]s the relay routes.
#[derive(Debug)]
pub struct IommufdPageRequests {
    queue: Mutex<FaultQueue<File>>,
    streams: Mutex<HashMap<u32, u32>>,
}

impl IommufdPageRequests {
    pub fn new(fault_fd: File) -> Self {
        Self {
            queue: Mutex::new(FaultQueue::new(fault_fd)),
            streams: Mutex::new(HashMap::new()),
        }
    }

    fn queue(&self) -> MutexGuard<'_, FaultQueue<File>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn streams(&self) -> MutexGuard<'_, HashMap<u32, u32>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Page requests of iommufd device `dev_id` are the guest's StreamID `stream`.
    pub fn route(&self, dev_id: u32, stream: u32) {
        self.streams().insert(dev_id, stream);
    }

    pub fn unroute(&self, dev_id: u32) {
        self.streams().remove(&dev_id);
    }

    /// Polls readable while a group is queued.
    pub fn notifier(&self) -> BorrowedFd<'_> {
        // SAFETY: the fd lives as long as `self`; the queue never replaces it.
        unsafe { BorrowedFd::borrow_raw(self.queue().fd().as_raw_fd()) }
    }

    /// The waiting groups, whole. A record of a device with no guest StreamID cannot be
    /// answered by the guest: its group is answered INVALID here.
    pub fn read(&self) -> Result<Vec<PageRequest>, FaultQueueError> {
        let records = self.queue().read(true)?;
        let streams = self.streams().clone();
        let mut out = Vec::with_capacity(records.len());
        for record in records {
            let Some(&stream) = streams.get(&record.dev_id) else {
                if record.is_last() {
                    let _ = self.respond(record.cookie, PageResponseCode::Invalid);
                }
                continue;
            };
            out.push(PageRequest {
                stream,
                pasid: record.pasid(),
                group: record.grpid,
                permissions: PagePermissions {
                    read: record.perm & pgfault_perm::READ != 0,
                    write: record.perm & pgfault_perm::WRITE != 0,
                    execute: record.perm & pgfault_perm::EXEC != 0,
                    privileged: record.perm & pgfault_perm::PRIV != 0,
                },
                address: record.addr,
                last: record.is_last(),
                cookie: record.cookie,
            });
        }
        Ok(out)
    }

    pub fn respond(&self, cookie: u32, code: PageResponseCode) -> Result<(), FaultQueueError> {
        self.queue().respond(cookie, code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::{Read, Write};
    use std::os::fd::{FromRawFd, OwnedFd};

    fn pipe() -> (File, File) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 returns.
        assert_eq!(
            unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) },
            0
        );
        // SAFETY: both descriptors were just created and are owned here only.
        unsafe {
            (
                File::from(OwnedFd::from_raw_fd(fds[0])),
                File::from(OwnedFd::from_raw_fd(fds[1])),
            )
        }
    }

    #[test]
    fn fault_queue_alloc_is_iommufd_ioctl_0x8e() {
        assert_eq!(iommufd_ioctl(IOMMUFD_CMD_FAULT_QUEUE_ALLOC), 0x3b8e);
        assert_eq!(std::mem::size_of::<iommu_fault_alloc>(), 16);
    }

    #[test]
    fn pgfault_layout_matches_the_uapi() {
        let mut raw = [0u8; PGFAULT_SIZE];
        raw[0] = 3; // PASID_VALID | LAST_PAGE
        raw[4] = 7; // dev_id
        raw[8..12].copy_from_slice(&0x12345u32.to_le_bytes());
        raw[12..16].copy_from_slice(&0x1ffu32.to_le_bytes());
        raw[16] = 0b1011; // READ | WRITE | PRIV
        raw[20..24].copy_from_slice(&0xdead_beefu32.to_le_bytes()); // __reserved
        raw[24..32].copy_from_slice(&0x7fff_0000_1000u64.to_le_bytes());
        raw[32..36].copy_from_slice(&4096u32.to_le_bytes());
        raw[36..40].copy_from_slice(&9u32.to_le_bytes());
        let f = PgFault::from_le_bytes(&raw);
        assert_eq!(f.pasid(), Some(0x12345));
        assert!(f.is_last());
        assert_eq!(f.dev_id, 7);
        assert_eq!(f.grpid, 0x1ff);
        assert_eq!(
            f.perm,
            pgfault_perm::READ | pgfault_perm::WRITE | pgfault_perm::PRIV
        );
        assert_eq!(f.perm & pgfault_perm::EXEC, 0);
        assert_eq!(f.addr, 0x7fff_0000_1000);
        assert_eq!(f.length, 4096);
        assert_eq!(f.cookie, 9);
        // The reserved word is not carried; everything else round-trips.
        raw[20..24].fill(0);
        assert_eq!(f.to_le_bytes(), raw);
        let no_pasid = PgFault { flags: 0, ..f };
        assert_eq!(no_pasid.pasid(), None);
        assert!(!no_pasid.is_last());
    }

    #[test]
    fn page_response_layout_matches_the_uapi() {
        assert_eq!(
            page_response_bytes(0x0102_0304, PageResponseCode::Invalid),
            [4, 3, 2, 1, 1, 0, 0, 0]
        );
        assert_eq!(
            page_response_bytes(5, PageResponseCode::Success),
            [5, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn the_fault_queue_reads_whole_records_and_writes_responses() {
        let (rx, mut tx) = pipe();
        let mut queue = FaultQueue::new(rx);
        assert!(queue.read(false).unwrap().is_empty());
        let records: Vec<PgFault> = (0..3)
            .map(|i| PgFault {
                flags: if i == 2 { pgfault_flags::LAST_PAGE } else { 0 },
                dev_id: 1,
                grpid: 4,
                addr: 0x1000 * i,
                cookie: 10 + i as u32,
                ..Default::default()
            })
            .collect();
        for r in &records {
            tx.write_all(&r.to_le_bytes()).unwrap();
        }
        assert_eq!(queue.read(true).unwrap(), records);

        // Responses go out on the same fd: a pipe's write end stands in for it here.
        let (mut answers, writer) = pipe();
        let responder = FaultQueue::new(writer);
        responder.respond(12, PageResponseCode::Success).unwrap();
        let mut got = [0u8; PAGE_RESPONSE_SIZE];
        answers.read_exact(&mut got).unwrap();
        assert_eq!(got, page_response_bytes(12, PageResponseCode::Success));
    }

    #[test]
    fn page_requests_carry_the_guest_stream_and_unroutable_groups_are_refused() {
        let (rx, mut tx) = pipe();
        let source = IommufdPageRequests::new(rx);
        source.route(7, 0x42);
        let routed = PgFault {
            flags: pgfault_flags::LAST_PAGE | pgfault_flags::PASID_VALID,
            dev_id: 7,
            pasid: 3,
            grpid: 9,
            perm: pgfault_perm::WRITE,
            addr: 0x5000,
            cookie: 1,
            ..Default::default()
        };
        let unrouted = PgFault {
            dev_id: 8,
            cookie: 2,
            ..routed
        };
        tx.write_all(&routed.to_le_bytes()).unwrap();
        tx.write_all(&unrouted.to_le_bytes()).unwrap();
        // The read end of a pipe cannot be written: answering the unrouted group fails
        // quietly here, as a kernel refusal would.
        let got = source.read().unwrap();
        assert_eq!(got.len(), 1);
        let r = got[0];
        assert_eq!(
            (r.stream, r.pasid, r.group, r.cookie),
            (0x42, Some(3), 9, 1)
        );
        assert!(r.last && r.permissions.write && !r.permissions.read);
        assert_eq!(r.address, 0x5000);
        source.unroute(7);
        tx.write_all(&routed.to_le_bytes()).unwrap();
        assert!(source.read().unwrap().is_empty());
    }

    #[test]
    fn a_torn_record_is_an_error_not_a_record() {
        let (rx, mut tx) = pipe();
        let mut queue = FaultQueue::new(rx);
        tx.write_all(&[0u8; PGFAULT_SIZE + 3]).unwrap();
        assert!(matches!(queue.read(true), Err(FaultQueueError::Torn(43))));
    }

    #[test]
    fn an_unknown_cookie_is_reported_as_such() {
        // The kernel answers a cookie it does not know with EINVAL; so does any file that
        // cannot be written at all, such as a timerfd.
        // SAFETY: plain syscall; the fd is owned below.
        let tfd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC) };
        assert!(tfd >= 0);
        // SAFETY: just created, owned here only.
        let efd = unsafe { OwnedFd::from_raw_fd(tfd) };
        let queue = FaultQueue::new(efd);
        assert!(matches!(
            queue.respond(u32::MAX, PageResponseCode::Invalid),
            Err(FaultQueueError::UnknownCookie(u32::MAX))
        ));
    }

    fn vevent(sequence: u32, fill: u8) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&sequence.to_le_bytes());
        b.extend_from_slice(&[fill; VEVENT_ARM_SMMUV3_SIZE]);
        b
    }

    fn lost(sequence: u32) -> Vec<u8> {
        let mut b = VEVENT_LOST_EVENTS.to_le_bytes().to_vec();
        b.extend_from_slice(&sequence.to_le_bytes());
        b
    }

    #[test]
    fn vevents_count_sequence_gaps_and_lost_markers() {
        let (rx, mut tx) = pipe();
        let mut queue = VeventQueue::new(rx, VEVENT_ARM_SMMUV3_SIZE);
        for item in [
            vevent(0, 1),
            vevent(1, 2),
            vevent(4, 3),
            lost(5),
            vevent(9, 4),
        ] {
            tx.write_all(&item).unwrap();
        }
        let got = queue.read(16).unwrap();
        let summary: Vec<(u32, Option<u32>)> = got
            .iter()
            .map(|v| match v {
                Vevent::Record {
                    sequence,
                    lost_before,
                    data,
                } => {
                    assert_eq!(data.len(), VEVENT_ARM_SMMUV3_SIZE);
                    (*sequence, Some(*lost_before))
                }
                Vevent::Lost { sequence } => (*sequence, None),
            })
            .collect();
        // 2 and 3 are missing before 4; after a LOST_EVENTS marker the next number is
        // unknown, so no gap is counted twice.
        assert_eq!(
            summary,
            vec![
                (0, Some(0)),
                (1, Some(0)),
                (4, Some(2)),
                (5, None),
                (9, Some(0))
            ]
        );
    }

    #[test]
    fn vevent_sequence_numbers_wrap_after_int_max() {
        let (rx, mut tx) = pipe();
        let mut queue = VeventQueue::new(rx, 4);
        for (sequence, _) in [(SEQUENCE_MAX - 1, 0), (SEQUENCE_MAX, 0), (1, 0)] {
            let mut b = 0u32.to_le_bytes().to_vec();
            b.extend_from_slice(&sequence.to_le_bytes());
            b.extend_from_slice(&[0; 4]);
            tx.write_all(&b).unwrap();
        }
        let lost: Vec<u32> = queue
            .read(8)
            .unwrap()
            .into_iter()
            .map(|v| match v {
                Vevent::Record { lost_before, .. } => lost_before,
                Vevent::Lost { .. } => panic!("no marker was written"),
            })
            .collect();
        // INT_MAX - 1, INT_MAX, then 0 is missing before 1.
        assert_eq!(lost, vec![0, 0, 1]);
    }

    #[test]
    fn a_vevent_cut_by_a_short_read_is_completed_by_the_next() {
        let (rx, mut tx) = pipe();
        let mut queue = VeventQueue::new(rx, VEVENT_ARM_SMMUV3_SIZE);
        let item = vevent(3, 7);
        tx.write_all(&item[..10]).unwrap();
        assert!(queue.read(4).unwrap().is_empty());
        tx.write_all(&item[10..]).unwrap();
        assert_eq!(
            queue.read(4).unwrap(),
            vec![Vevent::Record {
                sequence: 3,
                lost_before: 0,
                data: vec![7; VEVENT_ARM_SMMUV3_SIZE]
            }]
        );
    }
}

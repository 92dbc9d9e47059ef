//! The virtio-iommu wire format (virtio spec, "IOMMU device"): every structure the driver and
//! the device exchange, little-endian, with its size checked at compile time, and the one
//! place where request bytes become a validated [`Request`].
//!
//! The structs document the layout; values are decoded and encoded field by field with
//! `from_le_bytes`/`to_le_bytes`, so host endianness and alignment never matter.

use super::nested_protocol::NESTED_FAULT_RECORD_SIZE;
use std::mem::size_of;

pub const DEVICE_ID: u32 = 23;
pub const REQUEST_QUEUE: usize = 0;
pub const EVENT_QUEUE: usize = 1;

/// Feature bits (device-specific bits 0-6, plus the transport bits this device offers).
pub mod features {
    pub const INPUT_RANGE: u64 = 1 << 0;
    pub const DOMAIN_RANGE: u64 = 1 << 1;
    pub const MAP_UNMAP: u64 = 1 << 2;
    /// Legacy bypass; never offered (BYPASS_CONFIG replaces it).
    pub const BYPASS: u64 = 1 << 3;
    pub const PROBE: u64 = 1 << 4;
    pub const MMIO: u64 = 1 << 5;
    pub const BYPASS_CONFIG: u64 = 1 << 6;
    pub const VERSION_1: u64 = 1 << 32;
    pub const ACCESS_PLATFORM: u64 = 1 << 33;
}

pub const ATTACH_F_BYPASS: u32 = 1 << 0;
pub const MAP_F_READ: u32 = 1 << 0;
pub const MAP_F_WRITE: u32 = 1 << 1;
pub const MAP_F_MMIO: u32 = 1 << 2;

/// Request types in the head's first byte.
pub mod request_type {
    pub const ATTACH: u8 = 1;
    pub const DETACH: u8 = 2;
    pub const MAP: u8 = 3;
    pub const UNMAP: u8 = 4;
    pub const PROBE: u8 = 5;
}

/// The status byte of the request tail.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    IoErr = 1,
    Unsupp = 2,
    DevErr = 3,
    Inval = 4,
    Range = 5,
    NoEnt = 6,
    Fault = 7,
    NoMem = 8,
}

/// `struct virtio_iommu_req_head`: the first bytes of every request.
#[repr(C)]
pub struct ReqHead {
    pub kind: u8,
    pub reserved: [u8; 3],
}

/// `struct virtio_iommu_req_tail`: the last bytes of every request, written by the device.
#[repr(C)]
pub struct ReqTail {
    pub status: u8,
    pub reserved: [u8; 3],
}

/// ATTACH body (after the head).
#[repr(C, packed)]
pub struct AttachBody {
    pub domain: u32,
    pub endpoint: u32,
    pub flags: u32,
    pub reserved: [u8; 4],
}

/// DETACH body.
#[repr(C, packed)]
pub struct DetachBody {
    pub domain: u32,
    pub endpoint: u32,
    pub reserved: [u8; 8],
}

/// MAP body; `virt_end` is inclusive.
#[repr(C, packed)]
pub struct MapBody {
    pub domain: u32,
    pub virt_start: u64,
    pub virt_end: u64,
    pub phys_start: u64,
    pub flags: u32,
}

/// UNMAP body; `virt_end` is inclusive.
#[repr(C, packed)]
pub struct UnmapBody {
    pub domain: u32,
    pub virt_start: u64,
    pub virt_end: u64,
    pub reserved: [u8; 4],
}

/// PROBE body; the device-writable `properties[probe_size]` follow it.
#[repr(C, packed)]
pub struct ProbeBody {
    pub endpoint: u32,
    pub reserved: [u8; 64],
}

/// Header of one PROBE property; `length` excludes the header.
#[repr(C)]
pub struct ProbePropertyHead {
    pub kind: u16,
    pub length: u16,
}

/// The RESV_MEM property (type 1); `end` is inclusive.
#[repr(C, packed)]
pub struct ResvMemProperty {
    pub head: ProbePropertyHead,
    pub subtype: u8,
    pub reserved: [u8; 3],
    pub start: u64,
    pub end: u64,
}

/// `struct virtio_iommu_fault`: one eventq record.
#[repr(C, packed)]
pub struct FaultRecordLayout {
    pub reason: u8,
    pub reserved: [u8; 3],
    pub flags: u32,
    pub endpoint: u32,
    pub reserved1: [u8; 4],
    pub address: u64,
}

/// `struct virtio_iommu_config`.
#[repr(C, packed)]
pub struct ConfigLayout {
    pub page_size_mask: u64,
    pub input_start: u64,
    pub input_end: u64,
    pub domain_start: u32,
    pub domain_end: u32,
    pub probe_size: u32,
    pub bypass: u8,
    pub reserved: [u8; 3],
}

pub const HEAD_SIZE: usize = size_of::<ReqHead>();
pub const TAIL_SIZE: usize = size_of::<ReqTail>();
pub const PROPERTY_HEAD_SIZE: usize = size_of::<ProbePropertyHead>();
pub const RESV_MEM_SIZE: usize = size_of::<ResvMemProperty>();
pub const FAULT_RECORD_SIZE: usize = size_of::<FaultRecordLayout>();
pub const CONFIG_SIZE: usize = size_of::<ConfigLayout>();
/// Offset of the `bypass` byte, the one field the driver may write.
pub const CONFIG_BYPASS_OFFSET: usize = 36;

const _: () = assert!(size_of::<ReqHead>() == 4);
const _: () = assert!(size_of::<ReqTail>() == 4);
const _: () = assert!(HEAD_SIZE + size_of::<AttachBody>() == 20);
const _: () = assert!(HEAD_SIZE + size_of::<DetachBody>() == 20);
const _: () = assert!(HEAD_SIZE + size_of::<MapBody>() == 36);
const _: () = assert!(HEAD_SIZE + size_of::<UnmapBody>() == 28);
const _: () = assert!(HEAD_SIZE + size_of::<ProbeBody>() == 72);
const _: () = assert!(size_of::<ProbePropertyHead>() == 4);
const _: () = assert!(size_of::<ResvMemProperty>() == 24);
const _: () = assert!(size_of::<FaultRecordLayout>() == 24);
const _: () = assert!(size_of::<ConfigLayout>() == 40);

pub const PROBE_T_RESV_MEM: u16 = 1;
pub const RESV_MEM_T_RESERVED: u8 = 0;
pub const RESV_MEM_T_MSI: u8 = 1;

pub const FAULT_R_UNKNOWN: u8 = 0;
pub const FAULT_R_DOMAIN: u8 = 1;
pub const FAULT_R_MAPPING: u8 = 2;
pub const FAULT_F_READ: u32 = 1 << 0;
pub const FAULT_F_WRITE: u32 = 1 << 1;
pub const FAULT_F_ADDRESS: u32 = 1 << 8;
/// nestor's extension: the record's word at offset 12 holds the PASID.
pub const FAULT_F_PASID: u32 = 1 << 9;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attach {
    pub domain: u32,
    pub endpoint: u32,
    pub bypass: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detach {
    pub domain: u32,
    pub endpoint: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Map {
    pub domain: u32,
    pub virt_start: u64,
    pub virt_end: u64,
    pub phys_start: u64,
    pub flags: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unmap {
    pub domain: u32,
    pub virt_start: u64,
    pub virt_end: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub endpoint: u32,
}

/// A request whose fields passed the checks that need nothing but the bytes and the
/// negotiated features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Attach(Attach),
    Detach(Detach),
    Map(Map),
    Unmap(Unmap),
    Probe(Probe),
}

/// Why a request was not turned into a [`Request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// Unknown type, or too short to parse: the device writes nothing (used length 0).
    Unanswerable,
    /// Answer with this status.
    Status(Status),
}

impl From<Status> for RequestError {
    fn from(status: Status) -> Self {
        RequestError::Status(status)
    }
}

/// Bytes of the device-readable part each request type needs.
pub fn readable_size(kind: u8) -> Option<usize> {
    let body = match kind {
        request_type::ATTACH => size_of::<AttachBody>(),
        request_type::DETACH => size_of::<DetachBody>(),
        request_type::MAP => size_of::<MapBody>(),
        request_type::UNMAP => size_of::<UnmapBody>(),
        request_type::PROBE => size_of::<ProbeBody>(),
        _ => return None,
    };
    Some(HEAD_SIZE + body)
}

/// Little-endian field reader over one request body.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn u32(&self, offset: usize) -> u32 {
        u32::from_le_bytes(self.0[offset..offset + 4].try_into().unwrap())
    }
    fn u64(&self, offset: usize) -> u64 {
        u64::from_le_bytes(self.0[offset..offset + 8].try_into().unwrap())
    }
    fn is_zero(&self, offset: usize, len: usize) -> bool {
        self.0[offset..offset + len].iter().all(|&b| b == 0)
    }
}

/// Parses and validates the device-readable part of a request.
///
/// Checks here: known type, length, reserved fields the spec lets the device reject, flag
/// bits against `negotiated` features, and reversed ranges. Checks against the device's
/// geometry (granule, input and domain ranges) and state come later.
pub fn parse_request(readable: &[u8], negotiated: u64) -> Result<Request, RequestError> {
    let kind = *readable.first().ok_or(RequestError::Unanswerable)?;
    let needed = readable_size(kind).ok_or(RequestError::Unanswerable)?;
    if kind == request_type::PROBE && negotiated & features::PROBE == 0 {
        return Err(RequestError::Unanswerable);
    }
    if readable.len() < needed {
        return Err(RequestError::Unanswerable);
    }
    // The head's reserved bytes are ignored, as the spec requires.
    let body = Fields(&readable[HEAD_SIZE..needed]);
    match kind {
        request_type::ATTACH => parse_attach(&body, negotiated),
        request_type::DETACH => Ok(Request::Detach(Detach {
            domain: body.u32(0),
            endpoint: body.u32(4),
        })),
        request_type::MAP => parse_map(&body, negotiated),
        request_type::UNMAP => parse_unmap(&body),
        _ => Ok(Request::Probe(Probe {
            endpoint: body.u32(0),
        })),
    }
}

fn parse_attach(body: &Fields, negotiated: u64) -> Result<Request, RequestError> {
    let flags = body.u32(8);
    let mut known = 0;
    if negotiated & features::BYPASS_CONFIG != 0 {
        known |= ATTACH_F_BYPASS;
    }
    if flags & !known != 0 || !body.is_zero(12, 4) {
        return Err(Status::Inval.into());
    }
    Ok(Request::Attach(Attach {
        domain: body.u32(0),
        endpoint: body.u32(4),
        bypass: flags & ATTACH_F_BYPASS != 0,
    }))
}

fn parse_map(body: &Fields, negotiated: u64) -> Result<Request, RequestError> {
    let map = Map {
        domain: body.u32(0),
        virt_start: body.u64(4),
        virt_end: body.u64(12),
        phys_start: body.u64(20),
        flags: body.u32(28),
    };
    let mut known = MAP_F_READ | MAP_F_WRITE;
    if negotiated & features::MMIO != 0 {
        known |= MAP_F_MMIO;
    }
    if map.flags & !known != 0 || map.virt_end < map.virt_start {
        return Err(Status::Inval.into());
    }
    Ok(Request::Map(map))
}

fn parse_unmap(body: &Fields) -> Result<Request, RequestError> {
    let unmap = Unmap {
        domain: body.u32(0),
        virt_start: body.u64(4),
        virt_end: body.u64(12),
    };
    if !body.is_zero(20, 4) || unmap.virt_end < unmap.virt_start {
        return Err(Status::Inval.into());
    }
    Ok(Request::Unmap(unmap))
}

/// Encodes one RESV_MEM property.
pub fn resv_mem_property(subtype: u8, start: u64, end: u64) -> [u8; RESV_MEM_SIZE] {
    let mut bytes = [0u8; RESV_MEM_SIZE];
    bytes[0..2].copy_from_slice(&PROBE_T_RESV_MEM.to_le_bytes());
    bytes[2..4].copy_from_slice(&((RESV_MEM_SIZE - PROPERTY_HEAD_SIZE) as u16).to_le_bytes());
    bytes[4] = subtype;
    bytes[8..16].copy_from_slice(&start.to_le_bytes());
    bytes[16..24].copy_from_slice(&end.to_le_bytes());
    bytes
}

/// One eventq fault record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultRecord {
    pub reason: u8,
    pub flags: u32,
    pub endpoint: u32,
    pub address: u64,
    /// The faulting transaction's PASID (table-mode domains only): written in the reserved
    /// word with flag PASID, as nestor's extension says.
    pub pasid: Option<u32>,
    /// A page request's group (reason PAGE_REQUEST): only the extension's 32-byte record
    /// carries it.
    pub group: Option<u32>,
}

impl FaultRecord {
    pub fn to_bytes(&self) -> [u8; FAULT_RECORD_SIZE] {
        let mut bytes = [0u8; FAULT_RECORD_SIZE];
        let flags = match self.pasid {
            Some(_) => self.flags | FAULT_F_PASID,
            None => self.flags & !FAULT_F_PASID,
        };
        bytes[0] = self.reason;
        bytes[4..8].copy_from_slice(&flags.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.endpoint.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.pasid.unwrap_or(0).to_le_bytes());
        bytes[16..24].copy_from_slice(&self.address.to_le_bytes());
        bytes
    }

    /// The extension's 32-byte record (PAGE_REQUEST negotiated): the same fields, the PASID
    /// at offset 12, a page request's group at offset 24.
    pub fn to_nested_bytes(&self) -> [u8; NESTED_FAULT_RECORD_SIZE] {
        let mut bytes = [0u8; NESTED_FAULT_RECORD_SIZE];
        bytes[..FAULT_RECORD_SIZE].copy_from_slice(&self.to_bytes());
        bytes[24..28].copy_from_slice(&self.group.unwrap_or(0).to_le_bytes());
        bytes
    }

    pub fn from_bytes(bytes: &[u8; FAULT_RECORD_SIZE]) -> Self {
        let fields = Fields(bytes);
        let flags = fields.u32(4);
        FaultRecord {
            reason: bytes[0],
            flags: flags & !FAULT_F_PASID,
            endpoint: fields.u32(8),
            address: fields.u64(16),
            pasid: (flags & FAULT_F_PASID != 0).then(|| fields.u32(12)),
            group: None,
        }
    }
}

/// The config space contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigSpace {
    pub page_size_mask: u64,
    pub input_start: u64,
    pub input_end: u64,
    pub domain_start: u32,
    pub domain_end: u32,
    pub probe_size: u32,
    pub bypass: u8,
}

impl ConfigSpace {
    pub fn to_bytes(&self) -> [u8; CONFIG_SIZE] {
        let mut bytes = [0u8; CONFIG_SIZE];
        bytes[0..8].copy_from_slice(&self.page_size_mask.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.input_start.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.input_end.to_le_bytes());
        bytes[24..28].copy_from_slice(&self.domain_start.to_le_bytes());
        bytes[28..32].copy_from_slice(&self.domain_end.to_le_bytes());
        bytes[32..36].copy_from_slice(&self.probe_size.to_le_bytes());
        bytes[CONFIG_BYPASS_OFFSET] = self.bypass;
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: u64 = features::BYPASS_CONFIG | features::MMIO | features::PROBE;

    fn attach_bytes(flags: u32, reserved: u8) -> Vec<u8> {
        let mut b = vec![request_type::ATTACH, 0xff, 0xff, 0xff];
        b.extend_from_slice(&7u32.to_le_bytes());
        b.extend_from_slice(&8u32.to_le_bytes());
        b.extend_from_slice(&flags.to_le_bytes());
        b.extend_from_slice(&[reserved, 0, 0, 0]);
        b
    }

    fn map_bytes(start: u64, end: u64, flags: u32) -> Vec<u8> {
        let mut b = vec![request_type::MAP, 0, 0, 0];
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&start.to_le_bytes());
        b.extend_from_slice(&end.to_le_bytes());
        b.extend_from_slice(&0x5000u64.to_le_bytes());
        b.extend_from_slice(&flags.to_le_bytes());
        b
    }

    #[test]
    fn attach_decodes_little_endian_and_ignores_head_reserved() {
        let req = parse_request(&attach_bytes(ATTACH_F_BYPASS, 0), ALL).unwrap();
        assert_eq!(
            req,
            Request::Attach(Attach {
                domain: 7,
                endpoint: 8,
                bypass: true
            })
        );
    }

    #[test]
    fn attach_with_reserved_set_or_unknown_flag_is_inval() {
        let inval = Err(RequestError::Status(Status::Inval));
        assert_eq!(parse_request(&attach_bytes(0, 1), ALL), inval);
        assert_eq!(parse_request(&attach_bytes(2, 0), ALL), inval);
        assert_eq!(parse_request(&attach_bytes(1 << 31, 0), ALL), inval);
        // The bypass flag is unknown when BYPASS_CONFIG was not negotiated.
        assert_eq!(parse_request(&attach_bytes(ATTACH_F_BYPASS, 0), 0), inval);
    }

    #[test]
    fn map_flags_need_their_feature() {
        let inval = Err(RequestError::Status(Status::Inval));
        assert!(parse_request(&map_bytes(0, 0xfff, MAP_F_MMIO), ALL).is_ok());
        assert_eq!(parse_request(&map_bytes(0, 0xfff, MAP_F_MMIO), 0), inval);
        assert_eq!(parse_request(&map_bytes(0, 0xfff, 1 << 3), ALL), inval);
    }

    #[test]
    fn reversed_map_range_is_inval() {
        assert_eq!(
            parse_request(&map_bytes(0x2000, 0x1fff, MAP_F_READ), ALL),
            Err(RequestError::Status(Status::Inval))
        );
    }

    #[test]
    fn short_or_unknown_requests_are_unanswerable() {
        let full = map_bytes(0, 0xfff, MAP_F_READ);
        for len in 0..full.len() {
            assert_eq!(
                parse_request(&full[..len], ALL),
                Err(RequestError::Unanswerable),
                "length {len}"
            );
        }
        for kind in [0u8, 6, 0x7f, 0xff] {
            let mut bytes = full.clone();
            bytes[0] = kind;
            assert_eq!(parse_request(&bytes, ALL), Err(RequestError::Unanswerable));
        }
    }

    #[test]
    fn probe_is_unknown_without_the_feature() {
        let mut bytes = vec![request_type::PROBE, 0, 0, 0];
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(&[0xaa; 64]); // reserved: ignored
        assert_eq!(
            parse_request(&bytes, ALL),
            Ok(Request::Probe(Probe { endpoint: 3 }))
        );
        assert_eq!(parse_request(&bytes, 0), Err(RequestError::Unanswerable));
    }

    #[test]
    fn resv_mem_property_layout() {
        let p = resv_mem_property(RESV_MEM_T_MSI, 0xfee0_0000, 0xfeef_ffff);
        assert_eq!(&p[0..4], &[1, 0, 20, 0]);
        assert_eq!(p[4], 1);
        assert_eq!(&p[8..16], &0xfee0_0000u64.to_le_bytes());
        assert_eq!(&p[16..24], &0xfeef_ffffu64.to_le_bytes());
    }

    #[test]
    fn fault_record_round_trips() {
        let r = FaultRecord {
            reason: FAULT_R_MAPPING,
            flags: FAULT_F_WRITE | FAULT_F_ADDRESS,
            endpoint: 0x18,
            address: 0xdead_b000,
            pasid: None,
            group: None,
        };
        let bytes = r.to_bytes();
        assert_eq!(&bytes[1..4], &[0, 0, 0]);
        assert_eq!(&bytes[12..16], &[0, 0, 0, 0]);
        assert_eq!(FaultRecord::from_bytes(&bytes), r);
    }

    #[test]
    fn a_fault_record_with_a_pasid_carries_it_at_offset_12() {
        let r = FaultRecord {
            reason: 4,
            flags: FAULT_F_READ | FAULT_F_ADDRESS,
            endpoint: 0x18,
            address: 0x7000,
            pasid: Some(0x12345),
            group: None,
        };
        let bytes = r.to_bytes();
        assert_eq!(
            u32::from_le_bytes(bytes[4..8].try_into().unwrap()),
            FAULT_F_READ | FAULT_F_ADDRESS | FAULT_F_PASID
        );
        assert_eq!(&bytes[12..16], &0x12345u32.to_le_bytes());
        assert_eq!(FaultRecord::from_bytes(&bytes), r);
    }
}

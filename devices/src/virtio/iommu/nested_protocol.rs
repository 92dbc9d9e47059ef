//! The wire format of nestor's extension for guest-owned stage 1 (docs/virtio-iommu-nested.md):
//! ATTACH_TABLE, INVALIDATE and PAGE_RESP requests, the 32-byte eventq record and the
//! `NESTOR_SMMUV3` PROBE property, each little-endian with its size checked at compile time,
//! and the one place where their bytes become validated values.
//!
//! What an INVALIDATE asks for is decoded into [`InvalidateCommand`]s, one SMMUv3 command
//! each, which the back-end encodes for its SMMU (the kernel's vIOMMU, or the model).

use std::mem::size_of;

use super::protocol::{ProbePropertyHead, RequestError, Status, HEAD_SIZE};
use crate::host_iommu::nested::{check_vste, VSTE0_ALLOWED, VSTE1_ALLOWED};

/// Feature bits of the extension (section 2).
pub mod features {
    /// ATTACH_TABLE and INVALIDATE, and the `NESTOR_SMMUV3` PROBE property.
    pub const ATTACH_TABLE: u64 = 1 << 20;
    /// Page-request records on the eventq, and PAGE_RESP.
    pub const PAGE_REQUEST: u64 = 1 << 21;
}

/// Request types, as every draft numbers them.
pub mod request_type {
    pub const ATTACH_TABLE: u8 = 6;
    pub const INVALIDATE: u8 = 7;
    pub const PAGE_RESP: u8 = 8;
}

/// ATTACH_TABLE body (after the head): 128 bytes with head and tail.
#[repr(C, packed)]
pub struct AttachTableBody {
    pub domain: u32,
    pub endpoint: u32,
    pub format: u8,
    pub reserved0: [u8; 3],
    pub ste0: u64,
    pub ste1: u64,
    pub reserved1: [u8; 92],
}

/// INVALIDATE body: 64 bytes with head and tail.
#[repr(C, packed)]
pub struct InvalidateBody {
    pub scope: u8,
    pub caches: u8,
    pub flags: u16,
    pub domain: u32,
    pub pasid: u32,
    pub asid: u16,
    pub reserved0: [u8; 6],
    pub address: u64,
    pub nr_pages: u64,
    pub page_shift: u8,
    pub reserved1: [u8; 19],
}

/// PAGE_RESP body: 32 bytes with head and tail.
#[repr(C, packed)]
pub struct PageRespBody {
    pub endpoint: u32,
    pub flags: u32,
    pub pasid: u32,
    pub grpid: u32,
    pub code: u16,
    pub reserved: [u8; 6],
}

/// The eventq record once PAGE_REQUEST is negotiated.
#[repr(C, packed)]
pub struct NestedFaultRecordLayout {
    pub reason: u8,
    pub reserved: [u8; 3],
    pub flags: u32,
    pub endpoint: u32,
    pub pasid: u32,
    pub address: u64,
    pub grpid: u32,
    pub reserved1: u32,
}

/// The `NESTOR_SMMUV3` PROBE property.
#[repr(C, packed)]
pub struct Smmuv3PropertyLayout {
    pub head: ProbePropertyHead,
    pub reserved: [u8; 4],
    pub idr0: u64,
    pub idr1: u64,
    pub reserved1: u64,
    pub idr3: u64,
    pub reserved2: u64,
    pub idr5: u64,
}

pub const NESTED_FAULT_RECORD_SIZE: usize = size_of::<NestedFaultRecordLayout>();
pub const SMMUV3_PROPERTY_SIZE: usize = size_of::<Smmuv3PropertyLayout>();

const _: () = assert!(HEAD_SIZE + size_of::<AttachTableBody>() + 4 == 128);
const _: () = assert!(HEAD_SIZE + size_of::<InvalidateBody>() + 4 == 64);
const _: () = assert!(HEAD_SIZE + size_of::<PageRespBody>() + 4 == 32);
const _: () = assert!(NESTED_FAULT_RECORD_SIZE == 32);
const _: () = assert!(SMMUV3_PROPERTY_SIZE == 56);

pub const ATTACH_FORMAT_ARM_SMMUV3: u8 = 1;
pub const PROBE_T_NESTOR_SMMUV3: u16 = 0x800;

/// Fault reasons beyond the standard's, for table-mode domains (section 4).
pub mod fault_reason {
    pub const BAD_CONFIG: u8 = 3;
    pub const TRANSLATION: u8 = 4;
    pub const ADDRESS_SIZE: u8 = 5;
    pub const ACCESS: u8 = 6;
    pub const PERMISSION: u8 = 7;
    pub const PAGE_REQUEST: u8 = 0x80;
}

pub const FAULT_F_EXEC: u32 = 1 << 2;
pub const FAULT_F_PRIV: u32 = 1 << 3;
pub use super::protocol::FAULT_F_PASID;
pub const FAULT_F_LAST_PAGE: u32 = 1 << 10;

/// The two STE dwords an ATTACH_TABLE hands over, checked against what the kernel accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtualSte {
    pub ste0: u64,
    pub ste1: u64,
}

/// What a [`VirtualSte`] makes of the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SteMode {
    /// Every access faults.
    Abort,
    /// Stage 1 bypassed: guest-physical addresses.
    Bypass,
    /// Stage 1 from the CD table at `context_ptr` (guest-physical).
    Translate {
        context_ptr: u64,
        /// S1Fmt: 0 linear, 1 two-level with 4 KiB leaf tables, 2 with 64 KiB.
        s1fmt: u8,
        /// S1CDMax: log2 of the number of CDs (0: one, no PASID).
        s1cdmax: u8,
    },
}

const STE_CONFIG_BYPASS: u64 = 0b100;
const STE_CONFIG_S1_TRANSLATE: u64 = 0b101;

impl VirtualSte {
    /// Checks the words as the kernel checks a nested HWPT's (a Config it takes, EATS 0 or
    /// 1), and more strictly where the extension says so: the guest-owned fields only,
    /// even with V clear, and no reserved S1Fmt.
    pub fn new(ste0: u64, ste1: u64) -> Result<Self, Status> {
        if ste0 & !VSTE0_ALLOWED != 0 || ste1 & !VSTE1_ALLOWED != 0 {
            return Err(Status::Inval);
        }
        check_vste(0, [ste0, ste1]).map_err(|_| Status::Inval)?;
        let ste = Self { ste0, ste1 };
        if matches!(ste.mode(), SteMode::Translate { s1fmt: 3, .. }) {
            return Err(Status::Inval);
        }
        Ok(ste)
    }

    pub fn mode(&self) -> SteMode {
        if self.ste0 & 1 == 0 {
            return SteMode::Abort;
        }
        match (self.ste0 >> 1) & 0b111 {
            STE_CONFIG_BYPASS => SteMode::Bypass,
            STE_CONFIG_S1_TRANSLATE => SteMode::Translate {
                context_ptr: self.ste0 & 0x000f_ffff_ffff_ffc0,
                s1fmt: ((self.ste0 >> 4) & 0b11) as u8,
                s1cdmax: (self.ste0 >> 59) as u8,
            },
            _ => SteMode::Abort,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachTable {
    pub domain: u32,
    pub endpoint: u32,
    pub ste: VirtualSte,
}

/// A range of stage-1 pages: `nr_pages` pages of `1 << page_shift` bytes from `address`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRange {
    pub address: u64,
    pub nr_pages: u64,
    pub page_shift: u8,
    /// Only leaf entries changed (walk caches may stay).
    pub leaf: bool,
}

/// One SMMUv3 command, for every endpoint of the domain (section 3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidateCommand {
    /// CFGI_CD: the CD of SubstreamID `pasid`.
    CfgiCd { pasid: u32, leaf: bool },
    /// CFGI_CD_ALL.
    CfgiCdAll,
    /// TLBI_NH_ALL.
    TlbiNhAll,
    /// TLBI_NH_ASID.
    TlbiNhAsid { asid: u16 },
    /// TLBI_NH_VA.
    TlbiNhVa { asid: u16, range: PageRange },
    /// TLBI_NH_VAA: the range, whatever the ASID.
    TlbiNhVaa { range: PageRange },
    /// ATC_INV: the device's ATS cache, for `pasid` if given, for `range` or everything.
    AtcInv {
        pasid: Option<u32>,
        range: Option<PageRange>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalidate {
    pub domain: u32,
    /// In the order CD, TLB, device TLB; at least one.
    pub commands: Vec<InvalidateCommand>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageRespCode {
    Success,
    Invalid,
    Failure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageResp {
    pub endpoint: u32,
    pub pasid: Option<u32>,
    pub grpid: u32,
    pub code: PageRespCode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NestedRequest {
    AttachTable(AttachTable),
    Invalidate(Invalidate),
    PageResp(PageResp),
}

/// Bytes of the device-readable part (head and body) of an extension request type.
pub fn readable_size(kind: u8) -> Option<usize> {
    let body = match kind {
        request_type::ATTACH_TABLE => size_of::<AttachTableBody>(),
        request_type::INVALIDATE => size_of::<InvalidateBody>(),
        request_type::PAGE_RESP => size_of::<PageRespBody>(),
        _ => return None,
    };
    Some(HEAD_SIZE + body)
}

/// Whether `kind` is an extension request the negotiated features allow.
pub fn is_negotiated(kind: u8, negotiated: u64) -> bool {
    match kind {
        request_type::ATTACH_TABLE | request_type::INVALIDATE => {
            negotiated & features::ATTACH_TABLE != 0
        }
        request_type::PAGE_RESP => negotiated & features::PAGE_REQUEST != 0,
        _ => false,
    }
}

/// Little-endian fields of a body.
struct Body<'a>(&'a [u8]);

impl Body<'_> {
    fn u8(&self, offset: usize) -> u8 {
        self.0[offset]
    }
    fn u16(&self, offset: usize) -> u16 {
        u16::from_le_bytes([self.0[offset], self.0[offset + 1]])
    }
    fn u32(&self, offset: usize) -> u32 {
        u32::from_le_bytes(self.0[offset..offset + 4].try_into().unwrap_or_default())
    }
    fn u64(&self, offset: usize) -> u64 {
        u64::from_le_bytes(self.0[offset..offset + 8].try_into().unwrap_or_default())
    }
    fn is_zero(&self, offset: usize, len: usize) -> bool {
        self.0[offset..offset + len].iter().all(|&b| b == 0)
    }
}

/// Parses the device-readable part of an extension request whose type `is_negotiated` and
/// whose length the caller checked against [`readable_size`].
pub fn parse_nested_request(readable: &[u8]) -> Result<NestedRequest, RequestError> {
    let kind = *readable.first().ok_or(RequestError::Unanswerable)?;
    let needed = readable_size(kind).ok_or(RequestError::Unanswerable)?;
    if readable.len() < needed {
        return Err(RequestError::Unanswerable);
    }
    let body = Body(&readable[HEAD_SIZE..needed]);
    match kind {
        request_type::ATTACH_TABLE => parse_attach_table(&body),
        request_type::INVALIDATE => parse_invalidate(&body),
        _ => parse_page_resp(&body),
    }
}

fn parse_attach_table(body: &Body) -> Result<NestedRequest, RequestError> {
    if body.u8(8) != ATTACH_FORMAT_ARM_SMMUV3 || !body.is_zero(9, 3) || !body.is_zero(28, 92) {
        return Err(Status::Inval.into());
    }
    let ste = VirtualSte::new(body.u64(12), body.u64(20))?;
    Ok(NestedRequest::AttachTable(AttachTable {
        domain: body.u32(0),
        endpoint: body.u32(4),
        ste,
    }))
}

/// INVALIDATE's `scope`.
pub mod scope {
    pub const DOMAIN: u8 = 1;
    pub const PASID: u8 = 2;
    pub const ADDRESS: u8 = 3;
}

/// INVALIDATE's `caches`.
pub mod caches {
    pub const CD: u8 = 1 << 0;
    pub const TLB: u8 = 1 << 1;
    pub const DEVICE_TLB: u8 = 1 << 2;
    pub const ALL: u8 = CD | TLB | DEVICE_TLB;
}

/// INVALIDATE's `flags`.
pub mod invalidate_flags {
    pub const LEAF: u16 = 1 << 0;
    pub const PASID: u16 = 1 << 1;
    pub const ASID: u16 = 1 << 2;
    pub const ALL_ASIDS: u16 = 1 << 3;
    pub const ALL: u16 = LEAF | PASID | ASID | ALL_ASIDS;
}

/// The decoded INVALIDATE fields, before they become commands.
struct InvalidateFields {
    scope: u8,
    flags: u16,
    pasid: u32,
    asid: u16,
    range: PageRange,
}

impl InvalidateFields {
    fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }

    /// Flags other than LEAF and those in `allowed` make the request invalid.
    fn only(&self, allowed: u16) -> Result<(), Status> {
        if self.flags & !(allowed | invalidate_flags::LEAF) != 0 {
            return Err(Status::Inval);
        }
        Ok(())
    }

    /// The range of an ADDRESS-scope request: whole pages of a granule the SMMU has, not
    /// wrapping.
    fn checked_range(&self) -> Result<PageRange, Status> {
        let r = self.range;
        if ![12, 14, 16].contains(&r.page_shift) || r.nr_pages == 0 {
            return Err(Status::Inval);
        }
        if r.address & ((1u64 << r.page_shift) - 1) != 0 {
            return Err(Status::Inval);
        }
        let bytes = r
            .nr_pages
            .checked_mul(1u64 << r.page_shift)
            .ok_or(Status::Range)?;
        r.address.checked_add(bytes - 1).ok_or(Status::Range)?;
        Ok(r)
    }

    fn cd_command(&self) -> Result<InvalidateCommand, Status> {
        match self.scope {
            scope::PASID => {
                self.only(invalidate_flags::PASID)?;
                if !self.has(invalidate_flags::PASID) {
                    return Err(Status::Inval);
                }
                Ok(InvalidateCommand::CfgiCd {
                    pasid: self.pasid,
                    leaf: self.has(invalidate_flags::LEAF),
                })
            }
            scope::DOMAIN => {
                self.only(0)?;
                Ok(InvalidateCommand::CfgiCdAll)
            }
            _ => Err(Status::Inval),
        }
    }

    fn tlb_command(&self) -> Result<InvalidateCommand, Status> {
        match self.scope {
            scope::DOMAIN => {
                self.only(invalidate_flags::ASID)?;
                Ok(if self.has(invalidate_flags::ASID) {
                    InvalidateCommand::TlbiNhAsid { asid: self.asid }
                } else {
                    InvalidateCommand::TlbiNhAll
                })
            }
            scope::ADDRESS => {
                self.only(invalidate_flags::ASID | invalidate_flags::ALL_ASIDS)?;
                let range = self.checked_range()?;
                match (
                    self.has(invalidate_flags::ASID),
                    self.has(invalidate_flags::ALL_ASIDS),
                ) {
                    (true, false) => Ok(InvalidateCommand::TlbiNhVa {
                        asid: self.asid,
                        range,
                    }),
                    (false, true) => Ok(InvalidateCommand::TlbiNhVaa { range }),
                    _ => Err(Status::Inval),
                }
            }
            _ => Err(Status::Inval),
        }
    }

    fn device_tlb_command(&self) -> Result<InvalidateCommand, Status> {
        self.only(invalidate_flags::PASID)?;
        let pasid = self.has(invalidate_flags::PASID).then_some(self.pasid);
        match self.scope {
            scope::PASID => Ok(InvalidateCommand::AtcInv { pasid, range: None }),
            scope::ADDRESS => Ok(InvalidateCommand::AtcInv {
                pasid,
                range: Some(self.checked_range()?),
            }),
            _ => Err(Status::Inval),
        }
    }
}

fn parse_invalidate(body: &Body) -> Result<NestedRequest, RequestError> {
    let fields = InvalidateFields {
        scope: body.u8(0),
        flags: body.u16(2),
        pasid: body.u32(8),
        asid: body.u16(12),
        range: PageRange {
            address: body.u64(20),
            nr_pages: body.u64(28),
            page_shift: body.u8(36),
            leaf: body.u16(2) & invalidate_flags::LEAF != 0,
        },
    };
    let wanted = body.u8(1);
    if wanted == 0
        || wanted & !caches::ALL != 0
        || fields.flags & !invalidate_flags::ALL != 0
        || !body.is_zero(14, 6)
        || !body.is_zero(37, 19)
    {
        return Err(Status::Inval.into());
    }
    let mut commands = Vec::with_capacity(3);
    if wanted & caches::CD != 0 {
        commands.push(fields.cd_command()?);
    }
    if wanted & caches::TLB != 0 {
        commands.push(fields.tlb_command()?);
    }
    if wanted & caches::DEVICE_TLB != 0 {
        commands.push(fields.device_tlb_command()?);
    }
    Ok(NestedRequest::Invalidate(Invalidate {
        domain: body.u32(4),
        commands,
    }))
}

const PAGE_RESP_F_PASID: u32 = 1 << 0;

fn parse_page_resp(body: &Body) -> Result<NestedRequest, RequestError> {
    let flags = body.u32(4);
    if flags & !PAGE_RESP_F_PASID != 0 || !body.is_zero(18, 6) {
        return Err(Status::Inval.into());
    }
    let code = match body.u16(16) {
        0 => PageRespCode::Success,
        1 => PageRespCode::Invalid,
        2 => PageRespCode::Failure,
        _ => return Err(Status::Inval.into()),
    };
    Ok(NestedRequest::PageResp(PageResp {
        endpoint: body.u32(0),
        pasid: (flags & PAGE_RESP_F_PASID != 0).then(|| body.u32(8)),
        grpid: body.u32(12),
        code,
    }))
}

/// One 32-byte eventq record (section 4): a fault, or one page of a page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NestedFaultRecord {
    pub reason: u8,
    pub flags: u32,
    pub endpoint: u32,
    pub pasid: u32,
    pub address: u64,
    pub grpid: u32,
}

impl NestedFaultRecord {
    pub fn to_bytes(&self) -> [u8; NESTED_FAULT_RECORD_SIZE] {
        let mut bytes = [0u8; NESTED_FAULT_RECORD_SIZE];
        bytes[0] = self.reason;
        bytes[4..8].copy_from_slice(&self.flags.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.endpoint.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.pasid.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.address.to_le_bytes());
        bytes[24..28].copy_from_slice(&self.grpid.to_le_bytes());
        bytes
    }
}

/// The SMMU's ID registers as the `NESTOR_SMMUV3` property reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SmmuIdRegisters {
    pub idr0: u32,
    pub idr1: u32,
    pub idr3: u32,
    pub idr5: u32,
}

/// Fields of each IDR that iommufd's GET_HW_INFO vouches for; the rest reads 0.
pub mod idr_mask {
    /// ST_LEVEL [28:27], TERM_MODEL [26], STALL_MODEL [25:24], TTENDIAN [22:21], CD2L [19],
    /// ASID16 [12], TTF [3:2].
    pub const IDR0: u32 = (0b11 << 27)
        | (1 << 26)
        | (0b11 << 24)
        | (0b11 << 21)
        | (1 << 19)
        | (1 << 12)
        | (0b11 << 2);
    /// SSIDSIZE [10:6], SIDSIZE [5:0].
    pub const IDR1: u32 = (0x1f << 6) | 0x3f;
    /// BBML [12:11], RIL [10].
    pub const IDR3: u32 = (0b11 << 11) | (1 << 10);
    /// VAX [11:10], GRAN64K [6], GRAN16K [5], GRAN4K [4].
    pub const IDR5: u32 = (0b11 << 10) | (1 << 6) | (1 << 5) | (1 << 4);
}

impl SmmuIdRegisters {
    pub fn property(&self) -> [u8; SMMUV3_PROPERTY_SIZE] {
        let mut bytes = [0u8; SMMUV3_PROPERTY_SIZE];
        bytes[0..2].copy_from_slice(&PROBE_T_NESTOR_SMMUV3.to_le_bytes());
        bytes[2..4].copy_from_slice(&((SMMUV3_PROPERTY_SIZE - 4) as u16).to_le_bytes());
        let words = [
            (8, self.idr0 & idr_mask::IDR0),
            (16, self.idr1 & idr_mask::IDR1),
            (32, self.idr3 & idr_mask::IDR3),
            (48, self.idr5 & idr_mask::IDR5),
        ];
        for (offset, value) in words {
            bytes[offset..offset + 8].copy_from_slice(&u64::from(value).to_le_bytes());
        }
        bytes
    }
}

//! Nested translation on a host IOMMU: the guest owns stage 1 (ARM SMMUv3 formats: STEs'
//! stage-1 half, CD tables and VMSAv8-64 tables in guest memory), the host owns stage 2.
//!
//! [`NestedHostIommu`] is what the virtio-iommu's table-mode requests and the fault relay
//! need from such a host: install a guest stage-1 configuration for an endpoint (a vSTE,
//! as iommufd's nested HWPT takes it), remove it, forward the invalidation commands the
//! kernel forwards, read unrecoverable events (as from a vEVENTQ) and page requests (as
//! from a fault queue), and answer page requests. The software SMMUv3 model implements it
//! on hosts without an SMMUv3; an iommufd back-end implements it over a vIOMMU.

use std::fmt::Debug;
use std::io;
use std::os::fd::BorrowedFd;

pub use super::smmuv3::wire::{Command, EventRecord};
pub use super::smmuv3::{Access, Fault, Translation};

/// The STE dword-0 bits a guest may set: V, Config, S1Fmt, S1ContextPtr, S1CDMax.
pub const VSTE0_ALLOWED: u64 = 0xf80f_ffff_ffff_ffff;
/// The STE dword-1 bits a guest may set: S1DSS, S1CIR, S1COR, S1CSH, S1STALLD, EATS.
pub const VSTE1_ALLOWED: u64 = 0x3800_00ff;

/// An STE whose stage 1 bypasses (V, Config = 0b100): the device reaches what stage 2
/// maps, all of guest RAM at IPA = GPA.
pub const BYPASS_VSTE: [u64; 2] = [1 | 0b100 << 1, 0];
/// An STE that aborts every transaction (V, Config = 0b000).
pub const ABORT_VSTE: [u64; 2] = [1, 0];

/// An unrecoverable event for the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NestedEvent {
    /// The record, StreamID already the guest's.
    pub record: EventRecord,
    /// Events lost (the queue overflowed) between the previous one read and this one.
    pub lost_before: u32,
}

/// Permissions a page request asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PagePermissions {
    pub read: bool,
    pub write: bool,
    pub execute: bool,
    pub privileged: bool,
}

/// A recoverable fault waiting for the guest's answer: a stalled transaction or a PCIe
/// page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// The guest's StreamID for the endpoint.
    pub stream: u32,
    pub pasid: Option<u32>,
    /// PRG index, or the stall tag.
    pub group: u32,
    pub permissions: PagePermissions,
    pub address: u64,
    /// The last request of its group: the one to answer.
    pub last: bool,
    /// Names the group in [`NestedHostIommu::page_response`].
    pub cookie: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageResponseCode {
    /// The tables now map the page: retry.
    Success,
    /// Give up: the device's access fails.
    Invalid,
}

/// The descriptors the fault relay polls: each is readable when records may be waiting.
#[derive(Debug, Clone, Copy)]
pub struct FaultNotifiers<'a> {
    pub events: BorrowedFd<'a>,
    pub page_requests: BorrowedFd<'a>,
}

#[derive(Debug, thiserror::Error)]
pub enum NestedError {
    #[error("stream {stream:#x}: the host refuses the guest's STE: {reason}")]
    IllegalSte { stream: u32, reason: &'static str },
    #[error("no page request is waiting under cookie {0}")]
    UnknownCookie(u32),
    #[error("host IOMMU: {0}")]
    Io(#[from] io::Error),
}

/// Invalidation stopped at a command the host does not accept (or could not execute);
/// the ones before it took effect.
#[derive(Debug, thiserror::Error)]
#[error("SMMU invalidation stopped at command {done} (opcode {opcode:#04x})")]
pub struct InvalidateError {
    /// Commands executed.
    pub done: usize,
    pub opcode: u8,
}

/// Checks a guest STE's first two dwords the way the host kernel does before it accepts
/// them for a nested configuration.
pub fn check_vste(stream: u32, vste: [u64; 2]) -> Result<(), NestedError> {
    let illegal = |reason| Err(NestedError::IllegalSte { stream, reason });
    if vste[0] & 1 == 0 {
        return Ok(());
    }
    if vste[0] & !VSTE0_ALLOWED != 0 || vste[1] & !VSTE1_ALLOWED != 0 {
        return illegal("bits outside the guest-owned fields");
    }
    match vste[0] >> 1 & 7 {
        0b000 | 0b100 | 0b101 => {}
        _ => return illegal("Config is neither abort, bypass nor stage-1 translate"),
    }
    if vste[1] >> 28 & 3 > 1 {
        return illegal("EATS is neither abort nor translate");
    }
    Ok(())
}

pub trait NestedHostIommu: Debug + Send + Sync {
    /// SMMU_IDR0..IDR5 of the host's SMMU, to describe the guest-visible one.
    fn hw_info(&self) -> [u32; 6];

    /// Whether the host IOMMU translates this stream's DMA itself (a passed-through
    /// device): none of its accesses pass nestor's DMA seam, so outside table mode its
    /// route (bypass or abort) must be installed here too.
    fn translates_in_hardware(&self, _stream: u32) -> bool {
        false
    }

    /// Installs the guest's STE dwords 0 and 1 for the guest StreamID `stream`, replacing
    /// what was installed (stalled transactions and unanswered page requests of the
    /// stream are answered as failed). V = 0 installs an abort configuration.
    fn install_ste(&self, stream: u32, vste: [u64; 2]) -> Result<(), NestedError>;

    /// Removes the stream's configuration: its transactions abort.
    fn remove_ste(&self, stream: u32) -> Result<(), NestedError>;

    /// Executes, in order, invalidations the guest issued: TLBI_NH_ALL, TLBI_NH_ASID,
    /// TLBI_NH_VA, TLBI_NH_VAA, TLBI_NSNH_ALL, ATC_INV, CFGI_CD, CFGI_CD_ALL (StreamIDs
    /// the guest's; VMIDs are replaced by the host's). Anything else stops it.
    fn invalidate(&self, commands: &[Command]) -> Result<(), InvalidateError>;

    fn fault_notifiers(&self) -> FaultNotifiers<'_>;

    /// Up to `max` unrecoverable events, oldest first.
    fn read_events(&self, max: usize) -> Result<Vec<NestedEvent>, NestedError>;

    /// Up to `max` page requests, oldest first (a group may span two reads: answer the
    /// request marked `last`).
    fn read_page_requests(&self, max: usize) -> Result<Vec<PageRequest>, NestedError>;

    /// Answers the page request group `cookie` names (once).
    fn page_response(&self, cookie: u32, code: PageResponseCode) -> Result<(), NestedError>;
}

/// A nested back-end that also translates for the devices nestor emulates (the software
/// model does; a hardware SMMU translates only its own devices' DMA).
pub trait NestedTranslator: NestedHostIommu {
    /// Translates one transaction of the guest StreamID `stream`; a fault is queued as
    /// an event (see [`NestedHostIommu::read_events`]) before this returns.
    fn translate(
        &self,
        stream: u32,
        pasid: Option<u32>,
        address: u64,
        access: Access,
    ) -> Result<Translation, Fault>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vste_check_matches_the_kernels() {
        assert!(
            check_vste(1, [0, u64::MAX]).is_ok(),
            "V=0: nothing else matters"
        );
        assert!(check_vste(1, [1 | 0b101 << 1 | 0x1000 | 3 << 59, 1 | 1 << 28]).is_ok());
        assert!(check_vste(1, [1 | 0b100 << 1, 0]).is_ok());
        assert!(
            check_vste(1, [1 | 0b111 << 1, 0]).is_err(),
            "nested is the host's"
        );
        assert!(check_vste(1, [1 | 0b101 << 1 | 1 << 52, 0]).is_err());
        assert!(
            check_vste(1, [1 | 0b101 << 1, 1 << 19]).is_err(),
            "MEV is the host's"
        );
        assert!(
            check_vste(1, [1 | 0b101 << 1, 2 << 28]).is_err(),
            "split-stage ATS"
        );
    }
}

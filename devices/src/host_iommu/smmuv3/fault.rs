//! How a failed translation ends, what event it records, and the internal description of
//! the failure from which both are decided.

use super::wire::{event_id, EventRecord, FaultClass};

/// How the transaction that faulted is ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// The device sees an abort.
    Abort,
    /// Completes as if it succeeded: reads return zero, writes are dropped (CD.A = 0).
    ReadZeroWriteIgnore,
    /// Held until software answers with RESUME or STALL_TERM.
    Stalled { stag: u16 },
}

/// A translation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub termination: Termination,
    /// The event describing the fault; `None` for a stream configured to abort, which
    /// records nothing.
    pub event: Option<EventRecord>,
    /// Whether the event went to the event queue (faults on a context with CD.R = 0 or a
    /// stage 2 with S2R = 0 are not recorded; an event that met a full queue is lost).
    pub recorded: bool,
}

impl Fault {
    pub fn event_id(&self) -> Option<u8> {
        self.event.map(|e| e.id())
    }
}

/// Whether a translation-type fault stalls, is recorded, and aborts (or reads as zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultPolicy {
    pub stall: bool,
    pub record: bool,
    pub abort: bool,
}

impl FaultPolicy {
    /// CD and stream-table fetch problems: recorded, never stalled.
    pub const CONFIG: Self = Self {
        stall: false,
        record: true,
        abort: true,
    };
}

/// Dword 3 of a translation-type event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAddress {
    None,
    /// The IPA that stage 2 could not translate.
    Ipa(u64),
    /// The descriptor address whose fetch failed (F_WALK_EABT).
    Fetch(u64),
}

/// A fault with the full fault fields (F_TRANSLATION, F_ADDR_SIZE, F_ACCESS,
/// F_PERMISSION, F_WALK_EABT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkFault {
    pub id: u8,
    pub stage2: bool,
    pub class: FaultClass,
    pub address: FaultAddress,
    pub policy: FaultPolicy,
}

impl WalkFault {
    /// Only the four translation faults may stall; an external abort never does.
    pub fn stallable(&self) -> bool {
        matches!(
            self.id,
            event_id::F_TRANSLATION
                | event_id::F_ADDR_SIZE
                | event_id::F_ACCESS
                | event_id::F_PERMISSION
        )
    }
}

/// Why a translation failed, before recording and stalling are decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The STE says abort: no event.
    Silent,
    /// A configuration event (C_BAD_*, F_STE_FETCH, F_CD_FETCH, F_STREAM_DISABLED):
    /// always recorded, the transaction aborts.
    Config(EventRecord),
    Walk(WalkFault),
}

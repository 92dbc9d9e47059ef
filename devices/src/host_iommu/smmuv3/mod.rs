//! A software ARM SMMUv3: the stream table, context descriptors and VMSAv8-64 tables it
//! translates with live in guest memory, read through vm-memory and never trusted.
//!
//! - [`wire`]: the formats (STE, CD, table descriptors, commands, events, PRI entries),
//! - [`stream_table`], [`stream`], [`cd_table`], [`stage1`], [`stage2`], [`walk`]: from a
//!   StreamID to a configuration, and from an address through one or both stages,
//! - [`tlb`], [`recent`]: what is cached, and what each command invalidates
//!   ([`commands`]),
//! - [`event_queue`], [`pri_queue`], [`stall`]: what software hears of faults and page
//!   requests, and the transactions waiting for its answer,
//! - [`nested_backend`]: the model as a [`super::nested::NestedHostIommu`].
//!
//! Every walk is bounded (one read per level, four levels), every table address is
//! checked against the output size before use, and a read outside guest memory ends in
//! an event: a guest cannot make the model hang or panic.
//!
//! Not modelled: the register interface and in-memory queues (commands are executed and
//! events read through methods), ATS translation requests, hardware access-flag and dirty
//! updates, 52-bit addresses, big-endian tables, EL2 and secure streams, MEV merging.

pub mod access;
pub mod caps;
pub mod cd_table;
pub mod commands;
pub mod event_queue;
mod fast_hash;
pub mod fault;
pub mod granule;
mod memory;
pub mod nested_backend;
pub mod pri_queue;
pub mod recent;
pub mod stage1;
pub mod stage2;
pub mod stall;
mod state;
pub mod stream;
pub mod stream_table;
pub mod tlb;
mod translate;
pub mod translation;
pub mod walk;
pub mod wire;

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use vm_memory::GuestMemory;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

pub use access::{Access, AllowedAccesses};
pub use caps::{Smmuv3Caps, StallModel};
pub use commands::{DeviceEffect, IllegalCommand};
pub use fault::{Fault, Termination};
pub use nested_backend::HostStage2;
pub use pri_queue::PriResponse;
pub use stall::StallState;
pub use stream_table::{StreamTableConfig, StreamTableFormat};
pub use translate::Transaction;
pub use translation::Translation;

use fault::Failure;
use nested_backend::NestedState;
use state::State;
use wire::{Command, EventRecord, PriEntry};

/// Where the model's effects on devices go: an emulated device's IOTLB (ATC_INV), its
/// page requests (PRI_RESP) and its stalled transactions (RESUME, STALL_TERM). Called
/// after the command, with no model lock held.
pub trait DeviceNotifier: Send + Sync {
    fn notify(&self, effect: DeviceEffect);
}

pub struct Smmuv3<M> {
    memory: M,
    caps: Smmuv3Caps,
    state: Mutex<State>,
    nested: Mutex<NestedState>,
    notifier: Option<Arc<dyn DeviceNotifier>>,
    events_ready: EventFd,
    page_requests_ready: EventFd,
}

impl<M> fmt::Debug for Smmuv3<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Smmuv3")
            .field("caps", &self.caps)
            .finish_non_exhaustive()
    }
}

impl<M: GuestMemory> Smmuv3<M> {
    pub fn new(memory: M, caps: Smmuv3Caps) -> io::Result<Self> {
        Ok(Self {
            memory,
            state: Mutex::new(State::new(&caps)),
            nested: Mutex::new(NestedState::default()),
            caps,
            notifier: None,
            events_ready: EventFd::new(EFD_NONBLOCK)?,
            page_requests_ready: EventFd::new(EFD_NONBLOCK)?,
        })
    }

    pub fn with_notifier(mut self, notifier: Arc<dyn DeviceNotifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    pub fn caps(&self) -> &Smmuv3Caps {
        &self.caps
    }

    pub fn memory(&self) -> &M {
        &self.memory
    }

    // A panic under the lock leaves at worst stale caches, which commands clear; the
    // state stays usable.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// SMMU_STRTAB_BASE(_CFG): where STEs not installed directly are found. Cached STEs
    /// and CDs are dropped.
    pub fn set_stream_table(&self, table: Option<StreamTableConfig>) {
        let mut state = self.state();
        state.stream_table = table;
        state.forget_streams(|_| true);
    }

    /// Translates one transaction. A fault is recorded (and, on a stall-enabled context,
    /// the transaction stalled) before this returns.
    pub fn translate(&self, t: &Transaction) -> Result<Translation, Fault> {
        let mut state = self.state();
        if let Some(hit) = state.recent.lookup(t.sid, t.ssid, t.address, t.access) {
            return Ok(hit);
        }
        match state.translate_uncached(&self.memory, &self.caps, t) {
            Ok(translation) => {
                state.recent.insert(t.sid, t.ssid, t.address, translation);
                Ok(translation)
            }
            Err(failure) => {
                let fault = state.conclude(failure, t);
                drop(state);
                if fault.recorded {
                    let _ = self.events_ready.write(1);
                }
                if let Termination::Stalled { .. } = fault.termination {
                    let _ = self.page_requests_ready.write(1);
                }
                Err(fault)
            }
        }
    }

    /// Executes commands in order; stops at the first illegal one (CERROR_ILL) and says
    /// how many were executed before it.
    pub fn execute(&self, commands: &[Command]) -> Result<(), (usize, IllegalCommand)> {
        let mut effects = Vec::new();
        let result = {
            let mut state = self.state();
            commands.iter().enumerate().try_for_each(|(i, cmd)| {
                state
                    .execute(&self.memory, *cmd, &mut effects)
                    .map_err(|e| (i, e))
            })
        };
        self.deliver(effects);
        result
    }

    fn deliver(&self, effects: Vec<DeviceEffect>) {
        if let Some(notifier) = &self.notifier {
            for effect in effects {
                notifier.notify(effect);
            }
        }
    }

    /// The oldest event in the event queue.
    pub fn pop_event(&self) -> Option<EventRecord> {
        self.state().events.pop().map(|(_, record)| record)
    }

    /// Events dropped because the event queue was full.
    pub fn event_overflows(&self) -> u64 {
        self.state().events.overflows()
    }

    /// A device's PCIe page request arrives.
    pub fn page_request(&self, entry: PriEntry) {
        let dropped = self.state().pri.push(entry);
        match dropped {
            Ok(()) => {
                let _ = self.page_requests_ready.write(1);
            }
            Err(Some((sid, ssid, group))) => self.deliver(vec![DeviceEffect::PageResponse {
                sid,
                ssid,
                group,
                response: PriResponse::Fail,
            }]),
            Err(None) => {}
        }
    }

    /// The oldest page request in the PRI queue.
    pub fn pop_page_request(&self) -> Option<PriEntry> {
        self.state().pri.pop()
    }

    pub fn pri_overflows(&self) -> u64 {
        self.state().pri.overflows()
    }

    /// How the stalled transaction `(sid, stag)` stands; an answer (retry or terminated)
    /// is handed out once, then the tag is free.
    pub fn stall_outcome(&self, sid: u32, stag: u16) -> Option<StallState> {
        self.state().stalls.take_outcome(sid, stag)
    }

    /// Translations in the TLB (not counting the per-page cache in front of it).
    pub fn tlb_len(&self) -> usize {
        self.state().tlb.len()
    }

    /// CMD_SYNC completion writes that hit no memory.
    pub fn sync_write_failures(&self) -> u64 {
        self.state().sync_write_failures
    }
}

impl State {
    /// Records the fault's event where the configuration asks for it, stalls the
    /// transaction where it may, and says how it ends.
    fn conclude(&mut self, failure: Failure, t: &Transaction) -> Fault {
        match failure {
            Failure::Silent => Fault {
                termination: Termination::Abort,
                event: None,
                recorded: false,
            },
            Failure::Config(record) => Fault {
                termination: Termination::Abort,
                event: Some(record),
                recorded: self.events.push(record),
            },
            Failure::Walk(fault) => {
                let stag = if fault.policy.stall && fault.stallable() {
                    self.stalls.stall(t.sid, t.ssid, t.address, t.access)
                } else {
                    None
                };
                let mut record = EventRecord::new(fault.id, t.sid)
                    .with_substream(t.ssid)
                    .with_fault(
                        stag,
                        t.access.privileged,
                        t.access.instruction,
                        !t.access.write,
                        fault.stage2,
                        fault.class,
                        t.address,
                    );
                record = match fault.address {
                    fault::FaultAddress::None => record,
                    fault::FaultAddress::Ipa(ipa) => record.with_ipa(ipa),
                    fault::FaultAddress::Fetch(a) => record.with_fetch_address(a),
                };
                // Stalls must be heard of to be answered; external aborts are always
                // reported; the rest only where the CD (R) or STE (S2R) asks.
                let record_it = stag.is_some() || !fault.stallable() || fault.policy.record;
                let termination = match stag {
                    Some(stag) => Termination::Stalled { stag },
                    None if fault.policy.abort => Termination::Abort,
                    None => Termination::ReadZeroWriteIgnore,
                };
                Fault {
                    termination,
                    event: Some(record),
                    recorded: record_it && self.events.push(record),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;

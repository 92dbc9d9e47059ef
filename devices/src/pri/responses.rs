//! A device's page request groups waiting for their PRG Response.
//!
//! PRG indices are the device's (9 bits, shared by all its PASIDs). An index stays taken
//! until the IOMMU answers it, even once the device stopped waiting (its own time limit, a
//! reset): reused earlier, it could take the old group's late answer as the new one's.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// PCIe's Page Request Group Index is 9 bits.
pub const PRG_INDICES: u16 = 512;

/// How a group the device waited for ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupOutcome {
    /// The pages were made present: retry.
    Success,
    /// Invalid Request or Response Failure: give up.
    Failure,
    /// No answer within the device's limit.
    TimedOut,
    /// The device was reset while it waited.
    Abandoned,
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Waiting {
        pasid: Option<u32>,
    },
    Answered {
        success: bool,
    },
    /// Nobody waits any more; the index is free once the answer comes.
    Orphaned {
        pasid: Option<u32>,
    },
}

#[derive(Debug, Default)]
struct State {
    slots: HashMap<u16, Slot>,
    next: u16,
    /// Advanced by every reset: waits of an earlier epoch end at once.
    epoch: u64,
    /// Responses naming no group the device has outstanding (PCIe's UPRGI).
    unexpected: u64,
}

#[derive(Debug, Default)]
pub struct PageResponses {
    state: Mutex<State>,
    changed: Condvar,
}

impl PageResponses {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    // Every update is one map operation: a panic cannot leave it half done.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current epoch: a runner takes it when it starts, and its waits end as soon as
    /// a reset moves it on.
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Takes a free PRG index for a group of `pasid`; `None` while all are outstanding.
    pub fn reserve(&self, pasid: Option<u32>) -> Option<u16> {
        let mut state = self.lock();
        for _ in 0..PRG_INDICES {
            let index = state.next;
            state.next = (index + 1) % PRG_INDICES;
            if let Entry::Vacant(slot) = state.slots.entry(index) {
                slot.insert(Slot::Waiting { pasid });
                return Some(index);
            }
        }
        None
    }

    /// The IOMMU's PRG Response for group `index` of `pasid`.
    pub fn respond(&self, pasid: Option<u32>, index: u16, success: bool) {
        let mut state = self.lock();
        match state.slots.get(&index).copied() {
            Some(Slot::Waiting { pasid: p }) if p == pasid => {
                state.slots.insert(index, Slot::Answered { success });
                self.changed.notify_all();
            }
            Some(Slot::Orphaned { pasid: p }) if p == pasid => {
                state.slots.remove(&index);
            }
            _ => state.unexpected += 1,
        }
    }

    /// Waits, holding no lock but this one's, until each of `groups` is answered,
    /// `deadline` passes or the epoch moves past `epoch`; returns each group's outcome.
    /// The index of an answered group is free again; an unanswered one is orphaned.
    pub fn wait(&self, groups: &[u16], deadline: Instant, epoch: u64) -> Vec<GroupOutcome> {
        let mut state = self.lock();
        loop {
            let abandoned = state.epoch != epoch;
            let answered = groups
                .iter()
                .all(|g| matches!(state.slots.get(g), Some(Slot::Answered { .. })));
            let now = Instant::now();
            if answered || abandoned || now >= deadline {
                let unanswered = if abandoned {
                    GroupOutcome::Abandoned
                } else {
                    GroupOutcome::TimedOut
                };
                return groups
                    .iter()
                    .map(|g| match state.slots.get(g).copied() {
                        Some(Slot::Answered { success }) => {
                            state.slots.remove(g);
                            if success {
                                GroupOutcome::Success
                            } else {
                                GroupOutcome::Failure
                            }
                        }
                        Some(Slot::Waiting { pasid }) => {
                            state.slots.insert(*g, Slot::Orphaned { pasid });
                            unanswered
                        }
                        _ => unanswered,
                    })
                    .collect();
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The device was reset: every wait of the epoch ends now, as abandoned.
    pub fn abandon(&self) {
        self.lock().epoch += 1;
        self.changed.notify_all();
    }

    /// Responses that named no outstanding group.
    pub fn unexpected_responses(&self) -> u64 {
        self.lock().unexpected
    }

    /// Groups a device is waiting for.
    pub fn waiting(&self) -> usize {
        self.lock()
            .slots
            .values()
            .filter(|s| matches!(s, Slot::Waiting { .. }))
            .count()
    }

    /// PRG indices taken (waited for or orphaned).
    pub fn outstanding(&self) -> usize {
        self.lock().slots.len()
    }
}

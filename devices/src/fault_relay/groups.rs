//! Page-request groups between the host IOMMU and the guest: which are being delivered,
//! which wait for the guest's answer and under which host cookie, and which the host must
//! be told failed because the guest cannot or did not answer.
//!
//! A group is (guest StreamID, PASID, group index). Its records reach the guest in arrival
//! order; the last one (LAST_PAGE) carries the cookie its single answer goes back under.
//! No device waits forever: a group the guest cannot be given (too many outstanding, its
//! event queue full, the endpoint not nested) is answered INVALID as soon as its last
//! record arrives, and one the guest does not answer in time is answered INVALID when its
//! deadline passes. A guest answer to a group that is not waiting changes nothing on the
//! host.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::host_iommu::nested::{PageRequest, PageResponseCode};

/// Which group a record or an answer belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupKey {
    pub stream: u32,
    pub pasid: Option<u32>,
    pub group: u32,
}

impl GroupKey {
    pub fn of(request: &PageRequest) -> Self {
        Self {
            stream: request.stream,
            pasid: request.pasid,
            group: request.group,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLimits {
    /// Groups delivered to the guest and not answered yet, at most.
    pub max_outstanding: usize,
    /// How long the guest has to answer a complete group.
    pub answer_within: Duration,
}

impl Default for GroupLimits {
    fn default() -> Self {
        Self {
            max_outstanding: 256,
            answer_within: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GroupCounters {
    /// Page-request records the host reported.
    pub records: u64,
    /// Records handed to the guest.
    pub delivered: u64,
    /// Groups the guest answered.
    pub answered: u64,
    /// Guest answers naming no waiting group.
    pub unknown_answers: u64,
    /// Groups answered INVALID because the guest did not answer in time.
    pub timed_out: u64,
    /// Groups answered INVALID because too many were outstanding.
    pub refused_full: u64,
    /// Groups answered INVALID because the guest's event queue could not take a record.
    pub refused_undeliverable: u64,
    /// Groups answered INVALID because their endpoint is not a nested one.
    pub refused_unrouted: u64,
    /// Groups answered INVALID because the device reused a group index still waiting.
    pub refused_duplicate: u64,
    /// Groups forgotten because the host already failed them (detach, new table, reset).
    pub dropped: u64,
}

/// What to do with a host record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordAction {
    /// Hand it to the guest.
    Deliver,
    /// Drop it; the group is already being failed.
    Drop,
    /// Drop it and answer the host now: the group is complete and failed.
    Fail { cookie: u32 },
}

/// Why a guest answer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("no page-request group is waiting for this answer")]
    NoSuchGroup,
    #[error("the group's last page request has not been delivered yet")]
    Incomplete,
}

#[derive(Debug, Clone, Copy)]
enum GroupState {
    /// Records are reaching the guest; the last has not arrived.
    Receiving,
    /// Complete; the guest's answer goes back under `cookie`.
    Waiting { cookie: u32, deadline: Instant },
}

/// The bookkeeping: one per nested virtio-iommu.
#[derive(Debug)]
pub struct PageRequestGroups {
    limits: GroupLimits,
    open: HashMap<GroupKey, GroupState>,
    /// Groups being failed: their records are dropped, their last one answered INVALID.
    failing: HashMap<GroupKey, FailReason>,
    counters: GroupCounters,
}

#[derive(Debug, Clone, Copy)]
enum FailReason {
    Full,
    Undeliverable,
    Unrouted,
    Duplicate,
}

impl PageRequestGroups {
    pub fn new(limits: GroupLimits) -> Self {
        Self {
            limits,
            open: HashMap::new(),
            failing: HashMap::new(),
            counters: GroupCounters::default(),
        }
    }

    pub fn counters(&self) -> GroupCounters {
        self.counters
    }

    /// Groups delivered (wholly or in part) and not answered.
    pub fn outstanding(&self) -> usize {
        self.open.len()
    }

    /// Takes one host record; `routed` says whether its stream is a nested endpoint the
    /// guest can answer for.
    pub fn on_record(&mut self, request: &PageRequest, routed: bool, now: Instant) -> RecordAction {
        self.counters.records += 1;
        let key = GroupKey::of(request);
        if !self.failing.contains_key(&key) {
            let refused = match self.open.get(&key) {
                _ if !routed => Some(FailReason::Unrouted),
                Some(GroupState::Waiting { .. }) => Some(FailReason::Duplicate),
                Some(GroupState::Receiving) => None,
                None if self.open.len() >= self.limits.max_outstanding => Some(FailReason::Full),
                None => None,
            };
            match refused {
                Some(reason) => {
                    // A group cut off mid-way (its endpoint left nested mode) is failed
                    // from here on; a waiting one keeps its own answer.
                    if matches!(self.open.get(&key), Some(GroupState::Receiving)) {
                        self.open.remove(&key);
                    }
                    self.failing.insert(key, reason);
                }
                None => {
                    let state = if request.last {
                        GroupState::Waiting {
                            cookie: request.cookie,
                            deadline: now + self.limits.answer_within,
                        }
                    } else {
                        GroupState::Receiving
                    };
                    self.open.insert(key, state);
                    self.counters.delivered += 1;
                    return RecordAction::Deliver;
                }
            }
        }
        if !request.last {
            return RecordAction::Drop;
        }
        if let Some(reason) = self.failing.remove(&key) {
            let counter = match reason {
                FailReason::Full => &mut self.counters.refused_full,
                FailReason::Undeliverable => &mut self.counters.refused_undeliverable,
                FailReason::Unrouted => &mut self.counters.refused_unrouted,
                FailReason::Duplicate => &mut self.counters.refused_duplicate,
            };
            *counter += 1;
        }
        RecordAction::Fail {
            cookie: request.cookie,
        }
    }

    /// The record [`Self::on_record`] said to deliver could not be (the guest's event queue
    /// is full): the group fails. Returns the cookie to answer INVALID now if the record was
    /// the group's last.
    pub fn undeliverable(&mut self, request: &PageRequest) -> Option<u32> {
        let key = GroupKey::of(request);
        self.open.remove(&key)?;
        self.counters.delivered -= 1;
        if request.last {
            self.counters.refused_undeliverable += 1;
            Some(request.cookie)
        } else {
            self.failing.insert(key, FailReason::Undeliverable);
            None
        }
    }

    /// The guest answered group `key`: returns the cookie to answer the host under.
    pub fn on_answer(&mut self, key: GroupKey) -> Result<u32, AnswerError> {
        match self.open.get(&key) {
            Some(&GroupState::Waiting { cookie, .. }) => {
                self.open.remove(&key);
                self.counters.answered += 1;
                Ok(cookie)
            }
            Some(GroupState::Receiving) => {
                self.counters.unknown_answers += 1;
                Err(AnswerError::Incomplete)
            }
            None => {
                self.counters.unknown_answers += 1;
                Err(AnswerError::NoSuchGroup)
            }
        }
    }

    /// Groups whose deadline passed by `now`: they are forgotten, and each returned cookie
    /// must be answered INVALID.
    pub fn expire(&mut self, now: Instant) -> Vec<u32> {
        let mut expired = Vec::new();
        self.open.retain(|_, state| match *state {
            GroupState::Waiting { cookie, deadline } if deadline <= now => {
                expired.push(cookie);
                false
            }
            _ => true,
        });
        self.counters.timed_out += expired.len() as u64;
        expired
    }

    /// When the next group times out.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.open
            .values()
            .filter_map(|state| match state {
                GroupState::Waiting { deadline, .. } => Some(*deadline),
                GroupState::Receiving => None,
            })
            .min()
    }

    /// The host already failed every group of `stream` (its table was replaced or removed):
    /// forget them, so a late guest answer changes nothing.
    pub fn forget_stream(&mut self, stream: u32) -> usize {
        let before = self.open.len();
        self.open.retain(|key, _| key.stream != stream);
        self.failing.retain(|key, _| key.stream != stream);
        let dropped = before - self.open.len();
        self.counters.dropped += dropped as u64;
        dropped
    }

    /// The VM or the virtio-iommu was reset: the host failed every group.
    pub fn forget_all(&mut self) -> usize {
        let dropped = self.open.len();
        self.open.clear();
        self.failing.clear();
        self.counters.dropped += dropped as u64;
        dropped
    }
}

/// The code the host gets for a guest's answer: iommufd and the PCIe PRG response take
/// SUCCESS or INVALID, so every failure is INVALID.
pub fn host_code(success: bool) -> PageResponseCode {
    if success {
        PageResponseCode::Success
    } else {
        PageResponseCode::Invalid
    }
}

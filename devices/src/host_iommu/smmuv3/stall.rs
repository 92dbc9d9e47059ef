//! Stalled transactions: a fault on a stall-enabled context holds the transaction, under a
//! stall tag (STAG), until software resumes it (retry) or terminates it (RESUME with abort
//! or terminate, STALL_TERM for a whole stream).

use std::collections::{HashMap, VecDeque};

use super::access::Access;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StallState {
    /// No answer yet.
    Waiting,
    /// Software fixed the tables: translate again.
    Retry,
    /// The transaction ends with an abort.
    Terminated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StalledTransaction {
    pub sid: u32,
    pub ssid: Option<u32>,
    pub address: u64,
    pub access: Access,
    pub state: StallState,
}

#[derive(Debug)]
pub struct Stalls {
    by_tag: HashMap<(u32, u16), StalledTransaction>,
    /// Stalls not yet handed to software as page requests, oldest first (some may have
    /// been answered since: they are skipped). At most `max` long.
    unreported: VecDeque<(u32, u16)>,
    next_tag: u16,
    max: usize,
}

impl Stalls {
    pub fn new(max: usize) -> Self {
        Self {
            by_tag: HashMap::new(),
            unreported: VecDeque::new(),
            next_tag: 0,
            max,
        }
    }

    /// Holds a transaction; its tag, or `None` when no more can be stalled.
    pub fn stall(
        &mut self,
        sid: u32,
        ssid: Option<u32>,
        address: u64,
        access: Access,
    ) -> Option<u16> {
        if self.by_tag.len() >= self.max {
            return None;
        }
        // At most `max` (< 65536 tried) tags are taken, so a free one is found.
        let tag = (0..=u16::MAX)
            .map(|i| self.next_tag.wrapping_add(i))
            .find(|t| !self.by_tag.contains_key(&(sid, *t)))?;
        self.next_tag = tag.wrapping_add(1);
        // A reused tag's old report, if still queued, would repeat this one.
        self.unreported.retain(|&k| k != (sid, tag));
        if self.unreported.len() >= self.max {
            let by_tag = &self.by_tag;
            self.unreported.retain(|k| {
                by_tag
                    .get(k)
                    .is_some_and(|t| t.state == StallState::Waiting)
            });
        }
        self.unreported.push_back((sid, tag));
        self.by_tag.insert(
            (sid, tag),
            StalledTransaction {
                sid,
                ssid,
                address,
                access,
                state: StallState::Waiting,
            },
        );
        Some(tag)
    }

    /// RESUME: whether a waiting transaction had that tag.
    pub fn resume(&mut self, sid: u32, tag: u16, retry: bool) -> bool {
        match self.by_tag.get_mut(&(sid, tag)) {
            Some(t) if t.state == StallState::Waiting => {
                t.state = if retry {
                    StallState::Retry
                } else {
                    StallState::Terminated
                };
                true
            }
            _ => false,
        }
    }

    /// STALL_TERM: terminates every waiting transaction of `sid`; returns their tags.
    pub fn terminate_stream(&mut self, sid: u32) -> Vec<u16> {
        let mut tags = Vec::new();
        for (&(s, tag), t) in self.by_tag.iter_mut() {
            if s == sid && t.state == StallState::Waiting {
                t.state = StallState::Terminated;
                tags.push(tag);
            }
        }
        tags
    }

    /// How a stalled transaction stands; once answered, the answer is handed out once and
    /// the tag is free again.
    pub fn take_outcome(&mut self, sid: u32, tag: u16) -> Option<StallState> {
        let state = self.by_tag.get(&(sid, tag))?.state;
        if state != StallState::Waiting {
            self.by_tag.remove(&(sid, tag));
        }
        Some(state)
    }

    /// The oldest stalled transaction not yet reported that still waits, and its tag.
    pub fn next_unreported(&mut self) -> Option<(u16, StalledTransaction)> {
        while let Some(key) = self.unreported.pop_front() {
            match self.by_tag.get(&key) {
                Some(t) if t.state == StallState::Waiting => return Some((key.1, *t)),
                _ => {}
            }
        }
        None
    }

    pub fn has_unreported(&self) -> bool {
        !self.unreported.is_empty()
    }

    /// Whether `(sid, tag)` is stalled and not answered yet.
    pub fn is_waiting(&self, sid: u32, tag: u16) -> bool {
        self.by_tag
            .get(&(sid, tag))
            .is_some_and(|t| t.state == StallState::Waiting)
    }

    pub fn get(&self, sid: u32, tag: u16) -> Option<&StalledTransaction> {
        self.by_tag.get(&(sid, tag))
    }

    pub fn len(&self) -> usize {
        self.by_tag.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_tag.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_answered_once_and_bounded() {
        let mut s = Stalls::new(2);
        let a = s.stall(1, None, 0x1000, Access::READ).unwrap();
        let b = s.stall(1, Some(2), 0x2000, Access::WRITE).unwrap();
        assert_ne!(a, b);
        assert_eq!(s.stall(3, None, 0, Access::READ), None, "STALL_MAX reached");
        assert_eq!(s.take_outcome(1, a), Some(StallState::Waiting));
        assert!(s.resume(1, a, true));
        assert!(!s.resume(1, a, false), "already answered");
        assert!(!s.resume(2, b, true), "wrong stream");
        assert_eq!(s.terminate_stream(1), vec![b]);
        assert_eq!(s.take_outcome(1, a), Some(StallState::Retry));
        assert_eq!(s.take_outcome(1, a), None);
        assert_eq!(s.take_outcome(1, b), Some(StallState::Terminated));
        assert!(s.is_empty());
    }

    #[test]
    fn unreported_stalls_stay_bounded_and_skip_answered_ones() {
        let mut s = Stalls::new(2);
        for _ in 0..100 {
            let tag = s.stall(1, None, 0, Access::READ).unwrap();
            s.resume(1, tag, false);
            s.take_outcome(1, tag);
        }
        assert!(s.unreported.len() <= 2);
        assert_eq!(s.next_unreported(), None, "all answered");
        let a = s.stall(1, Some(3), 0x5000, Access::WRITE).unwrap();
        let (tag, t) = s.next_unreported().unwrap();
        assert_eq!((tag, t.ssid, t.address), (a, Some(3), 0x5000));
        assert!(s.is_waiting(1, a) && !s.has_unreported());
    }
}

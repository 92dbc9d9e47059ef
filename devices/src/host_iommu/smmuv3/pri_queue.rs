//! The PRI queue: PCIe page requests waiting for software, and the groups waiting for a
//! PRI_RESP. Bounded: a request that does not fit is dropped and counted, and if it closed
//! its group the group is answered with a failure at once, so the device is not left
//! waiting for an answer nobody will give.

use std::collections::{HashSet, VecDeque};

use super::wire::PriEntry;

/// PRI_RESP codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriResponse {
    /// Invalid Request.
    Deny = 0,
    /// Response Failure.
    Fail = 1,
    Success = 2,
}

impl PriResponse {
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::Deny),
            1 => Some(Self::Fail),
            2 => Some(Self::Success),
            _ => None,
        }
    }
}

/// A page request group: stream, substream, group index.
pub type GroupKey = (u32, Option<u32>, u16);

#[derive(Debug)]
pub struct PriQueue {
    entries: VecDeque<PriEntry>,
    capacity: usize,
    overflows: u64,
    /// Groups whose last request arrived and that have no response yet.
    outstanding: HashSet<GroupKey>,
}

impl PriQueue {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            capacity: capacity.max(1),
            overflows: 0,
            outstanding: HashSet::new(),
        }
    }

    /// Queues a page request. `Err(key)`: it was dropped, and its group (if this request
    /// ended it) must be answered with a failure by the caller.
    pub fn push(&mut self, entry: PriEntry) -> Result<(), Option<GroupKey>> {
        let key = (entry.sid(), entry.ssid(), entry.group());
        if self.entries.len() >= self.capacity
            || (entry.last() && self.outstanding.len() >= self.capacity)
        {
            self.overflows += 1;
            return Err(entry.last().then_some(key));
        }
        if entry.last() {
            self.outstanding.insert(key);
        }
        self.entries.push_back(entry);
        Ok(())
    }

    pub fn pop(&mut self) -> Option<PriEntry> {
        self.entries.pop_front()
    }

    /// A PRI_RESP arrived: whether it answers a group that was waiting.
    pub fn respond(&mut self, key: GroupKey) -> bool {
        self.outstanding.remove(&key)
    }

    /// Whether a group's last request arrived and it has no response yet.
    pub fn is_outstanding(&self, key: GroupKey) -> bool {
        self.outstanding.contains(&key)
    }

    pub fn overflows(&self) -> u64 {
        self.overflows
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queue_drops_and_reports_the_closed_group() {
        let mut q = PriQueue::new(1);
        assert_eq!(
            q.push(PriEntry::new(1, None, 0x1000, 3, true, false, true)),
            Ok(())
        );
        assert_eq!(
            q.push(PriEntry::new(2, Some(4), 0x2000, 5, true, false, true)),
            Err(Some((2, Some(4), 5)))
        );
        assert_eq!(
            q.push(PriEntry::new(2, None, 0x2000, 6, true, false, false)),
            Err(None)
        );
        assert_eq!(q.overflows(), 2);
        assert_eq!(q.pop().map(|e| e.sid()), Some(1));
        assert!(q.respond((1, None, 3)));
        assert!(!q.respond((1, None, 3)), "answered once");
    }
}

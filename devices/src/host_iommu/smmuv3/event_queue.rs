//! The event queue: bounded; what does not fit is dropped and counted, and sequence
//! numbers (31 bits, as iommufd's vEVENTQ numbers them) let a reader see the gap.

use std::collections::VecDeque;

use super::wire::EventRecord;

const SEQUENCE_MASK: u32 = 0x7fff_ffff;

#[derive(Debug)]
pub struct EventQueue {
    records: VecDeque<(u32, EventRecord)>,
    capacity: usize,
    next_sequence: u32,
    overflows: u64,
}

impl EventQueue {
    pub fn new(capacity: usize) -> Self {
        Self {
            records: VecDeque::new(),
            capacity: capacity.max(1),
            next_sequence: 0,
            overflows: 0,
        }
    }

    /// Queues `record`; false if the queue was full and it was dropped.
    pub fn push(&mut self, record: EventRecord) -> bool {
        let sequence = self.next_sequence;
        self.next_sequence = (sequence + 1) & SEQUENCE_MASK;
        if self.records.len() >= self.capacity {
            self.overflows += 1;
            return false;
        }
        self.records.push_back((sequence, record));
        true
    }

    /// The oldest record and its sequence number.
    pub fn pop(&mut self) -> Option<(u32, EventRecord)> {
        self.records.pop_front()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Records dropped because the queue was full, ever.
    pub fn overflows(&self) -> u64 {
        self.overflows
    }

    /// The sequence number the next record will get.
    pub fn next_sequence(&self) -> u32 {
        self.next_sequence
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_is_counted_and_leaves_a_sequence_gap() {
        let mut q = EventQueue::new(2);
        for sid in 0..4 {
            q.push(EventRecord::new(0x10, sid));
        }
        assert_eq!(q.overflows(), 2);
        assert_eq!(q.pop().map(|(s, r)| (s, r.sid())), Some((0, 0)));
        assert_eq!(q.pop().map(|(s, r)| (s, r.sid())), Some((1, 1)));
        assert!(q.pop().is_none());
        assert!(q.push(EventRecord::new(0x10, 9)));
        assert_eq!(q.pop().map(|(s, _)| s), Some(4), "two lost before it");
    }
}

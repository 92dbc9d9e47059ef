//! A reference model of serving one split virtqueue: popping chains, the one chain reader's
//! rules (as devices/src/virtio/chain states them, over virtio-queue's descriptor walk), and
//! completing chains in the used ring, all against a [`Shadow`] of guest RAM.

use crate::driver_queue::{RawDesc, Rings, DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE};
use crate::guest::{reachable, Shadow};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seg {
    pub addr: u64,
    pub len: u32,
}

/// A chain that passed the chain reader's rules.
#[derive(Debug, Clone)]
pub struct ModelChain {
    pub head: u16,
    pub readable: Vec<Seg>,
    pub writable: Vec<Seg>,
    /// Some buffer lies outside RAM.
    pub unreachable: bool,
}

impl ModelChain {
    pub fn readable_len(&self) -> u32 {
        self.readable.iter().map(|s| s.len).sum()
    }

    pub fn writable_len(&self) -> u32 {
        self.writable.iter().map(|s| s.len).sum()
    }
}

fn read_desc(shadow: &Shadow, addr: u64) -> Option<RawDesc> {
    if !reachable(addr, 16) {
        return None;
    }
    let mut b = [0u8; 16];
    shadow.read(addr, &mut b);
    Some(RawDesc::from_bytes(&b))
}

/// The descriptors virtio-queue yields for the chain at `head`: it follows one indirect
/// table, stops at a bad index, an unreadable descriptor or a byte count past u32, and
/// never yields more than a table's size.
fn walk(shadow: &Shadow, desc_table: u64, size: u16, head: u16) -> Vec<RawDesc> {
    let mut yielded = Vec::new();
    let (mut table, mut table_size, mut next, mut ttl) = (desc_table, size, head, size);
    let mut indirect = false;
    let mut bytes = 0u32;
    loop {
        if ttl == 0 || next >= table_size {
            return yielded;
        }
        let Some(at) = table.checked_add(u64::from(next) * 16) else {
            return yielded;
        };
        let Some(desc) = read_desc(shadow, at) else {
            return yielded;
        };
        if desc.flags & DESC_F_INDIRECT != 0 {
            if indirect || desc.len % 16 != 0 || desc.len / 16 > u32::from(u16::MAX) {
                return yielded;
            }
            (table, table_size, next, ttl) =
                (desc.addr, (desc.len / 16) as u16, 0, (desc.len / 16) as u16);
            indirect = true;
            continue;
        }
        let Some(total) = bytes.checked_add(desc.len) else {
            return yielded;
        };
        bytes = total;
        if desc.flags & DESC_F_NEXT != 0 {
            next = desc.next;
            ttl -= 1;
        } else {
            ttl = 0;
        }
        yielded.push(desc);
    }
}

/// The chain at `head` as the chain reader accepts it, or None if it is malformed.
pub fn read_chain(shadow: &Shadow, rings: &Rings, head: u16) -> Option<ModelChain> {
    let descs = walk(shadow, rings.desc, rings.size, head);
    let last = descs.last()?;
    if descs.len() > usize::from(rings.size) || last.flags & DESC_F_NEXT != 0 {
        return None;
    }
    let mut chain = ModelChain {
        head,
        readable: Vec::new(),
        writable: Vec::new(),
        unreachable: false,
    };
    for d in &descs {
        let seg = Seg {
            addr: d.addr,
            len: d.len,
        };
        if d.flags & DESC_F_WRITE != 0 {
            chain.writable.push(seg);
        } else if chain.writable.is_empty() {
            chain.readable.push(seg);
        } else {
            return None;
        }
    }
    chain.unreachable = descs.iter().any(|d| !reachable(d.addr, u64::from(d.len)));
    Some(chain)
}

/// Visits the pieces holding bytes `[offset, offset + len)` of the stream `segs`, which must
/// hold them: `(address, length, position in the caller's buffer)`.
fn pieces(segs: &[Seg], offset: u64, len: usize, mut f: impl FnMut(u64, usize, usize)) {
    let mut skip = offset;
    let mut done = 0usize;
    for s in segs {
        if done == len {
            break;
        }
        let seg_len = u64::from(s.len);
        if skip >= seg_len {
            skip -= seg_len;
            continue;
        }
        let n = ((seg_len - skip) as usize).min(len - done);
        f(s.addr + skip, n, done);
        done += n;
        skip = 0;
    }
    assert_eq!(done, len, "model: stream access past the chain's end");
}

pub fn read_stream(shadow: &Shadow, segs: &[Seg], offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    pieces(segs, offset, len, |at, n, into| {
        shadow.read(at, &mut buf[into..into + n])
    });
    buf
}

pub fn write_stream(shadow: &mut Shadow, segs: &[Seg], offset: u64, data: &[u8]) {
    pieces(segs, offset, data.len(), |at, n, from| {
        shadow.write(at, &data[from..from + n])
    });
}

/// What the modelled device does with one chain (None: a malformed chain).
pub enum ModelServed {
    Used(u32),
    Declined,
}

/// What one call of the queue server did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ServeOutcome {
    /// Whether chains are left (the budget ran out).
    pub left: bool,
    /// Chains completed in the used ring.
    pub completed: usize,
    /// Heads popped, in order, whatever happened to them.
    pub served: Vec<u16>,
}

/// The device's position in one queue.
pub struct QueueModel {
    pub rings: Rings,
    next_avail: u16,
    next_used: u16,
}

const USED_F_NO_NOTIFY: u16 = 1;

impl QueueModel {
    pub fn new(rings: Rings) -> Self {
        Self {
            rings,
            next_avail: 0,
            next_used: 0,
        }
    }

    fn avail_idx(&self, shadow: &Shadow) -> u16 {
        let mut b = [0u8; 2];
        shadow.read(self.rings.avail + 2, &mut b);
        u16::from_le_bytes(b)
    }

    fn pop(&mut self, shadow: &Shadow) -> Option<u16> {
        if self.rings.avail == 0 {
            return None;
        }
        let idx = self.avail_idx(shadow);
        if idx.wrapping_sub(self.next_avail) > self.rings.size || idx == self.next_avail {
            return None;
        }
        let slot = self.rings.avail + 4 + 2 * u64::from(self.next_avail % self.rings.size);
        let mut b = [0u8; 2];
        shadow.read(slot, &mut b);
        self.next_avail = self.next_avail.wrapping_add(1);
        Some(u16::from_le_bytes(b))
    }

    fn set_used_flags(&self, shadow: &mut Shadow, flags: u16) {
        shadow.write(self.rings.used, &flags.to_le_bytes());
    }

    fn add_used(&mut self, shadow: &mut Shadow, head: u16, len: u32) -> bool {
        if head >= self.rings.size {
            return false;
        }
        let at = self.rings.used + 4 + 8 * u64::from(self.next_used % self.rings.size);
        shadow.write(at, &u32::from(head).to_le_bytes());
        shadow.write(at + 4, &len.to_le_bytes());
        self.next_used = self.next_used.wrapping_add(1);
        shadow.write(self.rings.used + 2, &self.next_used.to_le_bytes());
        true
    }

    /// Serves at most `budget` chains as `QueueServer::serve` does, with `answer` standing
    /// for the device.
    pub fn serve(
        &mut self,
        shadow: &mut Shadow,
        budget: usize,
        mut answer: impl FnMut(&mut Shadow, Option<ModelChain>) -> ModelServed,
    ) -> ServeOutcome {
        let mut outcome = ServeOutcome::default();
        let mut empty_passes = 0;
        outcome.left = 'serving: loop {
            self.set_used_flags(shadow, USED_F_NO_NOTIFY);
            let mut popped = false;
            while let Some(head) = self.pop(shadow) {
                popped = true;
                let chain = read_chain(shadow, &self.rings, head);
                let used = match answer(shadow, chain) {
                    ModelServed::Used(len) => len,
                    ModelServed::Declined => {
                        self.next_avail = self.next_avail.wrapping_sub(1);
                        self.set_used_flags(shadow, 0);
                        break 'serving false;
                    }
                };
                outcome.served.push(head);
                if self.add_used(shadow, head, used) {
                    outcome.completed += 1;
                }
                if outcome.served.len() == budget {
                    break 'serving true;
                }
            }
            self.set_used_flags(shadow, 0);
            empty_passes = if popped { 0 } else { empty_passes + 1 };
            let more = self.avail_idx(shadow) != self.next_avail;
            if !more || empty_passes >= 2 {
                break false;
            }
        };
        outcome
    }
}

//! A device's IOTLB, and the lock that makes invalidation, pause and revocation synchronous.
//!
//! Every access of the device holds the IOTLB's read lock from its lookup until its copy is
//! done (vm-memory keeps the guard inside the slice iterator). Whoever changes what the
//! device may reach (the IOMMU on UNMAP, DETACH, ATTACH, bypass changes and reset; the
//! transport on Bus Master Enable and device reset) takes the write lock after changing its
//! own state: once it has the lock, no access translated under the old state is still
//! copying, and later accesses miss and see the new state. Copies are bounded memcpys, so
//! the wait is short; nothing that can block (disk I/O, another lock) happens under the
//! read lock.

use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::entries::TlbEntries;
use super::DmaFault;

/// The device was reset (or its activation ended): its DMA no longer reaches memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the device's DMA was revoked by a reset")]
pub struct DmaRevoked;

#[derive(Debug, Default)]
struct TlbState {
    entries: TlbEntries,
    /// The PASID the entries were translated for: a device whose transactions carry
    /// PASIDs keeps one PASID's translations at a time, and a fill for another starts over.
    pasid: Option<u32>,
    /// Advanced by every revocation; an activation's view works only in its own generation.
    generation: u64,
    /// Bus Master Enable is clear: accesses wait.
    paused: bool,
}

#[derive(Debug, Default)]
pub struct DeviceTlb {
    state: RwLock<TlbState>,
    /// With `resumed`: where accesses of a paused device wait.
    pause_lock: Mutex<()>,
    resumed: Condvar,
}

/// An access in progress: the read lock that pins its translation.
pub struct TlbPin<'a>(RwLockReadGuard<'a, TlbState>);

impl TlbPin<'_> {
    pub fn entries(&self) -> &TlbEntries {
        &self.0.entries
    }

    /// The PASID the entries belong to.
    pub fn pasid(&self) -> Option<u32> {
        self.0.pasid
    }
}

impl DeviceTlb {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    // A panic while holding the lock cannot leave the IOTLB unsafe to use (at worst it holds
    // entries that are still valid), so a poisoned lock is used as is.
    fn read(&self) -> RwLockReadGuard<'_, TlbState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, TlbState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The generation a new activation's view belongs to.
    pub fn generation(&self) -> u64 {
        self.read().generation
    }

    /// Pins the IOTLB for one access of `generation`, waiting while the device is paused.
    pub(super) fn pin(&self, generation: u64) -> Result<TlbPin<'_>, DmaRevoked> {
        loop {
            let state = self.read();
            if state.generation != generation {
                return Err(DmaRevoked);
            }
            if !state.paused {
                return Ok(TlbPin(state));
            }
            drop(state);
            self.wait_until_resumed(generation);
        }
    }

    fn wait_until_resumed(&self, generation: u64) {
        let mut waiting = self.pause_lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            {
                let state = self.read();
                if !state.paused || state.generation != generation {
                    return;
                }
            }
            waiting = self
                .resumed
                .wait(waiting)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Adds translations of `pasid` for `generation` with `fill`, under the write lock;
    /// another PASID's entries are dropped first.
    pub(super) fn fill(
        &self,
        generation: u64,
        pasid: Option<u32>,
        fill: impl FnOnce(&mut TlbEntries) -> Result<(), DmaFault>,
    ) -> Result<Result<(), DmaFault>, DmaRevoked> {
        let mut state = self.write();
        if state.generation != generation {
            return Err(DmaRevoked);
        }
        if state.pasid != pasid {
            state.entries.clear();
            state.pasid = pasid;
        }
        Ok(fill(&mut state.entries))
    }

    /// Drops cached translations of `[start, last]`; returns once no access translated
    /// through them is still copying.
    pub fn invalidate_range(&self, start: u64, last: u64) {
        self.write().entries.remove(start, last);
    }

    /// Drops every cached translation; returns once no access is still copying.
    pub fn invalidate_all(&self) {
        self.write().entries.clear();
    }

    /// Bus Master Enable cleared: returns once no access is copying; later accesses wait.
    pub fn pause(&self) {
        self.write().paused = true;
    }

    /// Bus Master Enable set again: waiting accesses go on.
    pub fn resume(&self) {
        self.write().paused = false;
        self.wake_waiters();
    }

    /// Device reset: returns once no access is copying; every view made before fails from
    /// now on, including accesses waiting in a pause.
    pub fn revoke(&self) {
        {
            let mut state = self.write();
            state.generation += 1;
            state.paused = false;
            state.entries.clear();
        }
        self.wake_waiters();
    }

    fn wake_waiters(&self) {
        let _waiting = self.pause_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.resumed.notify_all();
    }

    /// Runs `f` (an interrupt: a memory write too) only while `generation` is live, pinned
    /// like an access, so no interrupt of a revoked activation reaches the guest.
    pub fn while_live<R>(&self, generation: u64, f: impl FnOnce() -> R) -> Option<R> {
        let _pinned = self.pin(generation).ok()?;
        Some(f())
    }
}

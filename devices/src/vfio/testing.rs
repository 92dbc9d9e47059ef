//! Fakes of what a passthrough function talks to: a host device that records every call and
//! keeps a configuration space of its own, memory slots, and interrupt vectors with
//! eventfds. The unit tests and the fuzz targets drive the real function against them.

use std::io;
use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::EventFd;

use super::bar_mapping::GuestMemorySlots;
use super::device_io::{RegionInfo, VfioDeviceIo, BAR_REGIONS};
use crate::interrupt::{MsiInterruptGroup, MsiInterruptManager, MsiMessage};
use crate::pci::CONFIG_SPACE_SIZE;

/// What the fake device was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceCall {
    ConfigWrite(u64, Vec<u8>),
    RegionRead(u32, u64, usize),
    RegionWrite(u32, u64, Vec<u8>),
    Mmap(u32, u64, u64),
    EnableMsix(usize),
    DisableMsix,
    EnableMsi(usize),
    DisableMsi,
    Reset,
}

pub type CallLog = Arc<Mutex<Vec<DeviceCall>>>;

/// A host PCI function: its configuration space (which forwarded writes change), its
/// regions, and the interrupt vectors the host lets it use.
pub struct FakeVfioDevice {
    pub config: Mutex<[u8; CONFIG_SPACE_SIZE]>,
    pub regions: [RegionInfo; BAR_REGIONS as usize],
    pub msix_vectors: u32,
    pub msi_vectors: u32,
    pub calls: CallLog,
}

/// The byte a region read of BAR `bar` returns at `offset`: a pattern, so a read served
/// from the wrong place or offset shows.
pub fn region_byte(bar: u32, offset: u64) -> u8 {
    (offset as u8).wrapping_mul(7) ^ (offset >> 8) as u8 ^ (bar as u8).wrapping_mul(0x35)
}

/// Where the fake device's BARs are "mapped" in this process.
pub fn fake_host_address(bar: u32, offset: u64) -> u64 {
    0x7f00_0000_0000 + (u64::from(bar) << 32) + offset
}

impl FakeVfioDevice {
    pub fn new(config: [u8; CONFIG_SPACE_SIZE], calls: CallLog) -> Self {
        Self {
            config: Mutex::new(config),
            regions: [RegionInfo::default(); BAR_REGIONS as usize],
            msix_vectors: 0,
            msi_vectors: 0,
            calls,
        }
    }

    fn record(&self, call: DeviceCall) {
        self.calls.lock().unwrap().push(call);
    }

    /// The part of `[offset, offset + len)` inside configuration space.
    fn config_range(offset: u64, len: usize) -> Option<std::ops::Range<usize>> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(len)?;
        (end <= CONFIG_SPACE_SIZE).then_some(start..end)
    }
}

impl VfioDeviceIo for FakeVfioDevice {
    fn config_read(&self, offset: u64, data: &mut [u8]) {
        match Self::config_range(offset, data.len()) {
            Some(range) => data.copy_from_slice(&self.config.lock().unwrap()[range]),
            None => data.fill(0xff),
        }
    }

    fn config_write(&self, offset: u64, data: &[u8]) {
        if let Some(range) = Self::config_range(offset, data.len()) {
            self.config.lock().unwrap()[range].copy_from_slice(data);
        }
        self.record(DeviceCall::ConfigWrite(offset, data.to_vec()));
    }

    fn region(&self, index: u32) -> RegionInfo {
        self.regions
            .get(index as usize)
            .copied()
            .unwrap_or_default()
    }

    fn region_read(&self, index: u32, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = region_byte(index, offset.wrapping_add(i as u64));
        }
        self.record(DeviceCall::RegionRead(index, offset, data.len()));
    }

    fn region_write(&self, index: u32, offset: u64, data: &[u8]) {
        self.record(DeviceCall::RegionWrite(index, offset, data.to_vec()));
    }

    fn mmap_region(&self, index: u32, offset: u64, len: u64) -> io::Result<u64> {
        self.record(DeviceCall::Mmap(index, offset, len));
        Ok(fake_host_address(index, offset))
    }

    fn msix_vectors(&self) -> u32 {
        self.msix_vectors
    }

    fn enable_msix(&self, fds: &[&EventFd]) -> io::Result<()> {
        self.record(DeviceCall::EnableMsix(fds.len()));
        Ok(())
    }

    fn disable_msix(&self) -> io::Result<()> {
        self.record(DeviceCall::DisableMsix);
        Ok(())
    }

    fn msi_vectors(&self) -> u32 {
        self.msi_vectors
    }

    fn enable_msi(&self, fds: &[&EventFd]) -> io::Result<()> {
        self.record(DeviceCall::EnableMsi(fds.len()));
        Ok(())
    }

    fn disable_msi(&self) -> io::Result<()> {
        self.record(DeviceCall::DisableMsi);
        Ok(())
    }

    fn reset(&self) {
        self.record(DeviceCall::Reset);
    }
}

/// Memory slots that only remember which are live.
#[derive(Default)]
pub struct FakeSlots {
    /// (slot, gpa, host, len)
    live: Mutex<Vec<(u32, u64, u64, u64)>>,
    next: Mutex<u32>,
}

impl FakeSlots {
    /// The live slots as (gpa, host, len), sorted.
    pub fn live(&self) -> Vec<(u64, u64, u64)> {
        let mut live: Vec<_> = self
            .live
            .lock()
            .unwrap()
            .iter()
            .map(|&(_, gpa, host, len)| (gpa, host, len))
            .collect();
        live.sort_unstable();
        live
    }
}

impl GuestMemorySlots for FakeSlots {
    unsafe fn add(&self, gpa: u64, host: u64, len: u64) -> io::Result<u32> {
        let mut next = self.next.lock().unwrap();
        *next += 1;
        self.live.lock().unwrap().push((*next, gpa, host, len));
        Ok(*next)
    }

    fn remove(&self, slot: u32) -> io::Result<()> {
        let mut live = self.live.lock().unwrap();
        let before = live.len();
        live.retain(|&(s, ..)| s != slot);
        assert_eq!(live.len() + 1, before, "slot {slot} removed twice");
        Ok(())
    }
}

/// Vectors with eventfds; remembers the current route of each, and holds as KVM does: a
/// held vector keeps what is raised, and delivers it when released.
pub struct FakeGroup {
    fds: Vec<EventFd>,
    routes: Mutex<Vec<Option<MsiMessage>>>,
    pub held: Mutex<Vec<bool>>,
    waiting: Mutex<Vec<bool>>,
    /// Each delivery: the vector and the route it went through.
    pub delivered: Mutex<Vec<(u16, Option<MsiMessage>)>>,
}

impl FakeGroup {
    fn new(vectors: u16) -> io::Result<Self> {
        let vectors = usize::from(vectors);
        Ok(Self {
            fds: (0..vectors)
                .map(|_| EventFd::new(0))
                .collect::<io::Result<_>>()?,
            routes: Mutex::new(vec![None; vectors]),
            held: Mutex::new(vec![false; vectors]),
            waiting: Mutex::new(vec![false; vectors]),
            delivered: Mutex::new(Vec::new()),
        })
    }

    pub fn routes(&self) -> Vec<Option<MsiMessage>> {
        self.routes.lock().unwrap().clone()
    }

    /// Panics on a vector the group does not have: the function asked for it.
    fn index(&self, vector: u16) -> usize {
        let index = usize::from(vector);
        assert!(
            index < self.fds.len(),
            "vector {vector} of a group of {}",
            self.fds.len()
        );
        index
    }

    /// The host device signals `vector`.
    pub fn raise(&self, vector: u16) {
        let index = self.index(vector);
        if self.held.lock().unwrap()[index] {
            self.waiting.lock().unwrap()[index] = true;
        } else {
            let route = self.routes.lock().unwrap()[index];
            self.delivered.lock().unwrap().push((vector, route));
        }
    }

    pub fn take_delivered(&self) -> Vec<(u16, Option<MsiMessage>)> {
        std::mem::take(&mut *self.delivered.lock().unwrap())
    }
}

impl MsiInterruptGroup for FakeGroup {
    fn set_route(&self, vector: u16, message: Option<MsiMessage>) -> io::Result<()> {
        let index = self.index(vector);
        self.routes.lock().unwrap()[index] = message;
        Ok(())
    }

    fn trigger(&self, _vector: u16) -> io::Result<()> {
        Ok(())
    }

    fn irqfd(&self, vector: u16) -> Option<&EventFd> {
        self.fds.get(usize::from(vector))
    }

    fn hold(&self, vector: u16, held: bool) -> io::Result<()> {
        let index = self.index(vector);
        self.held.lock().unwrap()[index] = held;
        if !held && std::mem::take(&mut self.waiting.lock().unwrap()[index]) {
            let route = self.routes.lock().unwrap()[index];
            self.delivered.lock().unwrap().push((vector, route));
        }
        Ok(())
    }

    fn pending(&self, vector: u16) -> bool {
        self.waiting.lock().unwrap()[self.index(vector)]
    }
}

/// Hands out [`FakeGroup`]s and keeps each, in creation order.
#[derive(Default)]
pub struct FakeInterrupts {
    pub groups: Mutex<Vec<Arc<FakeGroup>>>,
}

impl FakeInterrupts {
    /// The group created last.
    pub fn last_group(&self) -> Option<Arc<FakeGroup>> {
        self.groups.lock().unwrap().last().cloned()
    }
}

impl MsiInterruptManager for FakeInterrupts {
    fn create_group(&self, vectors: u16) -> io::Result<Arc<dyn MsiInterruptGroup>> {
        let group = Arc::new(FakeGroup::new(vectors)?);
        self.groups.lock().unwrap().push(group.clone());
        Ok(group)
    }
}

//! The engine as a PCI function: configuration space (header, MSI-X, PCI Express and its
//! extended capabilities), BAR 0's registers and MSI-X table, and the enabling, disabling
//! and reset of its worker.
//!
//! As with the virtio functions, bus mastering gates the engine: ENABLE set while Bus
//! Master Enable is clear starts nothing until the driver sets it; clearing it while the
//! engine runs pauses its DMA and its interrupts (the write returns once no access is in
//! flight), setting it resumes them.
//!
//! Clearing ENABLE or writing RESET stops the worker without waiting for it and revokes its
//! DMA, which returns once no access is in flight: when the driver's write returns, the
//! engine no longer touches memory and its HEAD no longer moves.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::capabilities::{
    add_pcie_capabilities, PASID_CONTROL_ENABLE, PRI_ALLOCATION_OFFSET, PRI_CONTROL_ENABLE,
    PRI_CONTROL_OFFSET, PRI_REQUEST_CAPACITY,
};
use super::page_requests::PageRequester;
use super::registers::*;
use super::ring::{Progress, RingRunner};
use crate::dma::DeviceDma;
use crate::interrupt::MsiInterruptGroup;
use crate::io_counters::IoCounters;
use crate::pci::config::{BarMove, BarRegionKind, ConfigError, PciConfiguration, PciIdentity};
use crate::pci::device::{PciBar, PciDevice};
use crate::pci::msix::{MsixLayout, MsixState};
use crate::pci::{Bdf, ExtendedCapabilities, SharedMsix};
use crate::pri::PriLink;
use crate::virtio::worker::Worker;
use crate::virtio::WorkerSpec;

/// Red Hat's vendor ID for virtual devices, with a device ID QEMU has not assigned
/// (docs/dma-engine.md says why).
pub const VENDOR_ID: u16 = 0x1b36;
pub const DEVICE_ID: u16 = 0x00f0;
/// Base class 08h (system peripheral), subclass 80h (other).
const CLASS: u32 = 0x08_80_00;

#[derive(Debug, thiserror::Error)]
pub enum DmaEngineError {
    #[error("BAR at {0:#x}: {1}")]
    Bar(u64, ConfigError),
    #[error("capabilities: {0}")]
    Capabilities(ConfigError),
    #[error("cannot create the doorbell eventfd: {0}")]
    EventFd(std::io::Error),
}

pub struct DmaEngine {
    bdf: Bdf,
    config: PciConfiguration,
    extended: ExtendedCapabilities,
    msix_capability: usize,
    msix: SharedMsix,
    ram: GuestMemoryMmap,
    dma: DeviceDma,
    spec: WorkerSpec,
    doorbell: Arc<EventFd>,
    ring: RingConfig,
    enabled: bool,
    /// The current (or last) enabling's head, tail and halt reason.
    progress: Arc<Progress>,
    worker: Option<Worker>,
    /// Jobs completed (`errors`: not with status OK), bytes read and written by them.
    counters: Arc<IoCounters>,
    /// Where the PASID capability is in configuration space.
    pasid_capability: usize,
    /// In nested translation: jobs may carry PASIDs.
    nested: bool,
    /// Where the PRI capability is in configuration space.
    pri_capability: usize,
    /// Where page requests go, when the IOMMU takes them.
    page_requests: Option<PriLink>,
}

impl DmaEngine {
    /// The engine at `bdf`, BAR 0 at `bar_address` ([`BAR_SIZE`] bytes, aligned), its DMA
    /// through `dma`, its jobs run on `spec`'s thread.
    pub fn new(
        bdf: Bdf,
        ram: GuestMemoryMmap,
        msi: Arc<dyn MsiInterruptGroup>,
        bar_address: u64,
        dma: DeviceDma,
        spec: WorkerSpec,
    ) -> Result<Self, DmaEngineError> {
        let mut config = PciConfiguration::new(PciIdentity {
            vendor: VENDOR_ID,
            device: DEVICE_ID,
            class: CLASS,
            revision: 1,
            subsystem_vendor: VENDOR_ID,
            subsystem: DEVICE_ID,
        });
        config
            .add_memory_bar(
                BAR_INDEX,
                BarRegionKind::Memory32,
                BAR_SIZE,
                bar_address,
                false,
            )
            .map_err(|e| DmaEngineError::Bar(bar_address, e))?;
        let msix_state = MsixState::new(MSIX_VECTORS, msi);
        let (body, writable) = msix_state.capability(MsixLayout {
            table_bar: BAR_INDEX as u8,
            table_offset: MSIX_TABLE_OFFSET as u32,
            pba_bar: BAR_INDEX as u8,
            pba_offset: MSIX_PBA_OFFSET as u32,
        });
        let msix_capability = config
            .add_capability(&body, &writable)
            .map_err(DmaEngineError::Capabilities)?;
        let mut extended = ExtendedCapabilities::new();
        let capabilities = add_pcie_capabilities(&mut config, &mut extended)
            .map_err(DmaEngineError::Capabilities)?;
        let doorbell = EventFd::new(EFD_NONBLOCK).map_err(DmaEngineError::EventFd)?;
        Ok(Self {
            bdf,
            config,
            extended,
            msix_capability,
            msix: Arc::new(Mutex::new(msix_state)),
            ram,
            dma,
            spec,
            doorbell: Arc::new(doorbell),
            ring: RingConfig::default(),
            enabled: false,
            progress: Arc::default(),
            worker: None,
            counters: Arc::default(),
            pasid_capability: capabilities.pasid,
            nested: false,
            pri_capability: capabilities.pri,
            page_requests: None,
        })
    }

    /// What the engine's jobs have done, across enablings.
    pub fn counters(&self) -> Arc<IoCounters> {
        self.counters.clone()
    }

    /// Nested translation: jobs carrying a PASID are served (while PASID Enable is set)
    /// and their accesses are tagged with it.
    pub fn with_nested_translation(mut self) -> Self {
        self.nested = true;
        self
    }

    /// Page requests go through `link` while the guest enables PRI (nested translation).
    pub fn with_page_requests(mut self, link: PriLink) -> Self {
        self.page_requests = Some(link);
        self
    }

    /// The page requester of an enabling: PRI Enable set with a non-zero allocation (at
    /// most the capacity), in nested translation with a link to the IOMMU.
    fn page_requester(&self) -> Option<PageRequester> {
        let link = self.page_requests.clone().filter(|_| self.nested)?;
        let control = self
            .extended
            .read_reg((self.pri_capability + PRI_CONTROL_OFFSET) / 4);
        if control & u32::from(PRI_CONTROL_ENABLE) == 0 {
            return None;
        }
        let allocation = self
            .extended
            .read_reg((self.pri_capability + PRI_ALLOCATION_OFFSET) / 4);
        PageRequester::new(link, allocation.min(PRI_REQUEST_CAPACITY))
    }

    /// PASID Enable in the PASID capability's Control register.
    fn pasid_enabled(&self) -> bool {
        let control = self.extended.read_reg((self.pasid_capability + 4) / 4) >> 16;
        control & u32::from(PASID_CONTROL_ENABLE) != 0
    }

    pub fn bdf(&self) -> Bdf {
        self.bdf
    }

    /// The function's MSI-X state (for diagnostics).
    pub fn msix(&self) -> SharedMsix {
        self.msix.clone()
    }

    fn read_register(&self, offset: u64) -> u32 {
        let progress = &self.progress;
        match offset {
            MAGIC => MAGIC_VALUE,
            VERSION => VERSION_VALUE,
            MAX_RING_SLOTS => RING_SLOTS_MAX,
            MAX_JOB_BYTES => MAX_JOB_BYTES_VALUE,
            CONTROL => u32::from(self.enabled) * CONTROL_ENABLE,
            STATUS => {
                let mut status = 0;
                if self.enabled {
                    status |= STATUS_ENABLED;
                }
                if progress.is_halted() {
                    status |= STATUS_HALTED;
                }
                let head = progress.head.load(Ordering::Acquire);
                if progress.tail.load(Ordering::Acquire) == head {
                    status |= STATUS_IDLE;
                }
                status
            }
            ERROR => progress.halted.load(Ordering::Acquire),
            RING_BASE_LO => self.ring.base as u32,
            RING_BASE_HI => (self.ring.base >> 32) as u32,
            RING_SLOTS => self.ring.slots,
            DOORBELL => progress.tail.load(Ordering::Acquire),
            HEAD => progress.head.load(Ordering::Acquire),
            _ => 0,
        }
    }

    fn write_register(&mut self, offset: u64, value: u32) {
        match offset {
            CONTROL if value & CONTROL_RESET != 0 => self.reset(),
            CONTROL => self.set_enabled(value & CONTROL_ENABLE != 0),
            // The ring is the worker's while enabled.
            RING_BASE_LO if !self.enabled => {
                self.ring.base = self.ring.base & !0xffff_ffff | u64::from(value)
            }
            RING_BASE_HI if !self.enabled => {
                self.ring.base = self.ring.base & 0xffff_ffff | u64::from(value) << 32
            }
            RING_SLOTS if !self.enabled => self.ring.slots = value,
            DOORBELL if self.enabled => {
                self.progress.tail.store(value, Ordering::Release);
                // The worker validates the tail against the head it owns.
                let _ = self.doorbell.write(1);
            }
            _ => {}
        }
    }

    fn set_enabled(&mut self, enable: bool) {
        match (self.enabled, enable) {
            (false, true) => {
                self.enabled = true;
                // Every enabling starts at job 0 with no halt.
                self.progress = Arc::default();
                match self.ring.validate() {
                    Ok(()) => self.start_if_mastering(),
                    Err(reason) => self.progress.halt(reason),
                }
            }
            (true, false) => {
                self.stop();
                self.enabled = false;
            }
            _ => {}
        }
    }

    /// Starts the worker once ENABLE and Bus Master Enable are both set on a valid ring.
    fn start_if_mastering(&mut self) {
        if self.worker.is_some()
            || !self.enabled
            || self.progress.is_halted()
            || !self.config.bus_master_enabled()
        {
            return;
        }
        // PASID and PRI are taken as they stand when the engine starts its work.
        let runner = RingRunner::new(
            self.ring,
            self.dma.memory(self.ram.clone()),
            self.progress.clone(),
            self.msix.clone(),
        )
        .counting(self.counters.clone())
        .with_pasids(self.nested && self.pasid_enabled())
        .with_page_requests(self.page_requester());
        match Worker::spawn(&self.spec, vec![self.doorbell.clone()], vec![], runner) {
            Ok(worker) => self.worker = Some(worker),
            Err(e) => {
                log::warn!("{}: cannot start the DMA engine's work: {e}", self.bdf);
                self.progress.halt(HaltReason::Internal);
            }
        }
    }

    /// Ends the current enabling's work: returns once none of its DMA is in flight.
    fn stop(&mut self) {
        if let Some(worker) = self.worker.take() {
            worker.stop();
        }
        self.dma.tlb().revoke();
        // A worker waiting for page responses gives up now; revoked, it writes nothing.
        if let Some(link) = &self.page_requests {
            link.responses.abandon();
        }
    }

    /// RESET: the engine stops, and every register returns to its reset value.
    fn reset(&mut self) {
        self.stop();
        self.enabled = false;
        self.ring = RingConfig::default();
        self.progress = Arc::default();
    }

    fn bus_master_changed(&mut self) {
        match (self.config.bus_master_enabled(), self.worker.is_some()) {
            (true, true) => self.dma.tlb().resume(),
            (true, false) => self.start_if_mastering(),
            (false, true) => self.dma.tlb().pause(),
            (false, false) => {}
        }
    }

    fn msix_control_register(&self) -> usize {
        self.msix_capability / 4
    }
}

fn within(offset: u64, start: u64, len: u64) -> Option<u64> {
    offset.checked_sub(start).filter(|&o| o < len)
}

impl PciDevice for DmaEngine {
    fn read_config_register(&mut self, reg: usize) -> u32 {
        if ExtendedCapabilities::holds(reg) {
            return self.extended.read_reg(reg);
        }
        self.config.read_reg(reg)
    }

    fn write_config_register(&mut self, reg: usize, offset: usize, data: &[u8]) -> Option<BarMove> {
        if data.is_empty() || offset + data.len() > 4 {
            return None;
        }
        if ExtendedCapabilities::holds(reg) {
            self.extended.write_reg(reg, offset, data);
            return None;
        }
        let bus_master = self.config.bus_master_enabled();
        let moved = self.config.write_reg(reg, offset, data);
        if reg == self.msix_control_register() {
            let control = (self.config.read_reg(reg) >> 16) as u16;
            self.msix.lock().unwrap().set_message_control(control);
        }
        if self.config.bus_master_enabled() != bus_master {
            self.bus_master_changed();
        }
        moved
    }

    fn bars(&self) -> Vec<PciBar> {
        let (address, size) = self.config.bar(BAR_INDEX).expect("BAR 0 exists");
        vec![PciBar {
            index: BAR_INDEX,
            address,
            size,
        }]
    }

    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if bar != BAR_INDEX {
            return;
        }
        let msix_table_len = self.msix.lock().unwrap().table_size();
        let msix_pba_len = self.msix.lock().unwrap().pba_size();
        if let Some(dwords) = dword_offsets(offset, data.len()) {
            for (chunk, at) in data.chunks_mut(4).zip(dwords) {
                chunk.copy_from_slice(&self.read_register(at).to_le_bytes());
            }
        } else if let Some(o) = within(offset, MSIX_TABLE_OFFSET, msix_table_len) {
            self.msix.lock().unwrap().read_table(o, data);
        } else if let Some(o) = within(offset, MSIX_PBA_OFFSET, msix_pba_len) {
            self.msix.lock().unwrap().read_pba(o, data);
        }
    }

    fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if bar != BAR_INDEX {
            return;
        }
        let msix_table_len = self.msix.lock().unwrap().table_size();
        if let Some(dwords) = dword_offsets(offset, data.len()) {
            for (chunk, at) in data.chunks(4).zip(dwords) {
                let value = u32::from_le_bytes(chunk.try_into().unwrap_or_default());
                self.write_register(at, value);
            }
        } else if let Some(o) = within(offset, MSIX_TABLE_OFFSET, msix_table_len) {
            self.msix.lock().unwrap().write_table(o, data);
        }
    }
}

impl Drop for DmaEngine {
    fn drop(&mut self) {
        self.stop();
    }
}

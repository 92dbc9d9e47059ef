//! The modern virtio-pci transport: one 64-bit BAR holding the common, ISR, device and
//! notify structures and the MSI-X table; the PCI configuration access window onto that
//! BAR; feature negotiation; queue setup; activation at DRIVER_OK and reset when the driver
//! writes 0 to the status.
//!
//! Bus mastering gates the device: a function whose Bus Master Enable bit (command register
//! bit 2) is clear must not touch memory, and a running worker reads and writes the rings
//! and buffers in guest memory and raises MSIs, which are memory writes too:
//! - DRIVER_OK written while bus mastering is off is recorded (the driver reads it back),
//!   but activation waits until the driver sets Bus Master Enable. Linux and the bundled
//!   unikernel enable bus mastering before DRIVER_OK, so for them nothing changes.
//! - Clearing Bus Master Enable while the device runs pauses its DMA (and its interrupts):
//!   the write returns once no access is in flight, and the worker waits at its next one.
//!   Setting it again resumes where the device stopped; nothing is lost.
//!
//! Whether the device is translated is fixed when the VM is built ([`DeviceDma`]): a device
//! behind the IOMMU refuses FEATURES_OK unless the driver accepts VIRTIO_F_ACCESS_PLATFORM
//! (the spec lets a device fail in that case), and its DMA is translated whatever the driver
//! negotiated.
//!
//! Reset never waits for the worker: it stops it and revokes the activation's DMA, which
//! returns once no access is in flight (a bounded memcpy); whatever the old worker still
//! finishes cannot reach the guest.
//!
//! Status bits are the driver's to set, not to clear: only a reset (writing 0) clears them,
//! and NEEDS_RESET is the device's alone.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::capabilities::*;
use super::common_cfg::{self as cc, status, NO_VECTOR};
use super::interrupt::{PciInterrupt, VectorTable};
use crate::dma::DeviceDma;
use crate::interrupt::MsiInterruptGroup;
use crate::pci::config::{BarMove, BarRegionKind, PciConfiguration, PciIdentity};
use crate::pci::device::{PciBar, PciDevice};
use crate::pci::msix::{MsixLayout, MsixState, MSIX_CAPABILITY_LEN};
use crate::pci::{Bdf, SharedMsix};
use crate::virtio::device::{ActivateContext, ActiveQueue, VirtioDevice};
use crate::virtio::features;

const VIRTIO_PCI_VENDOR: u16 = 0x1af4;
const VIRTIO_PCI_DEVICE_BASE: u16 = 0x1040;
/// Subsystem IDs of modern-only devices start here.
const VIRTIO_PCI_SUBSYSTEM: u16 = 0x40;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("a virtio device with {0} queues does not fit the transport")]
    TooManyQueues(usize),
    #[error("queue {index}: maximum size {size} is not a power of two up to 32768")]
    QueueSize { index: usize, size: u16 },
    #[error("BAR at {0:#x}: {1}")]
    Bar(u64, crate::pci::config::ConfigError),
    #[error("cannot create a notification eventfd: {0}")]
    EventFd(std::io::Error),
}

fn pci_class(device_type: u32) -> u32 {
    match device_type {
        2 => 0x01_80_00,  // mass storage
        3 => 0x07_80_00,  // communication
        23 => 0x08_80_00, // system peripheral (IOMMU)
        _ => 0xff_00_00,
    }
}

/// What the driver negotiated and configured.
#[derive(Default)]
struct DriverState {
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    status: u8,
    queue_select: u16,
}

pub struct VirtioPciDevice {
    bdf: Bdf,
    config: PciConfiguration,
    msix_capability: usize,
    /// Configuration-space offset of the VIRTIO_PCI_CAP_PCI_CFG capability.
    pci_cfg_capability: usize,
    msix: SharedMsix,
    device: Box<dyn VirtioDevice>,
    offered: u64,
    driver: DriverState,
    queues: Vec<Queue>,
    notifiers: Vec<Arc<EventFd>>,
    vectors: Arc<VectorTable>,
    isr: Arc<AtomicU8>,
    ram: GuestMemoryMmap,
    dma: DeviceDma,
    activated: bool,
}

impl VirtioPciDevice {
    /// `device` at `bdf` with its BAR at `bar_address` (BAR_SIZE bytes, aligned), reaching
    /// memory through `dma`; a translated device offers (and requires) ACCESS_PLATFORM.
    pub fn new(
        bdf: Bdf,
        device: Box<dyn VirtioDevice>,
        ram: GuestMemoryMmap,
        msi: Arc<dyn MsiInterruptGroup>,
        bar_address: u64,
        dma: DeviceDma,
    ) -> Result<Self, TransportError> {
        let max_sizes = device.queue_max_sizes().to_vec();
        if max_sizes.len() > MAX_QUEUES {
            return Err(TransportError::TooManyQueues(max_sizes.len()));
        }
        let queues = max_sizes
            .iter()
            .enumerate()
            .map(|(index, &size)| {
                Queue::new(size).map_err(|_| TransportError::QueueSize { index, size })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let notifiers = (0..queues.len())
            .map(|_| EventFd::new(EFD_NONBLOCK).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(TransportError::EventFd)?;

        let device_type = device.device_type();
        let mut config = PciConfiguration::new(PciIdentity {
            vendor: VIRTIO_PCI_VENDOR,
            device: VIRTIO_PCI_DEVICE_BASE + device_type as u16,
            class: pci_class(device_type),
            revision: 1,
            subsystem_vendor: VIRTIO_PCI_VENDOR,
            subsystem: VIRTIO_PCI_SUBSYSTEM,
        });
        config
            .add_memory_bar(
                usize::from(VIRTIO_BAR),
                BarRegionKind::Memory64,
                BAR_SIZE,
                bar_address,
                false,
            )
            .map_err(|e| TransportError::Bar(bar_address, e))?;
        let caps = [
            VirtioPciCap::new(CFG_TYPE_COMMON, COMMON_OFFSET, COMMON_LEN).to_bytes(),
            VirtioPciCap::new(CFG_TYPE_ISR, ISR_OFFSET, ISR_LEN).to_bytes(),
            VirtioPciCap::new(CFG_TYPE_DEVICE, DEVICE_OFFSET, DEVICE_LEN).to_bytes(),
            VirtioPciNotifyCap::new(queues.len()).to_bytes(),
        ];
        for cap in caps {
            config
                .add_capability(&cap, &[])
                .expect("the virtio capabilities fit the configuration space");
        }
        let pci_cfg_capability = config
            .add_capability(
                &VirtioPciCfgCap::new().to_bytes(),
                &VirtioPciCfgCap::writable_mask(),
            )
            .expect("the virtio capabilities fit the configuration space");
        // One vector per queue plus one for configuration changes.
        let msix_state = MsixState::new(queues.len() as u16 + 1, msi);
        let (body, writable) = msix_state.capability(MsixLayout {
            table_bar: VIRTIO_BAR,
            table_offset: MSIX_TABLE_OFFSET as u32,
            pba_bar: VIRTIO_BAR,
            pba_offset: MSIX_PBA_OFFSET as u32,
        });
        let msix_capability = config
            .add_capability(&body, &writable)
            .expect("the MSI-X capability fits the configuration space");
        debug_assert_eq!(body.len(), MSIX_CAPABILITY_LEN);

        // Every device serves its queues through the same queue server, which handles
        // indirect descriptors and event indices. Behind the IOMMU a driver maps each
        // indirect table for DMA like any buffer: one more MAP and UNMAP per request, each a
        // synchronous virtio-iommu round trip (Linux: 4 instead of 3 for a 4 KiB block
        // request), to save ring slots. There the slots are the cheaper resource.
        let mut offered = device.features() | features::VERSION_1 | features::RING_EVENT_IDX;
        if dma.is_translated() {
            offered |= features::ACCESS_PLATFORM;
        } else {
            offered |= features::RING_INDIRECT_DESC;
        }
        Ok(Self {
            bdf,
            config,
            msix_capability,
            pci_cfg_capability,
            msix: Arc::new(Mutex::new(msix_state)),
            vectors: Arc::new(VectorTable::new(queues.len())),
            device,
            offered,
            driver: DriverState::default(),
            queues,
            notifiers,
            isr: Arc::new(AtomicU8::new(0)),
            ram,
            dma,
            activated: false,
        })
    }

    pub fn bdf(&self) -> Bdf {
        self.bdf
    }

    /// The function's MSI-X state, shared with its worker (for diagnostics).
    pub fn msix(&self) -> SharedMsix {
        self.msix.clone()
    }

    /// Feature bits offered to the driver.
    pub fn offered_features(&self) -> u64 {
        self.offered
    }

    pub fn status(&self) -> u8 {
        self.driver.status
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(usize::from(self.driver.queue_select))
    }

    fn read_common(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if cc::register_width(offset) != Some(data.len()) {
            return;
        }
        let select = usize::from(self.driver.queue_select);
        let queue = self.queues.get(select);
        let value: u64 = match offset {
            cc::DEVICE_FEATURE_SELECT => u64::from(self.driver.device_feature_select),
            cc::DEVICE_FEATURE => match self.driver.device_feature_select {
                0 => self.offered & 0xffff_ffff,
                1 => self.offered >> 32,
                _ => 0,
            },
            cc::DRIVER_FEATURE_SELECT => u64::from(self.driver.driver_feature_select),
            cc::DRIVER_FEATURE => match self.driver.driver_feature_select {
                0 => self.driver.driver_features & 0xffff_ffff,
                1 => self.driver.driver_features >> 32,
                _ => 0,
            },
            cc::CONFIG_MSIX_VECTOR => u64::from(self.vectors.config.load(Ordering::Relaxed)),
            cc::NUM_QUEUES => self.queues.len() as u64,
            cc::DEVICE_STATUS => u64::from(self.driver.status),
            cc::CONFIG_GENERATION => 0,
            cc::QUEUE_SELECT => u64::from(self.driver.queue_select),
            cc::QUEUE_SIZE => queue.map_or(0, |q| u64::from(q.size())),
            cc::QUEUE_MSIX_VECTOR => self
                .vectors
                .queues
                .get(select)
                .map_or(u64::from(NO_VECTOR), |v| {
                    u64::from(v.load(Ordering::Relaxed))
                }),
            cc::QUEUE_ENABLE => queue.map_or(0, |q| u64::from(q.ready())),
            cc::QUEUE_NOTIFY_OFF => queue.map_or(0, |_| select as u64),
            cc::QUEUE_DESC_LO => queue.map_or(0, |q| q.desc_table() & 0xffff_ffff),
            cc::QUEUE_DESC_HI => queue.map_or(0, |q| q.desc_table() >> 32),
            cc::QUEUE_DRIVER_LO => queue.map_or(0, |q| q.avail_ring() & 0xffff_ffff),
            cc::QUEUE_DRIVER_HI => queue.map_or(0, |q| q.avail_ring() >> 32),
            cc::QUEUE_DEVICE_LO => queue.map_or(0, |q| q.used_ring() & 0xffff_ffff),
            cc::QUEUE_DEVICE_HI => queue.map_or(0, |q| q.used_ring() >> 32),
            _ => 0,
        };
        data.copy_from_slice(&value.to_le_bytes()[..data.len()]);
    }

    fn write_common(&mut self, offset: u64, data: &[u8]) {
        if cc::register_width(offset) != Some(data.len()) {
            return;
        }
        let mut bytes = [0u8; 4];
        bytes[..data.len()].copy_from_slice(data);
        let value = u32::from_le_bytes(bytes);
        match offset {
            cc::DEVICE_FEATURE_SELECT => self.driver.device_feature_select = value,
            cc::DRIVER_FEATURE_SELECT => self.driver.driver_feature_select = value,
            cc::DRIVER_FEATURE => self.write_driver_features(value),
            cc::CONFIG_MSIX_VECTOR => {
                let vector = self.valid_vector(value as u16);
                self.vectors.config.store(vector, Ordering::Relaxed);
            }
            cc::DEVICE_STATUS => self.write_status(value as u8),
            cc::QUEUE_SELECT => self.driver.queue_select = value as u16,
            cc::QUEUE_MSIX_VECTOR => {
                let vector = self.valid_vector(value as u16);
                if let Some(v) = self
                    .vectors
                    .queues
                    .get(usize::from(self.driver.queue_select))
                {
                    v.store(vector, Ordering::Relaxed);
                }
            }
            _ => self.write_queue_register(offset, value),
        }
    }

    /// A vector the table has, or NO_VECTOR (which tells the driver the mapping failed).
    fn valid_vector(&self, vector: u16) -> u16 {
        if vector < self.msix.lock().unwrap().vectors() {
            vector
        } else {
            NO_VECTOR
        }
    }

    fn write_driver_features(&mut self, value: u32) {
        if self.driver.status & status::FEATURES_OK != 0 {
            return;
        }
        let value = u64::from(value);
        let features = &mut self.driver.driver_features;
        match self.driver.driver_feature_select {
            0 => *features = *features & !0xffff_ffff | value,
            1 => *features = *features & 0xffff_ffff | value << 32,
            _ => {}
        }
    }

    /// Queue registers change only before DRIVER_OK: the worker owns the queues after it,
    /// or will once bus mastering is enabled.
    fn write_queue_register(&mut self, offset: u64, value: u32) {
        if self.activated || self.driver.status & status::DRIVER_OK != 0 {
            return;
        }
        let Some(queue) = self.selected_queue() else {
            return;
        };
        let replace_low = |addr: u64| addr & !0xffff_ffff | u64::from(value);
        let replace_high = |addr: u64| addr & 0xffff_ffff | u64::from(value) << 32;
        // Invalid sizes and misaligned rings are ignored; the driver sees the old value.
        let _ = match offset {
            cc::QUEUE_SIZE => queue.try_set_size(value as u16),
            cc::QUEUE_ENABLE => {
                if value == 1 {
                    queue.set_ready(true);
                }
                Ok(())
            }
            cc::QUEUE_DESC_LO => {
                queue.try_set_desc_table_address(GuestAddress(replace_low(queue.desc_table())))
            }
            cc::QUEUE_DESC_HI => {
                queue.try_set_desc_table_address(GuestAddress(replace_high(queue.desc_table())))
            }
            cc::QUEUE_DRIVER_LO => {
                queue.try_set_avail_ring_address(GuestAddress(replace_low(queue.avail_ring())))
            }
            cc::QUEUE_DRIVER_HI => {
                queue.try_set_avail_ring_address(GuestAddress(replace_high(queue.avail_ring())))
            }
            cc::QUEUE_DEVICE_LO => {
                queue.try_set_used_ring_address(GuestAddress(replace_low(queue.used_ring())))
            }
            cc::QUEUE_DEVICE_HI => {
                queue.try_set_used_ring_address(GuestAddress(replace_high(queue.used_ring())))
            }
            _ => Ok(()),
        };
    }

    fn write_status(&mut self, value: u8) {
        if value == 0 {
            self.reset();
            return;
        }
        let old = self.driver.status;
        // The driver sets bits; only a reset clears them, and NEEDS_RESET is the device's.
        let mut new = old | value & !status::NEEDS_RESET;
        if new & status::FEATURES_OK != 0
            && old & status::FEATURES_OK == 0
            && !self.features_acceptable()
        {
            new &= !status::FEATURES_OK;
        }
        if new & status::DRIVER_OK != 0 && new & status::FEATURES_OK == 0 {
            new &= !status::DRIVER_OK;
        }
        self.driver.status = new;
        self.activate_if_ready();
    }

    /// Starts the worker once DRIVER_OK and Bus Master Enable are both set (see the module
    /// documentation), unless the device needs a reset first.
    fn activate_if_ready(&mut self) {
        let status = self.driver.status;
        if !self.activated
            && status & status::DRIVER_OK != 0
            && status & status::NEEDS_RESET == 0
            && self.config.bus_master_enabled()
        {
            self.activate();
        }
    }

    /// The guest changed Bus Master Enable.
    fn bus_master_changed(&mut self) {
        match (self.config.bus_master_enabled(), self.activated) {
            (true, true) => self.dma.tlb().resume(),
            (true, false) => self.activate_if_ready(),
            (false, true) => {
                log::debug!(
                    "{}: bus mastering disabled while running: DMA paused",
                    self.bdf
                );
                self.dma.tlb().pause();
            }
            (false, false) => {}
        }
    }

    fn features_acceptable(&self) -> bool {
        let wanted = self.driver.driver_features;
        let platform_ok = !self.dma.is_translated() || wanted & features::ACCESS_PLATFORM != 0;
        wanted & !self.offered == 0 && wanted & features::VERSION_1 != 0 && platform_ok
    }

    fn activate(&mut self) {
        let acked = self.driver.driver_features;
        let mem = self.dma.memory(self.ram.clone());
        let event_idx = acked & features::RING_EVENT_IDX != 0;
        let mut queues = Vec::new();
        for (index, queue) in self.queues.iter().enumerate() {
            if !queue.ready() {
                continue;
            }
            if !queue.is_valid(&mem) {
                log::warn!("{}: queue {index} is not in guest memory", self.bdf);
                self.fail();
                return;
            }
            let Ok(mut copy) = Queue::try_from(queue.state()) else {
                self.fail();
                return;
            };
            copy.set_event_idx(event_idx);
            queues.push(ActiveQueue {
                index: index as u16,
                queue: copy,
                notifier: self.notifiers[index].clone(),
            });
        }
        let interrupt = Arc::new(PciInterrupt {
            msix: self.msix.clone(),
            vectors: self.vectors.clone(),
            isr: self.isr.clone(),
            gate: mem.clone(),
        });
        match self.device.activate(ActivateContext {
            mem,
            queues,
            interrupt,
            acked_features: acked,
        }) {
            Ok(()) => self.activated = true,
            Err(e) => {
                log::warn!("{}: activation failed: {e}", self.bdf);
                self.fail();
            }
        }
    }

    /// The device cannot go on until the driver resets it.
    fn fail(&mut self) {
        self.driver.status |= status::NEEDS_RESET;
        let vector = self.vectors.config.load(Ordering::Relaxed);
        if vector != NO_VECTOR && self.config.bus_master_enabled() {
            self.msix.lock().unwrap().trigger(vector);
        }
    }

    /// Virtio reset: the worker stops, its DMA is revoked, queues and negotiated features
    /// are forgotten.
    fn reset(&mut self) {
        self.device.reset();
        self.dma.tlb().revoke();
        self.activated = false;
        self.driver = DriverState::default();
        for queue in &mut self.queues {
            queue.reset();
        }
        self.vectors.clear();
        self.isr.store(0, Ordering::SeqCst);
    }

    fn msix_control_register(&self) -> usize {
        self.msix_capability / 4
    }

    fn pci_cfg_data_register(&self) -> usize {
        (self.pci_cfg_capability + PCI_CFG_DATA) / 4
    }

    /// The BAR access pci_cfg_data currently stands for, if the driver programmed a valid
    /// window.
    fn pci_cfg_window(&self) -> Option<(u64, usize)> {
        let field = |at: usize| self.config.read_reg((self.pci_cfg_capability + at) / 4);
        pci_cfg_target(
            field(PCI_CFG_BAR) as u8,
            field(PCI_CFG_OFFSET),
            field(PCI_CFG_LENGTH),
        )
    }

    /// A driver read of pci_cfg_data: the BAR read it selects, through the MMIO path, lands
    /// in pci_cfg_data. An invalid window reads 0 and touches nothing.
    fn read_pci_cfg_data(&mut self) -> u32 {
        let mut data = [0u8; 4];
        if let Some((offset, len)) = self.pci_cfg_window() {
            self.read_bar(usize::from(VIRTIO_BAR), offset, &mut data[..len]);
        }
        let value = u32::from_le_bytes(data);
        self.config.set_reg(self.pci_cfg_data_register(), value);
        value
    }

    /// A driver write of pci_cfg_data: its first `length` bytes go to the BAR through the
    /// MMIO path. An invalid window drops the write.
    fn write_pci_cfg_data(&mut self) {
        if let Some((offset, len)) = self.pci_cfg_window() {
            let data = self
                .config
                .read_reg(self.pci_cfg_data_register())
                .to_le_bytes();
            self.write_bar(usize::from(VIRTIO_BAR), offset, &data[..len]);
        }
    }
}

impl PciDevice for VirtioPciDevice {
    fn read_config_register(&mut self, reg: usize) -> u32 {
        if reg == self.pci_cfg_data_register() {
            return self.read_pci_cfg_data();
        }
        self.config.read_reg(reg)
    }

    fn write_config_register(&mut self, reg: usize, offset: usize, data: &[u8]) -> Option<BarMove> {
        if data.is_empty() || offset + data.len() > 4 {
            return None;
        }
        let bus_master = self.config.bus_master_enabled();
        let moved = self.config.write_reg(reg, offset, data);
        if reg == self.msix_control_register() {
            let control = (self.config.read_reg(reg) >> 16) as u16;
            self.msix.lock().unwrap().set_message_control(control);
        }
        if reg == self.pci_cfg_data_register() {
            self.write_pci_cfg_data();
        }
        if self.config.bus_master_enabled() != bus_master {
            self.bus_master_changed();
        }
        moved
    }

    fn bars(&self) -> Vec<PciBar> {
        let (address, size) = self
            .config
            .bar(usize::from(VIRTIO_BAR))
            .expect("the virtio BAR exists");
        vec![PciBar {
            index: usize::from(VIRTIO_BAR),
            address,
            size,
        }]
    }

    fn read_bar(&mut self, _bar: usize, offset: u64, data: &mut [u8]) {
        match offset {
            o if o < COMMON_OFFSET + COMMON_LEN => self.read_common(o - COMMON_OFFSET, data),
            o if (ISR_OFFSET..ISR_OFFSET + ISR_LEN).contains(&o) => {
                data.fill(0);
                // Reading the ISR acknowledges it.
                data[0] = self.isr.swap(0, Ordering::SeqCst);
            }
            o if (DEVICE_OFFSET..DEVICE_OFFSET + DEVICE_LEN).contains(&o) => {
                self.device.read_config(o - DEVICE_OFFSET, data)
            }
            o if (MSIX_TABLE_OFFSET..MSIX_TABLE_OFFSET + MSIX_TABLE_LEN).contains(&o) => self
                .msix
                .lock()
                .unwrap()
                .read_table(o - MSIX_TABLE_OFFSET, data),
            o if (MSIX_PBA_OFFSET..MSIX_PBA_OFFSET + MSIX_PBA_LEN).contains(&o) => self
                .msix
                .lock()
                .unwrap()
                .read_pba(o - MSIX_PBA_OFFSET, data),
            _ => data.fill(0),
        }
    }

    fn write_bar(&mut self, _bar: usize, offset: u64, data: &[u8]) {
        match offset {
            o if o < COMMON_OFFSET + COMMON_LEN => self.write_common(o - COMMON_OFFSET, data),
            o if (DEVICE_OFFSET..DEVICE_OFFSET + DEVICE_LEN).contains(&o) => {
                self.device.write_config(o - DEVICE_OFFSET, data)
            }
            o if (NOTIFY_OFFSET..NOTIFY_OFFSET + NOTIFY_LEN).contains(&o) => {
                // Reached for inline queues, and for others when no ioeventfd is registered.
                let index = ((o - NOTIFY_OFFSET) / u64::from(NOTIFY_MULTIPLIER)) as usize;
                let bit = 1u64.checked_shl(index as u32).unwrap_or(0);
                if self.device.inline_queues() & bit != 0 {
                    if self.activated {
                        self.device.notify_inline(index as u16);
                    }
                } else if let Some(fd) = self.notifiers.get(index) {
                    let _ = fd.write(1);
                }
            }
            o if (MSIX_TABLE_OFFSET..MSIX_TABLE_OFFSET + MSIX_TABLE_LEN).contains(&o) => self
                .msix
                .lock()
                .unwrap()
                .write_table(o - MSIX_TABLE_OFFSET, data),
            _ => {}
        }
    }

    fn ioeventfds(&self, bar: usize) -> Vec<(u64, &EventFd)> {
        if bar != usize::from(VIRTIO_BAR) {
            return Vec::new();
        }
        // Inline queues' notifications must reach the device through the bus.
        let inline = self.device.inline_queues();
        self.notifiers
            .iter()
            .enumerate()
            .filter(|&(i, _)| inline & 1u64.checked_shl(i as u32).unwrap_or(0) == 0)
            .map(|(i, fd)| {
                (
                    NOTIFY_OFFSET + i as u64 * u64::from(NOTIFY_MULTIPLIER),
                    fd.as_ref(),
                )
            })
            .collect()
    }
}

impl Drop for VirtioPciDevice {
    fn drop(&mut self) {
        self.device.reset();
        self.dma.tlb().revoke();
    }
}

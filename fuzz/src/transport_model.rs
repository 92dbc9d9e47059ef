//! A reference model of the modern virtio-pci transport (virtio 1.x, 4.1) as nestor lays it
//! out: the common configuration registers, feature negotiation, the status state machine,
//! queue setup, activation at DRIVER_OK with bus mastering, reset, the ISR, the device
//! configuration window, and the MSI-X vectors behind the BAR.

use crate::guest::reachable;
use crate::msix_model::MsixModel;

pub const COMMON_LEN: u64 = 0x38;
pub const ISR_OFFSET: u64 = 0x1000;
pub const DEVICE_OFFSET: u64 = 0x2000;
pub const NOTIFY_OFFSET: u64 = 0x3000;
pub const TABLE_OFFSET: u64 = 0x4000;
pub const PBA_OFFSET: u64 = 0x6000;
pub const BAR_SIZE: u64 = 0x8000;
pub const NO_VECTOR: u16 = 0xffff;

pub const ACKNOWLEDGE: u8 = 1;
pub const DRIVER: u8 = 2;
pub const DRIVER_OK: u8 = 4;
pub const FEATURES_OK: u8 = 8;
pub const NEEDS_RESET: u8 = 0x40;

pub const VERSION_1: u64 = 1 << 32;
pub const ACCESS_PLATFORM: u64 = 1 << 33;
pub const RING_INDIRECT_DESC: u64 = 1 << 28;
pub const RING_EVENT_IDX: u64 = 1 << 29;

/// How the device reaches guest memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmaKind {
    Untranslated,
    /// Behind an IOMMU that lets everything through.
    Bypassed,
    /// Behind an IOMMU that blocks everything.
    Blocked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueRegs {
    pub max: u16,
    pub size: u16,
    pub ready: bool,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    pub vector: u16,
}

impl QueueRegs {
    fn new(max: u16) -> Self {
        Self {
            max,
            size: max,
            ready: false,
            desc: 0,
            avail: 0,
            used: 0,
            vector: NO_VECTOR,
        }
    }
}

/// The device behind the transport, as far as the transport shows it.
pub struct DeviceModel {
    pub config: Vec<u8>,
    /// Offset of the one byte the driver may write (with 0 or 1), if any.
    pub writable_byte: Option<u64>,
    /// Queue indices the device can start with; None: any.
    pub needs_queues: Option<Vec<u16>>,
}

/// What the model expects an activation to have been given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedActivation {
    pub acked: u64,
    pub queues: Vec<(u16, QueueRegs)>,
}

pub struct TransportModel {
    pub offered: u64,
    pub dma: DmaKind,
    pub device: DeviceModel,
    pub device_feature_select: u32,
    pub driver_feature_select: u32,
    pub driver_features: u64,
    pub status: u8,
    pub queue_select: u16,
    pub config_vector: u16,
    pub queues: Vec<QueueRegs>,
    pub activated: bool,
    pub isr: u8,
    pub bus_master: bool,
    pub msix: MsixModel,
    /// Notifications each queue's eventfd should have seen since last checked.
    pub notified: Vec<u64>,
    /// Activations the device should have been asked for, oldest first.
    pub activations: Vec<ExpectedActivation>,
    /// Activations before this index were revoked by a reset.
    pub revoked: usize,
    /// The device refuses its next activation.
    pub refuse_activation: bool,
}

impl TransportModel {
    pub fn new(device_features: u64, queue_max: &[u16], dma: DmaKind, device: DeviceModel) -> Self {
        // Indirect descriptors only where they cost no IOMMU round trips (untranslated).
        let mut offered = device_features | VERSION_1 | RING_EVENT_IDX;
        if dma != DmaKind::Untranslated {
            offered |= ACCESS_PLATFORM;
        } else {
            offered |= RING_INDIRECT_DESC;
        }
        Self {
            offered,
            dma,
            device,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            status: 0,
            queue_select: 0,
            config_vector: NO_VECTOR,
            queues: queue_max.iter().map(|&m| QueueRegs::new(m)).collect(),
            activated: false,
            isr: 0,
            bus_master: false,
            msix: MsixModel::new(queue_max.len() as u16 + 1),
            notified: vec![0; queue_max.len()],
            activations: Vec::new(),
            revoked: 0,
            refuse_activation: false,
        }
    }

    fn selected(&self) -> Option<&QueueRegs> {
        self.queues.get(usize::from(self.queue_select))
    }

    fn width(offset: u64) -> Option<usize> {
        match offset {
            0x00 | 0x04 | 0x08 | 0x0c | 0x20 | 0x24 | 0x28 | 0x2c | 0x30 | 0x34 => Some(4),
            0x10 | 0x12 | 0x16 | 0x18 | 0x1a | 0x1c | 0x1e => Some(2),
            0x14 | 0x15 => Some(1),
            _ => None,
        }
    }

    fn read_common(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        if Self::width(offset) != Some(len) {
            return out;
        }
        let q = self.selected();
        let half = |v: u64, select: u32| match select {
            0 => v & 0xffff_ffff,
            1 => v >> 32,
            _ => 0,
        };
        let value = match offset {
            0x00 => u64::from(self.device_feature_select),
            0x04 => half(self.offered, self.device_feature_select),
            0x08 => u64::from(self.driver_feature_select),
            0x0c => half(self.driver_features, self.driver_feature_select),
            0x10 => u64::from(self.config_vector),
            0x12 => self.queues.len() as u64,
            0x14 => u64::from(self.status),
            0x15 => 0,
            0x16 => u64::from(self.queue_select),
            0x18 => q.map_or(0, |q| u64::from(q.size)),
            0x1a => q.map_or(u64::from(NO_VECTOR), |q| u64::from(q.vector)),
            0x1c => q.map_or(0, |q| u64::from(q.ready)),
            0x1e => q.map_or(0, |_| u64::from(self.queue_select)),
            0x20 => q.map_or(0, |q| q.desc & 0xffff_ffff),
            0x24 => q.map_or(0, |q| q.desc >> 32),
            0x28 => q.map_or(0, |q| q.avail & 0xffff_ffff),
            0x2c => q.map_or(0, |q| q.avail >> 32),
            0x30 => q.map_or(0, |q| q.used & 0xffff_ffff),
            _ => q.map_or(0, |q| q.used >> 32),
        };
        out.copy_from_slice(&value.to_le_bytes()[..len]);
        out
    }

    fn valid_vector(&self, v: u16) -> u16 {
        if v < self.msix.vectors() {
            v
        } else {
            NO_VECTOR
        }
    }

    fn write_common(&mut self, offset: u64, data: &[u8]) {
        if Self::width(offset) != Some(data.len()) {
            return;
        }
        let mut b = [0u8; 4];
        b[..data.len()].copy_from_slice(data);
        let value = u32::from_le_bytes(b);
        match offset {
            0x00 => self.device_feature_select = value,
            0x08 => self.driver_feature_select = value,
            0x0c => {
                if self.status & FEATURES_OK == 0 {
                    let v = u64::from(value);
                    match self.driver_feature_select {
                        0 => self.driver_features = self.driver_features & !0xffff_ffff | v,
                        1 => self.driver_features = self.driver_features & 0xffff_ffff | v << 32,
                        _ => {}
                    }
                }
            }
            0x10 => self.config_vector = self.valid_vector(value as u16),
            0x14 => self.write_status(value as u8),
            0x16 => self.queue_select = value as u16,
            0x1a => {
                let v = self.valid_vector(value as u16);
                if let Some(q) = self.queues.get_mut(usize::from(self.queue_select)) {
                    q.vector = v;
                }
            }
            _ => self.write_queue(offset, value),
        }
    }

    fn write_queue(&mut self, offset: u64, value: u32) {
        if self.activated || self.status & DRIVER_OK != 0 {
            return;
        }
        let Some(q) = self.queues.get_mut(usize::from(self.queue_select)) else {
            return;
        };
        let low = |a: u64| a & !0xffff_ffff | u64::from(value);
        let high = |a: u64| a & 0xffff_ffff | u64::from(value) << 32;
        let set = |field: &mut u64, new: u64, align: u64| {
            if new % align == 0 {
                *field = new;
            }
        };
        let (desc, avail, used) = (q.desc, q.avail, q.used);
        match offset {
            0x18 => {
                let size = value as u16;
                if size != 0 && size <= q.max && size.is_power_of_two() {
                    q.size = size;
                }
            }
            0x1c => {
                if value == 1 {
                    q.ready = true;
                }
            }
            0x20 => set(&mut q.desc, low(desc), 16),
            0x24 => set(&mut q.desc, high(desc), 16),
            0x28 => set(&mut q.avail, low(avail), 2),
            0x2c => set(&mut q.avail, high(avail), 2),
            0x30 => set(&mut q.used, low(used), 4),
            0x34 => set(&mut q.used, high(used), 4),
            _ => {}
        }
    }

    fn features_acceptable(&self) -> bool {
        let wanted = self.driver_features;
        wanted & !self.offered == 0
            && wanted & VERSION_1 != 0
            && (self.dma == DmaKind::Untranslated || wanted & ACCESS_PLATFORM != 0)
    }

    pub fn write_status(&mut self, value: u8) {
        if value == 0 {
            self.reset();
            return;
        }
        let old = self.status;
        let mut new = old | value & !NEEDS_RESET;
        if new & FEATURES_OK != 0 && old & FEATURES_OK == 0 && !self.features_acceptable() {
            new &= !FEATURES_OK;
        }
        if new & DRIVER_OK != 0 && new & FEATURES_OK == 0 {
            new &= !DRIVER_OK;
        }
        self.status = new;
        self.activate_if_ready();
    }

    pub fn activate_if_ready(&mut self) {
        if !self.activated
            && self.status & DRIVER_OK != 0
            && self.status & NEEDS_RESET == 0
            && self.bus_master
        {
            self.activate();
        }
    }

    fn reachable_through_dma(&self, addr: u64, len: u64) -> bool {
        match self.dma {
            DmaKind::Blocked => false,
            _ => reachable(addr, len),
        }
    }

    fn activate(&mut self) {
        let mut queues = Vec::new();
        for (i, q) in self.queues.iter().enumerate() {
            if !q.ready {
                continue;
            }
            let n = u64::from(q.size);
            let valid = self.reachable_through_dma(q.desc, 16 * n)
                && self.reachable_through_dma(q.avail, 6 + 2 * n)
                && self.reachable_through_dma(q.used, 6 + 8 * n);
            if !valid {
                self.fail();
                return;
            }
            queues.push((i as u16, *q));
        }
        let indices: Vec<u16> = queues.iter().map(|(i, _)| *i).collect();
        let refused = std::mem::take(&mut self.refuse_activation);
        let accepted = !refused
            && self
                .device
                .needs_queues
                .as_ref()
                .is_none_or(|need| *need == indices);
        self.activations.push(ExpectedActivation {
            acked: self.driver_features,
            queues,
        });
        if accepted {
            self.activated = true;
        } else {
            self.fail();
        }
    }

    fn fail(&mut self) {
        self.status |= NEEDS_RESET;
        if self.config_vector != NO_VECTOR && self.bus_master {
            self.msix.trigger(self.config_vector);
        }
    }

    pub fn reset(&mut self) {
        self.revoked = self.activations.len();
        self.activated = false;
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.driver_features = 0;
        self.status = 0;
        self.queue_select = 0;
        self.config_vector = NO_VECTOR;
        for q in &mut self.queues {
            *q = QueueRegs::new(q.max);
        }
        self.isr = 0;
    }

    pub fn set_bus_master(&mut self, on: bool) {
        let was = self.bus_master;
        self.bus_master = on;
        if on && !was {
            self.activate_if_ready();
        }
    }

    /// A driver read of `len` bytes at `offset` of the BAR.
    pub fn read_bar(&mut self, offset: u64, len: usize) -> Vec<u8> {
        match offset {
            o if o < COMMON_LEN => self.read_common(o, len),
            ISR_OFFSET => {
                let mut out = vec![0u8; len];
                out[0] = std::mem::take(&mut self.isr);
                out
            }
            o if (DEVICE_OFFSET..DEVICE_OFFSET + 0x1000).contains(&o) => {
                let at = (o - DEVICE_OFFSET) as usize;
                let mut out = vec![0u8; len];
                for (i, b) in out.iter_mut().enumerate() {
                    *b = self.device.config.get(at + i).copied().unwrap_or(0);
                }
                out
            }
            o if (TABLE_OFFSET..TABLE_OFFSET + 0x2000).contains(&o) => {
                self.msix.read_table(o - TABLE_OFFSET, len)
            }
            o if (PBA_OFFSET..PBA_OFFSET + 0x1000).contains(&o) => {
                self.msix.read_pba(o - PBA_OFFSET, len)
            }
            _ => vec![0u8; len],
        }
    }

    /// A driver write at `offset` of the BAR.
    pub fn write_bar(&mut self, offset: u64, data: &[u8]) {
        match offset {
            o if o < COMMON_LEN => self.write_common(o, data),
            o if (DEVICE_OFFSET..DEVICE_OFFSET + 0x1000).contains(&o) => {
                let at = o - DEVICE_OFFSET;
                if Some(at) == self.device.writable_byte && data.len() == 1 && data[0] <= 1 {
                    self.device.config[at as usize] = data[0];
                }
            }
            o if (NOTIFY_OFFSET..NOTIFY_OFFSET + 0x1000).contains(&o) => {
                let index = ((o - NOTIFY_OFFSET) / 4) as usize;
                if let Some(n) = self.notified.get_mut(index) {
                    *n += 1;
                }
            }
            o if (TABLE_OFFSET..TABLE_OFFSET + 0x2000).contains(&o) => {
                self.msix.write_table(o - TABLE_OFFSET, data)
            }
            _ => {}
        }
    }

    /// Whether activation `index` still reaches the guest: until the next reset, even if
    /// the device refused it.
    pub fn is_live(&self, index: usize) -> bool {
        index >= self.revoked
    }

    /// Whether the running activation's DMA waits for bus mastering.
    pub fn is_paused(&self) -> bool {
        self.activated && !self.bus_master
    }

    /// A live activation raises a queue (Some) or configuration (None) interrupt.
    pub fn raise(&mut self, queue: Option<usize>) {
        let (vector, bit) = match queue {
            Some(i) => (self.queues.get(i).map_or(NO_VECTOR, |q| q.vector), 1),
            None => (self.config_vector, 2),
        };
        self.isr |= bit;
        if vector != NO_VECTOR {
            self.msix.trigger(vector);
        }
    }
}

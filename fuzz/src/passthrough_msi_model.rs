//! Reference models of a passthrough function's MSI-X and MSI (PCI spec, "MSI-X" and "MSI
//! Capability Structure"): what the guest reads and may write, which host calls each write
//! makes, which vectors are routed and what the device raises becomes.
//!
//! MSI-X: a vector is routed to its entry's message while the guest's enable bit is set,
//! and held while the function or the vector is masked; what is raised while held is
//! pending (the PBA shows it) and delivered, through the route then set, on unmasking.
//! MSI: a vector is routed while enabled and not masked; nothing is held.

use devices::interrupt::MsiMessage;
use devices::vfio::testing::DeviceCall;

const ENTRY: u64 = 16;

pub struct MsixModel {
    pub vectors: u16,
    pub table_bar: u32,
    pub table_offset: u64,
    pub pba_bar: u32,
    pub pba_offset: u64,
    entries: Vec<[u32; 4]>,
    pub enabled: bool,
    pub function_masked: bool,
    pub held: Vec<bool>,
    pending: Vec<bool>,
}

/// A delivery: the vector and the route it went through (`None`: dropped).
pub type Delivery = (u16, Option<MsiMessage>);

fn aligned(offset: u64, len: usize) -> bool {
    (len == 4 || len == 8) && offset.is_multiple_of(len as u64)
}

impl MsixModel {
    /// From the capability's message control, table and PBA dwords, with at most
    /// `host_vectors` vectors.
    pub fn new(control: u16, table: u32, pba: u32, host_vectors: u32) -> Self {
        let vectors = ((control & 0x7ff) + 1).min(host_vectors.min(0xffff) as u16);
        Self {
            vectors,
            table_bar: table & 7,
            table_offset: u64::from(table & !7),
            pba_bar: pba & 7,
            pba_offset: u64::from(pba & !7),
            entries: vec![[0, 0, 0, 1]; usize::from(vectors)],
            enabled: false,
            function_masked: false,
            held: vec![false; usize::from(vectors)],
            pending: vec![false; usize::from(vectors)],
        }
    }

    pub fn table_len(&self) -> u64 {
        u64::from(self.vectors) * ENTRY
    }

    pub fn pba_len(&self) -> u64 {
        u64::from(self.vectors).div_ceil(64) * 8
    }

    /// The offset into the table of an access wholly inside it.
    pub fn table_offset_of(&self, bar: u32, offset: u64, len: usize) -> Option<u64> {
        let within = offset.checked_sub(self.table_offset)?;
        (bar == self.table_bar && within.checked_add(len as u64)? <= self.table_len())
            .then_some(within)
    }

    /// The offset into the PBA of an access wholly inside it (and not in the table).
    pub fn pba_offset_of(&self, bar: u32, offset: u64, len: usize) -> Option<u64> {
        let within = offset.checked_sub(self.pba_offset)?;
        (bar == self.pba_bar && within.checked_add(len as u64)? <= self.pba_len()).then_some(within)
    }

    /// Message control's upper byte as the guest reads it: table size bits 8-10, then
    /// function mask and enable.
    pub fn control_high(&self) -> u8 {
        ((self.vectors - 1) >> 8) as u8 & 7
            | u8::from(self.function_masked) << 6
            | u8::from(self.enabled) << 7
    }

    pub fn control_low(&self) -> u8 {
        (self.vectors - 1) as u8
    }

    /// The guest wrote message control's upper byte.
    pub fn write_control_high(
        &mut self,
        value: u8,
        calls: &mut Vec<DeviceCall>,
        delivered: &mut Vec<Delivery>,
    ) {
        let enable = value & 0x80 != 0;
        self.function_masked = value & 0x40 != 0;
        if enable != self.enabled {
            calls.push(if enable {
                DeviceCall::EnableMsix(usize::from(self.vectors))
            } else {
                DeviceCall::DisableMsix
            });
            self.enabled = enable;
        }
        self.sync(delivered);
    }

    /// Holds and releases vectors as the masks now say; a released vector's pending
    /// signal goes through its route as it is now.
    fn sync(&mut self, delivered: &mut Vec<Delivery>) {
        let routes = self.routes();
        for v in 0..self.entries.len() {
            let hold = self.enabled && (self.function_masked || self.entries[v][3] & 1 != 0);
            if self.held[v] && !hold && std::mem::take(&mut self.pending[v]) {
                delivered.push((v as u16, routes[v]));
            }
            self.held[v] = hold;
        }
    }

    /// The host device raises vector `v`.
    pub fn raise(&mut self, v: usize, delivered: &mut Vec<Delivery>) {
        if self.held[v] {
            self.pending[v] = true;
        } else {
            delivered.push((v as u16, self.routes()[v]));
        }
    }

    /// A PBA read: a held vector with a signal waiting is pending.
    pub fn read_pba(&self, within: u64, len: usize) -> Vec<u8> {
        let mut data = vec![0u8; len];
        if aligned(within, len) {
            for (i, byte) in data.iter_mut().enumerate() {
                for bit in 0..8 {
                    let v = (within as usize + i) * 8 + bit;
                    if v < self.held.len() && self.held[v] && self.pending[v] {
                        *byte |= 1 << bit;
                    }
                }
            }
        }
        data
    }

    pub fn read_table(&self, within: u64, len: usize) -> Vec<u8> {
        let mut data = vec![0u8; len];
        if aligned(within, len) {
            for (i, chunk) in data.chunks_mut(4).enumerate() {
                let at = within + 4 * i as u64;
                let entry = &self.entries[(at / ENTRY) as usize];
                chunk.copy_from_slice(&entry[(at % ENTRY / 4) as usize].to_le_bytes());
            }
        }
        data
    }

    pub fn write_table(&mut self, within: u64, data: &[u8], delivered: &mut Vec<Delivery>) {
        if !aligned(within, data.len()) {
            return;
        }
        for (i, chunk) in data.chunks(4).enumerate() {
            let at = within + 4 * i as u64;
            let dword = (at % ENTRY / 4) as usize;
            let value = u32::from_le_bytes(chunk.try_into().unwrap());
            self.entries[(at / ENTRY) as usize][dword] = if dword == 3 { value & 1 } else { value };
        }
        self.sync(delivered);
    }

    pub fn routes(&self) -> Vec<Option<MsiMessage>> {
        self.entries
            .iter()
            .map(|e| {
                self.enabled.then_some(MsiMessage {
                    address: u64::from(e[1]) << 32 | u64::from(e[0]),
                    data: e[2],
                })
            })
            .collect()
    }
}

pub struct MsiModel {
    /// The capability's bytes from message control on, as the guest reads them.
    regs: [u8; 24],
    writable: [u8; 24],
    pub len: usize,
    is_64: bool,
    mask_at: Option<usize>,
    /// The group's vectors.
    pub vectors: u32,
    /// Vectors the guest may enable, from Multiple Message Capable.
    capable: u32,
    /// Vectors the host has enabled.
    enabled: u32,
}

impl MsiModel {
    /// From the device's message control and the vectors the host gives.
    pub fn new(control: u16, host_vectors: u32) -> Self {
        let is_64 = control & 0x80 != 0;
        let masking = control & 0x100 != 0;
        let device_capable = 1u32 << ((control >> 1) & 7).min(5);
        let vectors = device_capable.min(host_vectors).clamp(1, 32);
        let capable = vectors.next_power_of_two().min(32);
        let data_at = if is_64 { 12 } else { 8 };
        let mask_at = masking.then_some(data_at + 4);
        let len = mask_at.map_or(data_at + 4, |m| m + 8);
        let mut regs = [0u8; 24];
        regs[2] = control as u8 & 0x80 | (capable.trailing_zeros() as u8) << 1;
        regs[3] = u8::from(masking);
        let mut writable = [0u8; 24];
        writable[2] = 0x71;
        writable[4..8].copy_from_slice(&[0xfc, 0xff, 0xff, 0xff]);
        if is_64 {
            writable[8..12].fill(0xff);
        }
        writable[data_at..data_at + 2].fill(0xff);
        if let Some(m) = mask_at {
            let bits = if capable == 32 {
                u32::MAX
            } else {
                (1 << capable) - 1
            };
            writable[m..m + 4].copy_from_slice(&bits.to_le_bytes());
        }
        Self {
            regs,
            writable,
            len,
            is_64,
            mask_at,
            vectors,
            capable,
            enabled: 0,
        }
    }

    /// Byte `rel` (2 or more) of the capability, or `None` past its end.
    pub fn read(&self, rel: usize) -> Option<u8> {
        (rel < self.len).then(|| self.regs[rel])
    }

    /// Returns whether the byte is the capability's.
    pub fn write(&mut self, rel: usize, value: u8) -> bool {
        if rel >= self.len {
            return false;
        }
        let mask = self.writable[rel];
        self.regs[rel] = self.regs[rel] & !mask | value & mask;
        true
    }

    fn dword(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.regs[at..at + 4].try_into().unwrap())
    }

    /// After a write: the host calls it makes.
    pub fn sync(&mut self, calls: &mut Vec<DeviceCall>) {
        let control = self.regs[2];
        let wanted = if control & 1 != 0 {
            (1u32 << ((control >> 4) & 7).min(5)).min(self.capable)
        } else {
            0
        };
        if wanted == self.enabled {
            return;
        }
        if self.enabled > 0 {
            calls.push(DeviceCall::DisableMsi);
            self.enabled = 0;
        }
        if wanted > 0 && wanted <= self.vectors {
            calls.push(DeviceCall::EnableMsi(wanted as usize));
            self.enabled = wanted;
        }
    }

    pub fn routes(&self) -> Vec<Option<MsiMessage>> {
        let data_at = if self.is_64 { 12 } else { 8 };
        let address_high = if self.is_64 { self.dword(8) } else { 0 };
        let address = u64::from(address_high) << 32 | u64::from(self.dword(4));
        let data = u32::from(u16::from_le_bytes([
            self.regs[data_at],
            self.regs[data_at + 1],
        ]));
        let mask = self.mask_at.map_or(0, |m| self.dword(m));
        (0..self.vectors)
            .map(|v| {
                (v < self.enabled && mask & (1 << v) == 0).then(|| MsiMessage {
                    address,
                    data: data & !(self.enabled - 1) | v,
                })
            })
            .collect()
    }
}

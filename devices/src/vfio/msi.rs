//! MSI of a passthrough function without MSI-X: the whole capability is emulated here
//! and never written to the device. The host enables as many vectors as the guest asks
//! for, each signalling one of the group's irqfds; a vector is routed only while MSI is
//! on and the vector is not masked (per-vector masking, when the device has it).

use std::sync::Arc;

use crate::interrupt::{MsiInterruptGroup, MsiMessage};

use super::device_io::VfioDeviceIo;

/// The longest MSI capability: 64-bit address with per-vector masking.
pub const MSI_CAPABILITY_MAX_LEN: usize = 24;
const CONTROL: usize = 2;
const ADDRESS_LOW: usize = 4;
const CONTROL_ENABLE: u8 = 1;
const CONTROL_64BIT: u8 = 1 << 7;
/// In the control word's upper byte.
const CONTROL_PER_VECTOR_MASK: u8 = 1;
/// Multiple Message Enable, bits 6:4.
const CONTROL_MME_SHIFT: u8 = 4;
const MAX_VECTORS: u32 = 32;

pub struct VfioMsi {
    regs: [u8; MSI_CAPABILITY_MAX_LEN],
    writable: [u8; MSI_CAPABILITY_MAX_LEN],
    len: usize,
    data_at: usize,
    mask_at: Option<usize>,
    /// Vectors the guest may enable (a power of two).
    capable: u32,
    /// Vectors enabled on the host; 0 while MSI is off.
    enabled: u32,
    routes: Vec<Option<MsiMessage>>,
    group: Arc<dyn MsiInterruptGroup>,
}

impl VfioMsi {
    /// The vectors a capability with message control `control` asks for, at most
    /// `host_vectors`: the group to create has this many.
    pub fn vectors_wanted(control: u16, host_vectors: u32) -> u16 {
        let capable = 1u32 << ((control >> 1) & 7).min(5);
        capable.min(host_vectors).clamp(1, MAX_VECTORS) as u16
    }

    /// From the device's capability `header` (its first bytes, at least 4); `group` has
    /// `vectors_wanted` vectors.
    pub fn new(header: &[u8], group: Arc<dyn MsiInterruptGroup>, vectors: u16) -> Self {
        let control_low = header[CONTROL];
        let control_high = header[CONTROL + 1];
        let is_64 = control_low & CONTROL_64BIT != 0;
        let masking = control_high & CONTROL_PER_VECTOR_MASK != 0;
        let data_at = if is_64 { 12 } else { 8 };
        let mask_at = masking.then_some(data_at + 4);
        let len = mask_at.map_or(data_at + 4, |m| m + 8);
        // The guest may enable at most the vectors the group has.
        let capable = u32::from(vectors).next_power_of_two().min(MAX_VECTORS);
        let mmc = capable.trailing_zeros() as u8;
        let mut regs = [0u8; MSI_CAPABILITY_MAX_LEN];
        regs[..2].copy_from_slice(&header[..2]);
        regs[CONTROL] = control_low & CONTROL_64BIT | mmc << 1;
        regs[CONTROL + 1] = control_high & CONTROL_PER_VECTOR_MASK;
        let mut writable = [0u8; MSI_CAPABILITY_MAX_LEN];
        writable[CONTROL] = CONTROL_ENABLE | 0x7 << CONTROL_MME_SHIFT;
        writable[ADDRESS_LOW..ADDRESS_LOW + 4].copy_from_slice(&[0xfc, 0xff, 0xff, 0xff]);
        if is_64 {
            writable[8..12].fill(0xff);
        }
        writable[data_at..data_at + 2].fill(0xff);
        if let Some(m) = mask_at {
            writable[m..m + 4].copy_from_slice(&((1u64 << capable) - 1).to_le_bytes()[..4]);
        }
        Self {
            regs,
            writable,
            len,
            data_at,
            mask_at,
            capable,
            enabled: 0,
            routes: vec![None; usize::from(vectors)],
            group,
        }
    }

    /// Byte `rel` of the capability, or `None` past its end.
    pub fn read_byte(&self, rel: usize) -> Option<u8> {
        (rel < self.len).then(|| self.regs[rel])
    }

    /// A guest write of byte `rel`; call [`Self::sync`] once the whole access is written.
    /// Returns false past the capability's end.
    pub fn write_byte(&mut self, rel: usize, value: u8) -> bool {
        if rel >= self.len {
            return false;
        }
        let mask = self.writable[rel];
        self.regs[rel] = self.regs[rel] & !mask | value & mask;
        true
    }

    fn dword(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.regs[at..at + 4].try_into().unwrap_or_default())
    }

    /// Puts the host device and the routes where the registers say.
    pub fn sync(&mut self, device: &dyn VfioDeviceIo) {
        let control = self.regs[CONTROL];
        let wanted = if control & CONTROL_ENABLE != 0 {
            (1u32 << ((control >> CONTROL_MME_SHIFT) & 7).min(5)).min(self.capable)
        } else {
            0
        };
        if wanted != self.enabled {
            if self.enabled > 0 {
                if let Err(e) = device.disable_msi() {
                    log::warn!("passthrough MSI: {e}");
                }
                self.enabled = 0;
            }
            if wanted > 0 {
                let fds: Option<Vec<_>> = (0..wanted as u16).map(|v| self.group.irqfd(v)).collect();
                let result = match fds {
                    Some(fds) => device.enable_msi(&fds),
                    None => Err(std::io::Error::other("the vectors have no eventfds")),
                };
                match result {
                    Ok(()) => self.enabled = wanted,
                    Err(e) => log::warn!("passthrough MSI: {e}"),
                }
            }
        }
        let address_high = if self.data_at == 12 { self.dword(8) } else { 0 };
        let address = u64::from(address_high) << 32 | u64::from(self.dword(ADDRESS_LOW));
        let data = u32::from(u16::from_le_bytes([
            self.regs[self.data_at],
            self.regs[self.data_at + 1],
        ]));
        let mask = self.mask_at.map_or(0, |m| self.dword(m));
        for vector in 0..self.routes.len() {
            let live = (vector as u32) < self.enabled && mask & (1 << vector) == 0;
            // With several vectors the device puts the vector number in the data's low bits.
            let wanted = live.then(|| MsiMessage {
                address,
                data: data & !(self.enabled - 1) | vector as u32,
            });
            if self.routes[vector] == wanted {
                continue;
            }
            match self.group.set_route(vector as u16, wanted) {
                Ok(()) => self.routes[vector] = wanted,
                Err(e) => log::warn!("passthrough MSI vector {vector}: cannot route: {e}"),
            }
        }
    }
}

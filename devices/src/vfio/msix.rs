//! MSI-X of a passthrough function: the guest programs nestor's copy of the table, and the
//! host device's vectors signal the group's eventfds, which KVM turns into the messages
//! routed here.
//!
//! The host kernel signals a vector's eventfd whatever the guest's mask says, so masking
//! is done here: a vector is routed while MSI-X is enabled, and held while the function
//! or the vector is masked. A held vector's irqfd keeps what the device raises, which is
//! then the vector's pending bit in the PBA the guest reads, and is delivered when the
//! guest unmasks it.

use std::sync::Arc;

use crate::interrupt::{MsiInterruptGroup, MsiMessage};
use crate::pci::msix::{
    aligned_access, read_table, MsixTableEntry as TableEntry, MSIX_TABLE_ENTRY_SIZE, VECTOR_MASKED,
};

use super::device_io::VfioDeviceIo;

pub const CONTROL_ENABLE: u16 = 1 << 15;
pub const CONTROL_FUNCTION_MASK: u16 = 1 << 14;
const CONTROL_TABLE_SIZE: u16 = 0x7ff;

/// Where the capability says the table and PBA are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixLocation {
    pub vectors: u16,
    pub table_bar: u32,
    pub table_offset: u64,
    pub pba_bar: u32,
    pub pba_offset: u64,
}

impl MsixLocation {
    /// From the capability's message control, table and PBA dwords.
    pub fn parse(control: u16, table: u32, pba: u32) -> Self {
        Self {
            vectors: (control & CONTROL_TABLE_SIZE) + 1,
            table_bar: table & 7,
            table_offset: u64::from(table & !7),
            pba_bar: pba & 7,
            pba_offset: u64::from(pba & !7),
        }
    }

    pub fn table_len(&self) -> u64 {
        u64::from(self.vectors) * MSIX_TABLE_ENTRY_SIZE
    }

    /// One bit per vector, in whole qwords.
    pub fn pba_len(&self) -> u64 {
        u64::from(self.vectors).div_ceil(64) * 8
    }

    /// The offset into the table of an access at `offset` of BAR `bar`, if it falls inside.
    pub fn table_offset_of(&self, bar: u32, offset: u64, len: usize) -> Option<u64> {
        let within = offset.checked_sub(self.table_offset)?;
        (bar == self.table_bar && within + len as u64 <= self.table_len()).then_some(within)
    }

    /// The offset into the PBA of an access at `offset` of BAR `bar`, if it falls inside.
    pub fn pba_offset_of(&self, bar: u32, offset: u64, len: usize) -> Option<u64> {
        let within = offset.checked_sub(self.pba_offset)?;
        (bar == self.pba_bar && within + len as u64 <= self.pba_len()).then_some(within)
    }
}

pub struct VfioMsix {
    location: MsixLocation,
    entries: Vec<TableEntry>,
    /// What each vector is routed to now.
    routes: Vec<Option<MsiMessage>>,
    /// Which vectors are held (masked while enabled) now.
    held: Vec<bool>,
    enabled: bool,
    function_masked: bool,
    group: Arc<dyn MsiInterruptGroup>,
}

impl VfioMsix {
    /// Every vector masked, MSI-X disabled: the reset state.
    pub fn new(location: MsixLocation, group: Arc<dyn MsiInterruptGroup>) -> Self {
        let vectors = usize::from(location.vectors);
        Self {
            location,
            entries: vec![
                TableEntry {
                    vector_control: VECTOR_MASKED,
                    ..Default::default()
                };
                vectors
            ],
            routes: vec![None; vectors],
            held: vec![false; vectors],
            enabled: false,
            function_masked: false,
            group,
        }
    }

    pub fn location(&self) -> MsixLocation {
        self.location
    }

    /// Message control as the guest reads it: the table size is the vectors nestor serves
    /// (the host may give fewer than the device's table has), then the function-mask and
    /// enable bits.
    pub fn control(&self) -> u16 {
        let mut control = self.location.vectors.saturating_sub(1) & CONTROL_TABLE_SIZE;
        if self.enabled {
            control |= CONTROL_ENABLE;
        }
        if self.function_masked {
            control |= CONTROL_FUNCTION_MASK;
        }
        control
    }

    /// The guest wrote message control: MSI-X goes on or off on the host device as the
    /// guest's enable bit does.
    pub fn set_control(&mut self, control: u16, device: &dyn VfioDeviceIo) {
        let enable = control & CONTROL_ENABLE != 0;
        self.function_masked = control & CONTROL_FUNCTION_MASK != 0;
        if enable != self.enabled {
            let result = if enable {
                let fds: Option<Vec<_>> = (0..self.location.vectors)
                    .map(|v| self.group.irqfd(v))
                    .collect();
                match fds {
                    Some(fds) => device.enable_msix(&fds),
                    None => Err(std::io::Error::other("the vectors have no eventfds")),
                }
            } else {
                device.disable_msix()
            };
            match result {
                Ok(()) => self.enabled = enable,
                Err(e) => log::warn!("passthrough MSI-X: {e}"),
            }
        }
        self.sync_routes();
    }

    /// Back to the reset state (the host device was reset too).
    pub fn reset(&mut self) {
        for entry in &mut self.entries {
            *entry = TableEntry {
                vector_control: VECTOR_MASKED,
                ..Default::default()
            };
        }
        self.enabled = false;
        self.function_masked = false;
        self.sync_routes();
    }

    fn wanted_route(&self, vector: usize) -> Option<MsiMessage> {
        self.enabled.then(|| self.entries[vector].message())
    }

    fn wanted_hold(&self, vector: usize) -> bool {
        let masked = self.entries[vector].vector_control & VECTOR_MASKED != 0;
        self.enabled && (self.function_masked || masked)
    }

    /// Holds before rerouting and releases after, so nothing is delivered through a
    /// route the guest is changing under a mask, and what waited goes where it now points.
    fn sync_routes(&mut self) {
        for vector in 0..self.entries.len() {
            let hold = self.wanted_hold(vector);
            if hold && !self.held[vector] {
                self.set_hold(vector, true);
            }
            let wanted = self.wanted_route(vector);
            if self.routes[vector] != wanted {
                match self.group.set_route(vector as u16, wanted) {
                    Ok(()) => self.routes[vector] = wanted,
                    Err(e) => log::warn!("passthrough MSI-X vector {vector}: cannot route: {e}"),
                }
            }
            if !hold && self.held[vector] {
                self.set_hold(vector, false);
            }
        }
    }

    fn set_hold(&mut self, vector: usize, hold: bool) {
        match self.group.hold(vector as u16, hold) {
            Ok(()) => self.held[vector] = hold,
            Err(e) => log::warn!("passthrough MSI-X vector {vector}: cannot mask: {e}"),
        }
    }

    /// A guest read at `offset` into the PBA: a held vector with a signal waiting is
    /// pending. Only aligned dwords and qwords return data.
    pub fn read_pba(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if !aligned_access(offset, data.len()) {
            return;
        }
        for (byte_index, byte) in data.iter_mut().enumerate() {
            for bit in 0..8 {
                let vector = (offset as usize + byte_index) * 8 + bit;
                if vector < self.held.len()
                    && self.held[vector]
                    && self.group.pending(vector as u16)
                {
                    *byte |= 1 << bit;
                }
            }
        }
    }

    /// A guest read at `offset` into the table; only aligned dwords and qwords return data.
    pub fn read_table(&self, offset: u64, data: &mut [u8]) {
        read_table(&self.entries, offset, data);
    }

    /// A guest write at `offset` into the table; the touched vectors are rerouted.
    pub fn write_table(&mut self, offset: u64, data: &[u8]) {
        if !aligned_access(offset, data.len()) {
            return;
        }
        for (i, chunk) in data.chunks(4).enumerate() {
            let at = offset + 4 * i as u64;
            let Some(entry) = self.entries.get_mut((at / MSIX_TABLE_ENTRY_SIZE) as usize) else {
                break;
            };
            let dword = at % MSIX_TABLE_ENTRY_SIZE / 4;
            let value = u32::from_le_bytes(chunk.try_into().unwrap_or_default());
            // Only the mask bit of vector control is defined.
            *entry.dword(dword) = if dword == 3 {
                value & VECTOR_MASKED
            } else {
                value
            };
        }
        self.sync_routes();
    }
}

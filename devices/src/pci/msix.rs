//! MSI-X: the capability, the vector table and the pending-bit array.
//!
//! The state is shared between the function's register emulation (vCPU threads) and the
//! device worker that raises vectors, so masking and pending bits are decided in one place.

use std::sync::{Arc, Mutex};

use crate::interrupt::{MsiInterruptGroup, MsiMessage};

pub const MSIX_CAPABILITY_ID: u8 = 0x11;
/// Capability bytes: ID, next, message control (2), table offset/BIR (4), PBA offset/BIR (4).
pub const MSIX_CAPABILITY_LEN: usize = 12;
pub const MSIX_TABLE_ENTRY_SIZE: u64 = 16;
/// The largest table MSI-X allows.
pub const MSIX_MAX_VECTORS: u16 = 2048;

const CONTROL_ENABLE: u16 = 1 << 15;
const CONTROL_FUNCTION_MASK: u16 = 1 << 14;
pub(crate) const VECTOR_MASKED: u32 = 1;

/// One table entry, as the guest sees it (little-endian dwords); the passthrough
/// function keeps its table in the same entries.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct MsixTableEntry {
    pub(crate) address_low: u32,
    pub(crate) address_high: u32,
    pub(crate) data: u32,
    pub(crate) vector_control: u32,
}

const _: () = assert!(std::mem::size_of::<MsixTableEntry>() == MSIX_TABLE_ENTRY_SIZE as usize);

impl MsixTableEntry {
    pub(crate) fn masked(&self) -> bool {
        self.vector_control & VECTOR_MASKED != 0
    }

    pub(crate) fn message(&self) -> MsiMessage {
        MsiMessage {
            address: u64::from(self.address_high) << 32 | u64::from(self.address_low),
            data: self.data,
        }
    }

    pub(crate) fn dword(&mut self, index: u64) -> &mut u32 {
        match index {
            0 => &mut self.address_low,
            1 => &mut self.address_high,
            2 => &mut self.data,
            _ => &mut self.vector_control,
        }
    }
}

/// Where the table and PBA live, for the capability.
#[derive(Debug, Clone, Copy)]
pub struct MsixLayout {
    pub table_bar: u8,
    pub table_offset: u32,
    pub pba_bar: u8,
    pub pba_offset: u32,
}

/// One table entry as a report shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixEntryView {
    pub message: MsiMessage,
    pub masked: bool,
    pub pending: bool,
}

/// A copy of a function's MSI-X state, for diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsixSnapshot {
    pub enabled: bool,
    pub function_masked: bool,
    pub entries: Vec<MsixEntryView>,
}

/// A function's MSI-X state.
pub struct MsixState {
    entries: Vec<MsixTableEntry>,
    pending: Vec<u64>,
    enabled: bool,
    function_masked: bool,
    group: Arc<dyn MsiInterruptGroup>,
}

pub type SharedMsix = Arc<Mutex<MsixState>>;

impl MsixState {
    /// `vectors` entries, all masked, MSI-X disabled (the reset state).
    pub fn new(vectors: u16, group: Arc<dyn MsiInterruptGroup>) -> Self {
        let vectors = vectors.clamp(1, MSIX_MAX_VECTORS);
        Self {
            entries: vec![
                MsixTableEntry {
                    vector_control: VECTOR_MASKED,
                    ..Default::default()
                };
                usize::from(vectors)
            ],
            pending: vec![0; usize::from(vectors).div_ceil(64)],
            enabled: false,
            function_masked: false,
            group,
        }
    }

    pub fn vectors(&self) -> u16 {
        self.entries.len() as u16
    }

    pub fn table_size(&self) -> u64 {
        self.entries.len() as u64 * MSIX_TABLE_ENTRY_SIZE
    }

    pub fn pba_size(&self) -> u64 {
        self.pending.len() as u64 * 8
    }

    /// The capability body and the mask of its guest-writable bits.
    pub fn capability(
        &self,
        layout: MsixLayout,
    ) -> ([u8; MSIX_CAPABILITY_LEN], [u8; MSIX_CAPABILITY_LEN]) {
        let mut body = [0u8; MSIX_CAPABILITY_LEN];
        body[0] = MSIX_CAPABILITY_ID;
        body[2..4].copy_from_slice(&(self.vectors() - 1).to_le_bytes());
        let table = layout.table_offset & !7 | u32::from(layout.table_bar & 7);
        let pba = layout.pba_offset & !7 | u32::from(layout.pba_bar & 7);
        body[4..8].copy_from_slice(&table.to_le_bytes());
        body[8..12].copy_from_slice(&pba.to_le_bytes());
        let mut writable = [0u8; MSIX_CAPABILITY_LEN];
        writable[3] = ((CONTROL_ENABLE | CONTROL_FUNCTION_MASK) >> 8) as u8;
        (body, writable)
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The guest wrote the message control word (bits 15: enable, 14: function mask).
    pub fn set_message_control(&mut self, control: u16) {
        let enabled = control & CONTROL_ENABLE != 0;
        let function_masked = control & CONTROL_FUNCTION_MASK != 0;
        if enabled && !self.enabled {
            for vector in 0..self.vectors() {
                self.route(vector);
            }
        }
        self.enabled = enabled;
        self.function_masked = function_masked;
        for vector in 0..self.vectors() {
            self.deliver_if_pending(vector);
        }
    }

    /// Back to the reset state (table entries masked, nothing pending, disabled).
    pub fn reset(&mut self) {
        for entry in &mut self.entries {
            *entry = MsixTableEntry {
                vector_control: VECTOR_MASKED,
                ..Default::default()
            };
        }
        self.pending.fill(0);
        self.enabled = false;
        self.function_masked = false;
    }

    fn route(&self, vector: u16) {
        let entry = self.entries[usize::from(vector)];
        if let Err(e) = self.group.set_route(vector, Some(entry.message())) {
            log::warn!("MSI-X vector {vector}: cannot route: {e}");
        }
    }

    fn is_pending(&self, vector: u16) -> bool {
        self.pending[usize::from(vector / 64)] & (1 << (vector % 64)) != 0
    }

    fn set_pending(&mut self, vector: u16, pending: bool) {
        let word = &mut self.pending[usize::from(vector / 64)];
        if pending {
            *word |= 1 << (vector % 64);
        } else {
            *word &= !(1 << (vector % 64));
        }
    }

    fn deliverable(&self, vector: u16) -> bool {
        self.enabled && !self.function_masked && !self.entries[usize::from(vector)].masked()
    }

    fn deliver_if_pending(&mut self, vector: u16) {
        if self.is_pending(vector) && self.deliverable(vector) {
            self.set_pending(vector, false);
            self.fire(vector);
        }
    }

    fn fire(&self, vector: u16) {
        if let Err(e) = self.group.trigger(vector) {
            log::warn!("MSI-X vector {vector}: cannot trigger: {e}");
        }
    }

    /// The device raises `vector`: delivered now, or remembered in the PBA while masked.
    /// Nothing happens for a vector out of range or while MSI-X is disabled (nestor has no
    /// INTx to fall back on).
    pub fn trigger(&mut self, vector: u16) {
        if usize::from(vector) >= self.entries.len() || !self.enabled {
            return;
        }
        if self.deliverable(vector) {
            self.fire(vector);
        } else {
            self.set_pending(vector, true);
        }
    }

    /// A guest read of the table; only aligned dword and qword accesses return data.
    pub fn read_table(&self, offset: u64, data: &mut [u8]) {
        read_table(&self.entries, offset, data);
    }

    /// A guest write of the table; reroutes or unmasks the touched vector.
    pub fn write_table(&mut self, offset: u64, data: &[u8]) {
        if !aligned_access(offset, data.len()) {
            return;
        }
        for (i, chunk) in data.chunks(4).enumerate() {
            let at = offset + 4 * i as u64;
            let index = (at / MSIX_TABLE_ENTRY_SIZE) as usize;
            let Some(entry) = self.entries.get_mut(index) else {
                return;
            };
            let dword = at % MSIX_TABLE_ENTRY_SIZE / 4;
            let value = u32::from_le_bytes(chunk.try_into().unwrap_or_default());
            let before = *entry;
            *entry.dword(dword) = if dword == 3 {
                value & VECTOR_MASKED
            } else {
                value
            };
            let after = *entry;
            let vector = index as u16;
            if self.enabled && before.message() != after.message() {
                self.route(vector);
            }
            if before.masked() && !after.masked() {
                self.deliver_if_pending(vector);
            }
        }
    }

    /// Everything the guest programmed, and what is pending.
    pub fn snapshot(&self) -> MsixSnapshot {
        MsixSnapshot {
            enabled: self.enabled,
            function_masked: self.function_masked,
            entries: (0..self.vectors())
                .map(|vector| {
                    let entry = &self.entries[usize::from(vector)];
                    MsixEntryView {
                        message: entry.message(),
                        masked: entry.masked(),
                        pending: self.is_pending(vector),
                    }
                })
                .collect(),
        }
    }

    /// A guest read of the pending-bit array (read-only to the guest).
    pub fn read_pba(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if !aligned_access(offset, data.len()) {
            return;
        }
        let bytes: Vec<u8> = self.pending.iter().flat_map(|w| w.to_le_bytes()).collect();
        let start = offset as usize;
        if let Some(src) = bytes.get(start..start + data.len()) {
            data.copy_from_slice(src);
        }
    }
}

/// Whether a table access is one the spec defines: an aligned dword or qword.
pub(crate) fn aligned_access(offset: u64, len: usize) -> bool {
    (len == 4 || len == 8) && offset & (len as u64 - 1) == 0
}

/// A guest read at `offset` into `entries`; only aligned dwords and qwords return data.
pub(crate) fn read_table(entries: &[MsixTableEntry], offset: u64, data: &mut [u8]) {
    data.fill(0);
    if !aligned_access(offset, data.len()) {
        return;
    }
    for (i, chunk) in data.chunks_mut(4).enumerate() {
        let at = offset + 4 * i as u64;
        if let Some(entry) = entries.get((at / MSIX_TABLE_ENTRY_SIZE) as usize) {
            let mut entry = *entry;
            chunk.copy_from_slice(&entry.dword(at % MSIX_TABLE_ENTRY_SIZE / 4).to_le_bytes());
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io;

    /// Records routes and triggers.
    #[derive(Default)]
    pub struct RecordingGroup {
        pub routes: Mutex<Vec<(u16, Option<MsiMessage>)>>,
        pub fired: Mutex<Vec<u16>>,
    }

    impl MsiInterruptGroup for RecordingGroup {
        fn set_route(&self, vector: u16, message: Option<MsiMessage>) -> io::Result<()> {
            self.routes.lock().unwrap().push((vector, message));
            Ok(())
        }
        fn trigger(&self, vector: u16) -> io::Result<()> {
            self.fired.lock().unwrap().push(vector);
            Ok(())
        }
    }

    fn state(vectors: u16) -> (MsixState, Arc<RecordingGroup>) {
        let group = Arc::new(RecordingGroup::default());
        (MsixState::new(vectors, group.clone()), group)
    }

    fn program(msix: &mut MsixState, vector: u64, address: u64, data: u32) {
        let base = vector * 16;
        msix.write_table(base, &address.to_le_bytes());
        msix.write_table(base + 8, &data.to_le_bytes());
    }

    fn unmask(msix: &mut MsixState, vector: u64) {
        msix.write_table(vector * 16 + 12, &0u32.to_le_bytes());
    }

    #[test]
    fn capability_encodes_size_and_locations() {
        let (msix, _) = state(3);
        let (body, writable) = msix.capability(MsixLayout {
            table_bar: 0,
            table_offset: 0x4000,
            pba_bar: 0,
            pba_offset: 0x5000,
        });
        assert_eq!(body[0], MSIX_CAPABILITY_ID);
        assert_eq!(u16::from_le_bytes([body[2], body[3]]), 2);
        assert_eq!(u32::from_le_bytes(body[4..8].try_into().unwrap()), 0x4000);
        assert_eq!(u32::from_le_bytes(body[8..12].try_into().unwrap()), 0x5000);
        assert_eq!(writable[3], 0xc0);
        assert_eq!(msix.pba_size(), 8);
        assert_eq!(msix.table_size(), 48);
    }

    #[test]
    fn table_reads_back_and_starts_masked() {
        let (mut msix, _) = state(2);
        let mut buf = [0u8; 4];
        msix.read_table(12, &mut buf);
        assert_eq!(u32::from_le_bytes(buf), 1);
        program(&mut msix, 1, 0xfee0_1000, 0x41);
        let mut q = [0u8; 8];
        msix.read_table(16, &mut q);
        assert_eq!(u64::from_le_bytes(q), 0xfee0_1000);
        msix.read_table(24, &mut buf);
        assert_eq!(u32::from_le_bytes(buf), 0x41);
        // Reserved vector-control bits stay zero; out of range and misaligned read zero.
        msix.write_table(28, &0xffff_fffeu32.to_le_bytes());
        msix.read_table(28, &mut buf);
        assert_eq!(u32::from_le_bytes(buf), 0);
        msix.read_table(32, &mut buf);
        assert_eq!(buf, [0; 4]);
        msix.read_table(2, &mut buf);
        assert_eq!(buf, [0; 4]);
        msix.write_table(1000, &[1, 2, 3, 4]);
        msix.write_table(3, &[1, 2]);
    }

    #[test]
    fn masked_vectors_become_pending_and_fire_on_unmask() {
        let (mut msix, group) = state(2);
        msix.set_message_control(CONTROL_ENABLE);
        program(&mut msix, 0, 0xfee0_0000, 0x30);
        msix.trigger(0);
        assert!(group.fired.lock().unwrap().is_empty());
        let mut pba = [0u8; 8];
        msix.read_pba(0, &mut pba);
        assert_eq!(u64::from_le_bytes(pba), 1);
        unmask(&mut msix, 0);
        assert_eq!(*group.fired.lock().unwrap(), vec![0]);
        msix.read_pba(0, &mut pba);
        assert_eq!(u64::from_le_bytes(pba), 0);
        msix.trigger(0);
        assert_eq!(*group.fired.lock().unwrap(), vec![0, 0]);
        assert!(group.routes.lock().unwrap().contains(&(
            0,
            Some(MsiMessage {
                address: 0xfee0_0000,
                data: 0x30
            })
        )));
    }

    #[test]
    fn function_mask_holds_every_vector() {
        let (mut msix, group) = state(2);
        msix.set_message_control(CONTROL_ENABLE | CONTROL_FUNCTION_MASK);
        unmask(&mut msix, 0);
        unmask(&mut msix, 1);
        msix.trigger(1);
        assert!(group.fired.lock().unwrap().is_empty());
        msix.set_message_control(CONTROL_ENABLE);
        assert_eq!(*group.fired.lock().unwrap(), vec![1]);
    }

    #[test]
    fn a_snapshot_shows_messages_masks_and_pending_vectors() {
        let (mut msix, _) = state(2);
        msix.set_message_control(CONTROL_ENABLE | CONTROL_FUNCTION_MASK);
        program(&mut msix, 1, 0xfee0_1000, 0x41);
        unmask(&mut msix, 1);
        msix.trigger(1);
        let snapshot = msix.snapshot();
        assert!(snapshot.enabled && snapshot.function_masked);
        assert_eq!(
            snapshot.entries,
            [
                MsixEntryView {
                    message: MsiMessage::default(),
                    masked: true,
                    pending: false,
                },
                MsixEntryView {
                    message: MsiMessage {
                        address: 0xfee0_1000,
                        data: 0x41
                    },
                    masked: false,
                    pending: true,
                },
            ]
        );
    }

    #[test]
    fn disabled_or_out_of_range_vectors_do_nothing() {
        let (mut msix, group) = state(1);
        unmask(&mut msix, 0);
        msix.trigger(0);
        msix.trigger(7);
        msix.set_message_control(CONTROL_ENABLE);
        msix.trigger(7);
        assert!(group.fired.lock().unwrap().is_empty());
        msix.trigger(0);
        assert_eq!(*group.fired.lock().unwrap(), vec![0]);
        msix.reset();
        assert!(!msix.enabled());
    }
}

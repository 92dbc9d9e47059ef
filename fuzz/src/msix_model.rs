//! A reference model of one function's MSI-X vectors (PCI spec, "MSI-X"): the table, the
//! pending bits, enable and function mask, and which messages are routed and fired.

use devices::interrupt::MsiMessage;

const CONTROL_ENABLE: u16 = 1 << 15;
const CONTROL_MASK: u16 = 1 << 14;

#[derive(Debug, Clone, Copy)]
struct Entry {
    dwords: [u32; 4],
}

impl Entry {
    fn masked(&self) -> bool {
        self.dwords[3] & 1 != 0
    }

    fn message(&self) -> MsiMessage {
        MsiMessage {
            address: u64::from(self.dwords[1]) << 32 | u64::from(self.dwords[0]),
            data: self.dwords[2],
        }
    }
}

pub struct MsixModel {
    entries: Vec<Entry>,
    pending: Vec<bool>,
    pub enabled: bool,
    function_masked: bool,
    /// What the real group should have seen since the last `take_*`.
    pub routes: Vec<(u16, Option<MsiMessage>)>,
    pub fired: Vec<u16>,
}

fn aligned(offset: u64, len: usize) -> bool {
    (len == 4 || len == 8) && offset % len as u64 == 0
}

impl MsixModel {
    pub fn new(vectors: u16) -> Self {
        let vectors = usize::from(vectors.clamp(1, 2048));
        Self {
            entries: vec![
                Entry {
                    dwords: [0, 0, 0, 1]
                };
                vectors
            ],
            pending: vec![false; vectors],
            enabled: false,
            function_masked: false,
            routes: Vec::new(),
            fired: Vec::new(),
        }
    }

    pub fn vectors(&self) -> u16 {
        self.entries.len() as u16
    }

    pub fn reset(&mut self) {
        let n = self.entries.len() as u16;
        let (routes, fired) = (
            std::mem::take(&mut self.routes),
            std::mem::take(&mut self.fired),
        );
        *self = Self::new(n);
        (self.routes, self.fired) = (routes, fired);
    }

    fn deliverable(&self, v: usize) -> bool {
        self.enabled && !self.function_masked && !self.entries[v].masked()
    }

    fn deliver_if_pending(&mut self, v: usize) {
        if self.pending[v] && self.deliverable(v) {
            self.pending[v] = false;
            self.fired.push(v as u16);
        }
    }

    pub fn set_message_control(&mut self, control: u16) {
        let enable = control & CONTROL_ENABLE != 0;
        if enable && !self.enabled {
            for v in 0..self.entries.len() {
                self.routes
                    .push((v as u16, Some(self.entries[v].message())));
            }
        }
        self.enabled = enable;
        self.function_masked = control & CONTROL_MASK != 0;
        for v in 0..self.entries.len() {
            self.deliver_if_pending(v);
        }
    }

    pub fn trigger(&mut self, vector: u16) {
        let v = usize::from(vector);
        if v >= self.entries.len() || !self.enabled {
            return;
        }
        if self.deliverable(v) {
            self.fired.push(vector);
        } else {
            self.pending[v] = true;
        }
    }

    pub fn read_table(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        if !aligned(offset, len) {
            return out;
        }
        for (i, chunk) in out.chunks_mut(4).enumerate() {
            let at = offset + 4 * i as u64;
            if let Some(e) = self.entries.get((at / 16) as usize) {
                chunk.copy_from_slice(&e.dwords[(at % 16 / 4) as usize].to_le_bytes());
            }
        }
        out
    }

    pub fn write_table(&mut self, offset: u64, data: &[u8]) {
        if !aligned(offset, data.len()) {
            return;
        }
        for (i, chunk) in data.chunks(4).enumerate() {
            let at = offset + 4 * i as u64;
            let v = (at / 16) as usize;
            let Some(entry) = self.entries.get_mut(v) else {
                return;
            };
            let dword = (at % 16 / 4) as usize;
            let value = u32::from_le_bytes(chunk.try_into().unwrap());
            let before = *entry;
            entry.dwords[dword] = if dword == 3 { value & 1 } else { value };
            let after = *entry;
            if self.enabled && before.message() != after.message() {
                self.routes.push((v as u16, Some(after.message())));
            }
            if before.masked() && !after.masked() {
                self.deliver_if_pending(v);
            }
        }
    }

    pub fn read_pba(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        if !aligned(offset, len) {
            return out;
        }
        let mut bytes = vec![0u8; self.entries.len().div_ceil(64) * 8];
        for (v, &p) in self.pending.iter().enumerate() {
            if p {
                bytes[v / 8] |= 1 << (v % 8);
            }
        }
        if let Some(src) = bytes.get(offset as usize..offset as usize + len) {
            out.copy_from_slice(src);
        }
        out
    }
}

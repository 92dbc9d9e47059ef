//! Event queue records (32 bytes).

use super::{bit, bits, dwords_from_le, dwords_to_le, with_bits};

pub const EVENT_SIZE: usize = 32;

pub mod event_id {
    pub const F_UUT: u8 = 0x01;
    pub const C_BAD_STREAMID: u8 = 0x02;
    pub const F_STE_FETCH: u8 = 0x03;
    pub const C_BAD_STE: u8 = 0x04;
    pub const F_STREAM_DISABLED: u8 = 0x06;
    pub const C_BAD_SUBSTREAMID: u8 = 0x08;
    pub const F_CD_FETCH: u8 = 0x09;
    pub const C_BAD_CD: u8 = 0x0a;
    pub const F_WALK_EABT: u8 = 0x0b;
    pub const F_TRANSLATION: u8 = 0x10;
    pub const F_ADDR_SIZE: u8 = 0x11;
    pub const F_ACCESS: u8 = 0x12;
    pub const F_PERMISSION: u8 = 0x13;
}

/// What a translation fault was doing when it happened (CLASS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultClass {
    /// Fetching the context descriptor.
    Cd = 0,
    /// Fetching a stage-1 translation table descriptor.
    TranslationTable = 1,
    /// Translating the input address itself.
    Input = 2,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventRecord(pub [u64; 4]);

impl EventRecord {
    pub fn new(id: u8, sid: u32) -> Self {
        Self([u64::from(id) | u64::from(sid) << 32, 0, 0, 0])
    }

    pub fn from_le_bytes(bytes: &[u8]) -> Option<Self> {
        dwords_from_le::<4>(bytes).map(Self)
    }

    pub fn to_le_bytes(&self) -> [u8; EVENT_SIZE] {
        dwords_to_le(&self.0)
    }

    pub fn with_substream(mut self, ssid: Option<u32>) -> Self {
        if let Some(ssid) = ssid {
            self.0[0] = with_bits(self.0[0], 11, 11, 1);
            self.0[0] = with_bits(self.0[0], 31, 12, ssid.into());
        }
        self
    }

    /// The fault fields of F_TRANSLATION, F_ADDR_SIZE, F_ACCESS, F_PERMISSION and
    /// F_WALK_EABT.
    #[allow(clippy::too_many_arguments)]
    pub fn with_fault(
        mut self,
        stall_tag: Option<u16>,
        privileged: bool,
        instruction: bool,
        read: bool,
        stage2: bool,
        class: FaultClass,
        input_address: u64,
    ) -> Self {
        let mut d1 = 0;
        if let Some(stag) = stall_tag {
            d1 = with_bits(d1, 15, 0, stag.into());
            d1 = with_bits(d1, 31, 31, 1);
        }
        d1 = with_bits(d1, 33, 33, privileged.into());
        d1 = with_bits(d1, 34, 34, instruction.into());
        d1 = with_bits(d1, 35, 35, read.into());
        d1 = with_bits(d1, 39, 39, stage2.into());
        d1 = with_bits(d1, 41, 40, class as u64);
        self.0[1] = d1;
        self.0[2] = input_address;
        self
    }

    /// Dword 3: the IPA of a stage-2 fault, bits \[51:12\].
    pub fn with_ipa(mut self, ipa: u64) -> Self {
        self.0[3] = ipa & 0x000f_ffff_ffff_f000;
        self
    }

    /// Dword 3: the address of a fetch that failed, bits \[51:3\].
    pub fn with_fetch_address(mut self, address: u64) -> Self {
        self.0[3] = address & 0x000f_ffff_ffff_fff8;
        self
    }

    pub fn id(&self) -> u8 {
        bits(self.0[0], 7, 0) as u8
    }
    pub fn sid(&self) -> u32 {
        bits(self.0[0], 63, 32) as u32
    }
    pub fn set_sid(&mut self, sid: u32) {
        self.0[0] = with_bits(self.0[0], 63, 32, sid.into());
    }
    pub fn ssid(&self) -> Option<u32> {
        bit(self.0[0], 11).then(|| bits(self.0[0], 31, 12) as u32)
    }
    pub fn stall(&self) -> bool {
        bit(self.0[1], 31)
    }
    pub fn stag(&self) -> u16 {
        bits(self.0[1], 15, 0) as u16
    }
    pub fn privileged(&self) -> bool {
        bit(self.0[1], 33)
    }
    pub fn instruction(&self) -> bool {
        bit(self.0[1], 34)
    }
    /// RnW: the access was a read.
    pub fn read(&self) -> bool {
        bit(self.0[1], 35)
    }
    pub fn stage2(&self) -> bool {
        bit(self.0[1], 39)
    }
    pub fn class(&self) -> u8 {
        bits(self.0[1], 41, 40) as u8
    }
    pub fn input_address(&self) -> u64 {
        self.0[2]
    }
    pub fn dword3(&self) -> u64 {
        self.0[3]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_record_fields() {
        let e = EventRecord::new(event_id::F_PERMISSION, 0x1234_5678)
            .with_substream(Some(0xfffff))
            .with_fault(
                Some(0xbeef),
                true,
                false,
                true,
                true,
                FaultClass::TranslationTable,
                0xdead_b000,
            )
            .with_ipa(0xf_1234_5678);
        let e = EventRecord::from_le_bytes(&e.to_le_bytes()).unwrap();
        assert_eq!(e.0[0], 0x13 | 1 << 11 | 0xfffff << 12 | 0x1234_5678 << 32);
        assert_eq!(
            e.0[1],
            0xbeef | 1 << 31 | 1 << 33 | 1 << 35 | 1 << 39 | 1 << 40
        );
        assert_eq!(e.0[2], 0xdead_b000);
        assert_eq!(e.0[3], 0xf_1234_5000);
        assert_eq!(
            (e.id(), e.sid(), e.ssid()),
            (0x13, 0x1234_5678, Some(0xfffff))
        );
        assert!(e.stall() && e.privileged() && e.read() && e.stage2() && !e.instruction());
        assert_eq!((e.stag(), e.class()), (0xbeef, 1));
        let no_ssid = EventRecord::new(event_id::C_BAD_STE, 3).with_substream(None);
        assert_eq!(no_ssid.ssid(), None);
        assert_eq!(no_ssid.with_fetch_address(0x1007).dword3(), 0x1000);
    }
}

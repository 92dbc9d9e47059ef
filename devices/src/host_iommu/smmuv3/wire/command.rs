//! Command queue entries (16 bytes).

use super::{bit, bits, dwords_from_le, dwords_to_le};

pub const COMMAND_SIZE: usize = 16;

pub mod opcode {
    pub const PREFETCH_CONFIG: u8 = 0x01;
    pub const PREFETCH_ADDR: u8 = 0x02;
    pub const CFGI_STE: u8 = 0x03;
    /// With Range 31: CFGI_ALL.
    pub const CFGI_STE_RANGE: u8 = 0x04;
    pub const CFGI_CD: u8 = 0x05;
    pub const CFGI_CD_ALL: u8 = 0x06;
    pub const TLBI_NH_ALL: u8 = 0x10;
    pub const TLBI_NH_ASID: u8 = 0x11;
    pub const TLBI_NH_VA: u8 = 0x12;
    pub const TLBI_NH_VAA: u8 = 0x13;
    pub const TLBI_EL2_ALL: u8 = 0x20;
    pub const TLBI_EL2_VAA: u8 = 0x23;
    pub const TLBI_S12_VMALL: u8 = 0x28;
    pub const TLBI_S2_IPA: u8 = 0x2a;
    pub const TLBI_NSNH_ALL: u8 = 0x30;
    pub const ATC_INV: u8 = 0x40;
    pub const PRI_RESP: u8 = 0x41;
    pub const RESUME: u8 = 0x44;
    pub const STALL_TERM: u8 = 0x45;
    pub const SYNC: u8 = 0x46;
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Command(pub [u64; 2]);

impl Command {
    pub fn from_le_bytes(bytes: &[u8]) -> Option<Self> {
        dwords_from_le::<2>(bytes).map(Self)
    }

    pub fn to_le_bytes(&self) -> [u8; COMMAND_SIZE] {
        dwords_to_le(&self.0)
    }

    pub fn opcode(&self) -> u8 {
        bits(self.0[0], 7, 0) as u8
    }
    /// SubstreamID valid (SSV).
    pub fn ssv(&self) -> bool {
        bit(self.0[0], 11)
    }
    pub fn ssid(&self) -> u32 {
        bits(self.0[0], 31, 12) as u32
    }
    pub fn sid(&self) -> u32 {
        bits(self.0[0], 63, 32) as u32
    }
    /// TLBI commands' VMID.
    pub fn vmid(&self) -> u16 {
        bits(self.0[0], 47, 32) as u16
    }
    pub fn set_vmid(&mut self, vmid: u16) {
        self.0[0] = super::with_bits(self.0[0], 47, 32, vmid.into());
    }
    /// TLBI commands' ASID.
    pub fn asid(&self) -> u16 {
        bits(self.0[0], 63, 48) as u16
    }
    /// Range invalidation: NUM and SCALE (pages = (NUM + 1) * 2^SCALE).
    pub fn num(&self) -> u8 {
        bits(self.0[0], 16, 12) as u8
    }
    pub fn scale(&self) -> u8 {
        bits(self.0[0], 24, 20) as u8
    }
    /// CMD_SYNC completion signal: 0 none, 1 IRQ/MSI, 2 SEV.
    pub fn sync_cs(&self) -> u8 {
        bits(self.0[0], 13, 12) as u8
    }
    pub fn sync_msi_data(&self) -> u32 {
        bits(self.0[0], 63, 32) as u32
    }
    /// RESUME: 0 terminate, 1 retry, 2 abort.
    pub fn resume_action(&self) -> u8 {
        bits(self.0[0], 13, 12) as u8
    }
    /// ATC_INV: invalidate every substream (Global).
    pub fn atc_global(&self) -> bool {
        bit(self.0[0], 9)
    }

    pub fn leaf(&self) -> bool {
        bit(self.0[1], 0)
    }
    /// CFGI_STE_RANGE: 2^(Range+1) stream IDs; 31 means all.
    pub fn range(&self) -> u8 {
        bits(self.0[1], 4, 0) as u8
    }
    /// TLBI range granule: 0 single address, 1 4 KiB, 2 16 KiB, 3 64 KiB.
    pub fn tg(&self) -> u8 {
        bits(self.0[1], 11, 10) as u8
    }
    /// TLBI VA/IPA and ATC_INV address: bits \[63:12\].
    pub fn address(&self) -> u64 {
        self.0[1] & !0xfff
    }
    /// ATC_INV: 2^Size 4 KiB pages.
    pub fn atc_size(&self) -> u8 {
        bits(self.0[1], 5, 0) as u8
    }
    pub fn sync_msi_address(&self) -> u64 {
        self.0[1] & 0x000f_ffff_ffff_fffc
    }
    pub fn pri_group(&self) -> u16 {
        bits(self.0[1], 8, 0) as u16
    }
    /// PRI_RESP: 0 deny, 1 fail, 2 success.
    pub fn pri_response(&self) -> u8 {
        bits(self.0[1], 13, 12) as u8
    }
    pub fn stag(&self) -> u16 {
        bits(self.0[1], 15, 0) as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlbi_va_fields() {
        let d0 = u64::from(opcode::TLBI_NH_VA) | (3 << 12) | (2 << 20) | (7 << 32) | (0x55 << 48);
        let d1 = 0x1234_5000 | (1 << 10) | (2 << 8) | 1;
        let mut cmd = Command::from_le_bytes(&Command([d0, d1]).to_le_bytes()).unwrap();
        assert_eq!(cmd.opcode(), opcode::TLBI_NH_VA);
        assert_eq!(
            (cmd.num(), cmd.scale(), cmd.vmid(), cmd.asid()),
            (3, 2, 7, 0x55)
        );
        assert_eq!(
            (cmd.tg(), cmd.address(), cmd.leaf()),
            (1, 0x1234_5000, true)
        );
        cmd.set_vmid(9);
        assert_eq!(
            (cmd.vmid(), cmd.asid(), cmd.opcode()),
            (9, 0x55, opcode::TLBI_NH_VA)
        );
    }

    #[test]
    fn stream_and_sync_fields() {
        let cmd = Command([
            u64::from(opcode::CFGI_CD) | (1 << 11) | (0xabcde << 12) | (0x1234_5678 << 32),
            1,
        ]);
        assert!(cmd.ssv());
        assert_eq!((cmd.ssid(), cmd.sid()), (0xabcde, 0x1234_5678));
        let sync = Command([
            u64::from(opcode::SYNC) | (1 << 12) | (0xdead << 32),
            0x8000_1004,
        ]);
        assert_eq!((sync.sync_cs(), sync.sync_msi_data()), (1, 0xdead));
        assert_eq!(sync.sync_msi_address(), 0x8000_1004);
        assert!(Command::from_le_bytes(&[0; 8]).is_none());
    }
}

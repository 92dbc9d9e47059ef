//! Descriptors from their fields, as the architecture lays them out; independent of the
//! model's own decoders.

use vm_memory::Bytes;

use super::Rig;

pub const AF: u64 = 1 << 10;
pub const NG: u64 = 1 << 11;
/// AP\[1\]: unprivileged access; AP\[2\]: read-only.
pub const AP_UNPRIV: u64 = 1 << 6;
pub const AP_RO: u64 = 1 << 7;
pub const UXN: u64 = 1 << 54;
pub const AP_TABLE_RO: u64 = 1 << 62;

pub fn table(addr: u64) -> u64 {
    addr | 0b11
}

/// A stage-1 page with the attributes Linux uses: AF, nG, unprivileged, writable.
pub fn s1_page(oa: u64) -> u64 {
    oa | 0b11 | AF | NG | AP_UNPRIV
}

pub fn s1_block(oa: u64) -> u64 {
    oa | 0b01 | AF | NG | AP_UNPRIV
}

/// Stage-2 page: S2AP read (bit 6) and write (bit 7), AF.
pub fn s2_page(oa: u64, read: bool, write: bool) -> u64 {
    oa | 0b11 | AF | u64::from(read) << 6 | u64::from(write) << 7
}

pub fn s2_block(oa: u64, read: bool, write: bool) -> u64 {
    oa | 0b01 | AF | u64::from(read) << 6 | u64::from(write) << 7
}

/// Where a walk's index for `level` sits with a granule of 2^`g` bytes.
pub fn shift(g: u32, level: u32) -> u32 {
    g + (3 - level) * (g - 3)
}

/// Writes `leaf` for `va` at `leaf_level` in the tables under `root`, creating table
/// descriptors below `start` as needed. Table addresses in descriptors are `pa - offset`
/// (IPAs when stage 2 maps IPA x to PA x + offset).
#[allow(clippy::too_many_arguments)]
pub fn map_at(
    rig: &Rig,
    g: u32,
    offset: u64,
    root: u64,
    start: u32,
    va: u64,
    leaf_level: u32,
    leaf: u64,
) {
    let mut table_pa = root;
    for level in start..=leaf_level {
        let stride_mask = if level == start {
            u64::MAX
        } else {
            (1 << (g - 3)) - 1
        };
        let index = (va >> shift(g, level)) & stride_mask;
        let slot = table_pa + index * 8;
        if level == leaf_level {
            rig.write(slot, leaf);
            return;
        }
        let existing = u64::from_le(rig.mem.read_obj(vm_memory::GuestAddress(slot)).unwrap());
        table_pa = if existing & 3 == 3 {
            (existing & 0x0000_ffff_ffff_f000 & !((1 << g) - 1)) + offset
        } else {
            let next = rig.alloc(1 << g);
            rig.write(slot, table(next - offset));
            next
        };
    }
}

/// 4 KiB granule, no offset.
pub fn map(rig: &Rig, root: u64, start: u32, va: u64, leaf_level: u32, leaf: u64) {
    map_at(rig, 12, 0, root, start, va, leaf_level, leaf)
}

#[derive(Debug, Clone, Copy)]
pub struct CdFields {
    pub valid: bool,
    pub t0sz: u64,
    pub tg0: u64,
    pub epd0: bool,
    pub endi: bool,
    pub t1sz: u64,
    pub tg1: u64,
    pub epd1: bool,
    pub ips: u64,
    pub affd: bool,
    pub wxn: bool,
    pub tbi: u64,
    pub aa64: bool,
    pub stall: bool,
    pub record: bool,
    pub abort: bool,
    pub asid: u64,
    pub had0: bool,
    pub ttb0: u64,
    pub ttb1: u64,
}

impl Default for CdFields {
    fn default() -> Self {
        Self {
            valid: true,
            t0sz: 16,
            tg0: 0,
            epd0: false,
            endi: false,
            t1sz: 16,
            tg1: 2,
            epd1: true,
            ips: 5,
            affd: false,
            wxn: false,
            tbi: 0,
            aa64: true,
            stall: false,
            record: true,
            abort: true,
            asid: 1,
            had0: false,
            ttb0: 0,
            ttb1: 0,
        }
    }
}

impl CdFields {
    pub fn encode(&self) -> [u64; 8] {
        let b = |v: bool, n: u32| u64::from(v) << n;
        let d0 = self.t0sz
            | self.tg0 << 6
            | b(self.epd0, 14)
            | b(self.endi, 15)
            | self.t1sz << 16
            | self.tg1 << 22
            | b(self.epd1, 30)
            | b(self.valid, 31)
            | self.ips << 32
            | b(self.affd, 35)
            | b(self.wxn, 36)
            | self.tbi << 38
            | b(self.aa64, 41)
            | b(self.stall, 44)
            | b(self.record, 45)
            | b(self.abort, 46)
            | self.asid << 48;
        [d0, self.ttb0 | b(self.had0, 1), self.ttb1, 0, 0, 0, 0, 0]
    }
}

#[derive(Debug, Clone, Copy)]
pub struct S2Fields {
    pub vmid: u64,
    pub t0sz: u64,
    pub sl0: u64,
    pub tg: u64,
    pub ps: u64,
    pub aa64: bool,
    pub endi: bool,
    pub affd: bool,
    pub stall: bool,
    pub record: bool,
    pub ttb: u64,
}

impl Default for S2Fields {
    /// 39-bit IPA, 4 KiB granule, walks starting at level 1, 48-bit PA, faults recorded.
    fn default() -> Self {
        Self {
            vmid: 7,
            t0sz: 25,
            sl0: 1,
            tg: 0,
            ps: 5,
            aa64: true,
            endi: false,
            affd: false,
            stall: false,
            record: true,
            ttb: 0,
        }
    }
}

impl S2Fields {
    /// STE dwords 2 and 3.
    pub fn encode(&self) -> [u64; 2] {
        let b = |v: bool, n: u32| u64::from(v) << n;
        [
            self.vmid
                | self.t0sz << 32
                | self.sl0 << 38
                | self.tg << 46
                | self.ps << 48
                | b(self.aa64, 51)
                | b(self.endi, 52)
                | b(self.affd, 53)
                | b(self.stall, 57)
                | b(self.record, 58),
            self.ttb,
        ]
    }
}

#[derive(Debug, Clone, Copy)]
pub struct SteFields {
    pub valid: bool,
    pub config: u64,
    pub s1_fmt: u64,
    pub s1_context_ptr: u64,
    pub s1_cd_max: u64,
    pub s1_dss: u64,
    pub s1_stalld: bool,
    pub strw: u64,
    pub s2: Option<S2Fields>,
}

impl SteFields {
    pub fn with_config(config: u64) -> Self {
        Self {
            valid: true,
            config,
            s1_fmt: 0,
            s1_context_ptr: 0,
            s1_cd_max: 0,
            s1_dss: 0,
            s1_stalld: false,
            strw: 0,
            s2: None,
        }
    }

    /// Stage 1 only, one CD at `cd`.
    pub fn stage1(cd: u64) -> Self {
        Self {
            s1_context_ptr: cd,
            ..Self::with_config(0b101)
        }
    }

    pub fn encode(&self) -> [u64; 8] {
        let d0 = u64::from(self.valid)
            | self.config << 1
            | self.s1_fmt << 4
            | self.s1_context_ptr
            | self.s1_cd_max << 59;
        let d1 = self.s1_dss | u64::from(self.s1_stalld) << 27 | self.strw << 30;
        let [d2, d3] = self.s2.map_or([0, 0], |s2| s2.encode());
        [d0, d1, d2, d3, 0, 0, 0, 0]
    }
}

/// Commands, from their fields.
pub mod cmd {
    use crate::host_iommu::smmuv3::wire::Command;

    pub fn cfgi_ste(sid: u32) -> Command {
        Command([0x03 | u64::from(sid) << 32, 1])
    }
    pub fn cfgi_ste_range(sid: u32, range: u64) -> Command {
        Command([0x04 | u64::from(sid) << 32, range])
    }
    pub fn cfgi_cd(sid: u32, ssid: u32) -> Command {
        Command([0x05 | u64::from(ssid) << 12 | u64::from(sid) << 32, 1])
    }
    pub fn cfgi_cd_all(sid: u32) -> Command {
        Command([0x06 | u64::from(sid) << 32, 0])
    }
    pub fn tlbi_nh_all(vmid: u16) -> Command {
        Command([0x10 | u64::from(vmid) << 32, 0])
    }
    pub fn tlbi_nh_asid(vmid: u16, asid: u16) -> Command {
        Command([0x11 | u64::from(vmid) << 32 | u64::from(asid) << 48, 0])
    }
    pub fn tlbi_nh_va(vmid: u16, asid: u16, va: u64) -> Command {
        Command([
            0x12 | u64::from(vmid) << 32 | u64::from(asid) << 48,
            va & !0xfff | 1,
        ])
    }
    /// NUM, SCALE and TG (1 = 4 KiB) name (num + 1) << scale pages from `va`.
    pub fn tlbi_nh_va_range(vmid: u16, asid: u16, va: u64, num: u64, scale: u64) -> Command {
        Command([
            0x12 | num << 12 | scale << 20 | u64::from(vmid) << 32 | u64::from(asid) << 48,
            va & !0xfff | 1 << 10,
        ])
    }
    pub fn tlbi_nh_vaa(vmid: u16, va: u64) -> Command {
        Command([0x13 | u64::from(vmid) << 32, va & !0xfff])
    }
    pub fn tlbi_s12_vmall(vmid: u16) -> Command {
        Command([0x28 | u64::from(vmid) << 32, 0])
    }
    pub fn tlbi_s2_ipa(vmid: u16, ipa: u64) -> Command {
        Command([0x2a | u64::from(vmid) << 32, ipa & !0xfff])
    }
    pub fn tlbi_nsnh_all() -> Command {
        Command([0x30, 0])
    }
    pub fn atc_inv(sid: u32, ssid: Option<u32>, addr: u64, size: u64) -> Command {
        let ssid = ssid.map_or(0, |s| 1 << 11 | u64::from(s) << 12);
        Command([0x40 | ssid | u64::from(sid) << 32, addr & !0xfff | size])
    }
    pub fn resume(sid: u32, stag: u16, retry: bool) -> Command {
        Command([
            0x44 | u64::from(if retry { 1u8 } else { 2 }) << 12 | u64::from(sid) << 32,
            stag.into(),
        ])
    }
    pub fn stall_term(sid: u32) -> Command {
        Command([0x45 | u64::from(sid) << 32, 0])
    }
    pub fn pri_resp(sid: u32, group: u64, resp: u64) -> Command {
        Command([0x41 | u64::from(sid) << 32, group | resp << 12])
    }
    pub fn sync_msi(addr: u64, data: u32) -> Command {
        Command([0x46 | 1 << 12 | u64::from(data) << 32, addr])
    }
}

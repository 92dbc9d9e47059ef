//! SMMUv3 data in the form iommufd's uAPI takes and gives it (`include/uapi/linux/iommufd.h`):
//! a guest STE's first two dwords for a nested HWPT (`iommu_hwpt_arm_smmuv3`), guest
//! invalidation commands for a vIOMMU (`iommu_viommu_arm_smmuv3_invalidate`), the host
//! SMMU's ID registers from GET_HW_INFO (`iommu_hw_info_arm_smmuv3`) and vEVENTQ records
//! (`iommufd_vevent_header` + `iommu_vevent_arm_smmuv3`).
//!
//! The structs are the uAPI's bytes: little-endian words, sizes and alignment checked at
//! compile time. Commands are checked against the same per-opcode field lists the kernel
//! checks (arm-smmu-v3-iommufd.c) so a refusal is known before the ioctl, and a batch
//! stops at the same command the kernel would stop at.

use super::iommufd_nested::{InvalidateEntries, NestedFormat};
use super::nested::{check_vste, NestedError};
use super::smmuv3::wire::{opcode, Command, EventRecord, EVENT_SIZE};

/// `IOMMU_HWPT_DATA_ARM_SMMUV3`: HWPT_ALLOC's `data_type` for a nested SMMUv3 STE.
pub const HWPT_DATA_ARM_SMMUV3: u32 = 2;
/// `IOMMU_VIOMMU_TYPE_ARM_SMMUV3`.
pub const VIOMMU_TYPE_ARM_SMMUV3: u32 = 1;
/// `IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3`: HWPT_INVALIDATE's `data_type` on a vIOMMU.
pub const VIOMMU_INVALIDATE_DATA_ARM_SMMUV3: u32 = 1;
/// `IOMMU_HW_INFO_TYPE_ARM_SMMUV3`.
pub const HW_INFO_TYPE_ARM_SMMUV3: u32 = 2;
/// `IOMMU_VEVENTQ_TYPE_ARM_SMMUV3`.
pub const VEVENTQ_TYPE_ARM_SMMUV3: u32 = 1;
/// `IOMMU_HW_INFO_ARM_SMMUV3_ERRATA_REPEAT_TLBI_CFGI`: every TLBI/CFGI must be sent twice.
pub const HW_INFO_FLAG_REPEAT_TLBI_CFGI: u32 = 1 << 0;
/// `IOMMU_VEVENTQ_FLAG_LOST_EVENTS`.
pub const VEVENT_FLAG_LOST_EVENTS: u32 = 1 << 0;

/// `struct iommu_hwpt_arm_smmuv3`: STE dwords 0 and 1, little-endian.
#[repr(C, align(8))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HwptArmSmmuv3 {
    ste: [u64; 2],
}
const _: () = assert!(size_of::<HwptArmSmmuv3>() == 16 && align_of::<HwptArmSmmuv3>() == 8);

impl HwptArmSmmuv3 {
    /// The nested HWPT data for a guest's STE, refused (as the kernel would, with EIO) if
    /// it sets fields the host owns. V = 0 is sent as all zeroes, which is what the kernel
    /// makes of it.
    pub fn from_vste(stream: u32, vste: [u64; 2]) -> Result<Self, NestedError> {
        check_vste(stream, vste)?;
        let words = if vste[0] & 1 == 0 { [0, 0] } else { vste };
        Ok(Self {
            ste: words.map(u64::to_le),
        })
    }

    pub fn ste(&self) -> [u64; 2] {
        self.ste.map(u64::from_le)
    }

    /// The bytes HWPT_ALLOC's `data_uptr` points at (`data_len` = 16).
    pub fn as_bytes(&self) -> &[u8; 16] {
        // SAFETY: 16 bytes of plain integers, no padding; u8 has alignment 1.
        unsafe { &*(self as *const Self).cast::<[u8; 16]>() }
    }
}

/// `struct iommu_viommu_arm_smmuv3_invalidate`: one command, little-endian.
#[repr(C, align(8))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViommuArmSmmuv3Invalidate {
    cmd: [u64; 2],
}
const _: () = assert!(
    size_of::<ViommuArmSmmuv3Invalidate>() == 16 && align_of::<ViommuArmSmmuv3Invalidate>() == 8
);

impl ViommuArmSmmuv3Invalidate {
    pub fn command(&self) -> Command {
        Command(self.cmd.map(u64::from_le))
    }

    /// An array of entries as HWPT_INVALIDATE's `data_uptr` takes it (`entry_len` = 16).
    pub fn slice_as_bytes(entries: &[Self]) -> &[u8] {
        // SAFETY: the entries are contiguous 16-byte blocks of plain integers, no padding.
        unsafe { std::slice::from_raw_parts(entries.as_ptr().cast(), size_of_val(entries)) }
    }
}

/// `struct iommu_hw_info_arm_smmuv3`, as GET_HW_INFO writes it.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HwInfoArmSmmuv3 {
    pub flags: u32,
    reserved: u32,
    /// SMMU_IDR0..5, raw.
    pub idr: [u32; 6],
    pub iidr: u32,
    pub aidr: u32,
}
pub const HW_INFO_ARM_SMMUV3_SIZE: usize = 40;
const _: () = assert!(size_of::<HwInfoArmSmmuv3>() == HW_INFO_ARM_SMMUV3_SIZE);

/// The ID register fields the kernel lets a VMM read (the uAPI's list), per register.
const USABLE_IDR: [u32; 6] = [
    // IDR0: ST_LEVEL, TERM_MODEL, STALL_MODEL, TTENDIAN, CD2L, ASID16, TTF.
    3 << 27 | 1 << 26 | 3 << 24 | 3 << 21 | 1 << 19 | 1 << 12 | 3 << 2,
    // IDR1: SSIDSIZE, SIDSIZE.
    0x1f << 6 | 0x3f,
    0,
    // IDR3: BBML, RIL.
    3 << 11 | 1 << 10,
    0,
    // IDR5: VAX, DS, GRAN64K, GRAN16K, GRAN4K.
    3 << 10 | 1 << 7 | 1 << 6 | 1 << 5 | 1 << 4,
];
const IDR0_S1P: u32 = 1 << 1;
const IDR0_COHACC: u32 = 1 << 4;
const IDR0_ATS: u32 = 1 << 10;

impl HwInfoArmSmmuv3 {
    /// What GET_HW_INFO reported: its flags and SMMU_IDR0..5.
    pub fn new(flags: u32, idr: [u32; 6]) -> Self {
        Self {
            flags,
            idr,
            ..Self::default()
        }
    }

    /// From the bytes GET_HW_INFO wrote; a shorter report (an older kernel's struct) reads
    /// as zeroes past its end, as the kernel's own zero-filling would give.
    pub fn from_le_bytes(bytes: &[u8]) -> Self {
        let mut buf = [0u8; HW_INFO_ARM_SMMUV3_SIZE];
        let n = bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        let word = |i: usize| u32::from_le_bytes(buf[i * 4..i * 4 + 4].try_into().unwrap());
        Self {
            flags: word(0),
            reserved: word(1),
            idr: std::array::from_fn(|i| word(2 + i)),
            iidr: word(8),
            aidr: word(9),
        }
    }

    /// The guest-visible SMMU_IDR0..5: only the fields the kernel supports for nesting,
    /// plus stage 1 and coherent access, which a host that nests always has. ATS is a
    /// per-device property and stays clear; the output size (IDR5.OAS) is the VMM's to
    /// set from its guest's address space.
    pub fn guest_idr(&self) -> [u32; 6] {
        let mut idr: [u32; 6] = std::array::from_fn(|i| self.idr[i] & USABLE_IDR[i]);
        idr[0] |= IDR0_S1P | IDR0_COHACC;
        idr
    }

    /// What decides which commands the host's kernel accepts.
    pub fn command_features(&self) -> HostCommandFeatures {
        HostCommandFeatures {
            asid_bits: if self.idr[0] & 1 << 12 != 0 { 16 } else { 8 },
            ssid_bits: self.idr[1] >> 6 & 0x1f,
            ats: self.idr[0] & IDR0_ATS != 0,
            range_invalidation: self.idr[3] & 1 << 10 != 0,
            ds: self.idr[5] & 1 << 7 != 0,
        }
    }

    /// The host's SMMU needs every TLBI/CFGI sent twice (an erratum the kernel reports).
    pub fn repeat_tlbi_cfgi(&self) -> bool {
        self.flags & HW_INFO_FLAG_REPEAT_TLBI_CFGI != 0
    }
}

/// The host SMMU's features that the kernel's command checks depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostCommandFeatures {
    /// 8 or 16.
    pub asid_bits: u32,
    /// SubstreamID bits; 0: no substreams.
    pub ssid_bits: u32,
    pub ats: bool,
    /// Range invalidation (IDR3.RIL).
    pub range_invalidation: bool,
    /// 52-bit addressing with 4K and 16K granules (IDR5.DS).
    pub ds: bool,
}

/// Why a guest command cannot go to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RefusedCommand {
    #[error("opcode {0:#04x} is not forwarded to a vIOMMU")]
    Opcode(u8),
    #[error("opcode {opcode:#04x} sets bits the host does not accept: {dword0:#x} {dword1:#x}")]
    Fields {
        opcode: u8,
        dword0: u64,
        dword1: u64,
    },
    #[error("opcode {0:#04x} carries a reserved range encoding")]
    Range(u8),
    #[error("ATC_INV on a host SMMU without ATS")]
    NoAts,
}

const OP: u64 = 0xff;
const SSV: u64 = 1 << 11;
const SSID: u64 = 0xf_ffff << 12;
const SID: u64 = 0xffff_ffff << 32;
const TLBI_NUM: u64 = 0x1f << 12;
const TLBI_SCALE: u64 = 0x3f << 20;
const TLBI_VMID: u64 = 0xffff << 32;
const TLBI_LEAF: u64 = 1;
const TLBI_TTL: u64 = 3 << 8;
const TLBI_TG: u64 = 3 << 10;
const ADDRESS: u64 = !0xfff;
const ATC_GLOBAL: u64 = 1 << 9;
const ATC_SIZE: u64 = 0x3f;
/// ATC_INV Size above this (invalidate everything) may raise CERROR_ILL.
const ATC_SIZE_ALL: u64 = 52;
const CFGI_LEAF: u64 = 1;

fn asid_field(bits: u32) -> u64 {
    ((1u64 << bits) - 1) << 48
}

/// NUM/SCALE/TG/TTL values the architecture reserves.
fn range_is_reserved(features: &HostCommandFeatures, cmd: [u64; 2]) -> bool {
    let range = cmd[0] & (TLBI_NUM | TLBI_SCALE) != 0;
    let ttl = (cmd[1] & TLBI_TTL) >> 8;
    let tg = (cmd[1] & TLBI_TG) >> 10;
    if tg == 0 {
        return range || ttl != 0;
    }
    (tg == 2 && ttl == 1 && !features.ds) || (!range && ttl == 0)
}

/// The fields of a command the host kernel accepts, given its SMMU's features.
fn allowed_fields(
    features: &HostCommandFeatures,
    cmd: [u64; 2],
) -> Result<[u64; 2], RefusedCommand> {
    let op = (cmd[0] & OP) as u8;
    let mut allowed = [OP, 0];
    match op {
        opcode::TLBI_NSNH_ALL => {}
        opcode::TLBI_NH_VA | opcode::TLBI_NH_VAA => {
            if op == opcode::TLBI_NH_VA {
                allowed[0] |= asid_field(features.asid_bits);
            }
            if features.range_invalidation {
                if range_is_reserved(features, cmd) {
                    return Err(RefusedCommand::Range(op));
                }
                allowed[0] |= TLBI_NUM | TLBI_SCALE;
                allowed[1] |= TLBI_TG | TLBI_TTL;
                if !features.ds {
                    // SCALE values above 31 need DS.
                    allowed[0] &= !(1 << 25);
                }
            }
            allowed[0] |= TLBI_VMID;
            allowed[1] |= TLBI_LEAF | ADDRESS;
        }
        opcode::TLBI_NH_ASID => allowed[0] |= asid_field(features.asid_bits) | TLBI_VMID,
        opcode::TLBI_NH_ALL => allowed[0] |= TLBI_VMID,
        opcode::ATC_INV => {
            if !features.ats {
                return Err(RefusedCommand::NoAts);
            }
            if cmd[1] & ATC_SIZE > ATC_SIZE_ALL {
                return Err(RefusedCommand::Range(op));
            }
            if features.ssid_bits > 0 {
                allowed[0] |= SSV | SSID | ATC_GLOBAL;
            }
            allowed[0] |= SID;
            allowed[1] |= ATC_SIZE | ADDRESS;
        }
        opcode::CFGI_CD | opcode::CFGI_CD_ALL => {
            if op == opcode::CFGI_CD {
                if features.ssid_bits > 0 {
                    allowed[0] |= SSID;
                }
                allowed[1] |= CFGI_LEAF;
            }
            allowed[0] |= SID;
        }
        other => return Err(RefusedCommand::Opcode(other)),
    }
    Ok(allowed)
}

/// A guest's invalidation command as a vIOMMU entry: refused if the host kernel would
/// refuse it. The guest's VMID field is cleared (the kernel puts the host's in); StreamIDs
/// stay the guest's (the kernel translates them through the vDEVICEs).
pub fn encode_invalidation(
    features: &HostCommandFeatures,
    command: &Command,
) -> Result<ViommuArmSmmuv3Invalidate, RefusedCommand> {
    let mut cmd = command.0;
    let allowed = allowed_fields(features, cmd)?;
    if cmd[0] & !allowed[0] != 0 || cmd[1] & !allowed[1] != 0 {
        return Err(RefusedCommand::Fields {
            opcode: (cmd[0] & OP) as u8,
            dword0: cmd[0] & !allowed[0],
            dword1: cmd[1] & !allowed[1],
        });
    }
    // Only TLBI commands have a VMID; elsewhere bits 47:32 are part of the StreamID.
    let op = (cmd[0] & OP) as u8;
    if matches!(
        op,
        opcode::TLBI_NH_ALL | opcode::TLBI_NH_ASID | opcode::TLBI_NH_VA | opcode::TLBI_NH_VAA
    ) {
        cmd[0] &= !TLBI_VMID;
    }
    Ok(ViommuArmSmmuv3Invalidate {
        cmd: cmd.map(u64::to_le),
    })
}

/// The entries for a run of guest commands, up to the first the host would refuse (and
/// that refusal, with its index).
pub fn encode_invalidations(
    features: &HostCommandFeatures,
    commands: &[Command],
) -> (
    Vec<ViommuArmSmmuv3Invalidate>,
    Option<(usize, RefusedCommand)>,
) {
    let mut entries = Vec::with_capacity(commands.len());
    for (i, command) in commands.iter().enumerate() {
        match encode_invalidation(features, command) {
            Ok(entry) => entries.push(entry),
            Err(refusal) => return (entries, Some((i, refusal))),
        }
    }
    (entries, None)
}

/// The nested back-end's data for a host SMMUv3.
#[derive(Debug, Clone, Copy)]
pub struct Smmuv3Format {
    pub features: HostCommandFeatures,
    /// The guest's SMMU_IDR0..5 ([`HwInfoArmSmmuv3::guest_idr`]).
    pub guest_idr: [u32; 6],
}

/// SMMU_IDR5.OAS encodings and the output address bits each gives.
const OAS_BITS: [(u32, u32); 7] = [
    (0, 32),
    (1, 36),
    (2, 40),
    (3, 42),
    (4, 44),
    (5, 48),
    (6, 52),
];

impl Smmuv3Format {
    /// The data for a host SMMU as GET_HW_INFO describes it, for a guest whose RAM ends
    /// below `ram_end`: the guest's SMMU outputs addresses (IPAs) wide enough to reach all
    /// of it, the smallest IDR5.OAS that does.
    pub fn for_host(info: &HwInfoArmSmmuv3, ram_end: u64) -> Self {
        let needed = 64 - ram_end.saturating_sub(1).leading_zeros();
        let oas = OAS_BITS
            .iter()
            .find(|&&(_, bits)| bits >= needed)
            .map_or(6, |&(encoding, _)| encoding);
        let mut guest_idr = info.guest_idr();
        guest_idr[5] = guest_idr[5] & !7 | oas;
        Self {
            features: info.command_features(),
            guest_idr,
        }
    }
}

impl NestedFormat for Smmuv3Format {
    fn viommu_type(&self) -> u32 {
        VIOMMU_TYPE_ARM_SMMUV3
    }

    fn hwpt_data_type(&self) -> u32 {
        HWPT_DATA_ARM_SMMUV3
    }

    fn hwpt_data(&self, stream: u32, vste: [u64; 2]) -> Result<Vec<u8>, NestedError> {
        Ok(HwptArmSmmuv3::from_vste(stream, vste)?.as_bytes().to_vec())
    }

    fn invalidate_data_type(&self) -> u32 {
        VIOMMU_INVALIDATE_DATA_ARM_SMMUV3
    }

    fn invalidate_entry_len(&self) -> u32 {
        size_of::<ViommuArmSmmuv3Invalidate>() as u32
    }

    fn invalidate_entries(&self, commands: &[Command]) -> InvalidateEntries {
        let (entries, refused) = encode_invalidations(&self.features, commands);
        InvalidateEntries {
            bytes: ViommuArmSmmuv3Invalidate::slice_as_bytes(&entries).to_vec(),
            sources: (0..entries.len()).collect(),
            refused: refused.map(|(i, _)| (i, commands[i].opcode())),
        }
    }

    fn guest_idr(&self) -> [u32; 6] {
        self.guest_idr
    }

    fn veventq_type(&self) -> u32 {
        VEVENTQ_TYPE_ARM_SMMUV3
    }

    fn vevent_size(&self) -> usize {
        EVENT_SIZE
    }

    fn event_record(&self, data: &[u8]) -> Option<EventRecord> {
        EventRecord::from_le_bytes(data)
    }
}

/// `struct iommufd_vevent_header` (8 bytes) then `struct iommu_vevent_arm_smmuv3` (32).
pub const VEVENT_HEADER_SIZE: usize = 8;

/// One record read from an SMMUv3 vEVENTQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vevent {
    /// An event, StreamID the vDEVICE's virtual ID.
    Event { sequence: u32, record: EventRecord },
    /// Events were lost after the previous record (the queue overflowed); no data follows.
    Lost { sequence: u32 },
}

/// Splits what a read of the vEVENTQ fd returned into records; `None` if it ends inside
/// a record (the kernel only hands out whole ones, so that is a broken stream).
pub fn decode_vevents(mut bytes: &[u8]) -> Option<Vec<Vevent>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let header = bytes.get(..VEVENT_HEADER_SIZE)?;
        let flags = u32::from_le_bytes(header[..4].try_into().ok()?);
        let sequence = u32::from_le_bytes(header[4..].try_into().ok()?);
        bytes = &bytes[VEVENT_HEADER_SIZE..];
        if flags & VEVENT_FLAG_LOST_EVENTS != 0 {
            out.push(Vevent::Lost { sequence });
            continue;
        }
        let record = EventRecord::from_le_bytes(bytes.get(..EVENT_SIZE)?)?;
        bytes = &bytes[EVENT_SIZE..];
        out.push(Vevent::Event { sequence, record });
    }
    Some(out)
}

#[cfg(test)]
mod tests;

//! The test driver's data behind [`NestedFormat`], so the nested back-end's object
//! lifecycle runs against the real iommufd core in the rig. The mock IOMMU knows no
//! SMMUv3: a guest STE is checked by the SMMUv3 kernel's rules and becomes the mock's
//! `{ iotlb }` (carrying the STE's Config and context pointer, so a check operation can
//! tell which STE a nested HWPT was made from), and the SMMUv3 commands that name a stream
//! become invalidations of that vDEVICE's mock cache.

use super::{
    DEV_CACHE_NUM, HWPT_DATA_SELFTEST, INVALIDATE_FLAG_ALL, VEVENTQ_TYPE_SELFTEST,
    VEVENT_SELFTEST_SIZE, VIOMMU_INVALIDATE_DATA_SELFTEST, VIOMMU_TYPE_SELFTEST,
};
use crate::host_iommu::iommufd_nested::{InvalidateEntries, NestedFormat};
use crate::host_iommu::iommufd_smmuv3::{encode_invalidation, HostCommandFeatures};
use crate::host_iommu::nested::{check_vste, Command, EventRecord, NestedError};
use crate::host_iommu::smmuv3::wire::{event_id, opcode};
use crate::host_iommu::smmuv3::Smmuv3Caps;

/// `sizeof(struct iommu_viommu_invalidate_selftest)`.
const INVALIDATE_ENTRY_SIZE: usize = 12;

/// The commands' fields are checked as a host SMMUv3 with every feature would check them.
const FEATURES: HostCommandFeatures = HostCommandFeatures {
    asid_bits: 16,
    ssid_bits: 20,
    ats: true,
    range_invalidation: true,
    ds: false,
};

/// The mock nested HWPT's IOTLB value for a guest STE: Config and V (bits 3:0) and
/// S1ContextPtr's bits 33:6 above them. An STE with V = 0 is all zeroes, as the kernel
/// makes of it.
pub fn selftest_iotlb(vste: [u64; 2]) -> u32 {
    if vste[0] & 1 == 0 {
        return 0;
    }
    (vste[0] & 0xf) as u32 | ((vste[0] >> 6) as u32) << 4
}

/// The test driver's vIOMMU, nested HWPT, invalidation and vEVENTQ types.
#[derive(Debug, Clone, Copy, Default)]
pub struct SelftestFormat;

/// One `struct iommu_viommu_invalidate_selftest`.
fn entry(flags: u32, vdev_id: u32, cache_id: u32) -> [u8; INVALIDATE_ENTRY_SIZE] {
    let mut b = [0u8; INVALIDATE_ENTRY_SIZE];
    for (i, word) in [flags, vdev_id, cache_id].into_iter().enumerate() {
        b[4 * i..4 * i + 4].copy_from_slice(&word.to_le_bytes());
    }
    b
}

/// What a command invalidates in the mock: the named stream's cache entry (its
/// SubstreamID's, one of four) or all of them; `None` for a TLBI, which names no stream
/// (the mock caches no translations behind a vIOMMU).
fn mock_entry(command: &Command) -> Option<[u8; INVALIDATE_ENTRY_SIZE]> {
    let sid = command.sid();
    let one = |ssid: u32| entry(0, sid, ssid % DEV_CACHE_NUM);
    match command.opcode() {
        opcode::CFGI_CD => Some(one(command.ssid())),
        opcode::ATC_INV if command.ssv() => Some(one(command.ssid())),
        opcode::CFGI_CD_ALL | opcode::ATC_INV => Some(entry(INVALIDATE_FLAG_ALL, sid, 0)),
        _ => None,
    }
}

impl NestedFormat for SelftestFormat {
    fn viommu_type(&self) -> u32 {
        VIOMMU_TYPE_SELFTEST
    }

    fn hwpt_data_type(&self) -> u32 {
        HWPT_DATA_SELFTEST
    }

    fn hwpt_data(&self, stream: u32, vste: [u64; 2]) -> Result<Vec<u8>, NestedError> {
        check_vste(stream, vste)?;
        Ok(selftest_iotlb(vste).to_le_bytes().to_vec())
    }

    fn invalidate_data_type(&self) -> u32 {
        VIOMMU_INVALIDATE_DATA_SELFTEST
    }

    fn invalidate_entry_len(&self) -> u32 {
        INVALIDATE_ENTRY_SIZE as u32
    }

    fn invalidate_entries(&self, commands: &[Command]) -> InvalidateEntries {
        let mut out = InvalidateEntries::default();
        for (i, command) in commands.iter().enumerate() {
            if encode_invalidation(&FEATURES, command).is_err() {
                out.refused = Some((i, command.opcode()));
                break;
            }
            if let Some(bytes) = mock_entry(command) {
                out.bytes.extend_from_slice(&bytes);
                out.sources.push(i);
            }
        }
        out
    }

    /// The mock has no ID registers: the guest is shown the software SMMUv3's.
    fn guest_idr(&self) -> [u32; 6] {
        Smmuv3Caps::default().idr()
    }

    fn veventq_type(&self) -> u32 {
        VEVENTQ_TYPE_SELFTEST
    }

    fn vevent_size(&self) -> usize {
        VEVENT_SELFTEST_SIZE
    }

    /// The mock's event names only the vDEVICE (`{ virt_id }`): it reaches the guest as a
    /// bad-STE event of that StreamID.
    fn event_record(&self, data: &[u8]) -> Option<EventRecord> {
        let virt_id = u32::from_le_bytes(data.get(..4)?.try_into().ok()?);
        Some(EventRecord::new(event_id::C_BAD_STE, virt_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(bytes: &[u8], i: usize) -> u32 {
        u32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap())
    }

    #[test]
    fn stream_commands_become_mock_cache_entries_and_tlbis_none() {
        let cd = Command([u64::from(opcode::CFGI_CD) | 6 << 12 | 0x18 << 32, 1]);
        let all = Command([u64::from(opcode::CFGI_CD_ALL) | 0x20 << 32, 0]);
        let tlbi = Command([u64::from(opcode::TLBI_NH_ASID) | 3 << 48, 0]);
        let sync = Command([u64::from(opcode::SYNC), 0]);
        let e = SelftestFormat.invalidate_entries(&[cd, tlbi, all, sync, cd]);
        assert_eq!(
            e.sources,
            [0, 2],
            "the TLBI has no entry; the SYNC stops it"
        );
        assert_eq!(e.refused, Some((3, opcode::SYNC)));
        assert_eq!(e.bytes.len(), 2 * INVALIDATE_ENTRY_SIZE);
        let (first, second) = e.bytes.split_at(INVALIDATE_ENTRY_SIZE);
        assert_eq!(
            [word(first, 0), word(first, 1), word(first, 2)],
            [0, 0x18, 2]
        );
        assert_eq!(
            [word(second, 0), word(second, 1)],
            [INVALIDATE_FLAG_ALL, 0x20]
        );
    }

    #[test]
    fn the_mock_iotlb_tells_stes_apart_and_host_fields_are_refused() {
        let translate = [1 | 0b101 << 1 | 0x4_0000, 0];
        let bypass = [1 | 0b100 << 1, 0];
        assert_ne!(selftest_iotlb(translate), selftest_iotlb(bypass));
        assert_eq!(selftest_iotlb([0, 0]), 0);
        assert_eq!(
            SelftestFormat.hwpt_data(1, translate).unwrap(),
            selftest_iotlb(translate).to_le_bytes()
        );
        assert!(SelftestFormat.hwpt_data(1, [1 | 0b111 << 1, 0]).is_err());
    }

    #[test]
    fn an_event_names_the_vdevice() {
        let record = SelftestFormat.event_record(&0x42u32.to_le_bytes()).unwrap();
        assert_eq!((record.id(), record.sid()), (event_id::C_BAD_STE, 0x42));
        assert!(SelftestFormat.event_record(&[1, 2]).is_none());
    }
}

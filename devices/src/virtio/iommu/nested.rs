//! The nested back-end behind the virtio-iommu's table-mode domains, and what the
//! extension's requests become for it: STE words checked against guest RAM and the SMMU's
//! SubstreamID width, INVALIDATE scopes encoded as SMMUv3 commands, the PROBE property
//! from the SMMU's ID registers.

use std::fmt;
use std::sync::Arc;

use vm_memory::{Address, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::nested_protocol::{
    InvalidateCommand, PageRange, SmmuIdRegisters, SteMode, VirtualSte, SMMUV3_PROPERTY_SIZE,
};
use super::protocol::Status;
use crate::fault_relay::FaultRelayState;
use crate::host_iommu::nested::{Command, NestedHostIommu, NestedTranslator};
use crate::host_iommu::smmuv3::wire::opcode;

/// Bytes of a context descriptor: the first one must lie in guest RAM.
const CD_SIZE: u64 = 64;

/// Where table-mode domains are served: a host back-end (installs, invalidations, events,
/// page requests) and, for the devices nestor emulates, a translator.
#[derive(Clone)]
pub struct NestedBackend {
    host: Arc<dyn NestedHostIommu>,
    /// `None`: no emulated device can be translated in table mode (a hardware SMMU
    /// translates only its own devices).
    translator: Option<Arc<dyn NestedTranslator>>,
    /// Guest RAM, where context-descriptor tables must be.
    ram: GuestMemoryMmap,
    /// The fault relay, when page requests reach the guest (PAGE_REQUEST offered).
    fault_relay: Option<Arc<FaultRelayState>>,
}

impl fmt::Debug for NestedBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NestedBackend")
            .field("host", &self.host)
            .field("translates", &self.translator.is_some())
            .finish_non_exhaustive()
    }
}

impl NestedBackend {
    /// A back-end that translates emulated devices too (the software SMMUv3).
    pub fn translating(translator: Arc<dyn NestedTranslator>, ram: GuestMemoryMmap) -> Self {
        Self {
            host: translator.clone(),
            translator: Some(translator),
            ram,
            fault_relay: None,
        }
    }

    /// A back-end that translates only its own devices' DMA (iommufd's nested objects on
    /// a host IOMMU): endpoints nestor emulates cannot be translated in table mode.
    pub fn host_only(host: Arc<dyn NestedHostIommu>, ram: GuestMemoryMmap) -> Self {
        Self {
            host,
            translator: None,
            ram,
            fault_relay: None,
        }
    }

    /// Page requests and events reach the guest through `relay`, and PAGE_RESP answers
    /// through it: the extension's PAGE_REQUEST is offered.
    pub fn with_fault_relay(mut self, relay: Arc<FaultRelayState>) -> Self {
        self.fault_relay = Some(relay);
        self
    }

    pub fn fault_relay(&self) -> Option<&Arc<FaultRelayState>> {
        self.fault_relay.as_ref()
    }

    /// The stream's configuration was replaced or removed: the host failed its page
    /// requests, so a late answer must change nothing.
    pub fn forget_stream(&self, stream: u32) {
        if let Some(relay) = &self.fault_relay {
            relay.forget_stream(stream);
        }
    }

    pub fn host(&self) -> &Arc<dyn NestedHostIommu> {
        &self.host
    }

    pub fn translator(&self) -> Option<&Arc<dyn NestedTranslator>> {
        self.translator.as_ref()
    }

    fn id_registers(&self) -> SmmuIdRegisters {
        let idr = self.host.hw_info();
        SmmuIdRegisters {
            idr0: idr[0],
            idr1: idr[1],
            idr3: idr[3],
            idr5: idr[5],
        }
    }

    /// SMMU_IDR1.SSIDSIZE: the SubstreamID bits the SMMU has.
    pub fn ssid_bits(&self) -> u8 {
        ((self.host.hw_info()[1] >> 6) & 0x1f) as u8
    }

    /// The `NESTOR_SMMUV3` PROBE property.
    pub fn property(&self) -> [u8; SMMUV3_PROPERTY_SIZE] {
        self.id_registers().property()
    }

    /// The checks of an ATTACH_TABLE that need the VM: S1ContextPtr in guest RAM and
    /// S1CDMax within SSIDSIZE, RANGE otherwise.
    pub fn check_ste(&self, ste: &VirtualSte) -> Result<(), Status> {
        let SteMode::Translate {
            context_ptr,
            s1cdmax,
            ..
        } = ste.mode()
        else {
            return Ok(());
        };
        let cd = GuestAddress(context_ptr);
        let in_ram = cd
            .checked_add(CD_SIZE - 1)
            .is_some_and(|last| self.ram.address_in_range(cd) && self.ram.address_in_range(last));
        if !in_ram || s1cdmax > self.ssid_bits() {
            return Err(Status::Range);
        }
        Ok(())
    }
}

/// What an endpoint leaving table mode (DETACH, reset) invalidates besides its STE: its
/// context descriptors, and the TLB entries of every ASID, since the guest may give the
/// ASIDs it used to other tables without an INVALIDATE of its own.
pub fn forget_stream_commands(sid: u32) -> [Command; 2] {
    [
        Command([u64::from(opcode::CFGI_CD_ALL) | u64::from(sid) << 32, 0]),
        Command([u64::from(opcode::TLBI_NH_ALL), 0]),
    ]
}

/// The SMMUv3 commands one decoded INVALIDATE command is for the guest StreamID `sid`
/// (VMIDs are the host's to fill in).
pub fn smmu_commands(command: &InvalidateCommand, sid: u32) -> Vec<Command> {
    let sid_bits = u64::from(sid) << 32;
    match *command {
        InvalidateCommand::CfgiCd { pasid, leaf } => vec![Command([
            u64::from(opcode::CFGI_CD) | u64::from(pasid & 0xf_ffff) << 12 | sid_bits,
            u64::from(leaf),
        ])],
        InvalidateCommand::CfgiCdAll => {
            vec![Command([u64::from(opcode::CFGI_CD_ALL) | sid_bits, 0])]
        }
        InvalidateCommand::TlbiNhAll => vec![Command([u64::from(opcode::TLBI_NH_ALL), 0])],
        InvalidateCommand::TlbiNhAsid { asid } => vec![Command([
            u64::from(opcode::TLBI_NH_ASID) | u64::from(asid) << 48,
            0,
        ])],
        InvalidateCommand::TlbiNhVa { asid, range } => {
            tlbi_range_commands(opcode::TLBI_NH_VA, u64::from(asid) << 48, &range).unwrap_or_else(
                || {
                    vec![Command([
                        u64::from(opcode::TLBI_NH_ASID) | u64::from(asid) << 48,
                        0,
                    ])]
                },
            )
        }
        InvalidateCommand::TlbiNhVaa { range } => {
            tlbi_range_commands(opcode::TLBI_NH_VAA, 0, &range)
                .unwrap_or_else(|| vec![Command([u64::from(opcode::TLBI_NH_ALL), 0])])
        }
        InvalidateCommand::AtcInv { pasid, range } => {
            let ssid = pasid.map_or(0, |p| 1 << 11 | u64::from(p & 0xf_ffff) << 12);
            let dword0 = u64::from(opcode::ATC_INV) | ssid | sid_bits;
            // 2^Size 4 KiB pages aligned to their size: the smallest such span holding the
            // range (Size 52 is every address).
            let (address, size) = range.map_or((0, 52), |r| atc_span(&r));
            vec![Command([dword0, address | size])]
        }
    }
}

/// Range TLBIs (TG, NUM, SCALE) covering `range` exactly, the way a driver splits a range
/// into (NUM + 1) * 2^SCALE-page pieces; `None` when the range is too large for them (the
/// caller widens the invalidation instead).
fn tlbi_range_commands(op: u8, asid_bits: u64, range: &PageRange) -> Option<Vec<Command>> {
    let tg = u64::from((range.page_shift - 10) / 2);
    let leaf = u64::from(range.leaf);
    let mut commands = Vec::new();
    let mut address = range.address;
    let mut left = range.nr_pages;
    while left > 0 {
        let scale = left.trailing_zeros();
        if scale > 31 {
            return None;
        }
        let num = (left >> scale) & 0x1f;
        let num = if num == 0 { 0x20 } else { num };
        commands.push(Command([
            u64::from(op) | (num - 1) << 12 | u64::from(scale) << 20 | asid_bits,
            address & !0xfff | tg << 10 | leaf,
        ]));
        let pages = num << scale;
        left -= pages;
        address = address.wrapping_add(pages << range.page_shift);
    }
    Some(commands)
}

/// ATC_INV's address and Size for the smallest aligned power-of-two span holding `range`.
fn atc_span(range: &PageRange) -> (u64, u64) {
    let first = range.address;
    let bytes = range.nr_pages << range.page_shift;
    let last = first.saturating_add(bytes - 1);
    // The span's size: the highest bit in which first and last differ, and above.
    let differing = 64 - (first ^ last).leading_zeros();
    let size_bits = differing.max(12);
    if size_bits >= 64 {
        return (0, 52);
    }
    (
        first & !((1u64 << size_bits) - 1),
        u64::from(size_bits - 12),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(address: u64, nr_pages: u64, page_shift: u8) -> PageRange {
        PageRange {
            address,
            nr_pages,
            page_shift,
            leaf: true,
        }
    }

    /// Pages each range TLBI names: (NUM + 1) << SCALE, per the architecture.
    fn pages(cmd: &Command) -> u64 {
        (u64::from(cmd.num()) + 1) << cmd.scale()
    }

    #[test]
    fn range_tlbis_cover_the_range_exactly() {
        for nr in [1u64, 2, 31, 32, 33, 100, 4096, 0x12345] {
            let cmds = tlbi_range_commands(opcode::TLBI_NH_VA, 7 << 48, &range(0x40_0000, nr, 12))
                .unwrap();
            let mut expected = 0x40_0000;
            for c in &cmds {
                assert_eq!(c.address(), expected, "{nr} pages");
                assert_eq!((c.tg(), c.asid(), c.leaf()), (1, 7, true));
                expected += pages(c) << 12;
            }
            assert_eq!(expected, 0x40_0000 + (nr << 12), "{nr} pages");
        }
        let cmds = tlbi_range_commands(opcode::TLBI_NH_VAA, 0, &range(0x10_0000, 3, 16)).unwrap();
        assert_eq!(cmds.len(), 1);
        assert_eq!((cmds[0].tg(), pages(&cmds[0])), (3, 3));
        assert!(tlbi_range_commands(opcode::TLBI_NH_VAA, 0, &range(0, 1 << 40, 12)).is_none());
    }

    #[test]
    fn a_range_too_large_widens_to_the_asid_or_everything() {
        let huge = range(0, 1 << 40, 12);
        let va = smmu_commands(
            &InvalidateCommand::TlbiNhVa {
                asid: 3,
                range: huge,
            },
            9,
        );
        assert_eq!(va.len(), 1);
        assert_eq!((va[0].opcode(), va[0].asid()), (opcode::TLBI_NH_ASID, 3));
        let vaa = smmu_commands(&InvalidateCommand::TlbiNhVaa { range: huge }, 9);
        assert_eq!(vaa[0].opcode(), opcode::TLBI_NH_ALL);
    }

    #[test]
    fn configuration_and_atc_commands_name_the_stream() {
        let cd = smmu_commands(
            &InvalidateCommand::CfgiCd {
                pasid: 5,
                leaf: true,
            },
            0x18,
        );
        assert_eq!(
            (cd[0].opcode(), cd[0].sid(), cd[0].ssid()),
            (opcode::CFGI_CD, 0x18, 5)
        );
        let all = smmu_commands(&InvalidateCommand::CfgiCdAll, 0x18);
        assert_eq!((all[0].opcode(), all[0].sid()), (opcode::CFGI_CD_ALL, 0x18));
        let atc = smmu_commands(
            &InvalidateCommand::AtcInv {
                pasid: Some(2),
                range: Some(range(0x3000, 2, 12)),
            },
            0x18,
        );
        // 0x3000..0x4fff: the smallest aligned span holding both is 32 KiB from 0.
        assert_eq!(
            (
                atc[0].sid(),
                atc[0].ssv(),
                atc[0].ssid(),
                atc[0].address(),
                atc[0].atc_size()
            ),
            (0x18, true, 2, 0, 3)
        );
        let whole = smmu_commands(
            &InvalidateCommand::AtcInv {
                pasid: None,
                range: None,
            },
            1,
        );
        assert_eq!((whole[0].ssv(), whole[0].atc_size()), (false, 52));
    }
}

//! Table-mode domains end to end: requests through the requestq, the guest's stage-1
//! tables (built here by hand from the Arm architecture, VMSAv8-64 4 KiB granule) in guest
//! memory, DMA through the seam and the software SMMUv3, faults on the eventq.

use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress};

use super::rig::*;
use crate::fault_relay::{FaultRelayState, GroupLimits};
use crate::host_iommu::smmuv3::{Smmuv3, Smmuv3Caps};
use crate::virtio::iommu::nested::NestedBackend;
use crate::virtio::iommu::nested_protocol::{fault_reason, features, PROBE_T_NESTOR_SMMUV3};
use crate::virtio::iommu::page_requests::GuestEventq;
use crate::virtio::iommu::protocol::{
    FaultRecord, Status, FAULT_F_ADDRESS, FAULT_F_READ, FAULT_F_WRITE, FAULT_RECORD_SIZE,
    FAULT_R_MAPPING, MAP_F_READ, MAP_F_WRITE,
};

const OK: Option<Status> = Some(Status::Ok);
const INVAL: Option<Status> = Some(Status::Inval);
const RANGE: Option<Status> = Some(Status::Range);
const NOENT: Option<Status> = Some(Status::NoEnt);
const UNSUPP: Option<Status> = Some(Status::Unsupp);

/// The CD table: four CDs (S1CDMax 2), one per PASID.
const CD_TABLE: u64 = 0x40_0000;
/// Each PASID's level-1, level-2 and level-3 tables, a page apart.
const TABLES: [u64; 4] = [0, 0x41_0000, 0x42_0000, 0];
/// The IOVA every test maps: level-1 index 1, level-2 and level-3 index 0.
const IOVA: u64 = 0x4000_0000;
/// What IOVA maps to for PASIDs 1 and 2.
const PAGE_OF: [u64; 3] = [0, 0x50_0000, 0x60_0000];
const EVENTS_AT: u64 = 0x30_000;

/// STE dword 0: V, Config S1-translate, linear CD table at CD_TABLE, S1CDMax 2.
const STE0: u64 = 1 | 0b101 << 1 | CD_TABLE | 2 << 59;

// VMSAv8-64 descriptors.
const TABLE: u64 = 0b11;
/// A level-3 page: valid, page, AttrIndx 0, AP[1] (unprivileged access: DMA is), AF,
/// nG (the translation is its ASID's alone: a global one would serve every ASID).
const PAGE_RW: u64 = 0b11 | 1 << 6 | 1 << 10 | 1 << 11;
/// AP[2]: read-only.
const AP_READ_ONLY: u64 = 1 << 7;

/// A context descriptor: T0SZ 25 (a 39-bit space, walks from level 1), TG0 4 KiB, EPD1
/// (no TTB1 region), V, IPS 48 bits, AA64, R (record faults), A (abort them), `asid`.
fn cd(ttb0: u64, asid: u16) -> [u64; 8] {
    let d0 = 25 | 1 << 30 | 1 << 31 | 5 << 32 | 1 << 41 | 1 << 45 | 1 << 46 | u64::from(asid) << 48;
    [d0, ttb0, 0, 0, 0, 0, 0, 0]
}

struct Nested {
    rig: Rig,
    /// The back-end's events reach the eventq through it, as through the relay thread.
    relay: Arc<FaultRelayState>,
}

impl Nested {
    /// A rig in nested mode, with the extension negotiated and PASIDs 1 and 2 mapping
    /// IOVA to their pages (ASIDs 1 and 2).
    fn new() -> Self {
        let mut rig = Rig::new();
        let model = Arc::new(Smmuv3::new(rig.mem.clone(), Smmuv3Caps::default()).unwrap());
        let relay = FaultRelayState::new(model.clone(), GroupLimits::default());
        let backend =
            NestedBackend::translating(model, rig.mem.clone()).with_fault_relay(relay.clone());
        rig.state.set_nested(backend).unwrap();
        rig.negotiated |= features::ATTACH_TABLE;
        let n = Self { rig, relay };
        for pasid in [1u64, 2] {
            let [l1, l2, l3] = n.levels(pasid);
            n.put(l1 + 8, l2 | TABLE);
            n.put(l2, l3 | TABLE);
            n.put(l3, PAGE_OF[pasid as usize] | PAGE_RW);
            for (i, dword) in cd(l1, pasid as u16).iter().enumerate() {
                n.put(CD_TABLE + 64 * pasid + 8 * i as u64, *dword);
            }
        }
        n
    }

    fn levels(&self, pasid: u64) -> [u64; 3] {
        let l1 = TABLES[pasid as usize];
        [l1, l1 + 0x1000, l1 + 0x2000]
    }

    fn put(&self, at: u64, value: u64) {
        self.rig
            .mem
            .write_obj(value.to_le(), GuestAddress(at))
            .unwrap();
    }

    fn send(&self, request: &[u8]) -> Option<Status> {
        self.rig.send(request, 4).status()
    }

    fn attach_table(&self, domain: u32, endpoint: u32, ste0: u64) -> Option<Status> {
        self.send(&attach_table(domain, endpoint, ste0, 0))
    }

    fn write(&self, endpoint: u32, pasid: Option<u32>, iova: u64, data: &[u8]) -> bool {
        let mem = self.rig.memory(endpoint).with_pasid(pasid);
        mem.write_slice(data, GuestAddress(iova)).is_ok()
    }

    fn read_at(&self, gpa: u64) -> [u8; 4] {
        let mut bytes = [0u8; 4];
        self.rig
            .mem
            .read_slice(&mut bytes, GuestAddress(gpa))
            .unwrap();
        bytes
    }

    /// What the relay thread moves to the eventq when the back-end signals, delivered.
    fn events(&self) -> Vec<FaultRecord> {
        self.relay
            .relay_events(&GuestEventq(self.rig.state.clone()))
            .unwrap();
        let used = self
            .rig
            .deliver_into(EVENTS_AT, &[FAULT_RECORD_SIZE as u32; 8]);
        used.iter()
            .filter(|(_, len)| *len as usize == FAULT_RECORD_SIZE)
            .map(|&(id, _)| {
                let mut bytes = [0u8; FAULT_RECORD_SIZE];
                let at = EVENTS_AT + u64::from(id) * FAULT_RECORD_SIZE as u64;
                self.rig
                    .mem
                    .read_slice(&mut bytes, GuestAddress(at))
                    .unwrap();
                FaultRecord::from_bytes(&bytes)
            })
            .collect()
    }
}

fn put(bytes: &mut [u8], offset: usize, value: &[u8]) {
    bytes[offset..offset + value.len()].copy_from_slice(value);
}

/// INVALIDATE's readable part (3.2): TLB, ADDRESS scope, one 4 KiB page of `asid`.
fn invalidate_page(domain: u32, asid: u16, address: u64) -> Vec<u8> {
    let mut bytes = invalidate(domain, 3, 1 << 1, 1 << 2, 0);
    put(&mut bytes, 16, &asid.to_le_bytes());
    put(&mut bytes, 24, &address.to_le_bytes());
    put(&mut bytes, 32, &1u64.to_le_bytes());
    bytes[40] = 12;
    bytes
}

#[test]
fn dma_at_two_pasids_goes_through_the_guests_stage1() {
    let n = Nested::new();
    assert_eq!(n.attach_table(3, DISK, STE0), OK);
    assert!(n.write(DISK, Some(1), IOVA + 0x10, b"one!"));
    assert!(n.write(DISK, Some(2), IOVA + 0x10, b"two!"));
    assert_eq!(&n.read_at(PAGE_OF[1] + 0x10), b"one!");
    assert_eq!(&n.read_at(PAGE_OF[2] + 0x10), b"two!");
    // And back again: the seam's IOTLB is not fooled by the PASID switch.
    assert!(n.write(DISK, Some(1), IOVA + 0x20, b"uno!"));
    assert_eq!(&n.read_at(PAGE_OF[1] + 0x20), b"uno!");
    assert!(n.events().is_empty());
}

#[test]
fn a_write_to_a_read_only_page_faults_with_permission_and_the_pasid() {
    let n = Nested::new();
    let [_, _, l3] = n.levels(2);
    n.put(l3, PAGE_OF[2] | PAGE_RW | AP_READ_ONLY);
    assert_eq!(n.attach_table(3, DISK, STE0), OK);
    let mem = n.rig.memory(DISK).with_pasid(Some(2));
    let mut word = [0u8; 4];
    assert!(mem.read_slice(&mut word, GuestAddress(IOVA)).is_ok());
    assert!(!n.write(DISK, Some(2), IOVA, b"nope"));
    assert_eq!(
        n.events(),
        vec![FaultRecord {
            reason: fault_reason::PERMISSION,
            flags: FAULT_F_WRITE | FAULT_F_ADDRESS,
            endpoint: DISK,
            address: IOVA,
            pasid: Some(2),
            group: None,
        }]
    );
}

#[test]
fn an_unmapped_address_faults_with_translation_and_the_pasid() {
    let n = Nested::new();
    assert_eq!(n.attach_table(3, DISK, STE0), OK);
    let mem = n.rig.memory(DISK).with_pasid(Some(1));
    let mut word = [0u8; 4];
    let unmapped = IOVA + 0x20_0000;
    assert!(mem.read_slice(&mut word, GuestAddress(unmapped)).is_err());
    // The relay is the events' one reader: the fault left its event in the back-end.
    let early = n
        .rig
        .deliver_into(EVENTS_AT, &[FAULT_RECORD_SIZE as u32; 8]);
    assert!(early.is_empty(), "{early:?}");
    assert_eq!(
        n.events(),
        vec![FaultRecord {
            reason: fault_reason::TRANSLATION,
            flags: FAULT_F_READ | FAULT_F_ADDRESS,
            endpoint: DISK,
            address: unmapped,
            pasid: Some(1),
            group: None,
        }]
    );
}

#[test]
fn a_pasid_beyond_the_cd_table_is_a_bad_configuration() {
    let n = Nested::new();
    assert_eq!(n.attach_table(3, DISK, STE0), OK);
    assert!(!n.write(DISK, Some(4), IOVA, b"four"));
    let events = n.events();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].reason, events[0].pasid),
        (fault_reason::BAD_CONFIG, Some(4))
    );
}

#[test]
fn invalidate_makes_the_next_access_see_the_new_page() {
    let n = Nested::new();
    assert_eq!(n.attach_table(3, DISK, STE0), OK);
    assert!(n.write(DISK, Some(1), IOVA, b"old!"));
    let [_, _, l3] = n.levels(1);
    let moved = 0x70_0000;
    n.put(l3, moved | PAGE_RW);
    assert_eq!(n.send(&invalidate_page(3, 1, IOVA)), OK);
    assert!(n.write(DISK, Some(1), IOVA, b"new!"));
    assert_eq!(&n.read_at(moved), b"new!");
    assert_eq!(&n.read_at(PAGE_OF[1]), b"old!");
}

#[test]
fn invalidate_of_the_whole_domain_and_of_the_cds() {
    let n = Nested::new();
    assert_eq!(n.attach_table(3, DISK, STE0), OK);
    assert!(n.write(DISK, Some(2), IOVA, b"old!"));
    // PASID 2's CD now points at PASID 1's tables.
    n.put(CD_TABLE + 64 * 2 + 8, TABLES[1]);
    let cd_all = invalidate(3, 1, 1 << 0, 0, 0);
    let tlb_all = invalidate(3, 1, 1 << 1, 0, 0);
    assert_eq!(n.send(&cd_all), OK);
    assert_eq!(n.send(&tlb_all), OK);
    assert!(n.write(DISK, Some(2), IOVA, b"moved"));
    assert_eq!(&n.read_at(PAGE_OF[1]), b"move");
}

#[test]
fn detach_and_reset_take_the_configuration_away() {
    let n = Nested::new();
    assert_eq!(n.attach_table(3, DISK, STE0), OK);
    assert!(n.write(DISK, Some(1), IOVA, b"in!!"));
    assert_eq!(n.send(&detach(3, DISK, 0)), OK);
    assert!(!n.write(DISK, Some(1), IOVA, b"out!"));
    assert_eq!(
        n.rig.state.domains().domain_count(),
        0,
        "the last endpoint took it"
    );
    assert_eq!(n.attach_table(3, DISK, STE0), OK);
    assert!(n.write(DISK, Some(1), IOVA, b"back"));
    n.rig.state.reset();
    assert!(!n.write(DISK, Some(1), IOVA, b"gone"));
    assert_eq!(&n.read_at(PAGE_OF[1]), b"back");
}

#[test]
fn detach_and_reset_forget_what_the_smmu_cached() {
    let n = Nested::new();
    let [_, _, l3] = n.levels(1);
    for (round, moved) in [(0, 0x70_0000u64), (1, 0x71_0000)] {
        assert_eq!(n.attach_table(3, DISK, STE0), OK);
        assert!(n.write(DISK, Some(1), IOVA, b"warm"), "round {round}");
        // The guest reuses ASID 1 for new tables without an INVALIDATE of its own.
        n.put(l3, moved | PAGE_RW);
        if round == 0 {
            assert_eq!(n.send(&detach(3, DISK, 0)), OK);
        } else {
            n.rig.state.reset();
        }
        assert_eq!(n.attach_table(3, DISK, STE0), OK);
        assert!(n.write(DISK, Some(1), IOVA, b"new!"));
        assert_eq!(&n.read_at(moved), b"new!", "round {round}");
    }
}

#[test]
fn plain_attach_joins_a_table_domain_and_leaving_removes_the_ste() {
    let n = Nested::new();
    assert_eq!(n.attach_table(3, DISK, STE0), OK);
    assert_eq!(n.rig.attach(3, RNG), OK);
    assert!(n.write(RNG, Some(2), IOVA + 4, b"rng!"));
    assert_eq!(&n.read_at(PAGE_OF[2] + 4), b"rng!");
    // Moved into a map-mode domain: no PASID translation there, and the STE is gone.
    assert_eq!(n.rig.attach(4, RNG), OK);
    assert!(!n.write(RNG, Some(2), IOVA + 4, b"nope"));
    let events = n.events();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].reason, events[0].pasid),
        (FAULT_R_MAPPING, Some(2))
    );
}

#[test]
fn table_and_map_modes_refuse_each_other() {
    let rw = MAP_F_READ | MAP_F_WRITE;
    let n = Nested::new();
    assert_eq!(n.attach_table(3, DISK, STE0), OK);
    assert_eq!(
        n.rig.map(3, 0, 0xfff, 0x1000, rw),
        INVAL,
        "MAP on table mode"
    );
    assert_eq!(n.rig.unmap(3, 0, 0xfff), INVAL, "UNMAP on table mode");
    assert_eq!(n.send(&attach(3, RNG, 1, 0)), INVAL, "a bypass ATTACH");
    // A map-mode domain holding a mapping.
    assert_eq!(n.rig.attach(5, RNG), OK);
    assert_eq!(n.rig.map(5, 0, 0xfff, 0x1000, rw), OK);
    assert_eq!(n.attach_table(5, RNG, STE0), INVAL);
    assert_eq!(
        n.send(&invalidate(5, 1, 1 << 1, 0, 0)),
        INVAL,
        "INVALIDATE on map mode"
    );
    // A shared table domain keeps its words; the same words join.
    assert_eq!(n.attach_table(3, RNG, STE0 & !(2 << 59)), INVAL);
    assert_eq!(n.attach_table(3, RNG, STE0), OK);
    assert_eq!(n.rig.state.domains().endpoints_of(3), vec![DISK, RNG]);
    // An empty map-mode domain one endpoint holds becomes a table domain.
    assert_eq!(n.rig.attach(6, RNG), OK);
    assert_eq!(n.attach_table(6, RNG, STE0), OK);
    assert!(n.write(RNG, Some(1), IOVA, b"six!"));
}

#[test]
fn malformed_attach_table_gets_its_status_and_changes_nothing() {
    let n = Nested::new();
    let cases: Vec<(Vec<u8>, Option<Status>, &str)> = vec![
        (
            attach_table(3, DISK, STE0 | 1 << 52, 0),
            INVAL,
            "a reserved STE bit",
        ),
        (
            attach_table(3, DISK, STE0, 1 << 19),
            INVAL,
            "a host-owned STE1 bit",
        ),
        (
            attach_table(3, DISK, 1 | 0b110 << 1, 0),
            INVAL,
            "stage-2 Config",
        ),
        (
            attach_table(3, DISK, STE0 | 3 << 4, 0),
            INVAL,
            "reserved S1Fmt",
        ),
        (
            attach_table(3, DISK, STE0, 2 << 28),
            INVAL,
            "split-stage ATS",
        ),
        (
            attach_table(3, DISK, 1 | 0b101 << 1 | 0xff_ffff_f000, 0),
            RANGE,
            "CDs outside RAM",
        ),
        (
            attach_table(3, DISK, STE0 | 31 << 59, 0),
            RANGE,
            "S1CDMax past SSIDSIZE",
        ),
        (attach_table(3, 0x77, STE0, 0), NOENT, "no such endpoint"),
        (
            attach_table(0x1_0000, DISK, STE0, 0),
            RANGE,
            "domain out of range",
        ),
        (
            {
                let mut r = attach_table(3, DISK, STE0, 0);
                r[12] = 2;
                r
            },
            INVAL,
            "unknown format",
        ),
        (
            {
                let mut r = attach_table(3, DISK, STE0, 0);
                r[100] = 1;
                r
            },
            INVAL,
            "reserved byte",
        ),
        (
            attach_table(3, DISK, STE0, 0)[..60].to_vec(),
            INVAL,
            "too short",
        ),
    ];
    for (request, status, why) in cases {
        assert_eq!(n.send(&request), status, "{why}");
        assert_eq!(n.rig.state.domains().domain_count(), 0, "{why}");
    }
    assert!(!n.write(DISK, Some(1), IOVA, b"none"));
}

#[test]
fn malformed_invalidate_and_page_resp_get_their_status() {
    let n = Nested::new();
    assert_eq!(n.attach_table(3, DISK, STE0), OK);
    let mut wraps = invalidate_page(3, 1, 0xffff_ffff_ffff_f000);
    put(&mut wraps, 32, &2u64.to_le_bytes());
    let mut reserved = invalidate_page(3, 1, IOVA);
    reserved[50] = 1;
    let cases: Vec<(Vec<u8>, Option<Status>, &str)> = vec![
        (invalidate(9, 1, 1 << 1, 0, 0), NOENT, "no such domain"),
        (invalidate(3, 1, 0, 0, 0), INVAL, "no cache"),
        (invalidate(3, 1, 1 << 3, 0, 0), INVAL, "unknown cache"),
        (invalidate(3, 2, 1 << 1, 0, 0), INVAL, "TLB by PASID"),
        (invalidate(3, 3, 1 << 1, 1 << 2, 0), INVAL, "no pages"),
        (wraps, RANGE, "wrapping range"),
        (reserved, INVAL, "reserved byte"),
        (
            invalidate(3, 1, 1 << 1, 0, 0)[..40].to_vec(),
            INVAL,
            "too short",
        ),
        (
            page_resp(DISK, None, 1, 0),
            UNSUPP,
            "PAGE_REQUEST not negotiated",
        ),
    ];
    for (request, status, why) in cases {
        assert_eq!(n.send(&request), status, "{why}");
    }
    assert!(n.write(DISK, Some(1), IOVA, b"fine"));
}

#[test]
fn without_the_feature_the_requests_are_unsupported() {
    let mut n = Nested::new();
    n.rig.negotiated &= !features::ATTACH_TABLE;
    assert_eq!(n.attach_table(3, DISK, STE0), UNSUPP);
    assert_eq!(n.send(&invalidate(3, 1, 1 << 1, 0, 0)), UNSUPP);
    assert_eq!(n.rig.state.domains().domain_count(), 0);
}

#[test]
fn probe_reports_the_smmus_capabilities_once_negotiated() {
    let n = Nested::new();
    let size = n.rig.state.probe_size();
    let reply = n.rig.send(&probe(DISK), size + 4);
    assert_eq!(reply.status(), OK);
    // After the MSI window's RESV_MEM property (24 bytes).
    let p = &reply.writable[24..80];
    assert_eq!(u16::from_le_bytes([p[0], p[1]]), PROBE_T_NESTOR_SMMUV3);
    assert_eq!(u16::from_le_bytes([p[2], p[3]]), 52);
    let idr1 = u64::from_le_bytes(p[16..24].try_into().unwrap());
    let caps = Smmuv3Caps::default();
    assert_eq!(idr1 >> 6 & 0x1f, u64::from(caps.ssid_bits), "SSIDSIZE");
    assert_eq!(idr1 & 0x3f, u64::from(caps.sid_bits), "SIDSIZE");
    let idr5 = u64::from_le_bytes(p[48..56].try_into().unwrap());
    assert_ne!(idr5 & 1 << 4, 0, "GRAN4K");

    let mut plain = Nested::new();
    plain.rig.negotiated &= !features::ATTACH_TABLE;
    let reply = plain.rig.send(&probe(DISK), size + 4);
    assert_eq!(reply.status(), OK);
    assert_eq!(&reply.writable[24..80], &[0u8; 56]);
}

#[test]
fn outside_nested_mode_pasid_transactions_fault() {
    let rig = Rig::new();
    assert_eq!(rig.attach(1, DISK), OK);
    assert_eq!(rig.map(1, 0, 0xfff, 0x5000, MAP_F_READ | MAP_F_WRITE), OK);
    let mem = rig.memory(DISK);
    assert!(mem.write_slice(b"ok", GuestAddress(0)).is_ok());
    assert!(mem
        .with_pasid(Some(1))
        .write_slice(b"no", GuestAddress(0))
        .is_err());
}

/// A 2 MiB block at level 2 for PASID 1: IOVA BLOCK_IOVA -> GPA BLOCK_GPA.
const BLOCK_IOVA: u64 = IOVA + 0x20_0000;
const BLOCK_GPA: u64 = 0x80_0000;
const BLOCK_LEN: usize = 0x20_0000;
/// Valid block (0b01), AP[1], AF, nG.
const BLOCK_RW: u64 = 0b01 | 1 << 6 | 1 << 10 | 1 << 11;
const CHUNK: usize = 0x1_0000;

/// A device writes the block over and over while `take_away` runs on the request path;
/// returns the bytes that changed after `take_away` returned (answered), and whether the
/// device had written anything before.
fn write_while(n: &Nested, take_away: impl FnOnce()) -> (usize, bool) {
    let [_, l2, _] = n.levels(1);
    n.put(l2 + 8, BLOCK_GPA | BLOCK_RW);
    n.rig
        .mem
        .write_slice(&vec![0u8; BLOCK_LEN], GuestAddress(BLOCK_GPA))
        .unwrap();
    let mem = n.rig.memory(DISK).with_pasid(Some(1));
    let started = std::sync::Barrier::new(2);
    let answered = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let device = s.spawn(|| {
            let mut chunk = vec![0u8; CHUNK];
            let mut written = 0usize;
            // Once the answer is out, a whole pass over the block more: a write that still
            // lands shows up, and the device stops even if nothing stops it.
            let mut after_answer = 0;
            while after_answer < BLOCK_LEN / CHUNK {
                chunk.fill(written as u8 | 1);
                let at = BLOCK_IOVA + ((written * CHUNK) % BLOCK_LEN) as u64;
                if mem.write_slice(&chunk, GuestAddress(at)).is_err() {
                    break;
                }
                written += 1;
                if written == 1 {
                    started.wait();
                }
                if answered.load(std::sync::atomic::Ordering::Acquire) {
                    after_answer += 1;
                }
            }
            written
        });
        started.wait();
        take_away();
        let mut at_answer = vec![0u8; BLOCK_LEN];
        n.rig
            .mem
            .read_slice(&mut at_answer, GuestAddress(BLOCK_GPA))
            .unwrap();
        answered.store(true, std::sync::atomic::Ordering::Release);
        let written = device.join().unwrap();
        let mut after = vec![0u8; BLOCK_LEN];
        n.rig
            .mem
            .read_slice(&mut after, GuestAddress(BLOCK_GPA))
            .unwrap();
        let late = at_answer.iter().zip(&after).filter(|(a, b)| a != b).count();
        (late, written > 0)
    })
}

#[test]
fn no_write_lands_after_detach_or_invalidate_is_answered() {
    let n = Nested::new();
    for round in 0..40 {
        assert_eq!(n.attach_table(3, DISK, STE0), OK);
        let (late, raced) = if round % 2 == 0 {
            write_while(&n, || assert_eq!(n.send(&detach(3, DISK, 0)), OK))
        } else {
            write_while(&n, || {
                let [_, l2, _] = n.levels(1);
                n.put(l2 + 8, 0);
                let mut range = invalidate_page(3, 1, BLOCK_IOVA);
                put(&mut range, 32, &512u64.to_le_bytes());
                assert_eq!(n.send(&range), OK);
            })
        };
        assert_eq!(late, 0, "round {round}: bytes written after the answer");
        assert!(raced, "round {round}: the device never wrote");
        let _ = n.events();
    }
}

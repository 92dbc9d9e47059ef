//! Host endpoints: their host IOMMU (a recording fake) follows their domain.

use std::sync::Arc;

use super::rig::*;
use crate::host_iommu::{DmaAccess, FakeHostIommu, GuestRam, HostCall, HostIommu, IovaRange};
use crate::virtio::iommu::config::IommuConfig;
use crate::virtio::iommu::faults::FaultRateLimit;
use crate::virtio::iommu::host_endpoints::HostEndpoints;
use crate::virtio::iommu::protocol::{
    Status, ATTACH_F_BYPASS, MAP_F_READ, MAP_F_WRITE, RESV_MEM_T_RESERVED,
};

const RW: u32 = MAP_F_READ | MAP_F_WRITE;
const OK: Option<Status> = Some(Status::Ok);
const HOST_A: u32 = 0x100;
const HOST_B: u32 = 0x108;
/// Where the fake guest RAM sits in the VMM's address space.
const RAM_BASE: u64 = 0x7f00_0000_0000;
const RAM_SIZE: u64 = 1 << 32;

/// Guest RAM at one host address, `RAM_SIZE` bytes long.
#[derive(Debug)]
struct FlatRam;

// SAFETY: only the recording fake back-end ever sees these addresses.
unsafe impl GuestRam for FlatRam {
    fn host_address(&self, gpa: u64, len: u64) -> Option<u64> {
        (gpa.checked_add(len)? <= RAM_SIZE).then_some(RAM_BASE + gpa)
    }

    /// Two pieces, as below and above a PCI hole.
    fn ram_regions(&self) -> Vec<(u64, u64)> {
        vec![(0, RAM_SIZE / 2), (RAM_SIZE / 2, RAM_SIZE / 2)]
    }
}

fn host_map(iova: u64, gpa: u64, len: u64, access: DmaAccess) -> HostCall {
    HostCall::Map {
        iova,
        host_addr: RAM_BASE + gpa,
        len,
        access,
    }
}

fn unmap_call(iova: u64, len: u64) -> HostCall {
    HostCall::Unmap { iova, len }
}

/// A rig whose endpoints `(id, back-end)` are host devices.
fn rig_with(config: IommuConfig, hosts: &[(u32, &Arc<FakeHostIommu>)]) -> Rig {
    let rig = Rig::with(config, FaultRateLimit::default());
    let mut host = HostEndpoints::new(Arc::new(FlatRam));
    for (endpoint, backend) in hosts {
        host.add(*endpoint, Arc::clone(backend) as Arc<dyn HostIommu>);
    }
    rig.state.set_host_endpoints(host).unwrap();
    rig
}

fn one_host(fake: FakeHostIommu) -> (Rig, Arc<FakeHostIommu>) {
    let fake = Arc::new(fake);
    (rig_with(IommuConfig::default(), &[(HOST_A, &fake)]), fake)
}

fn detach(rig: &Rig, domain: u32, endpoint: u32) -> Option<Status> {
    rig.send(&super::rig::detach(domain, endpoint, 0), 4)
        .status()
}

#[test]
fn attach_replays_the_domains_existing_mappings() {
    let (rig, fake) = one_host(FakeHostIommu::new());
    assert_eq!(rig.attach(1, DISK), OK);
    assert_eq!(rig.map(1, 0x1000, 0x2fff, 0x10_0000, RW), OK);
    assert_eq!(rig.map(1, 0x8000, 0x8fff, 0x20_0000, MAP_F_READ), OK);
    assert!(fake.calls().is_empty(), "no host endpoint attached yet");
    assert_eq!(rig.attach(1, HOST_A), OK);
    let read_only = DmaAccess {
        read: true,
        write: false,
    };
    assert_eq!(
        fake.calls(),
        vec![
            host_map(0x1000, 0x10_0000, 0x2000, DmaAccess::READ_WRITE),
            host_map(0x8000, 0x20_0000, 0x1000, read_only),
        ]
    );
}

#[test]
fn map_reaches_every_attached_host_endpoint_and_no_other() {
    let a = Arc::new(FakeHostIommu::new());
    let b = Arc::new(FakeHostIommu::new());
    let rig = rig_with(IommuConfig::default(), &[(HOST_A, &a), (HOST_B, &b)]);
    assert_eq!(rig.attach(1, HOST_A), OK);
    assert_eq!(rig.attach(2, HOST_B), OK);
    assert_eq!(rig.attach(3, DISK), OK);
    assert_eq!(rig.map(1, 0x4000, 0x4fff, 0x9000, RW), OK);
    assert_eq!(rig.map(3, 0x4000, 0x4fff, 0x9000, RW), OK);
    assert_eq!(
        a.calls(),
        vec![host_map(0x4000, 0x9000, 0x1000, DmaAccess::READ_WRITE)]
    );
    assert!(b.calls().is_empty());
}

#[test]
fn a_failed_host_map_fails_the_request_and_undoes_all_of_it() {
    let a = Arc::new(FakeHostIommu::new());
    let b = Arc::new(FakeHostIommu::new().failing_map(1));
    let rig = rig_with(IommuConfig::default(), &[(HOST_A, &a), (HOST_B, &b)]);
    assert_eq!(rig.attach(1, HOST_A), OK);
    assert_eq!(rig.attach(1, HOST_B), OK);
    // The fake fails with ENOMEM: the guest hears NOMEM.
    assert_eq!(rig.map(1, 0x4000, 0x4fff, 0x9000, RW), Some(Status::NoMem));
    assert_eq!(rig.state.domains().mapping_count(1), Some(0));
    assert_eq!(rig.state.domains().total_mappings(), 0);
    assert!(a.mapped().is_empty());
    assert!(b.mapped().is_empty());
    // Nothing is left behind that would make the same MAP overlap.
    assert_eq!(rig.map(1, 0x4000, 0x4fff, 0x9000, RW), OK);
    assert_eq!(a.mapped(), vec![(0x4000, 0x1000)]);
    assert_eq!(b.mapped(), vec![(0x4000, 0x1000)]);
}

#[test]
fn a_failed_replay_leaves_the_endpoint_where_it_was() {
    let (rig, fake) = one_host(FakeHostIommu::new().failing_map(2));
    assert_eq!(rig.attach(1, DISK), OK);
    for i in 0..3u64 {
        assert_eq!(
            rig.map(1, i * 0x2000, i * 0x2000 + 0xfff, 0x10_0000, RW),
            OK
        );
    }
    assert_eq!(rig.attach(1, HOST_A), Some(Status::NoMem));
    assert_eq!(rig.state.domains().domain_of(HOST_A), None);
    assert_eq!(rig.state.domains().endpoints_of(1), vec![DISK]);
    assert!(fake.mapped().is_empty());
}

#[test]
fn detach_unmaps_the_domain_from_the_host() {
    let (rig, fake) = one_host(FakeHostIommu::new());
    assert_eq!(rig.attach(1, HOST_A), OK);
    assert_eq!(rig.attach(1, DISK), OK);
    assert_eq!(rig.map(1, 0x1000, 0x1fff, 0x5000, RW), OK);
    assert_eq!(rig.map(1, 0x3000, 0x4fff, 0x7000, RW), OK);
    assert_eq!(detach(&rig, 1, HOST_A), OK);
    assert!(fake.mapped().is_empty());
    assert_eq!(
        fake.calls()[2..],
        [unmap_call(0x1000, 0x1000), unmap_call(0x3000, 0x2000)]
    );
    // The domain lives on for the emulated endpoint, mappings and all.
    assert_eq!(rig.state.domains().mapping_count(1), Some(2));
}

#[test]
fn unmap_removes_exactly_the_unmapped_mappings_from_the_host() {
    let (rig, fake) = one_host(FakeHostIommu::new());
    assert_eq!(rig.attach(1, HOST_A), OK);
    for start in [0x1000u64, 0x2000, 0x6000] {
        assert_eq!(rig.map(1, start, start + 0xfff, start, RW), OK);
    }
    assert_eq!(rig.unmap(1, 0, 0x5fff), OK);
    assert_eq!(fake.mapped(), vec![(0x6000, 0x1000)]);
    assert_eq!(
        fake.calls()[3..],
        [unmap_call(0x1000, 0x1000), unmap_call(0x2000, 0x1000)]
    );
    // An UNMAP of nothing asks nothing of the host.
    assert_eq!(rig.unmap(1, 0x10_0000, 0x10_ffff), OK);
    assert_eq!(fake.calls().len(), 5);
}

#[test]
fn moving_to_another_domain_swaps_the_host_mappings() {
    let (rig, fake) = one_host(FakeHostIommu::new());
    assert_eq!(rig.attach(1, HOST_A), OK);
    assert_eq!(rig.map(1, 0x1000, 0x1fff, 0x5000, RW), OK);
    assert_eq!(rig.attach(2, DISK), OK);
    assert_eq!(rig.map(2, 0x1000, 0x1fff, 0x9000, RW), OK);
    assert_eq!(rig.attach(2, HOST_A), OK);
    assert_eq!(
        fake.calls()[1..],
        [
            unmap_call(0x1000, 0x1000),
            host_map(0x1000, 0x9000, 0x1000, DmaAccess::READ_WRITE)
        ]
    );
    // Domain 1 died with its last endpoint.
    assert_eq!(rig.state.domains().mapping_count(1), None);
}

#[test]
fn endpoints_sharing_a_back_end_map_once_and_stay_together() {
    let shared = Arc::new(FakeHostIommu::new());
    let rig = rig_with(
        IommuConfig::default(),
        &[(HOST_A, &shared), (HOST_B, &shared)],
    );
    assert_eq!(rig.attach(1, HOST_A), OK);
    assert_eq!(rig.map(1, 0x1000, 0x1fff, 0x5000, RW), OK);
    assert_eq!(rig.attach(1, HOST_B), OK);
    assert_eq!(rig.map(1, 0x2000, 0x2fff, 0x6000, RW), OK);
    assert_eq!(shared.calls().len(), 2, "no replay, one map each");
    // One address space cannot serve two domains.
    assert_eq!(rig.attach(2, HOST_B), Some(Status::Inval));
    assert_eq!(detach(&rig, 1, HOST_A), OK);
    assert_eq!(shared.mapped().len(), 2, "HOST_B still needs them");
    assert_eq!(detach(&rig, 1, HOST_B), OK);
    assert!(shared.mapped().is_empty());
}

/// The identity map on the fake: all of FlatRam's RAM at IOVA = GPA.
fn identity() -> Vec<(u64, u64)> {
    vec![(0, RAM_SIZE / 2), (RAM_SIZE / 2, RAM_SIZE / 2)]
}

fn bypassing(default_bypass: bool) -> (Rig, Arc<FakeHostIommu>) {
    let fake = Arc::new(FakeHostIommu::new());
    let config = IommuConfig {
        default_bypass,
        ..IommuConfig::default()
    };
    (rig_with(config, &[(HOST_A, &fake)]), fake)
}

#[test]
fn an_unattached_host_endpoint_bypasses_exactly_while_the_config_says_so() {
    let (rig, fake) = bypassing(true);
    assert_eq!(fake.mapped(), identity(), "bypass from the start");
    assert_eq!(
        fake.calls()[0],
        host_map(0, 0, RAM_SIZE / 2, DmaAccess::READ_WRITE)
    );
    rig.state.set_bypass(false);
    assert!(fake.mapped().is_empty());
    rig.state.set_bypass(true);
    assert_eq!(fake.mapped(), identity());
    let (_, blocked) = bypassing(false);
    assert!(blocked.calls().is_empty());
}

#[test]
fn attaching_takes_the_identity_map_down_before_the_domain_goes_up() {
    let (rig, fake) = bypassing(true);
    assert_eq!(rig.attach(1, DISK), OK);
    assert_eq!(rig.map(1, 0x1000, 0x1fff, 0x5000, RW), OK);
    let before = fake.calls().len();
    assert_eq!(rig.attach(1, HOST_A), OK);
    assert_eq!(
        fake.calls()[before..],
        [
            unmap_call(0, RAM_SIZE / 2),
            unmap_call(RAM_SIZE / 2, RAM_SIZE / 2),
            host_map(0x1000, 0x5000, 0x1000, DmaAccess::READ_WRITE),
        ]
    );
    // Back to bypass when it leaves; blocked instead once the config byte is off.
    assert_eq!(detach(&rig, 1, HOST_A), OK);
    assert_eq!(fake.mapped(), identity());
    assert_eq!(rig.attach(1, HOST_A), OK);
    rig.state.set_bypass(false);
    assert_eq!(
        fake.mapped(),
        vec![(0x1000, 0x1000)],
        "attached: the byte changes nothing"
    );
    assert_eq!(detach(&rig, 1, HOST_A), OK);
    assert!(fake.mapped().is_empty());
}

#[test]
fn a_bypass_domain_holds_the_identity_map() {
    let (rig, fake) = bypassing(false);
    let reply = rig.send(&attach(1, HOST_A, ATTACH_F_BYPASS, 0), 4);
    assert_eq!(reply.status(), OK);
    assert_eq!(fake.mapped(), identity());
    assert_eq!(rig.attach(2, HOST_A), OK);
    assert!(fake.mapped().is_empty(), "moved to an empty domain");
    let reply = rig.send(&attach(1, HOST_A, ATTACH_F_BYPASS, 0), 4);
    assert_eq!(reply.status(), OK);
    assert_eq!(detach(&rig, 1, HOST_A), OK);
    assert!(
        fake.mapped().is_empty(),
        "unattached with the byte off: blocked"
    );
}

#[test]
fn a_reset_leaves_host_endpoints_as_the_kept_config_byte_says() {
    let (rig, fake) = bypassing(true);
    assert_eq!(rig.attach(1, HOST_A), OK);
    assert_eq!(rig.map(1, 0x1000, 0x1fff, 0x5000, RW), OK);
    rig.state.reset();
    assert_eq!(fake.mapped(), identity());
    rig.state.set_bypass(false);
    rig.state.reset();
    assert!(fake.mapped().is_empty());
}

#[test]
fn a_bypass_the_host_refuses_leaves_the_endpoint_where_it_was() {
    // The second identity piece fails: the first is taken back, the domain stays.
    let fake = Arc::new(FakeHostIommu::new().failing_map(3));
    let rig = rig_with(IommuConfig::default(), &[(HOST_A, &fake)]);
    assert_eq!(rig.attach(1, HOST_A), OK);
    assert_eq!(rig.map(1, 0x1000, 0x1fff, 0x5000, RW), OK);
    let reply = rig.send(&attach(2, HOST_A, ATTACH_F_BYPASS, 0), 4);
    assert_eq!(reply.status(), Some(Status::NoMem));
    assert_eq!(rig.state.domains().domain_of(HOST_A), Some(1));
    assert_eq!(fake.mapped(), vec![(0x1000, 0x1000)]);
}

#[test]
fn mappings_that_allow_nothing_or_are_not_ram_stay_off_the_host() {
    let (rig, fake) = one_host(FakeHostIommu::new());
    assert_eq!(rig.attach(1, HOST_A), OK);
    assert_eq!(rig.map(1, 0x1000, 0x1fff, 0x5000, 0), OK);
    assert_eq!(rig.unmap(1, 0x1000, 0x1fff), OK);
    assert_eq!(
        rig.map(1, 0x1000, 0x1fff, RAM_SIZE, RW),
        Some(Status::Inval)
    );
    assert!(fake.calls().is_empty());
    assert_eq!(rig.state.domains().mapping_count(1), Some(0));
}

#[test]
fn device_reset_unmaps_everything_from_the_host() {
    let (rig, fake) = one_host(FakeHostIommu::new());
    assert_eq!(rig.attach(1, HOST_A), OK);
    assert_eq!(rig.map(1, 0x1000, 0x1fff, 0x5000, RW), OK);
    rig.state.reset();
    assert!(fake.mapped().is_empty());
    assert_eq!(rig.state.domains().domain_of(HOST_A), None);
}

/// An x86 host: nothing at the MSI window, 39 address bits.
fn x86_host_ranges() -> Vec<IovaRange> {
    vec![
        IovaRange {
            start: 0,
            last: 0xfedf_ffff,
        },
        IovaRange {
            start: 0xfef0_0000,
            last: 0x3f_ffff_ffff,
        },
    ]
}

#[test]
fn host_iova_ranges_narrow_the_input_range_and_reserve_the_holes() {
    let mut config = IommuConfig::default();
    config.narrow_to_host(&x86_host_ranges()).unwrap();
    assert_eq!(config.input_range, (0, 0x3f_ffff_ffff));
    // The only hole is the MSI window, reported already.
    assert_eq!(
        config.reserved_regions,
        IommuConfig::default().reserved_regions
    );

    let mut config = IommuConfig::default();
    let ranges = [
        IovaRange {
            start: 0x1000,
            last: 0xffff_ffff,
        },
        IovaRange {
            start: 0x2_0000_0000,
            last: 0xffff_ffff_ffff_ffff,
        },
    ];
    config.narrow_to_host(&ranges).unwrap();
    assert_eq!(config.input_range, (0x1000, (1 << 48) - 1));
    let hole = config.reserved_regions.last().unwrap();
    assert_eq!(
        (hole.start, hole.end, hole.subtype),
        (0x1_0000_0000, 0x1_ffff_ffff, RESV_MEM_T_RESERVED)
    );

    let outside = [IovaRange {
        start: 1 << 50,
        last: 1 << 51,
    }];
    assert!(IommuConfig::default().narrow_to_host(&outside).is_err());
}

#[test]
fn a_map_outside_the_host_ranges_is_refused_before_the_host_sees_it() {
    let fake = Arc::new(FakeHostIommu::with_ranges(vec![
        IovaRange {
            start: 0,
            last: 0xffff_ffff,
        },
        IovaRange {
            start: 0x2_0000_0000,
            last: 0x3_ffff_ffff,
        },
    ]));
    let mut host = HostEndpoints::new(Arc::new(FlatRam));
    host.add(HOST_A, fake.clone());
    let mut config = IommuConfig::default();
    config
        .narrow_to_host(&host.iova_ranges().unwrap().unwrap())
        .unwrap();
    let rig = Rig::with(config, FaultRateLimit::default());
    rig.state.set_host_endpoints(host).unwrap();
    assert_eq!(rig.attach(1, HOST_A), OK);
    // Past the input range: RANGE. In the hole: INVAL, like any reserved region.
    assert_eq!(
        rig.map(1, 0x4_0000_0000, 0x4_0000_0fff, 0x1000, RW),
        Some(Status::Range)
    );
    assert_eq!(
        rig.map(1, 0x1_0000_0000, 0x1_0000_0fff, 0x1000, RW),
        Some(Status::Inval)
    );
    assert!(fake.calls().is_empty());
    assert_eq!(rig.map(1, 0x2_0000_0000, 0x2_0000_0fff, 0x1000, RW), OK);
    assert_eq!(fake.calls().len(), 1);

    // PROBE tells the guest about the hole.
    let probe_size = rig.state.config.probe_size();
    let reply = rig.send(&probe(HOST_A), probe_size + 4);
    assert_eq!(reply.status(), OK);
    // The second RESV_MEM property, after the MSI window's.
    let hole = &reply.writable[24..48];
    assert_eq!(hole[4], RESV_MEM_T_RESERVED);
    assert_eq!(&hole[8..16], &0x1_0000_0000u64.to_le_bytes());
    assert_eq!(&hole[16..24], &0x1_ffff_ffffu64.to_le_bytes());
}

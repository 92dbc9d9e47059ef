//! A passed-through device's endpoint as the virtio-iommu drives it in nested mode, with
//! the kernel replaced by the recording fake: each guest request's kernel calls, in order.

use std::sync::Arc;

use super::tests::{endpoint, take, FakeObjects, Log, FORMAT};
use super::IommufdNested;
use crate::host_iommu::iommufd_smmuv3::Smmuv3Format;
use crate::virtio::iommu::driver_harness::{attach, attach_table, detach, invalidate, probe, Rig};
use crate::virtio::iommu::nested_protocol::{caches, features, scope, PROBE_T_NESTOR_SMMUV3};
use crate::virtio::iommu::protocol::Status;
use crate::virtio::iommu::{FaultRateLimit, IommuConfig, NestedBackend};

/// The passed-through device's guest StreamID (dev 7 in iommufd).
const SID: u32 = 0x10;
/// An emulated endpoint of the same virtio-iommu: the host knows nothing of it.
const EMULATED: u32 = 0x20;
/// Stage-1 translate, CD table at 0x1000 (in the harness's guest RAM).
const S1: u64 = 1 | 0b101 << 1 | 0x1000;
/// The same at 0x2000.
const S1_OTHER: u64 = 1 | 0b101 << 1 | 0x2000;

type Nested = IommufdNested<Smmuv3Format, FakeObjects>;

/// A VM's virtio-iommu whose nested back-end serves the device at `SID`; the log holds
/// what happened from nested mode being set on.
fn vm(bypass: bool) -> (Rig, Arc<Nested>, Log) {
    vm_on(bypass, FORMAT)
}

fn vm_on(bypass: bool, format: Smmuv3Format) -> (Rig, Arc<Nested>, Log) {
    let log = Log::default();
    let config = IommuConfig {
        default_bypass: bypass,
        ..IommuConfig::default()
    };
    let mut rig = Rig::with_endpoints(config, FaultRateLimit::default(), &[SID, EMULATED]);
    let first = endpoint(&log, 7);
    let nested = IommufdNested::new(format, FakeObjects::new(&log), first.as_ref(), 3).unwrap();
    nested.add_endpoint(SID, first).unwrap();
    let nested = Arc::new(nested);
    assert_eq!(
        take(&log),
        [
            "parent 100 dev 7 ioas 3",
            "viommu 101 type 1 dev 7 parent 100",
            "vdevice 102 viommu 101 dev 7 virt 0x10",
            "attach dev 7 to 100",
        ]
    );
    rig.negotiated |= features::ATTACH_TABLE;
    rig.state
        .set_nested(NestedBackend::host_only(nested.clone(), rig.mem.clone()))
        .unwrap();
    (rig, nested, log)
}

fn send(rig: &Rig, request: &[u8]) -> Option<Status> {
    rig.send(request, 4).status()
}

#[test]
fn the_device_leaves_the_nest_parent_before_the_guest_runs() {
    let (_rig, nested, log) = vm(false);
    assert_eq!(
        take(&log),
        [
            "hwpt 103 dev 7 viommu 101 type 2 data 01",
            "attach dev 7 to 103"
        ],
        "unattached without bypass: abort"
    );
    assert_eq!(nested.endpoint_objects(SID), Some((102, Some(103))));
    let (_rig, _nested, log) = vm(true);
    assert_eq!(
        take(&log),
        [
            "hwpt 103 dev 7 viommu 101 type 2 data 09",
            "attach dev 7 to 103"
        ],
        "unattached with bypass: stage 1 bypassed"
    );
}

#[test]
fn attach_table_is_a_nested_hwpt_the_cdev_is_attached_to_by_replacement() {
    let (rig, nested, log) = vm(false);
    take(&log);
    assert_eq!(send(&rig, &attach_table(1, SID, S1, 0)), Some(Status::Ok));
    assert_eq!(
        take(&log),
        [
            "hwpt 104 dev 7 viommu 101 type 2 data 0b",
            "attach dev 7 to 104",
            "destroy 103"
        ]
    );
    // A new STE for the same device: a new HWPT, attached before the old one goes.
    assert_eq!(
        send(&rig, &attach_table(2, SID, S1_OTHER, 0)),
        Some(Status::Ok)
    );
    assert_eq!(
        take(&log),
        [
            "hwpt 105 dev 7 viommu 101 type 2 data 0b",
            "attach dev 7 to 105",
            "destroy 104"
        ]
    );
    assert_eq!(nested.endpoint_objects(SID), Some((102, Some(105))));
    // INVALIDATE of the domain's configuration and TLB goes through the vIOMMU.
    let all = invalidate(2, scope::DOMAIN, caches::CD | caches::TLB, 0, 0);
    assert_eq!(send(&rig, &all), Some(Status::Ok));
    assert_eq!(take(&log), ["invalidate viommu 101 type 1 entries 2"]);
}

#[test]
fn detach_and_reset_put_the_device_on_an_abort_ste_then_forget_its_caches() {
    let (rig, _nested, log) = vm(false);
    assert_eq!(send(&rig, &attach_table(1, SID, S1, 0)), Some(Status::Ok));
    take(&log);
    assert_eq!(send(&rig, &detach(1, SID, 0)), Some(Status::Ok));
    assert_eq!(
        take(&log),
        [
            "hwpt 105 dev 7 viommu 101 type 2 data 01",
            "attach dev 7 to 105",
            "destroy 104",
            "invalidate viommu 101 type 1 entries 2"
        ],
        "the route first, then CFGI_CD_ALL and TLBI_NH_ALL"
    );
    assert_eq!(send(&rig, &attach_table(1, SID, S1, 0)), Some(Status::Ok));
    take(&log);
    rig.state.reset();
    assert_eq!(
        take(&log),
        [
            "hwpt 107 dev 7 viommu 101 type 2 data 01",
            "attach dev 7 to 107",
            "destroy 106",
            "invalidate viommu 101 type 1 entries 2"
        ]
    );
}

#[test]
fn bypass_is_a_stage_1_bypass_ste_and_map_domains_are_not_the_devices() {
    let (rig, _nested, log) = vm(false);
    take(&log);
    assert_eq!(
        send(&rig, &attach(1, SID, 0, 0)),
        Some(Status::Unsupp),
        "the host holds no IOVA mappings for it"
    );
    assert_eq!(take(&log), Vec::<String>::new());
    assert_eq!(send(&rig, &attach(2, SID, 1, 0)), Some(Status::Ok));
    assert_eq!(
        take(&log),
        [
            "hwpt 104 dev 7 viommu 101 type 2 data 09",
            "attach dev 7 to 104",
            "destroy 103"
        ]
    );
    assert_eq!(send(&rig, &detach(2, SID, 0)), Some(Status::Ok));
    assert_eq!(
        take(&log),
        [
            "hwpt 105 dev 7 viommu 101 type 2 data 01",
            "attach dev 7 to 105",
            "destroy 104"
        ]
    );
    // The config byte decides for an unattached device.
    rig.state.set_bypass(true);
    assert_eq!(
        take(&log),
        [
            "hwpt 106 dev 7 viommu 101 type 2 data 09",
            "attach dev 7 to 106",
            "destroy 105"
        ]
    );
    // An emulated endpoint's MAP domain is no business of the host's.
    assert_eq!(send(&rig, &attach(3, EMULATED, 0, 0)), Some(Status::Ok));
    assert_eq!(take(&log), Vec::<String>::new());
}

#[test]
fn hostile_stes_and_strangers_reach_no_kernel_call() {
    let (rig, nested, log) = vm(false);
    take(&log);
    let hostile = [
        (1 | 0b111 << 1, 0, Status::Inval), // nested: the host's
        (S1 | 1 << 52, 0, Status::Inval),   // a host-owned dword-0 bit
        (S1, 1 << 19, Status::Inval),       // MEV: the host's
        (S1, 2 << 28, Status::Inval),       // split-stage ATS
        (1 | 0b101 << 1 | 0x4000_0000, 0, Status::Range), // CD table outside RAM
        (S1 | 1 << 59, 0, Status::Range),   // more SSIDs than the SMMU has
    ];
    for (ste0, ste1, want) in hostile {
        let got = send(&rig, &attach_table(1, SID, ste0, ste1));
        assert_eq!(got, Some(want), "{ste0:#x} {ste1:#x}");
    }
    assert_eq!(
        send(&rig, &attach_table(1, EMULATED, S1, 0)),
        Some(Status::Inval),
        "the host has no vDEVICE for an emulated endpoint"
    );
    assert_eq!(
        send(&rig, &attach_table(1, 0x99, S1, 0)),
        Some(Status::NoEnt)
    );
    assert_eq!(take(&log), Vec::<String>::new());
    assert_eq!(nested.endpoint_objects(SID), Some((102, Some(103))));
}

#[test]
fn probe_describes_the_host_smmu_to_the_device() {
    // IDR0 two-level tables, ASID16, AArch64 tables; IDR1 8 SSID and 16 SID bits; IDR5
    // the 4K granule.
    let idr = [1 << 27 | 1 << 12 | 2 << 2, 8 << 6 | 16, 0, 0, 0, 1 << 4];
    let (rig, _nested, _log) = vm_on(
        false,
        Smmuv3Format {
            guest_idr: idr,
            ..FORMAT
        },
    );
    let reply = rig.send(&probe(SID), 4 + 512);
    assert_eq!(reply.status(), Some(Status::Ok));
    // Properties: type and length (16 bits each), then the value.
    let bytes = &reply.writable;
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let mut at = 0;
    while u16_at(at) != PROBE_T_NESTOR_SMMUV3 {
        assert_ne!(u16_at(at), 0, "no SMMUv3 property");
        at += 4 + usize::from(u16_at(at + 2));
    }
    let words = [8, 16, 32, 48].map(|offset| u64_at(at + offset));
    assert_eq!(words, [idr[0], idr[1], idr[3], idr[5]].map(u64::from));
}

#[test]
fn teardown_destroys_the_vdevice_before_the_cdev_closes() {
    let (rig, nested, log) = vm(false);
    assert_eq!(send(&rig, &attach_table(1, SID, S1, 0)), Some(Status::Ok));
    take(&log);
    drop(rig);
    let nested = Arc::into_inner(nested).expect("the virtio-iommu let go of the back-end");
    drop(nested);
    assert_eq!(
        take(&log),
        [
            "attach dev 7 to 100",
            "destroy 104",
            "destroy 102",
            "close dev 7",
            "destroy 101",
            "destroy 100"
        ]
    );
}

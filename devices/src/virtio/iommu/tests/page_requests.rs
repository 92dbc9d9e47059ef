//! PAGE_REQUEST end to end in the device: the software SMMUv3 records a device's page
//! request, the fault relay hands it to the virtio-iommu, the driver reads the 32-byte
//! record from the eventq and answers with PAGE_RESP, and the model's PRI_RESP reaches the
//! device. A detach forgets what the guest had not answered.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use vm_memory::{Bytes, GuestAddress};

use super::rig::*;
use crate::fault_relay::{FaultRelayState, GroupLimits};
use crate::host_iommu::smmuv3::wire::PriEntry;
use crate::host_iommu::smmuv3::{DeviceEffect, DeviceNotifier, PriResponse, Smmuv3, Smmuv3Caps};
use crate::virtio::iommu::nested::NestedBackend;
use crate::virtio::iommu::nested_protocol::{
    fault_reason, features, FAULT_F_LAST_PAGE, NESTED_FAULT_RECORD_SIZE,
};
use crate::virtio::iommu::page_requests::GuestEventq;
use crate::virtio::iommu::protocol::{Status, FAULT_F_ADDRESS, FAULT_F_PASID, FAULT_F_READ};

const EVENTS_AT: u64 = 0x30_000;
/// STE dword 0: V, Config S1-translate, a CD table at 4 MiB, S1CDMax 2.
const STE0: u64 = 1 | 0b101 << 1 | 0x40_0000 | 2 << 59;

#[derive(Default)]
struct Device(Mutex<Vec<DeviceEffect>>);

impl DeviceNotifier for Device {
    fn notify(&self, effect: DeviceEffect) {
        self.0.lock().unwrap().push(effect);
    }
}

struct PageRequests {
    rig: Rig,
    smmu: Arc<Smmuv3<vm_memory::GuestMemoryMmap>>,
    relay: Arc<FaultRelayState>,
    device: Arc<Device>,
}

impl PageRequests {
    fn new() -> Self {
        let mut rig = Rig::new();
        let device = Arc::new(Device::default());
        let smmu = Arc::new(
            Smmuv3::new(rig.mem.clone(), Smmuv3Caps::default())
                .unwrap()
                .with_notifier(device.clone()),
        );
        let relay = FaultRelayState::new(
            smmu.clone(),
            GroupLimits {
                max_outstanding: 16,
                answer_within: Duration::from_secs(60),
            },
        );
        let backend = NestedBackend::translating(smmu.clone(), rig.mem.clone())
            .with_fault_relay(relay.clone());
        rig.state.set_nested(backend).unwrap();
        rig.negotiated |= features::ATTACH_TABLE | features::PAGE_REQUEST;
        Self {
            rig,
            smmu,
            relay,
            device,
        }
    }

    fn send(&self, request: &[u8]) -> Option<Status> {
        self.rig.send(request, 4).status()
    }

    /// The device asks for `address` at PASID 1 in group `group` (one page, the last).
    fn device_asks(&self, group: u16, address: u64) {
        self.smmu.page_request(PriEntry::new(
            DISK,
            Some(1),
            address,
            group,
            true,
            false,
            true,
        ));
        // What the relay thread does when the model's page-request eventfd fires.
        self.relay
            .relay_page_requests(&GuestEventq(self.rig.state.clone()))
            .unwrap();
    }

    /// The 32-byte records the driver reads from the eventq.
    fn records(&self) -> Vec<[u8; NESTED_FAULT_RECORD_SIZE]> {
        let used = self
            .rig
            .deliver_into(EVENTS_AT, &[NESTED_FAULT_RECORD_SIZE as u32; 4]);
        used.iter()
            .map(|&(id, len)| {
                assert_eq!(len as usize, NESTED_FAULT_RECORD_SIZE);
                let mut bytes = [0u8; NESTED_FAULT_RECORD_SIZE];
                let at = EVENTS_AT + u64::from(id) * NESTED_FAULT_RECORD_SIZE as u64;
                self.rig
                    .mem
                    .read_slice(&mut bytes, GuestAddress(at))
                    .unwrap();
                bytes
            })
            .collect()
    }

    fn responses(&self) -> Vec<DeviceEffect> {
        std::mem::take(&mut *self.device.0.lock().unwrap())
    }
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

#[test]
fn a_page_request_reaches_the_driver_and_its_answer_the_device() {
    let p = PageRequests::new();
    assert_eq!(p.send(&attach_table(3, DISK, STE0, 0)), Some(Status::Ok));
    p.device_asks(7, 0x4000_2000);
    let records = p.records();
    assert_eq!(records.len(), 1, "one record for a one-page group");
    let r = &records[0];
    assert_eq!(r[0], fault_reason::PAGE_REQUEST);
    assert_eq!(
        le32(r, 4),
        FAULT_F_READ | FAULT_F_ADDRESS | FAULT_F_PASID | FAULT_F_LAST_PAGE
    );
    assert_eq!(le32(r, 8), DISK);
    assert_eq!(le32(r, 12), 1, "PASID");
    assert_eq!(
        u64::from_le_bytes(r[16..24].try_into().unwrap()),
        0x4000_2000
    );
    assert_eq!(le32(r, 24), 7, "group");
    assert!(p.responses().is_empty(), "nothing answered yet");

    assert_eq!(p.send(&page_resp(DISK, Some(1), 7, 0)), Some(Status::Ok));
    assert_eq!(
        p.responses(),
        vec![DeviceEffect::PageResponse {
            sid: DISK,
            ssid: Some(1),
            group: 7,
            response: PriResponse::Success
        }]
    );
    // One answer per group; another changes nothing on the device.
    assert_eq!(p.send(&page_resp(DISK, Some(1), 7, 0)), Some(Status::NoEnt));
    assert!(p.responses().is_empty());
}

#[test]
fn a_refusal_is_passed_on_and_unknown_groups_are_noent() {
    let p = PageRequests::new();
    assert_eq!(p.send(&attach_table(3, DISK, STE0, 0)), Some(Status::Ok));
    assert_eq!(p.send(&page_resp(DISK, Some(1), 9, 0)), Some(Status::NoEnt));
    p.device_asks(9, 0x4000_0000);
    assert_eq!(p.records().len(), 1);
    // FAILURE goes to the host as INVALID: the device gives up.
    assert_eq!(p.send(&page_resp(DISK, Some(1), 9, 2)), Some(Status::Ok));
    assert!(matches!(
        p.responses()[..],
        [DeviceEffect::PageResponse {
            response: PriResponse::Deny,
            ..
        }]
    ));
}

#[test]
fn an_endpoint_outside_table_mode_gets_its_request_failed_not_delivered() {
    let p = PageRequests::new();
    // Never attached: the guest has no tables to fix, so the device is told at once.
    p.device_asks(3, 0x1000);
    assert!(p.records().is_empty());
    assert!(matches!(
        p.responses()[..],
        [DeviceEffect::PageResponse {
            response: PriResponse::Deny,
            ..
        }]
    ));
    assert_eq!(p.relay.counters().refused_unrouted, 1);
}

#[test]
fn a_detach_forgets_the_groups_the_guest_had_not_answered() {
    let p = PageRequests::new();
    assert_eq!(p.send(&attach_table(3, DISK, STE0, 0)), Some(Status::Ok));
    p.device_asks(5, 0x4000_0000);
    assert_eq!(p.records().len(), 1);
    assert_eq!(p.send(&detach(3, DISK, 0)), Some(Status::Ok));
    // The model failed the group when the configuration went; the late answer is refused
    // and reaches nothing.
    let _ = p.responses();
    assert_eq!(p.send(&page_resp(DISK, Some(1), 5, 0)), Some(Status::NoEnt));
    assert!(p.responses().is_empty());
    assert_eq!(p.relay.counters().dropped, 1);
}

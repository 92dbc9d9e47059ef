//! Fault records reaching the driver through the eventq.

use vm_memory::{Bytes, GuestAddress, Permissions};

use super::rig::*;
use crate::virtio::iommu::protocol::{
    FaultRecord, FAULT_F_ADDRESS, FAULT_F_WRITE, FAULT_RECORD_SIZE, FAULT_R_DOMAIN,
};

const BUFFERS_AT: u64 = 0x40_000;

fn record_at(rig: &Rig, at: u64) -> FaultRecord {
    let mut bytes = [0u8; FAULT_RECORD_SIZE];
    rig.mem.read_slice(&mut bytes, GuestAddress(at)).unwrap();
    FaultRecord::from_bytes(&bytes)
}

#[test]
fn a_fault_fills_one_posted_buffer_of_exactly_24_bytes() {
    let rig = Rig::new();
    let _ = rig
        .translator(DISK)
        .translate(0xdead_0000, 4, Permissions::Write);
    let used = rig.deliver_into(BUFFERS_AT, &[64, 64]);
    assert_eq!(used, vec![(0, 24)]);
    let record = record_at(&rig, BUFFERS_AT);
    assert_eq!(
        record,
        FaultRecord {
            reason: FAULT_R_DOMAIN,
            flags: FAULT_F_WRITE | FAULT_F_ADDRESS,
            endpoint: DISK,
            address: 0xdead_0000,
            pasid: None,
            group: None,
        }
    );
    assert_eq!(rig.state.faults().pending(), 0);
}

#[test]
fn records_wait_when_no_buffer_is_posted() {
    let rig = Rig::new();
    let t = rig.translator(DISK);
    let _ = t.translate(0x1000, 4, Permissions::Read);
    let _ = t.translate(0x2000, 4, Permissions::Read);
    assert_eq!(rig.deliver_into(BUFFERS_AT, &[]), vec![]);
    assert_eq!(rig.state.faults().pending(), 2);
    assert_eq!(rig.deliver_into(BUFFERS_AT, &[24]), vec![(0, 24)]);
    assert_eq!(record_at(&rig, BUFFERS_AT).address, 0x1000);
    assert_eq!(rig.deliver_into(BUFFERS_AT, &[24]), vec![(0, 24)]);
    assert_eq!(record_at(&rig, BUFFERS_AT).address, 0x2000);
}

#[test]
fn a_buffer_too_small_returns_empty_and_the_record_takes_the_next() {
    let rig = Rig::new();
    let _ = rig.translator(DISK).translate(0x1000, 4, Permissions::Read);
    let used = rig.deliver_into(BUFFERS_AT, &[16, 24]);
    assert_eq!(used, vec![(0, 0), (1, 24)]);
    assert_eq!(record_at(&rig, BUFFERS_AT + 16).address, 0x1000);
}

#[test]
fn a_chain_with_an_unreachable_buffer_is_returned_untouched_and_the_record_waits() {
    let rig = Rig::new();
    let _ = rig.translator(DISK).translate(0x1000, 4, Permissions::Read);
    rig.mem
        .write_slice(&[0xa5; 16], GuestAddress(BUFFERS_AT))
        .unwrap();
    // The first 16 bytes are in RAM, the last 8 past its end.
    let used = rig.deliver_into_chain(&[(BUFFERS_AT, 16), (0x100_0000, 8)]);
    assert_eq!(used, vec![(0, 0)]);
    let mut bytes = [0u8; 16];
    rig.mem
        .read_slice(&mut bytes, GuestAddress(BUFFERS_AT))
        .unwrap();
    assert_eq!(bytes, [0xa5; 16], "nothing written into a returned buffer");
    assert_eq!(rig.state.faults().pending(), 1);
    assert_eq!(rig.deliver_into(BUFFERS_AT, &[24]), vec![(0, 24)]);
    assert_eq!(record_at(&rig, BUFFERS_AT).address, 0x1000);
}

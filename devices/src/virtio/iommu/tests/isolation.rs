//! Isolation under concurrency: once UNMAP, DETACH or a reset is answered, no DMA translated
//! before it lands. A virtio-blk device behind the virtio-iommu copies into a buffer while
//! the request path takes the buffer's mapping away; whatever the device writes after the
//! answer would show up as bytes that change after it.

use std::sync::Arc;
use std::time::Duration;

use std::os::unix::fs::FileExt;

use vm_memory::{Bytes, GuestAddress, GuestMemory, Permissions};
use vmm_sys_util::tempfile::TempFile;

use super::rig::*;
use crate::virtio::block::protocol::REQUEST_IN;
use crate::virtio::block::{BlockHandler, Disk};
use crate::virtio::iommu::protocol::{Status, MAP_F_READ, MAP_F_WRITE};
use crate::virtio::testing::{Buffer, DriverQueue};

const OK: Option<Status> = Some(Status::Ok);
const RW: u32 = MAP_F_READ | MAP_F_WRITE;
/// The blk queue, its request header and status, identity-mapped for the whole test.
const RINGS: u64 = 0x10_0000;
const HEADER: u64 = 0x18_0000;
/// The buffer the device reads into: IOVA `DATA_IOVA` -> GPA `DATA_GPA`.
const DATA_IOVA: u64 = 0x80_0000;
const DATA_GPA: u64 = 0x40_0000;
const DATA_LEN: u32 = 256 << 10;
const DISK_FILL: u8 = 0xab;
const ROUNDS: usize = 300;

fn map_fixed(rig: &Rig) {
    assert_eq!(rig.attach(1, DISK), OK);
    assert_eq!(rig.map(1, RINGS, RINGS + 0xf_ffff, RINGS, RW), OK);
}

/// One round: the device reads the disk into the buffer while the request path unmaps it
/// (or detaches the endpoint). Returns the bytes of the buffer that changed after the
/// answer came back.
fn race_round(
    rig: &Rig,
    handler: &mut BlockHandler,
    driver: &mut DriverQueue,
    detach: bool,
) -> usize {
    assert_eq!(
        rig.map(
            1,
            DATA_IOVA,
            DATA_IOVA + u64::from(DATA_LEN) - 1,
            DATA_GPA,
            RW
        ),
        OK
    );
    rig.mem
        .write_slice(&vec![0u8; DATA_LEN as usize], GuestAddress(DATA_GPA))
        .unwrap();
    let mut header = [0u8; 16];
    header[..4].copy_from_slice(&REQUEST_IN.to_le_bytes());
    rig.mem.write_slice(&header, GuestAddress(HEADER)).unwrap();
    driver.recycle();
    driver.add_chain(
        &rig.mem,
        &[
            Buffer::readable(HEADER, 16),
            Buffer::writable(DATA_IOVA, DATA_LEN),
            Buffer::writable(HEADER + 16, 1),
        ],
    );
    std::thread::scope(|s| {
        let device = s.spawn(|| handler.drain());
        // Let the device start before the mapping goes: the copy is what must be raced.
        std::thread::yield_now();
        let answered = if detach {
            rig.send(&super::rig::detach(1, DISK, 0), 4).status()
        } else {
            rig.unmap(1, DATA_IOVA, DATA_IOVA + u64::from(DATA_LEN) - 1)
        };
        assert_eq!(answered, OK);
        let mut at_answer = vec![0u8; DATA_LEN as usize];
        rig.mem
            .read_slice(&mut at_answer, GuestAddress(DATA_GPA))
            .unwrap();
        device.join().unwrap();
        let mut after = vec![0u8; DATA_LEN as usize];
        rig.mem
            .read_slice(&mut after, GuestAddress(DATA_GPA))
            .unwrap();
        at_answer.iter().zip(&after).filter(|(a, b)| a != b).count()
    })
}

#[test]
fn no_device_write_lands_after_unmap_or_detach_is_answered() {
    let rig = Rig::new();
    map_fixed(&rig);
    let file = TempFile::new().unwrap();
    file.as_file()
        .write_all_at(&vec![DISK_FILL; DATA_LEN as usize], 0)
        .unwrap();
    let disk = Arc::new(Disk {
        file: file.as_file().try_clone().unwrap(),
        size: u64::from(DATA_LEN),
        read_only: false,
        id: [0; 20],
    });
    let mut driver = DriverQueue::new(RINGS, 16);
    let mut handler = BlockHandler::new(
        rig.memory(DISK),
        disk,
        driver.device_queue(),
        0,
        Arc::new(NoInterrupt),
    );
    let mut late_bytes = 0;
    let mut raced = 0;
    for round in 0..ROUNDS {
        let detach = round % 2 == 1;
        late_bytes += race_round(&rig, &mut handler, &mut driver, detach);
        // A round the device finished before the answer wrote the whole buffer; one the
        // answer cut short wrote part of it or none: both happen, or nothing was raced.
        let mut first = [0u8; 1];
        rig.mem
            .read_slice(&mut first, GuestAddress(DATA_GPA + u64::from(DATA_LEN) - 1))
            .unwrap();
        raced += usize::from(first[0] != DISK_FILL);
        if detach {
            map_fixed(&rig);
        }
    }
    assert_eq!(late_bytes, 0, "bytes written after the answer");
    assert!(
        raced > 0,
        "the answer never overtook the device: nothing was raced"
    );
}

#[test]
fn an_unmap_waits_for_a_copy_in_flight() {
    let rig = Rig::new();
    map_fixed(&rig);
    assert_eq!(rig.map(1, DATA_IOVA, DATA_IOVA + 0xfff, DATA_GPA, RW), OK);
    let mem = rig.memory(DISK);
    // A translated slice held across the UNMAP: the device's copy is still in flight.
    let mut slices = mem
        .get_slices(GuestAddress(DATA_IOVA), 0x1000, Permissions::Write)
        .unwrap();
    let slice = slices.next().unwrap().unwrap();
    let rig = &rig;
    std::thread::scope(|s| {
        let (answered_tx, answered) = std::sync::mpsc::channel();
        s.spawn(move || {
            let status = rig.unmap(1, DATA_IOVA, DATA_IOVA + 0xfff);
            answered_tx.send(status).unwrap();
        });
        assert!(
            answered.recv_timeout(Duration::from_millis(200)).is_err(),
            "UNMAP answered while a copy through the mapping was in flight"
        );
        slice.write_obj(0x5au8, 0).unwrap();
        drop(slices);
        assert_eq!(answered.recv_timeout(Duration::from_secs(5)).unwrap(), OK);
    });
    assert_eq!(
        rig.mem.read_obj::<u8>(GuestAddress(DATA_GPA)).unwrap(),
        0x5a
    );
    assert!(mem.write_obj(1u8, GuestAddress(DATA_IOVA)).is_err());
}

#[test]
fn a_virtio_iommu_reset_waits_for_a_copy_in_flight_then_blocks_the_endpoint() {
    let rig = Rig::new();
    map_fixed(&rig);
    assert_eq!(rig.map(1, DATA_IOVA, DATA_IOVA + 0xfff, DATA_GPA, RW), OK);
    let mem = rig.memory(DISK);
    let slices = mem
        .get_slices(GuestAddress(DATA_IOVA), 0x10, Permissions::Read)
        .unwrap();
    std::thread::scope(|s| {
        let (done_tx, done) = std::sync::mpsc::channel();
        let state = rig.state.clone();
        s.spawn(move || {
            state.reset();
            done_tx.send(()).unwrap();
        });
        assert!(done.recv_timeout(Duration::from_millis(200)).is_err());
        drop(slices);
        done.recv_timeout(Duration::from_secs(5)).unwrap();
    });
    assert!(mem.read_obj::<u8>(GuestAddress(DATA_IOVA)).is_err());
}

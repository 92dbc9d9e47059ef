//! A function stuck behind its own lock must not stall configuration access to the others.

use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::config_io::{PciConfigIo, CONFIG_ADDRESS_PORT, CONFIG_DATA_LEN, CONFIG_DATA_PORT};
use super::ecam::{PciEcam, ECAM_SIZE};
use super::root::PciRoot;
use super::testing::TestFunction;
use super::Bdf;
use crate::bus::Bus;

const ECAM_BASE: u64 = 0xe000_0000;
/// How long the stuck function holds its lock.
const STUCK_FOR: Duration = Duration::from_secs(2);
/// Far below STUCK_FOR, far above any honest configuration access.
const PROMPT: Duration = Duration::from_millis(200);

fn ecam_offset(bdf: Bdf, reg: u64) -> u64 {
    u64::from(bdf.id()) << 12 | reg
}

fn cf8_address(bdf: Bdf, reg: u32) -> [u8; 4] {
    (1u32 << 31 | u32::from(bdf.id()) << 8 | reg).to_le_bytes()
}

#[test]
fn a_stuck_function_does_not_stall_configuration_of_the_others() {
    let mmio = Arc::new(Bus::new());
    let mut root = PciRoot::new(mmio.clone(), None);
    let stuck_bdf = root.reserve_slot().unwrap();
    let other_bdf = root.reserve_slot().unwrap();
    let stuck = Arc::new(Mutex::new(TestFunction::new(0xc000_0000)));
    root.add_device(stuck_bdf, stuck.clone()).unwrap();
    root.add_device(
        other_bdf,
        Arc::new(Mutex::new(TestFunction::new(0xc000_1000))),
    )
    .unwrap();
    let root = Arc::new(root);
    let pio = Arc::new(Bus::new());
    let (address_port, data_port) = PciConfigIo::ports(root.clone());
    pio.insert_concurrent(address_port, CONFIG_ADDRESS_PORT, 1)
        .unwrap();
    pio.insert_concurrent(data_port, CONFIG_DATA_PORT, CONFIG_DATA_LEN)
        .unwrap();
    mmio.insert_concurrent(Arc::new(PciEcam::new(root)), ECAM_BASE, ECAM_SIZE)
        .unwrap();

    // A slow reset, say: the function's lock is held for a long time.
    let locked = Arc::new(Barrier::new(2));
    let holder = {
        let (stuck, locked) = (stuck.clone(), locked.clone());
        thread::spawn(move || {
            let guard = stuck.lock().unwrap();
            locked.wait();
            thread::sleep(STUCK_FOR);
            drop(guard);
        })
    };
    locked.wait();
    // vCPUs that touch the stuck function wait for it, through ECAM and through CF8/CFC.
    let waiting_ecam = {
        let mmio = mmio.clone();
        thread::spawn(move || {
            let mut data = [0u8; 4];
            mmio.read(ECAM_BASE + ecam_offset(stuck_bdf, 0), &mut data);
        })
    };
    let waiting_ports = {
        let pio = pio.clone();
        thread::spawn(move || {
            pio.write(CONFIG_ADDRESS_PORT, &cf8_address(stuck_bdf, 0));
            pio.read(CONFIG_DATA_PORT, &mut [0u8; 4]);
        })
    };
    thread::sleep(Duration::from_millis(100));

    let started = Instant::now();
    let mut data = [0u8; 4];
    assert!(mmio.read(ECAM_BASE + ecam_offset(other_bdf, 0), &mut data));
    assert_eq!(u32::from_le_bytes(data), 0x5678_1234);
    let through_ecam = started.elapsed();

    let started = Instant::now();
    pio.write(CONFIG_ADDRESS_PORT, &cf8_address(other_bdf, 0));
    let mut data = [0u8; 4];
    assert!(pio.read(CONFIG_DATA_PORT, &mut data));
    assert_eq!(u32::from_le_bytes(data), 0x5678_1234);
    let through_ports = started.elapsed();

    // Moving the other function's BAR does not wait either.
    let started = Instant::now();
    let enable = 0x2u16.to_le_bytes();
    mmio.write(ECAM_BASE + ecam_offset(other_bdf, 4), &enable);
    let bar = 0xc010_0000u32.to_le_bytes();
    mmio.write(ECAM_BASE + ecam_offset(other_bdf, 0x10), &bar);
    let bar_move = started.elapsed();
    assert!(mmio.read(0xc010_0000, &mut [0u8; 4]));

    holder.join().unwrap();
    waiting_ecam.join().unwrap();
    waiting_ports.join().unwrap();
    assert!(through_ecam < PROMPT, "ECAM read took {through_ecam:?}");
    assert!(
        through_ports < PROMPT,
        "CF8/CFC read took {through_ports:?}"
    );
    assert!(bar_move < PROMPT, "BAR move took {bar_move:?}");
}

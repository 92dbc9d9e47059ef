//! The transport as a driver sees it: BAR registers, feature negotiation, activation,
//! notification, MSI-X, reset and re-initialisation, with a virtio-blk device behind it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, Permissions};
use vmm_sys_util::tempfile::TempFile;

use super::capabilities::*;
use super::common_cfg::{self as cc, status};
use super::transport::VirtioPciDevice;
use crate::dma::{DmaFault, DmaMapping, EndpointTranslate};
use crate::pci::msix::tests::RecordingGroup;
use crate::pci::{Bdf, PciDevice};
use crate::virtio::block::Block;
use crate::virtio::testing::{Buffer, DriverQueue};
use crate::virtio::WorkerSpec;

const BAR: u64 = 0xc000_0000;
const VERSION_1: u64 = 1 << 32;
const ACCESS_PLATFORM: u64 = 1 << 33;
const HEADER: u64 = 0x10_0000;
const DATA: u64 = 0x11_0000;
const STATUS: u64 = 0x12_0000;

/// Identity translation, as a bypassed endpoint has.
#[derive(Debug)]
struct Identity;

impl EndpointTranslate for Identity {
    fn translate(
        &self,
        iova: u64,
        len: u64,
        access: Permissions,
    ) -> Result<Vec<DmaMapping>, DmaFault> {
        Ok(vec![DmaMapping {
            iova,
            gpa: iova,
            len,
            access,
        }])
    }
}

struct Rig {
    dev: VirtioPciDevice,
    ram: GuestMemoryMmap,
    msi: Arc<RecordingGroup>,
    _file: TempFile,
}

fn rig(endpoint: Option<Arc<dyn EndpointTranslate>>) -> Rig {
    let ram = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x20_0000)]).unwrap();
    let file = TempFile::new().unwrap();
    file.as_file().set_len(1 << 20).unwrap();
    let block = Block::open(
        file.as_path(),
        false,
        "t",
        WorkerSpec::unconfined("dev-blk-t"),
    )
    .unwrap();
    let msi = Arc::new(RecordingGroup::default());
    let dev = VirtioPciDevice::new(
        Bdf::new(0, 1, 0),
        Box::new(block),
        ram.clone(),
        msi.clone(),
        BAR,
        endpoint,
    )
    .unwrap();
    Rig {
        dev,
        ram,
        msi,
        _file: file,
    }
}

impl Rig {
    fn read(&mut self, offset: u64, len: usize) -> u64 {
        let mut buf = [0u8; 8];
        self.dev.read_bar(0, offset, &mut buf[..len]);
        u64::from_le_bytes(buf)
    }

    fn write(&mut self, offset: u64, len: usize, value: u64) {
        self.dev.write_bar(0, offset, &value.to_le_bytes()[..len]);
    }

    fn status(&mut self) -> u8 {
        self.read(cc::DEVICE_STATUS, 1) as u8
    }

    fn offered(&mut self) -> u64 {
        self.write(cc::DEVICE_FEATURE_SELECT, 4, 0);
        let low = self.read(cc::DEVICE_FEATURE, 4);
        self.write(cc::DEVICE_FEATURE_SELECT, 4, 1);
        low | self.read(cc::DEVICE_FEATURE, 4) << 32
    }

    /// Up to FEATURES_OK; returns whether the device accepted `features`.
    fn negotiate(&mut self, features: u64) -> bool {
        self.write(cc::DEVICE_STATUS, 1, 0);
        self.write(
            cc::DEVICE_STATUS,
            1,
            u64::from(status::ACKNOWLEDGE | status::DRIVER),
        );
        for half in 0..2 {
            self.write(cc::DRIVER_FEATURE_SELECT, 4, half);
            self.write(
                cc::DRIVER_FEATURE,
                4,
                (features >> (32 * half)) & 0xffff_ffff,
            );
        }
        let s = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
        self.write(cc::DEVICE_STATUS, 1, u64::from(s));
        self.status() & status::FEATURES_OK != 0
    }

    fn enable_msix_vector0(&mut self) {
        // Capability list: the MSI-X capability is the last one; find it by ID.
        let mut cap = self.dev.read_config_register(13) as usize;
        while self.dev.read_config_register(cap / 4) as u8 != 0x11 {
            cap = ((self.dev.read_config_register(cap / 4) >> 8) & 0xff) as usize;
        }
        self.dev
            .write_config_register(cap / 4, 2, &0x8000u16.to_le_bytes());
        self.write(MSIX_TABLE_OFFSET, 8, 0xfee0_0000);
        self.write(MSIX_TABLE_OFFSET + 8, 4, 0x31);
        self.write(MSIX_TABLE_OFFSET + 12, 4, 0);
    }

    fn setup_queue(&mut self, driver: &DriverQueue, vector: u16) {
        self.write(cc::QUEUE_SELECT, 2, 0);
        self.write(cc::QUEUE_SIZE, 2, u64::from(driver.size));
        self.write(cc::QUEUE_MSIX_VECTOR, 2, u64::from(vector));
        for (lo, addr) in [
            (cc::QUEUE_DESC_LO, driver.desc_table),
            (cc::QUEUE_DRIVER_LO, driver.avail_ring),
            (cc::QUEUE_DEVICE_LO, driver.used_ring),
        ] {
            self.write(lo, 4, addr & 0xffff_ffff);
            self.write(lo + 4, 4, addr >> 32);
        }
        self.write(cc::QUEUE_ENABLE, 2, 1);
    }

    fn driver_ok(&mut self) {
        let s = self.status() | status::DRIVER_OK;
        self.write(cc::DEVICE_STATUS, 1, u64::from(s));
    }

    /// A 512-byte read of sector 0 through the queue; waits for the used ring.
    fn read_sector(&mut self, driver: &mut DriverQueue) -> u8 {
        let mut raw = [0u8; 16];
        raw[0] = 0; // IN
        self.ram.write_slice(&raw, GuestAddress(HEADER)).unwrap();
        self.ram.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
        let before = driver.used_idx(&self.ram);
        driver.add_chain(
            &self.ram,
            &[
                Buffer::readable(HEADER, 16),
                Buffer::writable(DATA, 512),
                Buffer::writable(STATUS, 1),
            ],
        );
        // No ioeventfd in this test: the notify write reaches the transport.
        self.write(NOTIFY_OFFSET, 2, 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        while driver.used_idx(&self.ram) == before {
            assert!(Instant::now() < deadline, "request never completed");
            std::thread::sleep(Duration::from_millis(1));
        }
        self.ram.read_obj(GuestAddress(STATUS)).unwrap()
    }
}

#[test]
fn identity_and_layout() {
    let mut r = rig(None);
    assert_eq!(r.dev.read_config_register(0), 0x1042_1af4);
    assert_eq!(r.dev.bars()[0].address, BAR);
    assert_eq!(r.dev.bars()[0].size, BAR_SIZE);
    // 64-bit memory BAR.
    assert_eq!(r.dev.read_config_register(4), BAR as u32 | 0x4);
    assert_eq!(r.read(cc::NUM_QUEUES, 2), 1);
    assert_eq!(r.read(cc::QUEUE_SIZE, 2), 256);
    assert_eq!(r.dev.ioeventfds(0).len(), 1);
    assert_eq!(r.dev.ioeventfds(0)[0].0, NOTIFY_OFFSET);
    // Misaligned or odd-sized register accesses read zero and change nothing.
    assert_eq!(r.read(cc::NUM_QUEUES, 4), 0);
    r.write(cc::QUEUE_SELECT + 1, 1, 5);
    assert_eq!(r.read(cc::QUEUE_SELECT, 2), 0);
}

#[test]
fn features_need_version_1_and_nothing_unoffered() {
    let mut r = rig(None);
    let offered = r.offered();
    assert_ne!(offered & VERSION_1, 0);
    assert_eq!(offered & ACCESS_PLATFORM, 0);
    assert!(!r.negotiate(0));
    assert!(!r.negotiate(VERSION_1 | 1 << 40));
    assert!(r.negotiate(VERSION_1));
    // Features are frozen once FEATURES_OK is set.
    r.write(cc::DRIVER_FEATURE_SELECT, 4, 1);
    r.write(cc::DRIVER_FEATURE, 4, 0);
    assert_eq!(r.read(cc::DRIVER_FEATURE, 4), 1);
    // DRIVER_OK without FEATURES_OK does not stick.
    let mut r = rig(None);
    r.write(cc::DEVICE_STATUS, 1, u64::from(status::DRIVER_OK));
    assert_eq!(r.status() & status::DRIVER_OK, 0);
}

#[test]
fn behind_an_iommu_the_device_offers_access_platform() {
    let mut r = rig(Some(Arc::new(Identity)));
    assert_ne!(r.offered() & ACCESS_PLATFORM, 0);
    assert!(r.negotiate(VERSION_1 | ACCESS_PLATFORM));
    let mut driver = DriverQueue::new(0x1000, 16);
    r.setup_queue(&driver, 0xffff);
    r.driver_ok();
    assert_eq!(r.read_sector(&mut driver), 0);
}

#[test]
fn requests_complete_with_an_msi_and_reset_allows_a_fresh_start() {
    let mut r = rig(None);
    r.enable_msix_vector0();
    assert!(r.negotiate(VERSION_1));
    let mut driver = DriverQueue::new(0x1000, 16);
    r.setup_queue(&driver, 0);
    assert_eq!(r.read(cc::QUEUE_MSIX_VECTOR, 2), 0);
    r.driver_ok();
    assert_ne!(r.status() & status::DRIVER_OK, 0);
    assert_eq!(r.read_sector(&mut driver), 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while r.msi.fired.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no MSI");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(r.msi.fired.lock().unwrap()[0], 0);

    // Reset: worker gone, queue and features forgotten.
    r.write(cc::DEVICE_STATUS, 1, 0);
    assert_eq!(r.status(), 0);
    assert_eq!(r.read(cc::QUEUE_ENABLE, 2), 0);
    assert_eq!(r.read(cc::QUEUE_SIZE, 2), 256);
    assert_eq!(r.read(cc::QUEUE_MSIX_VECTOR, 2), 0xffff);
    r.write(cc::DRIVER_FEATURE_SELECT, 4, 1);
    assert_eq!(r.read(cc::DRIVER_FEATURE, 4), 0);

    // And the driver can start over with new rings.
    assert!(r.negotiate(VERSION_1));
    let mut driver = DriverQueue::new(0x8000, 16);
    r.setup_queue(&driver, 0);
    r.driver_ok();
    assert_eq!(r.read_sector(&mut driver), 0);
}

#[test]
fn rings_outside_memory_fail_activation() {
    let mut r = rig(None);
    assert!(r.negotiate(VERSION_1));
    let driver = DriverQueue::new(0x1f_f000, 16);
    r.setup_queue(&driver, 0xffff);
    r.driver_ok();
    assert_ne!(r.status() & status::NEEDS_RESET, 0);
    r.write(cc::DEVICE_STATUS, 1, 0);
    assert_eq!(r.status(), 0);
}

#[test]
fn hostile_queue_settings_are_ignored() {
    let mut r = rig(None);
    r.write(cc::QUEUE_SELECT, 2, 7);
    assert_eq!(r.read(cc::QUEUE_SIZE, 2), 0);
    r.write(cc::QUEUE_SIZE, 2, 64);
    r.write(cc::QUEUE_ENABLE, 2, 1);
    r.write(cc::QUEUE_MSIX_VECTOR, 2, 0);
    assert_eq!(r.read(cc::QUEUE_MSIX_VECTOR, 2), 0xffff);
    r.write(cc::QUEUE_SELECT, 2, 0);
    r.write(cc::QUEUE_SIZE, 2, 100);
    assert_eq!(r.read(cc::QUEUE_SIZE, 2), 256);
    r.write(cc::QUEUE_DESC_LO, 4, 0x1001);
    assert_eq!(r.read(cc::QUEUE_DESC_LO, 4) & 0xf, 0);
    r.write(cc::QUEUE_MSIX_VECTOR, 2, 500);
    assert_eq!(r.read(cc::QUEUE_MSIX_VECTOR, 2), 0xffff);
    r.write(cc::CONFIG_MSIX_VECTOR, 2, 1);
    assert_eq!(r.read(cc::CONFIG_MSIX_VECTOR, 2), 1);
    // Reads and writes anywhere in the BAR are harmless.
    for offset in (0..BAR_SIZE).step_by(0x3f8) {
        r.write(offset, 4, u64::from(u32::MAX));
        r.read(offset, 4);
    }
}

#[test]
fn random_config_and_bar_traffic_never_panics() {
    use crate::bus::Bus;
    use crate::pci::PciRoot;
    use std::sync::Mutex;

    let r = rig(None);
    let mmio = Arc::new(Bus::new());
    let mut root = PciRoot::new(mmio.clone(), None);
    let bdf = root.reserve_slot().unwrap();
    root.add_device(bdf, Arc::new(Mutex::new(r.dev))).unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..20_000 {
        let value = next();
        let len = [1usize, 2, 4, 8][(value >> 60) as usize & 3];
        match value & 3 {
            0 => {
                root.config_write_bytes(bdf, (next() & 0xff) as usize, &value.to_le_bytes()[..len])
            }
            1 => {
                let mut buf = [0u8; 8];
                root.config_read_bytes(bdf, (next() & 0xfff) as usize, &mut buf[..len]);
            }
            _ => {
                let (address, size) = root_bar(&root, bdf);
                let at = address + next() % size;
                if value & 1 == 0 {
                    mmio.write(at, &value.to_le_bytes()[..len]);
                } else {
                    mmio.read(at, &mut [0u8; 8][..len]);
                }
            }
        }
    }
}

/// Where BAR 0 decodes now, from the configuration space.
fn root_bar(root: &crate::pci::PciRoot, bdf: Bdf) -> (u64, u64) {
    let low = u64::from(root.config_read(bdf, 4) & !0xf);
    let high = u64::from(root.config_read(bdf, 5));
    (high << 32 | low, BAR_SIZE)
}

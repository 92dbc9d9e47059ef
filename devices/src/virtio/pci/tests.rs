//! The transport as a driver sees it: BAR registers, the PCI configuration access window,
//! feature negotiation, activation, bus mastering, notification, MSI-X, reset and
//! re-initialisation, with a virtio-blk device behind it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, Permissions};
use vmm_sys_util::tempfile::TempFile;

use super::capabilities::*;
use super::common_cfg::{self as cc, status};
use super::transport::VirtioPciDevice;
use crate::dma::{DeviceDma, DeviceTlb, DmaAddressSpace, DmaFault, GuestPhysical, TlbEntries};
use crate::pci::msix::tests::RecordingGroup;
use crate::pci::{Bdf, PciDevice};
use crate::virtio::block::Block;
use crate::virtio::testing::{Buffer, DriverQueue};
use crate::virtio::WorkerSpec;

const BAR: u64 = 0xc000_0000;
const VERSION_1: u64 = 1 << 32;
const ACCESS_PLATFORM: u64 = 1 << 33;
const RING_INDIRECT_DESC: u64 = 1 << 28;
const HEADER: u64 = 0x10_0000;
const DATA: u64 = 0x11_0000;
const STATUS: u64 = 0x12_0000;

/// An endpoint the guest never attached, with bypass off: nothing is reachable.
#[derive(Debug)]
struct Unattached;

impl DmaAddressSpace for Unattached {
    fn fill(&self, _: &mut TlbEntries, iova: u64, _: u64, _: Permissions) -> Result<(), DmaFault> {
        Err(DmaFault::Blocked { iova })
    }
}

/// Behind an IOMMU, as a bypassed endpoint is.
fn bypassed() -> DeviceDma {
    DeviceDma::translated(DeviceTlb::new(), Arc::new(GuestPhysical))
}

fn unattached() -> DeviceDma {
    DeviceDma::translated(DeviceTlb::new(), Arc::new(Unattached))
}

fn plain() -> DeviceDma {
    DeviceDma::untranslated()
}

struct Rig {
    dev: VirtioPciDevice,
    ram: GuestMemoryMmap,
    msi: Arc<RecordingGroup>,
    _file: TempFile,
}

fn rig(dma: DeviceDma) -> Rig {
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
        dma,
    )
    .unwrap();
    let mut r = Rig {
        dev,
        ram,
        msi,
        _file: file,
    };
    // What a driver does at probe (pci_enable_device, pci_set_master).
    r.set_command(COMMAND_MEMORY | COMMAND_BUS_MASTER);
    r
}

const COMMAND_MEMORY: u16 = 1 << 1;
const COMMAND_BUS_MASTER: u16 = 1 << 2;

impl Rig {
    fn set_command(&mut self, command: u16) {
        self.dev.write_config_register(1, 0, &command.to_le_bytes());
    }

    /// Configuration-space offset of the first capability with vendor ID 0x09 and
    /// `cfg_type`, or of the first capability with ID `id` when `cfg_type` is None.
    fn find_capability(&mut self, id: u8, cfg_type: Option<u8>) -> usize {
        let mut cap = self.dev.read_config_register(13) as usize;
        loop {
            assert_ne!(cap, 0, "capability {id:#x}/{cfg_type:?} missing");
            let header = self.dev.read_config_register(cap / 4);
            if header as u8 == id && cfg_type.is_none_or(|t| (header >> 24) as u8 == t) {
                return cap;
            }
            cap = ((header >> 8) & 0xff) as usize;
        }
    }

    /// Points the PCI configuration access window at `length` bytes at `offset` of `bar`.
    fn window(&mut self, bar: u8, offset: u32, length: u32) -> usize {
        let cap = self.find_capability(0x09, Some(CFG_TYPE_PCI));
        self.dev
            .write_config_register((cap + PCI_CFG_BAR) / 4, 0, &[bar]);
        self.dev
            .write_config_register((cap + PCI_CFG_OFFSET) / 4, 0, &offset.to_le_bytes());
        self.dev
            .write_config_register((cap + PCI_CFG_LENGTH) / 4, 0, &length.to_le_bytes());
        cap
    }

    fn window_read(&mut self, offset: u64, len: usize) -> u64 {
        let cap = self.window(VIRTIO_BAR, offset as u32, len as u32);
        u64::from(self.dev.read_config_register((cap + PCI_CFG_DATA) / 4))
    }

    fn window_write(&mut self, offset: u64, len: usize, value: u64) {
        let cap = self.window(VIRTIO_BAR, offset as u32, len as u32);
        self.dev
            .write_config_register((cap + PCI_CFG_DATA) / 4, 0, &value.to_le_bytes()[..len]);
    }

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
        let cap = self.find_capability(0x11, None);
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
        let before = self.queue_read_sector(driver);
        // No ioeventfd in this test: the notify write reaches the transport.
        self.write(NOTIFY_OFFSET, 2, 0);
        self.wait_used(driver, before)
    }

    /// Puts a read of sector 0 on the avail ring; returns the used index before it.
    fn queue_read_sector(&mut self, driver: &mut DriverQueue) -> u16 {
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
        before
    }

    /// Waits until the used index moves past `before`; returns the request's status byte.
    fn wait_used(&mut self, driver: &DriverQueue, before: u16) -> u8 {
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
    let mut r = rig(plain());
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
    let mut r = rig(plain());
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
    let mut r = rig(plain());
    r.write(cc::DEVICE_STATUS, 1, u64::from(status::DRIVER_OK));
    assert_eq!(r.status() & status::DRIVER_OK, 0);
}

#[test]
fn indirect_descriptors_are_offered_only_where_they_cost_no_iommu_round_trips() {
    assert_ne!(rig(plain()).offered() & RING_INDIRECT_DESC, 0);
    assert_eq!(rig(bypassed()).offered() & RING_INDIRECT_DESC, 0);
    assert_eq!(rig(unattached()).offered() & RING_INDIRECT_DESC, 0);
}

#[test]
fn behind_an_iommu_the_device_offers_access_platform() {
    let mut r = rig(bypassed());
    assert_ne!(r.offered() & ACCESS_PLATFORM, 0);
    assert!(r.negotiate(VERSION_1 | ACCESS_PLATFORM));
    let mut driver = DriverQueue::new(0x1000, 16);
    r.setup_queue(&driver, 0xffff);
    r.driver_ok();
    assert_eq!(r.read_sector(&mut driver), 0);
}

#[test]
fn a_driver_declining_access_platform_cannot_escape_the_iommu() {
    let mut r = rig(unattached());
    // FEATURES_OK without ACCESS_PLATFORM is refused, so DRIVER_OK cannot stick either.
    assert!(!r.negotiate(VERSION_1));
    let mut driver = DriverQueue::new(0x1000, 16);
    r.setup_queue(&driver, 0xffff);
    r.driver_ok();
    assert_eq!(r.status() & status::DRIVER_OK, 0);
    let before = r.queue_read_sector(&mut driver);
    r.ram.write_slice(&[0x77; 512], GuestAddress(DATA)).unwrap();
    r.write(NOTIFY_OFFSET, 2, 0);
    assert_not_consumed(&mut r, &driver, before);
    assert_eq!(r.ram.read_obj::<u8>(GuestAddress(DATA)).unwrap(), 0x77);

    // Renegotiated with the bit, the device is translated: with no domain attached its
    // rings are unreachable, it cannot start, and nothing lands either.
    assert!(r.negotiate(VERSION_1 | ACCESS_PLATFORM));
    r.setup_queue(&driver, 0xffff);
    r.driver_ok();
    assert_ne!(r.status() & status::NEEDS_RESET, 0);
    r.write(NOTIFY_OFFSET, 2, 0);
    assert_not_consumed(&mut r, &driver, before);
    assert_eq!(r.ram.read_obj::<u8>(GuestAddress(DATA)).unwrap(), 0x77);
}

#[test]
fn status_bits_clear_only_by_reset_and_needs_reset_is_the_devices() {
    let mut r = rig(plain());
    assert!(r.negotiate(VERSION_1));
    let mut driver = DriverQueue::new(0x1000, 16);
    r.setup_queue(&driver, 0xffff);
    r.driver_ok();
    let running = r.status();
    // A driver writing NEEDS_RESET and clearing DRIVER_OK changes neither.
    r.write(
        cc::DEVICE_STATUS,
        1,
        u64::from(status::ACKNOWLEDGE | status::NEEDS_RESET),
    );
    assert_eq!(r.status(), running);
    assert_eq!(r.read_sector(&mut driver), 0);
}

#[test]
fn requests_complete_with_an_msi_and_reset_allows_a_fresh_start() {
    let mut r = rig(plain());
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
    let mut r = rig(plain());
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
    let mut r = rig(plain());
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

    let r = rig(plain());
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

#[test]
fn pci_cfg_capability_layout_and_read_only_fields() {
    let mut r = rig(plain());
    let cap = r.find_capability(0x09, Some(CFG_TYPE_PCI));
    assert_eq!(cap % 4, 0);
    let header = r.dev.read_config_register(cap / 4);
    assert_eq!(header & 0xff, 0x09);
    assert_eq!((header >> 16) & 0xff, 20);
    assert_eq!(header >> 24, u32::from(CFG_TYPE_PCI));
    // The window starts closed.
    assert_eq!(r.dev.read_config_register((cap + PCI_CFG_LENGTH) / 4), 0);
    assert_eq!(r.dev.read_config_register((cap + PCI_CFG_DATA) / 4), 0);
    // Only bar, offset, length and pci_cfg_data take writes.
    r.dev
        .write_config_register(cap / 4, 0, &u32::MAX.to_le_bytes());
    assert_eq!(r.dev.read_config_register(cap / 4), header);
    r.dev
        .write_config_register((cap + PCI_CFG_BAR) / 4, 0, &u32::MAX.to_le_bytes());
    assert_eq!(r.dev.read_config_register((cap + PCI_CFG_BAR) / 4), 0xff);
    r.window(2, 0x1234, 4);
    assert_eq!(r.dev.read_config_register((cap + PCI_CFG_BAR) / 4), 2);
    assert_eq!(
        r.dev.read_config_register((cap + PCI_CFG_OFFSET) / 4),
        0x1234
    );
    assert_eq!(r.dev.read_config_register((cap + PCI_CFG_LENGTH) / 4), 4);
}

#[test]
fn pci_cfg_window_reads_what_mmio_reads() {
    let mut r = rig(plain());
    assert!(r.negotiate(VERSION_1));
    r.write(cc::QUEUE_SELECT, 2, 0);
    for (offset, len) in [
        (cc::DEVICE_STATUS, 1),
        (cc::NUM_QUEUES, 2),
        (cc::QUEUE_SIZE, 2),
        (cc::QUEUE_MSIX_VECTOR, 2),
        (cc::DEVICE_FEATURE, 4),
        (cc::DRIVER_FEATURE, 4),
        (DEVICE_OFFSET, 4),
        (DEVICE_OFFSET + 1, 1),
        (DEVICE_OFFSET + 2, 2),
    ] {
        let mmio = r.read(offset, len);
        assert_eq!(r.window_read(offset, len), mmio, "offset {offset:#x}");
    }
    assert_eq!(
        r.window_read(cc::DEVICE_STATUS, 1),
        u64::from(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK)
    );
    // The data dword holds what the last read returned.
    let cap = r.find_capability(0x09, Some(CFG_TYPE_PCI));
    assert_eq!(r.window_read(cc::NUM_QUEUES, 2), 1);
    let mut bytes = [0u8; 2];
    let dword = r.dev.read_config_register((cap + PCI_CFG_DATA) / 4);
    bytes.copy_from_slice(&dword.to_le_bytes()[..2]);
    assert_eq!(u16::from_le_bytes(bytes), 1);
}

#[test]
fn pci_cfg_window_writes_take_effect() {
    let mut r = rig(plain());
    // A whole initialisation through the window, then a request notified through it.
    r.window_write(cc::DEVICE_STATUS, 1, 0);
    r.window_write(
        cc::DEVICE_STATUS,
        1,
        u64::from(status::ACKNOWLEDGE | status::DRIVER),
    );
    assert_eq!(
        r.read(cc::DEVICE_STATUS, 1),
        u64::from(status::ACKNOWLEDGE | status::DRIVER)
    );
    r.window_write(cc::DEVICE_FEATURE_SELECT, 4, 1);
    assert_eq!(r.read(cc::DEVICE_FEATURE_SELECT, 4), 1);
    assert_eq!(r.window_read(cc::DEVICE_FEATURE, 4), r.offered() >> 32);
    r.window_write(cc::DRIVER_FEATURE_SELECT, 4, 1);
    r.window_write(cc::DRIVER_FEATURE, 4, VERSION_1 >> 32);
    let s = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
    r.window_write(cc::DEVICE_STATUS, 1, u64::from(s));
    assert_eq!(r.read(cc::DEVICE_STATUS, 1), u64::from(s));

    let mut driver = DriverQueue::new(0x1000, 16);
    r.window_write(cc::QUEUE_SELECT, 2, 0);
    r.window_write(cc::QUEUE_SIZE, 2, u64::from(driver.size));
    assert_eq!(r.read(cc::QUEUE_SIZE, 2), 16);
    for (lo, addr) in [
        (cc::QUEUE_DESC_LO, driver.desc_table),
        (cc::QUEUE_DRIVER_LO, driver.avail_ring),
        (cc::QUEUE_DEVICE_LO, driver.used_ring),
    ] {
        r.window_write(lo, 4, addr & 0xffff_ffff);
        r.window_write(lo + 4, 4, addr >> 32);
        assert_eq!(r.read(lo, 4), addr & 0xffff_ffff);
    }
    r.window_write(cc::QUEUE_ENABLE, 2, 1);
    r.window_write(cc::DEVICE_STATUS, 1, u64::from(s | status::DRIVER_OK));
    assert_ne!(r.status() & status::DRIVER_OK, 0);
    let before = r.queue_read_sector(&mut driver);
    r.window_write(NOTIFY_OFFSET, 2, 0);
    assert_eq!(r.wait_used(&driver, before), 0);

    // And a reset through the window.
    r.window_write(cc::DEVICE_STATUS, 1, 0);
    assert_eq!(r.status(), 0);
}

#[test]
fn malformed_pci_cfg_windows_are_ignored() {
    let mut r = rig(plain());
    assert!(r.negotiate(VERSION_1));
    let negotiated = r.status();
    let capacity = r.read(DEVICE_OFFSET, 4);
    assert_ne!(capacity, 0);
    let cap = r.find_capability(0x09, Some(CFG_TYPE_PCI));
    let data = (cap + PCI_CFG_DATA) / 4;
    let status = cc::DEVICE_STATUS as u32;
    let device = DEVICE_OFFSET as u32;
    let bar_size = BAR_SIZE as u32;
    let cases: &[(u8, u32, u32)] = &[
        // Not the virtio BAR (BAR 1 is its upper half; the rest do not exist).
        (1, status, 1),
        (2, status, 1),
        (5, status, 1),
        (6, status, 1),
        (0xff, status, 1),
        // Lengths other than 1, 2 or 4.
        (VIRTIO_BAR, status, 0),
        (VIRTIO_BAR, device, 3),
        (VIRTIO_BAR, device, 8),
        (VIRTIO_BAR, device, 16),
        (VIRTIO_BAR, device, u32::MAX),
        // Offsets not aligned to the length.
        (VIRTIO_BAR, device + 1, 2),
        (VIRTIO_BAR, device + 2, 4),
        (VIRTIO_BAR, status - 1, 2),
        // Past the end of the BAR.
        (VIRTIO_BAR, bar_size, 1),
        (VIRTIO_BAR, bar_size, 4),
        (VIRTIO_BAR, u32::MAX, 1),
        (VIRTIO_BAR, u32::MAX - 3, 4),
    ];
    for &(bar, offset, length) in cases {
        r.window(bar, offset, length);
        assert_eq!(
            r.dev.read_config_register(data),
            0,
            "read of {bar}/{offset:#x}/{length}"
        );
        r.dev.write_config_register(data, 0, &[0; 4]);
        r.dev
            .write_config_register(data, 0, &u32::MAX.to_le_bytes());
        r.dev.write_config_register(data, 1, &[0x55, 0x55]);
        assert_eq!(
            r.status(),
            negotiated,
            "write of {bar}/{offset:#x}/{length}"
        );
        assert_eq!(r.read(DEVICE_OFFSET, 4), capacity);
    }
    // A valid window still works afterwards.
    assert_eq!(r.window_read(cc::DEVICE_STATUS, 1), u64::from(negotiated));
}

/// A request on the avail ring, notified, that the device must leave alone for a while.
fn assert_not_consumed(r: &mut Rig, driver: &DriverQueue, before: u16) {
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(driver.used_idx(&r.ram), before);
    assert_eq!(r.ram.read_obj::<u8>(GuestAddress(STATUS)).unwrap(), 0xff);
}

#[test]
fn no_queue_processing_without_bus_mastering() {
    let mut r = rig(plain());
    r.set_command(COMMAND_MEMORY);
    assert!(r.negotiate(VERSION_1));
    let mut driver = DriverQueue::new(0x1000, 16);
    r.setup_queue(&driver, 0xffff);
    r.driver_ok();
    // DRIVER_OK is recorded, but the device does not start.
    assert_ne!(r.status() & status::DRIVER_OK, 0);
    assert_eq!(r.status() & status::NEEDS_RESET, 0);
    let before = r.queue_read_sector(&mut driver);
    r.write(NOTIFY_OFFSET, 2, 0);
    assert_not_consumed(&mut r, &driver, before);
    // Queue registers are frozen from DRIVER_OK on, running or not.
    r.write(cc::QUEUE_SIZE, 2, 8);
    assert_eq!(r.read(cc::QUEUE_SIZE, 2), 16);

    // Bus mastering on: the device starts and serves the ring.
    r.set_command(COMMAND_MEMORY | COMMAND_BUS_MASTER);
    r.write(NOTIFY_OFFSET, 2, 0);
    assert_eq!(r.wait_used(&driver, before), 0);
    assert_eq!(r.status() & status::NEEDS_RESET, 0);
}

#[test]
fn bus_mastering_before_driver_ok_activates_at_driver_ok() {
    // The order Linux and the bundled unikernel use.
    let mut r = rig(plain());
    r.set_command(0);
    r.set_command(COMMAND_MEMORY | COMMAND_BUS_MASTER);
    assert!(r.negotiate(VERSION_1));
    let mut driver = DriverQueue::new(0x1000, 16);
    r.setup_queue(&driver, 0xffff);
    r.driver_ok();
    assert_eq!(r.read_sector(&mut driver), 0);
    // Other command bits leave a running device alone.
    r.set_command(COMMAND_BUS_MASTER);
    r.set_command(COMMAND_MEMORY | COMMAND_BUS_MASTER | 1 << 10);
    assert_eq!(r.read_sector(&mut driver), 0);
}

#[test]
fn clearing_bus_mastering_pauses_the_device_and_setting_it_resumes() {
    let mut r = rig(plain());
    r.enable_msix_vector0();
    assert!(r.negotiate(VERSION_1));
    let mut driver = DriverQueue::new(0x1000, 16);
    r.setup_queue(&driver, 0);
    r.driver_ok();
    assert_eq!(r.read_sector(&mut driver), 0);
    let fired = r.msi.fired.lock().unwrap().len();

    r.set_command(COMMAND_MEMORY);
    assert_eq!(r.status() & status::NEEDS_RESET, 0);
    let before = r.queue_read_sector(&mut driver);
    r.write(NOTIFY_OFFSET, 2, 0);
    assert_not_consumed(&mut r, &driver, before);
    assert_eq!(r.msi.fired.lock().unwrap().len(), fired);
    // Bus mastering back on: the paused request completes, with its interrupt.
    r.set_command(COMMAND_MEMORY | COMMAND_BUS_MASTER);
    assert_eq!(r.wait_used(&driver, before), 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while r.msi.fired.lock().unwrap().len() == fired {
        assert!(Instant::now() < deadline, "no interrupt after resuming");
        std::thread::sleep(Duration::from_millis(1));
    }

    // A reset while paused ends the pause: a fresh start works.
    r.set_command(COMMAND_MEMORY);
    r.write(cc::DEVICE_STATUS, 1, 0);
    assert_eq!(r.status(), 0);
    r.set_command(COMMAND_MEMORY | COMMAND_BUS_MASTER);
    assert!(r.negotiate(VERSION_1));
    let mut driver = DriverQueue::new(0x8000, 16);
    r.setup_queue(&driver, 0);
    r.driver_ok();
    assert_eq!(r.read_sector(&mut driver), 0);
}

#[test]
fn reset_of_a_busy_device_returns_at_once_and_no_dma_lands_after_it() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let mut r = rig(plain());
    assert!(r.negotiate(VERSION_1));
    let driver = DriverQueue::new(0x1000, 16);
    r.setup_queue(&driver, 0xffff);
    let mut raw = [0u8; 16];
    raw[0] = 0; // IN, 64 KiB from sector 0
    r.ram.write_slice(&raw, GuestAddress(HEADER)).unwrap();
    r.driver_ok();
    // A guest that keeps the queue full: the worker never runs out of requests.
    let keep_posting = AtomicBool::new(true);
    let ram = r.ram.clone();
    let (_, notify) = r.dev.ioeventfds(usize::from(VIRTIO_BAR))[0];
    let notify = notify.try_clone().unwrap();
    let reset_took = std::thread::scope(|s| {
        let poster = s.spawn(|| {
            let mut driver = driver;
            let mut posted = 0u16;
            while keep_posting.load(Ordering::Relaxed) {
                if posted.wrapping_sub(driver.used_idx(&ram)) < 15 {
                    driver.recycle();
                    driver.add_chain(
                        &ram,
                        &[
                            Buffer::readable(HEADER, 16),
                            Buffer::writable(DATA, 64 << 10),
                            Buffer::writable(STATUS, 1),
                        ],
                    );
                    posted = posted.wrapping_add(1);
                    notify.write(1).unwrap();
                }
            }
            driver
        });
        // Until the device is visibly busy.
        let driver_view = DriverQueue::new(0x1000, 16);
        let deadline = Instant::now() + Duration::from_secs(10);
        while driver_view.used_idx(&r.ram) < 64 && Instant::now() < deadline {
            std::thread::yield_now();
        }
        let busy = driver_view.used_idx(&r.ram) >= 64;
        let asked = Instant::now();
        r.write(cc::DEVICE_STATUS, 1, 0);
        let took = asked.elapsed();
        keep_posting.store(false, Ordering::Relaxed);
        assert!(busy, "the device never got busy");
        // From here on nothing may touch guest memory: not the used ring, not the data.
        let used = driver_view.used_idx(&r.ram);
        r.ram.write_slice(&[0x77; 64], GuestAddress(DATA)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            driver_view.used_idx(&r.ram),
            used,
            "used ring written after reset"
        );
        let mut data = [0u8; 64];
        r.ram.read_slice(&mut data, GuestAddress(DATA)).unwrap();
        assert_eq!(data, [0x77; 64], "data written after reset");
        poster.join().unwrap();
        took
    });
    assert!(
        reset_took < Duration::from_millis(100),
        "reset of a busy device took {reset_took:?}"
    );
    assert_eq!(r.status(), 0);
}

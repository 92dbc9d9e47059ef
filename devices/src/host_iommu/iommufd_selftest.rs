//! The kernel's iommufd test driver (CONFIG_IOMMUFD_TEST): a mock IOMMU and mock devices
//! behind the real iommufd core, driven through `IOMMU_TEST_CMD`. With it, nestor's
//! iommufd code runs against the real kernel on hosts without an IOMMU that nests: the
//! test driver creates a device, attaches it, and injects page requests and vEVENTQ events
//! as hardware would.
//!
//! Layouts from the kernel's `drivers/iommu/iommufd/iommufd_test.h`.

use std::io;
use std::os::fd::AsRawFd;

use iommufd_ioctls::IommuFd;

use super::iommufd_faults::iommufd_ioctl;

mod endpoint;
mod format;

pub use endpoint::MockEndpoint;
pub use format::{selftest_iotlb, SelftestFormat};

/// `IOMMU_TEST_CMD`: `IOMMUFD_CMD_BASE + 32`.
const IOMMU_TEST_CMD_NR: u32 = 0x80 + 32;

mod op {
    pub const MOCK_DOMAIN: u32 = 2;
    pub const MOCK_DOMAIN_REPLACE: u32 = 10;
    pub const MD_CHECK_IOTLB: u32 = 14;
    pub const TRIGGER_IOPF: u32 = 15;
    pub const DEV_CHECK_CACHE: u32 = 16;
    pub const TRIGGER_VEVENT: u32 = 17;
}

/// `IOMMU_HWPT_DATA_SELFTEST`: a nested HWPT for the mock IOMMU, with
/// `struct iommu_hwpt_selftest { __u32 iotlb; }`.
pub const HWPT_DATA_SELFTEST: u32 = 0xdead;
/// `IOMMU_TEST_IOTLB_DEFAULT`.
pub const IOTLB_DEFAULT: u32 = 0x0bad_beef;
/// `IOMMU_VIOMMU_TYPE_SELFTEST`.
pub const VIOMMU_TYPE_SELFTEST: u32 = 0xdead_beef;
/// `IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST`, whose entry is
/// `struct iommu_viommu_invalidate_selftest { __u32 flags, vdev_id, cache_id; }`.
pub const VIOMMU_INVALIDATE_DATA_SELFTEST: u32 = 0xdead_beef;
/// `IOMMU_TEST_INVALIDATE_FLAG_ALL`: every cache entry of the device, `cache_id` ignored.
pub const INVALIDATE_FLAG_ALL: u32 = 1 << 0;
/// `MOCK_DEV_CACHE_NUM`: cache entries per mock device.
pub const DEV_CACHE_NUM: u32 = 4;
/// `IOMMU_TEST_DEV_CACHE_DEFAULT`: a mock device's cache entry before an invalidation
/// through the vIOMMU clears it to 0.
pub const DEV_CACHE_DEFAULT: u32 = 0x00ba_ddad;
/// `IOMMU_VEVENTQ_TYPE_SELFTEST`, whose record is `{ __u32 virt_id; }`.
pub const VEVENTQ_TYPE_SELFTEST: u32 = 0xbeef_beef;
/// The size of a selftest vEVENTQ record.
pub const VEVENT_SELFTEST_SIZE: usize = 4;

/// `struct iommu_test_cmd`: a 16-byte head, a 48-byte union (its largest member, `dirty`,
/// is a u32 and five aligned u64s) and `last`, padded to 8.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct TestCmd {
    size: u32,
    op: u32,
    id: u32,
    reserved: u32,
    union: [u64; 6],
    last: u32,
    pad: u32,
}

const _: () = assert!(std::mem::size_of::<TestCmd>() == 72);

impl TestCmd {
    fn new(op: u32, id: u32) -> Self {
        Self {
            size: std::mem::size_of::<Self>() as u32,
            op,
            id,
            ..Default::default()
        }
    }

    /// The union as u32 words, in memory order.
    fn set_word(&mut self, index: usize, value: u32) {
        let shift = 32 * (index % 2);
        let slot = &mut self.union[index / 2];
        *slot = (*slot & !(0xffff_ffffu64 << shift)) | (u64::from(value) << shift);
    }

    fn word(&self, index: usize) -> u32 {
        (self.union[index / 2] >> (32 * (index % 2))) as u32
    }
}

fn run(iommufd: &IommuFd, cmd: &mut TestCmd) -> io::Result<()> {
    // SAFETY: the kernel reads and writes `cmd`, whose size it is told in `cmd.size`.
    let ret = unsafe {
        libc::ioctl(
            iommufd.as_raw_fd(),
            iommufd_ioctl(IOMMU_TEST_CMD_NR) as _,
            cmd as *mut TestCmd,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A mock device bound to an IOAS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MockDevice {
    /// The selftest object: names the device in MOCK_DOMAIN_REPLACE.
    pub stdev_id: u32,
    /// The automatic HWPT it was attached to.
    pub hwpt_id: u32,
    /// The iommufd device id: `dev_id` in HWPT, vIOMMU and vDEVICE allocation.
    pub idev_id: u32,
}

/// `IOMMU_TEST_OP_MOCK_DOMAIN`: creates a mock device attached to `ioas_id`.
pub fn mock_device(iommufd: &IommuFd, ioas_id: u32) -> io::Result<MockDevice> {
    let mut cmd = TestCmd::new(op::MOCK_DOMAIN, ioas_id);
    run(iommufd, &mut cmd)?;
    Ok(MockDevice {
        stdev_id: cmd.word(0),
        hwpt_id: cmd.word(1),
        idev_id: cmd.word(2),
    })
}

/// `IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE`: attaches the device to `pt_id` by replacement.
pub fn replace(iommufd: &IommuFd, device: &MockDevice, pt_id: u32) -> io::Result<()> {
    let mut cmd = TestCmd::new(op::MOCK_DOMAIN_REPLACE, device.stdev_id);
    cmd.set_word(0, pt_id);
    run(iommufd, &mut cmd)
}

/// `IOMMU_TEST_OP_TRIGGER_IOPF`: the device reports a one-record page-request group (the
/// record carries LAST_PAGE) to the fault queue of the HWPT it is attached to.
pub fn trigger_page_request(
    iommufd: &IommuFd,
    device: &MockDevice,
    pasid: u32,
    grpid: u32,
    perm: u32,
    addr: u64,
) -> io::Result<()> {
    let mut cmd = TestCmd::new(op::TRIGGER_IOPF, 0);
    cmd.set_word(0, device.idev_id);
    cmd.set_word(1, pasid);
    cmd.set_word(2, grpid);
    cmd.set_word(3, perm);
    cmd.union[2] = addr;
    run(iommufd, &mut cmd)
}

/// `IOMMU_TEST_OP_TRIGGER_VEVENT`: the device's vIOMMU reports an event for it (its record
/// is the vDEVICE's virt_id).
pub fn trigger_vevent(iommufd: &IommuFd, device: &MockDevice) -> io::Result<()> {
    let mut cmd = TestCmd::new(op::TRIGGER_VEVENT, 0);
    cmd.set_word(0, device.idev_id);
    run(iommufd, &mut cmd)
}

/// `IOMMU_TEST_OP_DEV_CHECK_CACHE`: whether cache entry `cache_id` of the mock device
/// `idev_id` holds `value` (the kernel answers EINVAL when it does not).
pub fn dev_cache_is(
    iommufd: &IommuFd,
    idev_id: u32,
    cache_id: u32,
    value: u32,
) -> io::Result<bool> {
    let mut cmd = TestCmd::new(op::DEV_CHECK_CACHE, idev_id);
    cmd.set_word(0, cache_id);
    cmd.set_word(1, value);
    check(run(iommufd, &mut cmd))
}

/// `IOMMU_TEST_OP_MD_CHECK_IOTLB`: whether IOTLB entry `iotlb_id` of the mock nested HWPT
/// `hwpt_id` holds `value`.
pub fn nested_iotlb_is(
    iommufd: &IommuFd,
    hwpt_id: u32,
    iotlb_id: u32,
    value: u32,
) -> io::Result<bool> {
    let mut cmd = TestCmd::new(op::MD_CHECK_IOTLB, hwpt_id);
    cmd.set_word(0, iotlb_id);
    cmd.set_word(1, value);
    check(run(iommufd, &mut cmd))
}

/// A check operation's answer: EINVAL is "no".
fn check(result: io::Result<()>) -> io::Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_matches_the_test_drivers_layout() {
        assert_eq!(iommufd_ioctl(IOMMU_TEST_CMD_NR), 0x3ba0);
        let mut cmd = TestCmd::new(op::TRIGGER_IOPF, 0);
        cmd.set_word(0, 1);
        cmd.set_word(1, 2);
        cmd.set_word(2, 3);
        cmd.set_word(3, 4);
        cmd.union[2] = 0x1122_3344_5566_7788;
        // SAFETY: TestCmd is plain old data of exactly this size.
        let bytes: [u8; 72] = unsafe { std::mem::transmute(cmd) };
        assert_eq!(&bytes[0..4], &72u32.to_le_bytes());
        assert_eq!(&bytes[4..8], &15u32.to_le_bytes());
        // trigger_iopf: dev_id, pasid, grpid, perm at 16..32, then the u64 addr at 32.
        for (i, v) in [1u32, 2, 3, 4].into_iter().enumerate() {
            assert_eq!(&bytes[16 + 4 * i..20 + 4 * i], &v.to_le_bytes());
        }
        assert_eq!(&bytes[32..40], &0x1122_3344_5566_7788u64.to_le_bytes());
        // `last` follows the 48-byte union.
        assert_eq!(std::mem::offset_of!(TestCmd, last), 64);
        assert_eq!(cmd.word(2), 3);
    }
}

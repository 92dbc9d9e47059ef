//! `viommu`: the virtio-iommu in front of the virtio-blk disk, as a driver uses it.
//! Needs nestor started with `--disk path=IMG,iommu=on`; `blk_sector=N` picks the sector
//! written and read back (default 0).
//!
//! Reads the config, PROBEs the disk's endpoint for the MSI window, attaches the disk to a
//! domain, maps its rings 1:1 and two data pages at chosen IOVAs, writes and reads a sector
//! through them, unmaps the read buffer and sees the next read fail with a MAPPING fault on
//! the eventq, then checks a bypass domain and the config `bypass` byte both ways.

use super::{Context, Outcome, Probe};
use crate::viommu::{
    endpoint_id, put32, put64, Iommu, ATTACH_F_BYPASS, CONFIG_BYPASS, FAULT_F_WRITE,
    FAULT_R_DOMAIN, FAULT_R_MAPPING, MAP_F_READ, MAP_F_WRITE, PROBE_REQ, S_NOENT, VIRTIO_IOMMU,
};
use crate::virtio_pci::{
    self, Buffer, Page, Queue, Ring, VirtioPci, F_ACCESS_PLATFORM, F_VERSION_1,
};
use unikernel::format_line;
use unikernel::text::{hex, Line};

pub const PROBE: Probe = Probe {
    name: "viommu",
    run,
};

const VIRTIO_BLK: u16 = 2;

const BLK_T_IN: u32 = 0;
const BLK_T_OUT: u32 = 1;
const SECTOR: usize = 512;

/// Where the disk's data pages appear to it.
const IOVA_OUT: u64 = 0x8000_0000;
const IOVA_IN: u64 = 0x8000_1000;
/// TSC milliseconds to wait for a completion that should come.
const COMPLETION_MS: u64 = 5000;
/// ... and for one that should not.
const NO_COMPLETION_MS: u64 = 500;

/// The disk's rings, request header and status: one 8 KiB block mapped 1:1.
#[repr(C, align(4096))]
struct BlkControl {
    ring: Ring,
    header: Page,
}

static mut BLK: BlkControl = BlkControl {
    ring: Ring::ZERO,
    header: Page::ZERO,
};
static mut DATA_OUT: Page = Page::ZERO;
static mut DATA_IN: Page = Page::ZERO;

fn fail(what: &str) -> Line {
    format_line!(what)
}

struct Disk {
    queue: Queue,
}

impl Disk {
    fn control() -> &'static mut BlkControl {
        // SAFETY: only this probe touches the disk's control block.
        unsafe { &mut *core::ptr::addr_of_mut!(BLK) }
    }

    /// Posts one request with its data buffer at `data` (as the device sees it).
    fn post(&mut self, kind: u32, sector: u64, data: u64) {
        let header = &mut Self::control().header;
        header.0[..16].fill(0);
        put32(&mut header.0, 0, kind);
        put64(&mut header.0, 8, sector);
        header.0[16] = 0xff;
        let at = header.address();
        let chain: [Buffer; 3] = [
            (at, 16, false),
            (data, SECTOR as u32, kind == BLK_T_IN),
            (at + 16, 1, true),
        ];
        self.queue.post(0, &chain);
        self.queue.kick();
    }

    /// The status of the request in flight, or `None` if it does not complete in `ms`.
    fn complete(&mut self, ms: u64) -> Option<u8> {
        self.queue.wait_used(ms)?;
        Some(Self::control().header.0[16])
    }

    fn transfer(&mut self, kind: u32, sector: u64, data: u64) -> Result<(), Line> {
        self.post(kind, sector, data);
        match self.complete(COMPLETION_MS) {
            Some(0) => Ok(()),
            Some(status) => Err(format_line!("blk request ", kind, " status ", status)),
            None => Err(format_line!("blk request ", kind, " never completed")),
        }
    }
}

fn data_out() -> &'static mut Page {
    // SAFETY: only this probe touches the data pages.
    unsafe { &mut *core::ptr::addr_of_mut!(DATA_OUT) }
}

fn data_in() -> &'static mut Page {
    // SAFETY: as above.
    unsafe { &mut *core::ptr::addr_of_mut!(DATA_IN) }
}

fn run(ctx: &Context, _arg: Option<&str>) -> Outcome {
    let sector = ctx.cmdline.number("blk_sector").unwrap_or(0);
    let iommu_bdf = virtio_pci::find(virtio_pci::device_id(VIRTIO_IOMMU))
        .ok_or_else(|| fail("no virtio-iommu on bus 0"))?;
    let disk_bdf = virtio_pci::find(virtio_pci::device_id(VIRTIO_BLK))
        .ok_or_else(|| fail("no virtio-blk on bus 0"))?;
    let endpoint = endpoint_id(disk_bdf);

    let mut iommu = Iommu::open(iommu_bdf)?;
    let (first_domain, last_domain) = iommu.domain_range();
    let (dma_domain, bypass_domain) = (first_domain + 1, first_domain + 2);
    if last_domain < bypass_domain {
        return Err(format_line!(
            "domain range ",
            first_domain,
            "-",
            last_domain,
            " too small"
        ));
    }
    iommu.probe_msi(endpoint)?;
    let mut bogus = [0u8; 72];
    bogus[0] = PROBE_REQ;
    put32(&mut bogus, 4, 0xffff_0000);
    if iommu.request(&bogus, iommu.probe_size + 4)? != S_NOENT {
        return Err(fail("PROBE of an unknown endpoint is not NOENT"));
    }

    // The disk in a DMA domain: its rings 1:1, the data pages at IOVA_OUT/IOVA_IN.
    iommu.attach(dma_domain, endpoint, 0)?;
    let control = Disk::control() as *mut BlkControl as u64;
    iommu.map(
        dma_domain,
        control,
        0x2000,
        control,
        MAP_F_READ | MAP_F_WRITE,
    )?;
    iommu.map(
        dma_domain,
        IOVA_OUT,
        0x1000,
        data_out().address(),
        MAP_F_READ,
    )?;
    iommu.map(
        dma_domain,
        IOVA_IN,
        0x1000,
        data_in().address(),
        MAP_F_WRITE,
    )?;
    let mut disk = open_disk(disk_bdf)?;

    for (i, b) in data_out().0[..SECTOR].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(7) ^ 0x5a;
    }
    data_in().0.fill(0);
    disk.transfer(BLK_T_OUT, sector, IOVA_OUT)?;
    disk.transfer(BLK_T_IN, sector, IOVA_IN)?;
    if data_in().0[..SECTOR] != data_out().0[..SECTOR] {
        return Err(fail(
            "sector read through the IOMMU differs from the one written",
        ));
    }

    // Unmapped: the next read fails and a MAPPING fault arrives.
    iommu.unmap(dma_domain, IOVA_IN, 0x1000)?;
    disk.post(BLK_T_IN, sector, IOVA_IN);
    if disk.complete(COMPLETION_MS) == Some(0) {
        return Err(fail("read into an unmapped IOVA succeeded"));
    }
    let (address, flags) = iommu.wait_fault(FAULT_R_MAPPING, endpoint)?;
    if !(IOVA_IN..IOVA_IN + 0x1000).contains(&address) || flags & FAULT_F_WRITE == 0 {
        return Err(format_line!(
            "fault at ",
            hex(address, 16),
            " flags ",
            flags
        ));
    }

    // A bypass domain: guest-physical addresses work as they are.
    iommu.attach(bypass_domain, endpoint, ATTACH_F_BYPASS)?;
    data_in().0.fill(0);
    disk.transfer(BLK_T_IN, sector, data_in().address())?;
    if data_in().0[..SECTOR] != data_out().0[..SECTOR] {
        return Err(fail("sector read in a bypass domain differs"));
    }

    // Unattached with bypass off: blocked, with a DOMAIN fault; bypass on lets it through.
    iommu.detach(bypass_domain, endpoint)?;
    iommu.set_bypass(false);
    data_in().0.fill(0);
    disk.post(BLK_T_IN, sector, data_in().address());
    if disk.complete(NO_COMPLETION_MS).is_some() {
        return Err(fail(
            "an unattached endpoint reached memory with bypass off",
        ));
    }
    iommu.wait_fault(FAULT_R_DOMAIN, endpoint)?;
    iommu.set_bypass(true);
    if iommu.dev.device_config8(CONFIG_BYPASS) != 1 {
        return Err(fail("config bypass byte did not take 1"));
    }
    disk.queue.kick();
    match disk.complete(COMPLETION_MS) {
        Some(0) if data_in().0[..SECTOR] == data_out().0[..SECTOR] => {}
        Some(status) => return Err(format_line!("bypassed read status ", status)),
        None => return Err(fail("bypass on did not let the blocked read through")),
    }
    iommu.set_bypass(false);
    Ok(())
}

fn open_disk(bdf: crate::pci::Bdf) -> Result<Disk, Line> {
    let dev = VirtioPci::open(bdf).ok_or_else(|| fail("virtio-blk capabilities missing"))?;
    let offered = dev
        .negotiate(F_VERSION_1 | F_ACCESS_PLATFORM)
        .ok_or_else(|| fail("virtio-blk refused FEATURES_OK"))?;
    if offered & F_ACCESS_PLATFORM == 0 {
        return Err(fail("virtio-blk behind the IOMMU lacks ACCESS_PLATFORM"));
    }
    let ring = &mut Disk::control().ring;
    let addr = ring as *mut Ring as u64;
    let queue = dev
        .setup_queue(0, ring, addr)
        .ok_or_else(|| fail("blk queue"))?;
    dev.driver_ok();
    Ok(Disk { queue })
}

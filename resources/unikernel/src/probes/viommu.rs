//! `viommu`: the virtio-iommu in front of the virtio-blk disk, as a driver uses it.
//! Needs nestor started with `--disk path=IMG,iommu=on`; `blk_sector=N` picks the sector
//! written and read back (default 0).
//!
//! Reads the config, PROBEs the disk's endpoint for the MSI window, attaches the disk to a
//! domain, maps its rings 1:1 and two data pages at chosen IOVAs, writes and reads a sector
//! through them, unmaps the read buffer and sees the next read fail with a MAPPING fault on
//! the eventq, then checks a bypass domain and the config `bypass` byte both ways.

use super::{Context, Outcome, Probe};
use crate::virtio_pci::{
    self, Buffer, Page, Queue, Ring, VirtioPci, F_ACCESS_PLATFORM, F_VERSION_1,
};
use unikernel::format_line;
use unikernel::text::{hex, Line};

pub const PROBE: Probe = Probe {
    name: "viommu",
    run,
};

const VIRTIO_IOMMU: u16 = 23;
const VIRTIO_BLK: u16 = 2;

const F_INPUT_RANGE: u64 = 1 << 0;
const F_DOMAIN_RANGE: u64 = 1 << 1;
const F_MAP_UNMAP: u64 = 1 << 2;
const F_PROBE: u64 = 1 << 4;
const F_BYPASS_CONFIG: u64 = 1 << 6;

const ATTACH: u8 = 1;
const DETACH: u8 = 2;
const MAP: u8 = 3;
const UNMAP: u8 = 4;
const PROBE_REQ: u8 = 5;
const S_OK: u8 = 0;
const S_NOENT: u8 = 6;
const ATTACH_F_BYPASS: u32 = 1;
const MAP_F_READ: u32 = 1;
const MAP_F_WRITE: u32 = 2;
const FAULT_R_DOMAIN: u8 = 1;
const FAULT_R_MAPPING: u8 = 2;
const FAULT_F_WRITE: u32 = 2;
const CONFIG_BYPASS: u64 = 36;

const BLK_T_IN: u32 = 0;
const BLK_T_OUT: u32 = 1;
const SECTOR: usize = 512;

/// Where the disk's data pages appear to it.
const IOVA_OUT: u64 = 0x8000_0000;
const IOVA_IN: u64 = 0x8000_1000;
const EVENT_BUFFERS: u16 = 8;
const EVENT_SIZE: u32 = 24;
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

static mut IOMMU_REQUESTS: Ring = Ring::ZERO;
static mut IOMMU_EVENTS: Ring = Ring::ZERO;
static mut IOMMU_BUFFERS: Page = Page::ZERO;
static mut EVENT_RECORDS: Page = Page::ZERO;
static mut BLK: BlkControl = BlkControl {
    ring: Ring::ZERO,
    header: Page::ZERO,
};
static mut DATA_OUT: Page = Page::ZERO;
static mut DATA_IN: Page = Page::ZERO;

fn fail(what: &str) -> Line {
    format_line!(what)
}

struct Iommu {
    dev: VirtioPci,
    requests: Queue,
    events: Queue,
    probe_size: u32,
}

impl Iommu {
    fn buffers() -> &'static mut Page {
        // SAFETY: only this single-threaded probe touches these statics.
        unsafe { &mut *core::ptr::addr_of_mut!(IOMMU_BUFFERS) }
    }

    /// Sends one request; returns the status, or an error when the used length is wrong.
    fn request(&mut self, bytes: &[u8], writable: u32) -> Result<u8, Line> {
        let page = Self::buffers();
        page.0[..bytes.len()].copy_from_slice(bytes);
        page.0[0x800..0x800 + writable as usize].fill(0xff);
        let base = page.address();
        let chain: [Buffer; 2] = [
            (base, bytes.len() as u32, false),
            (base + 0x800, writable, true),
        ];
        self.requests.post(0, &chain);
        self.requests.kick();
        let (_, used) = self
            .requests
            .wait_used(COMPLETION_MS)
            .ok_or_else(|| format_line!("request type ", bytes[0], " never completed"))?;
        if used != writable {
            return Err(format_line!(
                "request type ",
                bytes[0],
                " used length ",
                used
            ));
        }
        Ok(page.0[0x800 + writable as usize - 4])
    }

    fn expect(&mut self, what: &str, bytes: &[u8], status: u8) -> Outcome {
        let got = self.request(bytes, 4)?;
        if got != status {
            return Err(format_line!(what, ": status ", got, " want ", status));
        }
        Ok(())
    }

    fn attach(&mut self, domain: u32, endpoint: u32, flags: u32) -> Outcome {
        let mut req = [0u8; 20];
        req[0] = ATTACH;
        put32(&mut req, 4, domain);
        put32(&mut req, 8, endpoint);
        put32(&mut req, 12, flags);
        self.expect("ATTACH", &req, S_OK)
    }

    fn detach(&mut self, domain: u32, endpoint: u32) -> Outcome {
        let mut req = [0u8; 20];
        req[0] = DETACH;
        put32(&mut req, 4, domain);
        put32(&mut req, 8, endpoint);
        self.expect("DETACH", &req, S_OK)
    }

    fn map(&mut self, domain: u32, iova: u64, len: u64, phys: u64, flags: u32) -> Outcome {
        let mut req = [0u8; 36];
        req[0] = MAP;
        put32(&mut req, 4, domain);
        put64(&mut req, 8, iova);
        put64(&mut req, 16, iova + len - 1);
        put64(&mut req, 24, phys);
        put32(&mut req, 32, flags);
        self.expect("MAP", &req, S_OK)
    }

    fn unmap(&mut self, domain: u32, iova: u64, len: u64) -> Outcome {
        let mut req = [0u8; 28];
        req[0] = UNMAP;
        put32(&mut req, 4, domain);
        put64(&mut req, 8, iova);
        put64(&mut req, 16, iova + len - 1);
        self.expect("UNMAP", &req, S_OK)
    }

    /// PROBEs `endpoint` and checks it reports the x86 MSI window.
    fn probe_msi(&mut self, endpoint: u32) -> Outcome {
        let mut req = [0u8; 72];
        req[0] = PROBE_REQ;
        put32(&mut req, 4, endpoint);
        let status = self.request(&req, self.probe_size + 4)?;
        if status != S_OK {
            return Err(format_line!("PROBE status ", status));
        }
        let props = &Self::buffers().0[0x800..0x800 + self.probe_size as usize];
        let mut at = 0;
        while at + 4 <= props.len() {
            let kind = get16(props, at) & 0xfff;
            let len = usize::from(get16(props, at + 2));
            if kind == 0 {
                break;
            }
            if kind == 1 && len >= 20 && at + 24 <= props.len() {
                let (subtype, start, end) =
                    (props[at + 4], get64(props, at + 8), get64(props, at + 16));
                if subtype == 1 && start == 0xfee0_0000 && end == 0xfeef_ffff {
                    return Ok(());
                }
            }
            at += len + 4;
        }
        Err(fail("PROBE reported no MSI window"))
    }

    /// Posts every eventq buffer.
    fn post_event_buffers(&mut self) {
        for i in 0..EVENT_BUFFERS {
            self.post_event_buffer(i);
        }
        self.events.kick();
    }

    fn post_event_buffer(&mut self, i: u16) {
        // SAFETY: only this probe touches the event records page.
        let page = unsafe { &*core::ptr::addr_of!(EVENT_RECORDS) };
        let at = page.address() + u64::from(i) * 32;
        self.events.post(i, &[(at, EVENT_SIZE, true)]);
    }

    /// Waits for a fault record with `reason` for `endpoint`; returns its address and flags.
    fn wait_fault(&mut self, reason: u8, endpoint: u32) -> Result<(u64, u32), Line> {
        loop {
            let Some((id, len)) = self.events.wait_used(COMPLETION_MS) else {
                return Err(format_line!("no fault record with reason ", reason));
            };
            // SAFETY: as above; the device wrote the record before returning the buffer.
            let page = unsafe { &*core::ptr::addr_of!(EVENT_RECORDS) };
            let rec = &page.0[id as usize * 32..id as usize * 32 + 24];
            let found = (rec[0], get32(rec, 4), get32(rec, 8), get64(rec, 16));
            self.post_event_buffer(id as u16);
            self.events.kick();
            if len != EVENT_SIZE {
                return Err(format_line!("fault record of ", len, " bytes"));
            }
            if found.0 == reason && found.2 == endpoint {
                return Ok((found.3, found.1));
            }
        }
    }

    fn set_bypass(&self, on: bool) {
        self.dev.write_device_config8(CONFIG_BYPASS, on as u8);
    }
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
    // The VIOT gives every endpoint its BDF as ID.
    let endpoint = u32::from(disk_bdf.bus) << 8
        | u32::from(disk_bdf.device) << 3
        | u32::from(disk_bdf.function);

    let mut iommu = open_iommu(iommu_bdf)?;
    let (first_domain, last_domain) =
        (iommu.dev.device_config32(24), iommu.dev.device_config32(28));
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

fn open_iommu(bdf: crate::pci::Bdf) -> Result<Iommu, Line> {
    let dev = VirtioPci::open(bdf).ok_or_else(|| fail("virtio-iommu capabilities missing"))?;
    let wanted =
        F_VERSION_1 | F_INPUT_RANGE | F_DOMAIN_RANGE | F_MAP_UNMAP | F_PROBE | F_BYPASS_CONFIG;
    let offered = dev
        .negotiate(wanted)
        .ok_or_else(|| fail("virtio-iommu refused FEATURES_OK"))?;
    if offered & wanted != wanted || offered & (1 << 3) != 0 {
        return Err(format_line!("virtio-iommu features ", hex(offered, 16)));
    }
    let page_sizes = u64::from(dev.device_config32(0)) | u64::from(dev.device_config32(4)) << 32;
    if page_sizes.trailing_zeros() != 12 {
        return Err(format_line!(
            "granule is not 4 KiB: mask ",
            hex(page_sizes, 16)
        ));
    }
    let probe_size = dev.device_config32(32);
    if !(24..=0x7fc).contains(&probe_size) {
        return Err(format_line!("probe_size ", probe_size));
    }
    if dev.device_config8(CONFIG_BYPASS) != 0 {
        return Err(fail("bypass is on by default"));
    }
    // SAFETY: only this probe touches the IOMMU's rings.
    let (req_ring, ev_ring) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(IOMMU_REQUESTS),
            &mut *core::ptr::addr_of_mut!(IOMMU_EVENTS),
        )
    };
    let req_addr = req_ring as *mut Ring as u64;
    let ev_addr = ev_ring as *mut Ring as u64;
    let requests = dev
        .setup_queue(0, req_ring, req_addr)
        .ok_or_else(|| fail("requestq"))?;
    let events = dev
        .setup_queue(1, ev_ring, ev_addr)
        .ok_or_else(|| fail("eventq"))?;
    dev.driver_ok();
    let mut iommu = Iommu {
        dev,
        requests,
        events,
        probe_size,
    };
    iommu.post_event_buffers();
    Ok(iommu)
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

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn get32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn get64(b: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(bytes)
}

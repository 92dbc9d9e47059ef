//! A polled virtio-iommu driver for the probes: negotiate, send requests on the requestq,
//! collect fault records from the eventq. Used by the `viommu` and `dma-engine` probes.

use crate::pci::Bdf;
use crate::virtio_pci::{Buffer, Page, Queue, Ring, VirtioPci, F_VERSION_1};
use unikernel::format_line;
use unikernel::text::{hex, Line};

pub const VIRTIO_IOMMU: u16 = 23;

const F_INPUT_RANGE: u64 = 1 << 0;
const F_DOMAIN_RANGE: u64 = 1 << 1;
const F_MAP_UNMAP: u64 = 1 << 2;
const F_PROBE: u64 = 1 << 4;
const F_BYPASS_CONFIG: u64 = 1 << 6;

const ATTACH: u8 = 1;
const DETACH: u8 = 2;
const MAP: u8 = 3;
const UNMAP: u8 = 4;
pub const PROBE_REQ: u8 = 5;
pub const S_OK: u8 = 0;
pub const S_NOENT: u8 = 6;
pub const ATTACH_F_BYPASS: u32 = 1;
pub const MAP_F_READ: u32 = 1;
pub const MAP_F_WRITE: u32 = 2;
pub const FAULT_R_DOMAIN: u8 = 1;
pub const FAULT_R_MAPPING: u8 = 2;
pub const FAULT_F_WRITE: u32 = 2;
pub const CONFIG_BYPASS: u64 = 36;

const EVENT_BUFFERS: u16 = 8;
const EVENT_SIZE: u32 = 24;
/// TSC milliseconds to wait for a completion that should come.
const COMPLETION_MS: u64 = 5000;

static mut IOMMU_REQUESTS: Ring = Ring::ZERO;
static mut IOMMU_EVENTS: Ring = Ring::ZERO;
static mut IOMMU_BUFFERS: Page = Page::ZERO;
static mut EVENT_RECORDS: Page = Page::ZERO;

fn fail(what: &str) -> Line {
    format_line!(what)
}

/// The endpoint ID the VIOT gives a function: its BDF.
pub fn endpoint_id(bdf: Bdf) -> u32 {
    u32::from(bdf.bus) << 8 | u32::from(bdf.device) << 3 | u32::from(bdf.function)
}

pub struct Iommu {
    pub dev: VirtioPci,
    requests: Queue,
    events: Queue,
    pub probe_size: u32,
}

impl Iommu {
    fn buffers() -> &'static mut Page {
        // SAFETY: only this single-threaded probe touches these statics.
        unsafe { &mut *core::ptr::addr_of_mut!(IOMMU_BUFFERS) }
    }

    /// Sends one request; returns the status, or an error when the used length is wrong.
    pub fn request(&mut self, bytes: &[u8], writable: u32) -> Result<u8, Line> {
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

    pub fn expect(&mut self, what: &str, bytes: &[u8], status: u8) -> Result<(), Line> {
        let got = self.request(bytes, 4)?;
        if got != status {
            return Err(format_line!(what, ": status ", got, " want ", status));
        }
        Ok(())
    }

    pub fn attach(&mut self, domain: u32, endpoint: u32, flags: u32) -> Result<(), Line> {
        let mut req = [0u8; 20];
        req[0] = ATTACH;
        put32(&mut req, 4, domain);
        put32(&mut req, 8, endpoint);
        put32(&mut req, 12, flags);
        self.expect("ATTACH", &req, S_OK)
    }

    pub fn detach(&mut self, domain: u32, endpoint: u32) -> Result<(), Line> {
        let mut req = [0u8; 20];
        req[0] = DETACH;
        put32(&mut req, 4, domain);
        put32(&mut req, 8, endpoint);
        self.expect("DETACH", &req, S_OK)
    }

    pub fn map(
        &mut self,
        domain: u32,
        iova: u64,
        len: u64,
        phys: u64,
        flags: u32,
    ) -> Result<(), Line> {
        let mut req = [0u8; 36];
        req[0] = MAP;
        put32(&mut req, 4, domain);
        put64(&mut req, 8, iova);
        put64(&mut req, 16, iova + len - 1);
        put64(&mut req, 24, phys);
        put32(&mut req, 32, flags);
        self.expect("MAP", &req, S_OK)
    }

    pub fn unmap(&mut self, domain: u32, iova: u64, len: u64) -> Result<(), Line> {
        let mut req = [0u8; 28];
        req[0] = UNMAP;
        put32(&mut req, 4, domain);
        put64(&mut req, 8, iova);
        put64(&mut req, 16, iova + len - 1);
        self.expect("UNMAP", &req, S_OK)
    }

    /// PROBEs `endpoint` and checks it reports the x86 MSI window.
    pub fn probe_msi(&mut self, endpoint: u32) -> Result<(), Line> {
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
    pub fn post_event_buffers(&mut self) {
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
    pub fn wait_fault(&mut self, reason: u8, endpoint: u32) -> Result<(u64, u32), Line> {
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

    pub fn set_bypass(&self, on: bool) {
        self.dev.write_device_config8(CONFIG_BYPASS, on as u8);
    }
}

impl Iommu {
    /// The virtio-iommu at `bdf`, negotiated, its queues live and the eventq stocked.
    pub fn open(bdf: Bdf) -> Result<Iommu, Line> {
        open_iommu(bdf)
    }

    /// The first and last domain IDs the device accepts.
    pub fn domain_range(&self) -> (u32, u32) {
        (self.dev.device_config32(24), self.dev.device_config32(28))
    }
}

fn open_iommu(bdf: Bdf) -> Result<Iommu, Line> {
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

pub fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

pub fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub fn get32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub fn get64(b: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(bytes)
}

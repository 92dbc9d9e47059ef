//! A polled virtio-iommu driver: open the device (4 KiB granule, domain and input ranges),
//! send ATTACH, DETACH, MAP, UNMAP and PROBE requests one at a time on the requestq, and
//! read fault records from the eventq.

use crate::pci::Bdf;
use crate::virtio_pci::{self, Buffer, Page, Queue, Ring, VirtioPci, F_VERSION_1};
use unikernel::format_line;
use unikernel::le::{get16, get32, get64, put32, put64};
use unikernel::text::{hex, Line};

const VIRTIO_IOMMU: u16 = 23;

const F_INPUT_RANGE: u64 = 1 << 0;
const F_DOMAIN_RANGE: u64 = 1 << 1;
const F_MAP_UNMAP: u64 = 1 << 2;
const F_BYPASS: u64 = 1 << 3;
const F_PROBE: u64 = 1 << 4;
const F_BYPASS_CONFIG: u64 = 1 << 6;
/// nestor's extension: ATTACH_TABLE and INVALIDATE (docs/virtio-iommu-nested.md).
const F_NESTOR_ATTACH_TABLE: u64 = 1 << 20;
/// nestor's extension: page-request records on the eventq, PAGE_RESP.
const F_NESTOR_PAGE_REQUEST: u64 = 1 << 21;

const ATTACH: u8 = 1;
const DETACH: u8 = 2;
const MAP: u8 = 3;
const UNMAP: u8 = 4;
const PROBE: u8 = 5;
const ATTACH_TABLE: u8 = 6;
const INVALIDATE: u8 = 7;
const PAGE_RESP: u8 = 8;
/// PAGE_RESP codes.
pub const RESP_SUCCESS: u16 = 0;
pub const RESP_FAILURE: u16 = 2;
/// The page-request record's reason, and its flags.
pub const FAULT_R_PAGE_REQUEST: u8 = 0x80;
pub const FAULT_F_LAST_PAGE: u32 = 1 << 10;
pub const S_OK: u8 = 0;
pub const S_INVAL: u8 = 4;
pub const S_RANGE: u8 = 5;
pub const S_NOENT: u8 = 6;
pub const ATTACH_F_BYPASS: u32 = 1;
pub const MAP_F_READ: u32 = 1;
pub const MAP_F_WRITE: u32 = 2;
pub const FAULT_R_DOMAIN: u8 = 1;
pub const FAULT_R_MAPPING: u8 = 2;
pub const FAULT_F_WRITE: u32 = 2;
pub const FAULT_F_ADDRESS: u32 = 1 << 8;
/// nestor's extension: the record's word at offset 12 holds the PASID.
pub const FAULT_F_PASID: u32 = 1 << 9;
/// nestor's extension's fault reasons for table-mode domains.
pub const FAULT_R_BAD_CONFIG: u8 = 3;
pub const FAULT_R_TRANSLATION: u8 = 4;
pub const FAULT_R_ADDRESS_SIZE: u8 = 5;
pub const FAULT_R_PERMISSION: u8 = 7;
/// The `NESTOR_SMMUV3` PROBE property.
pub const PROBE_T_NESTOR_SMMUV3: u16 = 0x800;

/// INVALIDATE scopes, caches and flags.
pub mod invalidate {
    pub const SCOPE_DOMAIN: u8 = 1;
    pub const SCOPE_PASID: u8 = 2;
    pub const SCOPE_ADDRESS: u8 = 3;
    pub const CACHE_CD: u8 = 1 << 0;
    pub const CACHE_TLB: u8 = 1 << 1;
    pub const FLAG_PASID: u16 = 1 << 1;
    pub const FLAG_ASID: u16 = 1 << 2;
}

/// One INVALIDATE's fields (docs/virtio-iommu-nested.md 3.2).
#[derive(Clone, Copy, Default)]
pub struct Invalidate {
    pub scope: u8,
    pub caches: u8,
    pub flags: u16,
    pub domain: u32,
    pub pasid: u32,
    pub asid: u16,
    pub address: u64,
    pub nr_pages: u64,
    pub page_shift: u8,
}

impl Invalidate {
    /// The request's device-readable part.
    pub fn bytes(&self) -> [u8; 60] {
        let mut req = [0u8; 60];
        req[0] = INVALIDATE;
        req[4] = self.scope;
        req[5] = self.caches;
        req[6..8].copy_from_slice(&self.flags.to_le_bytes());
        put32(&mut req, 8, self.domain);
        put32(&mut req, 12, self.pasid);
        req[16..18].copy_from_slice(&self.asid.to_le_bytes());
        put64(&mut req, 24, self.address);
        put64(&mut req, 32, self.nr_pages);
        req[40] = self.page_shift;
        req
    }
}

/// ATTACH_TABLE's device-readable part: SMMUv3 STE words for `endpoint` in `domain`.
pub fn attach_table_request(domain: u32, endpoint: u32, ste0: u64, ste1: u64) -> [u8; 124] {
    let mut req = [0u8; 124];
    req[0] = ATTACH_TABLE;
    put32(&mut req, 4, domain);
    put32(&mut req, 8, endpoint);
    req[12] = 1; // ARM SMMUv3 STE
    put64(&mut req, 16, ste0);
    put64(&mut req, 24, ste1);
    req
}

/// PAGE_RESP (docs/virtio-iommu-nested.md 3.4) for group `group` of `endpoint` and `pasid`.
pub fn page_resp_request(endpoint: u32, pasid: Option<u32>, group: u32, code: u16) -> [u8; 28] {
    let mut req = [0u8; 28];
    req[0] = PAGE_RESP;
    put32(&mut req, 4, endpoint);
    put32(&mut req, 8, pasid.is_some() as u32);
    put32(&mut req, 12, pasid.unwrap_or(0));
    put32(&mut req, 16, group);
    req[20..22].copy_from_slice(&code.to_le_bytes());
    req
}

/// A fault record as the eventq delivered it.
#[derive(Clone, Copy, Debug)]
pub struct FaultRecord {
    pub reason: u8,
    pub flags: u32,
    pub endpoint: u32,
    /// Valid with FAULT_F_PASID.
    pub pasid: u32,
    pub address: u64,
    /// The page-request group (32-byte records only).
    pub group: u32,
}

// Device configuration offsets.
const CONFIG_PAGE_SIZES: u64 = 0;
const CONFIG_DOMAIN_START: u64 = 24;
const CONFIG_DOMAIN_END: u64 = 28;
const CONFIG_PROBE_SIZE: u64 = 32;
const CONFIG_BYPASS: u64 = 36;

const EVENT_BUFFERS: u16 = 8;
const EVENT_SIZE: u32 = 24;
/// With page requests negotiated every record is 32 bytes.
const EVENT_SIZE_PAGE_REQUESTS: u32 = 32;
/// TSC milliseconds to wait for a request or fault record that should come.
const COMPLETION_MS: u64 = 5000;

static mut REQUEST_RING: Ring = Ring::ZERO;
static mut EVENT_RING: Ring = Ring::ZERO;
static mut REQUEST_BUFFERS: Page = Page::ZERO;
static mut EVENT_RECORDS: Page = Page::ZERO;

/// The first virtio-iommu on bus 0.
pub fn find() -> Option<Bdf> {
    virtio_pci::find(virtio_pci::device_id(VIRTIO_IOMMU))
}

/// The endpoint ID of a PCI function: nestor's VIOT gives every endpoint its requester
/// ID (bus, device, function).
pub fn endpoint_id(bdf: Bdf) -> u32 {
    u32::from(bdf.bus) << 8 | u32::from(bdf.device) << 3 | u32::from(bdf.function)
}

pub struct VirtioIommu {
    pub dev: VirtioPci,
    requests: Queue,
    events: Queue,
    probe_size: u32,
    event_size: u32,
    /// Notifications this driver sent (each one exit to the VMM).
    pub kicks: u64,
}

impl VirtioIommu {
    /// Resets and drives the virtio-iommu at `bdf`, with every eventq buffer posted.
    /// There is one driver state: opening it again starts over.
    pub fn open(bdf: Bdf) -> Result<VirtioIommu, Line> {
        Self::open_with(bdf, 0)
    }

    /// Like [`VirtioIommu::open`], negotiating nestor's extension for guest-owned stage 1
    /// too: the device must offer it.
    pub fn open_nested(bdf: Bdf) -> Result<VirtioIommu, Line> {
        Self::open_with(bdf, F_NESTOR_ATTACH_TABLE)
    }

    /// Like [`VirtioIommu::open_nested`], with page requests too (32-byte records).
    pub fn open_page_requests(bdf: Bdf) -> Result<VirtioIommu, Line> {
        Self::open_with(bdf, F_NESTOR_ATTACH_TABLE | F_NESTOR_PAGE_REQUEST)
    }

    fn open_with(bdf: Bdf, extra: u64) -> Result<VirtioIommu, Line> {
        let dev = VirtioPci::open(bdf)
            .ok_or_else(|| format_line!("virtio-iommu capabilities missing"))?;
        let wanted = F_VERSION_1
            | F_INPUT_RANGE
            | F_DOMAIN_RANGE
            | F_MAP_UNMAP
            | F_PROBE
            | F_BYPASS_CONFIG
            | extra;
        let offered = dev
            .negotiate(wanted)
            .ok_or_else(|| format_line!("virtio-iommu refused FEATURES_OK"))?;
        if offered & wanted != wanted || offered & F_BYPASS != 0 {
            return Err(format_line!("virtio-iommu features ", hex(offered, 16)));
        }
        let page_sizes = u64::from(dev.device_config32(CONFIG_PAGE_SIZES))
            | u64::from(dev.device_config32(CONFIG_PAGE_SIZES + 4)) << 32;
        if page_sizes.trailing_zeros() != 12 {
            return Err(format_line!(
                "granule is not 4 KiB: mask ",
                hex(page_sizes, 16)
            ));
        }
        let probe_size = dev.device_config32(CONFIG_PROBE_SIZE);
        if !(24..=0x7fc).contains(&probe_size) {
            return Err(format_line!("probe_size ", probe_size));
        }
        // SAFETY: only this driver touches the rings, and probes run one at a time.
        let (req_ring, ev_ring) = unsafe {
            (
                &mut *core::ptr::addr_of_mut!(REQUEST_RING),
                &mut *core::ptr::addr_of_mut!(EVENT_RING),
            )
        };
        let req_addr = req_ring as *mut Ring as u64;
        let ev_addr = ev_ring as *mut Ring as u64;
        let requests = dev
            .setup_queue(0, req_ring, req_addr)
            .ok_or_else(|| format_line!("requestq"))?;
        let events = dev
            .setup_queue(1, ev_ring, ev_addr)
            .ok_or_else(|| format_line!("eventq"))?;
        dev.driver_ok();
        let mut iommu = VirtioIommu {
            dev,
            requests,
            events,
            probe_size,
            event_size: if extra & F_NESTOR_PAGE_REQUEST != 0 {
                EVENT_SIZE_PAGE_REQUESTS
            } else {
                EVENT_SIZE
            },
            kicks: 0,
        };
        iommu.post_event_buffers();
        Ok(iommu)
    }

    /// The first and last domain IDs the device accepts.
    pub fn domain_range(&self) -> (u32, u32) {
        (
            self.dev.device_config32(CONFIG_DOMAIN_START),
            self.dev.device_config32(CONFIG_DOMAIN_END),
        )
    }

    fn buffers() -> &'static mut Page {
        // SAFETY: only this driver touches the request page, one request at a time.
        unsafe { &mut *core::ptr::addr_of_mut!(REQUEST_BUFFERS) }
    }

    /// Sends one request with `writable` bytes for the device's answer; returns the
    /// status (the answer's last byte), or an error when the used length is wrong.
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
        self.kicks += 1;
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

    /// Maps `[iova, iova + len)` to `phys` in `domain`.
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

    /// PROBEs `endpoint`; returns the status and the property bytes.
    pub fn probe(&mut self, endpoint: u32) -> Result<(u8, &[u8]), Line> {
        let mut req = [0u8; 72];
        req[0] = PROBE;
        put32(&mut req, 4, endpoint);
        let status = self.request(&req, self.probe_size + 4)?;
        Ok((
            status,
            &Self::buffers().0[0x800..0x800 + self.probe_size as usize],
        ))
    }

    /// PROBEs `endpoint` and checks it reports the x86 MSI window.
    pub fn probe_msi(&mut self, endpoint: u32) -> Result<(), Line> {
        let (status, props) = self.probe(endpoint)?;
        if status != S_OK {
            return Err(format_line!("PROBE status ", status));
        }
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
        Err(format_line!("PROBE reported no MSI window"))
    }

    fn post_event_buffers(&mut self) {
        for i in 0..EVENT_BUFFERS {
            self.post_event_buffer(i);
        }
        self.events.kick();
        self.kicks += 1;
    }

    fn post_event_buffer(&mut self, i: u16) {
        // SAFETY: only this driver touches the event records page.
        let page = unsafe { &*core::ptr::addr_of!(EVENT_RECORDS) };
        let at = page.address() + u64::from(i) * 32;
        self.events.post(i, &[(at, self.event_size, true)]);
    }

    /// The next record the device returned, if any; its buffer is posted again, and
    /// [`VirtioIommu::kick_events`] tells the device.
    pub fn take_record(&mut self) -> Option<Result<FaultRecord, Line>> {
        let (id, len) = self.events.take_used()?;
        // SAFETY: only this driver touches the event records page; the device wrote the
        // record before returning the buffer.
        let page = unsafe { &*core::ptr::addr_of!(EVENT_RECORDS) };
        let rec = &page.0[id as usize * 32..id as usize * 32 + 32];
        let found = FaultRecord {
            reason: rec[0],
            flags: get32(rec, 4),
            endpoint: get32(rec, 8),
            pasid: get32(rec, 12),
            address: get64(rec, 16),
            group: get32(rec, 24),
        };
        self.post_event_buffer(id as u16);
        if len != self.event_size {
            return Some(Err(format_line!("fault record of ", len, " bytes")));
        }
        Some(Ok(found))
    }

    /// Tells the device about eventq buffers posted again.
    pub fn kick_events(&mut self) {
        self.events.kick();
        self.kicks += 1;
    }

    /// Sends two requests with one notification (INVALIDATE then PAGE_RESP, say); the
    /// device serves them in order. Returns both statuses.
    pub fn request_pair(&mut self, first: &[u8], second: &[u8]) -> Result<(u8, u8), Line> {
        let page = Self::buffers();
        page.0[..first.len()].copy_from_slice(first);
        page.0[0x400..0x400 + second.len()].copy_from_slice(second);
        page.0[0x800..0x810].fill(0xff);
        let base = page.address();
        self.requests.post(
            0,
            &[(base, first.len() as u32, false), (base + 0x800, 4, true)],
        );
        self.requests.post(
            2,
            &[
                (base + 0x400, second.len() as u32, false),
                (base + 0x808, 4, true),
            ],
        );
        self.requests.kick();
        self.kicks += 1;
        for _ in 0..2 {
            let (_, used) = self
                .requests
                .wait_used(COMPLETION_MS)
                .ok_or_else(|| format_line!("request pair never completed"))?;
            if used != 4 {
                return Err(format_line!("request pair used length ", used));
            }
        }
        Ok((page.0[0x803], page.0[0x80b]))
    }

    /// Waits for a fault record with `reason` for `endpoint`; returns its address and flags.
    pub fn wait_fault(&mut self, reason: u8, endpoint: u32) -> Result<(u64, u32), Line> {
        self.wait_record(reason, endpoint)
            .map(|r| (r.address, r.flags))
    }

    /// Waits for a fault record with `reason` for `endpoint`, skipping others.
    pub fn wait_record(&mut self, reason: u8, endpoint: u32) -> Result<FaultRecord, Line> {
        loop {
            let Some((id, len)) = self.events.wait_used(COMPLETION_MS) else {
                return Err(format_line!("no fault record with reason ", reason));
            };
            // SAFETY: as above; the device wrote the record before returning the buffer.
            let page = unsafe { &*core::ptr::addr_of!(EVENT_RECORDS) };
            let rec = &page.0[id as usize * 32..id as usize * 32 + 32];
            let found = FaultRecord {
                reason: rec[0],
                flags: get32(rec, 4),
                endpoint: get32(rec, 8),
                pasid: get32(rec, 12),
                address: get64(rec, 16),
                group: if self.event_size == EVENT_SIZE_PAGE_REQUESTS {
                    get32(rec, 24)
                } else {
                    0
                },
            };
            self.post_event_buffer(id as u16);
            self.kick_events();
            if len != self.event_size {
                return Err(format_line!("fault record of ", len, " bytes"));
            }
            if found.reason == reason && found.endpoint == endpoint {
                return Ok(found);
            }
        }
    }

    /// The `NESTOR_SMMUV3` property PROBE reports for `endpoint`: SMMU_IDR0, IDR1, IDR3
    /// and IDR5.
    pub fn smmu_id_registers(&mut self, endpoint: u32) -> Result<[u64; 4], Line> {
        let (status, props) = self.probe(endpoint)?;
        if status != S_OK {
            return Err(format_line!("PROBE status ", status));
        }
        let mut at = 0;
        while at + 4 <= props.len() {
            let kind = get16(props, at) & 0xfff;
            let len = usize::from(get16(props, at + 2));
            if kind == 0 {
                break;
            }
            if kind == PROBE_T_NESTOR_SMMUV3 && len == 52 && at + 56 <= props.len() {
                let idr = |offset| get64(props, at + offset);
                return Ok([idr(8), idr(16), idr(32), idr(48)]);
            }
            at += len + 4;
        }
        Err(format_line!("PROBE reported no NESTOR_SMMUV3 property"))
    }

    /// The config `bypass` byte: whether unattached endpoints reach memory.
    pub fn bypass(&self) -> bool {
        self.dev.device_config8(CONFIG_BYPASS) != 0
    }

    pub fn set_bypass(&self, on: bool) {
        self.dev.write_device_config8(CONFIG_BYPASS, on as u8);
    }
}

//! virtio-iommu requests through the real request path (the requestq served by
//! `serve_requests`, fault records by `deliver_faults`) and endpoint DMA through the real
//! IOTLB, checked against the reference model:
//! - every request is answered exactly once, with the status and used length the model
//!   gives, and guest memory changes only where the model's answer writes;
//! - domains, attachments and mappings match the model after every batch;
//! - an endpoint's DMA reaches exactly what the model's mappings allow, at the addresses
//!   they give, right after any request that changed them (a stale IOTLB entry fails this);
//! - fault records reach the eventq in order, once each, as the model queues them.
//!
//! In nested mode (the extension offered, the software SMMUv3 behind it) requests also
//! include ATTACH_TABLE, INVALIDATE and PAGE_RESP, checked the same way, and the fuzzer
//! writes bytes where its CD tables point. The model does not walk those tables: the DMA
//! of an endpoint in a table-mode domain (reads, at any PASID) must only not fail the
//! harness, and the fault records it raises are counted, not compared.
#![no_main]

use std::sync::Arc;

use devices::dma::{guest_physical_memory, DeviceDma, DeviceTlb, DmaMemory};
use devices::host_iommu::smmuv3::{Smmuv3, Smmuv3Caps};
use devices::virtio::iommu::config::{IommuConfig, Limits, ReservedRegion};
use devices::virtio::iommu::queues::{deliver_faults, serve_requests};
use devices::virtio::iommu::state::IommuState;
use devices::virtio::iommu::NestedBackend;
use devices::virtio::iommu::{FaultRateLimit, IommuEndpoint};
use devices::virtio::queue_server::QueueServer;
use libfuzzer_sys::fuzz_target;
use nestor_fuzz::chain_model::{read_stream, write_stream, ModelServed, QueueModel};
use nestor_fuzz::driver_queue::{DriverQueue, RawDesc, Rings, DESC_F_NEXT, DESC_F_WRITE};
use nestor_fuzz::guest::{ram, reachable, Shadow};
use nestor_fuzz::guest::{HIGH_START, LOW_END, RAM_END};
use nestor_fuzz::input::Input;
use nestor_fuzz::interrupts::CountingInterrupt;
use nestor_fuzz::iommu_model::*;
use nestor_fuzz::iommu_nested_model::{
    NestedModel, ATTACH_TABLE, FEATURE_ATTACH_TABLE, INVALIDATE, PAGE_RESP,
};
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryMmap, Permissions};

/// Endpoints of the IOMMU; `UNKNOWN` is a device id it does not translate.
const ENDPOINTS: [u32; 2] = [0x08, 0x10];
const UNKNOWN: u32 = 0x18;
const REQUEST_QUEUE_SIZE: u16 = 64;
const EVENT_QUEUE_SIZE: u16 = 16;
const MAX_PENDING_FAULTS: usize = 4;
/// Where request bytes and answer buffers of a batch go (slot `i` of at most 8).
const READABLE_AT: u64 = 0x8000;
const WRITABLE_AT: u64 = 0x1_0000;
const WRITABLE_SLOT: u64 = 0x2000;
const EVENT_BUFFERS_AT: u64 = 0x7000;
/// In the hole between the two RAM regions.
const UNREACHABLE: u64 = 0x3_0000;
/// Where the fuzzer writes CD tables and stage-1 descriptors in nested mode.
const TABLE_AREA: u64 = HIGH_START;
const TABLE_AREA_LEN: usize = 0x4000;
const MAX_BATCH: usize = 8;

struct Rig {
    ram: GuestMemoryMmap,
    state: Arc<IommuState>,
    model: IommuModel,
    own: DmaMemory,
    /// How each endpoint's device (and the unknown one) reaches memory.
    dma: Vec<(u32, DmaMemory)>,
    interrupt: CountingInterrupt,
    requests: (DriverQueue, QueueModel, QueueServer),
    events: (DriverQueue, QueueModel, QueueServer),
    /// Request chains published since the last serve.
    batch: usize,
}

/// Nested mode on (bit 0), with the extension negotiated (bit 1).
fn nested_mode(input: &mut Input) -> (bool, u64) {
    let flags = input.u8();
    let negotiated = if flags & 2 != 0 {
        FEATURE_ATTACH_TABLE
    } else {
        0
    };
    (flags & 1 != 0, negotiated)
}

fn config(input: &mut Input) -> (IommuConfig, u64) {
    let flags = input.u8();
    let mut config = IommuConfig::default();
    if flags & 1 != 0 {
        config.limits = Limits {
            max_domains: 3,
            max_mappings_per_domain: 3,
            max_total_mappings: 5,
        };
    }
    if flags & 2 != 0 {
        config.domain_range = (1, 6);
    }
    if flags & 4 != 0 {
        config.default_bypass = true;
    }
    if flags & 8 != 0 {
        config
            .reserved_regions
            .push(ReservedRegion::reserved(0x2_0000, 0x2_0fff));
    }
    if flags & 16 != 0 {
        config.input_range = (0x1000, 0xf_ffff);
    }
    let mut negotiated = FEATURE_PROBE | FEATURE_MMIO | FEATURE_BYPASS_CONFIG | 0b111;
    for (bit, feature) in [
        (32, FEATURE_PROBE),
        (64, FEATURE_MMIO),
        (128, FEATURE_BYPASS_CONFIG),
    ] {
        if flags & bit != 0 {
            negotiated &= !feature;
        }
    }
    (config, negotiated)
}

impl Rig {
    fn new(input: &mut Input) -> Self {
        let (config, mut negotiated) = config(input);
        let (nested, extension) = nested_mode(input);
        let ram = ram();
        let rate = FaultRateLimit {
            burst: u32::MAX,
            per_second: 0,
            max_pending: MAX_PENDING_FAULTS,
        };
        let state = Arc::new(IommuState::new(config.clone(), rate).expect("state"));
        let mut nested_model = None;
        if nested {
            let caps = Smmuv3Caps::default();
            let smmu = Smmuv3::new(ram.clone(), caps).expect("SMMU");
            state
                .set_nested(NestedBackend::translating(Arc::new(smmu), ram.clone()))
                .expect("nested mode set once");
            negotiated |= extension;
            nested_model = Some(NestedModel {
                idr: caps.idr(),
                ram: vec![(0, LOW_END), (HIGH_START, RAM_END)],
            });
        }
        let mut dma = Vec::new();
        for endpoint in ENDPOINTS.into_iter().chain([UNKNOWN]) {
            let tlb = DeviceTlb::new();
            if endpoint != UNKNOWN {
                state.add_endpoint(endpoint, tlb.clone());
            }
            let space = Arc::new(IommuEndpoint::new(endpoint, state.clone()));
            dma.push((
                endpoint,
                DeviceDma::translated(tlb, space).memory(ram.clone()),
            ));
        }
        let queue = |base, size| {
            let driver = DriverQueue::new(Rings::at(base, size));
            let server = QueueServer::new(driver.device_queue(), 0);
            (driver, QueueModel::new(Rings::at(base, size)), server)
        };
        let mut model = IommuModel::new(config, negotiated, &ENDPOINTS, MAX_PENDING_FAULTS);
        model.nested = nested_model;
        Self {
            own: guest_physical_memory(ram.clone()),
            model,
            requests: queue(0x1000, REQUEST_QUEUE_SIZE),
            events: queue(0x4000, EVENT_QUEUE_SIZE),
            ram,
            state,
            dma,
            interrupt: CountingInterrupt::default(),
            batch: 0,
        }
    }

    /// Publishes one chain of `(addr, len, writable)` buffers on `queue`, its descriptors
    /// from `first`.
    fn publish(
        queue: &mut DriverQueue,
        ram: &GuestMemoryMmap,
        first: u16,
        buffers: &[(u64, u32, bool)],
    ) {
        for (i, &(addr, len, writable)) in buffers.iter().enumerate() {
            let index = first + i as u16;
            let mut flags = if writable { DESC_F_WRITE } else { 0 };
            if i + 1 < buffers.len() {
                flags |= DESC_F_NEXT;
            }
            let desc = RawDesc {
                addr,
                len,
                flags,
                next: index + 1,
            };
            queue.write_desc(ram, index, desc);
        }
        queue.publish(ram, first);
    }

    fn add_request(&mut self, input: &mut Input) {
        if self.batch == MAX_BATCH {
            self.serve(usize::MAX);
        }
        let slot = self.batch as u64;
        let request = request_bytes(input);
        let shape = input.u8();
        // Drop some bytes off the end: short requests are unanswerable.
        let readable_len = request.len()
            - if shape & 1 != 0 {
                input.below(request.len() + 1)
            } else {
                0
            };
        let readable_at = READABLE_AT + slot * 0x100;
        self.ram
            .write_slice(&request, GuestAddress(readable_at))
            .unwrap();
        let mut buffers = split(
            readable_at,
            readable_len as u32,
            input.below(3),
            input,
            false,
        );
        let writable_len = match input.u8() {
            0..=99 => 4,
            100..=139 => 4 + 24 * input.below(4) as u32,
            140..=179 => input.below(8) as u32,
            _ => input.below(WRITABLE_SLOT as usize) as u32,
        };
        let writable_at = WRITABLE_AT + slot * WRITABLE_SLOT;
        buffers.extend(split(
            writable_at,
            writable_len,
            input.below(3),
            input,
            true,
        ));
        if shape & 2 != 0 {
            let victim = input.below(buffers.len());
            buffers[victim].0 = UNREACHABLE - u64::from(buffers[victim].1 / 2);
        }
        let first = (slot * 8) as u16;
        Self::publish(&mut self.requests.0, &self.ram, first, &buffers);
        self.batch += 1;
    }

    /// Serves the requestq as the device does and checks it against the model.
    fn serve(&mut self, budget: usize) {
        let mut shadow = Shadow::of(&self.ram);
        let model = &mut self.model;
        let expected = self.requests.1.serve(&mut shadow, budget, |shadow, chain| {
            let Some(chain) = chain.filter(|c| !c.unreachable) else {
                return ModelServed::Used(0);
            };
            let readable_len = chain.readable_len().min(124) as usize;
            let request = read_stream(shadow, &chain.readable, 0, readable_len);
            let writable_len = chain.writable_len();
            let Some(answer) = model.execute(&request, writable_len) else {
                return ModelServed::Used(0);
            };
            if let Some(properties) = answer.properties {
                write_stream(shadow, &chain.writable, 0, &properties);
            }
            let tail = u64::from(writable_len) - 4;
            write_stream(shadow, &chain.writable, tail, &[answer.status, 0, 0, 0]);
            ModelServed::Used(writable_len)
        });
        let interrupts = self.interrupt.queue_count();
        let left = serve_requests(
            &self.state,
            self.model.negotiated,
            &self.own,
            &mut self.requests.2,
            &self.interrupt,
            budget,
        );
        assert_eq!(left, expected.left, "requestq: chains left");
        let raised = self.interrupt.queue_count() - interrupts;
        assert_eq!(
            raised,
            usize::from(expected.completed > 0),
            "requestq: interrupts"
        );
        shadow.assert_matches(&Shadow::of(&self.ram), &[], "requestq");
        if !left {
            self.batch = 0;
        }
        self.check_state();
    }

    fn check_state(&self) {
        let domains = self.state.domains();
        for endpoint in ENDPOINTS {
            assert_eq!(
                domains.domain_of(endpoint),
                self.model.domain_of(endpoint),
                "domain of endpoint {endpoint:#x}"
            );
        }
        assert_eq!(domains.domain_count(), self.model.domain_count(), "domains");
        assert_eq!(
            domains.total_mappings(),
            self.model.total_mappings(),
            "mappings"
        );
        for domain in self.model.domain_ids() {
            assert_eq!(
                domains.mapping_count(domain),
                self.model.mapping_count(domain),
                "mappings of domain {domain}"
            );
        }
        drop(domains);
        assert_eq!(
            self.state.faults().pending(),
            self.model.pending_faults.len(),
            "pending fault records"
        );
    }

    /// One DMA of an endpoint's device: reachable exactly where the model says, landing
    /// where its mappings point.
    fn dma(&mut self, input: &mut Input) {
        let (endpoint, mem) = &self.dma[input.below(self.dma.len())];
        let endpoint = *endpoint;
        let flags = input.u8();
        let iova = if flags & 1 != 0 {
            input.u64()
        } else {
            u64::from(input.u8()) << 12 | input.below(0x1000) as u64
        };
        let len = if flags & 2 != 0 {
            input.u64().max(1)
        } else {
            1 + input.below(0x2000) as u64
        };
        let access = if flags & 4 != 0 {
            Permissions::Write
        } else {
            Permissions::Read
        };
        let pasid = (flags & 8 != 0).then(|| input.below(5) as u32);
        let mem = &mem.with_pasid(pasid);
        if self.model.is_table(endpoint) {
            self.table_dma(mem, iova, len);
            return;
        }
        let expected = self.model.translate(endpoint, pasid, iova, len, access);
        let reaches = expected
            .as_ref()
            .is_ok_and(|pieces| pieces.iter().all(|&(gpa, n)| reachable(gpa, n)));
        let checked = mem.check_range(GuestAddress(iova), len as usize, access);
        assert_eq!(
            checked, reaches,
            "endpoint {endpoint:#x}: {len:#x} bytes at IOVA {iova:#x} for {access:?}: model {expected:?}"
        );
        if reaches {
            let pieces = expected.unwrap();
            let mut shadow = Shadow::of(&self.ram);
            let mut data = vec![0u8; len as usize];
            if access == Permissions::Write {
                data.iter_mut()
                    .enumerate()
                    .for_each(|(i, b)| *b = (i as u8) ^ flags);
                mem.write_slice(&data, GuestAddress(iova))
                    .expect("a checked DMA write");
                let mut at = 0;
                for (gpa, n) in pieces {
                    shadow.write(gpa, &data[at..at + n as usize]);
                    at += n as usize;
                }
            } else {
                mem.read_slice(&mut data, GuestAddress(iova))
                    .expect("a checked DMA read");
                let mut at = 0;
                for (gpa, n) in pieces {
                    let mut want = vec![0u8; n as usize];
                    shadow.read(gpa, &mut want);
                    assert_eq!(
                        &data[at..at + n as usize],
                        &want[..],
                        "DMA read at IOVA {iova:#x}"
                    );
                    at += n as usize;
                }
            }
            shadow.assert_matches(&Shadow::of(&self.ram), &[], "DMA");
        }
        self.check_state();
    }

    /// A read through the guest's stage-1 tables: whatever it reaches, the faults it
    /// raises are queued (and counted into the model as records it cannot predict).
    fn table_dma(&mut self, mem: &DmaMemory, iova: u64, len: u64) {
        let before = self.state.faults().pending();
        let len = len.min(0x4000);
        if mem.check_range(GuestAddress(iova), len as usize, Permissions::Read) {
            let mut data = vec![0u8; len as usize];
            mem.read_slice(&mut data, GuestAddress(iova))
                .expect("a checked read through the guest's tables");
        }
        let raised = self.state.faults().pending() - before;
        for _ in 0..raised {
            self.model.pending_faults.push_back(Fault::opaque());
        }
        self.check_state();
    }

    /// Writes fuzzer bytes into the table area: CDs and descriptors for table mode.
    fn write_tables(&mut self, input: &mut Input) {
        let at = TABLE_AREA + input.below(TABLE_AREA_LEN / 8) as u64 * 8;
        let bytes = input.bytes(64);
        let room = (TABLE_AREA + TABLE_AREA_LEN as u64 - at) as usize;
        self.ram
            .write_slice(&bytes[..bytes.len().min(room)], GuestAddress(at))
            .unwrap();
    }

    /// Posts eventq buffers and delivers pending fault records into them.
    fn deliver(&mut self, input: &mut Input) {
        let count = 1 + input.below(8);
        for i in 0..count {
            let at = EVENT_BUFFERS_AT + 0x40 * i as u64;
            let buffers: Vec<(u64, u32, bool)> = match input.u8() % 6 {
                0 => vec![(at, 23, true)],
                1 => vec![(at, 16, true), (at + 0x20, 8, true)],
                2 => vec![(at, 16, true), (UNREACHABLE - 4, 8, true)],
                3 => vec![(at, 8, false), (at + 0x10, 24, true)],
                4 => vec![(at, 48, true)],
                _ => vec![(at, 24, true)],
            };
            Self::publish(&mut self.events.0, &self.ram, (i * 2) as u16, &buffers);
        }
        let mut shadow = Shadow::of(&self.ram);
        let faults = &mut self.model.pending_faults;
        // Where the SMMU's records (bytes the model cannot know) land.
        let mut opaque = Vec::new();
        let expected = self
            .events
            .1
            .serve(&mut shadow, usize::MAX, |shadow, chain| {
                let Some(&record) = faults.front() else {
                    return ModelServed::Declined;
                };
                match chain {
                    Some(c) if !c.unreachable && c.writable_len() >= 24 => {
                        if record.opaque {
                            opaque.extend(c.writable.iter().map(|s| (s.addr, u64::from(s.len))));
                        } else {
                            write_stream(shadow, &c.writable, 0, &record.to_bytes());
                        }
                        faults.pop_front();
                        ModelServed::Used(24)
                    }
                    _ => ModelServed::Used(0),
                }
            });
        let left = deliver_faults(
            &self.state,
            self.model.negotiated,
            &self.own,
            &mut self.events.2,
            &self.interrupt,
            usize::MAX,
        );
        assert_eq!(left, expected.left, "eventq: buffers left");
        shadow.assert_matches(&Shadow::of(&self.ram), &opaque, "eventq");
        self.check_state();
    }
}

/// Splits `[at, at + len)` into `pieces + 1` buffers.
fn split(
    at: u64,
    len: u32,
    pieces: usize,
    input: &mut Input,
    writable: bool,
) -> Vec<(u64, u32, bool)> {
    let mut cuts: Vec<u32> = (0..pieces)
        .map(|_| input.below(len as usize + 1) as u32)
        .collect();
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut from = 0;
    for cut in cuts.into_iter().chain([len]) {
        out.push((at + u64::from(from), cut - from, writable));
        from = cut;
    }
    out
}

fn address(input: &mut Input, raw: bool) -> u64 {
    if raw {
        input.u64()
    } else {
        u64::from(input.u8()) << 12
    }
}

/// One request's device-readable bytes, mostly well-formed with fields drawn from small
/// sets so domains fill up and mappings meet, sometimes raw.
fn request_bytes(input: &mut Input) -> Vec<u8> {
    let flags = input.u8();
    if flags & 0x80 != 0 {
        return input.bytes(80);
    }
    let kind = [
        ATTACH,
        DETACH,
        MAP,
        UNMAP,
        PROBE,
        ATTACH_TABLE,
        INVALIDATE,
        PAGE_RESP,
    ][usize::from(flags % 8)];
    let mut b = vec![kind, 0, 0, 0];
    let domain = if flags & 0x40 != 0 {
        input.u32()
    } else {
        input.below(8) as u32
    };
    let endpoint = [ENDPOINTS[0], ENDPOINTS[1], UNKNOWN, 0][input.below(4)];
    let raw = flags & 0x20 != 0;
    match kind {
        ATTACH => {
            b.extend(domain.to_le_bytes());
            b.extend(endpoint.to_le_bytes());
            b.extend(u32::from(input.u8() & 0x81).to_le_bytes());
            b.extend(u32::from(flags & 0x10).to_le_bytes());
        }
        DETACH => {
            b.extend(domain.to_le_bytes());
            b.extend(endpoint.to_le_bytes());
            b.extend((u64::from(flags & 0x10)).to_le_bytes());
        }
        MAP => {
            let start = address(input, raw);
            let end = if raw {
                input.u64()
            } else {
                start + (u64::from(input.below(4) as u8) + 1) * 0x1000 - 1
            };
            let phys = if flags & 0x10 != 0 {
                input.u64()
            } else {
                u64::from(input.below(0x40) as u8) << 12
            };
            b.extend(domain.to_le_bytes());
            b.extend(start.to_le_bytes());
            b.extend(end.to_le_bytes());
            b.extend(phys.to_le_bytes());
            b.extend(u32::from(input.u8() & 0x0b).to_le_bytes());
        }
        UNMAP => {
            let start = address(input, raw);
            let end = if raw {
                input.u64()
            } else {
                start + (u64::from(input.below(8) as u8) + 1) * 0x1000 - 1
            };
            b.extend(domain.to_le_bytes());
            b.extend(start.to_le_bytes());
            b.extend(end.to_le_bytes());
            b.extend(u32::from(flags & 0x10).to_le_bytes());
        }
        PROBE => {
            b.extend(endpoint.to_le_bytes());
            b.extend([flags & 0x10; 64]);
        }
        ATTACH_TABLE => {
            b.extend(domain.to_le_bytes());
            b.extend(endpoint.to_le_bytes());
            b.push(if flags & 0x10 != 0 { input.u8() } else { 1 });
            b.extend([0; 3]);
            let (ste0, ste1) = ste_words(input, raw);
            b.extend(ste0.to_le_bytes());
            b.extend(ste1.to_le_bytes());
            b.extend([0; 92]);
            if raw {
                let at = 13 + input.below(111);
                b[at] = input.u8();
            }
        }
        INVALIDATE => {
            b.push(if raw {
                input.u8()
            } else {
                1 + input.below(3) as u8
            });
            b.push(if raw {
                input.u8()
            } else {
                1 + input.below(7) as u8
            });
            b.extend((input.below(if raw { 0x10000 } else { 16 }) as u16).to_le_bytes());
            b.extend(domain.to_le_bytes());
            b.extend((input.below(8) as u32).to_le_bytes());
            b.extend((input.below(4) as u16).to_le_bytes());
            b.extend([0; 6]);
            b.extend(address(input, raw).to_le_bytes());
            let pages = if raw {
                input.u64()
            } else {
                input.below(4) as u64
            };
            b.extend(pages.to_le_bytes());
            b.push([12, 14, 16, input.u8()][input.below(4)]);
            b.extend([0; 19]);
        }
        _ => {
            b.extend(endpoint.to_le_bytes());
            b.extend(u32::from(input.u8() & 3).to_le_bytes());
            b.extend(input.u32().to_le_bytes());
            b.extend(input.u32().to_le_bytes());
            b.extend((input.below(4) as u16).to_le_bytes());
            b.extend([0; 6]);
        }
    }
    b
}

/// ATTACH_TABLE's STE words: mostly V with Config translate, bypass or abort and a CD
/// table in the table area, sometimes any bits.
fn ste_words(input: &mut Input, raw: bool) -> (u64, u64) {
    if raw {
        return (input.u64(), input.u64());
    }
    let config = [0b101u64, 0b101, 0b100, 0b000][input.below(4)];
    let cd_table = TABLE_AREA + input.below(TABLE_AREA_LEN / 64) as u64 * 64;
    let cd_max = [0u64, 1, 2, 21][input.below(4)];
    let s1fmt = u64::from(input.below(4) == 0);
    let ste0 = 1 | config << 1 | s1fmt << 4 | cd_table | cd_max << 59;
    // S1DSS and S1STALLD from the fuzzer; EATS 0.
    let ste1 = input.below(4) as u64 | u64::from(input.bool()) << 27;
    (ste0, ste1)
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mut rig = Rig::new(&mut input);
    while !input.is_empty() {
        match input.u8() % 9 {
            0..=2 => rig.add_request(&mut input),
            3 => {
                let budget = 1 + input.below(8);
                rig.serve(budget);
            }
            4 => rig.dma(&mut input),
            5 => {
                let on = input.bool();
                rig.state.set_bypass(on);
                rig.model.bypass = on;
            }
            6 => {
                rig.state.reset();
                rig.model.reset();
                rig.check_state();
            }
            7 => rig.deliver(&mut input),
            _ => rig.write_tables(&mut input),
        }
    }
    rig.serve(usize::MAX);
});

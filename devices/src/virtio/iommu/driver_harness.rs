//! A driver's side of the requestq and eventq, over a small guest memory: requests are
//! laid out as a driver lays them out, served by the device's own queue code, and the
//! answers read back. The device-level tests use it, and so does the rig's check of the
//! iommufd nested back-end (feature `driver-harness`). A harness that cannot set itself up
//! panics.

use std::collections::HashMap;
use std::sync::Arc;

use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::Queue;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

use crate::dma::{DeviceDma, DeviceTlb, DmaMemory};
use crate::virtio::iommu::config::IommuConfig;
use crate::virtio::iommu::endpoint::IommuEndpoint;
use crate::virtio::iommu::faults::FaultRateLimit;
use crate::virtio::iommu::protocol::{features, request_type, Status};
use crate::virtio::iommu::queues::{deliver_faults, serve_requests};
use crate::virtio::iommu::state::IommuState;
use crate::virtio::iommu::OFFERED_FEATURES;
use crate::virtio::queue_server::QueueServer;
use crate::virtio::VirtioInterrupt;

pub const ALL_FEATURES: u64 = OFFERED_FEATURES | features::VERSION_1;
pub const DISK: u32 = 0x08;
pub const RNG: u32 = 0x10;
/// Where the rig puts request bytes (readable) and answer buffers (writable).
const READABLE_AT: u64 = 0x10_000;
const WRITABLE_AT: u64 = 0x20_000;
/// Untouched writable bytes keep this value.
pub const SENTINEL: u8 = 0xa5;
pub const PAGE: u64 = 0x1000;
/// Room for a 16-entry split queue at address 0.
const QUEUE_AREA: usize = 0x1000;

pub struct Rig {
    pub mem: GuestMemoryMmap,
    pub state: Arc<IommuState>,
    pub negotiated: u64,
    /// The IOTLB of each endpoint's device, registered with the state as the VMM does.
    tlbs: HashMap<u32, Arc<DeviceTlb>>,
}

/// Interrupts go nowhere; the rig reads the used ring itself.
pub struct NoInterrupt;

impl VirtioInterrupt for NoInterrupt {
    fn notify_queue(&self, _: u16) {}
    fn notify_config(&self) {}
}

/// What came back for one request.
#[derive(Debug)]
pub struct Reply {
    pub used_len: u32,
    /// The whole writable area, as the device left it.
    pub writable: Vec<u8>,
}

impl Reply {
    pub fn status(&self) -> Option<Status> {
        assert!(self.used_len as usize >= 4, "no status: {self:?}");
        let byte = self.writable[self.used_len as usize - 4];
        STATUSES.iter().copied().find(|s| *s as u8 == byte)
    }
}

const STATUSES: [Status; 9] = [
    Status::Ok,
    Status::IoErr,
    Status::Unsupp,
    Status::DevErr,
    Status::Inval,
    Status::Range,
    Status::NoEnt,
    Status::Fault,
    Status::NoMem,
];

impl Default for Rig {
    fn default() -> Self {
        Self::new()
    }
}

impl Rig {
    pub fn new() -> Self {
        Self::with(IommuConfig::default(), FaultRateLimit::default())
    }

    pub fn with(config: IommuConfig, rate: FaultRateLimit) -> Self {
        Self::with_endpoints(config, rate, &[DISK, RNG])
    }

    /// A virtio-iommu whose endpoints are `endpoints`, as emulated devices.
    pub fn with_endpoints(config: IommuConfig, rate: FaultRateLimit, endpoints: &[u32]) -> Self {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap();
        let state = Arc::new(IommuState::new(config, rate).unwrap());
        let mut tlbs = HashMap::new();
        for &endpoint in endpoints {
            let tlb = DeviceTlb::new();
            state.add_endpoint(endpoint, tlb.clone());
            tlbs.insert(endpoint, tlb);
        }
        Self {
            mem,
            state,
            negotiated: ALL_FEATURES,
            tlbs,
        }
    }

    pub fn translator(&self, endpoint: u32) -> IommuEndpoint {
        IommuEndpoint::new(endpoint, self.state.clone())
    }

    /// How `endpoint`'s device reaches memory.
    pub fn device_dma(&self, endpoint: u32) -> DeviceDma {
        DeviceDma::translated(
            self.tlbs[&endpoint].clone(),
            Arc::new(self.translator(endpoint)),
        )
    }

    /// Memory as `endpoint`'s device sees it.
    pub fn memory(&self, endpoint: u32) -> DmaMemory {
        self.device_dma(endpoint).memory(self.mem.clone())
    }

    /// Memory as the virtio-iommu itself sees it (untranslated).
    pub fn own_memory(&self) -> DmaMemory {
        crate::dma::guest_physical_memory(self.mem.clone())
    }

    /// Sends `readable` split into descriptors of `readable_split` bytes (the last takes the
    /// rest) and a writable part made of descriptors of `writable_lens` bytes.
    pub fn send_split(
        &self,
        readable: &[u8],
        readable_split: &[u32],
        writable_lens: &[u32],
    ) -> Reply {
        let mut descs = Vec::new();
        self.mem
            .write_slice(readable, GuestAddress(READABLE_AT))
            .unwrap();
        let mut offset = 0u64;
        let mut pieces: Vec<u32> = readable_split.to_vec();
        let rest = readable.len() as u64 - pieces.iter().map(|&p| u64::from(p)).sum::<u64>();
        if rest > 0 || pieces.is_empty() {
            pieces.push(rest as u32);
        }
        for len in pieces {
            descs.push((READABLE_AT + offset, len, 0u16));
            offset += u64::from(len);
        }
        let total: u32 = writable_lens.iter().sum();
        self.mem
            .write_slice(&vec![SENTINEL; total as usize], GuestAddress(WRITABLE_AT))
            .unwrap();
        let mut offset = 0u64;
        for &len in writable_lens {
            descs.push((WRITABLE_AT + offset, len, VRING_DESC_F_WRITE as u16));
            offset += u64::from(len);
        }
        let used_len = self.run_request_chain(&descs);
        let mut writable = vec![0u8; total as usize];
        self.mem
            .read_slice(&mut writable, GuestAddress(WRITABLE_AT))
            .unwrap();
        Reply { used_len, writable }
    }

    /// Sends a request the way Linux does: one readable and one writable descriptor.
    pub fn send(&self, readable: &[u8], writable_len: u32) -> Reply {
        self.send_split(readable, &[], &[writable_len])
    }

    /// Runs one chain of raw `(addr, len, flags)` descriptors through the requestq and
    /// returns its used length.
    pub fn run_request_chain(&self, descs: &[(u64, u32, u16)]) -> u32 {
        self.run_raw_chain(&chain(descs))
    }

    /// Runs raw descriptors (linked as they say) from descriptor 0 through the requestq.
    pub fn run_raw_chain(&self, raw: &[RawDescriptor]) -> u32 {
        let mq = self.fresh_queue();
        mq.add_desc_chains(raw, 0).unwrap();
        let queue: Queue = mq.create_queue().unwrap();
        let mut server = QueueServer::new(queue, 0);
        serve_requests(
            &self.state,
            self.negotiated,
            &self.own_memory(),
            &mut server,
            &NoInterrupt,
            usize::MAX,
        );
        self.used_entry(&mq, 0).1
    }

    /// Posts eventq buffers of `lens` bytes at `at`, delivers pending faults, and returns
    /// the used entries `(id, len)` that came back.
    pub fn deliver_into(&self, at: u64, lens: &[u32]) -> Vec<(u32, u32)> {
        let mq = self.fresh_queue();
        let mut offset = 0;
        let raw: Vec<RawDescriptor> = lens
            .iter()
            .map(|&len| {
                let d = RawDescriptor::from(SplitDescriptor::new(
                    at + offset,
                    len,
                    VRING_DESC_F_WRITE as u16,
                    0,
                ));
                offset += u64::from(len);
                d
            })
            .collect();
        mq.add_desc_chains(&raw, 0).unwrap();
        self.deliver_posted(&mq)
    }

    /// Posts one eventq chain of writable `(addr, len)` buffers, delivers pending faults, and
    /// returns the used entries `(id, len)` that came back.
    pub fn deliver_into_chain(&self, buffers: &[(u64, u32)]) -> Vec<(u32, u32)> {
        let mq = self.fresh_queue();
        let descs: Vec<(u64, u32, u16)> = buffers
            .iter()
            .map(|&(addr, len)| (addr, len, VRING_DESC_F_WRITE as u16))
            .collect();
        mq.add_desc_chains(&chain(&descs), 0).unwrap();
        self.deliver_posted(&mq)
    }

    /// Delivers pending faults into the eventq buffers posted on `mq`; the used entries
    /// `(id, len)` that came back.
    fn deliver_posted(&self, mq: &MockSplitQueue<'_, GuestMemoryMmap>) -> Vec<(u32, u32)> {
        let queue: Queue = mq.create_queue().unwrap();
        let mut server = QueueServer::new(queue, 1);
        deliver_faults(
            &self.state,
            self.negotiated,
            &self.own_memory(),
            &mut server,
            &NoInterrupt,
            usize::MAX,
        );
        let used_idx: u16 = self.mem.read_obj(mq.used_addr().unchecked_add(2)).unwrap();
        (0..used_idx).map(|i| self.used_entry(mq, i)).collect()
    }

    /// A queue at guest address 0 with empty rings (the previous request's are wiped).
    fn fresh_queue(&self) -> MockSplitQueue<'_, GuestMemoryMmap> {
        self.mem
            .write_slice(&[0u8; QUEUE_AREA], GuestAddress(0))
            .unwrap();
        MockSplitQueue::new(&self.mem, 16)
    }

    fn used_entry(&self, mq: &MockSplitQueue<GuestMemoryMmap>, i: u16) -> (u32, u32) {
        let at = mq.used_addr().unchecked_add(4 + 8 * u64::from(i));
        let id: u32 = self.mem.read_obj(at).unwrap();
        let len: u32 = self.mem.read_obj(at.unchecked_add(4)).unwrap();
        (id, len)
    }

    pub fn attach(&self, domain: u32, endpoint: u32) -> Option<Status> {
        self.send(&attach(domain, endpoint, 0, 0), 4).status()
    }

    pub fn map(&self, domain: u32, start: u64, end: u64, phys: u64, flags: u32) -> Option<Status> {
        self.send(&map(domain, start, end, phys, flags), 4).status()
    }

    pub fn unmap(&self, domain: u32, start: u64, end: u64) -> Option<Status> {
        self.send(&unmap(domain, start, end, 0), 4).status()
    }
}

/// Links `(addr, len, flags)` descriptors into one chain.
fn chain(descs: &[(u64, u32, u16)]) -> Vec<RawDescriptor> {
    descs
        .iter()
        .enumerate()
        .map(|(i, &(addr, len, flags))| {
            let last = i + 1 == descs.len();
            let flags = if last {
                flags
            } else {
                flags | VRING_DESC_F_NEXT as u16
            };
            RawDescriptor::from(SplitDescriptor::new(addr, len, flags, i as u16 + 1))
        })
        .collect()
}

fn head(kind: u8) -> Vec<u8> {
    vec![kind, 0, 0, 0]
}

pub fn attach(domain: u32, endpoint: u32, flags: u32, reserved: u32) -> Vec<u8> {
    let mut b = head(request_type::ATTACH);
    for v in [domain, endpoint, flags, reserved] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b
}

pub fn detach(domain: u32, endpoint: u32, reserved: u64) -> Vec<u8> {
    let mut b = head(request_type::DETACH);
    b.extend_from_slice(&domain.to_le_bytes());
    b.extend_from_slice(&endpoint.to_le_bytes());
    b.extend_from_slice(&reserved.to_le_bytes());
    b
}

pub fn map(domain: u32, start: u64, end: u64, phys: u64, flags: u32) -> Vec<u8> {
    let mut b = head(request_type::MAP);
    b.extend_from_slice(&domain.to_le_bytes());
    for v in [start, end, phys] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&flags.to_le_bytes());
    b
}

pub fn unmap(domain: u32, start: u64, end: u64, reserved: u32) -> Vec<u8> {
    let mut b = head(request_type::UNMAP);
    b.extend_from_slice(&domain.to_le_bytes());
    for v in [start, end] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&reserved.to_le_bytes());
    b
}

/// ATTACH_TABLE's readable part, laid out from docs/virtio-iommu-nested.md 3.1: head and
/// body, 124 bytes, format ARM SMMUv3.
pub fn attach_table(domain: u32, endpoint: u32, ste0: u64, ste1: u64) -> Vec<u8> {
    let mut b = vec![0u8; 124];
    b[0] = 6;
    b[4..8].copy_from_slice(&domain.to_le_bytes());
    b[8..12].copy_from_slice(&endpoint.to_le_bytes());
    b[12] = 1;
    b[16..24].copy_from_slice(&ste0.to_le_bytes());
    b[24..32].copy_from_slice(&ste1.to_le_bytes());
    b
}

/// PAGE_RESP's readable part (3.4): `code` 0 SUCCESS, 1 INVALID, 2 FAILURE.
pub fn page_resp(endpoint: u32, pasid: Option<u32>, grpid: u32, code: u16) -> Vec<u8> {
    let mut b = vec![0u8; 28];
    b[0] = 8;
    b[4..8].copy_from_slice(&endpoint.to_le_bytes());
    b[8..12].copy_from_slice(&u32::from(pasid.is_some()).to_le_bytes());
    b[12..16].copy_from_slice(&pasid.unwrap_or(0).to_le_bytes());
    b[16..20].copy_from_slice(&grpid.to_le_bytes());
    b[20..22].copy_from_slice(&code.to_le_bytes());
    b
}

pub fn probe(endpoint: u32) -> Vec<u8> {
    let mut b = head(request_type::PROBE);
    b.extend_from_slice(&endpoint.to_le_bytes());
    b.extend_from_slice(&[0u8; 64]);
    b
}

/// INVALIDATE's readable part (3.2), 60 bytes: `scope`, `caches` and `flags` as
/// [`scope`](crate::virtio::iommu::nested_protocol::scope),
/// [`caches`](crate::virtio::iommu::nested_protocol::caches) and
/// [`invalidate_flags`](crate::virtio::iommu::nested_protocol::invalidate_flags) name them.
pub fn invalidate(domain: u32, scope: u8, caches: u8, flags: u16, pasid: u32) -> Vec<u8> {
    let mut b = vec![0u8; 60];
    b[0] = 7;
    b[4] = scope;
    b[5] = caches;
    b[6..8].copy_from_slice(&flags.to_le_bytes());
    b[8..12].copy_from_slice(&domain.to_le_bytes());
    b[12..16].copy_from_slice(&pasid.to_le_bytes());
    b
}

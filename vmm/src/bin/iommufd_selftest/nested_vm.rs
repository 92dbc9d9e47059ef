//! A virtio-iommu in nested mode over iommufd's nested objects on the test driver, as a
//! VM would have it: the driver-side harness's guest RAM mapped in an IOAS, a vIOMMU over
//! a nest parent on it with a fault queue and a vEVENTQ, and mock devices as endpoints.
//! Every kernel object id is remembered, and [`NestedVm::finish`] proves them released.

use std::sync::{Arc, Mutex};

use devices::fault_relay::{FaultRelayState, GroupLimits};
use devices::host_iommu::iommufd_nested::{IommufdNested, KernelIommufd};
use devices::host_iommu::iommufd_selftest::{
    self as selftest, MockDevice, MockEndpoint, SelftestFormat,
};
use devices::host_iommu::nested::{
    Command, FaultNotifiers, InvalidateError, NestedError, NestedEvent, NestedHostIommu,
    PageRequest, PageResponseCode,
};
use devices::host_iommu::{DmaAccess, GuestRam, HostIommu, IommufdIoasIommu};
use devices::virtio::iommu::driver_harness::Rig;
use devices::virtio::iommu::nested_protocol::features;
use devices::virtio::iommu::protocol::Status;
use devices::virtio::iommu::{FaultRateLimit, IommuConfig, NestedBackend};
use iommufd_bindings::iommufd::iommu_ioas_alloc;
use iommufd_ioctls::{IommuFd, IommufdError};

use crate::err;

/// Guest StreamIDs (= virtio-iommu endpoint IDs): A and B have vDEVICEs, C is an
/// endpoint of the virtio-iommu the host knows nothing about.
pub const SID_A: u32 = 0x10;
pub const SID_B: u32 = 0x18;
pub const SID_C: u32 = 0x20;
/// Where the harness's guest RAM sits in the IOAS: the mock IOMMU's aperture starts there.
const RAM_IOVA: u64 = 1 << 24;
/// The harness's guest RAM: 16 MiB from guest-physical 0.
const RAM_SIZE: u64 = 0x100_0000;

pub type Nested = IommufdNested<SelftestFormat, KernelIommufd>;

/// The nested back-end, with every page response's outcome and every page request's
/// cookie kept for the checks.
#[derive(Debug)]
pub struct Recorded {
    inner: Arc<Nested>,
    pub cookies: Mutex<Vec<u32>>,
    pub answers: Mutex<Vec<Result<(), String>>>,
}

impl NestedHostIommu for Recorded {
    fn hw_info(&self) -> [u32; 6] {
        self.inner.hw_info()
    }
    fn translates_in_hardware(&self, stream: u32) -> bool {
        self.inner.translates_in_hardware(stream)
    }
    fn install_ste(&self, stream: u32, vste: [u64; 2]) -> Result<(), NestedError> {
        NestedHostIommu::install_ste(&*self.inner, stream, vste)
    }
    fn remove_ste(&self, stream: u32) -> Result<(), NestedError> {
        NestedHostIommu::remove_ste(&*self.inner, stream)
    }
    fn invalidate(&self, commands: &[Command]) -> Result<(), InvalidateError> {
        NestedHostIommu::invalidate(&*self.inner, commands)
    }
    fn fault_notifiers(&self) -> FaultNotifiers<'_> {
        self.inner.fault_notifiers()
    }
    fn read_events(&self, max: usize) -> Result<Vec<NestedEvent>, NestedError> {
        self.inner.read_events(max)
    }
    fn read_page_requests(&self, max: usize) -> Result<Vec<PageRequest>, NestedError> {
        let requests = self.inner.read_page_requests(max)?;
        let mut cookies = self.cookies.lock().unwrap();
        cookies.extend(requests.iter().filter(|r| r.last).map(|r| r.cookie));
        Ok(requests)
    }
    fn page_response(&self, cookie: u32, code: PageResponseCode) -> Result<(), NestedError> {
        let result = self.inner.page_response(cookie, code);
        let outcome = result.as_ref().map(|_| ()).map_err(|e| e.to_string());
        self.answers.lock().unwrap().push(outcome);
        result
    }
}

/// Every object id seen, to prove them all released at the end.
#[derive(Default)]
pub struct Seen(Vec<u32>);

impl Seen {
    pub fn add(&mut self, ids: impl IntoIterator<Item = u32>) {
        for id in ids {
            if id != 0 && !self.0.contains(&id) {
                self.0.push(id);
            }
        }
    }
}

pub struct NestedVm {
    pub iommufd: Arc<IommuFd>,
    pub rig: Rig,
    pub nested: Arc<Nested>,
    pub host: Arc<Recorded>,
    /// The fault relay's state, when page requests reach the guest.
    pub relay: Option<Arc<FaultRelayState>>,
    pub a: MockDevice,
    pub b: MockDevice,
    outsider: MockEndpoint,
    ioas: IommufdIoasIommu,
    pub seen: Seen,
}

impl NestedVm {
    /// `vevent_depth`: the vEVENTQ's depth; `relay`: page requests and PAGE_RESP through
    /// the fault relay with these limits.
    pub fn new(vevent_depth: u32, relay: Option<GroupLimits>) -> Result<Self, String> {
        let iommufd =
            Arc::new(IommuFd::new().map_err(|e| err("open /dev/iommu", format!("{e:?}")))?);
        let mut seen = Seen::default();
        let mut rig = Rig::with_endpoints(
            IommuConfig::default(),
            FaultRateLimit::default(),
            &[SID_A, SID_B, SID_C],
        );
        let ioas =
            IommufdIoasIommu::new(iommufd.clone()).map_err(|e| err("IOMMU_IOAS_ALLOC", e))?;
        let ioas_id = ioas.ioas().id();
        seen.add([ioas_id]);
        let ram = rig
            .mem
            .host_address(0, RAM_SIZE)
            .ok_or("the harness's guest RAM is not one mapping")?;
        // SAFETY: the harness's guest memory outlives the IOAS (`finish` drops the IOAS
        // first), and the mock devices never access it.
        unsafe { ioas.map(RAM_IOVA, ram, RAM_SIZE, DmaAccess::READ_WRITE) }
            .map_err(|e| err("IOMMU_IOAS_MAP of guest RAM", e))?;
        let mock = |what| {
            selftest::mock_device(&iommufd, ioas_id)
                .map(|d| MockEndpoint::new(iommufd.clone(), d))
                .map_err(|e| err(what, e))
        };
        let (a, b, outsider) = (
            mock("MOCK_DOMAIN a")?,
            mock("MOCK_DOMAIN b")?,
            mock("MOCK_DOMAIN c")?,
        );
        for d in [a.device, b.device, outsider.device] {
            seen.add([d.stdev_id, d.idev_id, d.hwpt_id]);
        }
        let (dev_a, dev_b) = (a.device, b.device);
        let nested =
            IommufdNested::new(SelftestFormat, KernelIommufd(iommufd.clone()), &a, ioas_id)
                .and_then(|n| n.with_page_requests())
                .and_then(|n| n.with_events(vevent_depth))
                .map_err(|e| e.to_string())?;
        seen.add([nested.parent_id(), nested.viommu_id()]);
        seen.add(nested.fault_id().into_iter().chain(nested.veventq_id()));
        for (sid, device) in [(SID_A, a), (SID_B, b)] {
            nested
                .add_endpoint(sid, Box::new(device))
                .map_err(|e| e.to_string())?;
            seen.add(nested.endpoint_objects(sid).map(|(vdevice, _)| vdevice));
        }
        let nested = Arc::new(nested);
        let host = Arc::new(Recorded {
            inner: nested.clone(),
            cookies: Mutex::default(),
            answers: Mutex::default(),
        });
        let mut backend = NestedBackend::host_only(host.clone(), rig.mem.clone());
        rig.negotiated |= features::ATTACH_TABLE;
        let relay = relay.map(|limits| FaultRelayState::new(host.clone(), limits));
        if let Some(relay) = &relay {
            backend = backend.with_fault_relay(relay.clone());
            rig.negotiated |= features::PAGE_REQUEST;
        }
        rig.state
            .set_nested(backend)
            .map_err(|_| "the virtio-iommu already has a nested back-end".to_string())?;
        Ok(Self {
            iommufd,
            rig,
            nested,
            host,
            relay,
            a: dev_a,
            b: dev_b,
            outsider,
            ioas,
            seen,
        })
    }

    /// Sends a request through the requestq; its status.
    pub fn send(&self, request: &[u8]) -> Option<Status> {
        self.rig.send(request, 4).status()
    }

    /// The nested HWPT the guest StreamID is attached to (remembered for the end).
    pub fn hwpt_of(&mut self, sid: u32) -> Result<u32, String> {
        match self.nested.endpoint_objects(sid) {
            Some((vdevice, Some(hwpt))) => {
                self.seen.add([vdevice, hwpt]);
                Ok(hwpt)
            }
            other => Err(format!(
                "stream {sid:#x}: objects {other:?}, want a nested HWPT"
            )),
        }
    }

    /// Tears the VM down as nestor does (the virtio-iommu, then the nested objects, then
    /// the IOAS) and checks that the kernel holds none of the objects any more.
    pub fn finish(self) -> Result<(), String> {
        let Self {
            iommufd,
            rig,
            nested,
            host,
            relay,
            outsider,
            ioas,
            seen,
            ..
        } = self;
        // The IOAS pins the harness's guest RAM: the RAM stays until the IOAS is gone.
        let ram = rig.mem.clone();
        drop((rig, relay, host, outsider));
        match Arc::try_unwrap(nested) {
            Ok(nested) => drop(nested),
            Err(_) => return Err("the nested back-end is still held after the VM is gone".into()),
        }
        drop(ioas);
        drop(ram);
        released(&iommufd, &seen)
    }
}

pub fn expect(what: &str, got: Option<Status>, want: Status) -> Result<(), String> {
    if got == Some(want) {
        Ok(())
    } else {
        Err(format!("{what}: status {got:?}, want {want:?}"))
    }
}

/// Whether the kernel knows no object `id` (destroying a live one is a leak found).
pub fn is_gone(iommufd: &IommuFd, id: u32) -> Result<bool, String> {
    match iommufd.destroy_iommu_object(id) {
        Ok(()) => Ok(false),
        Err(IommufdError::IommuDestroy(e)) if e.errno() == libc::ENOENT => Ok(true),
        Err(e) => Err(format!("IOMMU_DESTROY {id}: {e:?}")),
    }
}

/// Every object is gone: each id seen is unknown to the kernel, and the next object
/// allocated gets the first id there is.
fn released(iommufd: &IommuFd, seen: &Seen) -> Result<(), String> {
    for &id in &seen.0 {
        if !is_gone(iommufd, id)? {
            return Err(format!("object {id} was still alive at the end"));
        }
    }
    let mut ioas = iommu_ioas_alloc {
        size: std::mem::size_of::<iommu_ioas_alloc>() as u32,
        ..Default::default()
    };
    iommufd
        .alloc_iommu_ioas(&mut ioas)
        .map_err(|e| err("IOAS_ALLOC", format!("{e:?}")))?;
    let _ = iommufd.destroy_iommu_object(ioas.out_ioas_id);
    if ioas.out_ioas_id != 1 {
        return Err(format!(
            "a new object got id {}: an id before it is still taken",
            ioas.out_ioas_id
        ));
    }
    Ok(())
}

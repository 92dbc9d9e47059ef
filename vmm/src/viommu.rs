//! The virtio-iommu as the VMM sets it up: the `--viommu` and `iommu=on|off` options, the
//! device (reserving the guest memory map's reserved ranges as IOVAs), the endpoints of the
//! devices behind it, and the VIOT table that tells the guest which those are.
//!
//! `--viommu` creates the device even without endpoints; any `iommu=on` device creates it
//! implicitly. `bypass=` sets the initial config `bypass` byte: off by default, so an
//! endpoint the guest never attached cannot reach memory. A guest without a virtio-iommu
//! driver needs `--viommu bypass=on` to use `iommu=on` devices.

use arch::acpi::{OEM_ID, OEM_REVISION, OEM_TABLE_ID};
use arch::memory_map::{memory_map, MemoryType};
use devices::fault_relay::{FaultRelay, FaultRelayState, GroupLimits};
use devices::virtio::iommu::page_requests::GuestEventq;
use devices::virtio::ThreadSetupHook;
use std::sync::Arc;
use std::time::Duration;

use devices::dma::DeviceDma;
use devices::host_iommu::nested::NestedHostIommu;
use devices::host_iommu::smmuv3::{Smmuv3, Smmuv3Caps};
use devices::host_iommu::{GuestRam, HostIommu, HostIommuError};
use devices::pci::Bdf;
use devices::pri::{PageResponseRouter, PriLink};
use devices::virtio::iommu::state::IommuState;
use devices::virtio::iommu::viot::{build_viot, endpoint_id};
use devices::virtio::iommu::{
    common_iova_ranges, FaultCounters, HostEndpoints, Iommu, IommuConfig, NestedBackend,
    RequestCounts,
};
use devices::virtio::{VirtioDevice, WorkerSpec};
use vm_memory::GuestMemoryMmap;

/// What `--viommu` asked for; in a config file `{"bypass": BOOL, "page-response-timeout":
/// MS}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViommuOptions {
    #[serde(default)]
    pub bypass: bool,
    /// Milliseconds the guest has to answer a page request (nested mode) before the device
    /// is told it failed.
    #[serde(
        default = "default_page_response_timeout",
        rename = "page-response-timeout"
    )]
    pub page_response_timeout_ms: u64,
}

/// Long enough for a guest to fault a page in from disk, short enough that a device does
/// not hang on a guest that ignores it.
pub const DEFAULT_PAGE_RESPONSE_TIMEOUT_MS: u64 = 5000;
/// At most ten minutes.
const MAX_PAGE_RESPONSE_TIMEOUT_MS: u64 = 600_000;

fn default_page_response_timeout() -> u64 {
    DEFAULT_PAGE_RESPONSE_TIMEOUT_MS
}

impl Default for ViommuOptions {
    fn default() -> Self {
        Self {
            bypass: false,
            page_response_timeout_ms: DEFAULT_PAGE_RESPONSE_TIMEOUT_MS,
        }
    }
}

impl ViommuOptions {
    /// `--viommu` alone (empty value), or `--viommu bypass=on|off,page-response-timeout=MS`.
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut options = Self::default();
        for item in value.split(',').filter(|s| !s.is_empty()) {
            match item.split_once('=') {
                Some(("bypass", v)) => options.bypass = parse_on_off(v)?,
                Some(("page-response-timeout", v)) => {
                    options.page_response_timeout_ms = parse_timeout_ms(v)?
                }
                _ => {
                    return Err(format!(
                        "unknown --viommu option '{item}' (want bypass=on|off or page-response-timeout=MS)"
                    ))
                }
            }
        }
        Ok(options)
    }

    /// Refuses what `parse` would (a config file's value).
    pub fn check(&self) -> Result<(), String> {
        parse_timeout_ms(&self.page_response_timeout_ms.to_string()).map(|_| ())
    }

    fn group_limits(&self) -> GroupLimits {
        GroupLimits {
            answer_within: Duration::from_millis(self.page_response_timeout_ms),
            ..GroupLimits::default()
        }
    }
}

fn parse_timeout_ms(value: &str) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(ms) if (1..=MAX_PAGE_RESPONSE_TIMEOUT_MS).contains(&ms) => Ok(ms),
        _ => Err(format!(
            "page-response-timeout '{value}' is not a number of milliseconds from 1 to {MAX_PAGE_RESPONSE_TIMEOUT_MS}"
        )),
    }
}

/// `on` or `off`, as in `iommu=on`.
pub fn parse_on_off(value: &str) -> Result<bool, String> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("'{value}' is neither on nor off")),
    }
}

/// IOVA ranges the guest must not map: the memory map's reserved areas (the MSI window is
/// always reserved by the device itself).
fn reserved_ranges(memory_size: u64) -> Vec<(u64, u64)> {
    memory_map(memory_size)
        .into_iter()
        .filter(|e| e.kind == MemoryType::Reserved && e.size > 0)
        .map(|e| (e.addr, e.addr + e.size - 1))
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum ViommuError {
    #[error("virtio-iommu: {0}")]
    Io(#[from] std::io::Error),
    #[error("virtio-iommu: {0}")]
    Host(#[from] HostIommuError),
    #[error("virtio-iommu: the passthrough devices' host IOMMUs have no IOVA in common with the guest's input range")]
    NoHostIova,
}

/// The virtio-iommu while the VM is being built.
pub struct ViommuBuilder {
    iommu: Iommu,
    endpoints: Vec<Bdf>,
    /// The passthrough devices behind it, whose host IOMMUs its domains fill.
    host: HostEndpoints,
    /// Nested mode: the fault relay between the back-end and the guest.
    fault_relay: Option<Arc<FaultRelayState>>,
    /// Nested mode: the software SMMUv3, which takes emulated devices' page requests, and
    /// where its PRI_RESPs go.
    page_requests: Option<(Arc<Smmuv3<GuestMemoryMmap>>, Arc<PageResponseRouter>)>,
    group_limits: GroupLimits,
    /// Nested mode for passed-through devices, set once all endpoints are known.
    nested_passthrough: Option<NestedBackend>,
}

impl ViommuBuilder {
    /// `host_iommus` are the address spaces of the passthrough devices that will be put
    /// behind it: the guest may map only IOVAs all of them translate.
    pub fn new(
        options: ViommuOptions,
        memory_size: u64,
        host_iommus: &[Arc<dyn HostIommu>],
        ram: Arc<dyn GuestRam>,
        worker: WorkerSpec,
    ) -> Result<Self, ViommuError> {
        let mut config = IommuConfig {
            default_bypass: options.bypass,
            ..IommuConfig::with_reserved(reserved_ranges(memory_size))
        };
        if let Some(ranges) = common_iova_ranges(host_iommus)? {
            config
                .narrow_to_host(&ranges)
                .map_err(|_| ViommuError::NoHostIova)?;
        }
        Ok(Self {
            iommu: Iommu::new(config, worker)?,
            endpoints: Vec::new(),
            host: HostEndpoints::new(ram),
            fault_relay: None,
            page_requests: None,
            group_limits: options.group_limits(),
            nested_passthrough: None,
        })
    }

    /// Puts the device at `bdf` behind the IOMMU; its transport translates with the result.
    pub fn add_endpoint(&mut self, bdf: Bdf) -> DeviceDma {
        self.endpoints.push(bdf);
        self.iommu.add_endpoint(endpoint_id(bdf))
    }

    /// Puts the passthrough device at `bdf`, whose DMA goes through `iommu` (one of those
    /// given to `new`), behind the IOMMU: its domain's mappings become host mappings.
    pub fn add_host_endpoint(&mut self, bdf: Bdf, iommu: Arc<dyn HostIommu>) {
        self.endpoints.push(bdf);
        self.host.add(endpoint_id(bdf), iommu);
    }

    /// Puts the passed-through device at `bdf` behind the IOMMU as an endpoint of the nested
    /// back-end (see [`Self::enable_nested_passthrough`]): its host SMMU translates it,
    /// through the guest's tables or as bypass or abort.
    pub fn add_nested_host_endpoint(&mut self, bdf: Bdf) {
        self.endpoints.push(bdf);
        // Its DMA never passes the seam: the translation handle is of no use.
        drop(self.iommu.add_endpoint(endpoint_id(bdf)));
    }

    /// Nested mode for passed-through devices: table-mode domains served by their host
    /// SMMU through iommufd's nested objects (`host`), its events relayed to the guest.
    pub fn enable_nested_passthrough(
        &mut self,
        host: Arc<dyn NestedHostIommu>,
        ram: GuestMemoryMmap,
    ) {
        let relay = FaultRelayState::new(host.clone(), self.group_limits);
        self.nested_passthrough =
            Some(NestedBackend::host_only(host, ram).with_fault_relay(relay.clone()));
        self.fault_relay = Some(relay);
    }

    /// Nested mode: table-mode domains translated through the guest's stage-1 tables by the
    /// software SMMUv3 (stage 2 bypassed: the guest's IPAs are its physical addresses), its
    /// page requests and events relayed to the guest (PAGE_REQUEST offered).
    pub fn enable_nested(&mut self, ram: GuestMemoryMmap) -> Result<(), ViommuError> {
        if self.iommu.state().nested().is_some() {
            return Ok(());
        }
        let router = PageResponseRouter::new();
        let model = Arc::new(
            Smmuv3::new(ram.clone(), Smmuv3Caps::default())?.with_notifier(router.clone()),
        );
        let relay = FaultRelayState::new(model.clone(), self.group_limits);
        let backend =
            NestedBackend::translating(model.clone(), ram).with_fault_relay(relay.clone());
        // Set nowhere else, and checked just above.
        let _ = self.iommu.state().set_nested(backend);
        self.fault_relay = Some(relay);
        self.page_requests = Some((model, router));
        Ok(())
    }

    /// In nested mode, how the emulated device at `bdf` sends page requests to the SMMU
    /// and hears its responses. It waits for one a second past the relay's own deadline,
    /// by which the relay has answered for a guest that did not.
    pub fn page_request_link(&self, bdf: Bdf) -> Option<PriLink> {
        let (model, router) = self.page_requests.as_ref()?;
        let stream = endpoint_id(bdf);
        Some(PriLink {
            port: model.clone(),
            stream,
            responses: router.attach(stream),
            wait_limit: self.group_limits.answer_within + Duration::from_secs(1),
        })
    }

    /// Starts the fault relay thread in nested mode; `setup` installs its seccomp filter.
    pub fn start_fault_relay(&self, setup: ThreadSetupHook) -> std::io::Result<Option<FaultRelay>> {
        let Some(relay) = &self.fault_relay else {
            return Ok(None);
        };
        let guest = Arc::new(GuestEventq(self.iommu.state().clone()));
        FaultRelay::start(relay.clone(), guest, setup).map(Some)
    }

    /// Where the device's fault counters can be read while it runs.
    pub fn counter_source(&self) -> IommuCounterSource {
        IommuCounterSource(self.iommu.state().clone())
    }

    /// The device for the transport, and the VIOT for `AcpiConfig::extra_tables`.
    pub fn finish(self, iommu_bdf: Bdf) -> (Box<dyn VirtioDevice>, Vec<u8>) {
        if self.host.endpoints().next().is_some() {
            // Set nowhere else: the cell is empty.
            let _ = self.iommu.state().set_host_endpoints(self.host);
        }
        if let Some(nested) = self.nested_passthrough {
            // Passthrough nesting is refused next to the emulated kind: the cell is empty.
            // Its devices leave the nest parent for the route the config byte gives them.
            let _ = self.iommu.state().set_nested(nested);
        }
        let viot = build_viot(
            OEM_ID,
            OEM_TABLE_ID,
            OEM_REVISION,
            iommu_bdf,
            &self.endpoints,
        );
        (Box::new(self.iommu), viot)
    }
}

/// The virtio-iommu's counters, read from outside the device (the API).
#[derive(Clone)]
pub struct IommuCounterSource(Arc<IommuState>);

impl IommuCounterSource {
    /// Fault records reported, delivered, rate-limited and overflowed.
    pub fn faults(&self) -> FaultCounters {
        self.0.faults().counters()
    }

    /// Requests by type and status.
    pub fn requests(&self) -> RequestCounts {
        self.0.request_counters.snapshot()
    }

    /// Each domain and its mappings. Takes the domain locks for reading, which a huge
    /// UNMAP releases between chunks, so this waits at most for one chunk.
    pub fn mappings(&self) -> Vec<(u32, usize)> {
        self.0.domains().mapping_counts()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Permissions;

    #[test]
    fn viommu_options() {
        assert_eq!(ViommuOptions::parse(""), Ok(ViommuOptions::default()));
        assert_eq!(
            ViommuOptions::parse("bypass=on"),
            Ok(ViommuOptions {
                bypass: true,
                ..ViommuOptions::default()
            })
        );
        assert_eq!(
            ViommuOptions::parse("page-response-timeout=250,bypass=off"),
            Ok(ViommuOptions {
                bypass: false,
                page_response_timeout_ms: 250
            })
        );
        for bad in ["0", "600001", "1s", ""] {
            assert!(
                ViommuOptions::parse(&format!("page-response-timeout={bad}")).is_err(),
                "{bad}"
            );
        }
        assert!(ViommuOptions::parse("bypass=maybe").is_err());
        assert!(ViommuOptions::parse("colour=blue").is_err());
        assert_eq!(parse_on_off("off"), Ok(false));
    }

    #[test]
    fn reserved_ranges_come_from_the_memory_map() {
        assert_eq!(reserved_ranges(256 << 20), vec![(0x9_fc00, 0xf_ffff)]);
    }

    #[test]
    fn endpoints_translate_and_appear_in_the_viot() {
        let options = ViommuOptions {
            bypass: true,
            ..ViommuOptions::default()
        };
        let ram = Arc::new(
            vm_memory::GuestMemoryMmap::from_ranges(&[(vm_memory::GuestAddress(0), 0x10000)])
                .unwrap(),
        );
        let mut builder =
            ViommuBuilder::new(options, 256 << 20, &[], ram, WorkerSpec::unconfined("t")).unwrap();
        let disk = builder.add_endpoint(Bdf::new(0, 2, 0));
        assert!(disk.is_translated());
        let ram = vm_memory::GuestMemoryMmap::from_ranges(&[(vm_memory::GuestAddress(0), 0x10000)])
            .unwrap();
        assert!(
            vm_memory::GuestMemory::check_range(
                &disk.memory(ram),
                vm_memory::GuestAddress(0x1000),
                8,
                Permissions::Read
            ),
            "bypass"
        );
        let (device, viot) = builder.finish(Bdf::new(0, 3, 0));
        assert_eq!(device.device_type(), 23);
        assert_eq!(&viot[0..4], b"VIOT");
        assert_eq!(viot.len(), 48 + 16 + 24);
        let mut config = [0u8; 40];
        device.read_config(0, &mut config);
        assert_eq!(u32::from_le_bytes(config[32..36].try_into().unwrap()), 48);
    }
}

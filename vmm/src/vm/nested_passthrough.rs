//! Passed-through devices whose stage 1 is the guest's (`--vfio ...,iommu=on,nested=`) on
//! a host whose IOMMU can nest: one iommufd nested back-end over the host's SMMUv3. Its
//! nest parent maps all guest RAM (IPA = GPA) in an IOAS of its own, its vIOMMU is
//! allocated for the first such device, each device gets a vDEVICE with its guest
//! StreamID (its endpoint ID in the VIOT), and its unrecoverable events come from a
//! vEVENTQ. No fault queue: Linux's SMMUv3 reports no page requests through iommufd.

use std::sync::Arc;

use devices::host_iommu::iommufd_nested::{
    IommufdNested, KernelIommufd, NestedSetupError, VfioCdevEndpoint,
};
use devices::host_iommu::iommufd_nesting::NestingCapable;
use devices::host_iommu::iommufd_smmuv3::Smmuv3Format;
use devices::host_iommu::nested::{
    Command, FaultNotifiers, InvalidateError, NestedError, NestedEvent, NestedHostIommu,
    PageRequest, PageResponseCode,
};
use devices::host_iommu::IommufdIoasIommu;
use devices::vfio::map_guest_ram;
use iommufd_ioctls::IommuFd;
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// vEVENTQ depth: events the kernel holds before it reports a loss.
const EVENT_QUEUE_DEPTH: u32 = 64;

/// The nested back-end of the VM's passed-through devices. Fields drop in order: the
/// nested objects (vDEVICEs, vEVENTQ, vIOMMU, nest parent) before the IOAS they hold.
#[derive(Debug)]
pub struct NestedPassthrough {
    nested: IommufdNested<Smmuv3Format, KernelIommufd>,
    _ioas: IommufdIoasIommu,
}

impl NestedPassthrough {
    /// An IOAS holding all of `mem`, a nest parent on it and a vIOMMU, allocated for
    /// `first` (a device on the host SMMU the others must share).
    pub fn new(
        iommufd: &Arc<IommuFd>,
        first: &VfioCdevEndpoint,
        host: &NestingCapable,
        mem: &GuestMemoryMmap,
    ) -> Result<Self, String> {
        let ioas = IommufdIoasIommu::new(iommufd.clone())
            .map_err(|e| format!("IOMMU_IOAS_ALLOC for the nest parent failed: {e}"))?;
        map_guest_ram(&ioas, mem)
            .map_err(|e| format!("cannot map guest RAM for the nest parent: {e}"))?;
        let ram_end = mem.iter().map(|r| r.last_addr().0 + 1).max().unwrap_or(0);
        let format = Smmuv3Format::for_host(&host.info, ram_end);
        let mut nested = IommufdNested::new(
            format,
            KernelIommufd(iommufd.clone()),
            first,
            ioas.ioas().id(),
        )
        .map_err(|e| e.to_string())?;
        if let Err(e) = nested.add_events(EVENT_QUEUE_DEPTH) {
            log::warn!(
                "nested passthrough: no events reach the guest: {e} (Linux 6.15 has vEVENTQs)"
            );
        }
        Ok(Self {
            nested,
            _ioas: ioas,
        })
    }

    /// Gives the device the guest StreamID `stream` (a vDEVICE); the kernel refuses a
    /// device behind another host SMMU than the vIOMMU's.
    pub fn add_endpoint(
        &self,
        stream: u32,
        device: VfioCdevEndpoint,
    ) -> Result<(), NestedSetupError> {
        self.nested.add_endpoint(stream, Box::new(device))
    }
}

impl NestedHostIommu for NestedPassthrough {
    fn hw_info(&self) -> [u32; 6] {
        self.nested.hw_info()
    }
    fn translates_in_hardware(&self, stream: u32) -> bool {
        self.nested.translates_in_hardware(stream)
    }
    fn install_ste(&self, stream: u32, vste: [u64; 2]) -> Result<(), NestedError> {
        NestedHostIommu::install_ste(&self.nested, stream, vste)
    }
    fn remove_ste(&self, stream: u32) -> Result<(), NestedError> {
        NestedHostIommu::remove_ste(&self.nested, stream)
    }
    fn invalidate(&self, commands: &[Command]) -> Result<(), InvalidateError> {
        NestedHostIommu::invalidate(&self.nested, commands)
    }
    fn fault_notifiers(&self) -> FaultNotifiers<'_> {
        self.nested.fault_notifiers()
    }
    fn read_events(&self, max: usize) -> Result<Vec<NestedEvent>, NestedError> {
        self.nested.read_events(max)
    }
    fn read_page_requests(&self, max: usize) -> Result<Vec<PageRequest>, NestedError> {
        self.nested.read_page_requests(max)
    }
    fn page_response(&self, cookie: u32, code: PageResponseCode) -> Result<(), NestedError> {
        self.nested.page_response(cookie, code)
    }
}

//! The PCI bus and the virtio devices on it: host bridge, CF8/CFC and ECAM access, one
//! virtio-pci function per device, the virtio-iommu when anything is behind it, and the
//! ACPI tables that describe them (MCFG, VIOT).
//!
//! Device numbers follow the command line: the disks in the order given, then the rng,
//! the console, the passthrough devices in the order given, the DMA engine, and last the
//! virtio-iommu.

use std::fs::File;
use std::io::{self, IsTerminal, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};

use arch::acpi::{build_mcfg, PciRootDescription};
use arch::layout::{bar_exclusions, PCI_ECAM_START, PCI_MMIO32_SIZE, PCI_MMIO32_START};
use devices::dma::DeviceDma;
use devices::dma_engine::registers::{BAR_SIZE as DMA_ENGINE_BAR_SIZE, MSIX_VECTORS};
use devices::dma_engine::DmaEngine;
use devices::host_iommu::HostIommu;
use devices::interrupt::MsiInterruptManager;
use devices::io_counters::IoCounters;
use devices::pci::config_io::{CONFIG_ADDRESS_PORT, CONFIG_DATA_LEN, CONFIG_DATA_PORT};
use devices::pci::ecam::ECAM_SIZE;
use devices::pci::{
    BarAllocator, Bdf, IoEventRegistry, PciConfigIo, PciEcam, PciRoot, SharedMsix, LAST_BUS,
};
use devices::pri::PriLink;
use devices::vfio::{HostVfioDevice, VfioPciFunction};
use devices::virtio::block::Block;
use devices::virtio::console::Console;
use devices::virtio::pci::{VirtioPciDevice, VIRTIO_PCI_BAR_SIZE};
use devices::virtio::rng::Rng;
use devices::virtio::{ThreadSetupHook, VirtioDevice, WorkerSpec};
use devices::{Bus, PendingThread, VmControl};
use vm_memory::GuestMemoryMmap;

use super::error::VmmError;
use super::output::GuestOutputs;
use super::passthrough::{nested_fallback, Passthrough};
use super::GuestVm;
use crate::api::CountedDevice;
use crate::config::VmConfig;
use crate::device_options::DmaEngineIommu;
use crate::disk_image::open_locked;
use crate::interrupts::KvmInterrupts;
use crate::seccomp::{device_worker_setup, filtered_thread_setup, ThreadKind};
use crate::vfio_options::{VfioBackend, VfioOptions};
use crate::viommu::{IommuCounterSource, ViommuBuilder};
use devices::fault_relay::FaultRelay;
use devices::virtio::iommu::viot::endpoint_id;

/// What the rest of the VM needs from the PCI setup.
pub struct PciDevices {
    /// MCFG and, with a virtio-iommu, VIOT.
    pub acpi_tables: Vec<Vec<u8>>,
    pub description: PciRootDescription,
    /// The virtio-console reads stdin, so the serial port must not.
    pub console_owns_stdin: bool,
    /// The devices' hold on the VM, to release at the VM's end.
    pub interrupts: KvmInterrupts,
    /// Each virtio function's MSI-X state, named `BDF KIND`, for the failure report.
    pub msix_tables: Vec<(String, SharedMsix)>,
    /// The virtio-iommu's counters, for the API's metrics.
    pub iommu_counters: Option<IommuCounterSource>,
    /// Each device's counters, in BDF order (the virtio-iommu's are above).
    pub device_counters: Vec<CountedDevice>,
    /// The devices' worker threads, to start once the vCPUs run.
    pub workers: Vec<PendingThread>,
    /// Keeps the devices (and their workers) alive for the VM's lifetime.
    _root: Arc<PciRoot>,
    /// Nested mode's fault relay thread, stopped when the VM's devices go.
    _fault_relay: Option<FaultRelay>,
}

fn device_err(what: impl std::fmt::Display) -> VmmError {
    VmmError::Device(what.to_string())
}

struct Builder<'a> {
    /// Shared only once every function is on it.
    root: PciRoot,
    bars: BarAllocator,
    interrupts: KvmInterrupts,
    mem: &'a GuestMemoryMmap,
    setup: ThreadSetupHook,
    msix_tables: Vec<(String, SharedMsix)>,
    workers: Vec<PendingThread>,
}

/// What `lspci` users call the device.
fn virtio_kind(device_type: u32) -> &'static str {
    match device_type {
        2 => "virtio-blk",
        3 => "virtio-console",
        4 => "virtio-rng",
        23 => "virtio-iommu",
        _ => "virtio",
    }
}

impl Builder<'_> {
    fn reserve(&mut self) -> Result<Bdf, VmmError> {
        self.root.reserve_slot().map_err(device_err)
    }

    /// The device's worker thread, started once the vCPUs run.
    fn spec(&mut self, name: String) -> Result<WorkerSpec, VmmError> {
        let (spec, pending) = WorkerSpec::new(name, self.setup.clone());
        self.workers.push(pending);
        Ok(spec)
    }

    fn add(
        &mut self,
        bdf: Bdf,
        device: Box<dyn VirtioDevice>,
        dma: DeviceDma,
    ) -> Result<(), VmmError> {
        let bar = self
            .bars
            .allocate(VIRTIO_PCI_BAR_SIZE)
            .map_err(device_err)?;
        let vectors = device.queue_max_sizes().len() as u16 + 1;
        let kind = virtio_kind(device.device_type());
        let msi = self
            .interrupts
            .create_group(vectors)
            .map_err(|e| device_err(format!("MSI vectors for {bdf}: {e}")))?;
        let transport = VirtioPciDevice::new(bdf, device, self.mem.clone(), msi, bar, dma)
            .map_err(|e| device_err(format!("{bdf}: {e}")))?;
        log::info!("PCI {bdf}: virtio device, BAR at {bar:#x}");
        self.msix_tables
            .push((format!("{bdf} {kind}"), transport.msix()));
        self.root
            .add_device(bdf, Arc::new(Mutex::new(transport)))
            .map_err(device_err)
    }
}

impl Builder<'_> {
    /// The DMA engine at `bdf`, reaching memory through `dma`; `nested`: its jobs may
    /// carry PASIDs, translated by the virtio-iommu in nested mode, and its page requests
    /// go through `page_requests`.
    fn add_dma_engine(
        &mut self,
        bdf: Bdf,
        dma: DeviceDma,
        nested: bool,
        page_requests: Option<PriLink>,
    ) -> Result<Arc<IoCounters>, VmmError> {
        let bar = self
            .bars
            .allocate(DMA_ENGINE_BAR_SIZE)
            .map_err(device_err)?;
        let msi = self
            .interrupts
            .create_group(MSIX_VECTORS)
            .map_err(|e| device_err(format!("MSI vectors for {bdf}: {e}")))?;
        let behind = match (dma.is_translated(), nested) {
            (true, true) => "behind the virtio-iommu in nested mode",
            (true, false) => "behind the virtio-iommu",
            _ => "guest-physical addresses",
        };
        let mut engine = DmaEngine::new(
            bdf,
            self.mem.clone(),
            msi,
            bar,
            dma,
            self.spec("dev-dma0".into())?,
        )
        .map_err(|e| device_err(format!("{bdf}: {e}")))?;
        if nested {
            engine = engine.with_nested_translation();
        }
        if let Some(link) = page_requests {
            engine = engine.with_page_requests(link);
        }
        log::info!("PCI {bdf}: DMA engine, BAR at {bar:#x}, {behind}");
        self.msix_tables
            .push((format!("{bdf} dma-engine"), engine.msix()));
        let counters = engine.counters();
        self.root
            .add_device(bdf, Arc::new(Mutex::new(engine)))
            .map_err(device_err)?;
        Ok(counters)
    }

    /// Passes the host device `options` names through at `bdf`, its BARs in the PCI
    /// MMIO window.
    fn add_passthrough(
        &mut self,
        bdf: Bdf,
        device: HostVfioDevice,
        passthrough: &Passthrough,
        options: &VfioOptions,
    ) -> Result<Arc<IoCounters>, VmmError> {
        let bars = &mut self.bars;
        // The allocator hands out whole pages; a smaller BAR sits at the start of one.
        let mut place =
            |_bar: usize, size: u64| bars.allocate(size.max(0x1000)).map_err(io::Error::other);
        let function = VfioPciFunction::new(
            Box::new(device),
            &self.interrupts,
            Some(passthrough.memory_slots()),
            &mut place,
        )
        .map_err(|e| device_err(format!("--vfio {}: {e}", options.bdf())))?;
        let backend = match options.backend.unwrap_or_default() {
            VfioBackend::Container => "the VFIO container",
            VfioBackend::Iommufd => "iommufd",
        };
        let dma = if options.iommu {
            "behind the virtio-iommu"
        } else {
            "all guest RAM mapped"
        };
        log::info!(
            "PCI {bdf}: passthrough of host device {} over {backend}, {dma}",
            options.bdf()
        );
        let counters = function.counters();
        self.root
            .add_device(bdf, Arc::new(Mutex::new(function)))
            .map_err(device_err)?;
        Ok(counters)
    }
}

/// A duplicate of stdin for the console, when stdin is a terminal.
fn terminal_stdin() -> Option<File> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return None;
    }
    stdin.as_fd().try_clone_to_owned().ok().map(File::from)
}

pub fn add_pci_devices(
    vm: &Arc<GuestVm>,
    mem: &GuestMemoryMmap,
    pio: &Bus,
    mmio: &Arc<Bus>,
    config: &VmConfig,
    control: &VmControl,
    outputs: &GuestOutputs,
) -> Result<PciDevices, VmmError> {
    let interrupts = KvmInterrupts::new(vm.clone());
    let ioevents: Arc<dyn IoEventRegistry> = Arc::new(interrupts.clone());
    let mut root = PciRoot::new(mmio.clone(), Some(ioevents));
    for (base, len, owner) in bar_exclusions(config.memory) {
        root.exclude_range(base, len, owner);
    }
    let mut builder = Builder {
        root,
        bars: BarAllocator::new(PCI_MMIO32_START, PCI_MMIO32_SIZE).map_err(device_err)?,
        interrupts: interrupts.clone(),
        mem,
        setup: device_worker_setup(config.seccomp, control.clone()),
        msix_tables: Vec::new(),
        workers: Vec::new(),
    };
    let devices = &config.devices;
    // Opened first: the host IOMMUs of those behind the virtio-iommu bound what it offers.
    let emulated_nested = devices
        .dma_engine
        .is_some_and(|d| d.iommu == DmaEngineIommu::Nested);
    let mut passthrough = Passthrough::new(vm, emulated_nested);
    let opened = devices
        .vfio
        .iter()
        .map(|options| passthrough.open(vm, mem, options))
        .collect::<Result<Vec<_>, _>>()?;
    let host_iommus: Vec<Arc<dyn HostIommu>> = opened
        .iter()
        .filter_map(|d| d.behind_iommu.clone())
        .collect();
    let wants_iommu = devices.viommu.is_some()
        || devices.disks.iter().any(|d| d.iommu)
        || devices.rng.is_some_and(|r| r.iommu)
        || devices.dma_engine.is_some_and(|d| d.iommu.is_translated())
        || !host_iommus.is_empty();
    let mut viommu = if wants_iommu {
        let spec = builder.spec("dev-iommu0".into())?;
        Some(
            ViommuBuilder::new(
                devices.viommu.unwrap_or_default(),
                config.memory,
                &host_iommus,
                Arc::new(passthrough.dma_targets(mem)),
                spec,
            )
            .map_err(device_err)?,
        )
    } else {
        None
    };
    // Decided here, once: a device behind the virtio-iommu is translated whatever its
    // driver negotiates.
    let mut endpoint = |bdf: Bdf, behind: bool| match (&mut viommu, behind) {
        (Some(iommu), true) => iommu.add_endpoint(bdf),
        _ => DeviceDma::untranslated(),
    };

    let mut device_counters = Vec::new();
    let mut counted = |kind, bdf, counters| {
        device_counters.push(CountedDevice {
            kind,
            bdf,
            counters,
        })
    };
    for (index, disk) in devices.disks.iter().enumerate() {
        let bdf = builder.reserve()?;
        let mut image = open_locked(&disk.path, disk.read_only)?;
        // Seeking works for regular files and block devices alike.
        let size = image
            .seek(SeekFrom::End(0))
            .map_err(|source| VmmError::File {
                path: disk.path.display().to_string(),
                source,
            })?;
        let block = Block::new(
            image,
            size,
            disk.read_only,
            &format!("nestor-disk{index}"),
            builder.spec(format!("dev-blk{index}"))?,
        );
        counted("virtio-blk", bdf, block.counters());
        builder.add(bdf, Box::new(block), endpoint(bdf, disk.iommu))?;
    }
    if let Some(rng) = devices.rng {
        let bdf = builder.reserve()?;
        let device = Rng::new(builder.spec("dev-rng0".into())?);
        counted("virtio-rng", bdf, device.counters());
        builder.add(bdf, Box::new(device), endpoint(bdf, rng.iommu))?;
    }
    let mut console_owns_stdin = false;
    if devices.console {
        let bdf = builder.reserve()?;
        let input = terminal_stdin();
        console_owns_stdin = input.is_some();
        let device = Console::new(outputs.console(), input, builder.spec("dev-con0".into())?);
        counted("virtio-console", bdf, device.counters());
        builder.add(bdf, Box::new(device), DeviceDma::untranslated())?;
    }
    for (options, opened) in devices.vfio.iter().zip(opened) {
        let bdf = builder.reserve()?;
        let counters = builder.add_passthrough(bdf, opened.device, &passthrough, options)?;
        counted("vfio", bdf, counters);
        if let (Some(iommu), Some(behind)) = (&mut viommu, opened.behind_iommu) {
            match (opened.nested, passthrough.nested()) {
                (Some((device, policy)), Some(nested)) => {
                    match nested.add_endpoint(endpoint_id(bdf), device) {
                        Ok(()) => iommu.add_nested_host_endpoint(bdf),
                        Err(e) => {
                            let why = format!("{e}; the nested back-end serves the devices behind one host SMMU, the first nested device's");
                            nested_fallback(&options.bdf(), policy, &why)?;
                            iommu.add_host_endpoint(bdf, behind);
                        }
                    }
                }
                _ => iommu.add_host_endpoint(bdf, behind),
            }
        }
    }
    if let (Some(iommu), Some(nested)) = (&mut viommu, passthrough.nested()) {
        iommu.enable_nested_passthrough(nested.clone(), mem.clone());
    }
    if let Some(engine) = devices.dma_engine {
        let bdf = builder.reserve()?;
        let nested = engine.iommu == DmaEngineIommu::Nested;
        let dma = match (&mut viommu, engine.iommu.is_translated()) {
            (Some(iommu), true) => {
                if nested {
                    iommu.enable_nested(mem.clone()).map_err(device_err)?;
                }
                iommu.add_endpoint(bdf)
            }
            _ => DeviceDma::untranslated(),
        };
        let page_requests = viommu
            .as_ref()
            .filter(|_| nested)
            .and_then(|iommu| iommu.page_request_link(bdf));
        counted(
            "dma-engine",
            bdf,
            builder.add_dma_engine(bdf, dma, nested, page_requests)?,
        );
    }
    let mut acpi_tables = vec![build_mcfg(PCI_ECAM_START, LAST_BUS)];
    let iommu_counters = viommu.as_ref().map(ViommuBuilder::counter_source);
    let mut fault_relay = None;
    if let Some(iommu) = viommu {
        let setup = filtered_thread_setup(ThreadKind::FaultRelay, config.seccomp, control.clone());
        fault_relay = iommu
            .start_fault_relay(setup)
            .map_err(|e| device_err(format!("cannot start the fault relay thread: {e}")))?;
        let bdf = builder.reserve()?;
        let (device, viot) = iommu.finish(bdf);
        builder.add(bdf, device, DeviceDma::untranslated())?;
        acpi_tables.push(viot);
    }

    let root = Arc::new(builder.root);
    let (address_port, data_port) = PciConfigIo::ports(root.clone());
    pio.insert_concurrent(address_port, CONFIG_ADDRESS_PORT, 1)
        .map_err(device_err)?;
    pio.insert_concurrent(data_port, CONFIG_DATA_PORT, CONFIG_DATA_LEN)
        .map_err(device_err)?;
    mmio.insert_concurrent(
        Arc::new(PciEcam::new(root.clone())),
        PCI_ECAM_START,
        ECAM_SIZE,
    )
    .map_err(device_err)?;
    Ok(PciDevices {
        acpi_tables,
        description: PciRootDescription {
            ecam_base: PCI_ECAM_START,
            last_bus: LAST_BUS,
            mmio32_base: PCI_MMIO32_START as u32,
            mmio32_size: PCI_MMIO32_SIZE as u32,
        },
        console_owns_stdin,
        interrupts,
        msix_tables: builder.msix_tables,
        workers: builder.workers,
        iommu_counters,
        device_counters,
        _root: root,
        _fault_relay: fault_relay,
    })
}

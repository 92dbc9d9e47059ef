//! The virtio-iommu device as the transport sees it: features, config space, activation.

use std::sync::Arc;

use super::config::IommuConfig;
use super::endpoint::IommuEndpoint;
use super::faults::{FaultCounters, FaultRateLimit};
use super::nested_protocol::features as nested_features;
use super::protocol::{features, CONFIG_BYPASS_OFFSET, DEVICE_ID, EVENT_QUEUE, REQUEST_QUEUE};
use super::state::IommuState;
use super::worker::{InlineRequests, IommuQueues};
use crate::dma::{DeviceDma, DeviceTlb};
use crate::virtio::device::read_config_bytes;
use crate::virtio::worker::Worker;
use crate::virtio::{ActivateContext, ActivateError, VirtioDevice, WorkerSpec};

/// Device feature bits offered. Never the legacy BYPASS bit: BYPASS_CONFIG replaces it.
pub const OFFERED_FEATURES: u64 = features::INPUT_RANGE
    | features::DOMAIN_RANGE
    | features::MAP_UNMAP
    | features::PROBE
    | features::MMIO
    | features::BYPASS_CONFIG;

const QUEUE_SIZES: &[u16] = &[256, 64];

pub struct Iommu {
    state: Arc<IommuState>,
    worker_spec: WorkerSpec,
    worker: Option<Worker>,
    requests: Option<InlineRequests>,
}

impl Iommu {
    pub fn new(config: IommuConfig, worker_spec: WorkerSpec) -> std::io::Result<Self> {
        Self::with_fault_rate(config, FaultRateLimit::default(), worker_spec)
    }

    pub fn with_fault_rate(
        config: IommuConfig,
        rate: FaultRateLimit,
        worker_spec: WorkerSpec,
    ) -> std::io::Result<Self> {
        Ok(Self {
            state: Arc::new(IommuState::new(config, rate)?),
            worker_spec,
            worker: None,
            requests: None,
        })
    }

    /// Registers `endpoint` (its ID as the VIOT computes it) and returns how its device
    /// reaches memory: translated through the endpoint's domain.
    pub fn add_endpoint(&self, endpoint: u32) -> DeviceDma {
        let tlb = DeviceTlb::new();
        self.state.add_endpoint(endpoint, tlb.clone());
        DeviceDma::translated(
            tlb,
            Arc::new(IommuEndpoint::new(endpoint, self.state.clone())),
        )
    }

    pub fn state(&self) -> &Arc<IommuState> {
        &self.state
    }

    pub fn fault_counters(&self) -> FaultCounters {
        self.state.faults().counters()
    }

    fn stop_worker(&mut self) {
        if let Some(worker) = self.worker.take() {
            worker.stop();
        }
    }
}

impl VirtioDevice for Iommu {
    fn device_type(&self) -> u32 {
        DEVICE_ID
    }

    fn queue_max_sizes(&self) -> &[u16] {
        QUEUE_SIZES
    }

    /// The extension's ATTACH_TABLE bit only in nested mode, so a driver that knows
    /// nothing of it never sees it; PAGE_REQUEST only where a fault relay serves it.
    fn features(&self) -> u64 {
        match self.state.nested() {
            Some(n) if n.fault_relay().is_some() => {
                OFFERED_FEATURES | nested_features::ATTACH_TABLE | nested_features::PAGE_REQUEST
            }
            Some(_) => OFFERED_FEATURES | nested_features::ATTACH_TABLE,
            None => OFFERED_FEATURES,
        }
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut space = self.state.config.config_space(self.state.bypass());
        space.probe_size = self.state.probe_size();
        read_config_bytes(&space.to_bytes(), offset, data);
    }

    /// Only the `bypass` byte is writable, and only with 0 or 1.
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        if offset == CONFIG_BYPASS_OFFSET as u64 && data.len() == 1 && data[0] <= 1 {
            self.state.set_bypass(data[0] == 1);
        }
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        let indices: Vec<u16> = ctx.queues.iter().map(|q| q.index).collect();
        if indices != [REQUEST_QUEUE as u16, EVENT_QUEUE as u16] {
            return Err(ActivateError::BadQueues(format!(
                "virtio-iommu needs the requestq and the eventq, got queues {indices:?}"
            )));
        }
        self.stop_worker();
        let (mut requests, events, eventq) = IommuQueues::new(
            self.state.clone(),
            ctx.acked_features,
            ctx.mem,
            ctx.queues,
            ctx.interrupt,
        );
        self.worker = Some(events.start(&self.worker_spec, eventq)?);
        // Requests the driver queued (and notified) before DRIVER_OK.
        requests.serve();
        self.requests = Some(requests);
        Ok(())
    }

    /// Device reset: every domain and mapping goes (and every translation cached from them),
    /// the `bypass` byte stays (the spec keeps it across device reset).
    fn reset(&mut self) {
        self.stop_worker();
        self.requests = None;
        self.state.reset();
    }

    fn inline_queues(&self) -> u64 {
        1 << REQUEST_QUEUE
    }

    fn notify_inline(&mut self, index: u16) {
        if usize::from(index) == REQUEST_QUEUE {
            if let Some(requests) = self.requests.as_mut() {
                requests.serve();
            }
        }
    }
}

impl Drop for Iommu {
    fn drop(&mut self) {
        self.stop_worker();
    }
}

//! The contract between a virtio device and its transport.
//!
//! The transport (virtio/pci/) owns feature negotiation, queue configuration, notifications
//! and interrupts; a device says what it offers, serves its configuration space, and, once
//! the driver sets DRIVER_OK, gets its queues to run until `reset`.

use std::io;
use std::sync::Arc;

use super::worker_thread::WorkerThread;
use crate::pending_thread::PendingThread;

use virtio_queue::Queue;
use vmm_sys_util::eventfd::EventFd;

use crate::dma::DmaMemory;

/// Run by each device worker thread before it touches its first queue (the VMM installs the
/// worker's seccomp filter with it).
pub type ThreadSetupHook = Arc<dyn Fn() + Send + Sync>;

/// A device's worker thread: named, prepared by its setup hook, made with the VM.
#[derive(Clone)]
pub struct WorkerSpec {
    /// The thread name, e.g. `dev-blk0` (at most 15 bytes, the Linux limit).
    pub name: String,
    pub thread: Arc<WorkerThread>,
}

impl WorkerSpec {
    /// The spec, and what starts its thread; the thread runs `setup` before any
    /// activation's work, and activations wait for it to start.
    pub fn new(name: impl Into<String>, setup: ThreadSetupHook) -> (Self, PendingThread) {
        let name = name.into();
        let (thread, pending) = WorkerThread::new(&name, setup);
        (Self { name, thread }, pending)
    }

    /// A spec whose thread is running and whose setup does nothing (tests, benchmarks).
    pub fn unconfined(name: impl Into<String>) -> Self {
        let (spec, pending) = Self::new(name, Arc::new(|| {}));
        pending.launch().expect("cannot start a worker thread");
        spec
    }
}

/// Interrupts a device raises towards its driver.
pub trait VirtioInterrupt: Send + Sync {
    /// The device put buffers in the used ring of queue `queue_index`.
    fn notify_queue(&self, queue_index: u16);
    /// The device configuration space changed.
    fn notify_config(&self);
}

/// One queue the driver enabled, with the eventfd its notifications arrive on.
pub struct ActiveQueue {
    pub index: u16,
    pub queue: Queue,
    pub notifier: Arc<EventFd>,
}

/// Everything a device needs to start work.
pub struct ActivateContext {
    /// Guest memory as this device sees it (translated when behind the virtio-iommu).
    pub mem: DmaMemory,
    /// The enabled queues, in queue-index order.
    pub queues: Vec<ActiveQueue>,
    pub interrupt: Arc<dyn VirtioInterrupt>,
    /// The feature bits both sides agreed on.
    pub acked_features: u64,
}

impl ActivateContext {
    /// For single-queue devices: the one queue, which must be queue 0.
    pub fn take_single_queue(&mut self, device: &str) -> Result<ActiveQueue, ActivateError> {
        match self.queues.as_slice() {
            [q] if q.index == 0 => Ok(self.queues.remove(0)),
            _ => Err(ActivateError::BadQueues(format!(
                "{device} needs exactly its one queue"
            ))),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("the driver enabled queues the device cannot use: {0}")]
    BadQueues(String),
    #[error("cannot start the device worker: {0}")]
    Io(#[from] io::Error),
}

/// A virtio device, independent of the transport.
pub trait VirtioDevice: Send {
    /// The virtio device ID (VIRTIO_ID_*).
    fn device_type(&self) -> u32;
    /// The largest size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Device feature bits offered to the driver. The transport adds VIRTIO_F_VERSION_1 and,
    /// behind an IOMMU, VIRTIO_F_ACCESS_PLATFORM.
    fn features(&self) -> u64;
    /// A driver read of the device configuration space; bytes past its end read as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// A driver write of the device configuration space; most devices ignore it.
    fn write_config(&mut self, offset: u64, data: &[u8]);
    /// Starts processing `ctx.queues`. Called once per DRIVER_OK.
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError>;
    /// Stops the worker and forgets the queues; the device is as new afterwards.
    fn reset(&mut self);
    /// Queues (a bit per index) the device serves on the notifying vCPU, synchronously,
    /// rather than on its worker: for requests the driver spins on, where waking another
    /// thread costs more than the request.
    fn inline_queues(&self) -> u64 {
        0
    }
    /// The driver notified inline queue `index`.
    fn notify_inline(&mut self, _index: u16) {}
}

/// Copies the window `[offset, offset + data.len())` of `config` into `data`, zero past the end.
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if let Some(src) = config.get(start..) {
        let n = src.len().min(data.len());
        data[..n].copy_from_slice(&src[..n]);
    }
}

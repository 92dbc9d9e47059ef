//! Real virtio devices behind the real transport, with their activation observed rather than
//! started: no worker thread runs, so only the transport's behaviour is exercised, and
//! deterministically.

use std::sync::{Arc, Mutex, OnceLock};

use devices::dma::{
    DeviceDma, DeviceTlb, DmaAddressSpace, DmaFault, DmaMemory, GuestPhysical, TlbEntries,
};
use devices::virtio::block::Block;
use devices::virtio::console::Console;
use devices::virtio::iommu::{Iommu, IommuConfig};
use devices::virtio::{ActivateContext, ActivateError, VirtioDevice, VirtioInterrupt, WorkerSpec};
use virtio_queue::QueueT;
use vm_memory::Permissions;

use crate::transport_model::{DeviceModel, DmaKind, QueueRegs};

/// An IOMMU that blocks every access.
#[derive(Debug)]
struct Blocked;

impl DmaAddressSpace for Blocked {
    fn fill(&self, _: &mut TlbEntries, iova: u64, _: u64, _: Permissions) -> Result<(), DmaFault> {
        Err(DmaFault::Blocked { iova })
    }
}

pub fn device_dma(kind: DmaKind) -> DeviceDma {
    match kind {
        DmaKind::Untranslated => DeviceDma::untranslated(),
        DmaKind::Bypassed => DeviceDma::translated(DeviceTlb::new(), Arc::new(GuestPhysical)),
        DmaKind::Blocked => DeviceDma::translated(DeviceTlb::new(), Arc::new(Blocked)),
    }
}

/// What the transport handed the device at one activation.
pub struct Activation {
    pub acked: u64,
    /// `(index, size, descriptor table, available ring, used ring)`.
    pub queues: Vec<(u16, u16, u64, u64, u64)>,
    pub mem: DmaMemory,
    pub interrupt: Arc<dyn VirtioInterrupt>,
}

/// The activations a device was asked for, and whether it refuses the next.
#[derive(Clone, Default)]
pub struct ActivationLog {
    pub activations: Arc<Mutex<Vec<Activation>>>,
    pub refuse_next: Arc<Mutex<bool>>,
}

pub struct Observed {
    inner: Box<dyn VirtioDevice>,
    log: ActivationLog,
    needs_queues: Option<Vec<u16>>,
}

impl VirtioDevice for Observed {
    fn device_type(&self) -> u32 {
        self.inner.device_type()
    }
    fn queue_max_sizes(&self) -> &[u16] {
        self.inner.queue_max_sizes()
    }
    fn features(&self) -> u64 {
        self.inner.features()
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        self.inner.read_config(offset, data)
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        self.inner.write_config(offset, data)
    }
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        let queues: Vec<_> = ctx
            .queues
            .iter()
            .map(|q| {
                let queue = &q.queue;
                (
                    q.index,
                    queue.size(),
                    queue.desc_table(),
                    queue.avail_ring(),
                    queue.used_ring(),
                )
            })
            .collect();
        let indices: Vec<u16> = queues.iter().map(|q| q.0).collect();
        self.log.activations.lock().unwrap().push(Activation {
            acked: ctx.acked_features,
            queues,
            mem: ctx.mem,
            interrupt: ctx.interrupt,
        });
        let refused = std::mem::take(&mut *self.log.refuse_next.lock().unwrap());
        // The real devices' own requirement on the queues they start with.
        if refused
            || self
                .needs_queues
                .as_ref()
                .is_some_and(|need| *need != indices)
        {
            return Err(ActivateError::BadQueues(format!("queues {indices:?}")));
        }
        Ok(())
    }
    fn reset(&mut self) {
        self.inner.reset()
    }
}

fn worker_spec() -> WorkerSpec {
    static SPEC: OnceLock<WorkerSpec> = OnceLock::new();
    SPEC.get_or_init(|| WorkerSpec::unconfined("fuzz-worker"))
        .clone()
}

fn disk_file() -> std::fs::File {
    static FILE: OnceLock<std::fs::File> = OnceLock::new();
    FILE.get_or_init(|| {
        use std::os::fd::FromRawFd;
        // SAFETY: a fresh anonymous file, owned by the File from here on.
        let fd = unsafe { libc::memfd_create(c"nestor-fuzz-disk".as_ptr(), 0) };
        assert!(fd >= 0, "memfd_create");
        let file = unsafe { std::fs::File::from_raw_fd(fd) };
        file.set_len(1 << 20).unwrap();
        file
    })
    .try_clone()
    .unwrap()
}

/// A real device of `kind` (block, rng, console, iommu) wrapped to be observed, its offered
/// features and queue sizes, and what the transport model must know of it.
pub fn observed_device(
    kind: u8,
    log: &ActivationLog,
) -> (Box<dyn VirtioDevice>, u64, Vec<u16>, DeviceModel) {
    let (inner, model): (Box<dyn VirtioDevice>, DeviceModel) = match kind % 4 {
        0 => {
            let mut config = (1u64 << 11).to_le_bytes().to_vec();
            config.extend(0u32.to_le_bytes());
            config.extend(254u32.to_le_bytes());
            let block = Block::new(disk_file(), 1 << 20, kind & 4 != 0, "fuzz", worker_spec());
            (
                Box::new(block),
                DeviceModel {
                    config,
                    writable_byte: None,
                    needs_queues: Some(vec![0]),
                },
            )
        }
        1 => (
            Box::new(devices::virtio::rng::Rng::new(worker_spec())),
            DeviceModel {
                config: Vec::new(),
                writable_byte: None,
                needs_queues: Some(vec![0]),
            },
        ),
        2 => {
            let mut config = vec![0u8; 12];
            config[4] = 1;
            let console = Console::new(Box::new(std::io::sink()), None, worker_spec());
            (
                Box::new(console),
                DeviceModel {
                    config,
                    writable_byte: None,
                    needs_queues: None,
                },
            )
        }
        _ => {
            let mut config = Vec::new();
            config.extend((0x1000u64 | 1 << 21 | 1 << 30).to_le_bytes());
            config.extend(0u64.to_le_bytes());
            config.extend(((1u64 << 48) - 1).to_le_bytes());
            config.extend(0u32.to_le_bytes());
            config.extend(u32::from(u16::MAX).to_le_bytes());
            config.extend(24u32.to_le_bytes());
            config.extend([0u8; 4]);
            let iommu = Iommu::new(IommuConfig::default(), worker_spec()).unwrap();
            (
                Box::new(iommu),
                DeviceModel {
                    config,
                    writable_byte: Some(36),
                    needs_queues: Some(vec![0, 1]),
                },
            )
        }
    };
    let features = inner.features();
    let queues = inner.queue_max_sizes().to_vec();
    let needs_queues = model.needs_queues.clone();
    let observed = Observed {
        inner,
        log: log.clone(),
        needs_queues,
    };
    (Box::new(observed), features, queues, model)
}

/// The queue registers an activation got, as the model keeps them.
pub fn queue_summary(queues: &[(u16, QueueRegs)]) -> Vec<(u16, u16, u64, u64, u64)> {
    queues
        .iter()
        .map(|(i, q)| (*i, q.size, q.desc, q.avail, q.used))
        .collect()
}

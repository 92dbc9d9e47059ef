//! virtio-blk over a raw image file (or block device): IN, OUT, FLUSH, GET_ID.

pub mod handler;
pub mod protocol;
pub mod request;

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;

use crate::io_counters::IoCounters;
pub use handler::BlockHandler;
use protocol::*;
pub use request::{Disk, RequestRunner};

use super::device::{read_config_bytes, ActivateContext, ActivateError, VirtioDevice, WorkerSpec};
use super::worker::Worker;

pub const QUEUE_SIZE: u16 = 256;

pub struct Block {
    disk: Arc<Disk>,
    config: Vec<u8>,
    features: u64,
    spec: WorkerSpec,
    worker: Option<Worker>,
    /// Kept across resets: they count for the device's lifetime.
    counters: Arc<IoCounters>,
}

impl Block {
    /// Opens `path`; `id` is what GET_ID answers (truncated to 20 bytes).
    pub fn open(path: &Path, read_only: bool, id: &str, spec: WorkerSpec) -> io::Result<Self> {
        let mut file = OpenOptions::new().read(true).write(!read_only).open(path)?;
        // Seeking works for regular files and block devices alike.
        let size = file.seek(SeekFrom::End(0))?;
        Ok(Self::new(file, size, read_only, id, spec))
    }

    pub fn new(file: File, size: u64, read_only: bool, id: &str, spec: WorkerSpec) -> Self {
        let sectors = size >> SECTOR_SHIFT;
        let mut id_bytes = [0u8; ID_BYTES];
        let n = id.len().min(ID_BYTES);
        id_bytes[..n].copy_from_slice(&id.as_bytes()[..n]);
        let mut features = FEATURE_FLUSH | FEATURE_SEG_MAX;
        if read_only {
            features |= FEATURE_RO;
        }
        let config = BlockConfig {
            capacity: sectors,
            size_max: 0,
            // Two descriptors go to the header and the status.
            seg_max: u32::from(QUEUE_SIZE) - 2,
        }
        .to_le_bytes();
        Self {
            disk: Arc::new(Disk {
                file,
                size: sectors << SECTOR_SHIFT,
                read_only,
                id: id_bytes,
            }),
            config,
            features,
            spec,
            worker: None,
            counters: Arc::default(),
        }
    }

    /// Requests, bytes and errors so far, readable while the device runs.
    pub fn counters(&self) -> Arc<IoCounters> {
        self.counters.clone()
    }

    pub fn capacity_sectors(&self) -> u64 {
        self.disk.size >> SECTOR_SHIFT
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        self.features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}

    fn activate(&mut self, mut ctx: ActivateContext) -> Result<(), ActivateError> {
        let q = ctx.take_single_queue("virtio-blk")?;
        let handler = BlockHandler::new(ctx.mem, self.disk.clone(), q.queue, 0, ctx.interrupt)
            .counting(self.counters.clone());
        if let Some(old) = self.worker.take() {
            old.stop();
        }
        self.worker = Some(Worker::spawn(
            &self.spec,
            vec![q.notifier],
            vec![],
            handler,
        )?);
        Ok(())
    }

    fn reset(&mut self) {
        // Dropping the worker stops it, without waiting for it.
        self.worker = None;
    }
}

#[cfg(test)]
mod tests;

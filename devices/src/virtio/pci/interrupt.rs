//! Queue and configuration interrupts of one transport, raised through its MSI-X vectors.

use std::sync::atomic::{AtomicU16, AtomicU8, Ordering};
use std::sync::Arc;

use super::common_cfg::NO_VECTOR;
use crate::dma::DmaMemory;
use crate::pci::SharedMsix;
use crate::virtio::device::VirtioInterrupt;

pub const ISR_QUEUE: u8 = 1;
pub const ISR_CONFIG: u8 = 2;

/// Vectors the driver chose, shared with the transport's register emulation.
pub struct VectorTable {
    pub config: AtomicU16,
    pub queues: Vec<AtomicU16>,
}

impl VectorTable {
    pub fn new(queues: usize) -> Self {
        Self {
            config: AtomicU16::new(NO_VECTOR),
            queues: (0..queues).map(|_| AtomicU16::new(NO_VECTOR)).collect(),
        }
    }

    pub fn clear(&self) {
        self.config.store(NO_VECTOR, Ordering::Relaxed);
        for q in &self.queues {
            q.store(NO_VECTOR, Ordering::Relaxed);
        }
    }
}

pub struct PciInterrupt {
    pub msix: SharedMsix,
    pub vectors: Arc<VectorTable>,
    pub isr: Arc<AtomicU8>,
    /// The activation's DMA: an MSI is a memory write, so it waits while bus mastering is
    /// off and is dropped once the activation is revoked by a reset.
    pub gate: DmaMemory,
}

impl PciInterrupt {
    fn raise(&self, vector: u16, isr: u8) {
        self.gate.while_live(|| {
            self.isr.fetch_or(isr, Ordering::SeqCst);
            if vector != NO_VECTOR {
                self.msix
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .trigger(vector);
            }
        });
    }
}

impl VirtioInterrupt for PciInterrupt {
    fn notify_queue(&self, queue_index: u16) {
        let vector = self
            .vectors
            .queues
            .get(usize::from(queue_index))
            .map_or(NO_VECTOR, |v| v.load(Ordering::Relaxed));
        self.raise(vector, ISR_QUEUE);
    }

    fn notify_config(&self) {
        self.raise(self.vectors.config.load(Ordering::Relaxed), ISR_CONFIG);
    }
}

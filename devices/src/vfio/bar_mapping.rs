//! BARs the host lets this process map go straight into the guest as memory slots, so
//! the guest's loads and stores reach the device without a VM exit. A slot exists exactly
//! while the root has the BAR decoding (memory decoding on, at an accepted address),
//! and follows it when it moves.
//!
//! The MSI-X table's pages stay out of the slots: the guest's table writes must trap so
//! that nestor routes the vectors. Those pages, and any BAR or part of one that cannot be
//! mapped, are served by the trapped path (the MMIO bus), which always exists beneath.

use std::io;
use std::sync::Arc;

use super::device_io::VfioDeviceIo;

pub const PAGE_SIZE: u64 = 4096;

/// Guest-physical memory backed by host memory (KVM memory slots).
pub trait GuestMemorySlots: Send + Sync {
    /// Makes `[gpa, gpa + len)` reach `[host, host + len)`; returns the slot.
    ///
    /// # Safety
    ///
    /// `[host, host + len)` must be device memory that stays mapped for the VM's lifetime
    /// and that this process never references: besides KVM, a host IOMMU may be given it
    /// for peer-to-peer DMA, and keep it after the slot is removed.
    unsafe fn add(&self, gpa: u64, host: u64, len: u64) -> io::Result<u32>;
    fn remove(&self, slot: u32) -> io::Result<()>;
}

/// A piece of a BAR mapped in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappedPiece {
    /// Offset into the BAR.
    pub offset: u64,
    pub host: u64,
    pub len: u64,
}

struct MappedBar {
    bar: usize,
    pieces: Vec<MappedPiece>,
    /// Live slots, one per piece, while the BAR decodes.
    slots: Vec<u32>,
}

pub struct BarMappings {
    slots: Arc<dyn GuestMemorySlots>,
    bars: Vec<MappedBar>,
}

/// `[0, size)` without `holes` (offsets and lengths, rounded out to whole pages), as
/// page-aligned pieces.
pub fn pieces_around(size: u64, holes: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut holes: Vec<(u64, u64)> = holes
        .iter()
        .filter(|&&(_, len)| len > 0)
        .map(|&(offset, len)| {
            let first = offset / PAGE_SIZE * PAGE_SIZE;
            (first, (offset + len).next_multiple_of(PAGE_SIZE))
        })
        .collect();
    holes.sort_unstable();
    for (first, end) in holes {
        // A hole past the end (the device may say its table lies there) cuts nothing.
        let first = first.min(size);
        if first > start {
            pieces.push((start, first - start));
        }
        start = start.max(end);
    }
    if start < size {
        pieces.push((start, size - start));
    }
    pieces.retain(|&(_, len)| len > 0);
    pieces
}

impl BarMappings {
    /// Maps every mappable BAR of `device` among `bars` (index and size), leaving out
    /// `holes(bar)`. A BAR smaller than a page, or one the host refuses to map, stays
    /// trapped.
    pub fn new(
        device: &dyn VfioDeviceIo,
        slots: Arc<dyn GuestMemorySlots>,
        bars: &[(usize, u64)],
        holes: impl Fn(usize) -> Vec<(u64, u64)>,
    ) -> Self {
        let mut mapped = Vec::new();
        for &(bar, size) in bars {
            if !device.region(bar as u32).mappable || size < PAGE_SIZE {
                continue;
            }
            let mut pieces = Vec::new();
            for (offset, len) in pieces_around(size, &holes(bar)) {
                match device.mmap_region(bar as u32, offset, len) {
                    Ok(host) => pieces.push(MappedPiece { offset, host, len }),
                    Err(e) => log::warn!(
                        "passthrough BAR {bar}: cannot map {len:#x} bytes at {offset:#x} ({e}); \
                         those accesses are trapped"
                    ),
                }
            }
            if !pieces.is_empty() {
                mapped.push(MappedBar {
                    bar,
                    pieces,
                    slots: Vec::new(),
                });
            }
        }
        Self {
            slots,
            bars: mapped,
        }
    }

    /// The pieces of `bar` mapped in this process.
    pub fn pieces(&self, bar: usize) -> &[MappedPiece] {
        self.bars
            .iter()
            .find(|b| b.bar == bar)
            .map_or(&[], |b| &b.pieces)
    }

    /// BAR `bar` decodes at `address` now, or nowhere.
    pub fn place(&mut self, bar: usize, address: Option<u64>) {
        let Some(mapped) = self.bars.iter_mut().find(|b| b.bar == bar) else {
            return;
        };
        for slot in mapped.slots.drain(..) {
            if let Err(e) = self.slots.remove(slot) {
                log::warn!("passthrough BAR {bar}: cannot remove memory slot {slot}: {e}");
            }
        }
        let Some(address) = address else {
            return;
        };
        for piece in &mapped.pieces {
            let gpa = address + piece.offset;
            // SAFETY: the piece is a mapping of the device this process keeps for its
            // lifetime (never unmapped), so it outlives the slot.
            match unsafe { self.slots.add(gpa, piece.host, piece.len) } {
                Ok(slot) => mapped.slots.push(slot),
                Err(e) => log::warn!(
                    "passthrough BAR {bar}: no memory slot at {gpa:#x} ({e}); that piece is \
                     trapped"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holes_are_rounded_out_to_pages() {
        assert_eq!(pieces_around(0x4000, &[]), [(0, 0x4000)]);
        assert_eq!(
            pieces_around(0x4000, &[(0x1000, 0x40)]),
            [(0, 0x1000), (0x2000, 0x2000)]
        );
        assert_eq!(
            pieces_around(0x4000, &[(0x3800, 0x10), (0, 0x30)]),
            [(0x1000, 0x2000)]
        );
        assert_eq!(pieces_around(0x2000, &[(0, 0x2000)]), []);
        // Two holes on one page leave nothing between them.
        assert_eq!(
            pieces_around(0x4000, &[(0x2000, 0x10), (0x2800, 0x10)]),
            [(0, 0x2000), (0x3000, 0x1000)]
        );
    }

    #[test]
    fn holes_past_the_end_cut_nothing() {
        assert_eq!(
            pieces_around(0x4000, &[(0x5000, 0x10), (0x8000, 0x10)]),
            [(0, 0x4000)]
        );
        assert_eq!(
            pieces_around(0x4000, &[(0x3000, 0x2000), (0x8000, 0x10)]),
            [(0, 0x3000)]
        );
    }
}

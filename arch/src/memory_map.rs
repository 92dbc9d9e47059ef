//! The guest's memory map, in one form shared by e820 (bzImage) and the PVH memmap.

use crate::layout::{ram_regions, ACPI_END, EBDA_START};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryType {
    Ram = 1,
    Reserved = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryMapEntry {
    pub addr: u64,
    pub size: u64,
    pub kind: MemoryType,
}

/// RAM below the EBDA, the reserved BIOS area, and RAM from 1 MiB up (split around the hole).
pub fn memory_map(memory_size: u64) -> Vec<MemoryMapEntry> {
    let mut map = vec![
        MemoryMapEntry {
            addr: 0,
            size: EBDA_START,
            kind: MemoryType::Ram,
        },
        MemoryMapEntry {
            addr: EBDA_START,
            size: ACPI_END - EBDA_START,
            kind: MemoryType::Reserved,
        },
    ];
    for (start, len) in ram_regions(memory_size) {
        let end = start.0 + len as u64;
        let start = start.0.max(ACPI_END);
        if end > start {
            map.push(MemoryMapEntry {
                addr: start,
                size: end - start,
                kind: MemoryType::Ram,
            });
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{MMIO_HOLE_START, RAM_ABOVE_4G_START};

    fn ram_total(map: &[MemoryMapEntry]) -> u64 {
        map.iter()
            .filter(|e| e.kind == MemoryType::Ram)
            .map(|e| e.size)
            .sum()
    }

    #[test]
    fn small_guest_map() {
        let map = memory_map(128 << 20);
        assert_eq!(map.len(), 3);
        assert_eq!(map[2].addr, ACPI_END);
        assert_eq!(map[2].addr + map[2].size, 128 << 20);
        assert_eq!(ram_total(&map), (128 << 20) - (ACPI_END - EBDA_START));
    }

    #[test]
    fn large_guest_map_skips_the_hole() {
        let map = memory_map(5 << 30);
        assert_eq!(map.len(), 4);
        assert_eq!(map[2].addr + map[2].size, MMIO_HOLE_START);
        assert_eq!(map[3].addr, RAM_ABOVE_4G_START);
        assert_eq!(map[3].size, (5 << 30) - MMIO_HOLE_START);
    }
}

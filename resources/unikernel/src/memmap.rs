//! Sums over the PVH memory map.

/// `hvm_memmap_table_entry.type` for usable RAM.
pub const RAM: u32 = 1;
/// `hvm_memmap_table_entry.type` for reserved ranges.
pub const RESERVED: u32 = 2;

const LOW_MIB: u64 = 1 << 20;

/// One memory map entry: `[addr, addr + size)` of the given type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

impl Region {
    pub fn end(&self) -> u64 {
        self.addr.saturating_add(self.size)
    }
}

/// Bytes of type-1 RAM in the map.
pub fn ram_bytes(regions: impl IntoIterator<Item = Region>) -> u64 {
    regions
        .into_iter()
        .filter(|r| r.kind == RAM)
        .map(|r| r.size)
        .sum()
}

/// The guest memory size the map describes: RAM above 1 MiB plus the whole first MiB
/// when any RAM lies in it. Below 1 MiB the VMM backs everything with memory but reports
/// the EBDA/VGA/BIOS area (0x9fc00-0xfffff) as reserved, so counting only type-1 bytes there
/// would come up short of the size the VMM was given.
pub fn guest_memory_bytes(regions: impl IntoIterator<Item = Region>) -> u64 {
    let mut above = 0u64;
    let mut low_ram = false;
    for r in regions.into_iter().filter(|r| r.kind == RAM) {
        if r.addr < LOW_MIB && r.size > 0 {
            low_ram = true;
        }
        let start = r.addr.max(LOW_MIB);
        above += r.end().saturating_sub(start);
    }
    above + if low_ram { LOW_MIB } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(addr: u64, end: u64, kind: u32) -> Region {
        Region {
            addr,
            size: end - addr,
            kind,
        }
    }

    fn nestor_map(mib: u64) -> Vec<Region> {
        vec![
            region(0, 0x9fc00, RAM),
            region(0x9fc00, 0x100000, RESERVED),
            region(0x100000, mib << 20, RAM),
        ]
    }

    #[test]
    fn nestor_layout_counts_the_low_hole() {
        assert_eq!(guest_memory_bytes(nestor_map(128)), 128 << 20);
        assert_eq!(
            ram_bytes(nestor_map(128)),
            (128 << 20) - (0x100000 - 0x9fc00)
        );
    }

    #[test]
    fn ram_straddling_one_mib_is_not_counted_twice() {
        let map = [region(0, 0x800000, RAM)];
        assert_eq!(guest_memory_bytes(map), 0x800000);
    }

    #[test]
    fn memory_above_4g_counts() {
        let mut map = nestor_map(3072);
        map.push(region(0xe000_0000, 0x1_0000_0000, RESERVED));
        map.push(region(0x1_0000_0000, 0x1_4000_0000, RAM));
        assert_eq!(guest_memory_bytes(map), 4096 << 20);
    }

    #[test]
    fn no_low_ram_means_no_low_mib() {
        let map = [region(0x100000, 0x200000, RAM)];
        assert_eq!(guest_memory_bytes(map), 0x100000);
    }
}

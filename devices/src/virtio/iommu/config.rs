//! What the VMM chooses for one virtio-iommu (granule, ranges, reserved regions, limits),
//! and the checks a request must pass against those choices.

use crate::host_iommu::IovaRange;

use super::protocol::{
    ConfigSpace, Map, Status, Unmap, RESV_MEM_SIZE, RESV_MEM_T_MSI, RESV_MEM_T_RESERVED,
};

pub const PAGE_4K: u64 = 1 << 12;
pub const PAGE_2M: u64 = 1 << 21;
pub const PAGE_1G: u64 = 1 << 30;

/// The x86 MSI doorbell window: never translated, never mappable.
pub const X86_MSI_START: u64 = 0xfee0_0000;
pub const X86_MSI_END: u64 = 0xfeef_ffff;

/// An IOVA range every endpoint reports through PROBE and no MAP may overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReservedRegion {
    pub start: u64,
    /// Inclusive.
    pub end: u64,
    pub subtype: u8,
}

impl ReservedRegion {
    pub fn msi(start: u64, end: u64) -> Self {
        Self {
            start,
            end,
            subtype: RESV_MEM_T_MSI,
        }
    }

    pub fn reserved(start: u64, end: u64) -> Self {
        Self {
            start,
            end,
            subtype: RESV_MEM_T_RESERVED,
        }
    }

    fn overlaps(&self, start: u64, end: u64) -> bool {
        start <= self.end && self.start <= end
    }
}

/// Caps that keep a hostile guest from growing the VMM without bound; exceeding one answers
/// NOMEM. A mapping costs roughly 64 bytes of host memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_domains: usize,
    pub max_mappings_per_domain: usize,
    pub max_total_mappings: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_domains: 1024,
            max_mappings_per_domain: 1 << 18,
            max_total_mappings: 1 << 20,
        }
    }
}

/// The host IOMMU translates none of the IOVAs the virtio-iommu would offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the host IOMMU translates no address in the virtio-iommu's input range")]
pub struct NoHostIova;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IommuConfig {
    /// Lowest set bit is the granule; the others are sizes the guest may prefer.
    pub page_size_mask: u64,
    /// Inclusive IOVA range MAP and UNMAP may touch.
    pub input_range: (u64, u64),
    /// Inclusive range of domain IDs.
    pub domain_range: (u32, u32),
    /// Initial (and system-reset) value of the config `bypass` byte.
    pub default_bypass: bool,
    /// Reported through PROBE; the MSI window comes first.
    pub reserved_regions: Vec<ReservedRegion>,
    pub limits: Limits,
}

impl Default for IommuConfig {
    fn default() -> Self {
        Self {
            page_size_mask: PAGE_4K | PAGE_2M | PAGE_1G,
            input_range: (0, (1 << 48) - 1),
            domain_range: (0, u16::MAX as u32),
            default_bypass: false,
            reserved_regions: vec![ReservedRegion::msi(X86_MSI_START, X86_MSI_END)],
            limits: Limits::default(),
        }
    }
}

impl IommuConfig {
    /// The default configuration, also reserving `regions` (the memory map's reserved ranges).
    pub fn with_reserved(regions: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut config = Self::default();
        config.reserved_regions.extend(
            regions
                .into_iter()
                .map(|(start, end)| ReservedRegion::reserved(start, end)),
        );
        config
    }

    pub fn granule(&self) -> u64 {
        // A zero mask would make every MAP fail; treat it as the 4 KiB granule.
        1 << self.page_size_mask.max(1).trailing_zeros()
    }

    /// Room for one RESV_MEM property per reserved region.
    pub fn probe_size(&self) -> u32 {
        (self.reserved_regions.len() * RESV_MEM_SIZE) as u32
    }

    pub fn config_space(&self, bypass: bool) -> ConfigSpace {
        ConfigSpace {
            page_size_mask: self.page_size_mask,
            input_start: self.input_range.0,
            input_end: self.input_range.1,
            domain_start: self.domain_range.0,
            domain_end: self.domain_range.1,
            probe_size: self.probe_size(),
            bypass: bypass as u8,
        }
    }

    pub fn check_domain(&self, domain: u32) -> Result<(), Status> {
        let (first, last) = self.domain_range;
        if domain < first || domain > last {
            return Err(Status::Range);
        }
        Ok(())
    }

    fn check_input_range(&self, start: u64, end: u64) -> Result<(), Status> {
        let (first, last) = self.input_range;
        if start < first || end > last {
            return Err(Status::Range);
        }
        Ok(())
    }

    /// Geometry checks of a MAP, in order: domain range, input range, alignment (all
    /// RANGE), then reserved regions (INVAL).
    pub fn check_map(&self, map: &Map) -> Result<(), Status> {
        self.check_domain(map.domain)?;
        self.check_input_range(map.virt_start, map.virt_end)?;
        let mask = self.granule() - 1;
        let unaligned = map.virt_start & mask != 0
            || map.phys_start & mask != 0
            || map.virt_end.wrapping_add(1) & mask != 0;
        if unaligned {
            return Err(Status::Range);
        }
        if map
            .phys_start
            .checked_add(map.virt_end - map.virt_start)
            .is_none()
        {
            return Err(Status::Range);
        }
        if self
            .reserved_regions
            .iter()
            .any(|r| r.overlaps(map.virt_start, map.virt_end))
        {
            return Err(Status::Inval);
        }
        Ok(())
    }

    /// UNMAP needs no alignment: it only ever removes whole mappings.
    pub fn check_unmap(&self, unmap: &Unmap) -> Result<(), Status> {
        self.check_domain(unmap.domain)?;
        self.check_input_range(unmap.virt_start, unmap.virt_end)
    }

    /// Narrows what the guest may map to `host`, the IOVAs every host endpoint's IOMMU
    /// translates (ascending): the input range shrinks to their span and the holes between
    /// them become reserved regions, so a MAP outside answers RANGE and one in a hole
    /// INVAL, as for any other reserved region.
    pub fn narrow_to_host(&mut self, host: &[IovaRange]) -> Result<(), NoHostIova> {
        let (first, last) = self.input_range;
        let usable: Vec<(u64, u64)> = host
            .iter()
            .map(|r| (r.start.max(first), r.last.min(last)))
            .filter(|(s, l)| s <= l)
            .collect();
        let (Some(&(start, _)), Some(&(_, end))) = (usable.first(), usable.last()) else {
            return Err(NoHostIova);
        };
        self.input_range = (start, end);
        for pair in usable.windows(2) {
            let (hole_start, hole_end) = (pair[0].1 + 1, pair[1].0 - 1);
            if hole_start > hole_end {
                continue;
            }
            // The MSI window is itself a hole on x86 hosts; it is reported already.
            let covered = self
                .reserved_regions
                .iter()
                .any(|r| r.start <= hole_start && hole_end <= r.end);
            if !covered {
                self.reserved_regions
                    .push(ReservedRegion::reserved(hole_start, hole_end));
            }
        }
        Ok(())
    }

    /// The MSI window a write may reach untranslated.
    pub fn msi_window(&self) -> Option<(u64, u64)> {
        self.reserved_regions
            .iter()
            .find(|r| r.subtype == RESV_MEM_T_MSI)
            .map(|r| (r.start, r.end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(start: u64, end: u64, phys: u64) -> Map {
        Map {
            domain: 1,
            virt_start: start,
            virt_end: end,
            phys_start: phys,
            flags: 3,
        }
    }

    #[test]
    fn granule_is_the_lowest_page_size() {
        assert_eq!(IommuConfig::default().granule(), PAGE_4K);
    }

    #[test]
    fn unaligned_map_is_range() {
        let c = IommuConfig::default();
        assert_eq!(c.check_map(&map(0x1000, 0x1fff, 0x2000)), Ok(()));
        assert_eq!(
            c.check_map(&map(0x1001, 0x1fff, 0x2000)),
            Err(Status::Range)
        );
        assert_eq!(
            c.check_map(&map(0x1000, 0x1ffe, 0x2000)),
            Err(Status::Range)
        );
        assert_eq!(
            c.check_map(&map(0x1000, 0x1fff, 0x2800)),
            Err(Status::Range)
        );
    }

    #[test]
    fn map_outside_input_range_is_range() {
        let c = IommuConfig::default();
        let top = c.input_range.1;
        assert_eq!(
            c.check_map(&map(top + 1, top + 0x1000, 0)),
            Err(Status::Range)
        );
        assert_eq!(
            c.check_map(&map(top - 0xfff, top + 0x1000, 0)),
            Err(Status::Range)
        );
    }

    #[test]
    fn map_whose_physical_end_wraps_is_range() {
        let c = IommuConfig {
            input_range: (0, u64::MAX),
            ..IommuConfig::default()
        };
        assert_eq!(
            c.check_map(&map(0, 0x1fff, u64::MAX - 0xfff)),
            Err(Status::Range)
        );
    }

    #[test]
    fn domain_outside_domain_range_is_range() {
        let c = IommuConfig {
            domain_range: (1, 10),
            ..IommuConfig::default()
        };
        assert_eq!(c.check_domain(0), Err(Status::Range));
        assert_eq!(c.check_domain(11), Err(Status::Range));
        assert_eq!(c.check_domain(10), Ok(()));
    }

    #[test]
    fn map_over_a_reserved_region_is_inval() {
        let c = IommuConfig::with_reserved([(0x9f000, 0xfffff)]);
        assert_eq!(
            c.check_map(&map(0xfee0_0000, 0xfee0_0fff, 0)),
            Err(Status::Inval)
        );
        assert_eq!(
            c.check_map(&map(0xfed0_0000, 0xfee0_0fff, 0)),
            Err(Status::Inval)
        );
        assert_eq!(
            c.check_map(&map(0xf_f000, 0x10_0fff, 0)),
            Err(Status::Inval)
        );
        assert_eq!(c.check_map(&map(0x10_0000, 0x10_0fff, 0)), Ok(()));
        assert_eq!(c.probe_size(), 48);
    }
}

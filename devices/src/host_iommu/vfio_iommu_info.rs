//! The VFIO type1 IOMMU uAPI (include/uapi/linux/vfio.h) that the container back-end
//! calls itself: DMA map and unmap with per-mapping permissions, and the IOMMU info with
//! its chain of capabilities, of which the usable IOVA ranges are one.

use super::IovaRange;

/// `VFIO_TYPE` and `VFIO_BASE`: every VFIO ioctl is `_IO(';', 100 + n)`.
const VFIO_TYPE: u32 = b';' as u32;
const VFIO_BASE: u32 = 100;

vmm_sys_util::ioctl_io_nr!(VFIO_IOMMU_GET_INFO, VFIO_TYPE, VFIO_BASE + 12);
vmm_sys_util::ioctl_io_nr!(VFIO_IOMMU_MAP_DMA, VFIO_TYPE, VFIO_BASE + 13);
vmm_sys_util::ioctl_io_nr!(VFIO_IOMMU_UNMAP_DMA, VFIO_TYPE, VFIO_BASE + 14);

pub const VFIO_DMA_MAP_FLAG_READ: u32 = 1 << 0;
pub const VFIO_DMA_MAP_FLAG_WRITE: u32 = 1 << 1;
/// `vfio_iommu_type1_info.flags`: capabilities follow the fixed part.
pub const VFIO_IOMMU_INFO_CAPS: u32 = 1 << 1;
pub const VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE: u16 = 1;

/// `struct vfio_iommu_type1_dma_map`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DmaMap {
    pub argsz: u32,
    pub flags: u32,
    pub vaddr: u64,
    pub iova: u64,
    pub size: u64,
}

/// `struct vfio_iommu_type1_dma_unmap`, without the optional dirty bitmap; `size` comes
/// back as the number of bytes unmapped.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DmaUnmap {
    pub argsz: u32,
    pub flags: u32,
    pub iova: u64,
    pub size: u64,
}

/// `struct vfio_iommu_type1_info`: the fixed part; capabilities follow at `cap_offset`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuInfo {
    pub argsz: u32,
    pub flags: u32,
    pub iova_pgsizes: u64,
    pub cap_offset: u32,
    pub pad: u32,
}

/// `struct vfio_info_cap_header`: `next` is an offset from the start of the info buffer.
const CAP_HEADER_SIZE: usize = 8;
/// `nr_iovas` and `reserved` of `struct vfio_iommu_type1_info_cap_iova_range`.
const IOVA_RANGE_CAP_FIXED: usize = 8;
/// `struct vfio_iova_range`: inclusive `start` and `end`.
const IOVA_RANGE_SIZE: usize = 16;

fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(buf.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(buf: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(buf.get(at..at + 8)?.try_into().ok()?))
}

/// The IOVA ranges in a `vfio_iommu_type1_info` buffer the kernel filled, or `None` when it
/// has no IOVA range capability (kernels before 5.4: every IOVA is usable). A malformed
/// chain (an offset out of the buffer, a loop) ends the walk rather than being trusted.
pub fn parse_iova_ranges(info: &[u8]) -> Option<Vec<IovaRange>> {
    let flags = u32_at(info, 4)?;
    if flags & VFIO_IOMMU_INFO_CAPS == 0 {
        return None;
    }
    let mut offset = u32_at(info, 16)? as usize;
    // Each capability is at least a header long, so a chain longer than this loops.
    let mut hops = info.len() / CAP_HEADER_SIZE;
    while offset != 0 && hops > 0 {
        hops -= 1;
        let id = u16_at(info, offset)?;
        let next = u32_at(info, offset + 4)? as usize;
        if id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE {
            let count = u32_at(info, offset + CAP_HEADER_SIZE)? as usize;
            let first = offset + CAP_HEADER_SIZE + IOVA_RANGE_CAP_FIXED;
            return (0..count)
                .map(|i| {
                    let at = first + i * IOVA_RANGE_SIZE;
                    Some(IovaRange {
                        start: u64_at(info, at)?,
                        last: u64_at(info, at + 8)?,
                    })
                })
                .collect();
        }
        offset = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structs_match_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<DmaMap>(), 32);
        assert_eq!(std::mem::size_of::<DmaUnmap>(), 24);
        assert_eq!(std::mem::size_of::<IommuInfo>(), 24);
    }

    #[test]
    fn ioctl_numbers_are_io_semicolon_base_plus_n() {
        assert_eq!(VFIO_IOMMU_GET_INFO(), 0x3b70);
        assert_eq!(VFIO_IOMMU_MAP_DMA(), 0x3b71);
        assert_eq!(VFIO_IOMMU_UNMAP_DMA(), 0x3b72);
    }

    fn info_with_caps(caps: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; 24];
        let argsz = (24 + caps.len()) as u32;
        buf[0..4].copy_from_slice(&argsz.to_le_bytes());
        buf[4..8].copy_from_slice(&VFIO_IOMMU_INFO_CAPS.to_le_bytes());
        buf[16..20].copy_from_slice(&24u32.to_le_bytes());
        buf.extend_from_slice(caps);
        buf
    }

    fn cap_header(id: u16, next: u32) -> Vec<u8> {
        let mut h = id.to_le_bytes().to_vec();
        h.extend_from_slice(&1u16.to_le_bytes());
        h.extend_from_slice(&next.to_le_bytes());
        h
    }

    #[test]
    fn finds_the_iova_ranges_behind_another_capability() {
        // A migration capability (id 2, 32 bytes) first, then the IOVA ranges.
        let mut caps = cap_header(2, 24 + 32);
        caps.resize(32, 0);
        caps.extend(cap_header(VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 0));
        caps.extend(2u32.to_le_bytes());
        caps.extend(0u32.to_le_bytes());
        for (s, e) in [(0u64, 0xfedf_ffffu64), (0xfef0_0000, (1 << 48) - 1)] {
            caps.extend(s.to_le_bytes());
            caps.extend(e.to_le_bytes());
        }
        assert_eq!(
            parse_iova_ranges(&info_with_caps(&caps)),
            Some(vec![
                IovaRange {
                    start: 0,
                    last: 0xfedf_ffff
                },
                IovaRange {
                    start: 0xfef0_0000,
                    last: (1 << 48) - 1
                },
            ])
        );
    }

    #[test]
    fn no_capability_or_a_broken_chain_gives_none() {
        let mut plain = info_with_caps(&[]);
        plain[4] = 0;
        assert_eq!(parse_iova_ranges(&plain), None);
        // A capability pointing at itself.
        assert_eq!(parse_iova_ranges(&info_with_caps(&cap_header(2, 24))), None);
        // Ranges promised past the end of the buffer.
        let mut short = cap_header(VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 0);
        short.extend(3u32.to_le_bytes());
        short.extend(0u32.to_le_bytes());
        assert_eq!(parse_iova_ranges(&info_with_caps(&short)), None);
    }
}

//! `IOMMU_IOAS_IOVA_RANGES` (include/uapi/linux/iommufd.h), which iommufd-ioctls does not
//! wrap: the IOVA ranges an IOAS can map, given every device attached to it now.

use std::io;
use std::os::fd::AsRawFd;

use vmm_sys_util::ioctl::ioctl_with_mut_ref;

use super::IovaRange;

/// `IOMMUFD_TYPE` is ';'; `IOMMUFD_CMD_IOAS_IOVA_RANGES` is 0x84.
const IOMMUFD_TYPE: u32 = b';' as u32;
const IOMMUFD_CMD_IOAS_IOVA_RANGES: u32 = 0x84;

vmm_sys_util::ioctl_io_nr!(
    IOMMU_IOAS_IOVA_RANGES,
    IOMMUFD_TYPE,
    IOMMUFD_CMD_IOAS_IOVA_RANGES
);

/// `struct iommu_ioas_iova_ranges`. `allowed_iovas` points at `num_iovas` ranges to fill;
/// when there are more, the kernel answers EMSGSIZE with the count it needs.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IoasIovaRanges {
    pub size: u32,
    pub ioas_id: u32,
    pub num_iovas: u32,
    pub reserved: u32,
    pub allowed_iovas: u64,
    pub out_iova_alignment: u64,
}

/// `struct iommu_iova_range`: inclusive `start` and `last`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IommuIovaRange {
    pub start: u64,
    pub last: u64,
}

/// How often to ask again when devices attached between the two calls changed the count.
const ATTEMPTS: usize = 4;

/// The usable IOVA ranges of IOAS `ioas_id` on the iommufd `fd`.
pub fn ioas_iova_ranges(fd: &impl AsRawFd, ioas_id: u32) -> io::Result<Vec<IovaRange>> {
    let mut ranges: Vec<IommuIovaRange> = Vec::new();
    for _ in 0..ATTEMPTS {
        let mut cmd = IoasIovaRanges {
            size: std::mem::size_of::<IoasIovaRanges>() as u32,
            ioas_id,
            num_iovas: ranges.len() as u32,
            allowed_iovas: ranges.as_mut_ptr() as u64,
            ..IoasIovaRanges::default()
        };
        // SAFETY: `allowed_iovas` points at `num_iovas` writable ranges, all the kernel
        // writes besides `cmd` itself.
        let ret = unsafe { ioctl_with_mut_ref(fd, IOMMU_IOAS_IOVA_RANGES(), &mut cmd) };
        if ret == 0 {
            ranges.truncate(cmd.num_iovas as usize);
            return Ok(ranges
                .iter()
                .map(|r| IovaRange {
                    start: r.start,
                    last: r.last,
                })
                .collect());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EMSGSIZE) {
            return Err(err);
        }
        ranges = vec![IommuIovaRange::default(); cmd.num_iovas as usize];
    }
    Err(io::Error::from_raw_os_error(libc::EMSGSIZE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structs_match_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<IoasIovaRanges>(), 32);
        assert_eq!(std::mem::align_of::<IoasIovaRanges>(), 8);
        assert_eq!(std::mem::size_of::<IommuIovaRange>(), 16);
        assert_eq!(
            std::mem::size_of::<IoasIovaRanges>(),
            std::mem::size_of::<iommufd_bindings::iommufd::iommu_ioas_iova_ranges>()
        );
    }

    #[test]
    fn ioctl_number_is_io_semicolon_0x84() {
        // _IO(';', 0x84): no direction, no size.
        assert_eq!(IOMMU_IOAS_IOVA_RANGES(), 0x3b84);
    }

    #[test]
    fn a_file_that_is_not_an_iommufd_is_refused() {
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(ioas_iova_ranges(&file, 1).is_err());
    }
}

//! Placing the initrd: as high in RAM below 4 GiB (and below the kernel's limit) as it fits,
//! and never over the kernel.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::{populate, BootError, Initrd, InitrdPlacement};
use crate::layout::{HIMEM_START, MMIO_HOLE_START};

const PAGE_SIZE: u64 = 4096;

/// Places `initrd` at or above `kernel_end` (where the kernel, as it will unpack, ends) and
/// below `max_addr` (the highest byte the kernel can reach it at).
pub(super) fn place(
    mem: &GuestMemoryMmap,
    initrd: Initrd<'_>,
    memory_size: u64,
    kernel_end: u64,
    max_addr: u64,
) -> Result<InitrdPlacement, BootError> {
    let size = initrd.size;
    let top = memory_size
        .min(MMIO_HOLE_START)
        .min(max_addr.saturating_add(1));
    let bottom = kernel_end
        .max(HIMEM_START)
        .checked_next_multiple_of(PAGE_SIZE)
        .unwrap_or(u64::MAX);
    let too_big = || BootError::InitrdTooBig {
        size,
        room: top.saturating_sub(bottom),
    };
    let addr = top
        .checked_sub(size)
        .map(|a| a & !(PAGE_SIZE - 1))
        .filter(|&a| a >= bottom)
        .ok_or_else(too_big)?;
    let len = usize::try_from(size).map_err(|_| too_big())?;
    if let Ok(slice) = mem.get_slice(GuestAddress(addr), len) {
        populate::for_write(&slice);
    }
    mem.read_exact_volatile_from(GuestAddress(addr), initrd.image, len)
        .map_err(|e| BootError::InitrdRead(std::io::Error::other(e.to_string())))?;
    Ok(InitrdPlacement {
        addr: GuestAddress(addr),
        size,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// An unlinked file of `size` bytes.
    fn image(size: usize) -> std::fs::File {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "nestor-initrd-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, vec![0xa5; size]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        file
    }

    fn ram(size: u64) -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size as usize)]).unwrap()
    }

    #[test]
    fn goes_as_high_as_it_fits() {
        let mem = ram(16 << 20);
        let mut file = image(0x1800);
        let initrd = Initrd {
            image: &mut file,
            size: 0x1800,
        };
        let placed = place(&mem, initrd, 16 << 20, 0x20_0000, u64::from(u32::MAX)).unwrap();
        assert_eq!(placed.addr, GuestAddress((16 << 20) - 0x2000));
    }

    #[test]
    fn never_over_the_kernel() {
        let mem = ram(16 << 20);
        let kernel_end = 0x20_0800;
        let mut file = image(1);
        // Fits exactly from the page after the kernel to the top: placed, then the read
        // fails, since the image is shorter than it claims.
        let room = (16 << 20) - 0x20_1000;
        let initrd = Initrd {
            image: &mut file,
            size: room,
        };
        assert!(matches!(
            place(&mem, initrd, 16 << 20, kernel_end, u64::from(u32::MAX)),
            Err(BootError::InitrdRead(_))
        ));
        let initrd = Initrd {
            image: &mut file,
            size: room + 1,
        };
        match place(&mem, initrd, 16 << 20, kernel_end, u64::from(u32::MAX)) {
            Err(BootError::InitrdTooBig { size, room: r }) => {
                assert_eq!((size, r), (room + 1, room));
            }
            other => panic!("{other:?}"),
        }
    }
}

//! Guest RAM about to be filled from a file gets its pages in one call, in 2 MiB pieces
//! where it can.
//!
//! Guest RAM is anonymous memory whose pages come on first touch: a read(2) of a kernel or an
//! initrd into it takes one page fault per 4 KiB page, thousands for a Linux kernel, and each
//! costs about 3.5 us where the host is itself virtualized. Most of that is allocating and
//! clearing the page, not the fault: `MADV_POPULATE_WRITE` (Linux 5.14), which allocates a
//! range's pages in one call, still costs about 2.5 us a page there. Transparent huge pages
//! cost about 0.5 us per 4 KiB, so the 2 MiB blocks the range covers whole are asked for as
//! huge pages first (`MADV_HUGEPAGE`): they are written whole, so this uses no more memory.
//! Where either call fails (an older kernel, huge pages turned off or none free), the pages
//! come as before: it is only faster.

use vm_memory::bitmap::BitmapSlice;
use vm_memory::VolatileSlice;

const PAGE_SIZE: usize = 4096;
const HUGE_PAGE_SIZE: usize = 2 << 20;

/// Allocates the pages under `slice`, which is about to be written whole.
pub fn for_write<B: BitmapSlice>(slice: &VolatileSlice<B>) {
    if slice.is_empty() {
        return;
    }
    let start = slice.ptr_guard_mut().as_ptr() as usize;
    let first_page = start & !(PAGE_SIZE - 1);
    let end = (start + slice.len()).next_multiple_of(PAGE_SIZE);
    let huge_start = start.next_multiple_of(HUGE_PAGE_SIZE);
    let huge_end = (start + slice.len()) & !(HUGE_PAGE_SIZE - 1);
    // SAFETY: the pages from `first_page` to `end` hold bytes of `slice`, so they are mapped.
    // Neither call changes a byte the program can see (a new page reads as zeroes, as it
    // would on its first touch), and both keep the pages mapped.
    unsafe {
        if huge_end > huge_start {
            libc::madvise(
                huge_start as *mut libc::c_void,
                huge_end - huge_start,
                libc::MADV_HUGEPAGE,
            );
        }
        libc::madvise(
            first_page as *mut libc::c_void,
            end - first_page,
            libc::MADV_POPULATE_WRITE,
        );
    }
}

#[cfg(test)]
mod tests {
    use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

    use super::*;

    /// Pages of `len` bytes at `host` that are in memory (mincore).
    fn resident(host: *mut u8, len: usize) -> usize {
        let mut pages = vec![0u8; len.div_ceil(PAGE_SIZE)];
        // SAFETY: `host` is page-aligned and `len` bytes of it are mapped.
        let rc = unsafe { libc::mincore(host.cast(), len, pages.as_mut_ptr()) };
        assert_eq!(rc, 0);
        pages.iter().filter(|&&p| p & 1 == 1).count()
    }

    #[test]
    fn populates_the_pages_a_slice_spans_and_no_others() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 64 * PAGE_SIZE)]).unwrap();
        let host = mem.get_host_address(GuestAddress(0)).unwrap();
        assert_eq!(resident(host, 64 * PAGE_SIZE), 0);
        // From the middle of page 3 to the middle of page 9: pages 3 to 9.
        let slice = mem
            .get_slice(GuestAddress(3 * 4096 + 100), 6 * PAGE_SIZE)
            .unwrap();
        for_write(&slice);
        assert_eq!(resident(host, 3 * PAGE_SIZE), 0);
        assert_eq!(resident(host.wrapping_add(3 * PAGE_SIZE), 7 * PAGE_SIZE), 7);
        assert_eq!(
            resident(host.wrapping_add(10 * PAGE_SIZE), 54 * PAGE_SIZE),
            0
        );
        // Populated, the memory still reads as zeroes and takes writes.
        mem.write_obj(0x5au8, GuestAddress(3 * 4096 + 100)).unwrap();
        assert_eq!(mem.read_obj::<u8>(GuestAddress(3 * 4096 + 99)).unwrap(), 0);
        assert_eq!(
            mem.read_obj::<u8>(GuestAddress(3 * 4096 + 100)).unwrap(),
            0x5a
        );
    }

    /// Whether the host gives huge pages to any anonymous mapping on its first touch
    /// (`always`), which makes whole 2 MiB blocks resident where this asked for fewer pages.
    fn huge_pages_always() -> bool {
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .is_ok_and(|mode| mode.contains("[always]"))
    }

    #[test]
    fn a_range_over_whole_huge_pages_is_populated_and_keeps_its_bytes() {
        let size = 8 << 20;
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), size)]).unwrap();
        let host = mem.get_host_address(GuestAddress(0)).unwrap();
        mem.write_obj(0x77u8, GuestAddress(0x10_0000)).unwrap();
        // 1 MiB + 5 bytes to 7 MiB - 3 bytes: at least two whole 2 MiB blocks inside.
        let (from, len): (usize, usize) = (0x10_0005, (6 << 20) - 8);
        let slice = mem.get_slice(GuestAddress(from as u64), len).unwrap();
        for_write(&slice);
        let spanned = (from + len).div_ceil(PAGE_SIZE) - from / PAGE_SIZE;
        if huge_pages_always() {
            assert!(resident(host, size) >= spanned);
        } else {
            assert_eq!(resident(host, size), spanned);
        }
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x10_0000)).unwrap(), 0x77);
        let mut bytes = vec![0xffu8; len];
        mem.read_slice(&mut bytes, GuestAddress(from as u64))
            .unwrap();
        assert!(bytes.iter().all(|&b| b == 0));
    }
}

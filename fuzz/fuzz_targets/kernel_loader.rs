//! Kernel images a user passes (bzImage, ELF with a PVH note, anything else), loaded by the
//! real loader into a small guest, checked against a reference reading of their headers:
//! - nothing panics, hangs or allocates without bound, whatever the image says;
//! - a bzImage's protected-mode kernel lands at 1 MiB, where the 64-bit entry nestor jumps
//!   to expects it;
//! - an ELF's loadable segments land at their physical addresses with the file's bytes;
//! - the command line is in guest memory as given, and the initrd lies whole in RAM, above
//!   the kernel, with the file's bytes.
#![no_main]

use std::fs::File;
use std::io::{Cursor, Write};
use std::os::fd::FromRawFd;

use arch::boot::{load, BootRequest, Initrd};
use arch::layout::{
    CMDLINE_START, HIMEM_START, MMIO_HOLE_START, PVH_MODLIST_START, ZERO_PAGE_START,
};
use libfuzzer_sys::fuzz_target;
use nestor_fuzz::input::Input;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;

fn memfd(data: &[u8]) -> File {
    // SAFETY: a fresh anonymous file, owned by the File from here on.
    let fd = unsafe { libc::memfd_create(c"nestor-fuzz-initrd".as_ptr(), 0) };
    assert!(fd >= 0, "memfd_create");
    let mut file = unsafe { File::from_raw_fd(fd) };
    file.write_all(data).unwrap();
    file
}

/// A bzImage whose setup header fields come from the input.
fn bzimage(input: &mut Input) -> Vec<u8> {
    let setup_sects = input.below(8);
    let payload = input.bytes(2048);
    let mut image = vec![0u8; (setup_sects.max(1) + 1) * 512];
    let put = |image: &mut Vec<u8>, at: usize, bytes: &[u8]| {
        image[at..at + bytes.len()].copy_from_slice(bytes)
    };
    put(&mut image, 0x1f1, &[setup_sects as u8]);
    put(&mut image, 0x1fe, &[0x55, 0xaa]);
    put(&mut image, 0x202, b"HdrS");
    let version = [0x020cu16, 0x020f, 0x0200, input.u16()][input.below(4)];
    put(&mut image, 0x206, &version.to_le_bytes());
    put(&mut image, 0x211, &[input.u8() | 1]);
    let code32_start = [
        HIMEM_START as u32,
        HIMEM_START as u32,
        0x20_0000,
        input.u32(),
    ][input.below(4)];
    put(&mut image, 0x214, &code32_start.to_le_bytes());
    let initrd_max = [0x7fff_ffffu32, 0x3f_ffff, input.u32()][input.below(3)];
    put(&mut image, 0x22c, &initrd_max.to_le_bytes());
    let init_size = [0u32, payload.len() as u32, 0x10_0000, input.u32()][input.below(4)];
    put(&mut image, 0x260, &init_size.to_le_bytes());
    image.truncate((if setup_sects == 0 { 4 } else { setup_sects } + 1) * 512);
    image.resize(
        (if setup_sects == 0 { 4 } else { setup_sects } + 1) * 512,
        0,
    );
    image.extend(payload);
    image
}

/// An x86-64 ELF with program headers (loadable segments, PVH notes) from the input.
fn elf(input: &mut Input) -> Vec<u8> {
    let phnum = 1 + input.below(4);
    let data_at = 64 + 56 * phnum;
    let mut image = vec![0u8; data_at];
    image[..4].copy_from_slice(b"\x7fELF");
    image[4] = if input.u8() < 0xf0 { 2 } else { 1 };
    image[5] = 1;
    image[18..20].copy_from_slice(&62u16.to_le_bytes());
    let entry = [HIMEM_START, HIMEM_START + 0x1000, u64::from(input.u32())][input.below(3)];
    image[24..32].copy_from_slice(&entry.to_le_bytes());
    image[32..40].copy_from_slice(&64u64.to_le_bytes());
    let phentsize = if input.u8() < 0xf0 { 56 } else { input.u16() };
    image[54..56].copy_from_slice(&phentsize.to_le_bytes());
    image[56..58].copy_from_slice(&(phnum as u16).to_le_bytes());
    for i in 0..phnum {
        let at = 64 + 56 * i;
        let kind = [PT_LOAD, PT_LOAD, PT_NOTE, input.u32()][input.below(4)];
        let content: Vec<u8> = if kind == PT_NOTE && input.bool() {
            let mut note = Vec::new();
            note.extend(4u32.to_le_bytes());
            note.extend(4u32.to_le_bytes());
            note.extend(18u32.to_le_bytes());
            note.extend(b"Xen\0");
            note.extend((entry as u32).to_le_bytes());
            note
        } else {
            input.bytes(512)
        };
        let offset = image.len().max(data_at) as u64;
        let paddr = [
            HIMEM_START + 0x1000 * input.below(16) as u64,
            CMDLINE_START,
            0x6000,
            u64::from(input.u32()),
        ][input.below(4)];
        let filesz = if input.u8() < 0xf0 {
            content.len() as u64
        } else {
            input.u64()
        };
        let memsz = filesz.saturating_add(input.below(0x2000) as u64);
        let h = &mut image[at..at + 56];
        h[0..4].copy_from_slice(&kind.to_le_bytes());
        h[8..16].copy_from_slice(&offset.to_le_bytes());
        h[24..32].copy_from_slice(&paddr.to_le_bytes());
        h[32..40].copy_from_slice(&filesz.to_le_bytes());
        h[40..48].copy_from_slice(&memsz.to_le_bytes());
        image.extend(content);
    }
    image
}

/// `(file offset, physical address, size)` of each loadable segment with file bytes, as
/// the ELF says.
fn segments(image: &[u8]) -> Vec<(usize, u64, u64, u64)> {
    let u16_at = |at: usize| u16::from_le_bytes([image[at], image[at + 1]]);
    let u64_at = |at: usize| u64::from_le_bytes(image[at..at + 8].try_into().unwrap());
    let (phoff, phnum) = (u64_at(32) as usize, usize::from(u16_at(56)));
    (0..phnum)
        .map(|i| phoff + 56 * i)
        .filter(|&at| {
            at + 56 <= image.len()
                && u32::from_le_bytes(image[at..at + 4].try_into().unwrap()) == PT_LOAD
        })
        .map(|at| {
            (
                u64_at(at + 8) as usize,
                u64_at(at + 24),
                u64_at(at + 32),
                u64_at(at + 40),
            )
        })
        .filter(|s| s.2 > 0)
        .collect()
}

fn read(mem: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    mem.read_slice(&mut buf, GuestAddress(addr))
        .expect("loaded bytes are in RAM");
    buf
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let kind = input.u8() % 3;
    let memory_size = [2u64 << 20, 4 << 20, 16 << 20][input.below(3)];
    let cmdline: String = input
        .bytes(40)
        .into_iter()
        .map(|b| char::from(b' ' + b % 95))
        .collect();
    let initrd_bytes = input.bytes(200).repeat(1 + input.below(64));
    let declared = if input.u8() < 0xf0 {
        initrd_bytes.len() as u64
    } else {
        input.u64()
    };
    let with_initrd = input.bool();
    let image = match kind {
        0 => bzimage(&mut input),
        1 => elf(&mut input),
        _ => input.bytes(4096),
    };
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), memory_size as usize)]).unwrap();
    let mut initrd_file = memfd(&initrd_bytes);
    let request = BootRequest {
        kernel: &mut Cursor::new(image.clone()),
        cmdline: &cmdline,
        initrd: with_initrd.then_some(Initrd {
            image: &mut initrd_file,
            size: declared,
        }),
        memory_size,
        rsdp: GuestAddress(0xe_0000),
    };
    let Ok(entry) = load(&mem, request) else {
        return;
    };
    let is_bzimage = matches!(entry.mode, arch::boot::EntryMode::Linux64 { .. });
    let kernel_end = if is_bzimage {
        // The protected-mode kernel follows the setup sectors and runs from 1 MiB.
        let setup_sects = match image[0x1f1] {
            0 => 4,
            n => usize::from(n),
        };
        let payload = &image[(setup_sects + 1) * 512..];
        assert_eq!(
            read(&mem, HIMEM_START, payload.len()),
            payload,
            "the bzImage kernel is not at 1 MiB"
        );
        let init_size = u32::from_le_bytes(image[0x260..0x264].try_into().unwrap());
        HIMEM_START + (payload.len() as u64).max(u64::from(init_size))
    } else {
        let segments = segments(&image);
        for (i, &(offset, paddr, filesz, _)) in segments.iter().enumerate() {
            let overwritten = segments[i + 1..]
                .iter()
                .any(|&(_, p, f, _)| p < paddr + filesz && paddr < p + f);
            if !overwritten {
                let want = &image[offset..offset + filesz as usize];
                assert_eq!(
                    read(&mem, paddr, filesz as usize),
                    want,
                    "segment {i} is not where its header says"
                );
            }
        }
        segments
            .iter()
            .map(|&(_, p, _, m)| p + m)
            .max()
            .unwrap_or(0)
    };
    // Surrounding blanks are trimmed on the way in.
    let mut cmdline_nul = cmdline.trim().as_bytes().to_vec();
    cmdline_nul.push(0);
    assert_eq!(
        read(&mem, CMDLINE_START, cmdline_nul.len()),
        cmdline_nul,
        "the command line was overwritten"
    );
    if with_initrd {
        let (addr, size) = if is_bzimage {
            let zero_page = read(&mem, ZERO_PAGE_START + 0x218, 8);
            (
                u64::from(u32::from_le_bytes(zero_page[0..4].try_into().unwrap())),
                u64::from(u32::from_le_bytes(zero_page[4..8].try_into().unwrap())),
            )
        } else {
            let entry = read(&mem, PVH_MODLIST_START, 16);
            (
                u64::from_le_bytes(entry[0..8].try_into().unwrap()),
                u64::from_le_bytes(entry[8..16].try_into().unwrap()),
            )
        };
        assert_eq!(size, declared, "initrd size");
        assert!(
            addr >= kernel_end,
            "the initrd at {addr:#x} overlaps the kernel (ends at {kernel_end:#x})"
        );
        assert!(
            addr + size <= memory_size.min(MMIO_HOLE_START),
            "the initrd is not in RAM"
        );
        assert_eq!(
            read(&mem, addr, size as usize),
            &initrd_bytes[..size as usize],
            "initrd contents"
        );
    }
});

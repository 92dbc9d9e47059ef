//! Loading a kernel and writing what its boot protocol expects.
//!
//! Two protocols: Linux's 64-bit boot protocol for a bzImage, and PVH for an ELF that carries
//! a PVH entry note (a Linux vmlinux built with CONFIG_PVH, or a unikernel).

mod format;
mod image_file;
mod initrd;
mod linux;
mod populate;
mod pvh;

use std::fs::File;
use std::io::{Read, Seek};

use linux_loader::loader::{self, KernelLoader};
use vm_memory::{GuestAddress, GuestMemoryMmap, ReadVolatile};

pub use format::{detect_format, KernelFormat};
pub use image_file::ImageFile;

use crate::layout::{CMDLINE_MAX_SIZE, CMDLINE_START, HIMEM_START};

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("cannot read the kernel: {0}")]
    Read(#[source] std::io::Error),
    #[error("the kernel is neither a Linux bzImage nor an ELF with a PVH entry note")]
    UnknownFormat,
    #[error(
        "the ELF kernel has no PVH entry note; build Linux with CONFIG_PVH=y or pass its bzImage"
    )]
    NoPvhEntry,
    #[error("the bzImage is not a 64-bit relocatable kernel (boot protocol {0:#x}, need 2.12+)")]
    OldBzImage(u16),
    #[error(
        "the ELF kernel loads a segment at {0:#x}, below 1 MiB where nestor's boot structures live"
    )]
    LoadsBelowHighMemory(u64),
    #[error("cannot load the kernel: {0}; is --memory large enough for it?")]
    Load(#[from] loader::Error),
    #[error("the command line is too long (at most {max} bytes)")]
    CmdlineTooLong { max: usize },
    #[error("the command line contains a NUL byte or non-ASCII characters")]
    CmdlineInvalid,
    #[error(
        "the initrd ({size} bytes) does not fit in guest memory beside the kernel \
         ({room} bytes free); give --memory more room"
    )]
    InitrdTooBig { size: u64, room: u64 },
    #[error("cannot read the initrd: {0}")]
    InitrdRead(std::io::Error),
    #[error("cannot write boot structures to guest memory: {0}")]
    Setup(String),
}

/// How the vCPUs must be set up to enter the loaded kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMode {
    /// 64-bit long mode, paging on, `rsi` = boot_params.
    Linux64 { boot_params: GuestAddress },
    /// 32-bit protected mode, paging off, `ebx` = hvm_start_info.
    Pvh { start_info: GuestAddress },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootEntry {
    pub entry: GuestAddress,
    pub mode: EntryMode,
}

/// An initrd to place in guest memory, with its size known up front.
pub struct Initrd<'a> {
    pub image: &'a mut File,
    pub size: u64,
}

/// What to boot and with what.
pub struct BootRequest<'a, K> {
    pub kernel: &'a mut K,
    pub cmdline: &'a str,
    pub initrd: Option<Initrd<'a>>,
    pub memory_size: u64,
    pub rsdp: GuestAddress,
}

/// Loads the kernel, the initrd and the command line, and writes the boot structures.
pub fn load<K>(mem: &GuestMemoryMmap, request: BootRequest<'_, K>) -> Result<BootEntry, BootError>
where
    K: Read + Seek + ReadVolatile,
{
    let format = detect_format(request.kernel)?;
    let cmdline = to_cmdline(request.cmdline)?;
    loader::load_cmdline(mem, GuestAddress(CMDLINE_START), &cmdline)
        .map_err(|e| BootError::Setup(e.to_string()))?;
    let cmdline_size = request.cmdline.len() + 1;
    match format {
        KernelFormat::BzImage => {
            // At 1 MiB whatever code32_start says: the 64-bit entry nestor jumps to is there.
            let loaded = loader::BzImage::load(
                mem,
                Some(GuestAddress(HIMEM_START)),
                request.kernel,
                Some(GuestAddress(HIMEM_START)),
            )?;
            let header = loaded.setup_header.ok_or(BootError::UnknownFormat)?;
            // The kernel decompresses in place and needs init_size bytes from its start.
            let kernel_end = loaded
                .kernel_end
                .max(HIMEM_START.saturating_add(header.init_size.into()));
            let initrd = request
                .initrd
                .map(|i| {
                    let max_addr = header.initrd_addr_max.into();
                    initrd::place(mem, i, request.memory_size, kernel_end, max_addr)
                })
                .transpose()?;
            linux::write_boot_params(
                mem,
                header,
                cmdline_size,
                initrd,
                request.memory_size,
                request.rsdp,
            )
        }
        KernelFormat::PvhElf => {
            // Below 1 MiB lie the command line, the boot structures and the ACPI tables,
            // some written before the kernel: a segment there would silently replace them.
            if let Some(addr) = format::lowest_load_address(request.kernel)
                .map_err(BootError::Read)?
                .filter(|&addr| addr < HIMEM_START)
            {
                return Err(BootError::LoadsBelowHighMemory(addr));
            }
            let loaded =
                loader::Elf::load(mem, None, request.kernel, Some(GuestAddress(HIMEM_START)))?;
            let entry = match loaded.pvh_boot_cap {
                loader::PvhBootCapability::PvhEntryPresent(entry) => entry,
                _ => return Err(BootError::NoPvhEntry),
            };
            let initrd = request
                .initrd
                .map(|i| {
                    let max_addr = u64::from(u32::MAX);
                    initrd::place(mem, i, request.memory_size, loaded.kernel_end, max_addr)
                })
                .transpose()?;
            pvh::write_start_info(mem, entry, initrd, request.memory_size, request.rsdp)
        }
    }
}

fn to_cmdline(text: &str) -> Result<loader::Cmdline, BootError> {
    if text.len() + 1 > CMDLINE_MAX_SIZE {
        return Err(BootError::CmdlineTooLong {
            max: CMDLINE_MAX_SIZE - 1,
        });
    }
    let mut cmdline =
        loader::Cmdline::new(CMDLINE_MAX_SIZE).map_err(|_| BootError::CmdlineInvalid)?;
    if !text.is_empty() {
        cmdline
            .insert_str(text)
            .map_err(|_| BootError::CmdlineInvalid)?;
    }
    Ok(cmdline)
}

/// Where an initrd landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitrdPlacement {
    pub addr: GuestAddress,
    pub size: u64,
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use vm_memory::Bytes;

    use super::*;

    fn ram() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap()
    }

    fn boot(mem: &GuestMemoryMmap, image: Vec<u8>) -> Result<BootEntry, BootError> {
        load(
            mem,
            BootRequest {
                kernel: &mut Cursor::new(image),
                cmdline: "console=ttyS0",
                initrd: None,
                memory_size: 4 << 20,
                rsdp: GuestAddress(0xe_0000),
            },
        )
    }

    /// An ELF with a PVH entry note and one loadable segment of `payload` at `paddr`.
    fn pvh_elf(paddr: u64, payload: &[u8]) -> Vec<u8> {
        let mut note = Vec::new();
        for v in [4u32, 4, 18] {
            note.extend(v.to_le_bytes());
        }
        note.extend(b"Xen\0");
        note.extend((HIMEM_START as u32).to_le_bytes());
        let data_at = 64 + 2 * 56;
        let mut elf = vec![0u8; data_at];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[18..20].copy_from_slice(&62u16.to_le_bytes());
        elf[24..32].copy_from_slice(&HIMEM_START.to_le_bytes());
        elf[32..40].copy_from_slice(&64u64.to_le_bytes());
        elf[54..56].copy_from_slice(&56u16.to_le_bytes());
        elf[56..58].copy_from_slice(&2u16.to_le_bytes());
        let segments = [
            (4u32, data_at, 0, note.len()),
            (1, data_at + note.len(), paddr, payload.len()),
        ];
        for (i, (kind, offset, paddr, size)) in segments.into_iter().enumerate() {
            let h = &mut elf[64 + 56 * i..64 + 56 * (i + 1)];
            h[0..4].copy_from_slice(&kind.to_le_bytes());
            h[8..16].copy_from_slice(&(offset as u64).to_le_bytes());
            h[24..32].copy_from_slice(&paddr.to_le_bytes());
            h[32..40].copy_from_slice(&(size as u64).to_le_bytes());
            h[40..48].copy_from_slice(&(size as u64).to_le_bytes());
        }
        elf.extend(note);
        elf.extend(payload);
        elf
    }

    #[test]
    fn an_elf_segment_below_1_mib_is_refused_before_it_overwrites_the_command_line() {
        let mem = ram();
        let image = pvh_elf(CMDLINE_START, &[0u8; 64]);
        assert!(matches!(
            boot(&mem, image),
            Err(BootError::LoadsBelowHighMemory(CMDLINE_START))
        ));
        let image = pvh_elf(HIMEM_START, &[0xc3; 64]);
        assert!(boot(&mem, image).is_ok());
        let mut cmdline = [0u8; 14];
        mem.read_slice(&mut cmdline, GuestAddress(CMDLINE_START))
            .unwrap();
        assert_eq!(&cmdline, b"console=ttyS0\0");
    }

    #[test]
    fn a_bzimage_loads_at_1_mib_whatever_code32_start_says() {
        let mem = ram();
        let mut image = vec![0u8; 2 * 512];
        image[0x1f1] = 1;
        image[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        image[0x211] = 1;
        image[0x214..0x218].copy_from_slice(&0x20_0000u32.to_le_bytes());
        image.extend([0xc3; 512]);
        let entry = boot(&mem, image).unwrap();
        let mut kernel = [0u8; 512];
        mem.read_slice(&mut kernel, GuestAddress(HIMEM_START))
            .unwrap();
        assert_eq!(
            kernel, [0xc3; 512],
            "the kernel is where the entry point expects it"
        );
        assert_eq!(entry.entry, GuestAddress(HIMEM_START + 0x200));
    }
}

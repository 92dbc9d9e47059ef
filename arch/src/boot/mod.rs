//! Loading a kernel and writing what its boot protocol expects.
//!
//! Two protocols: Linux's 64-bit boot protocol for a bzImage, and PVH for an ELF that carries
//! a PVH entry note (a Linux vmlinux built with CONFIG_PVH, or a unikernel).

mod format;
mod initrd;
mod linux;
mod pvh;

use std::fs::File;
use std::io::{Read, Seek};

use linux_loader::loader::{self, KernelLoader};
use vm_memory::{GuestAddress, GuestMemoryMmap, ReadVolatile};

pub use format::{detect_format, KernelFormat};

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
            let loaded =
                loader::BzImage::load(mem, None, request.kernel, Some(GuestAddress(HIMEM_START)))?;
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

//! Loading the kernel the configuration names, or the bundled unikernel.

use std::fs::File;
use std::io::Cursor;

use arch::boot::{self, BootEntry, BootRequest, ImageFile, Initrd};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::VmmError;
use crate::config::{KernelSource, VmConfig};
use crate::unikernel::UNIKERNEL_ELF;

fn open(path: &std::path::Path) -> Result<File, VmmError> {
    File::open(path).map_err(|source| VmmError::File {
        path: path.display().to_string(),
        source,
    })
}

/// The kernel through [`ImageFile`]: its headers in one read.
fn image(path: &std::path::Path) -> Result<ImageFile, VmmError> {
    ImageFile::new(open(path)?).map_err(|source| VmmError::File {
        path: path.display().to_string(),
        source,
    })
}

pub fn load_kernel(
    mem: &GuestMemoryMmap,
    config: &VmConfig,
    rsdp: GuestAddress,
) -> Result<BootEntry, VmmError> {
    let mut initrd_file = config.initrd.as_deref().map(open).transpose()?;
    let initrd = match initrd_file.as_mut() {
        None => None,
        Some(file) => {
            let size = file
                .metadata()
                .map_err(|source| VmmError::File {
                    path: config.initrd.as_ref().unwrap().display().to_string(),
                    source,
                })?
                .len();
            Some(Initrd { image: file, size })
        }
    };
    let entry = match &config.kernel {
        KernelSource::Bundled => {
            // The unikernel checks what it finds against what nestor was asked for.
            let cmdline = format!(
                "{} nestor.mem_mib={} nestor.cpus={}",
                config.cmdline,
                config.memory >> 20,
                config.cpus
            );
            boot::load(
                mem,
                BootRequest {
                    kernel: &mut Cursor::new(UNIKERNEL_ELF),
                    cmdline: cmdline.trim_start(),
                    initrd,
                    memory_size: config.memory,
                    rsdp,
                },
            )?
        }
        KernelSource::File { path, .. } => boot::load(
            mem,
            BootRequest {
                kernel: &mut image(path)?,
                cmdline: &config.cmdline,
                initrd,
                memory_size: config.memory,
                rsdp,
            },
        )?,
    };
    Ok(entry)
}

//! The bundled guest image.

/// The unikernel ELF (a PVH-bootable x86_64 image loaded at 1 MiB) built from
/// `resources/unikernel` by the build script. nestor boots it when no `--kernel` is given.
pub static UNIKERNEL_ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/unikernel.elf"));

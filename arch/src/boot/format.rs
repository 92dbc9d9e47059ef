//! Telling a bzImage from a PVH ELF by their headers.

use std::io::{Read, Seek, SeekFrom};

use super::BootError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    BzImage,
    PvhElf,
}

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
/// `boot_flag` at 0x1fe and the "HdrS" magic at 0x202 of a bzImage's setup header.
const BZIMAGE_BOOT_FLAG_OFFSET: usize = 0x1fe;
const BZIMAGE_MAGIC_OFFSET: usize = 0x202;
const BZIMAGE_MAGIC: &[u8; 4] = b"HdrS";
const BZIMAGE_VERSION_OFFSET: usize = 0x206;
/// 2.12: the first protocol with the 64-bit entry and `xloadflags`.
const MIN_BOOT_PROTOCOL: u16 = 0x020c;

/// Reads the start of `image` and says which format it is; rewinds `image` afterwards.
pub fn detect_format<K: Read + Seek>(image: &mut K) -> Result<KernelFormat, BootError> {
    let mut head = [0u8; 0x210];
    image.rewind().map_err(BootError::Read)?;
    let len = read_up_to(image, &mut head).map_err(BootError::Read)?;
    image.seek(SeekFrom::Start(0)).map_err(BootError::Read)?;
    let head = &head[..len];
    if head.starts_with(ELF_MAGIC) {
        // Whether it has a PVH note is known only once the loader walks the notes.
        return Ok(KernelFormat::PvhElf);
    }
    if head.len() >= BZIMAGE_VERSION_OFFSET + 2
        && head[BZIMAGE_BOOT_FLAG_OFFSET..BZIMAGE_BOOT_FLAG_OFFSET + 2] == [0x55, 0xaa]
        && &head[BZIMAGE_MAGIC_OFFSET..BZIMAGE_MAGIC_OFFSET + 4] == BZIMAGE_MAGIC
    {
        let version = u16::from_le_bytes([
            head[BZIMAGE_VERSION_OFFSET],
            head[BZIMAGE_VERSION_OFFSET + 1],
        ]);
        if version < MIN_BOOT_PROTOCOL {
            return Err(BootError::OldBzImage(version));
        }
        return Ok(KernelFormat::BzImage);
    }
    Err(BootError::UnknownFormat)
}

fn read_up_to<R: Read>(src: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn bzimage_head(version: u16) -> Vec<u8> {
        let mut head = vec![0u8; 0x400];
        head[0x1fe] = 0x55;
        head[0x1ff] = 0xaa;
        head[0x202..0x206].copy_from_slice(b"HdrS");
        head[0x206..0x208].copy_from_slice(&version.to_le_bytes());
        head
    }

    #[test]
    fn recognises_formats() {
        assert_eq!(
            detect_format(&mut Cursor::new(b"\x7fELF\x02\x01".to_vec())).unwrap(),
            KernelFormat::PvhElf
        );
        assert_eq!(
            detect_format(&mut Cursor::new(bzimage_head(0x020f))).unwrap(),
            KernelFormat::BzImage
        );
    }

    #[test]
    fn refuses_text_empty_and_old_kernels() {
        assert!(matches!(
            detect_format(&mut Cursor::new(b"#!/bin/sh\necho hi\n".to_vec())),
            Err(BootError::UnknownFormat)
        ));
        assert!(matches!(
            detect_format(&mut Cursor::new(Vec::new())),
            Err(BootError::UnknownFormat)
        ));
        assert!(matches!(
            detect_format(&mut Cursor::new(bzimage_head(0x0204))),
            Err(BootError::OldBzImage(0x0204))
        ));
    }
}

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
        let has_pvh = has_pvh_note(image).map_err(BootError::Read)?;
        image.seek(SeekFrom::Start(0)).map_err(BootError::Read)?;
        return match has_pvh {
            ElfCheck::Pvh => Ok(KernelFormat::PvhElf),
            ElfCheck::NoPvhNote => Err(BootError::NoPvhEntry),
            ElfCheck::NotX86_64 => Err(BootError::UnknownFormat),
        };
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

enum ElfCheck {
    Pvh,
    NoPvhNote,
    NotX86_64,
}

const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// Notes larger than this are not PVH notes; the bound keeps a hostile file from costing much.
const MAX_NOTE_SEGMENT: u64 = 64 << 10;
const MAX_PROGRAM_HEADERS: u16 = 256;

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Walks the PT_NOTE segments of a 64-bit x86 ELF for a Xen PHYS32_ENTRY note.
fn has_pvh_note<K: Read + Seek>(image: &mut K) -> std::io::Result<ElfCheck> {
    let mut ehdr = [0u8; 64];
    image.seek(SeekFrom::Start(0))?;
    if read_up_to(image, &mut ehdr)? < ehdr.len()
        || ehdr[4] != ELFCLASS64
        || ehdr[5] != ELFDATA2LSB
        || le16(&ehdr, 18) != EM_X86_64
    {
        return Ok(ElfCheck::NotX86_64);
    }
    let (phoff, phentsize, phnum) = (le64(&ehdr, 32), le16(&ehdr, 54), le16(&ehdr, 56));
    if phentsize < 56 {
        return Ok(ElfCheck::NoPvhNote);
    }
    for i in 0..phnum.min(MAX_PROGRAM_HEADERS) {
        let mut phdr = [0u8; 56];
        image.seek(SeekFrom::Start(
            phoff.saturating_add(u64::from(i) * u64::from(phentsize)),
        ))?;
        if read_up_to(image, &mut phdr)? < phdr.len() || le32(&phdr, 0) != PT_NOTE {
            continue;
        }
        let (offset, size) = (le64(&phdr, 8), le64(&phdr, 32));
        let mut notes = vec![0u8; size.min(MAX_NOTE_SEGMENT) as usize];
        image.seek(SeekFrom::Start(offset))?;
        let len = read_up_to(image, &mut notes)?;
        if notes_contain_pvh_entry(&notes[..len]) {
            return Ok(ElfCheck::Pvh);
        }
    }
    Ok(ElfCheck::NoPvhNote)
}

/// The lowest physical address a PT_LOAD segment with file bytes loads at (the loader
/// copies only those), if the ELF has any; rewinds `image` afterwards.
pub(super) fn lowest_load_address<K: Read + Seek>(image: &mut K) -> std::io::Result<Option<u64>> {
    let mut ehdr = [0u8; 64];
    image.seek(SeekFrom::Start(0))?;
    let mut lowest = None;
    if read_up_to(image, &mut ehdr)? == ehdr.len() {
        let (phoff, phnum) = (le64(&ehdr, 32), le16(&ehdr, 56));
        for i in 0..u64::from(phnum) {
            let mut phdr = [0u8; 56];
            image.seek(SeekFrom::Start(phoff.saturating_add(i * 56)))?;
            let loads = read_up_to(image, &mut phdr)? == phdr.len()
                && le32(&phdr, 0) == PT_LOAD
                && le64(&phdr, 32) > 0;
            if loads {
                let paddr = le64(&phdr, 24);
                lowest = Some(lowest.map_or(paddr, |l: u64| l.min(paddr)));
            }
        }
    }
    image.seek(SeekFrom::Start(0))?;
    Ok(lowest)
}

fn notes_contain_pvh_entry(mut notes: &[u8]) -> bool {
    let align4 = |n: usize| n.next_multiple_of(4);
    while notes.len() >= 12 {
        let (namesz, descsz, kind) = (
            le32(notes, 0) as usize,
            le32(notes, 4) as usize,
            le32(notes, 8),
        );
        let name_end = 12 + align4(namesz);
        let Some(next) = name_end.checked_add(align4(descsz)) else {
            return false;
        };
        if next > notes.len() {
            return false;
        }
        if kind == XEN_ELFNOTE_PHYS32_ENTRY && &notes[12..12 + namesz.min(3)] == b"Xen" {
            return true;
        }
        notes = &notes[next..];
    }
    false
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

    /// A minimal x86_64 ELF with one PT_NOTE segment holding `note`.
    fn elf_with_note(note: &[u8]) -> Vec<u8> {
        let mut elf = vec![0u8; 64 + 56];
        elf[..4].copy_from_slice(ELF_MAGIC);
        elf[4] = ELFCLASS64;
        elf[5] = ELFDATA2LSB;
        elf[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        elf[32..40].copy_from_slice(&64u64.to_le_bytes());
        elf[54..56].copy_from_slice(&56u16.to_le_bytes());
        elf[56..58].copy_from_slice(&1u16.to_le_bytes());
        elf[64..68].copy_from_slice(&PT_NOTE.to_le_bytes());
        elf[72..80].copy_from_slice(&120u64.to_le_bytes());
        elf[96..104].copy_from_slice(&(note.len() as u64).to_le_bytes());
        elf.extend_from_slice(note);
        elf
    }

    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend((name.len() as u32).to_le_bytes());
        n.extend((desc.len() as u32).to_le_bytes());
        n.extend(kind.to_le_bytes());
        n.extend(name);
        n.resize(n.len().next_multiple_of(4), 0);
        n.extend(desc);
        n.resize(n.len().next_multiple_of(4), 0);
        n
    }

    #[test]
    fn recognises_formats() {
        let pvh = elf_with_note(&note(b"Xen\0", 18, &0x100000u32.to_le_bytes()));
        assert_eq!(
            detect_format(&mut Cursor::new(pvh)).unwrap(),
            KernelFormat::PvhElf
        );
        assert_eq!(
            detect_format(&mut Cursor::new(bzimage_head(0x020f))).unwrap(),
            KernelFormat::BzImage
        );
    }

    #[test]
    fn refuses_elfs_without_a_pvh_note() {
        let mut other_notes = note(b"GNU\0", 3, &[0; 16]);
        other_notes.extend(note(b"Xen\0", 5, &[0; 4]));
        assert!(matches!(
            detect_format(&mut Cursor::new(elf_with_note(&other_notes))),
            Err(BootError::NoPvhEntry)
        ));
        let mut truncated = note(b"Xen\0", 18, &[0; 4]);
        truncated[4] = 0xff; // descsz past the segment
        assert!(matches!(
            detect_format(&mut Cursor::new(elf_with_note(&truncated))),
            Err(BootError::NoPvhEntry)
        ));
        assert!(matches!(
            detect_format(&mut Cursor::new(b"\x7fELF\x01\x01".to_vec())),
            Err(BootError::UnknownFormat)
        ));
    }

    #[test]
    fn program_headers_past_the_end_of_the_address_space_are_no_pvh_note() {
        let mut elf = elf_with_note(&note(b"Xen\0", 18, &[0; 4]));
        elf[32..40].copy_from_slice(&(u64::MAX - 8).to_le_bytes());
        elf[56..58].copy_from_slice(&2u16.to_le_bytes());
        assert!(matches!(
            detect_format(&mut Cursor::new(elf)),
            Err(BootError::NoPvhEntry)
        ));
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

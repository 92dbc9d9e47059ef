//! A kernel image file whose first bytes are read once.
//!
//! The loaders read an image's headers (the ELF header, program headers and notes, a
//! bzImage's setup header) in many small reads and seeks, each a syscall of its own: about 40
//! for a PVH ELF, loaded once and inspected twice. [`ImageFile`] reads the first
//! [`HEAD_LEN`] bytes in one call and serves what falls there from memory; what lies beyond
//! (the kernel's segments, read into guest memory) is read from the file, at the position
//! the loader asked for, into guest pages allocated beforehand in one call.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use vm_memory::bitmap::BitmapSlice;
use vm_memory::{ReadVolatile, VolatileMemoryError, VolatileSlice};

/// Enough for the headers of any kernel nestor boots: a bzImage's setup header ends at 0x268
/// and an ELF's program headers and notes follow its 64-byte header.
pub const HEAD_LEN: usize = 4096;

pub struct ImageFile {
    file: File,
    head: Vec<u8>,
    len: u64,
    /// Where the next read starts.
    pos: u64,
    /// Where the file's own offset is, when known: it moves only for reads past the head.
    file_pos: Option<u64>,
}

impl ImageFile {
    pub fn new(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        let mut head = vec![0; HEAD_LEN.min(usize::try_from(len).unwrap_or(HEAD_LEN))];
        file.read_exact_at(&mut head, 0)?;
        Ok(Self {
            file,
            head,
            len,
            pos: 0,
            file_pos: None,
        })
    }

    /// The part of the head from the read position on, if the position is in it, or past
    /// the end of an image the head holds whole (then empty: the end of the file).
    fn head_from_pos(&self) -> Option<&[u8]> {
        if self.head.len() as u64 == self.len && self.pos >= self.len {
            return Some(&[]);
        }
        let pos = usize::try_from(self.pos).ok()?;
        self.head.get(pos..).filter(|rest| !rest.is_empty())
    }

    /// Moves the file's offset to the read position, for a read from the file itself.
    fn sync_file_offset(&mut self) -> io::Result<()> {
        if self.file_pos != Some(self.pos) {
            self.file.seek(SeekFrom::Start(self.pos))?;
            self.file_pos = Some(self.pos);
        }
        Ok(())
    }

    fn advance(&mut self, read: usize, from_file: bool) {
        self.pos += read as u64;
        if from_file {
            self.file_pos = Some(self.pos);
        }
    }
}

impl Read for ImageFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(mut head) = self.head_from_pos() {
            let read = head.read(buf)?;
            self.advance(read, false);
            return Ok(read);
        }
        self.sync_file_offset()?;
        let read = self.file.read(buf)?;
        self.advance(read, true);
        Ok(read)
    }
}

impl ReadVolatile for ImageFile {
    fn read_volatile<B: BitmapSlice>(
        &mut self,
        buf: &mut VolatileSlice<B>,
    ) -> Result<usize, VolatileMemoryError> {
        let mut from_head = 0;
        if let Some(mut head) = self.head_from_pos() {
            from_head = head.read_volatile(buf)?;
            self.advance(from_head, false);
            // Whole, as a file read would be: the loaders read a segment in one call and
            // take a short read for a truncated image.
            if from_head == buf.len() || self.head_from_pos().is_some() {
                return Ok(from_head);
            }
        }
        self.sync_file_offset()
            .map_err(VolatileMemoryError::IOError)?;
        let mut rest = buf.offset(from_head)?;
        super::populate::for_write(&rest);
        let read = (&self.file).read_volatile(&mut rest)?;
        self.advance(read, true);
        Ok(from_head + read)
    }
}

impl Seek for ImageFile {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(at) => Some(at),
            SeekFrom::End(delta) => self.len.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.pos.checked_add_signed(delta),
        };
        self.pos = target.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "seek before the image's start")
        })?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    /// An unlinked file of `len` bytes, byte i being i * 7 mod 251.
    fn image(len: usize) -> (File, Vec<u8>) {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let name = format!(
            "nestor-image-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let file = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        (file, bytes)
    }

    #[test]
    fn reads_and_seeks_match_the_file_in_and_past_the_head() {
        let (file, bytes) = image(HEAD_LEN * 3 + 100);
        let mut image = ImageFile::new(file).unwrap();
        // Across the head's end, from the file's end, relative, and past the end.
        for (to, len) in [
            (SeekFrom::Start(HEAD_LEN as u64 - 10), 30),
            (SeekFrom::Start(5), 64),
            (SeekFrom::End(-50), 80),
            (SeekFrom::Current(-4000), 16),
            (SeekFrom::Start(0), 8),
        ] {
            let at = image.seek(to).unwrap() as usize;
            let mut got = vec![0; len];
            let mut filled = 0;
            while filled < len {
                match image.read(&mut got[filled..]).unwrap() {
                    0 => break,
                    n => filled += n,
                }
            }
            let end = (at + len).min(bytes.len());
            assert_eq!(&got[..filled], &bytes[at..end], "at {at}");
        }
        assert!(image.seek(SeekFrom::Current(-1_000_000)).is_err());
    }

    #[test]
    fn volatile_reads_fill_guest_memory_from_the_head_and_the_file() {
        let (file, bytes) = image(HEAD_LEN * 2);
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x4000)]).unwrap();
        let mut image = ImageFile::new(file).unwrap();
        image.seek(SeekFrom::Start(100)).unwrap();
        mem.read_exact_volatile_from(GuestAddress(0), &mut image, bytes.len() - 100)
            .unwrap();
        let mut got = vec![0; bytes.len() - 100];
        mem.read_slice(&mut got, GuestAddress(0)).unwrap();
        assert_eq!(got, bytes[100..]);
    }

    #[test]
    fn an_image_shorter_than_the_head_is_read_whole() {
        let (file, bytes) = image(300);
        let mut image = ImageFile::new(file).unwrap();
        let mut got = Vec::new();
        image.read_to_end(&mut got).unwrap();
        assert_eq!(got, bytes);
    }
}

//! Opening a disk image for one VM: with the access the disk needs, under an open file
//! description lock (F_OFD_SETLK) on the whole image: a write lock for a writable disk, a
//! read lock for a read-only one. Two nestors, or one given the same image twice, then never
//! write an image at once, nor read one while another writes it.
//!
//! The lock belongs to the returned file's open file description, so it lasts as long as
//! the disk device keeps that file, and the kernel drops it whatever way nestor ends. Locks
//! of two descriptions conflict even within one process, which is what catches the same
//! image given twice.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DiskImageError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} is in use by another --disk or another process{}",
        if *read_only { " that writes it" } else { "" }
    )]
    InUse { path: PathBuf, read_only: bool },
}

/// Opens `path` read-only or read-write and locks it for that use.
pub fn open_locked(path: &Path, read_only: bool) -> Result<File, DiskImageError> {
    let file = OpenOptions::new()
        .read(true)
        .write(!read_only)
        .open(path)
        .map_err(|source| DiskImageError::Open {
            path: path.into(),
            source,
        })?;
    let kind = if read_only {
        libc::F_RDLCK
    } else {
        libc::F_WRLCK
    };
    // A holder that lets go between the refused lock and the look at it gets one retry.
    match lock(&file, kind).or_else(|e| match holder(&file, kind) {
        Some(false) => lock(&file, kind),
        _ => Err(e),
    }) {
        Ok(()) => Ok(file),
        // A kernel without file locking answers every F_OFD_SETLK with EACCES too; only
        // a lock that F_OFD_GETLK can see means someone holds the image.
        Err(e)
            if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES))
                && holder(&file, kind) == Some(true) =>
        {
            Err(DiskImageError::InUse {
                path: path.into(),
                read_only,
            })
        }
        Err(e) => {
            // A file system without locks: the image still works, unguarded.
            log::warn!(
                "cannot lock {}: {e}; nothing stops another writer",
                path.display()
            );
            Ok(file)
        }
    }
}

fn request(kind: libc::c_int) -> libc::flock {
    libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        // Zero: to the end of the file, however it grows.
        l_len: 0,
        // Must be zero for OFD locks.
        l_pid: 0,
    }
}

fn lock(file: &File, kind: libc::c_int) -> io::Result<()> {
    let request = request(kind);
    // SAFETY: `file` is an open descriptor and `request` outlives the call, which only reads
    // it.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &request) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether another open file description holds a lock that conflicts with `kind`; None
/// when the kernel has no file locking (F_OFD_GETLK fails).
fn holder(file: &File, kind: libc::c_int) -> Option<bool> {
    let mut probe = request(kind);
    // SAFETY: as in `lock`; the kernel writes the conflicting lock, if any, into `probe`.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut probe) };
    (rc == 0).then_some(probe.l_type != libc::F_UNLCK as libc::c_short)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("nestor-{name}-{}", std::process::id()));
        std::fs::write(&path, [0u8; 512]).unwrap();
        path
    }

    #[test]
    fn writers_exclude_everyone_readers_share() {
        let path = image("lock-unit");
        let writer = open_locked(&path, false).unwrap();
        assert!(matches!(
            open_locked(&path, false),
            Err(DiskImageError::InUse { .. })
        ));
        assert!(matches!(
            open_locked(&path, true),
            Err(DiskImageError::InUse { .. })
        ));
        drop(writer);

        let reader = open_locked(&path, true).unwrap();
        let other_reader = open_locked(&path, true).unwrap();
        let refused = open_locked(&path, false).unwrap_err();
        assert!(refused.to_string().contains(&path.display().to_string()));
        drop((reader, other_reader));
        open_locked(&path, false).unwrap();
        std::fs::remove_file(&path).unwrap();
    }
}

//! The API's Unix socket file: created owner-only, a stale one (left by a nestor that did
//! not exit cleanly) replaced, anything else at the path refused, and removed again when
//! the listener is dropped.

use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::config::ConfigError;

/// The listening socket; dropping it removes the file.
pub struct ApiListener {
    pub listener: UnixListener,
    path: PathBuf,
}

fn refused(path: &Path, reason: impl Into<String>) -> ConfigError {
    ConfigError::ApiSocket {
        path: path.into(),
        reason: reason.into(),
    }
}

/// Clears the way for a new socket at `path`: nothing there, or a socket nobody listens on.
fn remove_stale(path: &Path) -> Result<(), ConfigError> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(refused(path, e.to_string())),
    };
    if !metadata.file_type().is_socket() {
        return Err(refused(
            path,
            "exists and is not a socket; remove it or pick another path",
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(refused(path, "another process is listening on it")),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => std::fs::remove_file(path)
            .map_err(|e| refused(path, format!("cannot remove the stale socket: {e}"))),
        Err(e) => Err(refused(path, e.to_string())),
    }
}

impl ApiListener {
    /// Binds a new socket at `path`, readable and writable by its owner only.
    pub fn bind(path: &Path) -> Result<Self, ConfigError> {
        remove_stale(path)?;
        // The umask covers the window between bind and chmod, in which another user could
        // otherwise connect. Called before nestor starts any thread, so it is the only one
        // that creates files meanwhile.
        // SAFETY: umask only swaps the process's file creation mask.
        let old_mask = unsafe { libc::umask(0o177) };
        let bound = UnixListener::bind(path);
        // SAFETY: as above.
        unsafe { libc::umask(old_mask) };
        let listener = bound.map_err(|e| refused(path, e.to_string()))?;
        let listening = Self {
            listener,
            path: path.into(),
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| refused(path, e.to_string()))?;
        listening
            .listener
            .set_nonblocking(true)
            .map_err(|e| refused(path, e.to_string()))?;
        Ok(listening)
    }
}

impl Drop for ApiListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nestor-api-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn owner_only_and_removed_on_drop() {
        let dir = scratch("perm");
        let path = dir.join("api.sock");
        let listener = ApiListener::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(listener);
        assert!(!path.exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_stale_socket_is_replaced_a_live_one_and_a_file_refused() {
        let dir = scratch("stale");
        let path = dir.join("api.sock");
        // A socket file with nobody listening: std's listener does not unlink on drop.
        drop(UnixListener::bind(&path).unwrap());
        let listener = ApiListener::bind(&path).unwrap();
        let live = ApiListener::bind(&path).err().unwrap().to_string();
        assert!(live.contains("listening"), "{live}");
        drop(listener);
        std::fs::write(&path, b"not a socket").unwrap();
        let file = ApiListener::bind(&path).err().unwrap().to_string();
        assert!(file.contains("not a socket"), "{file}");
        assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

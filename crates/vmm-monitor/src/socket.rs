//! Creating and removing the listening socket file safely.
//!
//! The socket is created with mode 0600 inside a fresh 0700 directory and renamed into
//! place, so it is never reachable with a looser mode. Its identity (device, inode) is
//! kept, so the server removes it later only if it is still the same file.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::server::ServerError;

/// Device and inode of the socket file this process created.
pub(crate) type Identity = (u64, u64);

fn bind_error(path: &Path) -> impl FnOnce(std::io::Error) -> ServerError + '_ {
    move |source| ServerError::Bind {
        path: path.to_owned(),
        source,
    }
}

/// The private directory a socket for `path` is bound in before it is moved into place.
fn private_dir(path: &Path) -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    parent.join(format!(
        ".qmp-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Creates a non-blocking listening socket at `path` with mode 0600. Refuses a path that
/// holds something other than a socket, or a socket another process listens on; a stale
/// socket (nobody listening) is replaced.
pub(crate) fn bind_private(path: &Path) -> Result<(UnixListener, Identity), ServerError> {
    match fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => {
            return Err(ServerError::NotASocket {
                path: path.to_owned(),
            })
        }
        Ok(_) if UnixStream::connect(path).is_ok() => {
            return Err(ServerError::InUse {
                path: path.to_owned(),
            })
        }
        // Nothing there, or a stale socket of a dead process: replaced by the rename below.
        _ => {}
    }
    let private = private_dir(path);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(bind_error(path))?;
    let tmp = private.join("s");
    let result = (|| {
        let listener = UnixListener::bind(&tmp)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        fs::rename(&tmp, path)?;
        let m = fs::symlink_metadata(path)?;
        Ok((listener, (m.dev(), m.ino())))
    })();
    let _ = fs::remove_file(&tmp);
    let _ = fs::remove_dir(&private);
    result.map_err(bind_error(path))
}

/// Removes the socket file if it is still the one this server created.
pub(crate) fn remove_if_same(path: &Path, identity: Identity) {
    if let Ok(m) = fs::symlink_metadata(path) {
        if (m.dev(), m.ino()) == identity {
            let _ = fs::remove_file(path);
        }
    }
}

//! The socket a proxy plugin serves containerd on: whoever can connect drives the node's
//! containers, so it is never reachable by anyone but root, not even for an instant.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use crate::sys;

fn context(what: &str, path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Binds `address` with mode 0600; a missing parent directory is created 0700. A socket left by
/// an earlier run is replaced; any other file there is an error, never removed.
pub fn bind_root_only(address: &Path) -> io::Result<tokio::net::UnixListener> {
    if let Some(dir) = address.parent() {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| context("create", dir, e))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| context("chmod", dir, e))?;
        }
    }
    match std::fs::symlink_metadata(address) {
        Ok(m) if m.file_type().is_socket() => {
            std::fs::remove_file(address).map_err(|e| context("remove stale", address, e))?
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", address.display()),
            ))
        }
        Err(_) => {}
    }
    // The socket file is created by bind(2) with the umask applied: no window with wider modes.
    let old = sys::umask(0o177);
    let l = tokio::net::UnixListener::bind(address);
    sys::umask(old);
    let l = l.map_err(|e| context("bind", address, e))?;
    std::fs::set_permissions(address, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| context("chmod", address, e))?;
    Ok(l)
}

/// The socket path of a `unix://` address.
pub fn socket_path(address: &str) -> &Path {
    Path::new(address.strip_prefix("unix://").unwrap_or(address))
}

/// The pid of the process serving `address` (SO_PEERCRED): a pod's shim daemon is a process
/// that the shim's `start` left behind, and its pid is printed nowhere.
pub fn peer_pid(address: &str) -> io::Result<u32> {
    let s = std::os::unix::net::UnixStream::connect(socket_path(address))?;
    let cred = nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(io::Error::from)?;
    Ok(cred.pid() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn socket_is_root_only_and_replaces_a_stale_one() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("sub/s.sock");
        let l = bind_root_only(&sock).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&sock), 0o600);
        assert_eq!(mode(sock.parent().unwrap()), 0o700);
        drop(l);
        // The file of a listener that is gone is replaced.
        let _l = bind_root_only(&sock).unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        let e = bind_root_only(&file).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&file).unwrap(), b"x");
    }
}

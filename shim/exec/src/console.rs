//! A terminal exec's pty, made inside the container as runc's `setupConsole` makes it: the
//! master goes to the shim through its console socket, the peer becomes the process's stdio and
//! controlling terminal.

use std::os::fd::OwnedFd;

use crate::{
    error::{os, Result},
    sys,
};

/// `socket` was connected to the shim's console socket before the helper left the host's
/// mount namespace; `size` is the process's `consoleSize` (rows, columns), applied when both
/// are set.
pub fn set_up(socket: OwnedFd, size: Option<(u16, u16)>) -> Result<()> {
    let master = sys::open_ptmx().map_err(os("open /dev/ptmx"))?;
    let peer = sys::pty_peer(&master).map_err(os("open the pty's peer"))?;
    if let Some((rows, cols)) = size.filter(|&(r, c)| r != 0 && c != 0) {
        sys::set_window_size(&master, rows, cols).map_err(os("resize the pty"))?;
    }
    sys::send_fd(&socket, &master, b"/dev/ptmx").map_err(os("send the pty master"))?;
    drop((socket, master));
    sys::dup_stdio(&peer).map_err(os("dup the pty onto stdio"))?;
    sys::set_controlling_terminal().map_err(os("set the controlling terminal"))
}

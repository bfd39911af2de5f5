//! The only place with `unsafe` in this crate.

/// Sets the process umask and returns the previous one.
pub fn umask(mask: u32) -> u32 {
    // SAFETY: umask(2) only swaps an integer in the process's fs context; it cannot fail and
    // touches no memory we own.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

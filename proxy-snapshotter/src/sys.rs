//! The only place with `unsafe`: thin wrappers over libc calls std does not expose.

/// Delivers SIGKILL to this process (test crash points): the same effect as `kill -9` from
/// outside, at an exact instant.
pub fn sigkill_self() -> ! {
    // SAFETY: kill(2) with our own pid and a valid signal number has no memory-safety
    // preconditions. SIGKILL cannot be caught, so the process ends here.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    // Not reached; keep the type system satisfied if the signal were somehow delayed.
    std::process::abort()
}

/// Puts the calling thread in the SCHED_IDLE class: it runs only when no other thread of the
/// node wants the CPU.
pub fn make_current_thread_idle() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler(2) with pid 0 (the calling thread) and a fully initialised
    // sched_param that the kernel only reads during the call.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `FS_TOPDIR_FL` (`chattr +T`): ext4's Orlov allocator places each directory made inside `dir`
/// as the top of its own hierarchy (in a block group of its own choosing) rather than beside
/// `dir`. Filesystems without the flag refuse it (EOPNOTSUPP, ENOTTY, EINVAL).
pub fn set_topdir(dir: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int through the valid pointer to `flags`.
    if unsafe { libc::ioctl(dir.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if flags & FS_TOPDIR_FL != 0 {
        return Ok(());
    }
    flags |= FS_TOPDIR_FL;
    // SAFETY: FS_IOC_SETFLAGS reads one int through the valid pointer to `flags`.
    if unsafe { libc::ioctl(dir.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `statfs(2)`'s `f_type` of the filesystem holding `p`.
pub fn fs_magic(p: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: an all-zero statfs is a valid value of the plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: statfs(2) reads the NUL-terminated path and writes one struct through the valid
    // pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_type as u64)
}

pub const BTRFS_SUPER_MAGIC: u64 = 0x9123_683e;

/// `struct btrfs_ioctl_vol_args` (linux/btrfs.h).
#[repr(C)]
struct BtrfsVolArgs {
    fd: i64,
    name: [u8; 4088],
}

/// `struct btrfs_ioctl_qgroup_limit_args` (linux/btrfs.h).
#[repr(C)]
struct BtrfsQgroupLimitArgs {
    qgroupid: u64,
    flags: u64,
    max_rfer: u64,
    max_excl: u64,
    rsv_rfer: u64,
    rsv_excl: u64,
}

/// `_IOW(BTRFS_IOCTL_MAGIC, 14, struct btrfs_ioctl_vol_args)`.
const BTRFS_IOC_SUBVOL_CREATE: libc::c_ulong = 0x5000_940e;
/// `_IOR(BTRFS_IOCTL_MAGIC, 43, struct btrfs_ioctl_qgroup_limit_args)`.
const BTRFS_IOC_QGROUP_LIMIT: libc::c_ulong = 0x8030_942b;
const BTRFS_QGROUP_LIMIT_MAX_RFER: u64 = 1;

/// Creates the btrfs subvolume `name` in the directory `parent`.
pub fn btrfs_subvol_create(parent: &std::fs::File, name: &str) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut args = BtrfsVolArgs {
        fd: 0,
        name: [0; 4088],
    };
    if name.is_empty() || name.len() >= args.name.len() || name.contains(['/', '\0']) {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    args.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: the kernel reads one btrfs_ioctl_vol_args (NUL-terminated name) through the valid
    // pointer during the call.
    if unsafe { libc::ioctl(parent.as_raw_fd(), BTRFS_IOC_SUBVOL_CREATE, &args) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Limits the bytes the subvolume open as `subvol` may reference (its own qgroup). ENOTCONN:
/// quotas are off on the filesystem.
pub fn btrfs_qgroup_limit(subvol: &std::fs::File, max_bytes: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut args = BtrfsQgroupLimitArgs {
        // 0: the qgroup of the subvolume the descriptor is in.
        qgroupid: 0,
        flags: BTRFS_QGROUP_LIMIT_MAX_RFER,
        max_rfer: max_bytes,
        max_excl: 0,
        rsv_rfer: 0,
        rsv_excl: 0,
    };
    // SAFETY: the kernel reads (and may write back) one btrfs_ioctl_qgroup_limit_args through
    // the valid pointer during the call.
    if unsafe { libc::ioctl(subvol.as_raw_fd(), BTRFS_IOC_QGROUP_LIMIT, &mut args) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

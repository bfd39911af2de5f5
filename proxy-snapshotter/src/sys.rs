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

/// A filesystem's counters, as `statfs(2)` gives them.
pub struct FsCounters {
    pub block_size: u64,
    pub blocks: u64,
    pub blocks_free: u64,
    pub inodes: u64,
    pub inodes_free: u64,
}

/// `statfs(2)` of the filesystem holding `p`.
pub fn statfs(p: &std::path::Path) -> std::io::Result<FsCounters> {
    let c = cstr(p)?;
    // SAFETY: an all-zero statfs is a valid value of the plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: statfs(2) reads the NUL-terminated path and writes one struct through the valid
    // pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(FsCounters {
        block_size: st.f_bsize as u64,
        blocks: st.f_blocks as u64,
        blocks_free: st.f_bfree as u64,
        inodes: st.f_files as u64,
        inodes_free: st.f_ffree as u64,
    })
}

/// `struct loop_info64` (linux/loop.h).
#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    sizelimit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

/// `struct loop_config` (linux/loop.h).
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

const LOOP_CONFIGURE: libc::c_ulong = 0x4c0a;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4c82;
/// The device detaches itself when its last user (the mount) goes.
const LO_FLAGS_AUTOCLEAR: u32 = 4;

pub const LOOP_CONTROL: &str = "/dev/loop-control";

/// Binds `image` to a free loop device that detaches itself once the device is closed and
/// unmounted; returns the device, open, and its path. Races with other users of loop devices
/// are retried.
pub fn loop_attach(image: &std::fs::File) -> std::io::Result<(std::fs::File, std::path::PathBuf)> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let ctl = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(LOOP_CONTROL)?;
    let mut last = std::io::Error::from_raw_os_error(libc::EBUSY);
    for _ in 0..16 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let path = std::path::PathBuf::from(format!("/dev/loop{n}"));
        let dev = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)?;
        let mut cfg = LoopConfig {
            fd: image.as_raw_fd() as u32,
            block_size: 0,
            info: LoopInfo64 {
                device: 0,
                inode: 0,
                rdevice: 0,
                offset: 0,
                sizelimit: 0,
                number: 0,
                encrypt_type: 0,
                encrypt_key_size: 0,
                flags: LO_FLAGS_AUTOCLEAR,
                file_name: [0; 64],
                crypt_name: [0; 64],
                encrypt_key: [0; 32],
                init: [0; 2],
            },
            reserved: [0; 8],
        };
        let name = b"podsnap";
        cfg.info.file_name[..name.len()].copy_from_slice(name);
        // SAFETY: LOOP_CONFIGURE reads one fully initialised loop_config through the valid
        // pointer during the call; the image descriptor stays open across it.
        if unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE, &cfg) } == 0 {
            return Ok((dev, path));
        }
        last = std::io::Error::last_os_error();
        if last.raw_os_error() != Some(libc::EBUSY) {
            return Err(last);
        }
    }
    Err(last)
}

fn cstr(p: &std::path::Path) -> std::io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
}

/// Mounts the ext4 filesystem on block device `dev` at `at`.
pub fn mount_ext4(dev: &std::path::Path, at: &std::path::Path) -> std::io::Result<()> {
    let (dev, at) = (cstr(dev)?, cstr(at)?);
    // SAFETY: mount(2) reads the NUL-terminated strings during the call; no data argument.
    let rc = unsafe {
        libc::mount(
            dev.as_ptr(),
            at.as_ptr(),
            c"ext4".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Detaches the mount at `at` now; the filesystem goes when nothing uses it any more.
pub fn umount_detach(at: &std::path::Path) -> std::io::Result<()> {
    let at = cstr(at)?;
    // SAFETY: umount2(2) reads the NUL-terminated path during the call.
    if unsafe { libc::umount2(at.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The extended attribute `name` of `p` (not following a symlink); None when it has none.
pub fn get_xattr(p: &std::path::Path, name: &str) -> std::io::Result<Option<Vec<u8>>> {
    let (c, n) = (cstr(p)?, cstr(std::path::Path::new(name))?);
    let mut buf = vec![0u8; 256];
    // SAFETY: lgetxattr(2) reads the NUL-terminated strings and writes at most `buf.len()`
    // bytes into the valid buffer.
    let rc = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENODATA) => Ok(None),
            _ => Err(e),
        };
    }
    buf.truncate(rc as usize);
    Ok(Some(buf))
}

/// Sets the extended attribute `name` of `p` (not following a symlink) to `value`.
pub fn set_xattr(p: &std::path::Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    let (c, n) = (cstr(p)?, cstr(std::path::Path::new(name))?);
    // SAFETY: lsetxattr(2) reads the NUL-terminated strings and `value.len()` bytes of the
    // valid slice during the call.
    let rc = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

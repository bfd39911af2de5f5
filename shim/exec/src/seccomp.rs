//! A container's seccomp filter for an exec. runc's exec compiles the container's profile with
//! the same runc and libseccomp that compiled the filter of the container's init, into the same
//! program; the helper takes that program from the init (PTRACE_SECCOMP_GET_FILTER, the init
//! stopped for the read) instead of compiling the profile again. The first exec of a container
//! keeps it in the bundle, which lives as long as the container, for the next ones.
//!
//! Which of the init's filters: oldest first, the ones the shim itself runs under (the helper
//! has the same), then runc's, then any the container's programs added.

use std::path::Path;

use crate::{
    error::{Error, Result},
    sys::{self, BpfInsn},
};

/// In the container's bundle (root's, out of the container's sight): the program, as the kernel
/// gave it.
const CACHE: &str = "podshim-exec-seccomp.bpf";

/// The kernel's limit on a filter's length (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;

pub struct Filter {
    pub prog: Vec<BpfInsn>,
    pub flags: u32,
}

impl Filter {
    /// Installs the filter on the calling process.
    pub fn apply(&self) -> Result<()> {
        sys::seccomp_set_filter(&self.prog, self.flags)
            .map_err(crate::error::os("unable to init seccomp"))
    }
}

/// The filter runc installed in the init `pid`, from the bundle's copy or from the init. What
/// cannot be read sends the exec to runc.
pub fn of_init(pid: u32, bundle: &Path, flags: u32) -> Result<Filter> {
    let cache = bundle.join(CACHE);
    if let Some(prog) = std::fs::read(&cache).ok().and_then(|b| decode(&b)) {
        return Ok(Filter { prog, flags });
    }
    let unsupported = |why: String| Error::Unsupported(format!("the init's seccomp filter: {why}"));
    let count = |who: &str| {
        let status = std::fs::read_to_string(format!("/proc/{who}/status"))
            .map_err(|e| unsupported(e.to_string()))?;
        filters(&status)
            .ok_or_else(|| unsupported("no Seccomp_filters in /proc/<pid>/status".into()))
    };
    let index = runc_filter_index(count("self")?, count(&pid.to_string())?)
        .ok_or_else(|| unsupported("the init runs under no filter of runc's".into()))?;
    let prog = sys::seccomp_filter_of(pid as libc::pid_t, index)
        .map_err(|e| unsupported(e.to_string()))?;
    // A later exec reads it again from the init if the copy cannot be kept.
    let tmp = bundle.join(format!("{CACHE}.{}", std::process::id()));
    if std::fs::write(&tmp, encode(&prog)).is_ok() {
        let _ = std::fs::rename(&tmp, &cache).or_else(|_| std::fs::remove_file(&tmp));
    }
    Ok(Filter { prog, flags })
}

/// `Seccomp_filters:` of a `/proc/<pid>/status`.
fn filters(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp_filters:"))
        .and_then(|v| v.trim().parse().ok())
}

/// PTRACE_SECCOMP_GET_FILTER's index (0 is the newest) of runc's filter among the init's
/// `theirs`, when the helper runs under `ours`.
fn runc_filter_index(ours: u32, theirs: u32) -> Option<u32> {
    theirs.checked_sub(ours)?.checked_sub(1)
}

fn encode(prog: &[BpfInsn]) -> Vec<u8> {
    prog.iter()
        .flat_map(|i| {
            let mut b = [0u8; 8];
            b[..2].copy_from_slice(&i.code.to_ne_bytes());
            b[2] = i.jt;
            b[3] = i.jf;
            b[4..].copy_from_slice(&i.k.to_ne_bytes());
            b
        })
        .collect()
}

fn decode(bytes: &[u8]) -> Option<Vec<BpfInsn>> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(8) || bytes.len() / 8 > MAX_INSNS {
        return None;
    }
    Some(
        bytes
            .chunks_exact(8)
            .map(|b| BpfInsn {
                code: u16::from_ne_bytes([b[0], b[1]]),
                jt: b[2],
                jf: b[3],
                k: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runcs_filter_is_the_one_after_the_shims_own() {
        assert_eq!(runc_filter_index(0, 1), Some(0));
        // The container's program added two of its own after runc's.
        assert_eq!(runc_filter_index(0, 3), Some(2));
        // The shim runs under one (a unit's SystemCallFilter): the init has it too.
        assert_eq!(runc_filter_index(1, 2), Some(0));
        assert_eq!(runc_filter_index(1, 1), None);
        assert_eq!(runc_filter_index(0, 0), None);
        assert_eq!(filters("Seccomp:\t2\nSeccomp_filters:\t3\n"), Some(3));
        assert_eq!(filters("Seccomp:\t0\n"), None);
    }

    #[test]
    fn the_kept_copy_reads_back_and_a_damaged_one_is_ignored() {
        let prog = vec![
            BpfInsn {
                code: 0x20,
                jt: 0,
                jf: 0,
                k: 4,
            },
            BpfInsn {
                code: 0x15,
                jt: 1,
                jf: 2,
                k: 0xc000_003e,
            },
            BpfInsn {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: 0x7fff_0000,
            },
        ];
        let back = decode(&encode(&prog)).unwrap();
        assert_eq!(back.len(), 3);
        assert!(back
            .iter()
            .zip(&prog)
            .all(|(a, b)| (a.code, a.jt, a.jf, a.k) == (b.code, b.jt, b.jf, b.k)));
        assert!(decode(&encode(&prog)[..23]).is_none());
        assert!(decode(&[]).is_none());
        assert!(decode(&vec![0; 8 * (MAX_INSNS + 1)]).is_none());
    }

    #[test]
    fn a_process_without_a_filter_has_none_to_give() {
        // This test process runs under no filter of runc's: the exec would go to runc.
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        assert!(matches!(
            of_init(me, dir.path(), 0),
            Err(Error::Unsupported(_))
        ));
    }
}

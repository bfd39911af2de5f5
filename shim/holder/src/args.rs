//! The command line a shim starts its holder with, written by the shim (`HolderSpec::to_args`)
//! and read here: `-podshim-sandbox-holder <sandbox id> [--userns P] [--netns P] [--ipc] [--uts] [--pid]
//! [--hostname H] [--sysctl K=V]...`. The marker and the id stay first, so that the shim can tell
//! its holder from a process that reused its pid by reading `/proc/<pid>/cmdline`.

use core::ffi::CStr;

pub const MARKER: &str = "-podshim-sandbox-holder";
/// Followed by the network namespace CRI made for the pod (absent for a hostNetwork pod).
pub const NETNS: &str = "--netns";
/// Followed by the user namespace of a `hostUsers: false` pod, joined before anything else, so
/// that every namespace the holder then creates is the pod's, owned by the mapped root.
pub const USERNS: &str = "--userns";
/// New IPC, UTS and PID namespaces for the pod.
pub const IPC: &str = "--ipc";
pub const UTS: &str = "--uts";
pub const PID: &str = "--pid";
/// Followed by the pod's hostname (with `--uts`).
pub const HOSTNAME: &str = "--hostname";
/// Followed by `name=value`; repeated.
pub const SYSCTL: &str = "--sysctl";

/// What a holder was asked to do; borrows the arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec<'a> {
    pub sandbox_id: &'a CStr,
    pub netns: Option<&'a CStr>,
    pub userns: Option<&'a CStr>,
    pub new_ipc: bool,
    pub new_uts: bool,
    pub new_pid: bool,
    pub hostname: Option<&'a CStr>,
    /// The whole argument list again: `sysctls` walks it (no allocator here).
    args: &'a [&'a CStr],
}

/// Why the arguments were refused; the holder prints it and the shim names it in its error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgError<'a> {
    MissingMarker,
    MissingSandboxId,
    MissingValue(&'a CStr),
    Unknown(&'a CStr),
    SysctlWithoutValue(&'a CStr),
    BadSysctlName(&'a CStr),
}

impl<'a> Spec<'a> {
    /// Parses the arguments after the program name, all of them before the holder acts on any.
    pub fn parse(args: &'a [&'a CStr]) -> Result<Spec<'a>, ArgError<'a>> {
        let mut it = args.iter().copied();
        if it.next().map(CStr::to_bytes) != Some(MARKER.as_bytes()) {
            return Err(ArgError::MissingMarker);
        }
        let mut spec = Spec {
            sandbox_id: it.next().ok_or(ArgError::MissingSandboxId)?,
            netns: None,
            userns: None,
            new_ipc: false,
            new_uts: false,
            new_pid: false,
            hostname: None,
            args,
        };
        while let Some(a) = it.next() {
            let flag = a.to_bytes();
            let mut value = || it.next().ok_or(ArgError::MissingValue(a));
            if flag == NETNS.as_bytes() {
                spec.netns = Some(value()?);
            } else if flag == USERNS.as_bytes() {
                spec.userns = Some(value()?);
            } else if flag == IPC.as_bytes() {
                spec.new_ipc = true;
            } else if flag == UTS.as_bytes() {
                spec.new_uts = true;
            } else if flag == PID.as_bytes() {
                spec.new_pid = true;
            } else if flag == HOSTNAME.as_bytes() {
                spec.hostname = Some(value()?);
            } else if flag == SYSCTL.as_bytes() {
                let kv = value()?;
                let (name, _) = split_sysctl(kv).ok_or(ArgError::SysctlWithoutValue(kv))?;
                if !valid_sysctl_name(name) {
                    return Err(ArgError::BadSysctlName(kv));
                }
            } else {
                return Err(ArgError::Unknown(a));
            }
        }
        Ok(spec)
    }

    /// The `(name, value)` pairs of `--sysctl`, in order; `parse` checked them. Walks flags and
    /// values as `parse` did, so that a value that reads like `--sysctl` is not taken for one.
    pub fn sysctls(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let mut it = self.args.iter().skip(2);
        core::iter::from_fn(move || loop {
            let flag = it.next()?.to_bytes();
            if [USERNS, NETNS, HOSTNAME, SYSCTL]
                .iter()
                .any(|f| f.as_bytes() == flag)
            {
                let value = it.next()?;
                if flag == SYSCTL.as_bytes() {
                    return split_sysctl(value);
                }
            }
        })
    }
}

fn split_sysctl(kv: &CStr) -> Option<(&[u8], &[u8])> {
    let kv = kv.to_bytes();
    let eq = kv.iter().position(|&b| b == b'=')?;
    Some((&kv[..eq], &kv[eq + 1..]))
}

/// runc's rule for the file under /proc/sys a sysctl names: dots become slashes (slashes stay). A
/// name with an empty or `..` segment could leave /proc/sys.
pub fn valid_sysctl_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name
            .split(|&b| b == b'.' || b == b'/')
            .all(|seg| !seg.is_empty() && seg != b"..")
        && !name.contains(&0)
}

/// Writes `/proc/sys/<name with dots as slashes>` and a NUL into `buf`; `None` if it does not fit.
pub fn sysctl_path<'b>(name: &[u8], buf: &'b mut [u8]) -> Option<&'b CStr> {
    const PREFIX: &[u8] = b"/proc/sys/";
    let len = PREFIX.len() + name.len();
    if len >= buf.len() {
        return None;
    }
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    for (dst, &b) in buf[PREFIX.len()..len].iter_mut().zip(name) {
        *dst = if b == b'.' { b'/' } else { b };
    }
    buf[len] = 0;
    CStr::from_bytes_with_nul(&buf[..=len]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    /// The holder's arguments, split at NUL bytes as the kernel hands them over: parsed or
    /// refused, never a panic (a panic in the holder aborts a pod's namespaces).
    #[test]
    fn fuzz_the_argument_parser() {
        let seed = b"-podshim-sandbox-holder\0sb1\0--userns\0/proc/1/fd/7\0--netns\0/var/run/netns/cni-1\0--ipc\0--uts\0--hostname\0web\0--sysctl\0net.ipv4.ip_forward=1";
        podshim_common::fuzz::run("holder_args", &[seed], |b| {
            let owned: Vec<CString> = b
                .split(|&c| c == 0)
                .map(|a| CString::new(a).unwrap())
                .collect();
            let args: Vec<&CStr> = owned.iter().map(CString::as_c_str).collect();
            if let Ok(spec) = Spec::parse(&args) {
                for (k, v) in spec.sysctls() {
                    let mut buf = [0u8; 256];
                    let _ = (sysctl_path(k, &mut buf), v.len());
                }
            }
        });
    }

    fn cstrs(v: &[&str]) -> Vec<CString> {
        v.iter().map(|s| CString::new(*s).unwrap()).collect()
    }

    #[test]
    fn parses_every_flag_and_walks_sysctls_in_order() {
        let owned = cstrs(&[
            MARKER,
            "pod1",
            "--netns",
            "/var/run/netns/cni-1",
            "--userns",
            "/proc/1/fd/7",
            "--ipc",
            "--uts",
            "--hostname",
            "web-0",
            "--sysctl",
            "net.ipv4.ip_forward=1",
            "--sysctl",
            "kernel.msgmax=a=b",
        ]);
        let args: Vec<&CStr> = owned.iter().map(CString::as_c_str).collect();
        let spec = Spec::parse(&args).unwrap();
        assert_eq!(spec.sandbox_id.to_bytes(), b"pod1");
        assert_eq!(spec.netns.unwrap().to_bytes(), b"/var/run/netns/cni-1");
        assert_eq!(spec.userns.unwrap().to_bytes(), b"/proc/1/fd/7");
        assert!(spec.new_ipc && spec.new_uts && !spec.new_pid);
        assert_eq!(spec.hostname.unwrap().to_bytes(), b"web-0");
        let sysctls: Vec<_> = spec.sysctls().collect();
        assert_eq!(
            sysctls,
            [
                (&b"net.ipv4.ip_forward"[..], &b"1"[..]),
                (&b"kernel.msgmax"[..], &b"a=b"[..])
            ]
        );
    }

    #[test]
    fn refuses_what_it_cannot_apply_exactly() {
        let kind = |e: &ArgError| match e {
            ArgError::MissingMarker => "marker",
            ArgError::MissingSandboxId => "id",
            ArgError::MissingValue(_) => "value",
            ArgError::Unknown(_) => "unknown",
            ArgError::SysctlWithoutValue(_) => "no =",
            ArgError::BadSysctlName(_) => "bad name",
        };
        let cases: &[(&[&str], &str)] = &[
            (&["x"], "marker"),
            (&[MARKER], "id"),
            (&[MARKER, "p", "--netns"], "value"),
            (&[MARKER, "p", "--bogus"], "unknown"),
            (&[MARKER, "p", "--sysctl", "a.b"], "no ="),
            (&[MARKER, "p", "--sysctl", "net/../../x=1"], "bad name"),
            (&[MARKER, "p", "--userns"], "value"),
        ];
        for (argv, want) in cases {
            let owned = cstrs(argv);
            let args: Vec<&CStr> = owned.iter().map(CString::as_c_str).collect();
            let err = Spec::parse(&args).unwrap_err();
            assert_eq!(kind(&err), *want, "{argv:?}: {err:?}");
        }
    }

    #[test]
    fn sysctl_names_stay_under_proc_sys() {
        let mut buf = [0u8; 64];
        let p = sysctl_path(b"net.ipv4.ip_unprivileged_port_start", &mut buf).unwrap();
        assert_eq!(
            p.to_bytes(),
            b"/proc/sys/net/ipv4/ip_unprivileged_port_start"
        );
        assert!(sysctl_path(&[b'a'; 60], &mut buf).is_none());
        assert!(valid_sysctl_name(b"kernel.shm_rmid_forced"));
        for bad in [
            "",
            "..",
            "net...x",
            "/etc/passwd",
            "net./..",
            "a..b",
            "net/../x",
        ] {
            assert!(!valid_sysctl_name(bad.as_bytes()), "{bad:?} accepted");
        }
    }
}

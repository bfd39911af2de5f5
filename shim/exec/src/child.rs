//! The forked child, already in the container's cgroups and namespaces, becomes the exec's
//! process in the order of runc's nsexec stage 2 (a new session, root of the user namespace)
//! and setns init (`setns_init_linux.go` and `finalizeNamespace`): session keyring, terminal,
//! no_new_privs, seccomp (here without no_new_privs), descriptors, bounding set, user,
//! capabilities, the program's path, seccomp (here with no_new_privs), execve. It returns only
//! with the reason it could not exec.
//!
//! Invariant: every descriptor above 2 is close-on-exec before anything of the container is
//! read, so only the process's stdio reaches its program; the child's root and working
//! directory are the container's since setns(CLONE_NEWNS), so nothing of the host is
//! reachable by path.

use std::{convert::Infallible, ffi::CString, io::ErrorKind, os::fd::OwnedFd};

use crate::{
    caps::CapSets,
    console,
    error::{os, Error, Result},
    seccomp::Filter,
    spec::Plan,
    sys, user,
};

pub struct Child<'a> {
    pub plan: &'a Plan,
    pub caps: CapSets,
    pub container_id: &'a str,
    pub no_new_keyring: bool,
    /// The shim's console socket, for a terminal process.
    pub console: Option<OwnedFd>,
    /// The container's seccomp filter.
    pub filter: Option<Filter>,
}

impl Child<'_> {
    /// Execs the program, or says why not.
    pub fn exec(mut self) -> Error {
        match self.steps() {
            Ok(never) => match never {},
            Err(e) => e,
        }
    }

    fn steps(&mut self) -> Result<Infallible> {
        let plan = self.plan;
        sys::setsid().map_err(os("setsid failed"))?;
        // Root of the user namespace joined (host root otherwise): the keyring below is made
        // with these ids, as runc's is.
        sys::setuid(0).map_err(os("setuid failed"))?;
        sys::setgid(0).map_err(os("setgid failed"))?;
        sys::reset_signals().map_err(os("reset signals"))?;
        if !self.no_new_keyring {
            let name = CString::new(format!("_ses.{}", self.container_id))
                .map_err(|_| Error::Failed("container id contains a NUL byte".into()))?;
            match sys::join_session_keyring(&name) {
                Err(e) if e.raw_os_error() != Some(libc::ENOSYS) => {
                    return Err(os("unable to join session keyring")(e));
                }
                _ => {}
            }
        }
        if let Some(socket) = self.console.take() {
            console::set_up(socket, plan.console_size)?;
        }
        if plan.no_new_privileges {
            sys::set_no_new_privs().map_err(os("prctl(PR_SET_NO_NEW_PRIVS)"))?;
        }
        // Without no_new_privs installing a filter needs CAP_SYS_ADMIN: while it is still held.
        if let (Some(filter), false) = (&self.filter, plan.no_new_privileges) {
            filter.apply()?;
        }
        sys::cloexec_from(3).map_err(os("error closing exec fds"))?;
        // First as the caller: a directory only it may enter; else again as the user, for one
        // only the user may enter.
        let chdir_again = match std::env::set_current_dir(&plan.cwd) {
            Ok(()) => false,
            Err(e) if e.kind() == ErrorKind::PermissionDenied => true,
            Err(e) => return Err(self.chdir_failed(e)),
        };
        sys::drop_bounding(self.caps.bounding, self.caps.last)
            .map_err(os("unable to apply bounding set"))?;
        sys::set_keep_caps(true).map_err(os("unable to set keep caps"))?;
        let home = self.setup_user().map_err(|e| match e {
            Error::Failed(m) => Error::Failed(format!("unable to setup user: {m}")),
            other => other,
        })?;
        if chdir_again {
            std::env::set_current_dir(&plan.cwd).map_err(|e| self.chdir_failed(e))?;
        }
        sys::set_keep_caps(false).map_err(os("unable to clear keep caps"))?;
        sys::capset(
            self.caps.effective,
            self.caps.permitted,
            self.caps.inheritable,
        )
        .map_err(os("unable to apply caps"))?;
        sys::set_ambient(self.caps.ambient, self.caps.last);
        let env = user::environ(&plan.env, &home)?;
        let path_var = plan
            .env
            .iter()
            .find(|(n, _)| n == "PATH")
            .map(|(_, v)| v.as_str());
        let name = plan.args[0].to_string_lossy();
        let program = user::look_path(&name, path_var)?;
        // CVE-2024-21626: the working directory must be inside the container's root.
        if !std::env::current_dir().is_ok_and(|d| d.is_absolute()) {
            return Err(Error::Failed(
                "current working directory is outside of container mount namespace root -- \
                 possible container breakout detected"
                    .into(),
            ));
        }
        // With no_new_privs, as close to execve as possible: the fewest calls under the filter.
        if let (Some(filter), true) = (&self.filter, plan.no_new_privileges) {
            filter.apply()?;
        }
        let err = sys::execve(&user::cstring(&program)?, &plan.args, &env);
        Err(Error::Failed(format!("exec {}: {err}", program.display())))
    }

    fn chdir_failed(&self, e: std::io::Error) -> Error {
        Error::Failed(format!(
            "chdir to cwd ({:?}) set in config.json failed: {e}",
            self.plan.cwd
        ))
    }

    /// runc's setupUser for a `uid:gid` user: groups exactly the additional gids, then gid,
    /// then uid. Returns the user's home directory.
    fn setup_user(&self) -> Result<String> {
        let plan = self.plan;
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let home = user::home(&passwd, plan.uid);
        for (map, id, what) in [
            ("/proc/self/uid_map", plan.uid, "uid"),
            ("/proc/self/gid_map", plan.gid, "gid"),
        ] {
            if let Ok(map) = std::fs::read_to_string(map) {
                if !user::mapped(&map, id) {
                    return Err(Error::Failed(format!(
                        "cannot set {what} to unmapped user in user namespace"
                    )));
                }
            }
        }
        fix_stdio_owner(plan.uid)?;
        let setgroups = std::fs::read_to_string("/proc/self/setgroups").unwrap_or_default();
        if setgroups.trim() != "deny" {
            sys::setgroups(&plan.additional_gids).map_err(os("setgroups"))?;
        }
        sys::setgid(plan.gid).map_err(os("setgid"))?;
        sys::setuid(plan.uid).map_err(os("setuid"))?;
        Ok(home)
    }
}

/// runc's fixStdioPermissions: stdio the user does not own (and that is not /dev/null) is
/// given to the user, so the process can reopen it; a refusal leaves it as it is.
fn fix_stdio_owner(uid: u32) -> Result<()> {
    let null = std::fs::metadata("/dev/null").map_err(os("stat /dev/null"))?;
    for fd in 0..3 {
        let (owner, group, rdev) = sys::fstat(fd).map_err(os(format!("fstat fd {fd}")))?;
        if owner == uid || rdev == std::os::unix::fs::MetadataExt::rdev(&null) {
            continue;
        }
        match sys::fchown(fd, uid, group) {
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINVAL | libc::EPERM | libc::EROFS)
                ) => {}
            other => other.map_err(os(format!("fchown fd {fd}")))?,
        }
    }
    Ok(())
}

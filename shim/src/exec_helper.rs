//! `podshim-exec`, the exec path without runc (`shim/exec/`): chosen by `[runtime] exec_helper`,
//! off by default. An exec it cannot do exactly as runc does (AppArmor, SELinux, …)
//! comes back as [`Helped::NeedsRuntime`] before anything was changed, and goes to `runc exec`.

use std::{
    ffi::OsString,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use log::{debug, warn};

use crate::{
    error::{Error, Result},
    reaper::reaper,
    stdio::ChildStdio,
};

/// The helper's exit status for "this exec needs the OCI runtime; nothing was done".
const NEEDS_RUNTIME: u32 = 125;

pub struct ExecHelper {
    program: PathBuf,
    no_new_keyring: bool,
}

pub enum Helped {
    /// The process runs; its pid is in the pid file.
    Started,
    /// The stdio is handed back for the runtime's exec.
    NeedsRuntime(ChildStdio),
}

/// One exec, as [`crate::runtime::ExecOpts`] has it once the process file is written.
pub struct HelperExec<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub process_file: &'a Path,
    pub pid_file: &'a Path,
    pub log: &'a Path,
    pub init_pid: u32,
    /// A terminal process's: the helper sends the pty master there, as runc does.
    pub console_socket: Option<&'a Path>,
    pub stdio: ChildStdio,
}

impl ExecHelper {
    /// `setting` is the config's value: a path, or a name looked up beside the shim's binary.
    pub fn new(setting: &str, no_new_keyring: bool) -> Option<Self> {
        if setting.is_empty() {
            return None;
        }
        let program = if setting.contains('/') {
            PathBuf::from(setting)
        } else {
            std::env::current_exe()
                .map(|exe| exe.with_file_name(setting))
                .unwrap_or_else(|_| PathBuf::from(setting))
        };
        Some(Self {
            program,
            no_new_keyring,
        })
    }

    /// For `start`: a helper that is set must be an executable file, so that a node enabling
    /// it sees a mistake when its next pod starts rather than in failed probes.
    pub fn check(&self) -> Result<()> {
        let executable = std::fs::metadata(&self.program)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        if executable {
            return Ok(());
        }
        Err(Error::InvalidArgument(format!(
            "runtime.exec_helper: {} is not an executable file",
            self.program.display()
        )))
    }

    pub async fn exec(&self, e: HelperExec<'_>) -> Result<Helped> {
        let fail = |message: String| Error::Runtime {
            binary: self.program.display().to_string(),
            command: "exec",
            message,
        };
        // The init may have exited since the caller checked: its pid is still ours to name
        // (the reaper has not reported it), and the pidfd pins it from here on.
        let pidfd = crate::sys::pidfd_open(e.init_pid)
            .map_err(|err| fail(format!("pidfd of the container's init: {err}")))?;
        // Copies for the helper: the originals go to runc if the helper declines.
        let copies = e.stdio.try_clone().map_err(|err| fail(err.to_string()))?;
        let _ = std::fs::remove_file(e.log);
        let mut cmd = Command::new(&self.program);
        crate::sys::kill_with_parent(&mut cmd);
        cmd.args(self.args(&e));
        copies.set_on(&mut cmd);
        debug!(
            "{} {:?}",
            self.program.display(),
            cmd.get_args().collect::<Vec<_>>()
        );
        let child = match crate::sys::spawn_with_fds(&mut cmd, &[pidfd]) {
            Ok(child) => child,
            // Gone since `start` checked it (an upgrade in progress): the runtime can still
            // run the exec, and a probe must not fail for it.
            Err(err) => {
                warn!(
                    "exec helper {}: {err}; the OCI runtime runs the exec",
                    self.program.display()
                );
                return Ok(Helped::NeedsRuntime(e.stdio));
            }
        };
        let exit = reaper().subscribe(child.id() as i32);
        // The process's ends now live in the helper; ours must close so EOF comes with its exit.
        drop(cmd);
        let status = exit
            .await
            .map_err(|_| fail("reaper dropped the exit".into()))?
            .status;
        let log = std::fs::read(e.log).unwrap_or_default();
        match status {
            0 => Ok(Helped::Started),
            NEEDS_RUNTIME => {
                debug!(
                    "exec in {} goes to the OCI runtime: {}",
                    e.id,
                    last_message(&log)
                );
                Ok(Helped::NeedsRuntime(e.stdio))
            }
            _ => Err(fail(last_message(&log))),
        }
    }

    fn args(&self, e: &HelperExec<'_>) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--log".into(),
            e.log.into(),
            "--process".into(),
            e.process_file.into(),
            "--bundle".into(),
            e.bundle.into(),
            "--pid-file".into(),
            e.pid_file.into(),
            "--id".into(),
            e.id.into(),
        ];
        if let Some(socket) = e.console_socket {
            args.extend(["--console-socket".into(), socket.into()]);
        }
        if self.no_new_keyring {
            args.push("--no-new-keyring".into());
        }
        args
    }
}

/// The helper's last log line's message (one JSON object per line).
fn last_message(log: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Line {
        msg: String,
    }
    String::from_utf8_lossy(log)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Line>(l).ok())
        .map_or_else(
            || "the exec helper failed without a message".into(),
            |l| l.msg,
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_names_a_path_or_a_binary_beside_the_shim() {
        assert!(ExecHelper::new("", false).is_none());
        let abs = ExecHelper::new("/opt/x/podshim-exec", true).unwrap();
        assert_eq!(abs.program, PathBuf::from("/opt/x/podshim-exec"));
        let beside = ExecHelper::new("podshim-exec", false).unwrap();
        let exe = std::env::current_exe().unwrap();
        assert_eq!(beside.program, exe.with_file_name("podshim-exec"));
    }

    #[test]
    fn start_refuses_a_helper_that_is_not_an_executable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("podshim-exec");
        let helper = ExecHelper::new(path.to_str().unwrap(), false).unwrap();
        let refused = |h: &ExecHelper| match h.check() {
            Err(Error::InvalidArgument(m)) => m.contains("is not an executable file"),
            _ => false,
        };
        assert!(refused(&helper), "missing");
        std::fs::write(&path, b"").unwrap();
        assert!(refused(&helper), "not executable");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        helper.check().unwrap();
        assert!(
            refused(&ExecHelper::new(dir.path().to_str().unwrap(), false).unwrap()),
            "a directory"
        );
    }

    #[tokio::test]
    async fn an_exec_whose_helper_is_gone_goes_to_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let helper = ExecHelper::new(dir.path().join("gone").to_str().unwrap(), false).unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        let helped = helper
            .exec(HelperExec {
                id: "c",
                bundle: dir.path(),
                process_file: &dir.path().join("p.json"),
                pid_file: &dir.path().join("p.pid"),
                log: &dir.path().join("p.log"),
                init_pid: std::process::id(),
                console_socket: None,
                stdio: ChildStdio {
                    stdin: Some(r),
                    stdout: Some(w),
                    stderr: None,
                },
            })
            .await
            .unwrap();
        let Helped::NeedsRuntime(back) = helped else {
            panic!("the exec did not go back to the runtime");
        };
        assert!(back.stdin.is_some() && back.stdout.is_some() && back.stderr.is_none());
    }

    #[test]
    fn the_last_message_of_the_log_is_the_reason() {
        let log = b"{\"level\":\"info\",\"msg\":\"a\"}\n{\"level\":\"error\",\"msg\":\"b\"}\n";
        assert_eq!(last_message(log), "b");
        assert_eq!(
            last_message(b""),
            "the exec helper failed without a message"
        );
    }
}

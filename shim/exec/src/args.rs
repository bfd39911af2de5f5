//! The command line the shim gives the helper (`shim/src/exec_helper.rs` builds it).

use std::path::PathBuf;

use crate::error::{Error, Result};

/// `podshim-exec --log L --process P --bundle B --pid-file F --id ID [--console-socket S]
/// [--no-new-keyring]`, with
/// the container's init process as a pidfd on descriptor 3 and the exec's stdio on 0, 1, 2.
#[derive(Debug, PartialEq, Eq)]
pub struct Args {
    /// Where errors go, one JSON line each in runc's `--log-format json` form.
    pub log: PathBuf,
    /// The exec's OCI `Process`, as containerd sent it.
    pub process: PathBuf,
    /// The container's bundle: its `config.json` holds the container-wide settings an exec
    /// inherits (capabilities and rlimits the process leaves out, oom_score_adj).
    pub bundle: PathBuf,
    /// Where the started process's pid is written.
    pub pid_file: PathBuf,
    /// The container id: it names the session keyring, as runc's does.
    pub id: String,
    /// runc's NoNewKeyring: keep the caller's session keyring.
    pub no_new_keyring: bool,
    /// Where a terminal process's pty master goes (the shim's console socket).
    pub console_socket: Option<PathBuf>,
}

impl Args {
    pub fn parse(mut argv: impl Iterator<Item = String>) -> Result<Self> {
        let (mut log, mut process, mut bundle, mut pid_file, mut id, mut console_socket) =
            (None, None, None, None, None, None);
        let mut no_new_keyring = false;
        while let Some(flag) = argv.next() {
            if flag == "--no-new-keyring" {
                no_new_keyring = true;
                continue;
            }
            let slot = match flag.as_str() {
                "--log" => &mut log,
                "--process" => &mut process,
                "--bundle" => &mut bundle,
                "--pid-file" => &mut pid_file,
                "--id" => &mut id,
                "--console-socket" => &mut console_socket,
                _ => return Err(Error::Failed(format!("unknown argument {flag:?}"))),
            };
            let value = argv
                .next()
                .ok_or_else(|| Error::Failed(format!("{flag} needs a value")))?;
            *slot = Some(value);
        }
        let need = |v: Option<String>, flag: &str| {
            v.ok_or_else(|| Error::Failed(format!("{flag} is required")))
        };
        Ok(Self {
            log: need(log, "--log")?.into(),
            process: need(process, "--process")?.into(),
            bundle: need(bundle, "--bundle")?.into(),
            pid_file: need(pid_file, "--pid-file")?.into(),
            id: need(id, "--id")?,
            no_new_keyring,
            console_socket: console_socket.map(PathBuf::from),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Args> {
        Args::parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn every_path_is_required_and_flags_are_known() {
        let a =
            parse("--log l --process p --bundle b --pid-file f --id c --no-new-keyring").unwrap();
        assert_eq!(a.log, PathBuf::from("l"));
        assert_eq!(a.id, "c");
        assert!(a.no_new_keyring);
        assert_eq!(a.console_socket, None);
        let tty = parse("--log l --process p --bundle b --pid-file f --id c --console-socket s");
        assert_eq!(tty.unwrap().console_socket, Some(PathBuf::from("s")));
        assert!(
            !parse("--log l --process p --bundle b --pid-file f --id c")
                .unwrap()
                .no_new_keyring
        );
        assert!(parse("--log l --process p --bundle b --pid-file f").is_err());
        assert!(parse("--log l --process p --bundle b --pid-file f --id").is_err());
        assert!(parse("--log l --process p --bundle b --pid-file f --id c --tty").is_err());
    }
}

//! Where a process's output goes, read from the stdout string containerd sends, by the rules of
//! containerd's runc shim: a path without a scheme is a FIFO (or an existing file), `file://`
//! appends both streams to one file, and `binary://` (`binary-v2://`) hands both streams to a
//! logging binary. stderr's string is not looked at for a scheme.

use std::path::PathBuf;

use crate::error::{Error, Result};

#[derive(Debug, PartialEq, Eq)]
pub enum Destination {
    /// Each stream to its own path: containerd's FIFOs, or existing files.
    Paths,
    /// stdout and stderr appended to this file, created with its directories.
    File(PathBuf),
    /// stdout and stderr read by this program (see `logger.rs`).
    Binary(LoggerCommand),
}

#[derive(Debug, PartialEq, Eq)]
pub struct LoggerCommand {
    pub program: PathBuf,
    /// The query's keys and first values in URI order: `?a=1&b` runs `program a 1 b ""`.
    pub args: Vec<String>,
    /// `binary-v2`: the program must write a byte before closing its ready pipe; `binary` takes
    /// the pipe's end as ready.
    pub ready_byte: bool,
}

pub fn destination(stdout: &str) -> Result<Destination> {
    match split_scheme(stdout) {
        None => Ok(Destination::Paths),
        Some((scheme, rest)) => parse(scheme, rest, stdout),
    }
}

/// What only `ctr run --log-uri` and the like send (CRI sends FIFO paths).
#[cold]
fn parse(scheme: &str, rest: &str, stdout: &str) -> Result<Destination> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    // `//host/path`: the host is not part of the path (and not used, as by containerd).
    let path = match path.strip_prefix("//") {
        Some(authority_and_path) => authority_and_path
            .find('/')
            .map_or("", |at| &authority_and_path[at..]),
        None => path,
    };
    let path = PathBuf::from(unescape(path, false, stdout)?);
    let invalid = |what: &str| Error::InvalidArgument(format!("stdout URI {stdout:?}: {what}"));
    if !path.is_absolute() {
        return Err(invalid("no absolute path"));
    }
    match scheme {
        "file" => Ok(Destination::File(path)),
        "binary" | "binary-v2" => {
            let mut args: Vec<String> = Vec::new();
            let mut seen = Vec::new();
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let k = unescape(k, true, stdout)?;
                if !seen.contains(&k) {
                    seen.push(k.clone());
                    args.push(k);
                    args.push(unescape(v, true, stdout)?);
                }
            }
            Ok(Destination::Binary(LoggerCommand {
                program: path,
                args,
                ready_byte: scheme == "binary-v2",
            }))
        }
        "fifo" => Err(invalid(
            "fifo:// is not a scheme; a FIFO is given by its path",
        )),
        other => Err(Error::InvalidArgument(format!(
            "unknown STDIO scheme {other} in {stdout:?}"
        ))),
    }
}

/// `scheme:` as URLs have it: a letter, then letters, digits, `+`, `-` or `.`.
fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = s.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some((scheme, rest))
}

/// Percent-decoding; in a query `+` is a space.
fn unescape(s: &str, query: bool, uri: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!("stdout URI {uri:?}: invalid escape"))
                    })?;
                out.push(hex);
                i += 3;
                continue;
            }
            b'+' if query => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out)
        .map_err(|_| Error::InvalidArgument(format!("stdout URI {uri:?}: not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary(program: &str, args: &[&str], ready_byte: bool) -> Destination {
        Destination::Binary(LoggerCommand {
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            ready_byte,
        })
    }

    #[test]
    fn paths_files_and_logging_binaries_are_told_apart_as_containerd_does() {
        for path in ["/run/containerd/fifo/1/c-stdout", "", "relative/out"] {
            assert_eq!(destination(path).unwrap(), Destination::Paths, "{path}");
        }
        assert_eq!(
            destination("file:///var/log/c%20d.log").unwrap(),
            Destination::File("/var/log/c d.log".into())
        );
        assert_eq!(
            destination("file://host/var/log/c.log").unwrap(),
            Destination::File("/var/log/c.log".into())
        );
        assert_eq!(
            destination("binary:///usr/bin/logger?tag=a+b&id=%2Fx&flag&tag=again").unwrap(),
            binary(
                "/usr/bin/logger",
                &["tag", "a b", "id", "/x", "flag", ""],
                false
            )
        );
        assert_eq!(
            destination("binary-v2:///opt/log").unwrap(),
            binary("/opt/log", &[], true)
        );
    }

    #[test]
    fn what_cannot_be_run_or_written_is_invalid() {
        for uri in [
            "binary://logger",
            "file://",
            "binary:///bad%zzescape",
            "syslog:///dev/log",
            "fifo:///run/x",
        ] {
            let err = destination(uri).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{uri}: {err}");
        }
        let err = destination("syslog:///dev/log").unwrap_err().to_string();
        assert!(err.contains("unknown STDIO scheme syslog"), "{err}");
    }

    /// Any string parses or is refused; never a panic.
    #[test]
    fn fuzz_the_uri_parser() {
        let seeds: [&[u8]; 3] = [
            b"binary:///usr/bin/logger?tag=a+b&id=%2Fx&flag",
            b"file://host/var/log/c%20d.log",
            b"/run/containerd/fifo/1/c-stdout",
        ];
        podshim_common::fuzz::run("stdio_uri", &seeds, |b| {
            let _ = destination(&String::from_utf8_lossy(b));
        });
    }
}
